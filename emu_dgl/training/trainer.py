"""The training loop: one YAML config in, a trained model and filtered metrics out.

Reads top to bottom like a small ``train.py``: build the pieces from the config,
then for each step take a batch of positives and run the step
(:mod:`emu_dgl.training.step`: one pure function that draws the negatives, scores,
takes the loss, runs backward and the optimizer update, eagerly, compiled with
``train.compile``, or replayed as a CUDA graph with ``train.cuda_graph``); validate,
checkpoint and log on their schedules. Everything in the step stays on the configured
device; the only host synchronisation is the loss read-out at logging time (marked in
:meth:`Trainer._log_losses`).

A run goes through named phases: :meth:`Trainer._begin` (a fresh start, or the state of
the checkpoint a resume continues from, and the run's records), :meth:`Trainer._train`
(the loop of steps, logs, validations and checkpoints) and :meth:`Trainer._finish` (the
final validation, the best weights, the final metrics). What a checkpoint holds is in
:mod:`emu_dgl.training.state`, what stops a diverging run in
:mod:`emu_dgl.training.guards`; opening a finished run is :func:`emu_dgl.load_run`
(:mod:`emu_dgl.training.results`).

Determinism: relations are initialised from ``torch.manual_seed(seed)`` and entity
rows by their ids from ``seed`` (:func:`~emu_dgl.models.init.uniform_rows_`); the batch
order of epoch ``e`` is a permutation drawn from a generator seeded by (seed, e), so
any step's batch is known without replaying earlier ones; negatives and EMU masks
come from one device generator whose state is checkpointed; samplers that use DGL's
own RNG (walks on the fly) seed it from (seed, step). A resumed run therefore
draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from emu_dgl.config import Config
from emu_dgl.data.stats import warn_unseen_in_train
from emu_dgl.device import resolve_device, resolve_threads
from emu_dgl.errors import ConfigError, EmuDglError
from emu_dgl.files import append_text, lexists, remove
from emu_dgl.training.build import (
    apply_max_epochs,
    batch_size_for,
    check_components,
    evaluator_from_config,
    fit_negatives,
    head_probability_from_config,
    model_from_config,
    optimizer_from_config,
    sampler_from_config,
    scheduler_from_config,
    scores_all_entities,
    step_from_config,
    switch_step,
)
from emu_dgl.training.components import check_run_components, record_text
from emu_dgl.training.guards import RunGuards, all_finite, warn_wasteful
from emu_dgl.training.inverse import scorer, with_inverse_triples
from emu_dgl.training.records import truncate_log
from emu_dgl.training.run import (
    CONFIG_FILE,
    GRAPH_FILE,
    METRICS_FILE,
    METRICS_LOG,
    Admission,
    ResumePlan,
    open_run,
    read_json,
    remove_final_metrics,
    run_path,
    write_text,
)
from emu_dgl.training.rundata import open_run_data
from emu_dgl.training.runners import step_runner
from emu_dgl.training.state import CheckpointState, OptimState, Progress, model_config
from emu_dgl.training.step import TrainStep
from emu_dgl.typing import Side

__all__ = [
    "CONFIG_FILE",
    "GRAPH_FILE",
    "METRICS_FILE",
    "METRICS_LOG",
    "Trainer",
    "all_finite",
    "model_config",
]


class Trainer(CheckpointState, RunGuards):
    """Builds every piece from a :class:`Config` and trains it into ``run_dir``."""

    #: Whether this process writes the run's own files (metrics log, records, metrics.json);
    #: of a run on several processes, only rank 0 does.
    leader = True

    def __init__(self, config: Config, run_dir: str | Path, *, kg: Any = None) -> None:
        from emu_dgl.training.memory import baseline_bytes

        self.run_dir = run_path(run_dir)
        if lexists(self.run_dir / CONFIG_FILE):  # a run to resume: its plugins are named
            check_run_components(config, self.run_dir)
        else:
            check_components(config)
        self.device = resolve_device(config.train.device)
        self.threads, self.threads_reason = resolve_threads(config.train.threads)
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        self._baseline_bytes = baseline_bytes()  # before the data: the memory plan's first part
        # a graph given in Python is saved into the run (GRAPH_FILE)
        self.config, self.kg, self._save_graph = open_run_data(config, self.run_dir, kg)
        self._prepare_data()
        self._build_components()
        self.preprocess_seconds = time.perf_counter() - started
        # Called with every metrics.jsonl record (logging points and validations only,
        # never inside a step): experiment trackers, the tuner's pruning callback.
        self.log_hooks: list[Callable[[dict[str, Any]], None]] = []
        self.progress_label = "train"  # the progress bar's label (compare: arm and seed)
        self.already_finished = False  # set by fit(): a resumed run that had nothing left to do
        self._pending_losses: list[float] = []  # see _state
        self._resumed_losses: Any = None  # the pending losses of the state resumed from

    def _prepare_data(self) -> None:
        """The graph the model trains on (with inverse triples: 2R relations; ``self.kg``
        stays the data as read, for records, evaluation and prediction), the checks that
        refuse a run that cannot work, the batch columns and the evaluator."""
        from emu_dgl.training.memory import announce_plan, check_memory

        config, kg = self.config, self.kg
        self.train_kg = with_inverse_triples(kg) if config.dataset.inverse_triples else kg
        apply_max_epochs(config, len(self.train_kg.train))
        check_memory(
            config,  # as requested: an absurd sampler.num_negatives is named, not fitted
            kg.num_entities,
            self.train_kg.num_relations,
            self.device,
            train_triples=len(self.train_kg.train),
            eval_triples=max(len(kg.valid), len(kg.test)),
        )
        # said before allocating: every part of a process's peak (see training/memory.py)
        self.memory_plan = announce_plan(config, self.train_kg, self._baseline_bytes)
        warn_wasteful(config, kg, self.threads)
        warn_unseen_in_train(kg)
        if len(self.train_kg.train) == 0:
            raise ConfigError(f"dataset '{kg.name}' has no training triples")
        if len(kg.valid) == 0:
            raise ConfigError(
                f"dataset '{kg.name}' has no validation triples, which choosing the best checkpoint needs; "
                "add a valid split (in Python: kg = kg.random_split(valid=0.05, test=0.05))"
            )
        # Stored column by column, so that a batch's heads, relations and tails are
        # contiguous; train_triples is the [N, 3] view of the same memory.
        self._train_columns = self.train_kg.train.to(self.device).t().contiguous()
        self.train_triples = self._train_columns.t()
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)  # see _batch
        # the graph's filter index (memory-mapped from a dataset cache), on the device
        self.evaluator = evaluator_from_config(config, kg, kg.num_relations, device=self.device)

    def _build_components(self) -> None:
        """The model, sampler, step, optimizer and schedule, each from the config's
        registries (:mod:`emu_dgl.training.build`)."""
        config = self.config
        torch.manual_seed(config.train.seed)
        self.model = self._make_model().to(self.device)
        # what evaluation scores: the model, or its heads as tails of the inverse relations
        self.scorer = scorer(config, self.model, self.kg.num_relations)
        self.generator = torch.Generator(device=self.device).manual_seed(config.train.seed)
        self.one_vs_all = scores_all_entities(config)
        sampler_config, self._note = fit_negatives(config, self.train_kg)  # said when fit starts
        self.sampler = sampler_from_config(
            sampler_config, self.train_kg, self.device, announce=config.train.progress
        )
        self.head_probability = head_probability_from_config(config, self.train_kg, self.device)
        self.batch_size = batch_size_for(config, len(self.train_triples))
        self.step = self._make_step()
        # The step's components, for inspection (the step holds the same objects).
        self.mutation, self.loss_fn = self.step.mutation, self.step.loss
        self.optim_state = OptimState(0, switch_step(config, 0))
        self.optimizer = self._make_optimizer(0)
        self.scheduler = scheduler_from_config(config, self.optimizer)
        self._run_step = self._step_runner()

    def _make_model(self) -> torch.nn.Module:
        """The model of the config (a data-parallel trainer builds its block of rows only)."""
        return model_from_config(
            self.config, self.kg.num_entities, self.train_kg.num_relations, kg=self.kg
        )

    def _make_step(self, **seams: Any) -> TrainStep:
        """The pure step; a data-parallel trainer passes its seams (``rows``, ``table``)."""
        return step_from_config(
            self.config,
            self.model,
            self.sampler,
            head_probability=self.head_probability,
            generator=self.generator,
            batch_size=self.batch_size,
            **seams,
        )

    def _make_optimizer(self, phase: int) -> torch.optim.Optimizer:
        optimizer, self.sparse_rows = optimizer_from_config(self.config, self.model, phase=phase)
        return optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = self.step.optimizer = optimizer

    def _step_runner(self) -> Callable[..., Tensor]:
        """The step as configured: eager, compiled or graphed (:func:`step_runner`)."""
        return step_runner(self.step, self.config.train, self.device)

    # ------------------------------------------------------------------ one step

    def _batch(self, step: int) -> Tensor:
        """Positives of ``step``: slices of a per-epoch permutation seeded by (seed, epoch)."""
        n, size = len(self.train_triples), self.batch_size
        per_epoch = n // size
        epoch, index = divmod(step, per_epoch)
        if self._perm_epoch != epoch:
            gen = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(n, generator=gen).to(self.device)
            self._perm_epoch = epoch
        rows = self._perm[index * size : (index + 1) * size]
        # [B, 3] whose columns are contiguous (strides (1, B)): the step reads columns
        return self._train_columns.index_select(1, rows).t()

    def side(self, step: int) -> Side | None:
        """The side ``step`` corrupts: tails on even steps, heads on odd ones; ``None`` with
        ``sampler.bernoulli`` (the step draws a side per triple)."""
        if self.head_probability is not None:
            return None
        return "tail" if step % 2 == 0 else "head"

    def train_step(self, step: int) -> Tensor:
        """Step ``step`` of the run; returns its loss on the device (not synchronised)."""
        loss = self._run_step(self._batch(step), self.side(step), step=step)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    # ------------------------------------------------------------------ the run

    def _log(self, record: dict[str, Any]) -> None:
        if not self.leader:
            return
        append_text(self.run_dir / METRICS_LOG, json.dumps(record) + "\n", "metrics log")
        for hook in self.log_hooks:
            hook(record)

    def _validate(self, step: int, *, full: bool = False) -> dict[str, Any]:
        valid = self.kg.valid
        limit = self.config.eval.valid_max_triples
        if limit and not full:
            valid = valid[:limit]
        metrics = self.evaluator.evaluate(self.scorer, valid)
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        self._log({"step": step, "split": "valid", **scalars})
        return metrics

    def fit(
        self,
        *,
        resume: bool | ResumePlan = False,
        stop_after: int | None = None,
        allow_nonempty: bool = False,
    ) -> dict[str, Any]:
        """Train to ``train.max_steps`` and return the final metrics (also in metrics.json).

        The run is admitted by :func:`~emu_dgl.training.run.open_run` (lock, folder checks,
        resume check) for the whole call, unless the caller already holds that admission.
        ``resume`` continues the run in ``run_dir`` (``True``, or a plan from
        :func:`~emu_dgl.training.run.check_resume`); a run that has no complete checkpoint
        starts again from step 0. A new run needs a new or empty folder unless
        ``allow_nonempty``. ``stop_after`` ends the loop early after that many steps without
        final evaluation, as a killed process would (used to test resuming). The trackers
        named in ``tracking.backends`` receive every logged record and the final metrics.
        """
        with open_run(
            self.run_dir, self.config, resume=resume, allow_nonempty=allow_nonempty
        ) as run:
            # Admission first: nothing (a tracker included) writes into the folder before it.
            return self._fit_tracked(run, stop_after)

    def _fit_tracked(self, run: Admission, stop_after: int | None) -> dict[str, Any]:
        """:meth:`_fit` with the trackers of ``tracking.backends`` (the leader's) receiving
        its records and final metrics (``fit`` of either trainer, once admitted)."""
        from emu_dgl.tracking import open_trackers

        if self._note and self.config.train.progress:  # fitted negatives: rank 0's line alone
            print(self._note, file=sys.stderr, flush=True)
        tracker = None
        if self.leader:
            tracker = open_trackers(
                self.config.tracking,
                self.config.to_dict(),
                self.run_dir,
                batch_size=self.config.train.batch_size,
                resume=run.resumed,
            )
        if tracker is None:
            return self._fit(run, stop_after)
        self.log_hooks.append(tracker)
        try:
            result = self._fit(run, stop_after)
            if not self.already_finished:
                tracker.log_final(result)
            return result
        finally:
            self.log_hooks.remove(tracker)
            tracker.close()

    def _fit(self, run: Admission, stop_after: int | None) -> dict[str, Any]:
        """The run's phases: begin (or resume), train, finish."""
        progress = self._begin(run)
        if isinstance(progress, dict):  # a resumed run that had already finished
            return progress
        self._train(progress, stop_after)
        cfg = self.config.train
        if stop_after is not None and not progress.stopped_early and progress.step < cfg.max_steps:
            return {}  # stopped as a killed process would be: no final evaluation
        return self._finish(progress)

    def _begin(self, run: Admission) -> Progress | dict[str, Any]:
        """A new run's start, or the state a resumed run continues from (with the resumable
        keys it changes applied); the records a later process reads (``data.json``,
        ``components.json``, ``config.yaml``). A resumed run that had already finished comes
        back as its final metrics, its files untouched."""
        plan, cfg = run.plan, self.config.train
        self._train_seconds = 0.0
        start, best, finished = 0, {"metric": -math.inf, "step": -1, "bad": 0}, False
        if plan is not None:
            if plan.state is not None:
                start, best = self._restore(plan.state, {key for key, _, _ in plan.changes})
                finished = bool(plan.state.get("final"))
            if finished and start == cfg.max_steps and lexists(self.run_dir / METRICS_FILE):
                try:
                    result = read_json(self.run_dir / METRICS_FILE, "metrics file")
                except EmuDglError:
                    result = None  # cut short or edited: evaluated again below
                if isinstance(result, dict):
                    self.already_finished = True  # nothing to do: the run's files stay as they are
                    return result
            if self.leader:  # they describe the run's old end, not its new one
                truncate_log(self.run_dir / METRICS_LOG, start)
                remove_final_metrics(self.run_dir)
        elif self.leader:
            remove(self.run_dir / METRICS_LOG, "metrics log")
        self.already_finished = False
        if self.leader:
            if self._save_graph and plan is None:
                self.kg.save(self.run_dir / GRAPH_FILE)
            run.write_record(self.kg, self.config.to_yaml(), record_text(self.config))
        progress = Progress(
            start=start,
            best=best,
            losses=torch.zeros(cfg.log_every, device=self.device),
            finished=finished,
            step=start,
            resumed_seconds=self._train_seconds,
        )
        # Losses of the steps since the last log stay on the device; reading them at
        # logging time is the loop's one host synchronisation.
        pending = self._resumed_losses if plan is not None and plan.state else None
        if isinstance(pending, list) and 0 < len(pending) == start % cfg.log_every:
            progress.losses[: len(pending)] = torch.tensor(pending, device=self.device)
            progress.since_log = len(pending)
        return progress

    def _train(self, p: Progress, stop_after: int | None) -> None:
        """The loop: steps (the optimizer switched where the schedule says), a log of the
        losses every ``log_every`` steps, validations and checkpoints on their schedules,
        until ``max_steps``, early stopping or ``stop_after`` steps."""
        cfg = self.config.train
        bar = tqdm(
            total=cfg.max_steps,
            initial=p.start,
            disable=not cfg.progress,
            desc=self.progress_label,
            unit="step",
            dynamic_ncols=True,
        )
        self._warn_if_no_checkpoint_before_the_end()
        p.tick = time.perf_counter()
        while p.step < cfg.max_steps:
            if self.optim_state.next_switch and p.step >= self.optim_state.next_switch:
                self.optim_state.phase += 1
                self.optim_state.next_switch *= 3
                self.optimizer = self._make_optimizer(self.optim_state.phase)
            p.losses[p.since_log] = self.train_step(p.step)  # stays on the device
            p.step += 1
            p.steps_run += 1
            p.since_log += 1
            if p.step % cfg.log_every == 0 or p.step == cfg.max_steps:
                bar.set_postfix(loss=f"{self._log_losses(p):.4f}", refresh=False)
            bar.update(1)
            validated = self._validate_on_schedule(p)
            self._checkpoint_on_schedule(p, validated)
            if p.stopped_early or (stop_after is not None and p.steps_run >= stop_after):
                break
        bar.close()
        self._train_seconds += time.perf_counter() - p.tick

    def _log_losses(self, p: Progress) -> float:
        """Log the mean loss since the last log, and the rate; returns the mean.

        THE host synchronisation of the loop: the losses since the last log are read once
        per logging interval (validation and checkpoints sync too, on their own schedules);
        nothing inside a step waits for the device."""
        values = p.losses[: p.since_log].tolist()
        self._check_loss(values, p.step)
        loss = sum(values) / p.since_log
        elapsed = time.perf_counter() - p.tick
        self._train_seconds += elapsed
        p.tick = time.perf_counter()
        rate = p.since_log / max(elapsed, 1e-9)
        lr = self.optimizer.param_groups[0]["lr"]
        self._log({"step": p.step, "loss": loss, "lr": lr, "steps_per_second": rate})
        p.since_log = 0
        return loss

    def _validate_on_schedule(self, p: Progress) -> bool:
        """Validate every ``valid_every`` steps (not the last: :meth:`_finish` does); a better
        metric saves ``best.pt``, and ``early_stopping`` validations without one stop the run."""
        cfg = self.config.train
        if not (cfg.valid_every and p.step % cfg.valid_every == 0 and p.step < cfg.max_steps):
            return False
        self._train_seconds += time.perf_counter() - p.tick
        self._check_finite(p.losses[: p.since_log], p.step)
        metrics = self._validate(p.step)
        if self._improved(metrics[self.config.eval.metric], p.best, p.step):
            self._save_best(p.step)
        elif cfg.early_stopping and p.best["bad"] >= cfg.early_stopping:
            p.stopped_early = True
        p.tick = time.perf_counter()
        return True

    def _checkpoint_on_schedule(self, p: Progress, validated: bool) -> None:
        """Write ``last.pt`` every ``checkpoint_every`` steps and at every validation.

        Every validation is also a checkpoint: a crash then resumes from the step whose
        best.pt exists, whatever checkpoint_every says (the paper configs' 5,000 included).
        The last step's checkpoint is the final one, written after the final validation:
        one written before it would let a resume log that validation twice."""
        cfg = self.config.train
        periodic = cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0
        if not (periodic or validated) or p.step >= cfg.max_steps:
            return
        self._train_seconds += time.perf_counter() - p.tick
        self._check_finite(p.losses[: p.since_log], p.step)
        self._pending_losses = p.losses[: p.since_log].tolist()
        self._save_last(p.step, p.best)
        self._pending_losses = []
        p.tick = time.perf_counter()

    def _finish(self, p: Progress) -> dict[str, Any]:
        """The final validation (unless a final state resumed without new steps has one
        already) decides whether the last weights beat the best seen; then the best
        weights are evaluated on valid and test, into ``metrics.json``."""
        self._check_finite(p.losses[: p.since_log], p.step)
        if not (p.finished and p.step == p.start):
            metrics = self._validate(p.step)
            if self._improved(metrics[self.config.eval.metric], p.best, p.step):
                self._save_best(p.step)
            self._save_last(p.step, p.best, final=True)
        if p.best["step"] != p.step:  # (else the weights in memory are the best: no second copy)
            self._load_best()
        final = {split: self._final_metrics(split, p.best["step"]) for split in ("valid", "test")}
        result = {
            "valid": final["valid"],
            "test": final["test"],
            "best_step": p.best["step"],
            "steps": p.step,
            "stopped_early": p.stopped_early,
            # throughput of this process only: a resumed run's earlier part ran elsewhere
            "train_steps_per_second": p.steps_run
            / max(self._train_seconds - p.resumed_seconds, 1e-9),
            "train_seconds": self._train_seconds,
            "preprocess_seconds": self.preprocess_seconds,
            "device": str(self.device),
            "eval_protocol": self.config.eval.protocol,
        }
        result.update(self._run_facts())
        if self.leader:
            write_text(
                self.run_dir / METRICS_FILE, json.dumps(result, indent=2) + "\n", "metrics file"
            )
        return result

    def _final_metrics(self, split: str, best_step: int) -> dict[str, Any]:
        triples = self.kg.splits[split]
        if self.config.train.progress:  # after the bar's 100%: say what the next seconds do
            print(
                f"evaluating {split} ({len(triples):,} triples, {self._protocol_words()}) "
                f"with the best step's weights (step {best_step}) ...",
                file=sys.stderr,
                flush=True,
            )
        return self.evaluator.evaluate(
            self.scorer,
            triples,
            per_relation=self.config.eval.per_relation,
            relation_names=self.kg.relation_names,
        )

    def _protocol_words(self) -> str:
        ev = self.config.eval
        if ev.protocol == "sampled":
            return f"sampled protocol: {ev.num_negatives} candidates per query"
        return f"full ranking against {self.kg.num_entities:,} entities"
