"""RotatE and pRotatE (Sun et al., 2019), https://arxiv.org/abs/1902.10197."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.models.base import (
    DECODERS,
    Decoder,
    SeparableDecoder,
    Side,
    broadcast_side,
    safe_sqrt,
)


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


@DECODERS.register("protate")
class pRotatE(SeparableDecoder):  # noqa: N801 (the paper's name)
    r"""Phase-only RotatE: entities and relations are phases (width d),
    :math:`\phi = w \cdot \pi / a` with :math:`a = (\gamma + 2) / d`:

    .. math::
        f(h, r, t) = \gamma - \mu \sum_i \Big| \sin\frac{\phi_{h,i} + \phi_{r,i} - \phi_{t,i}}{2} \Big|

    which is :math:`\gamma - \tfrac{\mu}{2} \lVert e^{\mathrm{i}\phi_h} e^{\mathrm{i}\phi_r}
    - e^{\mathrm{i}\phi_t} \rVert_1` (chord length of unit-modulus rotations). The
    modulus :math:`\mu` is learnt, initialised to ``0.5 * a`` as in Sun et al.
    Terms: :math:`|\sin(\cdot/2)|` per coordinate.
    """

    entity_blocks: ClassVar[tuple[str, ...]] = ("phase",)
    relation_blocks: ClassVar[tuple[str, ...]] = ("phase",)
    phase_blocks: ClassVar[tuple[str, ...]] = ("phase",)

    def __init__(self, dim: int, *, gamma: float = 12.0) -> None:
        super().__init__(dim, gamma=gamma)
        self.modulus = nn.Parameter(torch.tensor(0.5 * self.embedding_range))

    @torch.no_grad()
    def reset_parameters(self, entity_weight: Tensor, relation_weight: Tensor) -> None:
        super().reset_parameters(entity_weight, relation_weight)
        self.modulus.fill_(0.5 * self.embedding_range)

    def reverse_relation(self, r: Tensor) -> Tensor:
        return -r  # |sin((h + r - t) / 2)| = |sin((t - r - h) / 2)|

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        x = (h + r) - t if side == "tail" else h - (t - r)
        return (x * (0.5 * math.pi / self.embedding_range)).sin().abs()

    def finish(self, total: Tensor) -> Tensor:
        return self.gamma - self.modulus * total
