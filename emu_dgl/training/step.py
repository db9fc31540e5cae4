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

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from emu_dgl.sampling.base import anchors, draws_from_words
from emu_dgl.training.losses import (
    EMULoss,
    SoftmaxLoss,
    emu_target_weights,
    n3_regularizer,
    pairwise_from_scores,
    whole_table_l3,
)
from emu_dgl.training.precision import compute_rows
from emu_dgl.training.sparse import push_rows
from emu_dgl.typing import Side

if TYPE_CHECKING:  # components are built in training/build.py; the step only wires them
    from emu_dgl.models import KGEModel, Mutation

__all__ = [
    "EntityTable",
    "GraphedStep",
    "LocalTable",
    "TrainStep",
    "aten_ops_per_call",
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
        loss: the pairwise loss, :class:`~emu_dgl.training.losses.EMULoss`, or the
            1-vs-all loss (``one_vs_all``).
        separate_draws: the mutated negatives get a draw of their own.
        regularizer, reg_weight: ``none``, ``n3`` or ``l3_table`` and its weight.
        head_probability: per-relation probability of corrupting the head
            (``sampler.bernoulli``), else ``None``.
        batch_size: ``B``, the rows of every batch (static).
        generator: the run's generator (checkpointed).
        rows: ``(lo, hi)``: train these batch rows of the whole batch's draws.
        table: the entity rows' source (default: the model's table in this process).
    """

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
        regularizer: str,
        reg_weight: float,
        head_probability: Tensor | None,
        batch_size: int,
        generator: torch.Generator,
        rows: tuple[int, int] | None = None,
        table: EntityTable | None = None,
    ) -> None:
        self.model, self.sampler, self.mutation, self.loss = model, sampler, mutation, loss
        self.emu, self.one_vs_all = emu, one_vs_all
        self.draws = 0 if one_vs_all else (2 if separate_draws else 1)
        self.regularizer, self.reg_weight = regularizer, reg_weight
        self.batch_size, self.generator = batch_size, generator
        self.rows = rows if rows is not None else (0, batch_size)
        self.share = (self.rows[1] - self.rows[0]) / batch_size
        self.table: EntityTable = table if table is not None else LocalTable(model.entity.weight)
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
        self._layout(model.entity.weight.shape[1], device)

    def _targets(self, loss: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        """Constant target weights, so that a softmax cross-entropy term of the trained
        rows is one dot product: ``-sum_b sum_j y_j log p_bj / B``, with ``y`` repeated
        over the rows (the whole batch's ``B``: a slice's terms sum to the batch mean)."""
        rows, n = self.rows[1] - self.rows[0], self.num_negatives

        def repeated(y: list[float]) -> Tensor:
            scaled = torch.tensor([-v / self.batch_size for v in y], dtype=dtype, device=device)
            return scaled.repeat(rows)

        self._target_dtype = dtype
        # whole-table L3: each process adds its block's part and its share of the relations'
        weight = self.reg_weight if self.regularizer == "l3_table" else 0.0
        self._one = torch.ones((), dtype=dtype, device=device)
        scales = (weight, weight * self.share)
        self._l3_scales = tuple(torch.tensor(v, dtype=dtype, device=device) for v in scales)
        self._l3_slopes = tuple(torch.tensor(3 * v, dtype=dtype, device=device) for v in scales)
        base = loss.base if isinstance(loss, EMULoss) else loss
        coef = loss.ce_coef if isinstance(loss, EMULoss) else 1.0
        self._emu_targets = (
            repeated(emu_target_weights(n, loss.neg_label)) if isinstance(loss, EMULoss) else None
        )
        self._ce_targets = None
        if type(base) is SoftmaxLoss and coef and not self.one_vs_all:
            self._ce_targets = repeated([coef] + [0.0] * n)  # one-hot on the positive
        self._base, self._base_coef = base, coef

    # ------------------------------------------------------------------ random words

    def _layout(self, width: int, device: torch.device) -> None:
        """Which block of the step's random words each consumer reads (by batch row)."""
        B, n = self.batch_size, self.num_negatives
        blocks: dict[str, int] = {}  # consumer -> words per batch row
        if self._coin_threshold is not None:
            blocks["side"] = 1
        if self.word_sampler:
            blocks["draws"] = self.draws * self.sampler.words_per_row
        if self.mutation is not None and self.draws:
            per_row = self.mutation.words_needed((B, 1 + n, width)) // B
            if per_row:
                blocks["mutation"] = per_row
        self.blocks: dict[str, slice] = {}
        start = 0
        for name, per_row in blocks.items():
            self.blocks[name] = slice(start, start + B * per_row)
            start += B * per_row
        self.words = torch.zeros(start, dtype=torch.int64, device=device)

    def _words(self, words: Tensor, name: str) -> Tensor | None:
        """The block ``name`` as ``[B, words per row]``, or ``None`` when it has none."""
        block = self.blocks.get(name)
        return None if block is None else words[block].view(self.batch_size, -1)

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
    ) -> Tensor:
        """The loss of the trained rows: ``batch[b, 3]``, their entity rows as drawn (the
        anchors ``[b, 1, De]`` and the candidate groups ``[b, 1 + n, De]``, or ``[b, 1, 1,
        De]`` and ``[b, G, 1 + n, De]`` with two draws), relation rows shaped as the
        anchors, the step's words and the side (static, or a bool ``[b]``). Its terms are
        divided by the whole batch's ``B``, so the processes' losses of a data-parallel
        step add up to the batch's loss."""
        model = self.model
        rel = model.tail_form(r, side)
        b, width = anchor.shape[0], anchor.shape[-1]
        true = groups[:, 0] if groups.dim() == 3 else groups[:, 0, 0]
        if self.one_vs_all:
            tails = model.all_tails(anchor.reshape(b, width), rel.reshape(b, -1))
            loss = self.loss(tails, anchors(batch, _other(side)))
            loss = loss * self.share
        else:
            loss = self._sampled_loss(anchor, rel, groups, words)
        if self.regularizer == "n3" and self.reg_weight > 0:
            complex_parts = model.decoder.complex_entities
            loss = loss + self.share * n3_regularizer(
                anchor.reshape(b, width),
                r.reshape(b, -1),
                true,
                weight=self.reg_weight,
                complex_parts=complex_parts,
            )
        if self.regularizer == "l3_table" and self.reg_weight > 0:
            loss = loss + whole_table_l3(
                model.entity.weight, model.relation.weight, *self._l3_scales, *self._l3_slopes
            )
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
                dtype = torch.bool if last.device.type == "cuda" else last.dtype
                mask = self.mutation.group_mask_from_words(mutation_words, last.shape, dtype=dtype)
            if mask is None:
                mutated = self.mutation.mutate_group(last, mutation_words)
        scores, last_scores = self.model.score_groups(
            anchor, rel, groups, mask=mask, mutated=mutated
        )
        loss: Tensor | None = None
        if self._emu_targets is not None:  # EMU: soft targets on the last group
            log_p = torch.log_softmax(last_scores, dim=1)
            loss = torch.dot(log_p.view(-1), self._emu_targets)
        if self._ce_targets is not None:  # one-hot softmax cross-entropy on group 0
            log_p = torch.log_softmax(scores, dim=1)
            term = torch.dot(log_p.view(-1), self._ce_targets)
            loss = term if loss is None else loss + term
        elif self._base_coef:  # any other pairwise loss, as a mean over the rows
            term = pairwise_from_scores(self._base, scores) * (self._base_coef * self.share)
            loss = term if loss is None else loss + term
        assert loss is not None
        return loss

    # ------------------------------------------------------------------ the step

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        """One step on ``batch[B, 3]``; returns the detached loss (this process's share)."""
        assert self.optimizer is not None, "TrainStep.optimizer is set by the trainer"
        dtype = compute_rows(self.model.entity.weight[:0]).dtype
        if self._target_dtype != dtype:  # the model changed precision (e.g. .double())
            self._targets(self.loss, self.words.device, dtype)
        words = self.words
        if words.numel():
            words.random_(-(2**63), None, generator=self.generator)  # every random word
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
        anchor_rows, candidate_rows = self.table.gather([kept, flat])
        b, width = batch.shape[0], anchor_rows.shape[-1]
        shape = (b, *([1] * (candidates.dim() - 1)), width)  # broadcast against the groups
        anchor = anchor_rows.view(shape).requires_grad_(True)
        groups = candidate_rows.view(*candidates.shape, width).requires_grad_(True)
        # Relations are gathered like entities: a leaf whose gradient is summed into the
        # (small, replicated) table's dense gradient after backward.
        relations = batch[:, 1]
        relation = self.model.relation.weight
        with torch.no_grad():
            r = relation.index_select(0, relations)
        r = r.view(*shape[:-1], r.shape[-1]).requires_grad_(True)
        loss = self.objective(batch, anchor, groups, r, words, side)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward(self._one)  # (a stored 1.0: no fresh tensor per step)
        parts = [(kept, anchor.grad.view(b, width))]
        if groups.grad is not None:  # (1-vs-all: the true entities are targets, not rows)
            parts.append((flat, groups.grad.view(-1, width)))
        self.table.push(self.optimizer, parts)
        _add_rows(relation, relations, r.grad.view(relations.shape[0], -1))
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return loss.detach()

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
            return "entity rows are exchanged between processes"
        return None


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


# ---------------------------------------------------------------------- compiled, graphed


def compile_step(step: TrainStep, *, backend: str = "inductor") -> None:
    """``train.compile``: run ``draw`` and ``objective`` through ``torch.compile`` with
    ``fullgraph=True`` (a graph break is an error, not a silent fallback). The first call
    compiles one graph per static side.

    Every step object and side is its own specialisation of the same functions, so a
    process that builds many trainers (``tune``, ``compare``) raises dynamo's limit on
    recompilations of one function (8 by default) to at least 64.
    """
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 64)
    step.draw = torch.compile(step.draw, fullgraph=True, dynamic=False, backend=backend)  # type: ignore[method-assign]
    step.objective = torch.compile(step.objective, fullgraph=True, dynamic=False, backend=backend)  # type: ignore[method-assign]


def notice(message: str) -> None:
    """A one-line notice on stderr (the run goes on)."""
    print(message, file=sys.stderr, flush=True)


class GraphedStep:
    """``train.cuda_graph``: the whole step captured once per static side, then replayed.

    The first ``warmup`` calls run the eager step on a side stream (they are real steps:
    they initialise the optimizer state, cuBLAS handles and autotuning). Then the step is
    captured with :class:`torch.cuda.CUDAGraph`: the batch is copied into a static
    tensor, the run's generator is registered with the graph
    (``register_generator_state``), and every later call is one ``replay``.

    Randomness and resume: a registered generator's Philox offset advances on every
    replay by the amount the captured kernels consume, and they consume what the eager
    step does, so after ``k`` replays ``generator.get_state()`` is the state ``k`` eager
    steps would leave. The checkpointed state therefore resumes exactly, and a resumed run
    (eager warm-up, then a new capture) draws what an uninterrupted one does.

    Recapture: the learning rate (a Python float baked into the captured update) and the
    optimizer object are part of a graph's key; a scheduler step or the reference
    schedule's switch captures a new graph. A failed capture prints one line and the run
    goes on with the eager step.
    """

    def __init__(self, step: TrainStep, *, warmup: int = 3) -> None:
        self.step, self.warmup = step, warmup
        self.graphs: dict[Any, tuple[Any, Tensor]] = {}
        self.static_batch: Tensor | None = None
        self.eager_steps = 0
        self.failed = False
        self.stream: Any = None  # the warm-up's side stream, made on first use

    def _key(self, side: Side | None) -> tuple[Any, ...]:
        optimizer = self.step.optimizer
        assert optimizer is not None
        return (side, id(optimizer), tuple(float(g["lr"]) for g in optimizer.param_groups))

    def __call__(self, batch: Tensor, side: Side | None, *, step: int = 0) -> Tensor:
        if self.failed:
            return self.step(batch, side, step=step)
        key = self._key(side)
        if key not in self.graphs and self.eager_steps < self.warmup:
            self.eager_steps += 1
            return self._on_side_stream(lambda: self.step(batch, side, step=step))
        if key not in self.graphs:
            if self.graphs and key[1:] != next(iter(self.graphs))[1:]:
                self.graphs.clear()  # a new optimizer or rate: the old graphs are stale
            try:
                self.graphs[key] = self._capture(batch, side, step)
            except Exception as exc:  # noqa: BLE001 (any capture failure: run eagerly)
                self.failed = True
                self.graphs.clear()
                notice(
                    f"train.cuda_graph: capture failed ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}); continuing with the eager step"
                )
                return self.step(batch, side, step=step)
        graph, loss = self.graphs[key]
        assert self.static_batch is not None
        self.static_batch.copy_(batch)
        graph.replay()
        return loss.clone()

    def _on_side_stream(self, run: Callable[[], Tensor]) -> Tensor:
        if self.stream is None:
            self.stream = torch.cuda.Stream(device=self.step.words.device)
        current = torch.cuda.current_stream(self.stream.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = run()
        current.wait_stream(self.stream)
        return out

    def _capture(self, batch: Tensor, side: Side | None, step: int) -> tuple[Any, Tensor]:
        if self.static_batch is None:
            self.static_batch = batch.clone()
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.step.generator)
        torch.cuda.synchronize(self.step.words.device)
        with torch.cuda.graph(graph):
            loss = self.step(self.static_batch, side, step=step)
        return graph, loss


def aten_ops_per_call(call: Callable[[], object], *, calls: int = 2, warmup: int = 2) -> float:
    """ATen operations per call of ``call``, counted by ``torch.profiler`` on the CPU: every
    ``aten::`` event, nested ones included (on a GPU most of them are kernel launches, the
    cost of a launch-bound step). ``warmup`` calls first, outside the count."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            call()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")) / calls


#: Operations whose result the host must wait for: a scalar read, or an output whose shape
#: depends on the data (boolean indexing is checked separately, by its index's dtype).
_SYNCING = (
    "_local_scalar_dense",  # .item(), float(t), bool(t), .tolist()
    "nonzero",
    "masked_select",
    "unique",
    "_unique",
    "_unique2",
    "unique_consecutive",
    "unique_dim",
    "is_nonzero",
    "equal",
)


class forbid_host_sync(TorchDispatchMode):  # noqa: N801 (used as a context manager)
    """Raise at the first operation that would make the host wait for the device.

    A CUDA graph cannot contain such an operation, and on a GPU each one stalls the
    launch queue. This checks the rule on any device (CPU included): scalar reads
    (``.item()``, ``bool(t)``, ``.tolist()``), ``nonzero``, ``unique``, ``masked_select``,
    boolean-mask indexing, and copies of a tensor to another device. Operations that a
    kernel calls internally (such as the CPU fused Adagrad reading its CPU step count)
    are below this check, as they are below a CUDA graph.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in _SYNCING:
            raise RuntimeError(f"host synchronisation in the step: aten.{name}")
        if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            for index in indices or ():
                if isinstance(index, Tensor) and index.dtype in (torch.bool, torch.uint8):
                    raise RuntimeError(
                        f"host synchronisation in the step: boolean-mask indexing (aten.{name})"
                    )
        if name in ("_to_copy", "copy_") and args and isinstance(args[0], Tensor):
            source = args[1] if name == "copy_" else args[0]
            target = args[0].device if name == "copy_" else kwargs.get("device")
            if target is not None and torch.device(target) != source.device:
                raise RuntimeError(
                    f"host synchronisation in the step: a copy from {source.device} to {target}"
                )
        return func(*args, **kwargs)
