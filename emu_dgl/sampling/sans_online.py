"""Structure-aware negatives from fresh DGL random walks per batch (no neighbourhood cache)."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

import torch

from emu_dgl._dgl import dgl
from emu_dgl.graph.neighbourhood import WALK_MODES, training_graph
from emu_dgl.registry import SAMPLERS, Option
from emu_dgl.sampling.base import Side, anchors

__all__ = ["OnTheFlyWalkSampler", "WALK_OPTIONS"]

#: The walk settings SANS and its on-the-fly variant share (``sampler.*`` config keys).
WALK_OPTIONS: dict[str, Option] = {
    "k_hop": Option(
        3,
        "neighbourhood radius k: the walks' length (continue: a record every k steps)",
        low=0,
        low_open=True,
    ),
    "walk_mode": Option(
        "continue",
        "continue (one walk of k*walks steps, every k-th node: the published SANS/EMU code) | "
        "restart (walks independent k-step walks: all within k hops)",
        type=Literal["continue", "restart"],
    ),
}


def _mix_seed(*parts: int) -> int:
    """A 31-bit seed for ``dgl.seed`` mixed from integers (stable across processes)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@SAMPLERS.register("sans_online")
class OnTheFlyWalkSampler:
    """Structure-aware negatives from fresh ``k``-step DGL walks per batch.

    ``restart``: each anchor is repeated ``n`` times and walked ``k`` steps on
    the undirected training graph with :func:`dgl.sampling.random_walk`; the
    endpoints are the negatives, so each is a draw from ``P^k[a, :]`` exactly
    (the ``w -> infinity`` limit of the walk neighbourhood; an anchor's
    neighbourhood never has to be stored). Walks that die (isolated anchor) or
    end at the anchor itself fall back to a uniform id.
    ``continue``: one walk of ``k * n`` steps per anchor, the node after every
    ``k`` steps is a negative (the anchor too, when the walk comes back to it);
    an isolated anchor falls back to uniform ids.

    DGL's generator is seeded each call from ``(seed, step, one draw of
    generator)``, so the same generator state and step give the same walks and
    a resumed run draws what an uninterrupted one would, as far as DGL allows:
    DGL seeds one engine per OpenMP thread and mixes the thread's identity into
    it, so bit-exact walks need the same thread count (observed identical
    across fresh processes on an idle machine, not guaranteed by DGL). This
    re-seeds DGL's global generator.
    """

    options: ClassVar[dict[str, Option]] = dict(WALK_OPTIONS)

    @classmethod
    def from_options(
        cls,
        *,
        train: torch.Tensor,
        num_entities: int,
        num_negatives: int,
        k_hop: int = 3,
        walk_mode: str = "continue",
        seed: int = 0,
    ) -> OnTheFlyWalkSampler:
        """As the constructor, with the config's default walk mode (``continue``)."""
        return cls(
            train=train,
            num_entities=num_entities,
            num_negatives=num_negatives,
            k_hop=k_hop,
            walk_mode=walk_mode,
            seed=seed,
        )

    def __init__(
        self,
        *,
        train: torch.Tensor,
        num_entities: int,
        num_negatives: int,
        k_hop: int = 3,
        walk_mode: str = "restart",
        seed: int = 0,
    ) -> None:
        if k_hop < 1:
            raise ValueError(f"k_hop must be >= 1, got {k_hop}")
        if walk_mode not in WALK_MODES:
            raise ValueError(f"walk_mode must be one of {', '.join(WALK_MODES)}, got {walk_mode!r}")
        self.walk_mode = walk_mode
        self.graph = training_graph(train, num_entities)
        self.num_entities = num_entities
        self.num_negatives = num_negatives
        self.k_hop = k_hop
        self.seed = seed

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        anchor = anchors(pos, side).long()
        draw = torch.randint(0, 2**31 - 1, (1,), generator=generator, device=pos.device)
        uniform = torch.randint(
            0,
            self.num_entities,
            (anchor.shape[0], self.num_negatives),
            generator=generator,
            device=pos.device,
        )
        dgl.seed(_mix_seed(self.seed, step, int(draw)))
        k, n = self.k_hop, self.num_negatives
        if self.walk_mode == "restart":
            seeds = anchor.to(self.graph.device).repeat_interleave(n)
            trace, _ = dgl.sampling.random_walk(self.graph, seeds, length=k)
            end = trace[:, -1].view(anchor.shape[0], n).to(pos.device)
            bad = (end < 0) | (end == anchor.unsqueeze(1))
        else:
            trace, _ = dgl.sampling.random_walk(
                self.graph, anchor.to(self.graph.device), length=k * n
            )
            end = trace[:, k::k].to(pos.device)
            bad = end < 0
        return torch.where(bad, uniform, end)
