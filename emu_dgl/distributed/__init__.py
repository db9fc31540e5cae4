"""One run on many processes: torch.distributed data parallelism with a sharded entity table."""

from __future__ import annotations

from emu_dgl.distributed.launch import run_workers, torchrun_train, train_distributed
from emu_dgl.distributed.sharded import ShardedEmbedding, gather_rows, shard_bounds

__all__ = [
    "ShardedEmbedding",
    "gather_rows",
    "run_workers",
    "shard_bounds",
    "torchrun_train",
    "train_distributed",
]
