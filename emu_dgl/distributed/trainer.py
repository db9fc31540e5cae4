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

**Memory**: a rank allocates and initialises only its block of entity rows and that
block's optimizer state, never the whole table: rows are initialised by their ids
(:func:`~emu_dgl.models.init.uniform_rows_`), so the blocks of ``N`` ranks are the table one
process builds. Checkpoints are sharded the same way
(:mod:`~emu_dgl.distributed.checkpoints`): each rank writes its rows, a manifest commits
them together, and a checkpoint of ``N`` processes resumes on ``M``.

The reference schedule's switch to dense Adam is a dense Adam over each rank's block (a
dense update of each block is the dense update of the table, checked against one
process across the switch). Not supported on more than one process: the 1-vs-all loss
(its softmax runs over every entity of every block). The exchange reads split sizes on
the host, so a step with a sharded table runs eagerly, not as a CUDA graph.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from emu_dgl.config import Config
from emu_dgl.distributed.checkpoints import ShardedCheckpoints
from emu_dgl.distributed.sharded import ShardedEmbedding, ShardedTable, shard_bounds
from emu_dgl.errors import ConfigError, DivergenceError
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.evaluation.ranking import removed_counts
from emu_dgl.training.build import model_from_config
from emu_dgl.training.run import Admission, ResumePlan
from emu_dgl.training.step import TrainStep
from emu_dgl.training.trainer import Trainer, all_finite
from emu_dgl.typing import Side

__all__ = ["DistributedTrainer", "ShardedEvaluator", "check_distributed_config"]


def check_distributed_config(config: Config, world_size: int) -> None:
    """One-line errors for settings a multi-process run cannot honour."""
    if config.loss.name == "1vsall":
        raise ConfigError(
            f"loss.name=1vsall is not supported on {world_size} processes (see README 'Large graphs'); train on one process or change it"
        )
    if config.train.batch_size < world_size:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be at least the number of processes ({world_size})"
        )


class DistributedTrainer(Trainer):
    """:class:`Trainer` on one rank of an initialised ``torch.distributed`` process group.

    ``run_dir`` is the run's folder, shared by the ranks: rank 0 writes the run's files
    (config, data record, metrics), every rank writes its part of each checkpoint. The
    launcher (:mod:`~emu_dgl.distributed.launch`) admits the run for all of them.
    """

    def __init__(self, config: Config, run_dir: Any, *, kg: Any = None) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.leader = self.rank == 0
        check_distributed_config(config, self.world_size)
        if self.rank != 0:
            config.train.progress = False
        super().__init__(config, run_dir, kg=kg)
        self.evaluator = ShardedEvaluator.like(self.evaluator)
        self.shards = ShardedCheckpoints(self.run_dir, self.rank, self.world_size, self.bounds)

    def _make_model(self) -> nn.Module:
        """The model with this rank's block of entity rows only (initialised by row id)."""
        rows = self.kg.num_entities
        self.bounds = shard_bounds(rows, self.world_size)
        lo, hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        model = model_from_config(self.config, rows, self.train_kg.num_relations, rows=(lo, hi))
        model.entity = ShardedEmbedding(model.entity.weight.data, self.bounds, self.rank)
        return model

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
        assert isinstance(entity, ShardedEmbedding)
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

    # ------------------------------------------------------------------ the run

    def fit(  # type: ignore[override]
        self, *, resume: ResumePlan | None = None, stop_after: int | None = None
    ) -> dict[str, Any]:
        """Train this rank's part of the run the launcher admitted (``resume``: its plan,
        from :func:`~emu_dgl.training.shards.resume_plan`)."""
        dist.barrier()  # every rank is built before rank 0 writes the run's files
        return self._fit_tracked(Admission(self.run_dir, resume), stop_after)

    def _run_facts(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "entity_rows_per_rank": self.entity_rows_per_rank}

    def _shard_info(self) -> dict[str, Any]:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        block = self.model.entity.weight
        index = next(i for i, p in enumerate(params) if p is block)
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "bounds": self.bounds,
            "entity_param": index,
        }

    def _save_best(self, step: int) -> None:
        self.shards.save_best(step, {**self._best_state(step), "shard": self._shard_info()})

    def _save_last(self, step: int, best: dict[str, Any], *, final: bool = False) -> None:
        state = {**self._state(step, best), "shard": self._shard_info()}
        if final:
            state["final"] = True
        self.shards.save_last(step, state, config=self.config.to_dict())

    def _load_best(self) -> None:
        state = self.shards.load("best", map_location=self.device)
        self.model.load_state_dict(state["model"])

    def _restore(
        self, state: dict[str, Any], changed: set[str] = frozenset()
    ) -> tuple[int, dict[str, Any]]:
        """``state`` is the launcher's plan (the manifest); every rank reads its rows of the
        committed step, resharded if another number of processes wrote it."""
        self.shards.manifest = state["manifest"]
        full = self.shards.load("last", map_location=self.device)
        return super()._restore(full, changed)

    def _check_finite(self, pending: Tensor, step: int) -> None:
        """As on one process, decided by all ranks together (a rank's block alone may
        hold the non-finite weight, and no rank may stop while the others go on)."""
        self._check_loss(pending.tolist(), step)  # the losses are all-reduced: the same everywhere
        flag = all_finite(self.model.parameters()).to(torch.int32).reshape(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if not bool(flag):
            self._diverged(step, "a weight is not finite")

    def _diverged(self, step: int, what: str) -> None:
        self._log({"step": step, "diverged": what})
        last = self.shards.last_step
        kept = (
            f"the last finite checkpoint is kept (step {last}, {self.run_dir / 'checkpoints'})"
            if last is not None
            else "no checkpoint was written before it"
        )
        raise DivergenceError(
            f"training diverged at step {step}: {what}; {kept}. Lower train.lr (now "
            f"{self.config.train.lr:g}; try 10x lower), or use a bounded loss/decoder (e.g. "
            f"loss.name=self_adversarial); 'emu-dgl train --resume {self.run_dir} --set "
            "train.lr=...' continues"
        )


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
