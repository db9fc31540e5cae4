r"""The training step as one pure function of static-shape tensors.

``TrainStep(batch[B, 3], side) -> loss`` does everything a step does, on the device:

1. **random words**: one call fills a persistent int64 buffer from the run's generator;
   every random choice of the step (Bernoulli sides, negatives, the false-negative
   filter's spare candidates, the EMU mask or Mixup weights) reads its own block of it;
2. **draw** (pure): the corrupted side (static ``"head"``/``"tail"``, or a per-row coin
   for ``sampler.bernoulli``) and the negatives in fixed shape, every draw in one sampler
   call; the entity ids of the step are the anchors ``[B]`` and candidate groups
   ``[B, 1 + n]`` (``[B, G, 1 + n]`` with ``emu.separate_draws``: both draws side by
   side), each group led by the true entity, so that every score vector the loss needs is
   one contiguous ``[B, 1 + n]`` block;
3. **gather**: every entity row of the step in one call (two leaf tensors, anchors and
   candidates: their gradients are the gradients of each lookup);
4. **objective** (pure): relations in tail form, one scoring pass over all groups, EMU
   (a mask over the per-coordinate terms of separable decoders, mixed embeddings in the
   same pass otherwise), the loss from ``log_softmax`` of the score blocks and constant
   target weights (one dot product per term), the regulariser;
5. **backward**, the lookups' gradients handed to the optimizer
   (:func:`~emu_dgl.training.sparse.push_rows`), the **optimizer update** in fixed shape.

Inside it there is no host synchronisation: no ``.item()``, ``.cpu()``, ``nonzero``,
``unique``, boolean-mask indexing, or Python branch on a tensor's value; every Python
branch reads the config. That makes the step capturable as a CUDA graph
(:class:`GraphedStep`) and compilable with ``torch.compile(fullgraph=True)``
(``draw`` and ``objective`` each compile as one graph; ``backward`` runs the graph
AOTAutograd derived). Samplers that walk on the host (``sans_online``, a user's
sampler without ``sample_words``) are called eagerly with the generator instead.

Seams for data parallelism (:mod:`emu_dgl.distributed`): ``rows=(lo, hi)`` trains
batch rows ``lo:hi`` of draws made for the whole batch (so every process draws what one
process would), ``table`` gathers rows and hands back their gradients (a sharded table
exchanges them between processes), ``after_backward`` sums replicated gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor

from emu_dgl.losses.base import BlockLoss
from emu_dgl.sampling.base import anchors, draws_from_words
from emu_dgl.training.precision import compute_rows
from emu_dgl.training.sparse import push_rows
from emu_dgl.typing import Side

if TYPE_CHECKING:  # components are built in training/build.py; the step only wires them
    from emu_dgl.models import KGEModel, Mutation

__all__ = [
    "AUTO_COMPILE_WORK",
    "CompiledStep",
    "EntityTable",
    "GraphedStep",
    "LocalTable",
    "TrainStep",
    "aten_ops_per_call",
    "compile_pays",
    "compile_step",
    "forbid_host_sync",
]

#: Resolution of the Bernoulli side coin: the head probability is rounded to 2**-24.
COIN_BITS = 24


class EntityTable(Protocol):
    """Where the step's entity rows come from and where their gradients go."""

    #: True when gather and push are pure tensor operations (capturable).
    pure: bool

    def gather(self, ids: list[Tensor]) -> list[Tensor]: ...

    def push(
        self, optimizer: torch.optim.Optimizer, parts: list[tuple[Tensor, Tensor]]
    ) -> None: ...


class LocalTable:
    """The whole entity table in this process."""

    pure = True

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight

    @torch.no_grad()
    def gather(self, ids: list[Tensor]) -> list[Tensor]:
        """The rows of each id tensor (1-d), without autograd (float32 rows of a bfloat16
        table: the step computes in float32, see :mod:`emu_dgl.training.precision`)."""
        return [compute_rows(self.weight.index_select(0, part)) for part in ids]

    def push(self, optimizer: torch.optim.Optimizer, parts: list[tuple[Tensor, Tensor]]) -> None:
        """The gradients of the gathered rows, in parts ``(ids, grads)`` (the anchors' and
        the candidates': two leaves, so that no backward has to join them)."""
        for ids, grads in parts:
            push_rows(optimizer, self.weight, ids, grads)


def _top_bits(words: Tensor, bits: int) -> Tensor:
    """The top ``bits`` bits of int64 words as non-negative integers in ``[0, 2**bits)``."""
    return (words >> (64 - bits)) + (1 << (bits - 1))


class TrainStep:
    """One training step, built by :func:`~emu_dgl.training.build.step_from_config`.

    Args:
        model: the entity and relation tables and the decoder.
        sampler: the negative sampler (``None`` for the 1-vs-all loss).
        mutation: the EMU mutation (``None``: EMU off, or label smoothing only).
        loss: the pairwise loss, :class:`~emu_dgl.losses.EMULoss`, or a loss of every
            entity's score (``one_vs_all``). Its arithmetic is
            :class:`~emu_dgl.losses.base.BlockLoss`'s, the public API's too.
        separate_draws: the mutated negatives get a draw of their own.
        regularizer: a regulariser component (``n3``, ``l3_table``, ...) or ``None``.
        head_probability: per-relation probability of corrupting the head
            (``sampler.bernoulli``), else ``None``.
        batch_size: ``B``, the rows of every batch (static).
        generator: the run's generator (checkpointed).
        rows: ``(lo, hi)``: train these batch rows of the whole batch's draws.
        table: the entity rows' source (default: the model's table in this process).
    """

    #: Whether chunks of positives share their negatives (:class:`~emu_dgl.training.shared_step.SharedStep`).
    shares_negatives: ClassVar[bool] = False

    def __init__(
        self,
        model: KGEModel,
        *,
        sampler: Any,
        mutation: Mutation | None,
        loss: torch.nn.Module,
        emu: bool,
        separate_draws: bool,
        one_vs_all: bool,
        regularizer: Any,
        head_probability: Tensor | None,
        batch_size: int,
        generator: torch.Generator,
        rows: tuple[int, int] | None = None,
        table: EntityTable | None = None,
    ) -> None:
        self.model, self.sampler, self.mutation, self.loss = model, sampler, mutation, loss
        self.emu, self.one_vs_all = emu, one_vs_all
        self.draws = 0 if one_vs_all else (2 if separate_draws else 1)
        self.regularizer = regularizer
        self.batch_size, self.generator = batch_size, generator
        self.rows = rows if rows is not None else (0, batch_size)
        self.share = (self.rows[1] - self.rows[0]) / batch_size
        self.table: EntityTable = table if table is not None else default_table(model)
        self.optimizer: torch.optim.Optimizer | None = None  # set by the trainer
        self.after_backward: Callable[[], None] | None = None
        self.num_negatives = 0 if one_vs_all else sampler.num_negatives
        self.word_sampler = self.draws > 0 and draws_from_words(sampler)
        device = model.entity.weight.device
        self._targets(loss, device, compute_rows(model.entity.weight[:0]).dtype)
        self._coin_threshold = (
            None
            if head_probability is None
            else (head_probability.double() * (1 << COIN_BITS)).round().long().to(device)
        )
        self._layout(model.entity_width, device)
        # 1-vs-all through a graph encoder: every entity's vector is a row of the step
        self._all_ids = (
            torch.arange(model.num_entities, device=device)
            if one_vs_all and model.encoder.uses_graph
            else None
        )

    def _targets(self, loss: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        """The loss of the score blocks (:class:`~emu_dgl.losses.base.BlockLoss`: constant
        target weights, so that a softmax cross-entropy term of the trained rows is one dot
        product) and the regulariser's constants, in the model's dtype on its device."""
        self._target_dtype = dtype
        self._one = torch.ones((), dtype=dtype, device=device)
        if not self.one_vs_all:
            self._blocks = BlockLoss(
                loss,
                num_negatives=self.num_negatives,
                rows=self.rows[1] - self.rows[0],
                batch_size=self.batch_size,
                dtype=dtype,
                device=device,
            )
        if self.regularizer is not None:  # its terms add up over the processes' shares
            self.regularizer.prepare(share=self.share, dtype=dtype, device=device)

    # ------------------------------------------------------------------ random words

    def _layout(self, width: int, device: torch.device) -> None:
        """Which block of the step's random words each consumer reads: ``name -> (rows,
        words per row)``, rows being the batch rows (or the chunks of shared negatives)."""
        self.blocks: dict[str, slice] = {}
        self._block_rows: dict[str, int] = {}
        start = 0
        for name, (rows, per_row) in self._block_sizes(width).items():
            self.blocks[name] = slice(start, start + rows * per_row)
            self._block_rows[name] = rows
            start += rows * per_row
        self.words = torch.zeros(start, dtype=torch.int64, device=device)

    def _block_sizes(self, width: int) -> dict[str, tuple[int, int]]:
        B, n = self.batch_size, self.num_negatives
        blocks: dict[str, tuple[int, int]] = {}  # consumer -> (rows, words per row)
        if self._coin_threshold is not None:
            blocks["side"] = (B, 1)
        if self.word_sampler:
            blocks["draws"] = (B, self.draws * self.sampler.words_per_row)
        if self.mutation is not None and self.draws:
            per_row = self.mutation.words_needed((B, 1 + n, width)) // B
            if per_row:
                blocks["mutation"] = (B, per_row)
        return blocks

    def _words(self, words: Tensor, name: str) -> Tensor | None:
        """The block ``name`` as ``[rows, words per row]``, or ``None`` when it has none."""
        block = self.blocks.get(name)
        return None if block is None else words[block].view(self._block_rows[name], -1)

    def _fresh_words(self) -> Tensor:
        """The step's random words, drawn anew (and the loss targets in the model's dtype)."""
        assert self.optimizer is not None, "TrainStep.optimizer is set by the trainer"
        dtype = compute_rows(self.model.entity.weight[:0]).dtype  # float32 for bfloat16
        if self._target_dtype != dtype:  # the model changed precision (e.g. .double())
            self._targets(self.loss, self.words.device, dtype)
        if self.words.numel():
            self.words.random_(-(2**63), None, generator=self.generator)  # every random word
        return self.words

    # ------------------------------------------------------------------ pure parts

    def draw(self, batch: Tensor, words: Tensor, side: Side | None) -> tuple[Tensor, Tensor, Any]:
        """``(anchors[B], candidates, side)`` for the whole batch: the kept entities, and
        the candidate groups ``[B, 1 + n]`` (``[B, G, 1 + n]`` with two draws), each the
        true entity followed by a draw of negatives. ``side`` comes back as drawn: a bool
        tensor ``[B]`` for Bernoulli sides."""
        side = self._side(batch, words, side)
        kept, true = _columns(batch, side)
        if not self.draws:
            return kept.view(-1), true, side
        # every draw in one call: words [B, G, k] -> negatives [B, G, n]
        block = self._words(words, "draws").view(batch.shape[0], self.draws, -1)
        negatives = self.sampler.sample_words(batch, side, block)
        return kept.view(-1), self._groups(true, negatives), side

    def _groups(self, true: Tensor, negatives: Tensor) -> Tensor:
        """``[B, 1 + n]`` or ``[B, G, 1 + n]``: each draw led by the true entity."""
        batch, groups = negatives.shape[:2]
        candidates = torch.cat([true.unsqueeze(1).expand(batch, groups, 1), negatives], dim=2)
        return candidates.view(batch, -1) if groups == 1 else candidates

    def _side(self, batch: Tensor, words: Tensor, side: Side | None) -> Any:
        """The static side, or with Bernoulli sides a coin per row: the head is corrupted
        when the row's top 24 random bits fall below its relation's threshold."""
        if self._coin_threshold is None:
            return side
        coin = _top_bits(self._words(words, "side")[:, 0], COIN_BITS)
        return coin < self._coin_threshold.index_select(0, batch[:, 1])

    def objective(
        self,
        batch: Tensor,
        anchor: Tensor,
        groups: Tensor,
        r: Tensor,
        words: Tensor,
        side: Any,
        vectors: Tensor | None = None,
    ) -> Tensor:
        """The loss of the trained rows: ``batch[b, 3]``, their entity rows as drawn (the
        anchors ``[b, 1, De]`` and the candidate groups ``[b, 1 + n, De]``, or ``[b, 1, 1,
        De]`` and ``[b, G, 1 + n, De]`` with two draws), relation rows shaped as the
        anchors, the step's words and the side (static, or a bool ``[b]``); with 1-vs-all
        through a graph encoder, every entity's vector ``vectors[E, De]``. Its terms are
        divided by the whole batch's ``B``, so the processes' losses of a data-parallel
        step add up to the batch's loss."""
        model = self.model
        rel = model.tail_form(r, side)
        b, width = anchor.shape[0], anchor.shape[-1]
        true = groups[:, 0] if groups.dim() == 3 else groups[:, 0, 0]
        if self.one_vs_all:
            tails = model.all_tails(anchor.reshape(b, width), rel.reshape(b, -1), vectors=vectors)
            loss = self.loss(tails, anchors(batch, _other(side)))
            loss = loss * self.share
        else:
            loss = self._sampled_loss(anchor, rel, groups, words)
        if self.regularizer is not None:  # (rows of any leading shape: it flattens what it reads)
            loss = loss + self.regularizer(model, anchor, r, true)
        return loss

    def _sampled_loss(self, anchor: Tensor, rel: Tensor, groups: Tensor, words: Tensor) -> Tensor:
        """Scores of group 0 (the one-hot term's negatives) and of the last group mutated
        (the EMU term's), from one scoring pass; then the loss."""
        mask = mutated = None
        if self.mutation is not None:
            block = self._words(words, "mutation")
            mutation_words = (
                block[self.rows[0] : self.rows[1]].reshape(-1) if block is not None else words[:0]
            )
            last = groups if groups.dim() == 3 else groups[:, -1]
            if self.model.decoder.separable:
                # On a CPU the mask as 0/1 numbers feeds batched products (several times
                # faster there than a broadcasting where); on a GPU it stays bool.
                if last.device.type == "cuda":
                    mask = self.mutation.group_mask_from_words(mutation_words, last.shape)
                else:
                    mask = self.mutation.group_mask_from_words(
                        mutation_words, last.shape, dtype=last.dtype, out=self._mask_buffer(last)
                    )
            if mask is None:
                mutated = self.mutation.mutate_group(last, mutation_words)
        scores, last_scores = self.model.score_groups(
            anchor, rel, groups, mask=mask, mutated=mutated
        )
        return self._blocks(scores, last_scores)

    def _mask_buffer(self, like: Tensor) -> Tensor | None:
        """The EMU mask's memory on a CPU, kept from step to step (fixed shape): a fresh
        tensor of ``B x (1 + n) x De`` floats costs more in page faults than writing the
        mask. The mask's backward writes the terms' gradient into it, which autograd has
        let go of by the next step. Not kept when compiled (the compiler plans memory)."""
        if torch.compiler.is_compiling():
            return None
        buffer = self.__dict__.get("_mask_memory")
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self._mask_memory = torch.empty_like(
                like, memory_format=torch.contiguous_format
            )
        return buffer

    # ------------------------------------------------------------------ the step

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        """One step on ``batch[B, 3]``; returns the detached loss (this process's share)."""
        words = self._fresh_words()
        if self.word_sampler or self.draws == 0:
            kept, candidates, side = self.draw(batch, words, side)
        else:
            kept, candidates, side = self._eager_draw(batch, words, side, step)
        lo, hi = self.rows
        if (lo, hi) != (0, self.batch_size):
            batch, kept, candidates = batch[lo:hi], kept[lo:hi], candidates[lo:hi]
            if isinstance(side, Tensor):
                side = side[lo:hi]
        # Every entity row of the step in one gather, as two leaves (anchors, candidates):
        # their gradients are the lookups' gradients, handed to the optimizer as they are.
        flat = candidates.view(-1) if candidates.is_contiguous() else candidates.reshape(-1)
        ids = [kept, flat] if self._all_ids is None else [kept, flat, self._all_ids]
        anchor_rows, candidate_rows, *everything = self.table.gather(ids)
        b, width = batch.shape[0], anchor_rows.shape[-1]
        shape = (b, *([1] * (candidates.dim() - 1)), width)  # broadcast against the groups
        anchor = anchor_rows.view(shape).requires_grad_(True)
        groups = candidate_rows.view(*candidates.shape, width).requires_grad_(True)
        leaves = [(kept, anchor), (flat, groups)]
        vectors = None
        if everything:
            vectors = everything[0].requires_grad_(True)
            leaves.append((ids[2], vectors))
        # Relations are gathered like entities: a leaf whose gradient is summed into the
        # (small, replicated) table's dense gradient after backward.
        relations = batch[:, 1]
        r = self._relation_rows(relations, shape[:-1])
        loss = self.objective(batch, anchor, groups, r, words, side, vectors)
        return self._update(loss, leaves, relations, r)

    def _update(
        self, loss: Tensor, leaves: list[tuple[Tensor, Tensor]], relations: Tensor, r: Tensor
    ) -> Tensor:
        """Backward from ``loss``; the gradients of the gathered entity rows (``leaves``:
        ``(ids, rows)``; a leaf without a gradient is skipped: with 1-vs-all the true
        entities are targets, not rows) and of the relation rows ``r`` go to the optimizer,
        which steps."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward(self._one)  # (a stored 1.0: no fresh tensor per step)
        parts = [
            (ids, rows.grad.view(ids.shape[0], -1)) for ids, rows in leaves if rows.grad is not None
        ]
        self.table.push(self.optimizer, parts)
        _add_rows(self.model.relation.weight, relations, r.grad.view(relations.shape[0], -1))
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return loss.detach()

    def _relation_rows(self, relations: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The relations' rows as a leaf shaped ``[*shape, Dr]`` (the anchors' shape): its
        gradient is summed into the small, replicated table's dense gradient."""
        with torch.no_grad():
            r = self.model.relation.weight.index_select(0, relations)
        return r.view(*shape, r.shape[-1]).requires_grad_(True)

    def _eager_draw(
        self, batch: Tensor, words: Tensor, side: Side | None, step: int
    ) -> tuple[Tensor, Tensor, Any]:
        """The draw for a sampler that takes a generator (walks on the host): each draw
        once per corrupted side, combined per row for Bernoulli sides."""
        side = self._side(batch, words, side)
        kept, true = _columns(batch, side)
        draws = []
        for _ in range(self.draws):
            if isinstance(side, Tensor):
                head = self.sampler.sample(batch, "head", generator=self.generator, step=step)
                tail = self.sampler.sample(batch, "tail", generator=self.generator, step=step)
                draws.append(torch.where(side.unsqueeze(1), head, tail))
            else:
                draws.append(self.sampler.sample(batch, side, generator=self.generator, step=step))
        return kept.view(-1), self._groups(true, torch.stack(draws, dim=1)), side

    @property
    def capturable(self) -> str | None:
        """``None`` when the whole step can be captured in a CUDA graph, else why not."""
        if self.draws and not self.word_sampler:
            return f"the sampler ({type(self.sampler).__name__}) draws on the host"
        if not self.table.pure:
            return (
                getattr(self.table, "reason", None) or "entity rows are exchanged between processes"
            )
        return None


def default_table(model: KGEModel) -> EntityTable:
    """The model's own entity rows: its table, or its graph encoder over the whole graph."""
    if model.encoder.uses_graph:
        from emu_dgl.training.encoded import EncodedTable

        return EncodedTable(model)
    return LocalTable(model.entity.weight)


def _add_rows(param: Tensor, ids: Tensor, grads: Tensor) -> None:
    """``param.grad[ids] += grads`` (duplicates summed), creating the dense gradient."""
    if param.grad is None:
        param.grad = torch.zeros_like(param)
    param.grad.index_add_(0, ids, grads)


def _columns(batch: Tensor, side: Any) -> tuple[Tensor, Tensor]:
    """``(kept[B, 1], true[B, 1])``: the anchor and the corrupted side's true entity."""
    head, tail = batch[:, 0:1], batch[:, 2:3]
    if isinstance(side, Tensor):
        column = side.unsqueeze(1)
        return torch.where(column, tail, head), torch.where(column, head, tail)
    return (head, tail) if side == "tail" else (tail, head)


def _other(side: Any) -> Any:
    if isinstance(side, Tensor):
        return ~side
    return "head" if side == "tail" else "tail"


# How the step runs (eager, compiled, graphed) and the checks of a step (host sync, op
# counts) live in emu_dgl.training.runners; their names stay importable from here.
from emu_dgl.training.runners import (  # noqa: E402
    AUTO_COMPILE_WORK,
    CompiledStep,
    GraphedStep,
    aten_ops_per_call,
    compile_pays,
    compile_step,
    forbid_host_sync,
)
