"""HAKE (Zhang et al., 2020), https://arxiv.org/abs/1911.09419."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.models.base import DECODERS, SeparableDecoder, Side, safe_sqrt
from emu_dgl.registry import Option


@DECODERS.register("hake")
class HAKE(SeparableDecoder):
    r"""Hierarchy-aware embeddings in polar coordinates: the *modulus* part places
    entities on levels of a hierarchy (the radius), the *phase* part tells apart the
    entities of one level (the angle).

    Entities are ``[phase | modulus]`` (width 2d), relations ``[phase | modulus | bias]``
    (width 3d), the layout of the authors' code. Phases are read in radians,
    :math:`\theta = w \cdot \pi / a` with :math:`a = (\gamma + 2) / d`; the relation
    modulus is :math:`m_r = |w|` and its bias :math:`b` is clipped to :math:`[-m_r, 1]`:

    .. math::
        f(h, r, t) = \gamma
          - \lambda_p \sum_k \Big| \sin\frac{\theta_{h,k} + \theta_{r,k} - \theta_{t,k}}{2} \Big|
          - \lambda_m \big\lVert m_h \circ (m_r + b) - m_t \circ (1 - b) \big\rVert_2

    The modulus term is the paper's :math:`\lVert m_h \circ \frac{m_r + b}{1 - b} - m_t
    \rVert_2` multiplied through by :math:`1 - b \ge 0` (as the authors' code does), so
    there is no division. :math:`\lambda_p` and :math:`\lambda_m` are learnt, as in the
    authors' code, starting from ``phase_weight * a`` and ``modulus_weight``. Entity
    moduli are not forced positive (nor are they there).

    Init: ``U(-a, a)`` everywhere, then relation moduli 1 and biases 0, so every relation
    starts as the identity on moduli.

    Separable in two groups of terms: ``[|sin(angle_k / 2)| | residual_k^2]``, aligned
    with the entity's ``[phase | modulus]`` coordinates; the phase block is summed, the
    modulus block summed and square-rooted. An EMU-mutated entity takes each
    coordinate, hence each term, from the negative or the positive, so the mutated
    scores reuse the negatives' terms (no second scoring pass).
    """

    entity_factor: ClassVar[int] = 2
    relation_factor: ClassVar[int] = 3
    term_groups: ClassVar[int] = 2
    entity_blocks: ClassVar[tuple[str, ...]] = ("phase", "modulus")
    relation_blocks: ClassVar[tuple[str, ...]] = ("phase", "modulus", "bias")
    phase_blocks: ClassVar[tuple[str, ...]] = ("phase",)
    options: ClassVar[dict[str, Option]] = {
        "modulus_weight": Option(1.0, "initial weight of the modulus distance (learnt)", low=0),
        "phase_weight": Option(
            0.5, "initial weight of the phase distance, times (gamma + 2) / dim (learnt)", low=0
        ),
    }

    def __init__(
        self,
        dim: int,
        *,
        gamma: float = 12.0,
        modulus_weight: float = 1.0,
        phase_weight: float = 0.5,
    ) -> None:
        super().__init__(dim, gamma=gamma)
        for key, value, default in (
            ("modulus_weight", modulus_weight, 1.0),
            ("phase_weight", phase_weight, 0.5),
        ):
            if not value >= 0:  # also rejects NaN
                raise ConfigError(
                    f"model.{key} is {value} but must be >= 0; e.g. model.{key}={default}"
                )
        self.init_modulus_weight = float(modulus_weight)
        self.init_phase_weight = float(phase_weight)
        self.modulus_weight = nn.Parameter(torch.tensor(self.init_modulus_weight))
        self.phase_weight = nn.Parameter(
            torch.tensor(self.init_phase_weight * self.embedding_range)
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, modulus_weight={self.init_modulus_weight}, "
            f"phase_weight={self.init_phase_weight}"
        )

    @torch.no_grad()
    def reset_parameters(self, entity_weight: Tensor, relation_weight: Tensor) -> None:
        super().reset_parameters(entity_weight, relation_weight)
        d = self.dim
        relation_weight[:, d : 2 * d].fill_(1.0)
        relation_weight[:, 2 * d :].zero_()
        self.modulus_weight.fill_(self.init_modulus_weight)
        self.phase_weight.fill_(self.init_phase_weight * self.embedding_range)

    @property
    def _half_radians(self) -> float:
        """Stored phase -> half the angle in radians, the argument of ``sin(. / 2)``."""
        return 0.5 * math.pi / self.embedding_range

    @staticmethod
    def _relation(r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Relation phase, modulus ``|m_r|`` and bias clipped to ``[-|m_r|, 1]``."""
        phase, modulus, bias = r.chunk(3, dim=-1)
        modulus = modulus.abs()
        bias = bias.clamp(max=1.0)
        # Below -|m_r| the bias is replaced by -|m_r| (gradient to the modulus), as in the
        # authors' code; then m_r + b >= 0 and 1 - b >= 0.
        bias = torch.where(bias < -modulus, -modulus, bias)
        return phase, modulus, bias

    def reverse_relation(self, r: Tensor) -> Tensor:
        """``[-phase | m | 1 - m - b]`` (``m = |m_r|``, ``b`` the clipped bias): the phase
        term is even in the angle, and the modulus residual only changes sign when the
        factors ``m + b`` and ``1 - b`` of head and tail swap. ``_relation`` maps the new
        row to itself (``1 - m - b`` already lies in ``[-m, 1]``), so values and gradients
        equal those of the head form."""
        phase, modulus, bias = self._relation(r)
        return torch.cat([-phase, modulus, 1 - modulus - bias], dim=-1)

    def _combine(self, phase: Tensor, modulus: Tensor) -> Tensor:
        return self.gamma - (self.phase_weight * phase + self.modulus_weight * modulus)

    def terms(self, h: Tensor, r: Tensor, t: Tensor, *, side: Side = "tail") -> Tensor:
        phase_h, mod_h = h.chunk(2, dim=-1)
        phase_t, mod_t = t.chunk(2, dim=-1)
        phase_r, mod_r, bias = self._relation(r)
        if side == "tail":  # combine the two small operands first
            angle = (phase_h + phase_r) - phase_t
        else:
            angle = phase_h - (phase_t - phase_r)
        phase = (angle * self._half_radians).sin().abs()
        residual = mod_h * (mod_r + bias) - mod_t * (1 - bias)
        return torch.cat([phase, residual.square()], dim=-1)

    def finish(self, total: Tensor) -> Tensor:
        phase, squares = total.unbind(-1)
        return self._combine(phase, safe_sqrt(squares))

    # -- one side against many candidates (evaluation) --------------------------------
    # The phase sum needs a [B, S, d] tensor (|sin| has no product form); without autograd
    # it is computed in place, in one buffer. The modulus norm ||o - s * c|| is expanded
    # into ||o||^2 - 2 <o * s, c> + <s^2, c^2>: two matrix products, no [B, S, d] tensor.
    def score_tails(self, h: Tensor, r: Tensor, candidates: Tensor) -> Tensor:
        phase_h, mod_h = h.chunk(2, dim=-1)
        phase_r, mod_r, bias = self._relation(r)
        phase_c, mod_c = candidates.chunk(2, dim=-1)
        phase = self._phase_sums(phase_h + phase_r, phase_c)
        modulus = self._modulus_norms(mod_h * (mod_r + bias), 1 - bias, mod_c)
        return self._combine(phase, modulus)

    def score_heads(self, candidates: Tensor, r: Tensor, t: Tensor) -> Tensor:
        phase_t, mod_t = t.chunk(2, dim=-1)
        phase_r, mod_r, bias = self._relation(r)
        phase_c, mod_c = candidates.chunk(2, dim=-1)
        # |sin((c + r - t) / 2)| = |sin(((t - r) - c) / 2)|
        phase = self._phase_sums(phase_t - phase_r, phase_c)
        # ||c * (m_r + b) - m_t * (1 - b)||: the candidate is scaled by m_r + b
        modulus = self._modulus_norms(mod_t * (1 - bias), mod_r + bias, mod_c)
        return self._combine(phase, modulus)

    def _phase_sums(self, query: Tensor, candidates: Tensor) -> Tensor:
        """``[B, S]``: ``sum_k |sin((query_bk - cand_sk) * pi / 2a)|``."""
        s = self._half_radians
        x = (query * s).unsqueeze(-2) - (candidates * s).unsqueeze(-3)
        if x.requires_grad:
            return x.sin().abs().sum(-1)
        return x.sin_().abs_().sum(-1)

    @staticmethod
    def _modulus_norms(offset: Tensor, scale: Tensor, candidates: Tensor) -> Tensor:
        """``[B, S]``: ``||offset_b - scale_b * cand_s||_2`` through matrix products
        (rounding can leave a tiny negative square, which ``safe_sqrt`` clamps)."""
        square = (
            offset.square().sum(-1, keepdim=True)
            - 2 * (offset * scale) @ candidates.transpose(-1, -2)
            + scale.square() @ candidates.square().transpose(-1, -2)
        )
        return safe_sqrt(square)

    def pair_bytes(self, element_size: int) -> int:
        # One [B, S, d] phase buffer (three with autograd: difference, sin, abs) plus a
        # few [B, S] products.
        copies = 3 if torch.is_grad_enabled() else 1
        return (copies * self.dim + 4) * element_size
