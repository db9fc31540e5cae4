r"""An entity table split over processes: each rank owns a contiguous block of rows.

With ``N`` processes and ``E`` entities, rank ``r`` owns rows ``[b_r, b_{r+1})`` with
``b_r = floor(r E / N)`` (blocks differ by at most one row), and the optimizer state of
those rows. A lookup of ids by any rank is one exchange with ``all_to_all_single``:

1. the rank takes the distinct ids it needs (sorted, so the ids of each owner are one
   contiguous run) and sends each owner its run; run lengths differ per owner and per
   rank, so split sizes are uneven and are exchanged first;
2. each owner gathers the requested rows of its block and sends them back;
3. the rank expands the distinct rows to the lookup's shape.

The backward pass runs the same exchange in reverse: the gradient of each distinct row
(duplicates of the lookup summed) goes back to its owner, which receives a sparse
gradient for its block (rows requested by several ranks appear once per rank and are
summed when the optimizer coalesces them). Every rank must make the same sequence of
lookups (they are collective calls); the data-parallel trainer guarantees that.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from emu_dgl.training.precision import compute_rows
from emu_dgl.training.sparse import push_rows

__all__ = ["Exchange", "ShardedEmbedding", "ShardedTable", "gather_rows", "shard_bounds"]


def shard_bounds(num_rows: int, world_size: int) -> list[int]:
    """``[b_0 = 0, b_1, ..., b_N = num_rows]``, rank ``r`` owning ``[b_r, b_{r+1})``."""
    return [r * num_rows // world_size for r in range(world_size + 1)]


def _exchange(tensor: Tensor, send: list[int], recv: list[int]) -> Tensor:
    """``all_to_all_single`` along dim 0 with uneven splits: ``send[r]`` rows to rank ``r``,
    ``recv[r]`` rows from it."""
    out = tensor.new_empty((sum(recv), *tensor.shape[1:]))
    dist.all_to_all_single(
        out, tensor.contiguous(), output_split_sizes=recv, input_split_sizes=send
    )
    return out


class Exchange:
    """One lookup's trip between the ranks: which distinct ids go to which owner.

    Building it synchronises with the host (the split sizes are exchanged and read), so a
    step with a sharded table runs eagerly (no CUDA graph); the arithmetic around it is
    the same pure step as on one process.
    """

    def __init__(self, ids: Tensor, table: ShardedEmbedding) -> None:
        unique, self.inverse = torch.unique(ids.reshape(-1), sorted=True, return_inverse=True)
        bounds = torch.tensor(table.bounds, dtype=unique.dtype, device=unique.device)
        edges = torch.searchsorted(unique, bounds)
        send_counts = edges[1:] - edges[:-1]
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts)
        self.send, self.recv = send_counts.tolist(), recv_counts.tolist()
        # the ids other ranks (and this one) ask this rank for, as rows of its block
        self.local = _exchange(unique, self.send, self.recv) - table.bounds[table.rank]
        self.num_unique = len(unique)

    def rows(self, block: Tensor) -> Tensor:
        """``[N, width]``: the rows of the lookup's ids, whoever owns them."""
        served = _exchange(block.index_select(0, self.local), self.recv, self.send)
        return served.index_select(0, self.inverse)

    def gradients(self, grad: Tensor) -> tuple[Tensor, Tensor]:
        """``(local rows, gradients)`` this rank receives for its block: each rank's
        lookups summed per distinct id (rows asked for by several ranks appear once per
        rank; the optimizer sums them)."""
        width = grad.shape[-1]
        per_row = grad.new_zeros(self.num_unique, width).index_add_(
            0, self.inverse, grad.reshape(-1, width)
        )
        return self.local, _exchange(per_row, self.send, self.recv)


class _ShardedLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: Tensor, ids: Tensor, table: ShardedEmbedding) -> Tensor:  # type: ignore[override]
        exchange = Exchange(ids, table)
        ctx.exchange, ctx.shape = exchange, weight.shape
        return compute_rows(exchange.rows(weight)).view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        local, received = ctx.exchange.gradients(grad)
        return (
            torch.sparse_coo_tensor(
                local.unsqueeze(0), received, ctx.shape, check_invariants=False
            ),
            None,
            None,
        )


class ShardedTable:
    """The training step's entity-row seam for a sharded table (see
    :class:`~emu_dgl.training.step.EntityTable`): ``gather`` fetches the rows of global
    ids from their owners, ``push`` sends the lookups' gradients back, and the owner's
    optimizer gets them as rows of its block."""

    pure = False

    def __init__(self, embedding: ShardedEmbedding) -> None:
        self.embedding = embedding
        self._exchange: Exchange | None = None

    def gather(self, ids: list[Tensor]) -> list[Tensor]:
        """The rows of each id tensor (1-d), fetched from their owners in one exchange."""
        self._sizes = [len(part) for part in ids]
        self._exchange = Exchange(torch.cat(ids), self.embedding)
        rows = self._exchange.rows(self.embedding.weight.detach())  # (bfloat16 rows travel small)
        return list(compute_rows(rows).split(self._sizes))

    def push(self, optimizer: torch.optim.Optimizer, parts: list[tuple[Tensor, Tensor]]) -> None:
        """The gathered rows' gradients, in parts in the order of the gathered ids (a part
        with no gradient, left out, counts as zero)."""
        assert self._exchange is not None, "push follows the gather of the same step"
        width = parts[0][1].shape[-1]
        grads = [g.reshape(-1, width) for _, g in parts]
        missing = sum(self._sizes) - sum(len(g) for g in grads)
        if missing:
            grads.append(grads[0].new_zeros(missing, width))
        local, received = self._exchange.gradients(torch.cat(grads))
        push_rows(optimizer, self.embedding.weight, local, received)
        self._exchange = None


class ShardedEmbedding(nn.Module):
    """Drop-in for ``nn.Embedding`` in a :class:`~emu_dgl.models.KGEModel` on ``N`` ranks.

    ``weight`` is this rank's block (rows ``bounds[rank]`` to ``bounds[rank + 1]``), so
    code that scores "all entities" with ``weight`` scores this rank's block;
    ``forward(ids)`` takes global ids and returns their rows whoever owns them.
    """

    def __init__(self, block: Tensor, bounds: list[int], rank: int) -> None:
        super().__init__()
        if block.shape[0] != bounds[rank + 1] - bounds[rank]:
            raise ValueError(
                f"rank {rank} block has {block.shape[0]} rows, bounds say {bounds[rank + 1] - bounds[rank]}"
            )
        self.weight = nn.Parameter(block)
        self.bounds = list(bounds)
        self.rank = rank
        self.num_embeddings = bounds[-1]
        self.embedding_dim = block.shape[1]

    @property
    def row_offset(self) -> int:
        return self.bounds[self.rank]

    def forward(self, ids: Tensor) -> Tensor:
        return _ShardedLookup.apply(self.weight, ids, self)

    def extra_repr(self) -> str:
        return f"rows {self.bounds[self.rank]}..{self.bounds[self.rank + 1]} of {self.num_embeddings}, dim {self.embedding_dim}"


def gather_rows(block: Tensor, bounds: list[int], *, dst: int = 0) -> Tensor | None:
    """The full table on rank ``dst`` (``None`` elsewhere), from every rank's block.

    Blocks are padded to the largest block for ``dist.gather`` (which needs equal sizes)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    largest = max(bounds[r + 1] - bounds[r] for r in range(world))
    padded = block.new_zeros(largest, *block.shape[1:])
    padded[: block.shape[0]] = block
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == dst else None
    dist.gather(padded, parts, dst=dst)
    if parts is None:
        return None
    return torch.cat([part[: bounds[r + 1] - bounds[r]] for r, part in enumerate(parts)])
