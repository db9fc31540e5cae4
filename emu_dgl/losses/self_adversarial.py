"""The self-adversarial negative sampling loss of RotatE (Sun et al., 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from emu_dgl.losses.base import PairwiseLoss
from emu_dgl.registry import LOSSES, Option


@LOSSES.register("self_adversarial")
class SelfAdversarialLoss(PairwiseLoss):
    r"""Self-adversarial negative sampling loss of RotatE (Sun et al., 2019):

    .. math::
        -\log\sigma(s_0) - \sum_j w_j \log\sigma(-s_j), \qquad
        w = \operatorname{softmax}(\alpha\, s_{1..n}) \text{ (no gradient through } w)

    (Sun et al.'s code halves this sum; the factor is absorbed by the learning rate.)
    """

    options: ClassVar[dict[str, Option]] = {
        "alpha": Option(1.0, "temperature of the negatives' weights softmax(alpha * s)"),
    }

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def from_scores(self, scores: Tensor) -> Tensor:
        return self(scores[:, 0], scores[:, 1:])

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        weights = torch.softmax(self.alpha * neg.detach(), dim=1)
        neg_term = (weights * F.logsigmoid(-neg)).sum(dim=1)
        return -(F.logsigmoid(pos) + neg_term).mean()
