"""Names held as one UTF-8 blob, decoded only where one is asked for.

A graph of five million entities would hold five million Python strings (about 300 MB,
private to each process) if its names were a list. :class:`Names` keeps them as the
bytes of ``"\\n".join(names)`` plus the offset of each name, both NumPy arrays that may
be memory-mapped from a cache file and so shared by every process that loads it. It is
a read-only sequence of ``str``: indexing, iteration, ``len``, ``in`` and ``==`` against
a list behave as they would on the list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

__all__ = ["Names", "names_blob"]

#: Names decoded per chunk while iterating.
_CHUNK = 1 << 16


def names_blob(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(blob, offsets)`` of ``names``: ``blob`` is ``"\\n".join(names)`` in UTF-8 (uint8),
    ``offsets[k]`` the byte where name ``k`` starts, ``offsets[-1] = len(blob) + 1``."""
    if isinstance(names, Names):
        return names.blob, names.offsets
    encoded = [name.encode("utf-8") for name in names]
    blob = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) + 1 for e in encoded], out=offsets[1:])
    return blob, offsets


class Names(Sequence[str]):
    """A read-only sequence of names over ``blob`` and ``offsets`` (see :func:`names_blob`)."""

    __slots__ = ("blob", "offsets")

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        if offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError("names need offsets [count + 1]")
        if len(offsets) > 1 and int(offsets[-1]) != len(blob) + 1:
            raise ValueError("name offsets do not match the blob")
        self.blob = blob
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _decode(self, start: int, stop: int) -> list[str]:
        """Names ``start:stop`` (0 <= start <= stop <= len)."""
        if start >= stop:
            return []
        first, last = int(self.offsets[start]), int(self.offsets[stop]) - 1
        return self.blob[first:last].tobytes().decode("utf-8").split("\n")

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self._decode(start, max(start, stop))
            return [self[i] for i in range(start, stop, step)]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("name index out of range")
        return self.blob[int(self.offsets[i]) : int(self.offsets[i + 1]) - 1].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _CHUNK):
            yield from self._decode(start, min(len(self), start + _CHUNK))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Names):
            return np.array_equal(self.blob, other.blob) and len(self) == len(other)
        if not isinstance(other, list | tuple):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  (mutable-looking, like a list)

    def __repr__(self) -> str:
        shown = self[:3]
        more = ", ..." if len(self) > 3 else ""
        return f"Names({len(self)}: {', '.join(map(repr, shown))}{more})"
