"""The margin ranking loss, averaged over the negatives."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from emu_dgl.losses.base import PairwiseLoss
from emu_dgl.registry import LOSSES, Option


@LOSSES.register("margin")
class MarginRankingLoss(PairwiseLoss):
    r"""Margin ranking: :math:`\frac1n \sum_j \max(0,\ \text{margin} - s_0 + s_j)`."""

    options: ClassVar[dict[str, Option]] = {
        "margin": Option(1.0, "margin between the positive's score and each negative's"),
    }

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def from_scores(self, scores: Tensor) -> Tensor:
        return self(scores[:, 0], scores[:, 1:])

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return F.relu(self.margin - pos.unsqueeze(1) + neg).mean(dim=1).mean()
