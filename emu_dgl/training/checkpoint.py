"""Atomic, crash-safe, safe-to-load checkpoints.

A checkpoint is a plain dict of tensors and primitives (whatever the trainer, or a
distributed trainer, puts in it) saved with ``torch.save``. Guarantees:

* **Atomic.** The dict is written to a temporary file made by ``mkstemp`` in the same
  folder (``.<name>.<random>.tmp``), flushed and fsynced, then renamed over the target
  with ``os.replace``: a reader sees the old file or the new one, never a mix. Links are
  never followed, for writing or reading (see :mod:`emu_dgl.files`).
* **Rotation that survives a kill at any instant.** With ``keep_previous`` the old
  ``last.pt`` becomes ``previous.pt`` through a hard link (``previous.pt`` is
  replaced by a second name of the same file), and only then is the new file renamed
  over ``last.pt``; so ``last.pt`` always names a complete checkpoint once one was
  written. Where hard links are not supported the old file is renamed instead, and
  :func:`recover_checkpoint` finds the newest complete file among ``previous.pt``
  and the finished temporary file.
* **Safe to load.** ``torch.load(..., weights_only=True)``: no pickled code ever runs.

Loading a run's state goes through :func:`recover_checkpoint`: ``last.pt``, else the
newest readable of ``previous.pt`` and complete temporary files, else nothing (the
run then starts again from step 0 with its saved config). Work is never thrown away
on a guess: a checkpoint that exists but cannot be read (permissions, an I/O error, a
format from a newer emu-dgl or torch) stops the resume with an error naming it. Only a
provably torn file (:func:`is_torn`: empty, or a zip archive without its end record)
is passed over, and it is set aside as ``<name>.unreadable`` (:func:`set_aside_torn`),
never deleted and never rotated over.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import secrets
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emu_dgl.errors import CheckpointError, EmuDglError, FileError
from emu_dgl.files import (
    commit,
    describe_kind,
    lexists,
    link,
    listdir,
    make_dir,
    move_aside,
    open_read,
    remove,
    temporary_beside,
)

FORMAT = "emu-dgl-checkpoint/1"
_FORMAT_PREFIX, _FORMAT_VERSION = FORMAT.rsplit("/", 1)
#: The suffix of a torn checkpoint set aside by a resume (see :func:`set_aside_torn`).
UNREADABLE = ".unreadable"
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"

#: Test hook: called with the name of each stage of :func:`save_checkpoint`
#: ("started": the temporary file exists, still empty; "written": it is complete; "previous": ``previous.pt`` is the old
#: ``last.pt``; "replaced": the new file is in place). Fault-injection tests set it to
#: kill the process there; it is ``None`` in normal use.
fault_hook: Callable[[str], None] | None = None

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT) if hasattr(errno, "EDQUOT") else (errno.ENOSPC,)


def _stage(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def save_checkpoint(state: dict[str, Any], path: Path, *, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically; with ``keep_previous`` the old file becomes previous.pt."""
    if not isinstance(state, dict):
        raise TypeError("a checkpoint is a dict")
    folder = path.parent
    try:
        make_dir(folder, "checkpoint folder", allow_link=False)
        fd, tmp = temporary_beside(path, "checkpoint")
    except EmuDglError as exc:
        raise CheckpointError(f"{exc}; the previous checkpoints are kept") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            _stage("started")
            try:
                torch.save({"format": FORMAT, **state}, handle)
            except RuntimeError as exc:
                # torch's zip writer reports a failed write (a full disk) as a RuntimeError.
                if "write" not in str(exc).lower():
                    raise
                raise OSError(errno.ENOSPC, "torch could not write it; is the disk full?") from None
            handle.flush()
            os.fsync(handle.fileno())
        _stage("written")
        if keep_previous and lexists(path):
            _keep_as_previous(path)
            _stage("previous")
        commit(tmp, path, "checkpoint")
        _stage("replaced")
    except (OSError, EmuDglError) as exc:
        _discard(tmp)
        full = isinstance(exc, OSError) and exc.errno in _DISK_FULL
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        advice = "free some space" if full else "make the folder writable"
        raise CheckpointError(
            f"cannot write checkpoint '{path}' ({reason}); the previous checkpoints are "
            f"kept: {advice}, then continue with 'emu-dgl train --resume {folder.parent}'"
        ) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        remove(tmp, "checkpoint")
    except FileError:
        pass


def _keep_as_previous(path: Path) -> None:
    """``previous.pt`` := the current ``path``, while ``path`` itself stays in place."""
    previous = path.with_name(PREVIOUS)
    second = _temp_name(previous)
    try:
        link(path, second, "checkpoint")
    except OSError:  # no hard links here (some network or FAT file systems): rename instead
        commit(path, previous, "checkpoint", durable=False)
        return
    commit(second, previous, "checkpoint", durable=False)
    # rename() between two names of one file does nothing (previous.pt may already be a
    # name of last.pt's file after an interrupted rotation): drop the extra name then.
    remove(second, "checkpoint")


def _short_reason(exc: BaseException) -> str:
    """The first line of an exception, at most ~100 characters, cut at a word boundary."""
    text = (str(exc).strip().splitlines() or [""])[0].strip() or type(exc).__name__
    if len(text) > 100:
        text = text[:100].rsplit(" ", 1)[0] + " ..."
    return text


def _mapped(handle: Any) -> str | None:
    """A path naming the open file itself (not what its name points to now), for
    ``torch.load(mmap=True)``, which maps files by path; ``None`` where there is none."""
    path = f"/proc/self/fd/{handle.fileno()}"
    return path if os.path.exists(path) else None


def load_checkpoint(
    path: Path, *, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, or raise a one-line error.

    ``mmap``: tensors are mapped from the file rather than read (pages are read when
    used, and the page cache can drop them again), where the system allows it."""
    kind = describe_kind(path)
    if kind == "missing":
        other = path.with_name(LAST)
        hint = (
            f"; the weights of the last step are in '{other}': pass --checkpoint last to use them"
            if path.name == BEST and other.is_file()
            else "; train first or pass the right run directory"
        )
        raise CheckpointError(f"no checkpoint at '{path}'{hint}")
    try:
        with open_read(path, "checkpoint") as handle:
            mapped = _mapped(handle) if mmap else None
            state = torch.load(
                mapped or handle, map_location=map_location, weights_only=True, mmap=bool(mapped)
            )
    except EmuDglError as exc:  # a link, a FIFO, unreadable
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # truncated zip, foreign pickle, random bytes ...
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or not an emu-dgl checkpoint ({_short_reason(exc)}){_hint(path)}"
        ) from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != FORMAT:
        prefix, _, version = str(found).rpartition("/")
        if prefix == _FORMAT_PREFIX and version.isdigit() and int(version) > int(_FORMAT_VERSION):
            raise CheckpointError(
                f"'{path}' was written by a newer emu-dgl (format {found}; this version reads "
                f"{FORMAT}); upgrade emu-dgl (pip install -U emu-dgl) to use it"
            )
        raise CheckpointError(f"'{path}' is not an emu-dgl checkpoint (format {FORMAT} expected)")
    return state


def _hint(path: Path) -> str:
    if path.name == BEST:
        if path.with_name(LAST).is_file():
            return (
                f"; the weights of the last step (not the best) are in '{path.with_name(LAST)}': "
                "pass --checkpoint last to use them"
            )
        return "; the run has no other weights, train it again"
    if path.name == LAST:
        return "; if it was cut short, 'emu-dgl train --resume' falls back to previous.pt"
    return ""


def _temporaries(folder: Path, name: str) -> list[Path]:
    return [folder / n for n in listdir(folder) if fnmatch.fnmatch(n, f".{name}.*.tmp")]


def is_torn(path: Path) -> bool:
    """Whether ``path`` is provably a write cut short: empty, or the start of a zip archive
    (what ``torch.save`` writes) without the end record a finished archive ends with.
    Anything else that fails to load (unreadable, another format, a newer version) is not
    provably torn: it may hold the newest work."""
    try:
        with open_read(path, "checkpoint") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return True
            if handle.read(4) != b"PK\x03\x04":
                return False
            return not zipfile.is_zipfile(handle)
    except (OSError, EmuDglError):
        return False


def _stop(path: Path, exc: CheckpointError) -> CheckpointError:
    """The error that stops a resume at a checkpoint that exists but cannot be read."""
    before = "previous.pt" if path.name == LAST else "an earlier checkpoint, or from step 0"
    return CheckpointError(
        f"cannot resume: {str(exc).rstrip('.')}. The file may hold the run's newest steps, so "
        f"emu-dgl neither falls back to an older checkpoint nor starts over: fix its cause (its "
        f"permissions, the disk, or a newer emu-dgl or torch) and resume again, or move it away "
        f"to resume from {before}"
    )


def recover_checkpoint(
    folder: Path, *, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any] | None, str]:
    """The newest complete training state in ``folder`` and where it came from.

    ``last.pt`` when it loads; otherwise the readable file with the highest step among
    ``previous.pt`` and finished temporary files of ``last.pt`` (a kill between the two
    renames of a rotation leaves exactly those); ``(None, reason)`` when there is none.
    A file that exists but does not load is passed over only when it is provably torn
    (:func:`is_torn`); any other raises a :class:`CheckpointError` naming it and the fix.
    Nothing is written (:func:`set_aside_torn` moves the torn files).
    """
    last = folder / LAST
    problem = "it is missing"
    if lexists(last):
        try:
            return load_checkpoint(last, map_location=map_location), LAST
        except CheckpointError as exc:
            if not is_torn(last):
                raise _stop(last, exc) from None
            problem = f"cut short by a crash, set aside as {LAST}{UNREADABLE}"
    best: tuple[int, dict[str, Any], str] | None = None
    for candidate in [folder / PREVIOUS, *_temporaries(folder, LAST)]:
        if not lexists(candidate):
            continue
        try:
            state = load_checkpoint(candidate, map_location=map_location)
        except CheckpointError as exc:
            if is_torn(candidate):
                continue  # cut short by the kill
            raise _stop(candidate, exc) from None
        step = int(state.get("step", -1))
        if best is None or step > best[0]:
            best = (step, state, candidate.name)
    if best is None:
        return None, f"no complete checkpoint ({LAST}: {problem})"
    return best[1], f"{best[2]} ({LAST}: {problem})"


def set_aside_torn(folder: Path) -> list[Path]:
    """Move ``last.pt`` and ``previous.pt`` aside as ``<name>.unreadable`` where they are
    provably torn, so that no later save or rotation replaces them; returns the new names.
    Call it holding the run's lock."""
    moved = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if describe_kind(path) == "a regular file" and is_torn(path):
            moved.append(move_aside(path, UNREADABLE, "checkpoint"))
    return moved


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete leftover temporary files of interrupted saves; returns what was removed.

    Call it only while holding the run's lock (no other process is saving).
    """
    removed = []
    if describe_kind(folder) == "a folder":
        for name in listdir(folder):
            if fnmatch.fnmatch(name, ".*.tmp") and remove(folder / name, "checkpoint"):
                removed.append(folder / name)
    return removed
