r"""The training step with negatives shared by chunks of positives (``sampler.shared_chunk``).

The per-positive step (:class:`~emu_dgl.training.step.TrainStep`, every paper arm) draws
``n`` negatives for each of the ``B`` positives and gathers ``B x n`` entity rows. Here the
``B`` positives form ``K = B / C`` chunks of ``C``, each chunk draws ``n`` negatives once, and
a chunk's scores are ``[C, n]`` at once (matrix products for DistMult, ComplEx and
TransE-L2, see :mod:`emu_dgl.models.shared`): the step gathers ``K x n`` negative rows, not
``B x n``.

What stays as in the per-positive step: one random-word draw per step, the corrupted side
(static, or a Bernoulli coin per positive), the loss terms and their targets (EMU's soft
labels over ``[positive, mutated negatives]`` divided by ``n``, plus ``c`` times the one-hot
term over the unmutated negatives, or any pairwise loss), the regularisers, the fixed
shapes (capturable, compilable) and the seams of data parallelism (rows must fall on
chunk boundaries).

What changes:

* **negatives** are drawn per chunk, so only samplers whose draw does not depend on the
  positive qualify (``anchor_free``: uniform). SANS stays per-positive: its negatives are
  the anchor's own neighbourhood, which the positives of a chunk do not share;
* **the false-negative filter** cannot redraw one positive's slot without changing the
  others', so a negative that forms a known training triple with a positive is *masked
  out of that positive's scores* (its logit set to ``-inf``, its target weight to 0),
  in fixed shape;
* **EMU's mask** is drawn per chunk, slot and coordinate: the positives of a chunk share
  it, each mixing in its own true entity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.models.shared import score_shared
from emu_dgl.sampling.filtering import FilteredSampler
from emu_dgl.training.step import TrainStep, _columns
from emu_dgl.typing import Side

if TYPE_CHECKING:
    from emu_dgl.models import KGEModel

__all__ = ["SharedStep", "shareable"]


def shareable(sampler: Any) -> bool:
    """Whether ``sampler``'s negatives can be shared by positives: its draw reads neither
    the positive nor the side (``anchor_free``), through the false-negative filter too."""
    base = sampler.base if isinstance(sampler, FilteredSampler) else sampler
    return bool(getattr(base, "anchor_free", False)) and callable(
        getattr(base, "sample_words", None)
    )


class SharedStep(TrainStep):
    """:class:`TrainStep` with ``chunk`` positives per shared draw of negatives.

    Args:
        chunk: ``C``, positives per chunk; must divide the batch size (and the rows of a
            data-parallel slice).
        **kwargs: as :class:`TrainStep` (``one_vs_all`` must be off: it has no negatives).
    """

    shares_negatives: ClassVar[bool] = True

    def __init__(self, model: KGEModel, *, chunk: int, **kwargs: Any) -> None:
        batch_size, sampler = kwargs["batch_size"], kwargs["sampler"]
        if kwargs.get("one_vs_all"):
            raise ConfigError("sampler.shared_chunk: the 1vsall loss has no negatives to share")
        if not shareable(sampler):
            raise ConfigError(
                f"sampler.shared_chunk: the sampler ({type(sampler).__name__}) draws negatives "
                "for each positive (SANS draws near each anchor); use sampler.name=uniform, "
                "or sampler.shared_chunk=0"
            )
        if chunk < 1 or batch_size % chunk:
            raise ConfigError(
                f"sampler.shared_chunk ({chunk}) must divide the batch size ({batch_size})"
            )
        self.chunk, self.num_chunks = chunk, batch_size // chunk
        self.filter = sampler if isinstance(sampler, FilteredSampler) else None
        self.base_sampler = sampler.base if self.filter is not None else sampler
        super().__init__(model, **kwargs)
        lo, hi = self.rows
        if lo % chunk or hi % chunk:
            raise ConfigError(
                f"sampler.shared_chunk ({chunk}) must divide every process's share of the batch "
                f"(rows {lo}:{hi})"
            )
        if self.mutation is not None and not self._mutation_has_chunk_form():
            raise ConfigError(
                f"emu.variant: {type(self.mutation).__name__} has no form for shared negatives"
            )

    def _mutation_has_chunk_form(self) -> bool:
        probe = torch.zeros(64, dtype=torch.int64)
        mutation = self.mutation
        assert mutation is not None
        return (
            mutation.chunk_mask_from_words(probe, (1, 1, 1)) is not None
            or mutation.chunk_weights_from_words(probe, (1, 1), dtype=torch.float32) is not None
        )

    def _block_sizes(self, width: int) -> dict[str, tuple[int, int]]:
        K, n = self.num_chunks, self.num_negatives
        blocks: dict[str, tuple[int, int]] = {}
        if self._coin_threshold is not None:
            blocks["side"] = (self.batch_size, 1)
        blocks["draws"] = (K, self.draws * n)
        if self.mutation is not None:
            per_chunk = self.mutation.words_needed((K, n, width)) // K
            if per_chunk:
                blocks["mutation"] = (K, per_chunk)
        return blocks

    # ------------------------------------------------------------------ pure parts

    def draw(  # type: ignore[override]
        self, batch: Tensor, words: Tensor, side: Side | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Any]:
        """``(anchors[B], true[B], negatives[K, G, n], known, side)``: the kept and the true
        entity of each positive, the chunks' negatives (``G`` draws: two with
        ``emu.separate_draws``), and with the filter ``known[B, G, 1 + n]``, True where a
        negative forms a known training triple with that positive (column 0, the positive
        itself, never)."""
        side = self._side(batch, words, side)
        kept, true = _columns(batch, side)
        K, C, n = self.num_chunks, self.chunk, self.num_negatives
        block = self._words(words, "draws")
        assert block is not None
        negatives = self.base_sampler.sample_words(batch, side, block.view(K, self.draws, n))
        known = None
        if self.filter is not None:
            # The slots of a draw are exchangeable (i.i.d. negatives, i.i.d. mask slots), so
            # sorting them changes no distribution; it makes the membership test fast.
            negatives = negatives.sort(dim=-1).values
            found = self.filter.known.member_shared(batch, side, negatives)
            known = torch.cat([found.new_zeros(K * C, self.draws, 1), found], dim=2)
        return kept.view(-1), true.view(-1), negatives, known, side

    def objective(  # type: ignore[override]
        self,
        batch: Tensor,
        anchor: Tensor,
        true: Tensor,
        negatives: Tensor,
        r: Tensor,
        known: Tensor | None,
        words: Tensor,
        side: Any,
    ) -> Tensor:
        """The loss of the trained rows: ``batch[b, 3]``, the anchors', true entities' and
        relations' rows ``[b, D]``, the chunks' negative rows ``[k, G, n, De]`` and the
        known mask ``[b, G, 1 + n]`` (or ``None``)."""
        model = self.model
        b, k = anchor.shape[0], negatives.shape[0]
        rel = model.tail_form(r, side)
        q, rq, t = (
            anchor.view(k, self.chunk, -1),
            rel.view(k, self.chunk, -1),
            true.view(k, self.chunk, -1),
        )
        mask, weights = self._mutation(words, negatives.shape[-1], anchor.dtype)
        decoder = model.decoder
        last = negatives[:, -1]
        if self.draws == 1:
            scores = score_shared(decoder, q, rq, t, last, mask=mask, weights=weights)
            plain = scores.neg
        else:  # separate draws: the unmutated term's negatives apart from the mutated ones'
            plain = score_shared(decoder, q, rq, t, negatives[:, 0]).neg
            scores = score_shared(decoder, q, rq, t, last, mask=mask, weights=weights)
        mutated = scores.mutated if scores.mutated is not None else scores.neg
        pos = scores.pos.reshape(b, 1)
        loss = self._shared_loss(pos, plain.reshape(b, -1), mutated.reshape(b, -1), known)
        if self.regularizer is not None:
            loss = loss + self.regularizer(model, anchor, r, true)
        return loss

    def _mutation(
        self, words: Tensor, width: int, dtype: torch.dtype
    ) -> tuple[Tensor | None, Tensor | None]:
        """The chunks' EMU mask ``[k, n, De]`` (0/1 numbers) or Mixup weights ``[k, n]``."""
        if self.mutation is None:
            return None, None
        lo, hi = self.rows[0] // self.chunk, self.rows[1] // self.chunk
        block = self._words(words, "mutation")
        part = block[lo:hi].reshape(-1) if block is not None else words[:0]
        shape = (hi - lo, self.num_negatives, width)
        mask = self.mutation.chunk_mask_from_words(part, shape, dtype=dtype)
        if mask is not None:
            return mask, None
        return None, self.mutation.chunk_weights_from_words(part, shape[:2], dtype=dtype)

    def _shared_loss(
        self, pos: Tensor, plain: Tensor, mutated: Tensor, known: Tensor | None
    ) -> Tensor:
        """The loss of :class:`TrainStep` (:class:`~emu_dgl.losses.base.BlockLoss`) over
        ``[positive | negatives]`` blocks, the known negatives masked out: logit ``-inf``
        (no share of the softmax, no gradient) and log-probability 0 (no target weight)."""

        def log_probs(block: Tensor, group: int) -> Tensor:
            if known is None:
                return torch.log_softmax(block, dim=1)
            drop = known[:, group]
            return torch.log_softmax(block.masked_fill(drop, -torch.inf), dim=1).masked_fill(
                drop, 0.0
            )

        def masked(block: Tensor) -> Tensor:
            return block if known is None else block.masked_fill(known[:, 0], -torch.inf)

        return self._blocks(
            torch.cat([pos, plain], dim=1),
            torch.cat([pos, mutated], dim=1) if self._blocks.emu is not None else None,
            log_probs=lambda block, group: log_probs(block, group % self.draws),
            mask=masked,
        )

    # ------------------------------------------------------------------ the step

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        """One step on ``batch[B, 3]``; returns the detached loss (this process's share)."""
        words = self._fresh_words()
        kept, true, negatives, known, side = self.draw(batch, words, side)
        lo, hi = self.rows
        if (lo, hi) != (0, self.batch_size):
            batch, kept, true = batch[lo:hi], kept[lo:hi], true[lo:hi]
            negatives = negatives[lo // self.chunk : hi // self.chunk]
            known = None if known is None else known[lo:hi]
            if isinstance(side, Tensor):
                side = side[lo:hi]
        # Every entity row of the step in one gather, as three leaves: the anchors, the
        # true entities (one row per positive) and the chunks' negatives (n per chunk).
        ids = negatives.reshape(-1)
        anchor_rows, true_rows, negative_rows = self.table.gather([kept, true, ids])
        anchor = anchor_rows.requires_grad_(True)
        t = true_rows.requires_grad_(True)
        neg = negative_rows.view(*negatives.shape, -1).requires_grad_(True)
        relations = batch[:, 1]
        r = self._relation_rows(relations, (batch.shape[0],))
        loss = self.objective(batch, anchor, t, neg, r, known, words, side)
        return self._update(loss, [(kept, anchor), (true, t), (ids, neg)], relations, r)

    @property
    def capturable(self) -> str | None:
        if not self.table.pure:
            return "entity rows are exchanged between processes"
        return None
