r"""Entity rows initialised by their ids, so that any split of a table is the same table.

A run's entity table is drawn block by block: rows ``[k R, (k + 1) R)`` (``R`` =
:data:`ROWS_PER_BLOCK`) are ``U(-a, a)`` from a generator seeded by ``(seed, k)``
alone. Row ``i`` therefore has the same values whether one process builds the whole
table or ``N`` processes each build their own block of rows (a process draws only the
blocks its rows touch, at most two of them partly), and whatever the number of entities.
The counter-based idea is that of Philox streams keyed by position (JAX's and NumPy's
``SeedSequence``-spawned generators), with PyTorch's own CPU generator per block: its
uniform draw is serial, so the values do not depend on the thread count either.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ROWS_PER_BLOCK", "block_seed", "uniform_rows_"]

#: Rows drawn from one generator. Part of what a seed means: changing it changes every
#: run's initial table.
ROWS_PER_BLOCK = 4096

_MASK = (1 << 64) - 1
_SALT = 0x656D752D64676C00  # "emu-dgl\0": a stream of its own, apart from other uses of the seed


def block_seed(seed: int, block: int) -> int:
    """The generator seed of block ``block`` of a table initialised with ``seed``: the
    splitmix64 finaliser of the pair, so that neighbouring blocks and seeds get unrelated
    streams (kept to 63 bits)."""
    x = (seed * 0x9E3779B97F4A7C15 + block * 0xD1B54A32D192ED03 + _SALT) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return (x ^ (x >> 31)) >> 1


@torch.no_grad()
def uniform_rows_(weight: Tensor, first_row: int, bound: float, seed: int) -> Tensor:
    """Fill ``weight`` (rows ``first_row ..`` of a table) with ``U(-bound, bound)``, each
    block of :data:`ROWS_PER_BLOCK` rows from its own generator (see the module doc).

    Drawn in float32 on the CPU and copied into ``weight``'s dtype and device one block
    at a time (at most one block of extra memory)."""
    rows, width = weight.shape
    end = first_row + rows
    values = torch.empty(ROWS_PER_BLOCK, width, dtype=torch.float32)
    for block in range(first_row // ROWS_PER_BLOCK, -(-end // ROWS_PER_BLOCK)):
        start = block * ROWS_PER_BLOCK
        generator = torch.Generator().manual_seed(block_seed(seed, block))
        values.uniform_(-bound, bound, generator=generator)
        lo, hi = max(start, first_row), min(start + ROWS_PER_BLOCK, end)
        weight[lo - first_row : hi - first_row].copy_(values[lo - start : hi - start])
    return weight
