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
"Label smoothing only" is no mutation at all: the ``label_smoothing`` entry
builds ``None`` and the loss receives the unmutated negatives' scores as the
mutated ones.

Each mutation is a component (:mod:`emu_dgl.registry`) in a file of its own
(:mod:`~emu_dgl.models.emu_mutation`, :mod:`~emu_dgl.models.mixup`,
:mod:`~emu_dgl.models.label_smoothing`), selected by ``emu.variant``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from emu_dgl.registry import MUTATIONS

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


def build_mutation(variant: str, *, p: float = 0.39, bits: int = 8) -> Mutation | None:
    """The mutation of the ``emu.variant`` name (``None`` for ``label_smoothing``: no
    mutation), with EMU's ``p`` and ``bits`` (``emu.mask_bits``) where it takes them."""
    options = {"p": p, "mask_bits": bits}
    accepted = MUTATIONS.options(variant)
    return MUTATIONS.build(variant, **{k: v for k, v in options.items() if k in accepted})


def rows_of(shape: Sequence[int]) -> tuple[int, int]:
    """``(leading rows, elements per row)`` of a shape (a 1-d shape is one row)."""
    shape = tuple(shape)
    if len(shape) < 2:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def __getattr__(name: str) -> object:
    """The mutations, where they were before each had a file of its own."""
    homes = {
        "EMUMutation": "emu_dgl.models.emu_mutation",
        "MixupMutation": "emu_dgl.models.mixup",
        "LabelSmoothingOnly": "emu_dgl.models.label_smoothing",
    }
    if name in homes:
        import importlib

        return getattr(importlib.import_module(homes[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
