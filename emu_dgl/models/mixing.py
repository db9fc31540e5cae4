"""EMU's mutation inside a scoring pass: a candidate group's coordinates (or per-coordinate
terms) mixed towards its column 0 (the positive), with lean autograd functions.

For a separable decoder the mutated candidate's term of coordinate ``k`` is the negative's
or the positive's term, so the mutated scores are masked sums of terms the one scoring pass
computed (:func:`mixed_term_sums`); the others mix the embeddings themselves
(:func:`mix_towards_first`). See :meth:`~emu_dgl.models.base.KGEModel.score_groups`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mix_towards_first", "mixed_term_sums"]


class _MixTowardsFirst(torch.autograd.Function):
    """``where(mask, x, x[:, :1])`` with a lean backward (no zero-filled copy of ``x``):
    the gradient of each coordinate goes to ``x`` itself where the mask keeps it, and is
    summed into column 0 (the positive) where the mask takes the positive's."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(mask)
        return torch.where(mask, x, x[:, :1])

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        own = grad.masked_fill(~mask, 0.0)
        own[:, :1] += (grad - own).sum(1, keepdim=True)
        return own, None


def _rowwise_dots(x: Tensor, y: Tensor) -> Tensor:
    """``(x * y).sum(-1)`` for ``[B, C, d]`` operands as one batched product of ``B C``
    ``[1, d] x [d, 1]`` pairs: no ``[B, C, d]`` temporary (on a CPU a fresh tensor that size
    costs more in page faults than the products)."""
    if not (x.is_contiguous() and y.is_contiguous()):
        return (x * y).sum(-1)
    rows, width = x.shape[0] * x.shape[1], x.shape[2]
    return torch.bmm(x.view(rows, 1, width), y.view(rows, width, 1)).view(x.shape[:2])


class _MaskedSums(torch.autograd.Function):
    """Sums over the last dim of the mixture ``m * T + (1 - m) * T[:, :1]`` for
    ``T[B, C, d]`` and a 0/1 float mask ``m`` whose column 0 is 0, by batched products::

        out_j = sum_k m_jk T_jk + sum_k T_0k - sum_k m_jk T_0k

    The backward is ``dT_jk = m_jk g_j`` plus, in column 0, ``sum_j g_j (1 - m_jk)``
    (one batched product); it writes ``dT`` into the mask's memory (on the CPU a fresh
    tensor of that size costs more than the arithmetic), so the graph is traversed once.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        first = x[:, :1]  # [B, 1, d]
        kept = _rowwise_dots(x, mask)
        # (bmm on the CPU loops over the batch unless its operands are contiguous)
        column = first.transpose(1, 2).contiguous()  # [B, d, 1]
        from_first = torch.bmm(mask, column).squeeze(2)  # [B, C]
        ctx.save_for_backward(mask)
        ctx.consumed = False  # type: ignore[attr-defined]
        return kept + (first.sum(-1) - from_first)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        if ctx.consumed:  # type: ignore[attr-defined]
            raise RuntimeError("the EMU mask was consumed by a first backward pass")
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        ctx.consumed = True  # type: ignore[attr-defined]
        g = grad.unsqueeze(1).contiguous()  # [B, 1, C]
        to_first = grad.sum(1, keepdim=True).unsqueeze(2) - torch.bmm(g, mask)  # [B, 1, d]
        out = mask.mul_(grad.unsqueeze(2))  # m_jk g_j, in the mask's memory
        out[:, :1] += to_first
        return out, None


class _SumsAndMaskedSums(torch.autograd.Function):
    """``(T.sum(-1), mixed)`` for ``T[B, C, d]``, ``mixed`` as :class:`_MaskedSums`: the plain
    and the mutated scores of one candidate group from one terms tensor. Its backward
    writes ``dT = g_plain + m * g_mixed`` (plus column 0's share of the positive's
    coordinates) into the mask's memory in one pass, where two separate sums would leave
    autograd to materialise and add two ``[B, C, d]`` gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, mask: Tensor):  # type: ignore[override]
        first = x[:, :1]
        kept = _rowwise_dots(x, mask)
        column = first.transpose(1, 2).contiguous()  # [B, d, 1]
        from_first = torch.bmm(mask, column).squeeze(2)
        ctx.save_for_backward(mask)
        ctx.consumed = False  # type: ignore[attr-defined]
        return x.sum(-1), kept + (first.sum(-1) - from_first)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g_plain: Tensor, g_mixed: Tensor):  # type: ignore[override]
        if ctx.consumed:  # type: ignore[attr-defined]
            raise RuntimeError("the EMU mask was consumed by a first backward pass")
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        ctx.consumed = True  # type: ignore[attr-defined]
        g = g_mixed.unsqueeze(1).contiguous()  # [B, 1, C]
        to_first = g_mixed.sum(1, keepdim=True).unsqueeze(2) - torch.bmm(g, mask)  # [B, 1, d]
        # (two in-place passes: on a CPU faster than one addcmul with broadcast factors)
        out = mask.mul_(g_mixed.unsqueeze(2)).add_(g_plain.unsqueeze(2))
        out[:, :1] += to_first
        return out, None


def mixed_term_sums(terms: Tensor, mask: Tensor, *, groups: int = 1) -> Tensor:
    """``where(mask, T, T[:, :1])`` summed over the last dim (``groups`` equal blocks of it
    summed apart, HAKE's phase and modulus): ``[B, C]`` (or ``[B, C, groups]``).

    ``mask`` bool: one ``where`` and a sum (the GPU's form: one fused pass). ``mask`` 0/1
    float (a fresh tensor the caller gives up: its memory holds the gradient afterwards):
    batched products, several times faster on a CPU than ``where`` with a broadcast.
    """
    if mask.dtype == torch.bool:
        mixed = mix_towards_first(terms, mask)
        if groups > 1:
            return mixed.unflatten(-1, (groups, -1)).sum(-1)
        return mixed.sum(-1)
    if groups > 1:  # each block on its own (its own copy of its part of the mask)
        parts = zip(terms.chunk(groups, -1), mask.chunk(groups, -1), strict=True)
        return torch.stack([_MaskedSums.apply(t, m.contiguous()) for t, m in parts], dim=-1)
    return _MaskedSums.apply(terms, mask)


def mix_towards_first(x: Tensor, mask: Tensor) -> Tensor:
    """``x[B, C, ...]`` with each coordinate where ``mask`` is False replaced by column 0's:
    the EMU mutation of a candidate group towards its positive (column 0's mask is all
    False, so the positive stays itself)."""
    return _MixTowardsFirst.apply(x, mask)
