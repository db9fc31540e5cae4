"""EMU's mutation (Takamoto et al., 2025): a per-coordinate Bernoulli(p) mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.models.mutation import LANE_TYPES, MUTATIONS, Mutation, rows_of
from emu_dgl.registry import Option


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

    options: ClassVar[dict[str, Option]] = {
        "p": Option(
            0.39,
            "probability that a coordinate of a mutated negative keeps the negative's value",
            low=0,
            high=1,
            low_open=True,
        ),
        "mask_bits": Option(
            8,
            "random bits per mask coordinate: p is rounded to a multiple of 2**-bits (8: half "
            "the random numbers of 16; the paper configs use 16)",
            choices=(8, 16),
        ),
    }

    @classmethod
    def from_options(cls, *, p: float = 0.39, mask_bits: int = 8) -> EMUMutation:
        return cls(p, bits=mask_bits)

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
        rows, per_row = rows_of(shape)
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
        """``lane < level`` over the ``bits``-bit lanes of ``words``, row by leading row (as 0/1
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
        rows, per_row = rows_of(shape)
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
