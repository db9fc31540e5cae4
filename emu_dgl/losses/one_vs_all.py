"""1-vs-all cross-entropy: every entity scored as the answer, no sampled negatives."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import LOSSES, Option


@LOSSES.register("1vsall")
class OneVsAllLoss(nn.Module):
    r"""1-vs-all cross-entropy: ``scores[B, E]`` against every entity, ``targets[B]``
    the true entity ids; optional label smoothing (``F.cross_entropy``'s: mass
    ``eps`` spread uniformly over all E classes). It draws no negatives, so a run with it
    builds no sampler and has nothing for EMU to mutate."""

    #: Scores every entity (the training step's 1-vs-all path; no sampler is built).
    scores_all_entities: ClassVar[bool] = True
    options: ClassVar[dict[str, Option]] = {
        "label_smoothing": Option(
            0.0, "mass spread uniformly over all entities", low=0, high=1, high_open=True
        ),
    }

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing is {label_smoothing}; use a value in [0, 1)")
        self.label_smoothing = float(label_smoothing)

    @classmethod
    def check_config(cls, config: Any) -> None:
        """No negatives: nothing to mutate (EMU) and nothing to share (shared chunks)."""
        if config.sampler.shared_chunk:
            raise ConfigError(
                "sampler.shared_chunk: the 1vsall loss scores every entity and draws no "
                "negatives to share; set it to 0"
            )
        if config.emu.enabled:
            raise ConfigError(
                "loss.name: 1vsall scores every entity and has no sampled negatives to mutate; "
                "set emu.enabled=false or pick a loss of sampled negatives (softmax, ...)"
            )

    def forward(self, scores: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(scores, targets, label_smoothing=self.label_smoothing)
