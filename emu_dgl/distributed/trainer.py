r"""Data-parallel training with the entity table split over the ranks.

One run on ``N`` processes, built from the single-process :class:`Trainer` with four
changes:

- **Entity table**: each rank keeps only its block of rows (a
  :class:`~emu_dgl.distributed.sharded.ShardedEmbedding`) and that block's optimizer
  state; lookups and gradients travel with ``all_to_all_single``. Relations are
  replicated: their gradients are summed with ``all_reduce`` before every step, so all
  ranks apply the same update.
- **Batch**: every rank reads the same batch of positives (the per-epoch permutation
  of ``(seed, epoch)``) and trains on its own slice, rows ``[floor(r B / N),
  floor((r+1) B / N))``. Its loss is the mean over its slice times ``slice / B``, so the
  summed gradient is exactly the gradient of the one-process batch mean.
- **Randomness**: all ranks hold the same generator. Negatives and EMU masks are drawn
  for the whole batch, in the one-process order, and each rank keeps its slice. The
  draws are therefore the one-process draws; a run on ``N`` processes follows the
  one-process run up to the order of floating-point sums (checked to 1e-9 in float64).
  Drawing is cheap next to scoring; gathers, scoring, backward and the optimizer are
  what the ranks split.
- **Evaluation**: every rank scores the queries against its own entity block; the
  target's score (from its owner, ``all_reduce(MAX)``) and each rank's count of better
  and tied entities (``all_reduce(SUM)``) give exactly the one-process ranks.

Not supported on more than one process (clear errors): per-triple Bernoulli sides, the
1-vs-all loss and whole-table regularisers, all of which touch every entity per step;
and dense entity updates (``train.sparse=false``): the blocks are always updated row-wise,
so Adam is the lazy Adam of :mod:`emu_dgl.training.sparse`. For the same reason the
reference schedule (``train.schedule=reference``), whose switch is dense Adam over every
row, is refused rather than run as lazy Adam.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from emu_dgl.config import Config
from emu_dgl.distributed.sharded import ShardedEmbedding, shard_bounds
from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.training.build import scheduler_from_config
from emu_dgl.training.trainer import Trainer
from emu_dgl.typing import Side

__all__ = ["DistributedTrainer", "ShardedEvaluator", "check_distributed_config"]


def check_distributed_config(config: Config, world_size: int) -> None:
    """One-line errors for settings a multi-process run cannot honour."""
    problems = {
        "sampler.bernoulli": config.sampler.bernoulli,
        "loss.name=1vsall": config.loss.name == "1vsall",
        f"loss.regularizer={config.loss.regularizer}": config.loss.regularizer
        not in ("none", "n3"),
        "train.sparse=false": config.train.sparse is False,
    }
    for key, bad in problems.items():
        if bad:
            raise ConfigError(
                f"{key} is not supported on {world_size} processes (see README 'Large graphs'); train on one process or change it"
            )
    if config.train.schedule == "reference":
        raise ConfigError(
            f"train.schedule=reference is not supported on {world_size} processes: its switch is "
            "dense Adam over every entity row, and the sharded table is updated row by row; train "
            "on one process, or use train.schedule=step or none"
        )
    if config.train.batch_size < world_size:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be at least the number of processes ({world_size})"
        )


class _SliceSampler:
    """Draws negatives for the whole batch (as one process would) and returns this rank's rows."""

    def __init__(self, inner: Any, trainer: DistributedTrainer) -> None:
        self.inner, self.trainer = inner, trainer

    def sample(self, batch: Tensor, side: Side, **kwargs: Any) -> Tensor:
        lo, hi = self.trainer.batch_slice
        return self.inner.sample(self.trainer.full_batch, side, **kwargs)[lo:hi]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _full_then_slice(
    draw: Any, trainer: DistributedTrainer, shape: Any, **kwargs: Any
) -> Tensor | None:
    """A mutation's draw for the whole batch's shape, cut to this rank's rows."""
    lo, hi = trainer.batch_slice
    full = draw((len(trainer.full_batch), *tuple(shape)[1:]), **kwargs)
    return None if full is None else full[lo:hi]


class DistributedTrainer(Trainer):
    """:class:`Trainer` on one rank of an initialised ``torch.distributed`` process group."""

    def __init__(self, config: Config, run_dir: Any, *, kg: Any = None) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        check_distributed_config(config, self.world_size)
        if self.rank != 0:
            config.train.progress = False
        super().__init__(config, run_dir, kg=kg)
        # Same seed on every rank: the full table is initialised identically, then cut.
        full = self.model.entity.weight.detach()
        self.bounds = shard_bounds(full.shape[0], self.world_size)
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        self.model.entity = ShardedEmbedding(full[lo:hi].clone(), self.bounds, self.rank)
        del full
        self.evaluator = ShardedEvaluator.like(self.evaluator)
        if self.sampler is not None:
            self.sampler = _SliceSampler(self.sampler, self)
        if self.mutation is not None:
            for name in ("draw_mask", "draw_weights"):
                if hasattr(self.mutation, name):
                    draw = functools.partial(_full_then_slice, getattr(self.mutation, name), self)
                    object.__setattr__(self.mutation, name, draw)
        self.full_batch = torch.empty(0, 3, dtype=torch.long)
        self.batch_slice = (0, 0)
        self.optimizer = self._make_optimizer(self.optim_state.phase)
        self.scheduler = scheduler_from_config(self.config, self.optimizer)

    @property
    def entity_rows_per_rank(self) -> list[int]:
        return [self.bounds[r + 1] - self.bounds[r] for r in range(self.world_size)]

    def _make_optimizer(self, phase: int) -> torch.optim.Optimizer:
        from emu_dgl.training.sparse import build_optimizer

        if not isinstance(getattr(self.model, "entity", None), ShardedEmbedding):
            return super()._make_optimizer(phase)  # during Trainer.__init__, replaced right after
        cfg = self.config.train
        name, lr = (cfg.optimizer, cfg.lr) if phase == 0 else ("adam", cfg.lr * cfg.lr_decay**phase)
        self.sparse_rows = True
        return build_optimizer(self.model, name, lr=lr, sparse=True)

    def _batch(self, step: int) -> Tensor:
        self.full_batch = super()._batch(step)
        size = len(self.full_batch)
        self.batch_slice = (
            self.rank * size // self.world_size,
            (self.rank + 1) * size // self.world_size,
        )
        return self.full_batch[self.batch_slice[0] : self.batch_slice[1]]

    def _step_loss(self, batch: Tensor, step: int) -> Tensor:
        # Mean over this rank's slice, weighted by its share: the ranks' sum is the batch mean.
        return super()._step_loss(batch, step) * (len(batch) / len(self.full_batch))

    def _sync_gradients(self) -> None:
        for param in self.model.parameters():
            if param.grad is not None and not param.grad.is_sparse:
                dist.all_reduce(param.grad)

    def train_step(self, step: int) -> Tensor:
        loss = super().train_step(step)
        dist.all_reduce(loss)  # the whole batch's loss, for the log
        return loss


class ShardedEvaluator(FilteredEvaluator):
    """Full filtered ranking with each rank scoring its own entity block (see module doc)."""

    @classmethod
    def like(cls, other: FilteredEvaluator) -> ShardedEvaluator:
        new = cls.__new__(cls)
        new.__dict__.update(other.__dict__)
        if dist.get_rank() != 0:
            new.announce_after = None
        return new

    @torch.no_grad()
    def ranks(
        self, scorer: object, triples: Tensor, side: Side, *, estimate_sides: int = 0
    ) -> Tensor:
        if self.protocol == "sampled":  # lookups go through the sharded table; every rank agrees
            return super().ranks(scorer, triples, side, estimate_sides=estimate_sides)
        table = scorer.entity  # type: ignore[attr-defined]
        lo, hi = table.bounds[table.rank], table.bounds[table.rank + 1]
        num_entities = table.num_embeddings
        index = self._index[side]
        triples = triples.to(index.keys.device)
        score_fn = scorer.score_t if side == "tail" else scorer.score_h  # type: ignore[attr-defined]
        out = []
        for batch in triples.split(self.batch_size):
            if side == "tail":
                query, anchor, target = batch[:, [0, 1]], batch[:, 0], batch[:, 2]
            else:
                query, anchor, target = batch[:, [1, 2]], batch[:, 2], batch[:, 0]
            scores = score_fn(query).float()  # [b, rows of this rank]
            rows = torch.arange(len(batch), device=scores.device)
            owned = (target >= lo) & (target < hi)
            target_score = torch.full((len(batch),), float("-inf"), device=scores.device)
            target_score[owned] = scores[rows[owned], target[owned] - lo]
            dist.all_reduce(target_score, op=dist.ReduceOp.MAX)
            filter_rows, filter_cols = index.lookup(anchor, batch[:, 1])
            mine = (filter_cols >= lo) & (filter_cols < hi)
            scores[filter_rows[mine], filter_cols[mine] - lo] = float("-inf")
            scores[rows[owned], target[owned] - lo] = float(
                "-inf"
            )  # the target is not its own rival
            # sign(x - s): +1 better, 0 tie, -1 worse or removed; summed over all ranks' blocks.
            signs = scores.sub_(target_score[:, None]).sign_().sum(1, dtype=torch.float64)
            dist.all_reduce(signs)
            out.append(1.0 + (signs + num_entities) / 2.0)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.double)
