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

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Callable
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
    "read_split",
    "splits_key",
]

#: split name -> file name, in the order ids are assigned.
SPLITS: dict[str, str] = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}

#: bumped whenever the layout of a cache file or the id convention changes.
CACHE_FORMAT = 1

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


def splits_key(directory: Path) -> str:
    """Cache key of a dataset folder: sha256 over the format version and each split file's sha256."""
    digest = hashlib.sha256(f"emu-dgl-kg-v{CACHE_FORMAT}".encode())
    for split, file_name in SPLITS.items():
        digest.update(f"\n{split}:{file_sha256(directory / file_name)}".encode())
    return digest.hexdigest()


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


def _check_no_nul(path: Path) -> None:
    """A streaming pass for NUL bytes (a binary or sparse file), before the parser reads the
    whole file into memory: the error names the line, at the cost of one buffered read."""
    offset, lines = 0, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            at = chunk.find(b"\x00")
            if at >= 0:
                line_no = lines + chunk.count(b"\n", 0, at) + 1
                raise DataError(
                    f"{path}, line {line_no}: a NUL byte (byte offset {offset + at}); this is a binary "
                    "file, not tab-separated text"
                )
            lines += chunk.count(b"\n")
            offset += len(chunk)


def read_split(path: Path) -> np.ndarray:
    """Parse one split file into an object array of shape (N, 3) holding the raw names.

    Raises DataError naming the file (and the first bad line) when the file is
    missing, empty, not UTF-8, or has a line without exactly three tab-separated,
    non-empty fields.
    """
    import pandas as pd  # imported here: pandas costs ~0.3 s and only loading needs it

    check_split_file(path)
    _check_no_nul(path)
    try:
        with warnings.catch_warnings():
            # A first line with more than three fields only warns (and drops data): make it fail.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep="\t",
                header=None,
                names=["head", "relation", "tail"],
                index_col=False,
                dtype=str,
                quoting=csv.QUOTE_NONE,
                na_filter=False,
                keep_default_na=False,
                engine="c",
                encoding="utf-8",
            )
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError) as exc:
        raise _malformed(path, str(exc).strip()) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the split file ({exc.strerror})") from None
    triples = frame.to_numpy(dtype=object)
    if triples.shape[0] == 0:
        raise DataError(
            f"{path}: split file has no triples; it needs one 'head<TAB>relation<TAB>tail' per line"
        )
    if (triples == "").any():  # a missing or empty field
        raise _malformed(path, "a field is empty")
    return triples


def warn_untidy_names(where: object, entities: list[str], relations: list[str]) -> None:
    """Warn (with examples) about names with surrounding whitespace or a byte-order mark:
    ' usa' and 'usa' are two entities to the loader, which is rarely what the file meant.
    Called on every load (a cached graph too), so the warning never goes stale."""
    from emu_dgl.errors import EmuDglWarning, shown

    examples, count = [], 0
    for names in (entities, relations):
        present = set(names)
        for name in names:
            tidy = name.replace("\ufeff", "").strip()
            if tidy != name:
                count += 1
                if len(examples) < 3:
                    twin = f" (also present as {shown(tidy, 40)})" if tidy in present else ""
                    examples.append(shown(name, 40) + twin)
    if count:
        warnings.warn(
            f"{where}: {count} name(s) have surrounding whitespace or a byte-order mark, e.g. "
            f"{', '.join(examples)}; each is a name of its own: strip them if the files did not mean that",
            EmuDglWarning,
            stacklevel=3,
        )


def _not_utf8(path: Path) -> DataError:
    """Name the line and the file's byte offset of the first byte that is not UTF-8.

    (The parser's own error counts bytes from the start of its internal buffer.)
    """
    offset = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataError(
                    f"{path}, line {line_no}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte offset "
                    f"{offset + exc.start} of the file); save it as UTF-8"
                )
            offset += len(raw)
    return DataError(f"{path}: not UTF-8 text; save it as UTF-8")


def _malformed(path: Path, detail: str) -> DataError:
    """Scan the file once more, in Python, to name the first line that is not three fields."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            line_no, reason = _first_bad_line(handle)
    except UnicodeDecodeError:  # the tokenizer stopped at a bad line before reaching this byte
        return _not_utf8(path)
    if line_no is None:  # pragma: no cover - the tokenizer and this scan disagree
        return DataError(f"{path}: cannot parse as tab-separated triples ({detail})")
    return DataError(
        f"{path}, line {line_no}: {reason}; each line must be 'head<TAB>relation<TAB>tail'"
    )


def _first_bad_line(handle: IO[str]) -> tuple[int | None, str]:
    for line_no, raw in enumerate(handle, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip(" \r"):
            continue  # blank lines are skipped, as the fast path does
        fields = line.split("\t")
        if len(fields) != 3:
            return line_no, f"expected 3 tab-separated fields, found {len(fields)}"
        if any(not field for field in fields):
            return line_no, "empty field"
    return None, ""


def encode_names(names: list[str]) -> np.ndarray:
    """Names as one uint8 array ('\\n'-joined UTF-8), so caches need no pickle."""
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
