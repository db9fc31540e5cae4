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

#: Lane types of the Bernoulli mask by its resolution in bits (p is rounded to a multiple of
#: 2**-bits): one random 64-bit word gives 8 lanes of 8 bits or 4 of 16.
LANE_TYPES = {8: torch.int8, 16: torch.int16}


class Mutation(nn.Module):
    """Base class: ``forward(pos[B,1,D], neg[B,n,D], *, generator) -> [B,n,D]``.

    The training step draws all random numbers of a step at once and hands each consumer
    its block of uniform int64 words; a mutation reads its block through
    :meth:`words_needed` and :meth:`mutate_group` / :meth:`group_mask_from_words` (fixed
    shape, no generator, so that the step can be captured in a CUDA graph or compiled).
    Words are laid out by leading row: rows ``lo:hi`` of a ``[B, ...]`` draw read words
    ``words.view(B, -1)[lo:hi]``, so a process training a slice of the batch reads the
    same random numbers as one process training all of it.

    In the step a *group* ``[B, C, D]`` holds the positive's entity in column 0 and the
    negatives after it; mutating a group leaves column 0 as it is.
    """

    def words_needed(self, shape: Sequence[int]) -> int:
        """Uniform int64 words that mutating a ``[B, C, D]`` group consumes."""
        raise NotImplementedError

    def mutate_group(self, group: Tensor, words: Tensor) -> Tensor:
        """``group[B, C, D]`` with columns ``1..C-1`` mutated towards column 0."""
        raise NotImplementedError

    def group_mask_from_words(
        self,
        words: Tensor,
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.bool,
        out: Tensor | None = None,
    ) -> Tensor | None:
        """The coordinate mask of a group (True or 1 = the candidate's own coordinate,
        column 0 all False), or ``None`` for a mutation that is no coordinate-wise choice.
        ``dtype`` other than bool gives the mask as 0/1 numbers, written directly (into
        ``out`` when given)."""
        return None

    def chunk_mask_from_words(
        self, words: Tensor, shape: Sequence[int], *, dtype: torch.dtype = torch.bool
    ) -> Tensor | None:
        """Shared negatives (:mod:`emu_dgl.models.shared`): the coordinate mask ``[K, N, De]``
        of every chunk's negative slots (True or 1 = the negative's own coordinate), or
        ``None`` for a mutation that is no coordinate-wise choice."""
        return None

    def chunk_weights_from_words(
        self, words: Tensor, shape: Sequence[int], *, dtype: torch.dtype
    ) -> Tensor | None:
        """Shared negatives: one mixing weight per chunk and negative slot, ``[K, N]``
        (``x = w n + (1 - w) t``), or ``None`` for a mutation of another form."""
        return None

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

    The mask is drawn on the device from uniform 64-bit words, ``bits`` random bits per
    coordinate: a word splits into ``64 / bits`` independent uniform lanes, and
    ``m = lane < round(p * 2**bits)``. The probability used is therefore
    ``p_effective = round(p * 2**bits) / 2**bits`` (``|p_effective - p| <= 2**-(bits+1)``;
    exact for p = 0 and 1). ``bits = 8`` (``emu.mask_bits``, the default) draws half the
    random words of ``bits = 16`` and compares bytes, which on a CPU is most of what a
    per-positive EMU mask costs; the paper configs keep 16 (p = 0.39 is then 0.38999939,
    with 8 bits 0.390625).
    """

    def __init__(self, p: float = 0.39, *, bits: int = 8) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"emu.p is {p} but must lie in [0, 1]; e.g. emu.p=0.39")
        if bits not in LANE_TYPES:
            raise ConfigError(f"emu.mask_bits is {bits} but must be 8 or 16")
        self.p, self.bits = float(p), int(bits)
        self._level = round(self.p * (1 << bits))  # mask = lane < level, lane uniform

    @property
    def p_effective(self) -> float:
        """The exact Bernoulli probability of the drawn mask."""
        return self._level / (1 << self.bits)

    def extra_repr(self) -> str:
        return f"p={self.p}, bits={self.bits}"

    def words_needed(self, shape: Sequence[int]) -> int:
        """``64 / bits`` lanes per int64 word, each leading row starting on a new word;
        none when p is 0 or 1 (the mask is constant)."""
        if self._level <= 0 or self._level >= 1 << self.bits:
            return 0
        rows, per_row = _rows(shape)
        lanes = 64 // self.bits
        return rows * ((per_row + lanes - 1) // lanes)

    def mask_from_words(
        self,
        words: Tensor,
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.bool,
        out: Tensor | None = None,
    ) -> Tensor:
        """``lane < level`` over the 16-bit lanes of ``words``, row by leading row (as 0/1
        numbers of ``dtype`` when it is not bool, written by the comparison itself, into
        ``out`` when given: a buffer the caller reuses from step to step, since on a CPU a
        fresh tensor of this size costs more in page faults than the comparison)."""
        shape = tuple(shape)
        if self._level <= 0:
            return torch.zeros(shape, dtype=dtype, device=words.device)
        if self._level >= 1 << self.bits:
            return torch.ones(shape, dtype=dtype, device=words.device)
        # Read the words as signed lanes v in [-2**(bits-1), 2**(bits-1)); v + 2**(bits-1)
        # is uniform on [0, 2**bits), so P(v < level - 2**(bits-1)) = level / 2**bits
        # exactly. Every 64-bit pattern being equally likely, each lane is an independent
        # uniform word.
        rows, per_row = _rows(shape)
        lanes = words.view(rows, -1).view(LANE_TYPES[self.bits])
        if lanes.shape[1] != per_row:
            lanes = lanes[:, :per_row]
        threshold = self._level - (1 << (self.bits - 1))
        if dtype == torch.bool and out is None:
            return lanes.reshape(shape) < threshold
        if out is None:
            out = torch.empty(shape, dtype=dtype, device=words.device)
        return torch.lt(lanes.reshape(shape), threshold, out=out)

    def group_mask_from_words(
        self,
        words: Tensor,
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.bool,
        out: Tensor | None = None,
    ) -> Tensor:
        mask = self.mask_from_words(words, shape, dtype=dtype, out=out)
        mask.select(1, 0).fill_(0)  # the positive's column keeps its coordinates
        return mask

    def chunk_mask_from_words(
        self, words: Tensor, shape: Sequence[int], *, dtype: torch.dtype = torch.bool
    ) -> Tensor:
        return self.mask_from_words(words, shape, dtype=dtype)

    def mutate_group(self, group: Tensor, words: Tensor) -> Tensor:
        return torch.where(self.group_mask_from_words(words, group.shape), group, group[:, :1])

    def draw_mask(
        self,
        shape: Sequence[int],
        *,
        device: torch.device,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.bool,
    ) -> Tensor:
        shape = tuple(shape)
        words = torch.empty(self.words_needed(shape), dtype=torch.int64, device=device)
        # from = int64 min and no upper bound: every one of the 2**64 bit patterns
        words.random_(-(2**63), None, generator=generator)
        return self.mask_from_words(words, shape, dtype=dtype)

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
    ``lam = sqrt(U)`` with ``U ~ Uniform[0, 1)`` (24 random bits) from the run's words.
    """

    def words_needed(self, shape: Sequence[int]) -> int:
        """One word per candidate of a ``[B, C, D]`` group."""
        return math.prod(tuple(shape)[:-1])

    @staticmethod
    def weights_from_words(words: Tensor, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        """``sqrt(U)`` with ``U`` uniform on ``[0, 1)`` in steps of ``2**-24`` (exact in
        float32): the top 24 bits of each word, shifted to be non-negative."""
        top = (words[: math.prod(tuple(shape))] >> 40) + (1 << 23)
        return (top.to(dtype) * 2.0**-24).view(tuple(shape)).sqrt_()

    def draw_weights(
        self,
        shape: Sequence[int],
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        words = torch.empty(math.prod(tuple(shape)), dtype=torch.int64, device=device)
        words.random_(-(2**63), None, generator=generator)
        return self.weights_from_words(words, shape, dtype)

    def chunk_weights_from_words(
        self, words: Tensor, shape: Sequence[int], *, dtype: torch.dtype
    ) -> Tensor:
        return self.weights_from_words(words, shape, dtype)

    def mutate_group(self, group: Tensor, words: Tensor) -> Tensor:
        weights = self.weights_from_words(words, (*group.shape[:-1], 1), group.dtype)
        weights.select(1, 0).fill_(1.0)  # the positive stays itself: 1 * e + 0 * e
        return weights * group + (1 - weights) * group[:, :1]

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


def _rows(shape: Sequence[int]) -> tuple[int, int]:
    """``(leading rows, elements per row)`` of a shape (a 1-d shape is one row)."""
    shape = tuple(shape)
    if len(shape) < 2:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def build_mutation(variant: str, *, p: float = 0.39, bits: int = 8) -> Mutation | None:
    """The mutation for the ``emu.variant`` config key.

    ``emu`` -> :class:`EMUMutation` (``p``), ``mixup`` -> :class:`MixupMutation`,
    ``label_smoothing`` -> ``None`` (no mutation: give the EMU loss the unmutated
    negatives' scores as the mutated ones).
    """
    key = variant.lower()
    if key == "label_smoothing":
        return None
    if key == "emu":
        return EMUMutation(p, bits=bits)
    if key in MUTATIONS:
        return MUTATIONS.build(key)
    raise ConfigError(
        f"unknown emu.variant '{variant}'; valid: {', '.join([*MUTATIONS.names(), 'label_smoothing'])}"
    )
