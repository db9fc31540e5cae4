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
run then starts again from step 0 with its saved config).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emu_dgl.errors import CheckpointError, EmuDglError
from emu_dgl.files import commit, describe_kind, make_dir, open_read, temporary_beside

FORMAT = "emu-dgl-checkpoint/1"
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
        if keep_previous and path.exists():
            _keep_as_previous(path)
            _stage("previous")
        commit(tmp, path, "checkpoint")
        _stage("replaced")
    except (OSError, EmuDglError) as exc:
        tmp.unlink(missing_ok=True)
        full = isinstance(exc, OSError) and exc.errno in _DISK_FULL
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        advice = "free some space" if full else "make the folder writable"
        raise CheckpointError(
            f"cannot write checkpoint '{path}' ({reason}); the previous checkpoints are "
            f"kept: {advice}, then continue with 'emu-dgl train --resume {folder.parent}'"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_as_previous(path: Path) -> None:
    """``previous.pt`` := the current ``path``, while ``path`` itself stays in place."""
    previous = path.with_name(PREVIOUS)
    link = _temp_name(previous)
    try:
        os.link(path, link)
    except OSError:  # no hard links here (some network or FAT file systems): rename instead
        commit(path, previous, "checkpoint", durable=False)
        return
    commit(link, previous, "checkpoint", durable=False)
    # rename() between two names of one file does nothing (previous.pt may already be a
    # name of last.pt's file after an interrupted rotation): drop the extra name then.
    link.unlink(missing_ok=True)


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
    if not isinstance(state, dict) or state.get("format") != FORMAT:
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
        return "; 'emu-dgl train --resume' falls back to previous.pt by itself"
    return ""


def _temporaries(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.glob(f".{name}.*.tmp") if not p.is_symlink())


def recover_checkpoint(
    folder: Path, *, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any] | None, str]:
    """The newest complete training state in ``folder`` and where it came from.

    ``last.pt`` when it loads; otherwise the readable file with the highest step among
    ``previous.pt`` and finished temporary files of ``last.pt`` (a kill between the two
    renames of a rotation leaves exactly those); ``(None, reason)`` when there is none.
    """
    last = folder / LAST
    problem = "it is missing"
    if last.is_file():
        try:
            return load_checkpoint(last, map_location=map_location), LAST
        except CheckpointError as exc:
            problem = str(exc).split(" (", 1)[-1].split(")", 1)[0]
    best: tuple[int, dict[str, Any], str] | None = None
    for candidate in [folder / PREVIOUS, *_temporaries(folder, LAST)]:
        if not candidate.is_file():
            continue
        try:
            state = load_checkpoint(candidate, map_location=map_location)
        except CheckpointError:
            continue  # a temporary file cut short by the kill
        step = int(state.get("step", -1))
        if best is None or step > best[0]:
            best = (step, state, candidate.name)
    if best is None:
        return None, f"no complete checkpoint ({LAST}: {problem})"
    return best[1], f"{best[2]} ({LAST}: {problem})"


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete leftover temporary files of interrupted saves; returns what was removed.

    Call it only while holding the run's lock (no other process is saving).
    """
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")) if folder.is_dir() and not folder.is_symlink() else []:
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
