"""Folders resolved once: the one place where a path becomes a directory descriptor.

A run folder is often reached through a link (``runs/current -> runs/<latest>``) and may
sit where others can write. Its lock is taken on the folder the path resolved to at
admission; if later writes went through the path again, a link re-pointed mid-run would
send them into another run's folder, past that folder's lock. So inside
``with anchored(folder)`` every operation of :mod:`emu_dgl.files` on a path under
``folder`` (named as given, or resolved) goes through a descriptor of the folder opened
at entry, with ``openat``-style calls (``os.open(name, dir_fd=...)``,
``os.replace(..., src_dir_fd=..., dst_dir_fd=...)``, ``os.unlink(name, dir_fd=...)``),
and every subfolder below it is opened without following links.

Why descriptors and not a check that the path still resolves to the locked folder
before each write: a check leaves a window between the check and the write, and it
would have to be repeated by every writer; a descriptor names the folder's inode
itself, so there is no window and no writer can forget it.

Where the platform has no ``*at`` calls (Windows), paths are used as given.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emu_dgl.errors import FileError

__all__ = ["AT", "anchored", "at", "folder_fd", "resolve_path"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: openat-style calls (Linux, macOS, the BSDs); elsewhere (Windows) paths are used as given.
AT = {os.open, os.stat, os.rename, os.unlink, os.mkdir} <= os.supports_dir_fd


@dataclass(eq=False)
class _Anchor:
    """A folder resolved once: its descriptor, its resolved path, the paths that name it."""

    fd: int
    resolved: Path
    keys: dict[Path, int] = field(default_factory=dict)  # path -> how many holders use it


_ANCHORS: dict[Path, _Anchor] = {}
_LOCK = threading.Lock()


def _find(path: str | os.PathLike[str]) -> tuple[_Anchor, tuple[str, ...]] | None:
    """The anchor holding ``path`` and the components of ``path`` below it, or None."""
    if not _ANCHORS or not AT:
        return None
    absolute = Path(os.path.abspath(path))
    for folder in (absolute, *absolute.parents):
        anchor = _ANCHORS.get(folder)
        if anchor is not None:
            return anchor, absolute.parts[len(folder.parts) :]
    return None


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as the anchor holding it resolved it when it was admitted (see
    :func:`anchored`), else ``path`` resolved now."""
    found = _find(path)
    if found is None:
        return Path(path).resolve()
    anchor, parts = found
    return anchor.resolved.joinpath(*parts)


def open_dir(name: str, dir_fd: int | None = None, *, follow: bool) -> int:
    """A descriptor of the folder ``name`` (relative to ``dir_fd`` when given)."""
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC | (0 if follow else _NOFOLLOW)
    return os.open(name, flags, dir_fd=dir_fd) if dir_fd is not None else os.open(name, flags)


def _walk(anchor: _Anchor, parts: tuple[str, ...]) -> int:
    """A descriptor of the folder ``parts`` below ``anchor``, each step opened without
    following links (an ``OSError`` ELOOP or ENOTDIR where a step is not a real folder).
    The caller closes it unless it is ``anchor.fd`` (no parts)."""
    fd = anchor.fd
    try:
        for part in parts:
            parent, fd = fd, open_dir(part, fd, follow=False)
            if parent != anchor.fd:
                os.close(parent)
    except OSError:
        if fd != anchor.fd:
            os.close(fd)
        raise
    return fd


def make_below(path: str | os.PathLike[str]) -> bool:
    """``mkdir -p`` of ``path`` below its anchor, no link followed (an ``OSError`` where a
    step is not a real folder); False when ``path`` is not below an anchor."""
    found = _find(path)
    if found is None or not found[1]:
        return False
    anchor, parts = found
    fd = anchor.fd
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            parent, fd = fd, open_dir(part, fd, follow=False)
            if parent != anchor.fd:
                os.close(parent)
    finally:
        if fd != anchor.fd:
            os.close(fd)
    return True


@contextmanager
def at(path: str | os.PathLike[str]) -> Iterator[tuple[int | None, str]]:
    """``(dir_fd, name)`` naming ``path`` for an ``*at`` call: below an anchor, its parent
    reached from the anchor's descriptor; elsewhere, its parent as named now. Where there
    are no ``*at`` calls: ``(None, path)``."""
    path = Path(path)
    found = _find(path)
    if found is not None and found[1]:
        anchor: _Anchor | None = found[0]
        fd, name = _walk(found[0], found[1][:-1]), found[1][-1]
    else:
        anchor, fd, name = None, None, os.fspath(path)
        if AT and path.name not in ("", ".", ".."):
            try:
                fd, name = open_dir(os.fspath(path.parent), follow=True), path.name
            except PermissionError:  # a folder we may enter but not list: by path, then
                pass
        if fd is None:
            yield None, name
            return
    try:
        yield fd, name
    finally:
        if anchor is None or fd != anchor.fd:
            os.close(fd)


@contextmanager
def folder_fd(path: str | os.PathLike[str]) -> Iterator[int]:
    """A descriptor of the folder ``path`` itself (through its anchor when it has one)."""
    found = _find(path)
    if found is not None:
        fd = _walk(*found)
        owned = fd != found[0].fd
    else:
        fd, owned = open_dir(os.fspath(path), follow=True), True
    try:
        yield fd
    finally:
        if owned:
            os.close(fd)


@contextmanager
def anchored(
    path: str | os.PathLike[str],
    what: str = "folder",
    *,
    also: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """Resolve the existing folder ``path`` once; for the ``with`` block, every operation
    of :mod:`emu_dgl.files` on a path under it (named as given, resolved, or as ``also``:
    the name it was admitted under) goes through a descriptor of that folder. Yields the
    resolved path. Re-entrant; a folder inside another anchored one is reached from the
    outer descriptor without following links."""
    if not AT:
        yield Path(path).resolve()
        return
    given = Path(os.path.abspath(path))
    with _LOCK:
        anchor = _ANCHORS.get(given)
        if anchor is None:
            anchor = _open_anchor(Path(path), what)
            same = _ANCHORS.get(anchor.resolved)  # the same folder, named otherwise before
            if same is not None:
                os.close(anchor.fd)
                anchor = same
        keys = [given, anchor.resolved]
        if also is not None:
            keys.append(Path(os.path.abspath(also)))
        for key in keys:
            if _ANCHORS.get(key, anchor) is not anchor:  # pragma: no cover - nested oddities
                raise FileError(f"the {what} '{key}' is already open as another folder")
        for key in keys:
            anchor.keys[key] = anchor.keys.get(key, 0) + 1
            _ANCHORS[key] = anchor
    try:
        yield anchor.resolved
    finally:
        with _LOCK:
            for key in keys:
                anchor.keys[key] -= 1
                if not anchor.keys[key]:
                    del anchor.keys[key], _ANCHORS[key]
            if not anchor.keys:
                os.close(anchor.fd)


def _open_anchor(path: Path, what: str) -> _Anchor:
    found = _find(path)
    try:
        if found is not None:  # inside another anchor: reached from it, no link followed
            fd = _walk(*found)
            if fd == found[0].fd:
                fd = os.dup(fd)
            return _Anchor(fd, found[0].resolved.joinpath(*found[1]))
        resolved = Path(os.path.realpath(path))
        fd = open_dir(os.fspath(resolved), follow=False)
        here, there = os.fstat(fd), os.stat(resolved)
    except OSError as exc:
        raise folder_error(exc, path, what) from None
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):  # pragma: no cover - a race
        os.close(fd)
        raise FileError(f"the {what} '{path}' changed while it was being opened; run again")
    return _Anchor(fd, resolved)


def folder_error(exc: OSError, path: Path, what: str) -> FileError:
    """One line for a folder that cannot be opened or made."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return FileError(
            f"the {what} '{path}' is, or lies inside, something that is not a real folder "
            "(a symbolic link or a file); emu-dgl writes only into real folders: remove it and run again"
        )
    if exc.errno == errno.ENOENT:
        return FileError(f"the {what} '{path}' does not exist")
    return FileError(f"cannot open the {what} '{path}' ({exc.strerror}); check its permissions")
