"""The sampler contract and the uniform sampler, on which every other sampler builds.

Kept apart from :mod:`emu_dgl.sampling.negatives` (the structure-aware samplers) so
that :mod:`emu_dgl.sampling.filtering` can wrap any sampler and fall back to uniform
draws without importing the samplers it wraps.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from emu_dgl.typing import Side

__all__ = ["NegativeSampler", "Side", "UniformSampler", "anchors"]


@runtime_checkable
class NegativeSampler(Protocol):
    """``sample(pos[B, 3], side) -> [B, n]``: the ids that replace ``side`` of each positive."""

    num_entities: int
    num_negatives: int

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor: ...


def anchors(pos: torch.Tensor, side: Side) -> torch.Tensor:
    """The kept entity of each positive: the head when corrupting tails and vice versa."""
    if side == "tail":
        return pos[:, 0]
    if side == "head":
        return pos[:, 2]
    raise ValueError(f"side must be 'head' or 'tail', got {side!r}")


class UniformSampler:
    """``n`` entity ids per positive, i.i.d. uniform over ``[0, E)``."""

    def __init__(self, *, num_entities: int, num_negatives: int) -> None:
        self.num_entities = num_entities
        self.num_negatives = num_negatives

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        anchors(pos, side)  # validates `side`
        return torch.randint(
            0,
            self.num_entities,
            (pos.shape[0], self.num_negatives),
            generator=generator,
            device=pos.device,
        )
