"""The training loop: one YAML config in, a trained model and filtered metrics out.

Reads top to bottom like a small ``train.py``: build the pieces from the config,
then for each step take a batch of positives and run the step
(:mod:`emu_dgl.training.step`: one pure function that draws the negatives, scores,
takes the loss, runs backward and the optimizer update, eagerly, compiled with
``train.compile``, or replayed as a CUDA graph with ``train.cuda_graph``); validate,
checkpoint and log on their schedules. Everything in the step stays on the configured
device; the only host synchronisation is the loss read-out at logging time (marked in
``_fit``).

Determinism: the model is initialised from ``torch.manual_seed(seed)``; the batch
order of epoch ``e`` is a permutation drawn from a generator seeded by (seed, e), so
any step's batch is known without replaying earlier ones; negatives and EMU masks
come from one device generator whose state is checkpointed; samplers that use DGL's
own RNG (walks on the fly) seed it from (seed, step). A resumed run therefore
draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from emu_dgl.config import Config, config_from_dict
from emu_dgl.device import resolve_device, resolve_threads, usable_cores
from emu_dgl.errors import (
    ConfigError,
    DataError,
    DivergenceError,
    EmuDglError,
    EmuDglWarning,
    RunError,
    shown,
)
from emu_dgl.files import append_text, path_component
from emu_dgl.training.build import (
    check_components,
    evaluator_from_config,
    head_probability_from_config,
    model_from_config,
    optimizer_from_config,
    sampler_from_config,
    scheduler_from_config,
    step_from_config,
    switch_step,
)
from emu_dgl.training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from emu_dgl.training.run import (
    CHECKPOINTS,
    CONFIG_FILE,
    GRAPH_FILE,
    METRICS_FILE,
    METRICS_LOG,
    Admission,
    ResumePlan,
    check_run_files,
    match_data,
    open_run,
    read_data_record,
    read_json,
    read_run_config,
    run_path,
    write_text,
)
from emu_dgl.training.step import GraphedStep, TrainStep, compile_step, notice
from emu_dgl.typing import Side

__all__ = [
    "CONFIG_FILE",
    "GRAPH_FILE",
    "METRICS_FILE",
    "METRICS_LOG",
    "Trainer",
    "load_run",
    "run_directory",
]


#: Runs at least this long are warned about when no checkpoint comes before their end.
LONG_RUN_STEPS = 1000


def run_directory(config: Config, out: str | Path | None = None) -> Path:
    """``--out`` wins; otherwise ``output.dir`` with {dataset}, {model}, {time} filled in.

    ``~`` is expanded; each filled-in name must be one safe folder name (a dataset called
    ``..`` cannot lead the run out of ``output.dir``), and the result is never ``/``.
    """
    if out is not None:
        return run_path(out)
    name = Path(config.dataset.name.rstrip("/")).name or config.dataset.name
    values = {
        "dataset": path_component(name, "the dataset name for {dataset} in output.dir"),
        "model": path_component(config.model.name, "the model name for {model} in output.dir"),
        "time": datetime.now().strftime("%Y%m%d-%H%M%S"),
    }
    return run_path(config.output.dir.format(**values))


def _warn_wasteful(config: Config, kg: Any, threads: int) -> None:
    """One-line warnings for settings that run but waste most of their time."""
    negatives = config.sampler.num_negatives
    if config.loss.name != "1vsall" and negatives > kg.num_entities:
        warnings.warn(
            f"sampler.num_negatives={negatives} is more than the {kg.num_entities} entities of "
            f"'{kg.name}': each negative set repeats every entity about {negatives // kg.num_entities} "
            f"times, at that many times the cost; {kg.num_entities} or fewer carry the same information",
            EmuDglWarning,
            stacklevel=3,
        )
    cores = usable_cores()
    if config.train.threads > cores:
        warnings.warn(
            f"train.threads={config.train.threads} is more than the {cores} usable CPU cores: "
            f"the extra threads only wait for each other; use train.threads={cores} or fewer",
            EmuDglWarning,
            stacklevel=3,
        )


@dataclass
class _OptimState:
    """Which optimizer is active; the reference schedule swaps Adagrad for Adam mid-run."""

    phase: int = 0
    next_switch: int = 0  # step at which the reference schedule switches next (0 = never)


class Trainer:
    """Builds every piece from a :class:`Config` and trains it into ``run_dir``."""

    def __init__(self, config: Config, run_dir: str | Path, *, kg: Any = None) -> None:
        from emu_dgl.data import canonical_dataset, load_dataset
        from emu_dgl.training.memory import announce_plan, baseline_bytes, check_memory

        check_components(config)
        baseline = baseline_bytes()  # this process before the data: the plan's first part
        self.run_dir = run_path(run_dir)
        self.device = resolve_device(config.train.device)
        self.threads, self.threads_reason = resolve_threads(config.train.threads)
        torch.set_num_threads(self.threads)
        started = time.perf_counter()

        self._save_graph = False  # a graph given in Python is saved into the run (GRAPH_FILE)
        if (self.run_dir / CONFIG_FILE).is_file():
            self.config = config
            self.kg = kg if kg is not None else _run_dataset(self.run_dir, config)
            # An existing run (to resume): give the data the ids it was trained with.
            self.kg = match_data(self.kg, read_data_record(self.run_dir), self.run_dir)
        else:
            # The run's own copy of the config names a dataset folder given by a relative
            # path absolutely, so the run loads from anywhere; the caller's config is not touched.
            self.config = copy.deepcopy(config)
            self.config.dataset.name = canonical_dataset(
                config.dataset.name, config.dataset.data_dir
            )
            if kg is None:
                self.kg = load_dataset(self.config.dataset.name, config.dataset.data_dir)
            else:
                # The run's config names the graph it trains on, not the config's dataset.
                self.kg, self._save_graph = kg, True
                self.config.dataset.name = str((self.run_dir / GRAPH_FILE).absolute())
        config = self.config
        check_memory(
            config,
            self.kg.num_entities,
            self.kg.num_relations,
            self.device,
            train_triples=len(self.kg.train),
            eval_triples=max(len(self.kg.valid), len(self.kg.test)),
        )
        self.memory_plan = announce_plan(config, self.kg, baseline)  # said before allocating
        _warn_wasteful(config, self.kg, self.threads)
        # Stored column by column, so that a batch's heads, relations and tails are
        # contiguous; train_triples is the [N, 3] view of the same memory.
        self._train_columns = self.kg.train.to(self.device).t().contiguous()
        self.train_triples = self._train_columns.t()
        self._perm_epoch, self._perm = (
            -1,
            torch.empty(0, dtype=torch.long),
        )  # batch order, see _batch
        if len(self.train_triples) == 0:
            raise ConfigError(f"dataset '{self.kg.name}' has no training triples")
        if len(self.kg.valid) == 0:
            raise ConfigError(
                f"dataset '{self.kg.name}' has no validation triples, which choosing the best checkpoint needs; "
                "add a valid split (in Python: kg = kg.random_split(valid=0.05, test=0.05))"
            )
        self.evaluator = evaluator_from_config(
            config, self.kg, self.kg.num_relations, device=self.device
        )

        torch.manual_seed(config.train.seed)
        self.model = model_from_config(config, self.kg.num_entities, self.kg.num_relations).to(
            self.device
        )
        self.generator = torch.Generator(device=self.device).manual_seed(config.train.seed)
        self.one_vs_all = config.loss.name == "1vsall"
        self.sampler = sampler_from_config(
            config, self.kg, self.device, announce=config.train.progress
        )
        self.head_probability = head_probability_from_config(config, self.kg, self.device)
        self.batch_size = min(config.train.batch_size, len(self.train_triples))
        self.step = self._make_step()
        # The step's components, for inspection (the step holds the same objects).
        self.mutation, self.loss_fn = self.step.mutation, self.step.loss
        self.optim_state = _OptimState(0, switch_step(config, 0))
        self.optimizer = self._make_optimizer(0)
        self.scheduler = scheduler_from_config(config, self.optimizer)
        self._run_step = self._step_runner()
        self.preprocess_seconds = time.perf_counter() - started
        # Called with every metrics.jsonl record (logging points and validations only,
        # never inside a step): experiment trackers, the tuner's pruning callback.
        self.log_hooks: list[Callable[[dict[str, Any]], None]] = []
        self.progress_label = "train"  # the progress bar's label (compare: arm and seed)
        self.already_finished = False  # set by fit(): a resumed run that had nothing left to do

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
        """The step as configured: eager, compiled (``train.compile``), graphed
        (``train.cuda_graph``). Says in one line why a requested mode is off."""
        cfg = self.config.train
        if cfg.compile:
            compile_step(self.step)
        graphs = cfg.cuda_graph if cfg.cuda_graph != "auto" else self.device.type == "cuda"
        if not graphs:
            return self.step
        why = self.step.capturable or (
            None if self.device.type == "cuda" else f"the device is {self.device.type}"
        )
        if why is not None:
            notice(f"train.cuda_graph: off ({why}); running the eager step")
            return self.step
        return GraphedStep(self.step)

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

    # ------------------------------------------------------------------ state

    def _best_state(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "model": self.model.state_dict(),
            "model_config": model_config(self.config),
            "data_fingerprint": self.kg.fingerprint,
        }

    def _state(self, step: int, best: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "optim_phase": self.optim_state.phase,
            "optim_next_switch": self.optim_state.next_switch,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "best": best,
            "train_seconds": self._train_seconds,
            "config": self.config.to_dict(),
            "model_config": model_config(self.config),
            "data_fingerprint": self.kg.fingerprint,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(
        self, state: dict[str, Any], changed: set[str] = frozenset()
    ) -> tuple[int, dict[str, Any]]:
        """Load a training state; then apply the resumable config keys in ``changed``."""
        saved = state.get("data_fingerprint")
        if saved is not None and saved != self.kg.fingerprint:
            raise DataError(
                f"dataset '{self.kg.name}' is not the data this checkpoint was trained on "
                "(its fingerprint differs); resume with the files the run was trained on"
            )
        self.model.load_state_dict(state["model"])
        self.optim_state = _OptimState(state["optim_phase"], state["optim_next_switch"])
        self.optimizer = self._make_optimizer(self.optim_state.phase)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler = scheduler_from_config(self.config, self.optimizer)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        try:
            self.generator.set_state(state["generator"])
        except RuntimeError:  # saved on another kind of device: the draws differ from here on
            self.generator.manual_seed(self.config.train.seed * 1_000_003 + int(state["step"]))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self._train_seconds = float(state["train_seconds"])
        cfg = self.config.train
        if "train.lr" in changed:
            # The new rate applies from here on, as if the run had been configured with it.
            phase = self.optim_state.phase
            lr = cfg.lr * cfg.lr_decay**phase
            if self.scheduler is not None:
                self.scheduler.base_lrs = [cfg.lr for _ in self.scheduler.base_lrs]
                lr = cfg.lr * cfg.lr_decay ** (self.scheduler.last_epoch // cfg.lr_decay_every)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if "train.max_steps" in changed and self.optim_state.next_switch:
            self.optim_state.next_switch = switch_step(self.config, self.optim_state.phase)
        return int(state["step"]), dict(state["best"])

    # ------------------------------------------------------------------ the run

    def _log(self, record: dict[str, Any]) -> None:
        append_text(self.run_dir / METRICS_LOG, json.dumps(record) + "\n", "metrics log")
        for hook in self.log_hooks:
            hook(record)

    def _truncate_log(self, after_step: int) -> None:
        """On resume, drop log lines the interrupted run wrote after its checkpoint,
        a last line the kill cut in half, and any line that is not a record of a step."""
        from emu_dgl.files import read_bytes

        path = self.run_dir / METRICS_LOG
        if not os.path.lexists(path):
            return
        kept = []
        for line in read_bytes(path, "metrics log").decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            step = record.get("step") if isinstance(record, dict) else None
            if isinstance(step, int) and not isinstance(step, bool) and step <= after_step:
                kept.append(line)
        write_text(path, "".join(ln + "\n" for ln in kept), "metrics log")

    def _validate(self, step: int, *, full: bool = False) -> dict[str, Any]:
        valid = self.kg.valid
        limit = self.config.eval.valid_max_triples
        if limit and not full:
            valid = valid[:limit]
        metrics = self.evaluator.evaluate(self.model, valid)
        self._log(
            {
                "step": step,
                "split": "valid",
                **{k: v for k, v in metrics.items() if not isinstance(v, dict)},
            }
        )
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
        from emu_dgl.tracking import open_trackers

        with open_run(
            self.run_dir, self.config, resume=resume, allow_nonempty=allow_nonempty
        ) as run:
            # Admission first: nothing (a tracker included) writes into the folder before it.
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
        plan = run.plan
        cfg = self.config.train
        ckpt_dir = self.run_dir / CHECKPOINTS
        self._train_seconds = 0.0
        best: dict[str, Any] = {"metric": -math.inf, "step": -1, "bad": 0}
        start, finished = 0, False
        if plan is not None:
            if plan.state is not None:
                start, best = self._restore(plan.state, {key for key, _, _ in plan.changes})
                finished = bool(plan.state.get("final"))
            if finished and start == cfg.max_steps and os.path.lexists(self.run_dir / METRICS_FILE):
                try:
                    result = read_json(self.run_dir / METRICS_FILE, "metrics file")
                except EmuDglError:
                    result = None  # cut short or edited: evaluated again below
                if isinstance(result, dict):
                    self.already_finished = True  # nothing to do: the run's files stay as they are
                    return result
            self._truncate_log(start)
        else:
            (self.run_dir / METRICS_LOG).unlink(missing_ok=True)
        self.already_finished = False
        if self._save_graph and plan is None:
            self.kg.save(self.run_dir / GRAPH_FILE)
        run.write_record(self.kg, self.config.to_yaml())
        resumed_seconds = self._train_seconds

        metric_key = self.config.eval.metric
        # Losses of the steps since the last log stay on the device; reading them at
        # logging time is the loop's one host synchronisation.
        losses, since_log = torch.zeros(cfg.log_every, device=self.device), 0
        steps_run = 0
        bar = tqdm(
            total=cfg.max_steps,
            initial=start,
            disable=not cfg.progress,
            desc=self.progress_label,
            unit="step",
            dynamic_ncols=True,
        )
        self._warn_if_no_checkpoint_before_the_end()
        tick = time.perf_counter()
        step = start
        stopped_early = False
        while step < cfg.max_steps:
            if self.optim_state.next_switch and step >= self.optim_state.next_switch:
                self.optim_state.phase += 1
                self.optim_state.next_switch *= 3
                self.optimizer = self._make_optimizer(self.optim_state.phase)
            losses[since_log] = self.train_step(step)  # stays on the device
            step += 1
            steps_run += 1
            since_log += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                # THE host synchronisation of the loop: the losses since the last log are
                # read once per logging interval (validation and checkpoints sync too, on
                # their own schedules); nothing inside a step waits for the device.
                values = losses[:since_log].tolist()
                self._check_loss(values, step)
                loss = sum(values) / since_log
                elapsed = time.perf_counter() - tick
                self._train_seconds += elapsed
                tick = time.perf_counter()
                rate = since_log / max(elapsed, 1e-9)
                lr = self.optimizer.param_groups[0]["lr"]
                self._log({"step": step, "loss": loss, "lr": lr, "steps_per_second": rate})
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                since_log = 0
            bar.update(1)
            validated = False
            if cfg.valid_every and step % cfg.valid_every == 0 and step < cfg.max_steps:
                self._train_seconds += time.perf_counter() - tick
                self._check_finite(losses[:since_log], step)
                metrics = self._validate(step)
                validated = True
                if self._improved(metrics[metric_key], best, step):
                    save_checkpoint(self._best_state(step), ckpt_dir / BEST)
                elif cfg.early_stopping and best["bad"] >= cfg.early_stopping:
                    stopped_early = True
                tick = time.perf_counter()
            # Every validation is also a checkpoint: a crash then resumes from the step whose
            # best.pt exists, whatever checkpoint_every says (the paper configs' 5,000 included).
            # The last step's checkpoint is the final one, written after the final validation:
            # one written before it would let a resume log that validation twice.
            periodic = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if (periodic or validated) and step < cfg.max_steps:
                self._train_seconds += time.perf_counter() - tick
                self._check_finite(losses[:since_log], step)
                save_checkpoint(self._state(step, best), ckpt_dir / LAST, keep_previous=True)
                tick = time.perf_counter()
            if stopped_early or (stop_after is not None and steps_run >= stop_after):
                break
        bar.close()
        self._train_seconds += time.perf_counter() - tick
        if stop_after is not None and not stopped_early and step < cfg.max_steps:
            return {}

        self._check_finite(losses[:since_log], step)
        if not (
            finished and step == start
        ):  # a final state resumed without new steps is validated already
            # Final validation decides whether the last weights beat the best seen.
            metrics = self._validate(step)
            if self._improved(metrics[metric_key], best, step):
                save_checkpoint(self._best_state(step), ckpt_dir / BEST)
            save_checkpoint(
                {**self._state(step, best), "final": True}, ckpt_dir / LAST, keep_previous=True
            )
        if best["step"] != step:  # (else the weights in memory are the best: no second copy)
            self.model.load_state_dict(
                load_checkpoint(ckpt_dir / BEST, map_location=self.device)["model"]
            )
        by_relation = {
            "per_relation": self.config.eval.per_relation,
            "relation_names": self.kg.relation_names,
        }
        final = {}
        for split in ("valid", "test"):
            triples = self.kg.splits[split]
            if cfg.progress:  # after the bar's 100%: say what the next seconds (or minutes) do
                print(
                    f"evaluating {split} ({len(triples):,} triples, {self._protocol_words()}) "
                    f"with the best step's weights (step {best['step']}) ...",
                    file=sys.stderr,
                    flush=True,
                )
            final[split] = self.evaluator.evaluate(self.model, triples, **by_relation)
        result = {
            "valid": final["valid"],
            "test": final["test"],
            "best_step": best["step"],
            "steps": step,
            "stopped_early": stopped_early,
            # throughput of this process only: a resumed run's earlier part ran elsewhere
            "train_steps_per_second": steps_run / max(self._train_seconds - resumed_seconds, 1e-9),
            "train_seconds": self._train_seconds,
            "preprocess_seconds": self.preprocess_seconds,
            "device": str(self.device),
            "eval_protocol": self.config.eval.protocol,
        }
        write_text(self.run_dir / METRICS_FILE, json.dumps(result, indent=2) + "\n", "metrics file")
        return result

    def _protocol_words(self) -> str:
        ev = self.config.eval
        if ev.protocol == "sampled":
            return f"sampled protocol: {ev.num_negatives} candidates per query"
        return f"full ranking against {self.kg.num_entities:,} entities"

    def _warn_if_no_checkpoint_before_the_end(self) -> None:
        """A run whose first checkpoint would be its last loses everything to a crash (said
        for runs of at least :data:`LONG_RUN_STEPS` steps; a shorter one loses little)."""
        cfg = self.config.train
        if (
            cfg.max_steps >= LONG_RUN_STEPS
            and cfg.checkpoint_every > cfg.max_steps
            and not 0 < cfg.valid_every < cfg.max_steps
        ):
            warnings.warn(
                f"train.checkpoint_every ({cfg.checkpoint_every}) exceeds train.max_steps "
                f"({cfg.max_steps}) and no validation comes before the end, so a crash loses the "
                "whole run; lower train.checkpoint_every or train.valid_every",
                EmuDglWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ divergence

    def _check_loss(self, values: list[float], step: int) -> None:
        """Raise at the first non-finite loss among the steps ending at ``step``."""
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                self._diverged(step - len(values) + 1 + offset, f"the loss is {value}")

    def _check_finite(self, pending: Tensor, step: int) -> None:
        """Before any checkpoint or validation: pending losses and every weight are finite."""
        self._check_loss(pending.tolist(), step)
        # In blocks of 4M numbers: isfinite of a whole large table would allocate a
        # temporary of its size at every validation and checkpoint.
        finite = all(
            bool(torch.isfinite(block).all())
            for p in self.model.parameters()
            for block in p.detach().reshape(-1).split(1 << 22)
        )
        if not finite:
            self._diverged(step, "a weight is not finite")

    def _diverged(self, step: int, what: str) -> None:
        self._log({"step": step, "diverged": what})
        last = self.run_dir / CHECKPOINTS / LAST
        cfg = self.config.train
        if last.is_file():
            kept = (
                f"the last finite checkpoint is kept ({last}, step {load_checkpoint(last)['step']})"
            )
            then = f"'emu-dgl train --resume {self.run_dir} --set train.lr=...' continues from it"
        else:
            kept = "no checkpoint was written before it"
            then = f"'emu-dgl train --resume {self.run_dir} --set train.lr=...' starts it again"
        raise DivergenceError(
            f"training diverged at step {step}: {what}; {kept}. Lower train.lr (now {cfg.lr:g}; try 10x lower), "
            f"or use a bounded loss/decoder (e.g. loss.name=self_adversarial); {then}"
        )

    def _improved(self, value: float, best: dict[str, Any], step: int) -> bool:
        if value > best["metric"]:
            best.update(metric=value, step=step, bad=0)
            return True
        best["bad"] += 1
        return False


# ---------------------------------------------------------------------- runs on disk


def _run_dataset(run_dir: Path, config: Config) -> Any:
    """The graph of an existing run: its own saved graph (a run trained on a graph from
    Python, wherever the folder has moved), else the config's dataset."""
    from emu_dgl.data import KnowledgeGraph, load_dataset

    own = run_dir / GRAPH_FILE
    if own.is_file() and Path(config.dataset.name).name == GRAPH_FILE:
        return KnowledgeGraph.load(own)
    return load_dataset(config.dataset.name, config.dataset.data_dir)


def model_config(config: Config) -> dict[str, Any]:
    """The keys that define a model's weights and scores (decoder, widths, gamma, norm...):
    stored in every checkpoint, so the weights are never read as another model's."""
    return dict(config.to_dict()["model"])


def check_model_config(state: dict[str, Any], config: Config, path: Path) -> None:
    """Refuse weights saved for another model than ``config`` describes, in one line.

    Checkpoints written before ``model_config`` existed are checked against the config they
    carry (``last.pt``), else only by the shapes of their tensors when they are loaded.
    """
    saved = state.get("model_config")
    if not isinstance(saved, dict):
        saved = (
            state.get("config", {}).get("model") if isinstance(state.get("config"), dict) else None
        )
    if not isinstance(saved, dict):
        return
    now = model_config(config)
    differ = [(k, saved[k], now[k]) for k in now if k in saved and saved[k] != now[k]]
    if differ:
        shown_ = ", ".join(
            f"model.{k} {a!r} in the checkpoint, {b!r} in config.yaml" for k, a, b in differ
        )
        raise RunError(
            f"'{path}' was trained as another model than '{path.parent.parent / CONFIG_FILE}' describes "
            f"({shown_}); restore config.yaml (a new model needs a new run)"
        )


def load_run(
    run_dir: str | Path, *, device: str = "cpu", which: str = "best", data_dir: str | None = None
) -> tuple[Config, Any, nn.Module]:
    """(config, knowledge graph, model with the run's ``best`` or ``last`` weights).

    ``data_dir`` replaces the data root the run was trained with (``dataset.data_dir``).
    The graph is read from the run's dataset (or the graph the run keeps, for a run
    trained on a graph given in Python) and given the ids the run was trained with
    (a dataset whose content changed is refused, see :func:`~emu_dgl.training.run.match_data`).
    """
    run_dir = Path(run_dir).expanduser()
    config_path = run_dir / CONFIG_FILE
    if not os.path.lexists(config_path):
        raise RunError(
            f"'{run_dir}' is not an emu-dgl run directory (no {CONFIG_FILE}); pass the folder 'emu-dgl train' wrote"
        )
    check_run_files(run_dir)  # a planted link or FIFO is refused before anything is read
    config = config_from_dict(read_run_config(run_dir))
    check_components(config)
    target = resolve_device(device, key="--device")
    path = run_dir / CHECKPOINTS / f"{which}.pt"
    state = load_checkpoint(path)
    check_model_config(state, config, path)
    if data_dir is not None:
        config.dataset.data_dir = data_dir
    kg = match_data(_run_dataset(run_dir, config), read_data_record(run_dir), run_dir)
    saved_fp = state.get("data_fingerprint")
    if saved_fp is not None and saved_fp != kg.fingerprint:
        raise DataError(
            f"dataset '{kg.name}' is not the data run '{run_dir}' was trained on (fingerprint differs)"
        )
    model = model_from_config(config, kg.num_entities, kg.num_relations)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        detail = str(exc).strip().splitlines()
        reason = detail[-1].strip() if detail else type(exc).__name__
        raise RunError(
            f"the weights in '{path}' do not fit the model '{config_path}' describes "
            f"({shown(reason, 160)}); restore config.yaml (a new model needs a new run)"
        ) from None
    return config, kg, model.to(target).eval()
