r"""The EMU loss (Takamoto et al., 2025): soft targets over the mutated negatives, plus the
base loss of the unmutated ones.

It is not a registry entry of its own: ``emu.enabled`` wraps the configured loss
(``loss.name``, the *base*) in it. Both the training steps and the public API evaluate it
through :class:`~emu_dgl.losses.base.BlockLoss`, the one place its arithmetic lives.
"""

from __future__ import annotations

from torch import Tensor, nn

from emu_dgl.losses.base import block_loss_for, logits
from emu_dgl.registry import LOSSES

__all__ = ["EMULoss", "emu_target_weights"]


def emu_target_weights(num_negatives: int, neg_label: float) -> list[float]:
    """``[1, lambda, ..., lambda] / n``: the EMU term of a row is ``-(this . log p)`` over
    ``log p = log_softmax([s_0, s~_1, ..., s~_n])``."""
    return [1.0 / num_negatives] + [neg_label / num_negatives] * num_negatives


class EMULoss(nn.Module):
    r"""The EMU loss (Takamoto et al., 2025).

    With :math:`s_0` the positive's score and :math:`\tilde s_{1..n}` the mutated
    negatives' scores as logits of one softmax over :math:`1 + n` classes, and the
    soft, unnormalised target :math:`y_0 = 1,\ y_{j\ge1} = \lambda`:

    .. math::
        L = \frac1B \sum_b \Big[-\frac1n \sum_{j=0}^{n} y_j
            \log\operatorname{softmax}(s_0, \tilde s_1, \dots, \tilde s_n)_j\Big]
            + c \cdot \text{base}(s_0, s_{1..n})

    where ``base`` (default ``softmax``: one-hot cross-entropy) scores the
    *unmutated* negatives. ``neg_label`` is :math:`\lambda`, ``ce_coef`` is :math:`c`.
    For "label smoothing only" pass ``mutated = neg``.
    """

    def __init__(
        self,
        base: str | nn.Module = "softmax",
        *,
        neg_label: float = 0.53,
        ce_coef: float = 0.11,
    ) -> None:
        super().__init__()
        self.base = LOSSES.build(base)
        self.neg_label = float(neg_label)
        self.ce_coef = float(ce_coef)

    def extra_repr(self) -> str:
        return f"neg_label={self.neg_label}, ce_coef={self.ce_coef}"

    def mutated_targets(self, num_negatives: int) -> list[float]:
        """The target weight of each column of the mutated block (see :func:`emu_target_weights`)."""
        return emu_target_weights(num_negatives, self.neg_label)

    def forward(self, pos: Tensor, neg: Tensor, mutated: Tensor) -> Tensor:
        return self.from_scores(logits(pos, neg), mutated)

    def from_scores(self, scores: Tensor, mutated: Tensor) -> Tensor:
        """``scores[B, 1 + n]`` (positive first, then the unmutated negatives) and the
        mutated negatives' ``mutated[B, n]``: the loss the training step computes from the
        same blocks (:class:`~emu_dgl.losses.base.BlockLoss`)."""
        blocks = block_loss_for(self, scores, mutated.shape[1])
        return blocks(scores, logits(scores[:, 0], mutated))
