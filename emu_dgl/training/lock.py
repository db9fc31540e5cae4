"""One writer per run folder: an OS file lock held for the life of a run (:class:`RunLock`)."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from emu_dgl.errors import RunError
from emu_dgl.files import anchored, lexists, listdir, make_dir, open_lock_file, remove, resolve_path

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"

_HELD: dict[Path, tuple[int, int, ExitStack]] = {}  # folder -> (fd, depth, anchor), locks held here
_PID_WIDTH = 24  # the pid is written padded to this width: the lock file is never truncated


class RunLock:
    """Exclusive lock on a run directory for as long as the ``with`` block runs.

    ``fcntl.flock`` on ``<run>/.lock``: the OS drops it when the process dies, so a
    killed run never leaves a stale lock. Re-entrant within one process. The lock file
    is opened without following links and must be a regular file with one name, so a
    planted ``.lock`` link or hard link is refused, never written through.

    The folder is resolved once, when the lock is taken, and anchored for as long as it
    is held (:func:`emu_dgl.files.anchored`): every later read or write of a path under
    it, named as given or resolved, reaches the locked folder through its descriptor, so
    a link re-pointed mid-run (``runs/current``) cannot carry the run's writes elsewhere.
    """

    def __init__(self, folder: str | Path) -> None:
        self.given = Path(folder).expanduser()
        self.folder = resolve_path(self.given)
        self._created = False
        self.found_lock = False  # a .lock was there before: emu-dgl ran in this folder

    def __enter__(self) -> RunLock:
        self.folder = key = resolve_path(self.given)
        if key in _HELD:
            fd, depth, anchor = _HELD[key]
            _HELD[key] = (fd, depth + 1, anchor)
            anchor.enter_context(anchored(self.folder, "run directory", also=self.given))
            return self
        self._created = not self.folder.exists()
        make_dir(self.folder, "run directory")
        anchor = ExitStack()
        anchor.enter_context(anchored(self.folder, "run directory", also=self.given))
        try:
            self.found_lock = lexists(self.folder / LOCK_FILE)
            fd = open_lock_file(self.folder / LOCK_FILE)
        except BaseException:
            anchor.close()
            raise
        if not _try_lock(fd):
            text = os.pread(fd, 64, 0).decode(errors="replace").split()
            os.close(fd)
            anchor.close()
            raise RunError(
                f"run directory '{self.folder}' is in use by another emu-dgl process "
                f"(pid {text[0] if text else 'unknown'}); wait for it to finish or choose another --out"
            )
        # Overwrite in place, never truncate: readers take the first word.
        os.pwrite(fd, f"{os.getpid()}\n".ljust(_PID_WIDTH).encode(), 0)
        _HELD[key] = (fd, 1, anchor)
        return self

    @property
    def fd(self) -> int:
        """The lock file's descriptor: a child process given it holds the lock as well."""
        return _HELD[self.folder][0]

    def __exit__(self, *exc: object) -> None:
        fd, depth, anchor = _HELD[self.folder]
        if depth > 1:
            _HELD[self.folder] = (fd, depth - 1, anchor)
            return
        del _HELD[self.folder]
        try:
            if self._created and listdir(self.folder) == [LOCK_FILE]:
                # The run stopped before writing anything: leave no empty folder behind.
                remove(self.folder / LOCK_FILE, "lock file")
                os.rmdir(self.folder)
        finally:
            _unlock(fd)
            os.close(fd)
            anchor.close()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
