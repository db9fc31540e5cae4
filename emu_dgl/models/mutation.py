r"""Embedding mutations: the small module between embedding lookup and decoder.

EMU (Takamoto et al., 2025) turns each negative into a *mutated* negative whose
coordinates come partly from the negative and partly from the positive:

.. math::
    \tilde e_{b,j} = m_{b,j} \odot e^-_{b,j} + (1 - m_{b,j}) \odot e^+_b,
    \qquad m_{b,j,k} \sim \mathrm{Bernoulli}(p) \text{ i.i.d.}

``mask True`` means the coordinate is *kept from the negative* (probability
``p``). Only the corrupted entity is mutated; anchors and relations never are,
and the positive itself is left untouched. Gradients reach both ``e^-`` and
``e^+``.

The Mixup ablation replaces the per-coordinate mask by one scalar weight per
negative, :math:`\lambda \sim \mathrm{Beta}(2, 1)`.
"Label smoothing only" is no mutation at all: :func:`build_mutation` returns
``None`` and the loss receives the unmutated negatives' scores as the mutated
ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import Registry

MUTATIONS: Registry[Mutation] = Registry("mutation")

#: Resolution of the Bernoulli mask: p is rounded to a multiple of 2**-16.
MASK_BITS = 16


class Mutation(nn.Module):
    """Base class: ``forward(pos[B,1,D], neg[B,n,D], *, generator) -> [B,n,D]``."""

    def draw_mask(
        self,
        shape: Sequence[int],
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.bool,
    ) -> Tensor | None:
        """The per-coordinate choice mask (True = from the negative), or ``None``.

        A mutation that is a coordinate-wise choice between negative and positive
        returns its mask here, which lets a separable decoder score the mutated
        negatives without a second scoring pass (see ``KGEModel.score_negatives``).
        Mutations of another form return ``None`` and are applied to embeddings.
        ``dtype`` other than bool gives the same mask as 0/1 numbers.
        """
        return None

    def forward(
        self, pos: Tensor, neg: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        raise NotImplementedError


@MUTATIONS.register("emu")
class EMUMutation(Mutation):
    r"""EMU: per-coordinate Bernoulli(``p``) choice between negative and positive.

    The mask is drawn on the device with the given generator, 16 random bits per
    coordinate: one 64-bit draw over the full integer range gives four
    independent uniform 16-bit words, and ``m = word < round(p * 2**16)``. The
    probability used is therefore ``p_effective = round(p * 2**16) / 2**16``
    (``|p_effective - p| <= 2**-17``; exact for p = 0 and 1), at a quarter of the
    generator calls of ``torch.rand(shape) < p`` and without a float tensor.
    """

    def __init__(self, p: float = 0.39) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"emu.p is {p} but must lie in [0, 1]; e.g. emu.p=0.39")
        self.p = float(p)
        self._level = round(self.p * (1 << MASK_BITS))  # mask = word < level, word uniform

    @property
    def p_effective(self) -> float:
        """The exact Bernoulli probability of the drawn mask."""
        return self._level / (1 << MASK_BITS)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def draw_mask(
        self,
        shape: Sequence[int],
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.bool,
    ) -> Tensor:
        shape = tuple(shape)
        numel = math.prod(shape)
        if self._level <= 0:
            return torch.zeros(shape, dtype=dtype, device=device)
        if self._level >= 1 << MASK_BITS:
            return torch.ones(shape, dtype=dtype, device=device)
        words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
        # from = int64 min and no upper bound: every one of the 2**64 bit patterns
        # is equally likely, so each 16-bit quarter is an independent uniform word.
        words.random_(-(2**63), None, generator=generator)
        # Read the words as signed int16 v in [-2**15, 2**15); v + 2**15 is uniform on
        # [0, 2**16), so P(v < level - 2**15) = level / 2**16 exactly.
        halves = words.view(torch.int16)[:numel].view(shape)
        out = torch.empty(shape, dtype=dtype, device=device)
        return torch.lt(halves, self._level - (1 << (MASK_BITS - 1)), out=out)

    def forward(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """``where(mask, neg, pos)``: equal to ``m * neg + (1 - m) * pos`` in value and
        gradient for a 0/1 mask. ``mask`` overrides the draw (for tests and replays)."""
        if mask is None:
            mask = self.draw_mask(neg.shape, device=neg.device, generator=generator)
        return torch.where(mask, neg, pos)


@MUTATIONS.register("mixup")
class MixupMutation(Mutation):
    r"""Mixup ablation: one weight per negative, ``lam ~ Beta(2, 1)``.

    .. math::
        \tilde e_{b,j} = \lambda_{b,j}\, e^-_{b,j} + (1 - \lambda_{b,j})\, e^+_b

    ``lam`` weights the *negative* (as ``m`` does in EMU), so on average a mixed
    negative is 2/3 negative and 1/3 positive. Beta(2, 1) has CDF ``x**2``, so
    ``lam = sqrt(U)`` with ``U ~ Uniform[0, 1)`` from the run's generator.
    """

    def draw_weights(
        self,
        shape: Sequence[int],
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return torch.rand(tuple(shape), device=device, dtype=dtype, generator=generator).sqrt_()

    def forward(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        generator: torch.Generator | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        if weights is None:
            weights = self.draw_weights(
                (*neg.shape[:-1], 1), device=neg.device, dtype=neg.dtype, generator=generator
            )
        return weights * neg + (1 - weights) * pos


def build_mutation(variant: str, *, p: float = 0.39) -> Mutation | None:
    """The mutation for the ``emu.variant`` config key.

    ``emu`` -> :class:`EMUMutation` (``p``), ``mixup`` -> :class:`MixupMutation`,
    ``label_smoothing`` -> ``None`` (no mutation: give the EMU loss the unmutated
    negatives' scores as the mutated ones).
    """
    key = variant.lower()
    if key == "label_smoothing":
        return None
    if key == "emu":
        return EMUMutation(p)
    if key in MUTATIONS:
        return MUTATIONS.build(key)
    raise ConfigError(
        f"unknown emu.variant '{variant}'; valid: {', '.join([*MUTATIONS.names(), 'label_smoothing'])}"
    )
