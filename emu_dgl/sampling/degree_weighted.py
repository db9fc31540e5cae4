r"""Negatives drawn by entity degree: word2vec's unigram^0.75 noise, on a knowledge graph."""

from __future__ import annotations

from typing import ClassVar

import torch

from emu_dgl.registry import SAMPLERS, Option
from emu_dgl.sampling.base import Side, SideSpec, anchors, draw_words, random_below

#: Probabilities are kept as integers of this resolution (a cumulative int64 table): fine
#: enough for any graph (an entity of degree 1 among 10**9 edges still has ~10**3 units),
#: and small enough that a 64-bit word's remainder is unbiased to below 2**-24.
RESOLUTION = 2**40


@SAMPLERS.register("degree_weighted")
class DegreeWeightedSampler:
    r"""Each negative is entity ``e`` with probability

    .. math::
        P(e) = \frac{\deg(e)^\alpha}{\sum_f \deg(f)^\alpha}, \qquad \alpha = \texttt{degree\_power}

    where ``deg(e)`` counts the training triples that hold ``e`` (as head or tail; an
    entity of no training triple is never drawn unless ``alpha = 0``). ``alpha = 0`` is
    uniform over all entities, ``1`` proportional to the degree, ``0.75`` word2vec's noise
    distribution: hubs are drawn more often than uniform negatives would, and each time
    they are harder negatives (a model learns a hub's embedding from many triples).

    The draw reads neither the positive nor the side (``anchor_free``), so the positives of
    a chunk can share it (``sampler.shared_chunk``), and it draws from given random words in
    fixed shape (the pure step): with ``cum`` the cumulative integer weights (total ``W``),
    a word gives ``x = word mod W`` and the entity ``searchsorted(cum, x, right=True)``,
    whose interval ``[cum[e - 1], cum[e])`` holds ``x``.
    """

    anchor_free: ClassVar[bool] = True
    options: ClassVar[dict[str, Option]] = {
        "degree_power": Option(
            0.75, "exponent alpha of the degree: 0 uniform, 1 proportional to the degree", low=0
        ),
    }

    def __init__(
        self,
        *,
        train: torch.Tensor,
        num_entities: int,
        num_negatives: int,
        degree_power: float = 0.75,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_entities, self.num_negatives = num_entities, num_negatives
        self.degree_power = float(degree_power)
        ends = train[:, [0, 2]].reshape(-1).long().cpu()
        degree = torch.bincount(ends, minlength=num_entities).double()
        weight = degree.pow(self.degree_power)  # 0**0 = 1: alpha = 0 is uniform over all
        if float(weight.sum()) == 0:  # no training triple at all: uniform
            weight = torch.ones(num_entities, dtype=torch.float64)
        units = (weight / weight.sum() * RESOLUTION).round().long()
        units = torch.where(weight > 0, units.clamp_min(1), units)  # every drawable one stays
        self.probability = units.double() / units.sum()
        self._cumulative = {torch.device("cpu"): units.cumsum(0)}
        self._on(torch.device(device))

    def _on(self, device: torch.device) -> torch.Tensor:
        if device not in self._cumulative:
            self._cumulative[device] = next(iter(self._cumulative.values())).to(device)
        return self._cumulative[device]

    @property
    def words_per_row(self) -> int:
        return self.num_negatives

    def sample_words(self, pos: torch.Tensor, side: SideSpec, words: torch.Tensor) -> torch.Tensor:
        """One entity per word (any shape of words), fixed shape, no host synchronisation."""
        cum = self._on(words.device)
        x = random_below(words, cum[-1])  # a 0-d tensor: no host read of the total
        return torch.searchsorted(cum, x, right=True)

    def sample(
        self, pos: torch.Tensor, side: Side, *, generator: torch.Generator, step: int = 0
    ) -> torch.Tensor:
        anchors(pos, side)  # validates `side`
        words = draw_words(
            (pos.shape[0], self.num_negatives), generator=generator, device=pos.device
        )
        return self.sample_words(pos, side, words)
