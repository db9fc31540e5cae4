"""pRotatE, the phase-only RotatE (Sun et al., 2019), https://arxiv.org/abs/1902.10197."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.models.base import DECODERS, SeparableDecoder, Side


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
