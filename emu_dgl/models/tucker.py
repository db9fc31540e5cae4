"""TuckER (Balažević et al., 2019), https://arxiv.org/abs/1901.09590."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.models.base import DECODERS, SeparableDecoder, SideSpec
from emu_dgl.models.shared import Polynomial
from emu_dgl.registry import Option
from emu_dgl.typing import Side


@DECODERS.register("tucker")
class TuckER(SeparableDecoder):
    r"""The Tucker decomposition of the tensor of triples: a core tensor ``W[d, d_r, d]``
    that every relation shares,

    .. math::
        f(h, r, t) = W \times_1 h \times_2 r \times_3 t = \sum_{i,j,k} W_{ijk}\, h_i\, r_j\, t_k
                   = h^\top M_r\, t, \qquad M_r = W \times_2 r \ (d \times d)

    Entity rows are ``d = model.dim`` wide, relation rows ``d_r = model.relation_dim``
    (0: ``d``; the paper uses d = 200 with d_r = 30 on WN18RR and 200 on FB15k-237). The
    core is a learnt parameter of the decoder: it trains with the tables (a dense
    gradient every step), is checkpointed with the model and exported as
    ``decoder.core.npy``. The paper's batch normalisation and dropout are left out: this is
    the score alone.

    *Tail form.* A head corruption is scored as a tail corruption, ``f(h, r, t) = t^\top
    M_r^\top h``; for a general core ``M_r^\top`` is no ``W \times_2 r'`` of any relation row
    ``r'`` (``W`` is not symmetric in its entity modes), so the tail form of a row is the
    row with one more coordinate ``s``: ``[r | s]`` scores ``x^\top ((1 - s) M_r + s
    M_r^\top) y``, ``s = 0`` where the tail is corrupted, ``1`` where the head is
    (:meth:`tail_relation`; a stored row of ``d_r`` numbers reads as ``s = 0``).

    *Separable.* The score is linear in the corrupted entity: with ``q = x^\top M`` (tail
    side) the terms are ``q * y``, so EMU mixes terms and shared negatives are matrix
    products (:meth:`polynomial`).

    Init: entity and relation rows as every decoder (``U(-a, a)``, ``a = (gamma + 2) /
    d``); the core ``U(-b, b)`` with ``b`` such that an initial score's standard deviation
    is one: ``Var f = d^2 d_r (b^2 / 3) (a^2 / 3)^3``.
    """

    options: ClassVar[dict[str, Option]] = {
        "relation_dim": Option(0, "width of the relation rows (0: model.dim)", low=0),
    }

    def __init__(self, dim: int, *, gamma: float = 12.0, relation_dim: int = 0) -> None:
        super().__init__(dim, gamma=gamma)
        self.relation_dim = int(relation_dim) or self.dim
        self.core = nn.Parameter(torch.empty(self.dim, self.relation_dim, self.dim))
        self._reset_core()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, relation_dim={self.relation_dim}"

    @classmethod
    def table_widths(cls, dim: int, **options: object) -> tuple[int, int]:
        return dim, int(options.get("relation_dim") or 0) or dim  # type: ignore[call-overload]

    def relation_width(self, dim: int) -> int:  # type: ignore[override]
        return self.relation_dim

    @torch.no_grad()
    def _reset_core(self) -> None:
        spread = self.embedding_range**2 / 3  # variance of U(-a, a)
        bound = math.sqrt(3 / (self.dim**2 * self.relation_dim * spread**3))
        self.core.uniform_(-bound, bound)

    @torch.no_grad()
    def reset_parameters(self, entity_weight: Tensor, relation_weight: Tensor) -> None:
        super().reset_parameters(entity_weight, relation_weight)
        self._reset_core()

    # -- the relation's matrix, in tail form ----------------------------------------------
    def _matrix(self, r: Tensor) -> Tensor:
        """``(1 - s) M_r + s M_r^T`` for rows ``r`` (stored, or ``[r | s]`` in tail form)."""
        d = self.dim
        by_relation = self.core.transpose(0, 1).reshape(self.relation_dim, d * d)
        m = (r[..., : self.relation_dim] @ by_relation).unflatten(-1, (d, d))  # M[i, k]
        if r.shape[-1] == self.relation_dim:
            return m
        s = r[..., self.relation_dim :].unsqueeze(-1)  # [..., 1, 1]
        return m + s * (m.transpose(-1, -2) - m)

    def tail_relation(self, r: Tensor, side: SideSpec) -> Tensor:
        if isinstance(side, Tensor):
            flag = side.to(r.dtype).view(-1, *([1] * (r.dim() - 1)))
            return torch.cat([r, flag.expand(*r.shape[:-1], 1)], dim=-1)
        if side == "tail":
            return r
        if side == "head":
            return self.reverse_relation(r)
        raise ValueError(f"side must be 'head' or 'tail', got {side!r}")

    def reverse_relation(self, r: Tensor) -> Tensor:
        """``[r | 1]``: ``forward(t, [r | 1], h) = t^T M_r^T h = f(h, r, t)``."""
        return torch.cat([r, torch.ones_like(r[..., :1])], dim=-1)

    # -- scores ---------------------------------------------------------------------------
    def _tail_query(self, h: Tensor, r: Tensor) -> Tensor:
        """``q = h^T M``: the score against tails ``y`` is ``<q, y>``."""
        return (h.unsqueeze(-2) @ self._matrix(r)).squeeze(-2)

    def _head_query(self, r: Tensor, t: Tensor) -> Tensor:
        """``q = M t``: the score against heads ``x`` is ``<x, q>``."""
        return (self._matrix(r) @ t.unsqueeze(-1)).squeeze(-1)

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        if side == "tail":
            return self._tail_query(h, r) * t
        return h * self._head_query(r, t)

    def polynomial(self, h: Tensor, r: Tensor) -> Polynomial:
        return Polynomial(c0=None, c1=self._tail_query(h, r), c2=None)

    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        return self._tail_query(h, r) @ candidates.transpose(-1, -2)

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self._head_query(r, t) @ candidates.transpose(-1, -2)

    def pair_bytes(self, element_size: int) -> int:
        return element_size
