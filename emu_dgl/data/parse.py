"""Split files parsed in bulk: a file's bytes in, id triples and names out.

A split file of twenty million lines must not cost a Python object per line or per
name, so the parser works on the bytes of a file as one NumPy array:

1. **Delimiters.** The positions of every tab and line break, in one pass. A line is
   ``head<TAB>relation<TAB>tail``: exactly two tabs before its line break (``\\n``,
   ``\\r\\n`` or a lone ``\\r``, as pandas' tokenizer reads them). Lines of only spaces
   are skipped, and so is a UTF-8 byte-order mark at the start of the file. Anything
   else (another number of fields, an empty field) is an error naming the file and the
   first bad line.
2. **Names to ids.** Each field is read as its bytes zero-padded to a multiple of 8
   (names hold no NUL byte, so the padded bytes determine the name). Names of at most
   8 bytes (``/m/027rn``, ``00260881``, ``Q42``) are their own 64-bit key; longer ones
   are hashed twice, independently, to 64 bits. ``pandas.factorize`` numbers the keys in
   order of first appearance, which is the id convention (train, valid, test, top to
   bottom, head before tail). For hashed names the second hash then confirms every
   occurrence of an id: two names would share an id only if both hashes collided
   (probability about ``K^2 / 2^128`` for ``K`` names). If only the first one collides
   (about one file in a million of five million names), the file is numbered again
   exactly, name by name.
3. **Names.** The distinct names, one copy each, become the blob of
   :class:`~emu_dgl.data.names.Names` (checked to be UTF-8 in one decode).

The bytes parsed are the bytes hashed for the cache key (:func:`read_once` reads
a file once, hashing as it goes), so a cache can never hold the parse of other bytes
than its key says.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from emu_dgl.data.names import Names
from emu_dgl.errors import DataError

__all__ = ["ParsedSplit", "field", "label_splits", "parse_split", "read_once", "tokenize"]

_CHUNK = 1 << 20
#: Zero bytes kept after a file's bytes, so that a field near the end can be read as a
#: padded window without a copy (a longer name makes one padded copy of the file).
_PAD = 4096
_BOM = b"\xef\xbb\xbf"
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def read_once(path: Path, opener=open) -> tuple[np.ndarray, str]:  # noqa: ANN001
    """The bytes of a split file as a uint8 array (followed by zero padding that is not
    part of it) and their sha256, in one read. A NUL byte stops the read at once with a
    one-line error naming its line (a sparse or binary file is never read whole).

    The buffer is an anonymous memory map: its pages cost memory only once filled."""
    digest = hashlib.sha256()
    try:
        with opener(path, "rb") as handle:
            buffer = mmap.mmap(-1, os.fstat(handle.fileno()).st_size + _CHUNK + _PAD)
            filled = 0
            while True:
                if filled + _CHUNK + _PAD > len(buffer):  # the file grew while being read
                    larger = mmap.mmap(-1, 2 * len(buffer))
                    larger[:filled] = buffer[:filled]
                    buffer = larger
                with memoryview(buffer) as view:
                    got = handle.readinto(view[filled : filled + _CHUNK])
                    if not got:
                        break
                    digest.update(view[filled : filled + got])
                at = buffer.find(b"\x00", filled, filled + got)
                if at >= 0:
                    line = buffer[:at].count(b"\n") + 1
                    raise DataError(
                        f"{path}, line {line}: a NUL byte (byte offset {at}); this is a "
                        "binary file, not tab-separated text"
                    )
                filled += got
    except OSError as exc:
        raise DataError(f"{path}: cannot read the split file ({exc.strerror})") from None
    array = np.frombuffer(buffer, dtype=np.uint8)
    return array[:filled], digest.hexdigest()


# ---------------------------------------------------------------------------- fields


def _positions(data: np.ndarray) -> np.ndarray:
    """Positions of every tab, newline and carriage return, plus one virtual newline at
    the end when the file does not end with a line break (int32 for files under 2 GB)."""
    dtype = np.int32 if len(data) < 2**31 - 1 else np.int64
    parts = []
    for start in range(0, len(data), 1 << 24):
        chunk = data[start : start + (1 << 24)]
        near = np.flatnonzero(chunk <= 13)  # tab (9), \n (10), \r (13), rarer bytes
        kind = chunk[near]
        parts.append((near[(kind == 9) | (kind == 10) | (kind == 13)] + start).astype(dtype))
    if len(data) and data[-1] not in (10, 13):
        parts.append(np.array([len(data)], dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _is(kind: np.ndarray, pattern: tuple[int, ...]) -> bool:
    """Whether ``kind`` repeats ``pattern`` exactly."""
    n = len(pattern)
    return len(kind) % n == 0 and all((kind[i::n] == k).all() for i, k in enumerate(pattern))


def tokenize(data: np.ndarray, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(start, length) of the head, relation and tail fields of every triple line, or a
    one-line DataError naming the first bad line. A line ends at ``\\n``, ``\\r\\n`` or
    a lone ``\\r``."""
    first = 3 if bytes(data[:3]) == _BOM else 0
    delims = _positions(data)
    kind = data[np.minimum(delims, len(data) - 1)]
    if len(delims) and delims[-1] == len(data):
        kind[-1] = 10  # the virtual line break after a last line without one
    if _is(kind, (9, 9, 10)):  # the common file
        triple_delims = delims.reshape(-1, 3)
        line_start = np.concatenate([[first], triple_delims[:-1, 2] + 1]).astype(delims.dtype)
    elif _is(kind, (9, 9, 13, 10)) and (delims[3::4] - delims[2::4] == 1).all():  # \r\n
        quads = delims.reshape(-1, 4)
        triple_delims = quads[:, :3]
        line_start = np.concatenate([[first], quads[:-1, 3] + 1]).astype(delims.dtype)
    else:
        line_start, triple_delims = _general_lines(data, delims, kind, first, path)
    if len(triple_delims) == 0:
        raise DataError(
            f"{path}: split file has no triples; it needs one 'head<TAB>relation<TAB>tail' per line"
        )
    fields = [field(line_start, triple_delims, column) for column in range(3)]
    if any((length <= 0).any() for _, length in fields):
        raise malformed(data, path, "a field is empty")
    return fields


def field(line_start: np.ndarray, delims: np.ndarray, column: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of field ``column`` (0 head, 1 relation, 2 tail) of every line."""
    start = line_start if column == 0 else delims[:, column - 1] + 1
    return start, delims[:, column] - start


def _general_lines(
    data: np.ndarray, delims: np.ndarray, kind: np.ndarray, first: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Line starts and the ``[N, 3]`` delimiters (two tabs, the line break) of the triple
    lines of a file with blank lines, lone ``\r`` line breaks, or errors."""
    newline = kind != 9
    line_of = np.cumsum(newline) - newline  # the line each delimiter belongs to
    ends = delims[newline]
    starts = np.concatenate([[first], ends[:-1] + 1]).astype(delims.dtype)
    tabs = np.bincount(line_of[~newline], minlength=len(ends))
    if (tabs[tabs != 2] != 0).any():
        raise malformed(data, path, "a line has another number of fields")
    for line in np.flatnonzero(tabs == 0):  # must be blank: spaces only
        if bytes(data[starts[line] : ends[line]]).strip(b" "):
            raise malformed(data, path, "a line has one field")
    good = tabs == 2
    tab_positions = delims[~newline].reshape(-1, 2)
    return starts[good], np.concatenate([tab_positions, ends[good, None]], axis=1)


def malformed(data: np.ndarray, path: Path, detail: str) -> DataError:
    """Scan the bytes once more, in Python, to name the first line that is not three fields."""
    text = bytes(data)
    for line_no, line in enumerate(re.split(rb"\r\n|\r|\n", text), start=1):
        if line_no == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if not line.strip(b" "):
            continue
        fields = line.split(b"\t")
        if len(fields) != 3:
            reason = f"expected 3 tab-separated fields, found {len(fields)}"
        elif not all(fields):
            reason = "empty field"
        else:
            continue
        return DataError(
            f"{path}, line {line_no}: {reason}; each line must be 'head<TAB>relation<TAB>tail'"
        )
    # (the vectorised checks and this scan agree on every file)
    return DataError(f"{path}: cannot parse as tab-separated triples ({detail})")


def not_utf8(data: np.ndarray, path: Path) -> DataError | None:
    """The line and byte offset of the first byte of ``data`` that is not UTF-8, if any."""
    text = bytes(data)
    try:
        text.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        line_no = text.count(b"\n", 0, exc.start) + 1
        return DataError(
            f"{path}, line {line_no}: not UTF-8 text (byte 0x{text[exc.start]:02x} at byte offset "
            f"{exc.start} of the file); save it as UTF-8"
        )


# ---------------------------------------------------------------------------- hashing


def _padded(data: np.ndarray, extra: int) -> np.ndarray:
    """``data`` followed by at least ``extra`` zero bytes: the padding :func:`read_once`
    left after the file when there is enough of it, else a padded copy."""
    base = data.base if isinstance(data.base, np.ndarray) else None
    if base is not None and len(base) >= len(data) + extra and base.ctypes.data == data.ctypes.data:
        return base
    return np.concatenate([data, np.zeros(extra, dtype=np.uint8)])


def _windows(data: np.ndarray, width: int) -> np.ndarray:
    """``[len(data), width]`` view: row ``i`` holds ``data[i:i + width]`` (padding after)."""
    return sliding_window_view(_padded(data, width), width)


def _words(data: np.ndarray, width: int) -> np.ndarray:
    """An unaligned uint64 view: element ``i`` is the 8 bytes at ``data[i]`` (little
    endian), readable up to ``width`` bytes past the end of ``data``."""
    padded = _padded(data, width + 8)
    return np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))


#: ``_KEEP[n]`` keeps the first ``n`` bytes of a little-endian word (``n`` = 0..8).
_KEEP = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)


def _short_keys(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Names of at most 8 bytes as their own bytes, one zero-padded little-endian word each,
    through a bijective mix (so that the hash table spreads them): an exact key, since a
    name holds no NUL byte and the mix is invertible, so no check is needed."""
    words = _words(data, 8)
    rows = 1 << 20
    for lo in range(0, len(starts), rows):
        x = words[starts[lo : lo + rows]] & _KEEP[lengths[lo : lo + rows]]
        x *= _M1  # an odd factor, then a shift-xor: both invertible
        x ^= x >> np.uint64(32)
        out[lo : lo + rows] = x


def _hash_fields(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out1: np.ndarray, out2: np.ndarray
) -> None:
    """Two independent 64-bit hashes of each field's bytes (read as little-endian words,
    zero-padded to a multiple of 8 bytes) into ``out1`` and ``out2``."""
    words_per_field = (int(lengths.max()) + 7) // 8
    words = _words(data, 8 * words_per_field)
    rows = 1 << 20
    for lo in range(0, len(starts), rows):
        start, length = starts[lo : lo + rows], lengths[lo : lo + rows]
        # A field's hash depends on its own words only (not on the longest field of the
        # file), so a name hashes alike in every split.
        h1 = np.full(len(start), 0x243F6A8885A308D3, dtype=np.uint64)
        h2 = h1 ^ _K2
        for j in range(words_per_field):
            left = np.clip(length - 8 * j, 0, 8)
            word = words[start + 8 * j] & _KEEP[left]  # the field's bytes of this word
            g1 = (h1 ^ word) * _K1
            g1 ^= g1 >> np.uint64(29)
            g2 = (h2 + (word ^ _M2)) * _K2
            g2 ^= g2 >> np.uint64(31)
            if j == 0 or (left > 0).all():
                h1, h2 = g1, g2
            else:  # fields shorter than this word keep their hash
                h1, h2 = np.where(left > 0, g1, h1), np.where(left > 0, g2, h2)
        for h, m in ((h1, _M1), (h2, _M2)):  # final avalanche (splitmix64's)
            h ^= h >> np.uint64(30)
            h *= m
            h ^= h >> np.uint64(27)
        out1[lo : lo + rows], out2[lo : lo + rows] = h1, h2


# ---------------------------------------------------------------------------- ids


@dataclass
class ParsedSplit:
    """One split file: its bytes, their sha256, and the (start, length) of each column's
    fields (:func:`tokenize`)."""

    path: Path
    data: np.ndarray
    sha256: str
    fields: list[tuple[np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return len(self.fields[0][0])

    def field(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        return self.fields[column]


def parse_split(path: Path, data: np.ndarray, sha256: str) -> ParsedSplit:
    return ParsedSplit(path, data, sha256, tokenize(data, path))


def _first_occurrences(codes: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each code, for codes numbered by first appearance
    (code ``k`` first appears where the running maximum first reaches ``k``)."""
    running = np.maximum.accumulate(codes)
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    np.greater(running[1:], running[:-1], out=new[1:])
    return np.flatnonzero(new)


def _number(splits: list[ParsedSplit], columns: tuple[int, ...]) -> tuple[list[np.ndarray], Names]:
    """Ids of the names in ``columns`` of every split (line by line, the columns of a line
    side by side, splits in order), numbered by first appearance, and the names."""
    import pandas as pd

    width = len(columns)
    total = sum(len(s) for s in splits) * width
    short = max(int(s.field(c)[1].max()) for s in splits for c in columns) <= 8
    keys = np.empty(total, np.uint64)
    check = None if short else np.empty(total, np.uint64)
    start = 0
    for split in splits:  # occurrences line by line, the columns of a line side by side
        count = len(split) * width
        for k, c in enumerate(columns):
            at = slice(start + k, start + count, width)
            if check is None:
                _short_keys(split.data, *split.field(c), out=keys[at])
            else:
                _hash_fields(split.data, *split.field(c), keys[at], check[at])
        start += count
    codes, _ = pd.factorize(keys)
    del keys
    first = _first_occurrences(codes)
    if check is not None and not np.array_equal(check[first][codes], check):
        return _number_exactly(splits, columns)  # a 64-bit collision: number by the names
    return _split_codes(codes, splits, width), _gather_names(splits, columns, first)


def _split_codes(codes: np.ndarray, splits: list[ParsedSplit], width: int) -> list[np.ndarray]:
    """Per split, the ``[N, width]`` ids of ``codes`` (occurrences in split order)."""
    out, start = [], 0
    for split in splits:
        count = len(split) * width
        out.append(codes[start : start + count].reshape(-1, width))
        start += count
    return out


def _gather_names(splits: list[ParsedSplit], columns: tuple[int, ...], first: np.ndarray) -> Names:
    """The names at the first occurrences, as a :class:`Names` blob (checked UTF-8).

    Ids are numbered in order of first appearance, so the first occurrences run through
    the splits in order: each split's part of the blob follows the previous one's."""
    sizes = np.array([len(s) * len(columns) for s in splits])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    pieces, lengths = [], []
    for i, split in enumerate(splits):
        local = first[(first >= bounds[i]) & (first < bounds[i + 1])] - bounds[i]
        row, col = local // len(columns), np.asarray(columns)[local % len(columns)]
        starts, length = np.empty(len(local), np.int64), np.empty(len(local), np.int64)
        for c in columns:
            mask = col == c
            field_start, field_length = split.field(c)
            starts[mask], length[mask] = field_start[row[mask]], field_length[row[mask]]
        pieces.extend(_name_bytes(split.data, starts, length))
        lengths.append(length)
    offsets = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths) + 1, out=offsets[1:])
    blob = np.concatenate(pieces)[:-1] if pieces else np.zeros(0, np.uint8)
    try:
        blob.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        for split in splits:
            error = not_utf8(split.data, split.path)
            if error is not None:
                raise error from None
        raise  # pragma: no cover - every name byte comes from one of the files
    return Names(blob, offsets)


def _name_bytes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The bytes of each field followed by ``\n``, in pieces (row blocks of padded windows,
    compressed to the names' own bytes)."""
    if not len(starts):
        return []
    width = int(lengths.max()) + 1
    windows, column = _windows(data, width), np.arange(width)
    rows = max(1, (1 << 24) // width)
    out = []
    for lo in range(0, len(starts), rows):
        block = windows[starts[lo : lo + rows]]  # [r, width] copies
        length = lengths[lo : lo + rows]
        block[np.arange(len(block)), length] = 10  # the separator after each name
        out.append(block[column <= length[:, None]])
    return out


def _number_exactly(
    splits: list[ParsedSplit], columns: tuple[int, ...]
) -> tuple[list[np.ndarray], Names]:
    """Numbering by the decoded names themselves (the fallback after a hash collision)."""
    import pandas as pd

    from emu_dgl.data.names import names_blob

    values = []
    for split in splits:
        raw = bytes(split.data)
        fields = [split.field(c) for c in columns]
        for i in range(len(split)):
            for start, length in fields:
                values.append(raw[start[i] : start[i] + length[i]].decode("utf-8"))
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return _split_codes(codes, splits, len(columns)), Names(*names_blob(list(uniques)))


def label_splits(
    splits: list[ParsedSplit],
) -> tuple[list[np.ndarray], Names, Names]:
    """Per split the ``[3, N]`` int64 ids (head, relation, tail rows), with duplicates
    still in; the entity names and the relation names."""
    entity_ids, entities = _number(splits, (0, 2))
    relation_ids, relations = _number(splits, (1,))
    ids = []
    for ent, rel in zip(entity_ids, relation_ids, strict=True):
        columns = np.empty((3, len(ent)), dtype=np.int64)
        columns[0], columns[1], columns[2] = ent[:, 0], rel[:, 0], ent[:, 1]
        ids.append(columns)
    return ids, entities, relations
