"""What stops or warns a run that would waste its time or its work.

* Divergence: a non-finite loss (read at logging time) or weight (checked before every
  checkpoint and validation) stops training with the step and what to try; ``last.pt``
  stays the last finite state, so ``--resume RUN_DIR --set train.lr=...`` continues.
* Settings that run but waste most of their time (more threads than cores) or risk the
  whole run (no checkpoint before the end of a long run) are said in one warning line.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from emu_dgl.device import usable_cores
from emu_dgl.errors import DivergenceError, EmuDglWarning
from emu_dgl.files import lexists
from emu_dgl.training.checkpoint import LAST, load_checkpoint
from emu_dgl.training.run import CHECKPOINTS

if TYPE_CHECKING:
    from emu_dgl.config import Config

__all__ = ["LONG_RUN_STEPS", "RunGuards", "warn_wasteful"]

#: Runs at least this long are warned about when no checkpoint comes before their end.
LONG_RUN_STEPS = 1000


def all_finite(tensors: Any) -> Tensor:
    """A 0-d bool tensor: every value of every tensor is finite. Read from each tensor's
    minimum and maximum (a NaN shows in both, an infinity in one), so that no temporary
    as large as the entity table is made (``isfinite`` would make several)."""
    bounds = [torch.stack(torch.aminmax(t.detach())) for t in tensors if t.numel()]
    if not bounds:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.cat(bounds)).all()


def warn_wasteful(config: Config, kg: Any, threads: int) -> None:
    """One-line warnings for settings that run but waste most of their time."""
    cores = usable_cores()
    if config.train.threads > cores:
        warnings.warn(
            f"train.threads={config.train.threads} is more than the {cores} usable CPU cores: "
            f"the extra threads only wait for each other; use train.threads={cores} or fewer",
            EmuDglWarning,
            stacklevel=3,
        )


class RunGuards:
    """The :class:`~emu_dgl.training.trainer.Trainer`'s checks of divergence and of a run
    that could lose its work (a mixin: it reads the trainer's config, model and run folder,
    and logs through ``_log``)."""

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
        if not bool(all_finite(self.model.parameters())):
            self._diverged(step, "a weight is not finite")

    def _diverged(self, step: int, what: str) -> None:
        self._log({"step": step, "diverged": what})
        last = self.run_dir / CHECKPOINTS / LAST
        cfg = self.config.train
        if lexists(last):
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
