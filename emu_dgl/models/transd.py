"""TransD (Ji et al., 2015), https://aclanthology.org/P15-1067."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.models.base import DECODERS, Decoder, safe_sqrt
from emu_dgl.registry import Option


@DECODERS.register("transd")
class TransD(Decoder):
    r"""Translation after a dynamic projection. Entities ``[e | e_p]``, relations
    ``[r | r_p]`` (width 2d each); with :math:`M_{re} = r_p e_p^\top + I`:

    .. math::
        e_\perp = M_{re}\, e = e + (e_p^\top e)\, r_p, \qquad
        f(h, r, t) = \gamma - \lVert h_\perp + r - t_\perp \rVert_p

    No norm constraint is imposed on :math:`e_\perp`. Not separable (the projection
    mixes coordinates), so EMU mutates its embeddings directly.
    """

    entity_factor: ClassVar[int] = 2
    relation_factor: ClassVar[int] = 2
    entity_blocks: ClassVar[tuple[str, ...]] = ("e", "e_p")
    relation_blocks: ClassVar[tuple[str, ...]] = ("r", "r_p")

    options: ClassVar[dict[str, Option]] = {
        "p_norm": Option(1, "norm of the translation residual: 1 or 2", choices=(1, 2)),
    }

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p_norm={self.p_norm}"

    def __init__(self, dim: int, *, gamma: float = 12.0, p_norm: int = 1) -> None:
        super().__init__(dim, gamma=gamma)
        if p_norm not in (1, 2):
            raise ConfigError(f"model.p_norm is {p_norm} but TransD supports 1 or 2")
        self.p_norm = p_norm
        sign = torch.ones(2 * self.dim)
        sign[: self.dim] = -1.0
        self.register_buffer("_negate_translation", sign, persistent=False)

    def reverse_relation(self, r: Tensor) -> Tensor:
        # ||h_p + r - t_p|| = ||t_p - r - h_p||: the translation flips, the projection stays
        return r * self._negate_translation

    @staticmethod
    def project(e: Tensor, r_p: Tensor) -> Tensor:
        vec, proj = e.chunk(2, dim=-1)
        return vec + (proj * vec).sum(-1, keepdim=True) * r_p

    def forward(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        r_vec, r_p = r.chunk(2, dim=-1)
        h_perp, t_perp = self.project(h, r_p), self.project(t, r_p)
        if h.numel() <= t.numel():
            diff = (h_perp + r_vec) - t_perp
        else:
            diff = h_perp - (t_perp - r_vec)
        if self.p_norm == 1:
            return self.gamma - diff.abs().sum(-1)
        return self.gamma - safe_sqrt(diff.square().sum(-1))
