r"""Scores against negatives shared by a chunk of positives, and EMU in that form.

With ``sampler.shared_chunk: C`` the ``B`` positives of a batch form ``B / C`` chunks, and
the ``C`` positives of a chunk share one draw of ``n`` negative entities (DGL-KE's
chunks, PyTorch-BigGraph's batch negatives). Every function here takes the batch as
chunks: queries ``a[K, C, De]`` (the kept entity) and ``r[K, C, Dr]`` (the relation in tail
form, see :meth:`~emu_dgl.models.base.KGEModel.tail_form`), the positives' true entities
``t[K, C, De]`` and the chunks' negatives ``n[K, N, De]``. A chunk's scores are then
``[C, N]`` at once, with no ``[C, N, De]`` gather of negative rows per positive.

**Polynomial decoders.** When the term of coordinate ``i`` is a polynomial of degree at
most two in the candidate's coordinate ``x_i`` (:meth:`Decoder.polynomial`),

.. math::
    \text{terms}_i(q, x) = c_{0,i}(q) + c_{1,i}(q)\, x_i + c_{2,i}(q)\, x_i^2,
    \qquad \text{score} = \text{finish}\Big(\sum_i \text{terms}_i\Big),

a chunk's sums are matrix products ``[C, De] x [De, N]``: DistMult and ComplEx
(``c_1`` only: ``<h * r, x>``, ``<Re/Im(h r), x>``) and TransE with ``p_norm: 2``
(``|q - x|^2 = q^2 - 2 q x + x^2``, then the root).

**EMU on shared negatives.** The mask ``m[K, N, De]`` is drawn per chunk, per negative slot
and per coordinate (True = the negative's own coordinate), so every positive of a chunk
mutates slot ``k`` with the same ``m_k``; each positive still mixes in its *own* true
entity: ``x_{bk} = m_k * n_k + (1 - m_k) * t_b``. For a separable decoder the term of a
mutated coordinate is the negative's or the positive's term, so

.. math::
    \sum_i \text{terms}_i(q_b, x_{bk})
      = \sum_i m_{ki}\, T^-_{bki} + \sum_i T^+_{bi} - \sum_i m_{ki}\, T^+_{bi},

with ``T^- = terms(q_b, n_k)``, ``T^+ = terms(q_b, t_b)``. For a polynomial decoder the first
sum is itself a sum of matrix products,
``sum_i m_ki T^-_bki = c_0 @ m^T + c_1 @ (m * n)^T + c_2 @ (m * n^2)^T``, so a mutated
chunk costs two to four products ``[C, De] x [De, N]``:

.. math::
    \tilde s_{bk} = c_1 (m \odot n)^\top + c_2 (m \odot n^{2})^\top
      + (c_0 - T^+)\, m^\top + \textstyle\sum_i T^+_{bi}.

**Mixup on shared negatives.** One weight ``w_k`` per chunk and slot,
``x_{bk} = w_k n_k + (1 - w_k) t_b``; for a polynomial decoder

.. math::
    \sum_i \text{terms}_i = \sum c_0 + w\, (c_1 n^\top) + (1 - w) \langle c_1, t \rangle
      + w^2 (c_2 {n^2}^\top) + 2 w (1 - w) ((c_2 t) n^\top) + (1 - w)^2 \langle c_2, t^2 \rangle.

Decoders without a polynomial form broadcast ``[K, C, 1, De]`` against ``[K, 1, N, De]``
(TransE L1, pRotatE and HAKE through their terms; RotatE and TransD through mutated
embeddings): still no per-positive gather of negative rows, but a ``[C, N, De]``
intermediate, as the per-positive step has.

What sharing changes, against per-positive EMU: the negatives of a chunk's positives are
the same entities, and so are their masks. Within a chunk the mutated negatives of two
positives differ only in the positive mixed in; across steps and chunks everything is
independent. Each positive's marginal distribution (uniform negatives, i.i.d. Bernoulli(p)
coordinates) is unchanged; only the correlation between the positives of a chunk is new.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Polynomial", "SharedScores", "score_shared"]


@dataclass(frozen=True)
class Polynomial:
    """``terms_i(q, x) = c0_i + c1_i x_i + c2_i x_i^2`` for the queries of a batch.

    Each coefficient is a tensor shaped like the queries' entity rows (``[..., C, De]``), a
    Python number (the same for every query and coordinate), or ``None`` (zero).
    """

    c0: Tensor | float | None
    c1: Tensor | float | None
    c2: Tensor | float | None

    def terms(self, x: Tensor) -> Tensor:
        """The terms for candidates ``x`` aligned with the queries (``[..., C, De]``)."""
        parts: list[Tensor | float] = []
        if self.c0 is not None:
            parts.append(self.c0)
        if self.c1 is not None:
            parts.append(self.c1 * x)
        if self.c2 is not None:
            parts.append(self.c2 * x.square())
        return _total(parts, x)


def _total(parts: list[Tensor | float], like: Tensor) -> Tensor:
    """The sum of tensors and numbers (numbers added last, tensors first: one op each)."""
    tensors = [p for p in parts if isinstance(p, Tensor)]
    number = sum(float(p) for p in parts if not isinstance(p, Tensor))
    out = tensors[0] if tensors else torch.zeros_like(like)
    for x in tensors[1:]:
        out = out + x
    if number:
        out = out + number
    return out


@dataclass(frozen=True)
class SharedScores:
    """``pos[K, C]``, ``neg[K, C, N]`` and ``mutated[K, C, N]`` (``None`` without a
    mutation) of a batch in chunks."""

    pos: Tensor
    neg: Tensor
    mutated: Tensor | None


def _against(c: Tensor | float, x: Tensor, like: Tensor) -> Tensor:
    """``[K, C, N]``: ``sum_i c_bi x_ki`` for coefficients ``c`` (per query ``[K, C, De]``, or
    a number) and per-slot values ``x[K, N, De]``: one batched product (or a column sum)."""
    if isinstance(c, Tensor):
        return torch.bmm(c, x.transpose(1, 2))
    return (float(c) * x.sum(-1)).unsqueeze(1).expand(like.shape[0], like.shape[1], x.shape[1])


def _polynomial_scores(
    poly: Polynomial, finish, t: Tensor, n: Tensor, mask: Tensor | None, weights: Tensor | None
) -> SharedScores:
    """Scores of a polynomial decoder as matrix products (see the module doc). ``t`` are the
    true entities ``[K, C, De]`` (also the shape of a query's coefficients), ``n[K, N, De]``."""
    c0, c1, c2 = poly.c0, poly.c1, poly.c2
    t_terms = poly.terms(t)  # T+ [K, C, De]
    t_sum = t_terms.sum(-1)  # [K, C]
    squares = None if c2 is None else n.square()
    parts: list[Tensor | float] = []
    if c0 is not None:  # sum_i c0_i, [K, C, 1]
        parts.append(c0.sum(-1, keepdim=True) if isinstance(c0, Tensor) else c0 * t.shape[-1])
    linear = None if c1 is None else _against(c1, n, t)  # c1 n^T
    square = None if c2 is None else _against(c2, squares, t)  # c2 (n^2)^T
    neg = _total([*parts, *(x for x in (linear, square) if x is not None)], t)
    mutated = None
    if mask is not None:
        m = mask.to(t.dtype)
        # (c0 - T+) m^T + c1 (m n)^T + c2 (m n^2)^T + sum_i T+
        mixed = [_against(t_terms.neg() if c0 is None else c0 - t_terms, m, t), t_sum.unsqueeze(-1)]
        if c1 is not None:
            mixed.append(_against(c1, m * n, t))
        if c2 is not None:
            mixed.append(_against(c2, m * squares, t))
        mutated = _total(mixed, t)
    elif weights is not None:
        w = weights.unsqueeze(1)  # [K, 1, N]
        mixed = [*parts]
        if c1 is not None:  # w (c1 n^T) + (1 - w) <c1, t>
            mixed += [w * linear, (1 - w) * (c1 * t).sum(-1, keepdim=True)]
        if c2 is not None:  # w^2 c2 (n^2)^T + 2 w (1 - w) (c2 t) n^T + (1 - w)^2 <c2, t^2>
            cross = _against(c2 * t if isinstance(c2, Tensor) else float(c2) * t, n, t)
            pos_square = (c2 * t.square()).sum(-1, keepdim=True)
            mixed += [w.square() * square, 2 * w * (1 - w) * cross, (1 - w).square() * pos_square]
        mutated = _total(mixed, t)
    return SharedScores(
        pos=finish(t_sum),
        neg=finish(neg),
        mutated=None if mutated is None else finish(mutated),
    )


def _masked_term_scores(decoder, a: Tensor, r: Tensor, t: Tensor, n: Tensor, mask: Tensor):
    """Mutated scores of a separable decoder from broadcast terms: ``sum_i m T- + sum_i T+
    - sum_i m T+`` per block of terms (HAKE sums two blocks apart)."""
    groups = decoder.term_groups
    neg_terms = decoder.terms(a.unsqueeze(-2), r.unsqueeze(-2), n.unsqueeze(-3), side="tail")
    pos_terms = decoder.terms(a, r, t, side="tail")  # [K, C, De]
    m = mask.to(t.dtype)  # [K, N, De]
    kept = neg_terms * m.unsqueeze(-3)  # [K, C, N, De]
    if groups == 1:
        total = kept.sum(-1) + pos_terms.sum(-1, keepdim=True) - pos_terms @ m.transpose(-1, -2)
        return decoder.finish(total)
    parts = []
    blocks = zip(
        kept.chunk(groups, -1), pos_terms.chunk(groups, -1), m.chunk(groups, -1), strict=True
    )
    for k, p, mm in blocks:
        parts.append(k.sum(-1) + p.sum(-1, keepdim=True) - p @ mm.transpose(-1, -2))
    return decoder.finish(torch.stack(parts, dim=-1))


def score_shared(
    decoder,
    a: Tensor,
    r: Tensor,
    t: Tensor,
    n: Tensor,
    *,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
) -> SharedScores:
    """Scores of positives ``(a, r, t)`` (each ``[K, C, D]``, ``r`` in tail form) and of the
    chunks' shared negatives ``n[K, N, De]`` as their tails (three-dimensional: ``K``
    chunks, ``C`` positives each, ``N`` negatives).

    ``mask[K, N, De]`` (bool or 0/1; True = the negative's coordinate) gives the EMU-mutated
    scores, ``weights[K, N]`` the Mixup ones (``x = w n + (1 - w) t``); each positive
    mixes in its own true entity. Polynomial decoders score through matrix products;
    the others broadcast (see the module doc).
    """
    poly = decoder.polynomial(a, r)
    if poly is not None:
        return _polynomial_scores(poly, decoder.finish, t, n, mask, weights)
    pos = decoder(a, r, t)
    neg = decoder.score_tails(a, r, n)
    mutated = None
    if mask is not None and decoder.separable:
        mutated = _masked_term_scores(decoder, a, r, t, n, mask)
    elif mask is not None or weights is not None:
        t4, n4 = t.unsqueeze(-2), n.unsqueeze(-3)  # [K, C, 1, De], [K, 1, N, De]
        if mask is not None:
            mixed = torch.where(mask.bool().unsqueeze(-3), n4, t4)
        else:
            w = weights[..., None, :, None]  # [K, 1, N, 1]
            mixed = w * n4 + (1 - w) * t4
        mutated = decoder(a.unsqueeze(-2), r.unsqueeze(-2), mixed)
    return SharedScores(pos=pos, neg=neg, mutated=mutated)
