"""Cache files that every process maps instead of copying: a JSON header, then raw arrays.

Layout of a store file::

    MAGIC (8 bytes) | header length (8, little endian) | header CRC-32 (8) | header (UTF-8 JSON)
    | zero padding | array bytes, each starting at a multiple of 64

The header names the store's ``kind`` and ``key`` (what it was built from: for a parsed
dataset, the sha256 of the bytes that were parsed), free ``meta`` data, and each array's
dtype, shape, offset and CRC-32. The CRC of an array is computed starting from the CRC
of the key, so it binds the content to the key: a file whose arrays do not give the CRCs
of its header, or whose header names another key, is not read (the caller rebuilds it).

:func:`read_store` maps the file copy-on-write (:func:`emu_dgl.files.map_read`: never a
link or a FIFO) and returns NumPy arrays over the mapping: no copy is made, the pages are
read on first touch and shared by every process that maps the same file, and a process
that writes into an array changes only its own copy of that page.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["StoreError", "read_store", "write_store"]

MAGIC = b"EMUSTOR1"
_ALIGN = 64
_MAX_HEADER = 1 << 24
_DTYPES = {"<i8", "<i4", "|u1", "<f4", "<u8"}
_CRC_CHUNK = 1 << 26


class StoreError(ValueError):
    """A store file that is not the one asked for (missing, foreign, stale or corrupt)."""


def _crc(seed: int, array: np.ndarray) -> int:
    view = memoryview(np.ascontiguousarray(array).reshape(-1)).cast("B")
    for start in range(0, len(view), _CRC_CHUNK):
        seed = zlib.crc32(view[start : start + _CRC_CHUNK], seed)
    return seed


def _layout(
    arrays: Mapping[str, np.ndarray], *, kind: str, key: str, meta: dict[str, Any]
) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    """The header bytes (with its prefix) and each array's offset."""
    seed = zlib.crc32(key.encode())
    entries: list[dict[str, Any]] = []
    for name, array in arrays.items():
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in _DTYPES:
            raise TypeError(f"store arrays are int64, int32, uint8, uint64 or float32, not {dtype}")
        entries.append(
            {
                "name": name,
                "dtype": dtype.str,
                "shape": list(array.shape),
                "nbytes": int(array.nbytes),
                "crc32": _crc(seed, array),
            }
        )

    def encode(offset0: int) -> bytes:
        offset = offset0
        for entry in entries:
            entry["offset"] = offset
            offset += -(-entry["nbytes"] // _ALIGN) * _ALIGN
        return json.dumps(
            {"format": 1, "kind": kind, "key": key, "meta": meta, "arrays": entries}
        ).encode()

    text = encode(0)
    while True:  # the data starts after the header, whose length depends on the offsets
        start = -(-(24 + len(text)) // _ALIGN) * _ALIGN
        text = encode(start)
        if 24 + len(text) <= start:
            break
    prefix = MAGIC + len(text).to_bytes(8, "little") + zlib.crc32(text).to_bytes(8, "little")
    placed = [(entry["offset"], arrays[entry["name"]]) for entry in entries]
    return prefix + text + bytes(start - 24 - len(text)), placed


def write_store(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    *,
    kind: str,
    key: str,
    meta: dict[str, Any],
    what: str,
) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically (a temporary file renamed into
    place; links and FIFOs at ``path`` are refused, see :mod:`emu_dgl.files`)."""
    from emu_dgl.data.io import remove_stale_temporaries
    from emu_dgl.files import make_dir, write_atomic

    head, placed = _layout(arrays, kind=kind, key=key, meta=meta)

    def write(handle: IO[bytes]) -> None:
        handle.write(head)
        position = len(head)
        for offset, array in placed:
            handle.write(bytes(offset - position))
            data = np.ascontiguousarray(array)
            if data.nbytes:
                handle.write(memoryview(data.reshape(-1)).cast("B"))
            position = offset + data.nbytes

    make_dir(path.parent, "cache folder")
    remove_stale_temporaries(path)
    # Not fsynced: after a crash a torn file fails its checksums and is built again.
    write_atomic(path, write, what, durable=False)


def read_store(
    path: Path, *, kind: str, key: str | None, what: str, verify: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of the store at ``path``, the arrays over a private map of it.

    Raises :class:`StoreError` when the file is not a store of ``kind`` built from ``key``
    (``None``: any key), or when ``verify`` finds an array whose bytes do not give the CRC
    of the header; :class:`~emu_dgl.errors.FileError` when it is missing or not a regular
    file."""
    from emu_dgl.files import map_read

    mapped = map_read(path, what)
    try:
        return _read(mapped, kind=kind, key=key, verify=verify)
    except (KeyError, TypeError, ValueError) as exc:  # a foreign header, or a StoreError
        raise StoreError(
            str(exc) if isinstance(exc, StoreError) else "its header is not a store's"
        ) from None


def _read(
    mapped: Any, *, kind: str, key: str | None, verify: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    size = len(mapped)
    if size < 24 or mapped[:8] != MAGIC:
        raise StoreError("not an emu-dgl store file")
    length = int.from_bytes(mapped[8:16], "little")
    if length > min(_MAX_HEADER, size - 24):
        raise StoreError("its header is cut off")
    text = mapped[24 : 24 + length]
    if zlib.crc32(text) != int.from_bytes(mapped[16:24], "little"):
        raise StoreError("its header is corrupt")
    header = json.loads(text)
    if header.get("format") != 1 or header.get("kind") != kind:
        raise StoreError(f"it is not a {kind} store of this version")
    if key is not None and header.get("key") != key:
        raise StoreError("it was built from other data")
    seed = zlib.crc32(str(header["key"]).encode())
    arrays: dict[str, np.ndarray] = {}
    for entry in header["arrays"]:
        dtype, shape = np.dtype(entry["dtype"]), tuple(int(n) for n in entry["shape"])
        offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
        count = int(np.prod(shape, dtype=np.int64))
        if (
            entry["dtype"] not in _DTYPES
            or min(shape, default=0) < 0
            or nbytes != count * dtype.itemsize
            or offset < 24 + length
            or offset + nbytes > size
        ):
            raise StoreError(f"array {entry['name']!r} does not fit the file")
        array = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)
        if verify and _crc(seed, array) != entry["crc32"]:
            raise StoreError(f"array {entry['name']!r} does not match its checksum")
        arrays[str(entry["name"])] = array
    return dict(header.get("meta", {})), arrays
