"""Reading split files, hashing them, and the processed cache.

A split file holds one triple per line, ``head<TAB>relation<TAB>tail``, no
header, UTF-8. It is parsed by pandas' C tokenizer in one call; validation is
vectorised (missing or empty fields show up as empty strings, extra fields as a
tokenizer error). Only when a file is malformed is it scanned again line by line,
to name the first bad line in the error message. Empty (whitespace-only) lines
are skipped.

The processed cache stores a parsed knowledge graph as an uncompressed ``.npz``
(no pickle) named by the sha256 of the split files' bytes, so it is valid
exactly as long as the files are unchanged, wherever the files live. Every cache
file is written to a temporary name in its folder and then moved into place with
``os.replace``, which is atomic: a reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from emu_dgl.errors import DataError

__all__ = [
    "SPLITS",
    "CACHE_FORMAT",
    "atomic_write",
    "decode_names",
    "encode_names",
    "file_sha256",
    "key_from_hashes",
    "read_split",
    "splits_key",
]

#: split name -> file name, in the order ids are assigned.
SPLITS: dict[str, str] = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}

#: bumped whenever the layout of a cache file or the id convention changes.
CACHE_FORMAT = 2

_CHUNK = 1 << 20


def file_sha256(path: Path, *, update: Callable[[int], object] | None = None) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if update is not None:
                update(len(chunk))
    return digest.hexdigest()


def key_from_hashes(hashes: dict[str, str]) -> str:
    """Cache key of a dataset: sha256 over the format version and each split file's sha256."""
    digest = hashlib.sha256(f"emu-dgl-kg-v{CACHE_FORMAT}".encode())
    for split in SPLITS:
        digest.update(f"\n{split}:{hashes[split]}".encode())
    return digest.hexdigest()


def splits_key(directory: Path) -> str:
    """:func:`key_from_hashes` of the split files of ``directory`` as they are now."""
    return key_from_hashes({s: file_sha256(directory / f) for s, f in SPLITS.items()})


def check_split_file(path: Path) -> None:
    """Raise DataError when a split file is missing, not a regular file (a FIFO, a device,
    a link loop...), unreadable, or empty."""
    from emu_dgl.files import describe_kind

    if not os.path.lexists(path):
        raise DataError(
            f"{path}: split file not found; a dataset folder needs train.txt, valid.txt and test.txt"
        )
    if not path.is_file():  # follows a link: a link to a regular file is fine
        kind = describe_kind(path)
        if kind == "a symbolic link":  # to something that is not a regular file
            kind = f"a symbolic link to {describe_kind(Path(os.path.realpath(path)))}"
        raise DataError(
            f"{path}: split file is {kind}, not a regular file; put a text file of "
            "'head<TAB>relation<TAB>tail' lines there"
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the split file ({exc.strerror}); check its permissions"
        ) from None
    if path.stat().st_size == 0:
        raise DataError(
            f"{path}: split file is empty; it needs one 'head<TAB>relation<TAB>tail' per line"
        )


def read_split_bytes(path: Path) -> tuple[np.ndarray, str]:
    """A split file's bytes and their sha256, from one read (see
    :func:`emu_dgl.data.parse.read_once`; a NUL byte stops the read with a one-line error)."""
    from emu_dgl.data.parse import read_once

    return read_once(path, open)


def read_split(path: Path) -> np.ndarray:
    """Parse one split file into an object array of shape (N, 3) holding the raw names.

    Raises DataError naming the file (and the first bad line) when the file is
    missing, empty, not UTF-8, holds a NUL byte, or has a line without exactly three
    tab-separated, non-empty fields. (Datasets are loaded without this array of Python
    strings: see :mod:`emu_dgl.data.parse`.)
    """
    from emu_dgl.data.parse import label_splits, parse_split

    check_split_file(path)
    (ids,), entities, relations = label_splits([parse_split(path, *read_split_bytes(path))])
    entity_names = np.asarray(list(entities), dtype=object)
    relation_names = np.asarray(list(relations), dtype=object)
    triples = np.empty((ids.shape[1], 3), dtype=object)
    triples[:, 0], triples[:, 1], triples[:, 2] = (
        entity_names[ids[0]],
        relation_names[ids[1]],
        entity_names[ids[2]],
    )
    return triples


def warn_untidy_names(where: object, entities: Sequence[str], relations: Sequence[str]) -> None:
    """Warn (with examples) about names with surrounding whitespace or a byte-order mark:
    ' usa' and 'usa' are two entities to the loader, which is rarely what the file meant.
    Called on every load (a cached graph too), so the warning never goes stale."""
    from emu_dgl.errors import EmuDglWarning, shown

    examples, count = [], 0
    for names in (entities, relations):
        present: set[str] | None = None
        for index in _untidy_candidates(names):
            name = names[index]
            tidy = name.replace("\ufeff", "").strip()
            if tidy != name:
                count += 1
                if len(examples) < 3:
                    present = set(names) if present is None else present
                    twin = f" (also present as {shown(tidy, 40)})" if tidy in present else ""
                    examples.append(shown(name, 40) + twin)
    if count:
        warnings.warn(
            f"{where}: {count} name(s) have surrounding whitespace or a byte-order mark, e.g. "
            f"{', '.join(examples)}; each is a name of its own: strip them if the files did not mean that",
            EmuDglWarning,
            stacklevel=3,
        )


#: First or last bytes of a name that may be whitespace to ``str.strip`` (ASCII
#: whitespace, and any byte of a multi-byte character such as U+00A0 or U+3000).
_EDGE_BYTES = np.zeros(256, dtype=bool)
_EDGE_BYTES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_EDGE_BYTES[0x80:] = True


def _untidy_candidates(names: Sequence[str]) -> Sequence[int]:
    """Indices of the names that may be untidy: all of a list; of a blob (:class:`Names`),
    those whose first or last byte may be whitespace or that hold a byte-order mark."""
    from emu_dgl.data.names import Names

    if not isinstance(names, Names) or len(names) == 0:
        return range(len(names))
    blob, offsets = names.blob, names.offsets
    lengths = np.diff(offsets) - 1
    starts = offsets[:-1]
    padded = np.concatenate([blob, np.zeros(1, dtype=np.uint8)])  # an empty name reads 0
    edge = _EDGE_BYTES[padded[starts]] | _EDGE_BYTES[padded[starts + np.maximum(lengths - 1, 0)]]
    bom = np.flatnonzero((blob[:-2] == 0xEF) & (blob[1:-1] == 0xBB) & (blob[2:] == 0xBF))
    edge[np.searchsorted(offsets, bom, side="right") - 1] = True
    return np.flatnonzero(edge & (lengths > 0)).tolist()


def encode_names(names: Sequence[str]) -> np.ndarray:
    """Names as one uint8 array ('\\n'-joined UTF-8), so caches need no pickle."""
    from emu_dgl.data.names import Names

    if isinstance(names, Names):
        return names.blob
    blob = "\n".join(names)
    if blob.count("\n") != max(len(names) - 1, 0):
        raise ValueError("names must not contain newlines")
    return np.frombuffer(blob.encode("utf-8"), dtype=np.uint8)


def decode_names(blob: np.ndarray, count: int) -> list[str]:
    names = blob.tobytes().decode("utf-8").split("\n") if count else []
    if len(names) != count:
        raise ValueError(f"expected {count} names, found {len(names)}")
    return names


#: A temporary file older than this is left over from a killed writer (see remove_stale_temporaries).
STALE_SECONDS = 3600.0


def remove_stale_temporaries(path: Path, *, prefix: str | None = None) -> None:
    """Delete ``<prefix>*.tmp`` files next to ``path`` that a killed process left behind.

    Only files older than :data:`STALE_SECONDS` go: a recent one may belong to another
    process writing the same cache right now.
    """
    import time

    pattern = f"{prefix if prefix is not None else '.' + path.name + '.'}*.tmp"
    for tmp in path.parent.glob(pattern):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place
    (through :func:`emu_dgl.files.write_atomic`: no link followed, a one-line error)."""
    from emu_dgl.files import make_dir, write_atomic

    make_dir(path.parent, "cache folder")
    remove_stale_temporaries(path)
    write_atomic(path, write, "cache file")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed .npz atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def load_npz(path: Path, what: str = "saved graph") -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` as :func:`save_npz` writes it, never pickled.

    The file is opened as a regular file (a FIFO is refused, never waited on), and each
    member's header (dtype, shape) is checked against the member's size before its data is
    read: a truncated, compressed, pickled, edited or corrupt file (zip CRCs) is one
    DataError, and reading never takes more memory than the file's own size.
    """
    import zipfile

    from emu_dgl.errors import EmuDglError
    from emu_dgl.files import open_read

    try:
        with open_read(path, what, follow=True) as handle, zipfile.ZipFile(handle) as archive:
            return {
                info.filename.removesuffix(".npy"): _read_member(archive, info)
                for info in archive.infolist()
            }
    except EmuDglError as exc:
        raise DataError(str(exc)) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise DataError(
            f"{path}: not an intact .npz written by emu-dgl ({reason}); restore the file "
            "(a cache file can be deleted: it is rebuilt)"
        ) from None


def _read_member(archive: object, info: object) -> np.ndarray:
    """One ``.npy`` member, its header checked against its size before anything is read."""
    import zipfile

    assert isinstance(archive, zipfile.ZipFile) and isinstance(info, zipfile.ZipInfo)
    name = info.filename
    if not name.endswith(".npy"):
        raise ValueError(f"member '{name[:60]}' is not an array")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"member '{name[:60]}' is compressed; emu-dgl writes arrays uncompressed")
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in readers:
            raise ValueError(f"member '{name[:60]}' has .npy format {version}")
        shape, fortran, dtype = readers[version](member)
        if dtype.hasobject:
            raise ValueError(f"member '{name[:60]}' holds Python objects (a pickle)")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        left = info.file_size - member.tell()
        if size != left:
            raise ValueError(
                f"member '{name[:60]}' says shape {shape} ({size} bytes) but holds {left} bytes"
            )
        data = bytearray(size)
        if member.readinto(data) != size or member.read(1):  # the end: the CRC is checked
            raise ValueError(f"member '{name[:60]}' is cut short")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")
