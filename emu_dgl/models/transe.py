"""TransE (Bordes et al., 2013), https://papers.nips.cc/paper/5071."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.models.base import DECODERS, SeparableDecoder, Side, safe_sqrt
from emu_dgl.models.shared import Polynomial
from emu_dgl.registry import Option


@DECODERS.register("transe")
class TransE(SeparableDecoder):
    r"""Translation in real space:

    .. math::
        f(h, r, t) = \gamma - \lVert h + r - t \rVert_p, \qquad p \in \{1, 2\}

    Terms: :math:`|h_k + r_k - t_k|^p`; the score is :math:`\gamma - \sum_k` terms
    (``p = 1``) or :math:`\gamma - \sqrt{\sum_k \text{terms}}` (``p = 2``).
    """

    options: ClassVar[dict[str, Option]] = {
        "p_norm": Option(1, "norm of the translation residual: 1 or 2", choices=(1, 2)),
    }

    def __init__(self, dim: int, *, gamma: float = 12.0, p_norm: int = 1) -> None:
        super().__init__(dim, gamma=gamma)
        if p_norm not in (1, 2):
            raise ConfigError(f"model.p_norm is {p_norm} but TransE supports 1 or 2")
        self.p_norm = p_norm

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p_norm={self.p_norm}"

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        diff = (h + r) - t if side == "tail" else h - (t - r)
        return diff.abs() if self.p_norm == 1 else diff.square()

    def reverse_relation(self, r: Tensor) -> Tensor:
        return -r  # |h + r - t| = |t - r - h|

    def polynomial(self, h: Tensor, r: Tensor) -> Polynomial | None:
        """``p = 2``: ``(q - x)^2 = q^2 - 2 q x + x^2`` with ``q = h + r``; ``p = 1`` has none."""
        if self.p_norm != 2:
            return None
        q = h + r
        return Polynomial(c0=q.square(), c1=-2 * q, c2=1.0)

    def finish(self, total: Tensor) -> Tensor:
        return self.gamma - (total if self.p_norm == 1 else safe_sqrt(total))

    # One side against all entities: a pairwise distance, which torch.cdist computes
    # without the [B, S, D] difference tensor of the broadcast default (p = 2 goes
    # through a matrix product, p = 1 through a blocked kernel).
    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        return self.gamma - torch.cdist(h + r, candidates, p=self.p_norm)

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return self.gamma - torch.cdist(t - r, candidates, p=self.p_norm)

    def pair_bytes(self, element_size: int) -> int:
        return element_size
