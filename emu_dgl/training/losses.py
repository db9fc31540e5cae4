r"""Losses over (positive, negatives) scores, the EMU loss, 1-vs-all CE and N3.

Scores are logits, higher = more plausible, and already include any margin
``gamma`` of the decoder. Every loss returns a scalar: the mean over the batch.

Pairwise losses take ``pos[B]`` and ``neg[B, n]`` (registry :data:`LOSSES`), or, in
the training step, one ``scores[B, 1 + n]`` tensor with the positive in column 0
(``from_scores``: the step scores positives and negatives in one pass, and this form
needs no concatenation):

- ``softmax``: cross-entropy over ``[s_pos, s_neg_1..n]``, one-hot on the positive;
- ``self_adversarial`` (Sun et al., 2019);
- ``margin``: margin ranking, averaged over the negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")


def _logits(pos: Tensor, neg: Tensor) -> Tensor:
    """``[B, 1 + n]`` with the positive in column 0."""
    return torch.cat([pos.unsqueeze(1), neg], dim=1)


@LOSSES.register("softmax")
class SoftmaxLoss(nn.Module):
    r"""Softmax cross-entropy over the positive and its negatives:
    :math:`\log\big(e^{s_0} + \sum_j e^{s_j}\big) - s_0`."""

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return self.from_scores(_logits(pos, neg))

    def from_scores(self, scores: Tensor) -> Tensor:
        return (torch.logsumexp(scores, dim=1) - scores[:, 0]).mean()


@LOSSES.register("self_adversarial")
class SelfAdversarialLoss(nn.Module):
    r"""Self-adversarial negative sampling loss of RotatE (Sun et al., 2019):

    .. math::
        -\log\sigma(s_0) - \sum_j w_j \log\sigma(-s_j), \qquad
        w = \operatorname{softmax}(\alpha\, s_{1..n}) \text{ (no gradient through } w)

    (Sun et al.'s code halves this sum; the factor is absorbed by the learning rate.)
    """

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


@LOSSES.register("margin")
class MarginRankingLoss(nn.Module):
    r"""Margin ranking: :math:`\frac1n \sum_j \max(0,\ \text{margin} - s_0 + s_j)`."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def from_scores(self, scores: Tensor) -> Tensor:
        return self(scores[:, 0], scores[:, 1:])

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return F.relu(self.margin - pos.unsqueeze(1) + neg).mean(dim=1).mean()


class OneVsAllLoss(nn.Module):
    r"""1-vs-all cross-entropy: ``scores[B, E]`` against every entity, ``targets[B]``
    the true entity ids; optional label smoothing (``F.cross_entropy``'s: mass
    ``eps`` spread uniformly over all E classes)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing is {label_smoothing}; use a value in [0, 1)")
        self.label_smoothing = float(label_smoothing)

    def forward(self, scores: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(scores, targets, label_smoothing=self.label_smoothing)


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

    def forward(self, pos: Tensor, neg: Tensor, mutated: Tensor) -> Tensor:
        return self.from_scores(_logits(pos, neg), mutated)

    def from_scores(self, scores: Tensor, mutated: Tensor) -> Tensor:
        """``scores[B, 1 + n]`` (positive first, then the unmutated negatives) and the
        mutated negatives' ``mutated[B, n]``.

        With ``L = logsumexp(s_0, s~_1..n)`` each log-probability is ``s - L``, so the EMU
        term is ``((L - s_0) + lambda * sum_j (L - s~_j)) / n``: one ``logsumexp`` and one
        sum, without concatenating the positive to the mutated scores.
        """
        pos, n = scores[:, 0], mutated.shape[1]
        total = torch.logaddexp(pos, torch.logsumexp(mutated, dim=1))
        emu = (total - pos) + self.neg_label * (total.unsqueeze(1) - mutated).sum(dim=1)
        loss = emu.mean() / n
        if self.ce_coef:
            loss = loss + self.ce_coef * pairwise_from_scores(self.base, scores)
        return loss


def pairwise_from_scores(loss: nn.Module, scores: Tensor) -> Tensor:
    """A pairwise loss of ``scores[B, 1 + n]`` (positive in column 0): its ``from_scores``
    when it has one (every registered loss), else ``loss(pos, neg)``."""
    from_scores = getattr(loss, "from_scores", None)
    if from_scores is not None:
        return from_scores(scores)
    return loss(scores[:, 0], scores[:, 1:])


def n3_regularizer(*embeddings: Tensor, weight: float, complex_parts: bool = False) -> Tensor:
    r"""N3 (Lacroix et al., 2018, https://arxiv.org/abs/1806.07297):

    .. math::
        \text{weight} \cdot \frac1B \sum_b \sum_{x \in \text{embeddings}} \sum_k |x_{b,k}|^3

    With ``complex_parts=True`` each row is ``[re | im]`` and :math:`|x_k|` is the modulus
    :math:`\sqrt{re_k^2 + im_k^2}` (ComplEx); otherwise (real embeddings, e.g.
    DistMult/CP) the absolute value of each real coordinate.
    """
    total = embeddings[0].new_zeros(())
    for x in embeddings:
        if complex_parts:
            re, im = x.chunk(2, dim=-1)
            cubes = (re.square() + im.square()).pow(1.5)
        else:
            cubes = x.abs().pow(3)
        total = total + cubes.sum(-1).mean()
    return weight * total


def l3_table_regularizer(model: nn.Module, *, weight: float, relation_share: float = 1.0) -> Tensor:
    r"""Whole-table L3 penalty of the published base arms (EMU paper code):

    .. math::
        \text{weight} \cdot \Big(\sum_{i,k} |E_{ik}|^3 + \sum_{j,k} |R_{jk}|^3\Big)

    over every real of the entity table ``E`` and the relation table ``R`` (for
    complex or projected rows, each stored real on its own), added once per step.
    Unlike :func:`n3_regularizer` it is not an average over the batch: it touches
    (and its gradient ``3 * weight * x * |x|`` updates) every row of both tables
    at every step, used or not, so it is dense by nature.

    ``relation_share`` scales the relation part: with the entity table split over
    processes, each process adds its own block's part and its share of the (replicated)
    relations' part, so the parts sum to the whole penalty.

    Both tables are handled by multi-tensor operations with the closed-form gradient
    (a handful of kernels instead of a dozen per table, forward and backward).
    """
    entity, relation = model.entity.weight, model.relation.weight
    a, b = entity.new_tensor(weight), entity.new_tensor(weight * relation_share)
    return whole_table_l3(entity, relation, a, b)


def whole_table_l3(
    entity: Tensor,
    relation: Tensor,
    a: Tensor,
    b: Tensor,
    a3: Tensor | None = None,
    b3: Tensor | None = None,
) -> Tensor:
    """``a * sum |entity|^3 + b * sum |relation|^3`` with 0-d tensors ``a``, ``b`` (and
    ``3 a``, ``3 b`` when the caller has them: the training step passes its stored ones;
    see :func:`l3_table_regularizer`)."""
    return _WholeTableL3.apply(
        entity, relation, a, b, a * 3 if a3 is None else a3, b * 3 if b3 is None else b3
    )


class _WholeTableL3(torch.autograd.Function):
    """``a sum |E|^3 + b sum |R|^3`` with its closed-form gradient ``3 a E |E|``,
    ``3 b R |R|``: a few kernels instead of a dozen per table."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        entity: Tensor,
        relation: Tensor,
        a: Tensor,
        b: Tensor,
        a3: Tensor,
        b3: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(entity, relation, a3, b3)
        n_e = torch.linalg.vector_norm(entity, 3)  # (sum |x|^3)^(1/3)
        n_r = torch.linalg.vector_norm(relation, 3)
        return n_e * n_e * n_e * a + n_r * n_r * n_r * b

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, Tensor, None, None, None, None]:
        entity, relation, a3, b3 = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_entity = entity.abs().mul_(entity).mul_(grad * a3)  # 3 a E |E|
        grad_relation = relation.abs().mul_(relation).mul_(grad * b3)
        return grad_entity, grad_relation, None, None, None, None


def emu_target_weights(num_negatives: int, neg_label: float) -> list[float]:
    """``[1, lambda, ..., lambda] / n``: the EMU term of a row is ``-(this . log p)`` over
    ``log p = log_softmax([s_0, s~_1, ..., s~_n])``."""
    return [1.0 / num_negatives] + [neg_label / num_negatives] * num_negatives


__all__ = [
    "LOSSES",
    "EMULoss",
    "MarginRankingLoss",
    "OneVsAllLoss",
    "SelfAdversarialLoss",
    "SoftmaxLoss",
    "l3_table_regularizer",
    "n3_regularizer",
    "emu_target_weights",
    "pairwise_from_scores",
    "whole_table_l3",
]
