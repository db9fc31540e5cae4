"""False-negative filtering: reject sampled negatives that are known triples.

A triple ``(h, r, t)`` is encoded as one int64 key ``(h * R + r) * E + t``
(injective while ``0 <= r < R`` and ``0 <= h, t < E``). The known keys are
sorted once on the device; membership of a batch of keys is one
``torch.searchsorted`` plus one gather.
"""

from __future__ import annotations

import torch

from emu_dgl.sampling.base import NegativeSampler, Side, UniformSampler

__all__ = ["KnownTriples", "FilteredSampler"]


class KnownTriples:
    """A sorted int64 key set of triples, queried with ``searchsorted``."""

    def __init__(
        self, triples: torch.Tensor, *, num_entities: int, num_relations: int | None = None
    ) -> None:
        if triples.dim() != 2 or triples.shape[1] != 3:
            raise ValueError(f"known triples must be (M, 3), got {tuple(triples.shape)}")
        triples = triples.long()
        if num_relations is None:
            num_relations = int(triples[:, 1].max()) + 1 if triples.numel() else 1
        if num_entities * num_entities * num_relations >= 2**63:
            raise ValueError("too many entities/relations for int64 triple keys")
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.keys = torch.unique(self.encode(triples[:, 0], triples[:, 1], triples[:, 2]))
        self._copies: dict[torch.device, torch.Tensor] = {self.keys.device: self.keys}

    def encode(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * self.num_relations + r) * self.num_entities + t

    def keys_on(self, device: torch.device) -> torch.Tensor:
        """The sorted keys on ``device`` (copied once per device)."""
        if device not in self._copies:
            self._copies[device] = self.keys.to(device)
        return self._copies[device]

    def contains(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Boolean tensor (broadcast shape of h, r, t): is ``(h, r, t)`` known?"""
        keys = self.keys_on(h.device)
        query = self.encode(h, r, t)
        if keys.numel() == 0:
            return torch.zeros(query.shape, dtype=torch.bool, device=query.device)
        pos = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
        # a relation id outside [0, R) has no known triple (and would alias another key)
        return (keys[pos] == query) & (r < self.num_relations) & (r >= 0)


class FilteredSampler:
    """Wraps any sampler so that no negative forms a known triple (up to a redraw bound).

    After the base draw, the rows with a rejected slot (a known triple) draw a
    fresh set of ``n`` from the base sampler and fill their rejected slots with
    the fresh draws that pass, in order; up to ``max_redraws`` such rounds, then
    up to ``max_uniform_redraws`` rounds with uniform draws. A slot can only stay known when nearly every entity completes the
    pair into a known triple (``P(stay) = q^max_uniform_redraws`` for a known
    fraction ``q`` of all entities); real knowledge graphs are far from that.
    Each round costs one ``.any()`` host synchronisation to stop early.
    """

    def __init__(
        self,
        base: NegativeSampler,
        known: torch.Tensor | KnownTriples,
        num_entities: int,
        *,
        num_relations: int | None = None,
        max_redraws: int = 10,
        max_uniform_redraws: int = 100,
    ) -> None:
        self.base = base
        self.known = (
            known
            if isinstance(known, KnownTriples)
            else KnownTriples(known, num_entities=num_entities, num_relations=num_relations)
        )
        self.num_entities = num_entities
        self.num_negatives = base.num_negatives
        self.max_redraws = max_redraws
        self.max_uniform_redraws = max_uniform_redraws
        self._uniform = UniformSampler(num_entities=num_entities, num_negatives=base.num_negatives)

    def is_known(self, pos: torch.Tensor, neg: torch.Tensor, side: Side) -> torch.Tensor:
        """(B, n) bool: is the triple made by putting ``neg`` on ``side`` of ``pos`` known?"""
        h, r, t = (pos[:, i : i + 1] for i in range(3))
        if side == "tail":
            return self.known.contains(h, r, neg)
        return self.known.contains(neg, r, t)

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        neg = self.base.sample(pos, side, generator=generator, step=step)
        bad = self.is_known(pos, neg, side)
        rounds = [self.base] * self.max_redraws + [self._uniform] * self.max_uniform_redraws
        for sampler in rounds:
            rows = bad.any(dim=1).nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            sub_pos, sub_bad, sub_neg = pos[rows], bad[rows], neg[rows]
            fresh = sampler.sample(sub_pos, side, generator=generator, step=step)
            good = ~self.is_known(sub_pos, fresh, side)
            # The q-th rejected slot of a row takes the q-th accepted fresh draw of that
            # row: fresh draws are i.i.d., so the filled slots are i.i.d. draws of the
            # base distribution conditioned on "not known", and a row is repaired in one
            # round whenever a round yields as many accepted draws as it has rejections.
            accepted_first = torch.argsort((~good).to(torch.uint8), dim=1, stable=True)
            compact = fresh.gather(1, accepted_first)
            rank = sub_bad.long().cumsum(1) - 1
            fill = sub_bad & (rank < good.sum(dim=1, keepdim=True))
            taken = compact.gather(1, rank.clamp(0, fresh.shape[1] - 1))
            neg[rows] = torch.where(fill, taken, sub_neg)
            bad[rows] = sub_bad & ~fill
        return neg
