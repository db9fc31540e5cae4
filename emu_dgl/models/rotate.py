"""RotatE (Sun et al., 2019), https://arxiv.org/abs/1902.10197."""

from __future__ import annotations

import math
from typing import ClassVar

from torch import Tensor

from emu_dgl.models.base import DECODERS, Decoder, broadcast_side, safe_sqrt


@DECODERS.register("rotate")
class RotatE(Decoder):
    r"""Rotation in complex space; entities ``[re | im]`` (width 2d), relations are
    phases (width d), so :math:`|r_i| = 1` by construction:

    .. math::
        f(h, r, t) = \gamma - \sum_i \big| h_i\, e^{\mathrm{i}\theta_i} - t_i \big|,
        \qquad \theta = r \cdot \pi / a,\ a = (\gamma + 2) / d

    (the complex modulus per coordinate, summed). Since :math:`|e^{\mathrm{i}\theta}|=1`
    the same score is :math:`\sum_i |h_i - t_i e^{-\mathrm{i}\theta_i}|`; the smaller
    operand is the one rotated. Not separable per real coordinate (a modulus mixes
    ``re`` and ``im``), so EMU mutates its embeddings directly.
    """

    complex_entities: ClassVar[bool] = True

    entity_factor: ClassVar[int] = 2
    entity_blocks: ClassVar[tuple[str, ...]] = ("re", "im")
    relation_blocks: ClassVar[tuple[str, ...]] = ("phase",)
    phase_blocks: ClassVar[tuple[str, ...]] = ("phase",)

    def reverse_relation(self, r: Tensor) -> Tensor:
        return -r  # |h e^{i theta} - t| = |t e^{-i theta} - h|

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        theta = r * (math.pi / self.embedding_range)
        cos, sin = theta.cos(), theta.sin()
        h_re, h_im = h.chunk(2, dim=-1)
        t_re, t_im = t.chunk(2, dim=-1)
        if broadcast_side(h, r, t) == "tail":  # rotate h forward (the small operand)
            d_re = (h_re * cos - h_im * sin) - t_re
            d_im = (h_re * sin + h_im * cos) - t_im
        else:  # rotate t back by conj(r)
            d_re = h_re - (t_re * cos + t_im * sin)
            d_im = h_im - (t_im * cos - t_re * sin)
        return self.gamma - safe_sqrt(d_re.square() + d_im.square()).sum(-1)
