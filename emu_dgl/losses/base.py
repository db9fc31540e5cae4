r"""What every loss of score blocks shares, and the one form in which losses are evaluated.

Scores are logits, higher = more plausible, and already include any margin ``gamma`` of
the decoder. A *score block* ``scores[b, 1 + n]`` holds a positive's score in column 0 and
its ``n`` negatives' after it. A pairwise loss is a mean over the rows of its blocks:
``from_scores(scores)``, or ``forward(pos[b], neg[b, n])``.

:class:`BlockLoss` is the loss of a training step's blocks, written once: the fused
training steps (:mod:`emu_dgl.training.step`, :mod:`emu_dgl.training.shared_step`) and
the public path (:meth:`~emu_dgl.models.KGEModel.score_negatives` with
:meth:`EMULoss.from_scores <emu_dgl.losses.emu.EMULoss.from_scores>` or
:meth:`SoftmaxLoss.from_scores <emu_dgl.losses.softmax.SoftmaxLoss.from_scores>`) both
call it. A loss that is a cross-entropy with constant soft targets (the softmax loss,
EMU's term) says its targets (``targets(n)``: the weight of each column); the block's loss
is then one dot product of the block's log-probabilities with the targets repeated over
the rows and divided by the batch size, with no per-step allocation. Any other loss is
evaluated by its own ``from_scores``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["BlockLoss", "PairwiseLoss", "logits", "pairwise_from_scores"]


def logits(pos: Tensor, neg: Tensor) -> Tensor:
    """``[B, 1 + n]`` with the positive in column 0."""
    return torch.cat([pos.unsqueeze(1), neg], dim=1)


class PairwiseLoss(nn.Module):
    """Base of the losses of sampled negatives: ``forward(pos[B], neg[B, n])`` is
    ``from_scores`` of the block ``[pos | neg]``, a mean over the rows."""

    #: True for a loss of every entity's score (1-vs-all): no sampler, no EMU.
    scores_all_entities: ClassVar[bool] = False

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return self.from_scores(logits(pos, neg))

    def from_scores(self, scores: Tensor) -> Tensor:
        raise NotImplementedError


def pairwise_from_scores(loss: nn.Module, scores: Tensor) -> Tensor:
    """A pairwise loss of ``scores[B, 1 + n]`` (positive in column 0): its ``from_scores``
    when it has one (every registered loss), else ``loss(pos, neg)``."""
    from_scores = getattr(loss, "from_scores", None)
    if from_scores is not None:
        return from_scores(scores)
    return loss(scores[:, 0], scores[:, 1:])


def _log_softmax(scores: Tensor, group: int) -> Tensor:
    return torch.log_softmax(scores, dim=1)


class BlockLoss:
    """The loss of score blocks for a fixed layout, prepared once and called every step.

    Args:
        loss: the run's loss: a pairwise loss, or one with a mutated term (EMU: it has
            ``mutated_targets(n)``, ``base`` and ``ce_coef``).
        num_negatives: ``n``, the negatives of each block.
        rows, batch_size: the rows this process trains of a batch of ``batch_size``; every
            term is divided by ``batch_size`` (so the processes of a data-parallel step add
            up to the batch's loss), a mean-form term is scaled by ``rows / batch_size``.

    Calling it with the unmutated block ``plain[b, 1 + n]`` and, for EMU, the mutated block
    ``mutated[b, 1 + n]`` (the positive's score in column 0) gives the loss:

    .. math::
        L = -\\frac1B \\sum_b \\sum_j y_j \\log \\mathrm{softmax}(\\tilde s_b)_j
            + c \\cdot \\mathrm{base}(s)

    ``log_probs(block, group)`` and ``mask(block)`` let the shared-negatives step drop
    known answers from a block (default: ``log_softmax`` and nothing dropped).
    """

    def __init__(
        self,
        loss: nn.Module,
        *,
        num_negatives: int,
        rows: int,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        mutated_targets = getattr(loss, "mutated_targets", None)
        base, coef = (loss.base, float(loss.ce_coef)) if mutated_targets else (loss, 1.0)  # type: ignore[union-attr]
        n = num_negatives

        def repeated(y: list[float]) -> Tensor:
            scaled = torch.tensor([-v / batch_size for v in y], dtype=dtype, device=device)
            return scaled.repeat(rows)

        self.dtype = dtype
        self.emu = repeated(mutated_targets(n)) if mutated_targets else None
        base_targets = getattr(base, "targets", None)
        self.ce = repeated([coef * v for v in base_targets(n)]) if base_targets and coef else None
        self.base, self.coef, self.share = base, coef, rows / batch_size

    def __call__(
        self,
        plain: Tensor,
        mutated: Tensor | None = None,
        *,
        log_probs: Callable[[Tensor, int], Tensor] = _log_softmax,
        mask: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        loss: Tensor | None = None
        if self.emu is not None:  # EMU: soft targets on the mutated block (the last draw)
            assert mutated is not None, "an EMU loss needs the mutated block"
            loss = torch.dot(log_probs(mutated, -1).view(-1), self.emu)
        if self.ce is not None:  # a soft-target cross-entropy on the unmutated block
            term = torch.dot(log_probs(plain, 0).view(-1), self.ce)
            loss = term if loss is None else loss + term
        elif self.coef:  # any other pairwise loss, as a mean over the rows
            scores = plain if mask is None else mask(plain)
            term = pairwise_from_scores(self.base, scores) * (self.coef * self.share)
            loss = term if loss is None else loss + term
        assert loss is not None, "a loss with no term (EMU with ce_coef 0 needs its mutated term)"
        return loss


def block_loss_for(loss: Any, scores: Tensor, num_negatives: int) -> BlockLoss:
    """A :class:`BlockLoss` for one call of the public API on ``scores[B, ...]``."""
    rows = scores.shape[0]
    return BlockLoss(
        loss,
        num_negatives=num_negatives,
        rows=rows,
        batch_size=rows,
        dtype=scores.dtype,
        device=scores.device,
    )
