"""A negative sampler: the entities of the batch's own triples as negatives."""

from typing import ClassVar

import torch

from emu_dgl.registry import Option
from emu_dgl.sampling import draw_words, random_below


class InBatch:
    """Each negative is, with probability ``batch_share``, an entity of the batch's triples
    (heads and tails), else uniform over all entities: fixed shape, drawn from given words."""

    options: ClassVar[dict[str, Option]] = {
        "batch_share": Option(1.0, "share of negatives taken from the batch", low=0, high=1),
    }

    def __init__(self, *, num_entities: int, num_negatives: int, batch_share: float = 1.0):
        self.num_entities, self.num_negatives = num_entities, num_negatives
        self.words_per_row, self.batch_share = num_negatives, batch_share

    def sample_words(self, pos, side, words):
        pool = pos[:, [0, 2]].reshape(-1)
        in_batch = torch.take(pool, random_below(words, pool.numel()))
        coin = (words >> 40) + (1 << 23)  # the top 24 bits, uniform in [0, 2**24)
        uniform = random_below(words >> 1, self.num_entities)
        return torch.where(coin < self.batch_share * 2**24, in_batch, uniform)

    def sample(self, pos, side, *, generator, step=0):
        words = draw_words((len(pos), self.num_negatives), generator=generator, device=pos.device)
        return self.sample_words(pos, side, words)
