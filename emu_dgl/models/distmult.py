"""DistMult (Yang et al., 2015), https://arxiv.org/abs/1412.6575."""

from __future__ import annotations

from torch import Tensor

from emu_dgl.models.base import DECODERS, SeparableDecoder, Side
from emu_dgl.models.shared import Polynomial


@DECODERS.register("distmult")
class DistMult(SeparableDecoder):
    r"""Diagonal bilinear score:

    .. math::
        f(h, r, t) = \langle h, r, t \rangle = \sum_k h_k r_k t_k

    ``gamma`` only sets the initial embedding range ``(gamma + 2) / dim``.
    One side against all entities is a single matrix product.
    """

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        return (h * r) * t if side == "tail" else h * (r * t)

    def reverse_relation(self, r: Tensor) -> Tensor:
        return r  # <h, r, t> = <t, r, h>

    def polynomial(self, h: Tensor, r: Tensor) -> Polynomial:
        return Polynomial(c0=None, c1=h * r, c2=None)  # terms = (h * r) * x

    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        return (h * r) @ candidates.transpose(-1, -2)

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (r * t) @ candidates.transpose(-1, -2)

    def pair_bytes(self, element_size: int) -> int:
        return element_size
