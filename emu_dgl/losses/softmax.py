"""Softmax cross-entropy over a positive and its negatives (one-hot on the positive)."""

from __future__ import annotations

from torch import Tensor

from emu_dgl.losses.base import PairwiseLoss, block_loss_for
from emu_dgl.registry import LOSSES


@LOSSES.register("softmax")
class SoftmaxLoss(PairwiseLoss):
    r"""Softmax cross-entropy over the positive and its negatives:
    :math:`\log\big(e^{s_0} + \sum_j e^{s_j}\big) - s_0`, i.e. the cross-entropy of
    ``log_softmax([s_0, s_1..n])`` with the one-hot target on the positive."""

    @staticmethod
    def targets(num_negatives: int) -> list[float]:
        """The target weight of each column: 1 on the positive, 0 on the negatives."""
        return [1.0] + [0.0] * num_negatives

    def from_scores(self, scores: Tensor) -> Tensor:
        return block_loss_for(self, scores, scores.shape[1] - 1)(scores)
