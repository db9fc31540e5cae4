"""What a run's checkpoints hold, and how a trainer returns to one.

``last.pt`` holds everything an uninterrupted run would carry on with (the model, the
optimizer and its phase, the schedule, every random generator, the best validation so far,
the losses since the last log); ``best.pt`` only the model of the best validation. Both
carry the model's defining settings (:func:`model_config`) and the data's fingerprint, so
weights are never read into another model or against other data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from emu_dgl.errors import DataError
from emu_dgl.training.build import scheduler_from_config, switch_step
from emu_dgl.training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from emu_dgl.training.run import CHECKPOINTS

if TYPE_CHECKING:
    from emu_dgl.config import Config

__all__ = ["CheckpointState", "OptimState", "Progress", "model_config"]


def model_config(config: Config) -> dict[str, Any]:
    """The keys that define a model's weights and scores (decoder, widths, gamma, norm...):
    stored in every checkpoint, so the weights are never read as another model's."""
    return dict(config.to_dict()["model"])


@dataclass
class OptimState:
    """Which optimizer is active; the reference schedule swaps Adagrad for Adam mid-run."""

    phase: int = 0
    next_switch: int = 0  # step at which the reference schedule switches next (0 = never)


@dataclass
class Progress:
    """Where a run's loop stands: what :meth:`~emu_dgl.training.trainer.Trainer._begin` starts from, :meth:`~emu_dgl.training.trainer.Trainer._train`
    advances and :meth:`~emu_dgl.training.trainer.Trainer._finish` reports."""

    start: int  # the step the run began (or resumed) at
    best: dict[str, Any]  # the best validation so far: metric, step, validations since
    losses: Tensor  # the losses since the last log, on the device
    finished: bool = False  # the state resumed from is a finished run's final one
    step: int = 0
    since_log: int = 0
    steps_run: int = 0
    stopped_early: bool = False
    resumed_seconds: float = 0.0  # training time of earlier processes of the run
    tick: float = field(default_factory=time.perf_counter)


class CheckpointState:
    """The :class:`~emu_dgl.training.trainer.Trainer`'s states to save and to restore (a
    mixin: it reads the trainer's model, optimizer, schedule and generators)."""

    _train_seconds: float
    _pending_losses: list[float]
    _resumed_losses: Any

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
            # losses of the steps since the last log (read at the checkpoint's own sync), so
            # that a resumed run's first log averages the same full window as an unbroken one
            "pending_losses": list(self._pending_losses),
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
        self.optim_state = OptimState(state["optim_phase"], state["optim_next_switch"])
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
        self._resumed_losses = state.get("pending_losses")  # the first log's window, see _begin
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

    # The writes and the read of a run's checkpoints: a run on several processes writes
    # each process's rows instead (emu_dgl.distributed.trainer overrides these).

    def _save_best(self, step: int) -> None:
        """The weights of ``step``, the best validation so far."""
        save_checkpoint(self._best_state(step), self.run_dir / CHECKPOINTS / BEST)

    def _save_last(self, step: int, best: dict[str, Any], *, final: bool = False) -> None:
        """The training state of ``step`` (``final``: after the last step's validation)."""
        state = {**self._state(step, best), "final": True} if final else self._state(step, best)
        save_checkpoint(state, self.run_dir / CHECKPOINTS / LAST, keep_previous=True)

    def _load_best(self) -> None:
        """The model takes the best step's weights (for the final evaluation)."""
        path = self.run_dir / CHECKPOINTS / BEST
        self.model.load_state_dict(load_checkpoint(path, map_location=self.device)["model"])

    def _run_facts(self) -> dict[str, Any]:
        """Entries of metrics.json besides the metrics (a distributed run adds its layout)."""
        return {}
