r"""Data-parallel training with the entity table split over the ranks.

One run on ``N`` processes: the single-process :class:`Trainer` with the same pure
training step (:mod:`emu_dgl.training.step`), given three seams:

- **Rows**: every rank reads the same batch of positives (the per-epoch permutation of
  ``(seed, epoch)``) and draws everything random for the *whole* batch, from the same
  generator, exactly as one process would (sides, negatives, filter candidates, EMU
  masks: every random word of the step). It then trains its own slice of the batch,
  rows ``[floor(r B / N), floor((r+1) B / N))`` (``TrainStep(rows=...)``). Each loss
  term is divided by the whole batch's ``B``, so the ranks' gradients add up to the
  gradient of the one-process step: a run on ``N`` processes follows the one-process
  run up to the order of floating-point sums (checked to 1e-9 in float64).
- **Entity table**: each rank keeps only its block of rows (a
  :class:`~emu_dgl.distributed.sharded.ShardedEmbedding`) and that block's optimizer
  state; the step's ``table`` seam (:class:`~emu_dgl.distributed.sharded.ShardedTable`)
  fetches rows from their owners and returns the lookups' gradients to them with
  ``all_to_all_single``.
- **Replicated parameters** (relations, a decoder's scalars): their gradients are
  summed with ``all_reduce`` after backward (the step's ``after_backward`` seam), so
  every rank applies the same update.

The optimizer is built by the one spec every trainer uses
(:func:`~emu_dgl.training.build.optimizer_from_config`) over this rank's parameters:
the block is updated row-wise or densely (a dense update of each block is the dense
update of the table). A whole-table penalty adds each block's part on its owner and a
share of the relations' part on every rank.

**Evaluation**: every rank scores the queries against its own entity block; the target's
score (from its owner, ``all_reduce(MAX)``) and each rank's count of better and tied
entities (``all_reduce(SUM)``) give exactly the one-process ranks.

Not supported on more than one process: the 1-vs-all loss (its softmax runs over every
entity of every block), and the reference schedule (``train.schedule=reference``), whose
switch is dense Adam over every row: each block could take it (a dense update of each
block is the dense update of the table), but a run on several processes has not been
checked against one process across the switch yet, so it is refused rather than trusted. The exchange reads split sizes on the host, so a step with a
sharded table runs eagerly, not as a CUDA graph.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from emu_dgl.config import Config
from emu_dgl.distributed.sharded import ShardedEmbedding, ShardedTable, shard_bounds
from emu_dgl.errors import ConfigError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.evaluation.ranking import removed_counts
from emu_dgl.training.build import scheduler_from_config
from emu_dgl.training.step import TrainStep
from emu_dgl.training.trainer import Trainer
from emu_dgl.typing import Side

__all__ = ["DistributedTrainer", "ShardedEvaluator", "check_distributed_config"]


def check_distributed_config(config: Config, world_size: int) -> None:
    """One-line errors for settings a multi-process run cannot honour."""
    if config.model.encoder != "table":
        raise ConfigError(
            f"model.encoder={config.model.encoder} is not supported on {world_size} processes "
            "(a graph encoder passes over the whole graph, which one process holds); train on "
            "one process"
        )
    if config.loss.name == "1vsall":
        raise ConfigError(
            f"loss.name=1vsall is not supported on {world_size} processes (see README 'Large graphs'); train on one process or change it"
        )
    if config.train.schedule == "reference":
        raise ConfigError(
            f"train.schedule=reference is not supported on {world_size} processes: its switch is "
            "dense Adam over every entity row, not yet checked across processes; train "
            "on one process, or use train.schedule=step or none"
        )
    if config.train.batch_size < world_size:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be at least the number of processes ({world_size})"
        )


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
        # The step and the optimizer again, now over this rank's block.
        self.step = self._make_step()
        self.optimizer = self._make_optimizer(self.optim_state.phase)
        self.scheduler = scheduler_from_config(self.config, self.optimizer)
        self._run_step = self._step_runner()

    @property
    def entity_rows_per_rank(self) -> list[int]:
        return [self.bounds[r + 1] - self.bounds[r] for r in range(self.world_size)]

    @property
    def batch_slice(self) -> tuple[int, int]:
        """The rows of every batch this rank trains."""
        size = self.batch_size
        return (
            self.rank * size // self.world_size,
            (self.rank + 1) * size // self.world_size,
        )

    def _make_step(self) -> TrainStep:
        entity = self.model.entity
        if not isinstance(entity, ShardedEmbedding):
            return super()._make_step()  # during Trainer.__init__, replaced right after
        step = super()._make_step(rows=self.batch_slice, table=ShardedTable(entity))
        step.after_backward = self._sum_replicated_gradients
        return step

    def _sum_replicated_gradients(self) -> None:
        """Relations and a decoder's scalars are replicated: sum their gradients (the
        entity block's gradient belongs to this rank alone)."""
        block = self.model.entity.weight
        for param in self.model.parameters():
            if param is not block and param.grad is not None:
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
        self,
        scorer: object,
        triples: Tensor,
        side: Side,
        *,
        estimate_sides: int = 0,
        table: bool = False,
    ) -> Tensor:
        if self.protocol == "sampled":  # lookups go through the sharded table; every rank agrees
            return super().ranks(scorer, triples, side, estimate_sides=estimate_sides, table=table)
        entity = scorer.entity  # type: ignore[attr-defined]
        lo, hi = entity.bounds[entity.rank], entity.bounds[entity.rank + 1]
        num_entities = entity.num_embeddings
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
            # sign(x - s): +1 better, 0 tie, -1 worse or removed; summed over all ranks' blocks,
            # with the ties (see evaluation.ranking.rank_table for the algebra).
            signs = scores.sub_(target_score[:, None]).sign_()
            sums = torch.stack(
                [signs.sum(1, dtype=torch.float64), (signs == 0).sum(1).double()], dim=1
            )
            dist.all_reduce(sums)
            total, ties = sums[:, 0], sums[:, 1]
            better = (total + num_entities - ties) / 2.0
            removed = removed_counts(filter_rows, filter_cols, target, num_entities)
            candidates = (num_entities - removed + 1).double()
            out.append(torch.stack([1.0 + better, 1.0 + better + ties, candidates], dim=1))
        ranks = torch.cat(out) if out else torch.empty(0, 3, dtype=torch.double)
        return ranks if table else ranks[:, :2].mean(1)
