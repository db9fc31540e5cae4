"""The Mixup ablation of EMU: one Beta(2, 1) weight per negative."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from emu_dgl.models.mutation import MUTATIONS, Mutation


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
