"""ComplEx (Trouillon et al., 2016), https://arxiv.org/abs/1606.06357."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from emu_dgl.models.base import DECODERS, SeparableDecoder, Side
from emu_dgl.models.shared import Polynomial


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    re, im = x.chunk(2, dim=-1)
    return re, im


@DECODERS.register("complex")
class ComplEx(SeparableDecoder):
    r"""Complex bilinear score, entities and relations stored as ``[re | im]`` (width 2d):

    .. math::
        f(h, r, t) = \operatorname{Re}\Big(\sum_k h_k\, r_k\, \overline{t_k}\Big)

    The score is linear in either entity, which gives coordinate-aligned terms:

    - tail side, :math:`q = h \circ r`:
      terms = ``[q_re * t_re | q_im * t_im]``;
    - head side, :math:`u = r \circ \bar t` (so :math:`f = \operatorname{Re}\sum_k h_k u_k`):
      terms = ``[h_re * u_re | -h_im * u_im]``.

    ``gamma`` only sets the initial embedding range. One side against all entities
    is a single matrix product.
    """

    complex_entities: ClassVar[bool] = True

    entity_factor: ClassVar[int] = 2
    relation_factor: ClassVar[int] = 2
    entity_blocks: ClassVar[tuple[str, ...]] = ("re", "im")
    relation_blocks: ClassVar[tuple[str, ...]] = ("re", "im")

    @staticmethod
    def _tail_weights(h: Tensor, r: Tensor) -> Tensor:
        """``[Re(h r) | Im(h r)]``: the score is ``<this, t>``."""
        h_re, h_im = _split(h)
        r_re, r_im = _split(r)
        return torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], dim=-1)

    @staticmethod
    def _head_weights(r: Tensor, t: Tensor) -> Tensor:
        """``[Re(r conj t) | -Im(r conj t)]``: the score is ``<h, this>``."""
        r_re, r_im = _split(r)
        t_re, t_im = _split(t)
        return torch.cat([r_re * t_re + r_im * t_im, r_re * t_im - r_im * t_re], dim=-1)

    def __init__(self, dim: int, *, gamma: float = 12.0) -> None:
        super().__init__(dim, gamma=gamma)
        sign = torch.ones(2 * self.dim)
        sign[self.dim :] = -1.0
        self.register_buffer("_conjugate", sign, persistent=False)

    def reverse_relation(self, r: Tensor) -> Tensor:
        # Re sum h r conj(t) = Re conj(sum t conj(r) conj(h)): the tail form takes conj(r)
        return r * self._conjugate

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        if side == "tail":
            return self._tail_weights(h, r) * t
        return h * self._head_weights(r, t)

    def polynomial(self, h: Tensor, r: Tensor) -> Polynomial:
        return Polynomial(c0=None, c1=self._tail_weights(h, r), c2=None)

    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        return self._tail_weights(h, r) @ candidates.transpose(-1, -2)

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self._head_weights(r, t) @ candidates.transpose(-1, -2)

    def pair_bytes(self, element_size: int) -> int:
        return element_size
