"""Safe reading and writing of the files emu-dgl owns (run folders, downloads, caches, exports).

A run folder may be shared with other people or sit in a world-writable place, so
nothing in it is trusted to be what its name says. Every file emu-dgl writes goes
through this module, which:

* opens with ``O_NOFOLLOW | O_NONBLOCK`` and checks what it opened (``fstat``):
  anything that is not a regular file (a symbolic link, a FIFO, a device, a folder) is
  refused, never truncated, written through or waited on; a planted
  ``.lock -> /etc/passwd`` is refused, and so is a FIFO, without blocking;
* resolves a folder once: inside ``with anchored(folder)`` (a run's admission, a
  comparison, an export) every operation of this module on a path under ``folder``
  goes through a descriptor of the folder opened at entry (``openat``, ``renameat``,
  ``unlinkat``: ``os.open(name, dir_fd=...)``, ``os.replace(..., src_dir_fd=...,
  dst_dir_fd=...)``), and each subfolder below it is opened without following links.
  A ``runs/current`` link re-pointed mid-run cannot send the run's writes into another
  run's folder: they reach the folder that was locked, or fail;
* makes every temporary file under an unpredictable name in the target's own folder
  (created exclusively, never through a link), then renames it over the target
  (``os.replace`` is atomic: a reader sees the old file or the new one, never a mix);
* fsyncs the file and its folder where the file's loss matters (checkpoints,
  config, data record, final metrics);
* writes text as UTF-8 whatever the locale says;
* turns every ``OSError`` into one line naming the file, the reason and the fix.

Names that become folder names (compare's arms, ``{dataset}`` in ``output.dir``)
go through :func:`path_component`: one rule, a single safe component.
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from emu_dgl.anchors import AT, anchored, at, folder_error, folder_fd, make_below, resolve_path
from emu_dgl.errors import ConfigError, FileError, shown

__all__ = [
    "anchored",
    "append_text",
    "check_regular",
    "commit",
    "describe_kind",
    "fsync_dir",
    "lexists",
    "link",
    "link_count",
    "listdir",
    "make_dir",
    "map_read",
    "move_aside",
    "open_lock_file",
    "open_log",
    "open_read",
    "path_component",
    "read_bytes",
    "read_text",
    "remove",
    "remove_tree",
    "resolve_path",
    "temporary_beside",
    "write_atomic",
    "write_error",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must fail or return, never wait
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows


# --------------------------------------------------------------------------- kinds


def _kind(info: os.stat_result) -> str:
    mode = info.st_mode
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def describe_kind(path: str | os.PathLike[str]) -> str:
    """What is at ``path``, in words: 'missing', 'a symbolic link', 'a FIFO', ... or 'a regular file'."""
    try:
        with at(path) as (fd, name):
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                try:
                    os.stat(name, dir_fd=fd)
                except OSError as exc:
                    return (
                        "a symbolic link loop"
                        if exc.errno == errno.ELOOP
                        else "a broken symbolic link"
                    )
                return "a symbolic link"
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # a step of the way is not a real folder
            return "behind a symbolic link or a file (not inside a real folder)"
        return f"unreadable ({exc.strerror})"
    return _kind(info)


def lexists(path: str | os.PathLike[str]) -> bool:
    """Whether anything (a link included) is at ``path``."""
    return describe_kind(path) != "missing"


def link_count(path: str | os.PathLike[str]) -> int:
    """How many names (hard links) the file at ``path`` has; 0 when nothing is there."""
    try:
        with at(path) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False).st_nlink
    except OSError:
        return 0


def write_error(exc: OSError, path: Path, what: str) -> FileError:
    """A one-line error for an ``OSError`` while writing ``path`` (full disk, read-only, ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = "free some space or choose another location"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "choose a writable location"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        advice = "a file is in the way; choose another location"
    elif exc.errno == errno.ELOOP:
        advice = "a symbolic link is in the way inside the folder; remove it"
    else:
        advice = "check the path"
    return FileError(f"cannot write the {what} '{path}' ({reason}); {advice}")


def _not_regular(path: Path, what: str, kind: str, *, follow: bool = False) -> FileError:
    if follow:  # a file the user names (a config, a dataset file): it may be a link, not a FIFO
        return FileError(f"the {what} '{path}' is {kind}, not a regular file")
    return FileError(
        f"the {what} '{path}' is {kind}, not a regular file; emu-dgl neither follows links nor "
        "writes through them here: remove it (or replace it with the real file) and run again"
    )


def _hard_linked(path: Path, what: str, links: int) -> FileError:
    return FileError(
        f"the {what} '{path}' has {links} names (hard links); emu-dgl only reads and writes "
        "files of its own: remove it and run again"
    )


def _open(
    path: Path, flags: int, what: str, *, follow: bool, single_link: bool, writing: bool
) -> int:
    """``os.open`` that returns a descriptor of a regular file or raises a one-line FileError.

    Non-blocking, so a FIFO is never waited on; checked with ``fstat`` after opening, so
    what was checked is what is read or written. Never truncates: a caller that replaces
    a file's content truncates after the checks (see :func:`open_log`)."""
    flags |= _CLOEXEC | _NONBLOCK | _BINARY | (0 if follow else _NOFOLLOW)
    try:
        with at(path) as (dir_fd, name):
            fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EMLINK) or (
            exc.errno == errno.EISDIR and not writing
        ):
            raise _not_regular(path, what, describe_kind(path), follow=follow) from None
        if writing:
            raise write_error(exc, path, what) from None
        if exc.errno == errno.ENOENT:
            raise FileError(f"the {what} '{path}' does not exist") from None
        raise FileError(
            f"cannot read the {what} '{path}' ({exc.strerror}); check its permissions"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = _kind(info) if follow else describe_kind(path)
        raise _not_regular(path, what, kind, follow=follow)
    if single_link and info.st_nlink > 1:
        # A hard link planted under our name would make us write into someone else's file.
        os.close(fd)
        raise _hard_linked(path, what, info.st_nlink)
    return fd


def open_read(
    path: str | os.PathLike[str], what: str, *, follow: bool = False, single_link: bool = False
) -> IO[bytes]:
    """A binary handle on a regular file (a link refused unless ``follow``; never a FIFO or
    a device, never waited on; with ``single_link`` a file with other names is refused)."""
    path = Path(path)
    fd = _open(path, os.O_RDONLY, what, follow=follow, single_link=single_link, writing=False)
    return os.fdopen(fd, "rb")


def map_read(path: str | os.PathLike[str], what: str) -> mmap.mmap:
    """A private, copy-on-write memory map of a regular file (never a link, a FIFO or a
    device: opened non-blocking and checked with ``fstat`` first). Pages are read on first
    touch and shared with every process mapping the same file; a write to the map stays
    in this process. An empty file gives a FileError (it cannot be mapped)."""
    path = Path(path)
    fd = _open(path, os.O_RDONLY, what, follow=False, single_link=False, writing=False)
    try:
        if os.fstat(fd).st_size == 0:
            raise FileError(f"the {what} '{path}' is empty")
        return mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
    except OSError as exc:
        raise FileError(f"cannot map the {what} '{path}' ({exc.strerror})") from None
    finally:
        os.close(fd)


def check_regular(path: str | os.PathLike[str], what: str, *, follow: bool = True) -> None:
    """Raise a one-line FileError unless ``path`` is a readable regular file (a FIFO or a
    device is refused without waiting). For paths handed to code that opens them itself."""
    open_read(path, what, follow=follow).close()


def read_bytes(
    path: str | os.PathLike[str],
    what: str,
    *,
    follow: bool = False,
    limit: int | None = None,
    single_link: bool = False,
) -> bytes:
    """The bytes of a regular file (links refused unless ``follow``), at most ``limit`` of them."""
    path = Path(path)
    with open_read(path, what, follow=follow, single_link=single_link) as handle:
        size = os.fstat(handle.fileno()).st_size
        if limit is not None and size > limit:
            raise FileError(
                f"the {what} '{path}' is {size} bytes; a {what} is at most {limit} bytes"
            )
        try:
            return handle.read() if limit is None else handle.read(limit + 1)[:limit]
        except OSError as exc:
            raise FileError(f"cannot read the {what} '{path}' ({exc.strerror})") from None


def read_text(
    path: str | os.PathLike[str],
    what: str,
    *,
    follow: bool = False,
    limit: int | None = None,
    single_link: bool = False,
) -> str:
    """A regular file's text, decoded as UTF-8 (a one-line error if it is not)."""
    data = read_bytes(path, what, follow=follow, limit=limit, single_link=single_link)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(
            f"the {what} '{path}' is not UTF-8 text (byte {exc.start}); it is not the file emu-dgl wrote"
        ) from None


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        with folder_fd(folder) as fd:
            os.fsync(fd)
    except OSError:
        pass


def listdir(folder: str | os.PathLike[str]) -> list[str]:
    """The names in ``folder`` (through its anchor); empty when it is missing."""
    try:
        with folder_fd(folder) as fd:
            return sorted(os.listdir(fd)) if AT else sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def make_dir(path: str | os.PathLike[str], what: str, *, allow_link: bool = True) -> Path:
    """``mkdir -p`` with one-line errors. ``allow_link=False`` refuses a symbolic link at
    ``path`` itself (the subfolders a run makes must be real folders inside it); below an
    anchored folder no link is ever followed."""
    path = Path(path)
    try:
        if make_below(path):  # below an anchored folder: made and checked step by step
            return path
    except OSError as exc:
        raise folder_error(exc, path, what) from None
    if not allow_link and path.is_symlink():
        raise FileError(
            f"the {what} '{path}' is a symbolic link; emu-dgl writes only into real folders "
            "inside a run: remove the link and run again"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file (or a dangling link) is in the way: reported just below
    except OSError as exc:
        raise write_error(exc, path, what) from None
    if not path.is_dir():
        raise FileError(
            f"the {what} '{path}' is {describe_kind(path)}, not a folder; choose another location"
        )
    return path


def _check_target(path: Path, what: str) -> None:
    """Refuse to replace anything but a regular file (or nothing) at ``path``."""
    kind = describe_kind(path)
    if kind not in ("missing", "a regular file"):
        raise _not_regular(path, what, kind)


def temporary_beside(path: Path, what: str) -> tuple[int, Path]:
    """A new, exclusively created temporary file ``.<name>.<random>.tmp`` in ``path``'s folder
    (never through a link), and its descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
    try:
        with at(path) as (dir_fd, name):
            while True:
                tmp = f".{Path(name).name}.{secrets.token_hex(4)}.tmp"
                try:
                    fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
                except FileExistsError:
                    continue
                return fd, path.with_name(tmp)
    except OSError as exc:
        raise write_error(exc, path, what) from None


def commit(tmp: Path, path: Path, what: str, *, durable: bool = True) -> None:
    """Rename the finished temporary file ``tmp`` (in ``path``'s folder) over ``path``
    (refusing to replace a link, a FIFO or a folder there); with ``durable`` the rename is
    fsynced too."""
    if tmp.parent != path.parent:
        raise ValueError("commit renames within one folder")
    try:
        with at(path) as (dir_fd, name):
            if dir_fd is None:
                _check_target(path, what)
                os.replace(tmp, path)
                return
            try:
                kind = _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
            except FileNotFoundError:
                kind = "missing"
            if kind not in ("missing", "a regular file"):
                raise _not_regular(path, what, describe_kind(path))
            os.replace(tmp.name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            if durable:
                try:
                    os.fsync(dir_fd)
                except OSError:
                    pass
    except OSError as exc:
        raise write_error(exc, path, what) from None


def remove(path: str | os.PathLike[str], what: str = "file") -> bool:
    """Delete the file (or link) ``path``, never what a link points to; False if missing."""
    try:
        with at(path) as (dir_fd, name):
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise write_error(exc, Path(path), what) from None
    return True


def remove_tree(path: str | os.PathLike[str], what: str = "folder") -> bool:
    """Delete the folder ``path`` with everything in it, no link followed (a link at ``path``
    is removed itself, never what it points to); False if missing."""
    if describe_kind(path) != "a folder":
        return remove(path, what) if lexists(path) else False
    try:
        with at(path) as (dir_fd, name):
            shutil.rmtree(name, dir_fd=dir_fd)  # descriptor-based: links inside are unlinked
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise write_error(exc, Path(path), what) from None
    return True


def link(source: Path, target: Path, what: str) -> None:
    """A second name ``target`` for the file ``source`` in the same folder (an ``OSError``
    where the file system has no hard links or ``target`` exists)."""
    if source.parent != target.parent:
        raise ValueError("link works within one folder")
    with at(target) as (dir_fd, name):
        if dir_fd is None:
            os.link(source, target, follow_symlinks=False)
        else:
            os.link(source.name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)


def move_aside(path: Path, suffix: str, what: str) -> Path:
    """Rename ``path`` to ``<name><suffix>`` (``<name>.<n><suffix>`` if that is taken),
    never replacing anything; returns the new path."""
    for n in range(1000):
        target = path.with_name(path.name + (f".{n}" if n else "") + suffix)
        try:
            link(path, target, what)
        except FileExistsError:
            continue
        except OSError:  # no hard links here: a rename, checked first
            if lexists(target):
                continue
            with at(path) as (dir_fd, name):
                os.rename(name, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return target
        remove(path, what)
        return target
    raise FileError(f"cannot move the {what} '{path}' aside: too many earlier copies; remove some")


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[IO[bytes]], object],
    what: str,
    *,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` (bytes, text written as UTF-8, or a function writing to a
    binary handle): a temporary file in the same folder, fsynced, renamed over the target."""
    path = Path(path)
    _check_target(path, what)
    fd, tmp = temporary_beside(path, what)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        commit(tmp, path, what, durable=durable)
    except OSError as exc:
        _discard(tmp)
        raise write_error(exc, path, what) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        remove(tmp)
    except FileError:
        pass


def append_text(
    path: str | os.PathLike[str], text: str, what: str, *, durable: bool = False
) -> None:
    """Append UTF-8 ``text`` to a regular file of our own (created if missing)."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = _open(path, flags, what, follow=False, single_link=True, writing=True)
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except OSError as exc:
        raise write_error(exc, path, what) from None
    finally:
        os.close(fd)


def open_log(path: str | os.PathLike[str], what: str) -> int:
    """A write descriptor of the log file ``path``, emptied (created if missing): checked to
    be a regular file with one name before it is truncated, so a planted link, hard link or
    FIFO is refused (without waiting) and its target is never written. Blocking again, so
    a process writing to it (a child's stdout) needs no special handling."""
    path = Path(path)
    fd = _open(path, os.O_WRONLY | os.O_CREAT, what, follow=False, single_link=True, writing=True)
    try:
        os.ftruncate(fd, 0)
        if _NONBLOCK and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise write_error(exc, path, what) from None
    return fd


def open_lock_file(path: Path) -> int:
    """A read-write descriptor of the lock file ``path`` (created if missing), never a link's
    target and never truncated: a planted link or a hard-linked file is refused."""
    return _open(
        path, os.O_RDWR | os.O_CREAT, "lock file", follow=False, single_link=True, writing=True
    )


# --------------------------------------------------------------------------- names


_MAX_COMPONENT_BYTES = 255  # the limit of common file systems (ext4, APFS, NTFS)


def path_component(name: object, what: str) -> str:
    """``name`` if it is one safe folder name, else a ConfigError saying why.

    Safe: not empty, not ``.`` or ``..``, not hidden (no leading dot: those names are
    emu-dgl's own temporaries and locks), no ``/`` or ``\\``, no control characters,
    no surrounding spaces, at most 255 bytes. Used wherever a name becomes a path.
    """
    text = str(name)
    reason = None
    if text.strip() == "":
        reason = "it is empty"
    elif text in (".", ".."):
        reason = f"'{text}' names a folder above or at the output"
    elif any(sep in text for sep in ("/", "\\", os.sep, os.altsep or "/")):
        reason = "it holds a path separator"
    elif text.startswith("."):
        reason = "it starts with '.'"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        reason = "it holds a control character"
    elif text != text.strip():
        reason = "it has surrounding spaces"
    elif len(text.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES:
        reason = f"it is longer than {_MAX_COMPONENT_BYTES} bytes"
    if reason is None:
        return text
    raise ConfigError(
        f"{what} {shown(text)} cannot be a folder name ({reason}); use one name of letters, "
        "digits, '-', '_' or '.'"
    )
