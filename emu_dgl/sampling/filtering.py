"""False-negative filtering: reject sampled negatives that are known triples, in fixed shape.

A triple ``(h, r, t)`` is encoded as one int64 key ``(h * R + r) * E + t``
(injective while ``0 <= r < R`` and ``0 <= h, t < E``). The known keys are
sorted once on the device; membership of a batch of keys is one
``torch.searchsorted`` plus one gather.

The filter draws more candidates than it needs, all at once, and keeps the first
``n`` that are not known triples (see :class:`FilteredSampler`). Every tensor has a
shape fixed by the config: no loop that stops when a batch is clean, no row selection,
no host synchronisation, so the filter runs inside a captured or compiled step.
"""

from __future__ import annotations

import math

import torch

from emu_dgl.sampling.base import (
    NegativeSampler,
    Side,
    SideSpec,
    anchors,
    draw_words,
    draws_from_words,
    per_row,
    random_below,
)

__all__ = ["FilteredSampler", "KnownTriples", "default_spares"]


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
        self._sided: dict[torch.device, torch.Tensor] = {}

    @classmethod
    def from_sorted_keys(
        cls, keys: torch.Tensor, *, num_entities: int, num_relations: int
    ) -> KnownTriples:
        """From keys already sorted and distinct (:meth:`emu_dgl.data.KnowledgeGraph.filter_keys`,
        memory-mapped from a dataset cache): nothing is copied or sorted."""
        if num_entities * num_entities * num_relations >= 2**63:
            raise ValueError("too many entities/relations for int64 triple keys")
        known = cls.__new__(cls)
        known.num_entities, known.num_relations = num_entities, num_relations
        known.keys = keys
        known._copies = {keys.device: keys}
        known._sided = {}
        return known

    def encode(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * self.num_relations + r) * self.num_entities + t

    def keys_on(self, device: torch.device) -> torch.Tensor:
        """The sorted keys on ``device`` (copied once per device)."""
        if device not in self._copies:
            self._copies[device] = self.keys.to(device)
        return self._copies[device]

    def member(self, query: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: is each (valid) key among the known ones? Fixed shape."""
        keys = self.keys_on(query.device)
        if keys.numel() == 0:
            return torch.zeros(query.shape, dtype=torch.bool, device=query.device)
        found = torch.searchsorted(keys, query).clamp_max_(keys.numel() - 1)
        return torch.take(keys, found) == query

    def sided_keys_on(self, device: torch.device) -> torch.Tensor:
        """The known triples as sorted keys of both orientations, built once per device: the
        tail form ``(h R + r) E + t`` and, above all of them, the head form
        ``E R E + (t R + r) E + h``. In either, the triples that share the kept entity and
        relation (a query's known answers) are one contiguous run of keys."""
        if device not in self._sided:
            E, R = self.num_entities, self.num_relations
            if 2 * E * E * R >= 2**63:
                raise ValueError("too many entities/relations for int64 two-sided triple keys")
            h, r, t = self.decode(self.keys)
            head_form = E * R * E + (t * R + r) * E + h
            self._sided[device] = torch.cat([self.keys, head_form.sort().values]).to(device)
        return self._sided[device]

    def decode(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(h, r, t)`` of tail-form keys (the inverse of :meth:`encode`)."""
        hr, t = keys.div(self.num_entities, rounding_mode="floor"), keys % self.num_entities
        return hr.div(self.num_relations, rounding_mode="floor"), hr % self.num_relations, t

    def member_shared(
        self, pos: torch.Tensor, side: SideSpec, negatives: torch.Tensor
    ) -> torch.Tensor:
        """``known[B, ..., n]``: is the triple made by putting each of its chunk's negatives
        on ``side`` of positive ``pos[b]`` known? ``negatives[K, ..., n]`` are the shared
        negatives of ``K`` chunks of consecutive positives, **sorted** along the last dim.

        Fixed shape, and fast: each positive's keys are ``prefix_b * E + n_k`` (``prefix`` the
        kept entity and relation, in the orientation of :meth:`sided_keys_on`), so with the
        negatives sorted and the rows taken in order of their prefix, the ``B x n`` keys
        arrive at ``searchsorted`` in sorted order, and consecutive searches find the
        sorted key array's lines already in cache (about 4x faster than unordered keys on a
        CPU). The rows are put back in batch order afterwards.
        """
        E, R = self.num_entities, self.num_relations
        tail_prefix = pos[:, 0] * R + pos[:, 1]
        head_prefix = (E + pos[:, 2]) * R + pos[:, 1]  # = E R + t R + r
        if isinstance(side, torch.Tensor):
            prefix = torch.where(side, head_prefix, tail_prefix)
        else:
            prefix = head_prefix if side == "head" else tail_prefix
        B, K = pos.shape[0], negatives.shape[0]
        inner = negatives.shape[1:]
        keys = prefix.view(K, B // K, *([1] * len(inner))) * E + negatives.unsqueeze(1)
        order = torch.argsort(prefix)
        keys = keys.reshape(B, -1).index_select(0, order)
        table = self.sided_keys_on(keys.device)
        if table.numel() == 0:
            return torch.zeros((B, *inner), dtype=torch.bool, device=keys.device)
        found = torch.searchsorted(table, keys).clamp_max_(table.numel() - 1)
        hit = torch.take(table, found) == keys
        return torch.empty_like(hit).index_copy_(0, order, hit).view(B, *inner)

    def contains(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Boolean tensor (broadcast shape of h, r, t): is ``(h, r, t)`` known?"""
        # a relation id outside [0, R) has no known triple (and would alias another key)
        return self.member(self.encode(h, r, t)) & (r < self.num_relations) & (r >= 0)


def default_spares(num_negatives: int) -> tuple[int, int]:
    """``(spare, uniform_spare)`` candidates per row drawn beyond the ``n`` needed: a
    quarter of ``n`` from the base sampler, and ``n`` uniform ones.

    The uniform ones are for rows whose base draws are nearly all known triples (a SANS
    anchor whose few neighbours are its own true tails): there the whole row falls back to
    uniform draws, as with the rejection sampler's final uniform rounds. Measured with
    ``benchmarks/filter_residual.py`` (20 batches of 1000 positives, both sides, n = 256:
    10.24M negatives per case), no known triple was left on WN18RR or FB15k-237 with
    uniform or SANS negatives, where the unfiltered draws held 0.035% and 0.16% (WN18RR)
    and 0.99% and 1.3% (FB15k-237) known triples; with ``n / 8`` uniform spares instead,
    0.017% of WN18RR's SANS negatives stayed known.
    """
    return math.ceil(num_negatives / 4), num_negatives


class FilteredSampler:
    """Wraps any sampler so that no negative forms a known triple, up to a measured residual.

    Per positive it draws ``n + spare`` candidates from the base sampler and
    ``uniform_spare`` uniform ones, in that order, and returns the first ``n`` that are
    not known triples (a stable partition: accepted candidates first, in draw order).
    The accepted candidates are i.i.d. draws of the base distribution conditioned on
    "not known", so the first ``n`` of them are the ``n`` negatives a rejection sampler
    would return; the uniform candidates only come into play for a row whose base
    candidates are mostly known (an anchor whose neighbourhood is its own true tails).

    A row keeps a known triple only when fewer than ``n`` of its candidates pass; those
    rows are filled with their first rejected candidates. With a fraction ``q`` of a
    row's base candidates known, that needs more than ``spare + uniform_spare`` rejected
    among ``n + spare`` draws (a binomial tail). Real graphs leave a residual far below
    one known triple per million negatives at the default spares (see
    :func:`default_spares`); ``residual_rate`` says what the tail is for given ``q``.

    Every tensor has a fixed shape: this is a
    :class:`~emu_dgl.sampling.base.WordSampler` whenever the base sampler is one
    (``draws_from_words``).
    """

    def __init__(
        self,
        base: NegativeSampler,
        known: torch.Tensor | KnownTriples,
        num_entities: int,
        *,
        num_relations: int | None = None,
        spare: int | None = None,
        uniform_spare: int | None = None,
    ) -> None:
        self.base = base
        self.known = (
            known
            if isinstance(known, KnownTriples)
            else KnownTriples(known, num_entities=num_entities, num_relations=num_relations)
        )
        self.num_entities = num_entities
        self.num_negatives = base.num_negatives
        default_spare, default_uniform = default_spares(base.num_negatives)
        self.spare = default_spare if spare is None else int(spare)
        self.uniform_spare = default_uniform if uniform_spare is None else int(uniform_spare)
        if self.spare < 0 or self.uniform_spare < 0:
            raise ValueError("spare and uniform_spare must be >= 0")
        # [1, 2, ..., m] for the partition (built here, not inside a captured step)
        self._positions = torch.arange(
            1, self.candidates_per_row + 1, device=self.known.keys.device
        )

    @property
    def candidates_per_row(self) -> int:
        return self.num_negatives + self.spare + self.uniform_spare

    @property
    def draws_from_words(self) -> bool:
        """Whether :meth:`sample_words` works: the base sampler draws from words too."""
        return draws_from_words(self.base)

    @property
    def words_per_row(self) -> int:
        """Words consumed per positive by :meth:`sample_words` (a word-drawing base only)."""
        return self.candidates_per_row

    def is_known(self, pos: torch.Tensor, neg: torch.Tensor, side: SideSpec) -> torch.Tensor:
        """(B, ..., m) bool: is the triple made by putting ``neg`` on ``side`` of ``pos``
        known?"""
        r = per_row(pos[:, 1], neg)
        if isinstance(side, torch.Tensor):
            anchor, head = per_row(anchors(pos, side), neg), per_row(side, neg)
            first, last = torch.where(head, neg, anchor), torch.where(head, anchor, neg)
            return self.known.member(self.known.encode(first, r, last))
        if side == "tail":
            return self.known.member(self.known.encode(per_row(pos[:, 0], neg), r, neg))
        if side == "head":
            return self.known.member(self.known.encode(neg, r, per_row(pos[:, 2], neg)))
        raise ValueError(f"side must be 'head' or 'tail', got {side!r}")

    def sample_words(self, pos: torch.Tensor, side: SideSpec, words: torch.Tensor) -> torch.Tensor:
        """``[B, ..., n]`` from ``words[B, ..., n + spare + uniform_spare]``, fixed shape."""
        drawn = self.num_negatives + self.spare
        candidates = self.base.sample_words(pos, side, words[..., :drawn])  # type: ignore[attr-defined]
        if self.uniform_spare:
            uniform = random_below(words[..., drawn:], self.num_entities)
            candidates = torch.cat([candidates, uniform], dim=-1)
        return self.first_unknown(pos, side, candidates)

    def first_unknown(
        self, pos: torch.Tensor, side: SideSpec, candidates: torch.Tensor
    ) -> torch.Tensor:
        """The first ``n`` candidates of each row that are not known triples (then, if a
        row has fewer, its first rejected ones), by a stable partition in fixed shape."""
        good = ~self.is_known(pos, candidates, side)
        rank = good.cumsum(-1)  # accepted candidates up to and including each column
        # Destination of each candidate: accepted ones to 0, 1, ... in order; rejected ones
        # after all accepted ones, in order (a permutation of the columns of each row).
        rejected_before = self._position(candidates) - rank  # rejected ones up to here
        dest = torch.where(good, rank - 1, rank[..., -1:] + rejected_before - 1)
        out = torch.empty_like(candidates).scatter_(-1, dest, candidates)
        return out[..., : self.num_negatives]

    def _position(self, candidates: torch.Tensor) -> torch.Tensor:
        """``[1, 2, ..., m]`` on the candidates' device."""
        if self._positions.device != candidates.device:
            self._positions = self._positions.to(candidates.device)
        return self._positions

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        if self.draws_from_words:
            words = draw_words(
                (pos.shape[0], self.words_per_row), generator=generator, device=pos.device
            )
            return self.sample_words(pos, side, words)
        # A base that draws on its own (walks on the fly, a user's sampler): the same
        # candidates from repeated calls, then the same fixed-shape partition.
        parts, have = [], 0
        while have < self.num_negatives + self.spare:
            parts.append(self.base.sample(pos, side, generator=generator, step=step))
            have += parts[-1].shape[1]
        candidates = torch.cat(parts, dim=1)[:, : self.num_negatives + self.spare]
        if self.uniform_spare:
            words = draw_words(
                (pos.shape[0], self.uniform_spare), generator=generator, device=pos.device
            )
            candidates = torch.cat([candidates, random_below(words, self.num_entities)], 1)
        return self.first_unknown(pos, side, candidates)

    def residual_rate(self, known_fraction: float) -> float:
        """Expected fraction of a row's ``n`` negatives that stay known triples when a
        fraction ``known_fraction`` of both the base and the uniform candidates is known
        (exact: binomial tails over the ``n + spare + uniform_spare`` candidates)."""
        n, m = self.num_negatives, self.candidates_per_row
        q = float(known_fraction)
        # Known triples left = max(0, n - accepted), accepted ~ Binomial(m, 1 - q).
        expected = sum((n - a) * math.comb(m, a) * (1 - q) ** a * q ** (m - a) for a in range(n))
        return expected / n
