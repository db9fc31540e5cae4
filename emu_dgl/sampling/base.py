"""The sampler contract and the uniform sampler, on which every other sampler builds.

Kept apart from :mod:`emu_dgl.sampling.negatives` (the structure-aware samplers) so
that :mod:`emu_dgl.sampling.filtering` can wrap any sampler and fall back to uniform
draws without importing the samplers it wraps.

Two ways to draw. ``sample(pos, side, *, generator)`` is the public one: it draws its
random numbers from ``generator``. Samplers that can also draw from random numbers they
are *given* implement :class:`WordSampler`: ``sample_words(pos, side, words)`` turns a
block of uniform random 64-bit words into negatives with fixed-shape tensor operations
and no host synchronisation. The training step draws every random word of a step in one
call and hands each consumer its block, which is what makes the step one pure function
of tensors (capturable in a CUDA graph, compilable with ``torch.compile``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from emu_dgl.registry import SAMPLERS
from emu_dgl.typing import Side

__all__ = [
    "NegativeSampler",
    "Side",
    "SideSpec",
    "UniformSampler",
    "WordSampler",
    "anchors",
    "draw_words",
    "draws_from_words",
    "per_row",
    "random_below",
]

#: A static side for the whole batch, or a bool tensor ``[B]``: True corrupts the head.
SideSpec = Side | torch.Tensor


@runtime_checkable
class NegativeSampler(Protocol):
    """``sample(pos[B, 3], side) -> [B, n]``: the ids that replace ``side`` of each positive."""

    num_entities: int
    num_negatives: int

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor: ...


@runtime_checkable
class WordSampler(Protocol):
    """A sampler that draws from given random words, in fixed shape.

    ``sample_words(pos[B, 3], side, words[B, ..., words_per_row]) -> [B, ..., n]`` must
    use only tensor operations of static shape (no ``.item()``, ``nonzero``, ``unique``,
    boolean indexing, or Python branches on tensor values), so that it runs inside a
    captured or compiled step; the words may carry extra dims between the batch and the
    last one (several draws at once, e.g. ``[B, G, k]``). ``side`` may be a bool tensor
    ``[B]`` (True: corrupt the head). Plain samplers (uniform, SANS) draw one negative
    per word, for any number of words per row; the false-negative filter relies on that
    to draw spare candidates.
    """

    num_entities: int
    num_negatives: int
    words_per_row: int

    def sample_words(
        self, pos: torch.Tensor, side: SideSpec, words: torch.Tensor
    ) -> torch.Tensor: ...


def draws_from_words(sampler: object) -> bool:
    """Whether ``sampler`` implements :class:`WordSampler` (a wrapper such as the filter
    says so itself through ``draws_from_words``: only when its base sampler does)."""
    own = getattr(type(sampler), "draws_from_words", None)
    if own is not None:
        return bool(sampler.draws_from_words)  # type: ignore[attr-defined]
    return callable(getattr(sampler, "sample_words", None)) and hasattr(sampler, "words_per_row")


def anchors(pos: torch.Tensor, side: SideSpec) -> torch.Tensor:
    """The kept entity of each positive: the head when corrupting tails and vice versa."""
    if isinstance(side, torch.Tensor):
        return torch.where(side, pos[:, 2], pos[:, 0])
    if side == "tail":
        return pos[:, 0]
    if side == "head":
        return pos[:, 2]
    raise ValueError(f"side must be 'head' or 'tail', got {side!r}")


def per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[B]`` viewed as ``[B, 1, ..., 1]`` to broadcast against ``like[B, ...]``."""
    return values.view(values.shape[0], *([1] * (like.dim() - 1)))


def random_below(words: torch.Tensor, bound: int | torch.Tensor) -> torch.Tensor:
    """Uniform integers in ``[0, bound)`` from uniform int64 words, one per word.

    ``words mod bound`` (torch's remainder takes the sign of the divisor, so the result is
    never negative). Of the 2**64 word values, each result gets ``floor`` or ``ceil`` of
    ``2**64 / bound``: a relative bias below ``bound / 2**64`` (under 1e-12 for any table
    that fits in memory). ``bound`` may be a tensor that broadcasts against ``words``;
    it must be positive.
    """
    return torch.remainder(words, bound)


def draw_words(shape: tuple[int, ...], *, generator: torch.Generator, device: torch.device):
    """Uniform int64 words (every 64-bit pattern equally likely) from ``generator``."""
    words = torch.empty(shape, dtype=torch.int64, device=device)
    # from = int64 min and no upper bound: the full 64-bit range
    return words.random_(-(2**63), None, generator=generator)


@SAMPLERS.register("uniform")
class UniformSampler:
    """``n`` entity ids per positive, i.i.d. uniform over ``[0, E)``."""

    #: The draw reads neither the positive nor the side, so positives can share it
    #: (``sampler.shared_chunk``; ``sample_words`` takes words of any leading shape).
    anchor_free = True

    def __init__(self, *, num_entities: int, num_negatives: int) -> None:
        self.num_entities = num_entities
        self.num_negatives = num_negatives

    @property
    def words_per_row(self) -> int:
        return self.num_negatives

    def sample_words(self, pos: torch.Tensor, side: SideSpec, words: torch.Tensor) -> torch.Tensor:
        """One id per word (the number of columns follows ``words``)."""
        return random_below(words, self.num_entities)

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        anchors(pos, side)  # validates `side`
        words = draw_words(
            (pos.shape[0], self.words_per_row), generator=generator, device=pos.device
        )
        return self.sample_words(pos, side, words)
