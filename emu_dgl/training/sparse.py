r"""Optimizers in fixed shape: dense PyTorch updates, and row updates for large tables.

A training step looks up ``N = B * (n + 2)`` entity rows. It hands the optimizer the
gradient of each lookup (``ids[N]``, ``values[N, d]``), and the optimizer applies either

* a **dense** update: the lookups' gradients summed into the table's ``.grad``
  (``index_add_``), then PyTorch's own ``torch.optim.Adagrad`` / ``torch.optim.Adam``
  (fused kernels where the device has them; Adam ``capturable`` on CUDA). Every row is
  read and written, which costs little while the table is small; or
* a **row** update (:class:`RowAdagrad`, :class:`RowwiseAdagrad`, :class:`RowAdam`):
  only the rows the step touched are read and written, so the cost does not grow with
  the number of entities.

Both are one pure sequence of fixed-shape tensor operations: no ``unique``, no
``nonzero``, no host synchronisation, so a step can be captured in a CUDA graph. Row
updates coalesce duplicate ids with a sort (:func:`coalesce_rows`): slot ``j`` of
``S = min(N, E)`` slots holds the ``j``-th distinct row and the sum of its gradients;
the unused slots repeat slot 0 (same row, same gradient), so they compute and write the
same values as slot 0 (``index_copy_`` with duplicate ids that carry identical values).

With the summed gradient ``g_i`` of a touched row ``i`` (learning rate ``lr``):

``adagrad`` (elementwise accumulator, the update of ``torch.optim.Adagrad``)::

    s_i <- s_i + g_i^2,    w_i <- w_i - lr * g_i / (sqrt(s_i) + eps)

An untouched row has ``g_i = 0``, for which the dense update changes neither ``s_i``
nor ``w_i``: row Adagrad *is* dense Adagrad.

``rowwise_adagrad`` (one accumulator per row, as DGL-KE and FBGEMM do)::

    s_i <- s_i + mean_k g_ik^2,    w_i <- w_i - lr * g_i / (sqrt(s_i) + eps)

Optimizer state drops from ``d`` floats per row to one.

``adam`` on rows ("lazy" Adam, the rule of ``torch.optim.SparseAdam`` written with the
arithmetic of ``torch.optim.Adam``; ``t`` counts optimizer steps, bias corrections use it)::

    m_i <- b1 m_i + (1 - b1) g_i,   v_i <- b2 v_i + (1 - b2) g_i^2
    w_i <- w_i - lr / (1 - b1^t) * m_i / (sqrt(v_i) / sqrt(1 - b2^t) + eps)

The one known difference from dense Adam: dense Adam also decays ``m_i`` and ``v_i`` of
rows with a zero gradient and keeps moving them by the decayed momentum; lazy Adam
leaves an untouched row and its moments exactly as they were. A row touched at every
step gets exactly the dense Adam update.

Parameters with a dense gradient (relations, a decoder's scalars, or an entity table
made dense by a whole-table term such as an L3 penalty) always get the dense update,
so a step is exact for the gradient it is given.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import OPTIMIZERS

__all__ = [
    "OPTIMIZERS",
    "RowOptimizer",
    "build_optimizer",
    "coalesce_rows",
    "fused_supported",
    "push_rows",
    "state_dtype",
    "use_sparse_rows",
]

#: Parameter dtypes stored in low precision: their optimizer state is float32, and a row
#: update is computed in float32 and written back rounded once (see
#: :mod:`emu_dgl.training.precision`).
LOW_PRECISION = (torch.bfloat16, torch.float16)


def state_dtype(param: Tensor) -> torch.dtype:
    """The dtype of ``param``'s optimizer state: float32 for a low-precision table."""
    return torch.float32 if param.dtype in LOW_PRECISION else param.dtype


#: ``train.sparse: auto`` updates rows once the table has more than this many times the
#: rows a step looks up; below, the dense update is as fast or faster (DistMult, batch
#: 1000, 256 negatives = 258k lookups, one CPU thread: dense 0.56 s against rows 0.68 s
#: at 400k entities, rows 0.71 s against dense 1.02 s at 4M; benchmarks/bench_scale.py).
DENSE_UP_TO_LOOKUPS = 4


def coalesce_rows(
    ids: Tensor | list[Tensor],
    values: Tensor | list[Tensor],
    num_rows: int,
    *,
    repeat_first: bool = False,
    buffer: Callable[[str, tuple[int, ...], Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(rows[S], summed[S, d])`` with ``S = min(N, num_rows)``, in fixed shape.

    Slot ``j < U`` (``U`` distinct ids) holds the ``j``-th smallest distinct id and the
    sum of its ``values``. The slots ``j >= U`` hold row 0 and a zero gradient (an update
    that adds nothing, for optimizers that add their change: Adagrad), or with
    ``repeat_first`` a copy of slot 0, id and sum (identical writes, for optimizers that
    write their new values: lazy Adam, whose zero-gradient update is not a no-op). No
    ``unique``: a sort, a prefix sum of "new id" flags, and scatters. ``ids`` and
    ``values`` may come in parts (lists), summed as one without joining the values.
    ``buffer(name, shape, like)`` gives reusable work tensors for the ``[S, d]`` sums (on
    a CPU a fresh tensor that large costs more, in page faults, than the arithmetic).
    """
    parts = list(values) if isinstance(values, list) else [values]
    ids = torch.cat(ids) if isinstance(ids, list) else ids
    count = ids.shape[0]
    slots = min(count, num_rows)
    sorted_ids, order = torch.sort(ids)
    new = torch.ones_like(sorted_ids, dtype=torch.bool)
    torch.ne(sorted_ids[1:], sorted_ids[:-1], out=new[1:])
    slot_sorted = new.cumsum(0) - 1  # slot of each sorted lookup
    slot = torch.empty_like(slot_sorted).index_copy_(0, order, slot_sorted)
    rows = ids.new_zeros(slots).index_copy_(0, slot_sorted, sorted_ids)  # equal duplicates
    shape = (slots, *parts[0].shape[1:])
    if buffer is None:
        summed = parts[0].new_zeros(shape)
    else:
        summed = buffer("summed", shape, parts[0]).zero_()
    start = 0
    for part in parts:
        summed.index_add_(0, slot[start : start + part.shape[0]], part)
        start += part.shape[0]
    if not repeat_first:
        return rows, summed
    # Unused slots (j >= U) become copies of slot 0.
    position = torch.arange(slots, device=ids.device)
    source = torch.where(position <= slot_sorted[-1], position, 0)
    if buffer is None:
        return rows.index_select(0, source), summed.index_select(0, source)
    repeated = torch.index_select(summed, 0, source, out=buffer("repeated", shape, summed))
    return rows.index_select(0, source), repeated


def push_rows(optimizer: torch.optim.Optimizer, param: Tensor, ids: Tensor, values: Tensor) -> None:
    """Give ``param`` the gradient of lookups ``ids`` with gradients ``values``.

    A row optimizer keeps them as rows for its next ``step``; any other optimizer gets
    them summed into the dense ``param.grad`` (added to what autograd put there)."""
    if isinstance(optimizer, RowOptimizer):
        optimizer.add_rows(param, ids, values)
        return
    if param.grad is None:
        param.grad = torch.zeros_like(param)
    if ids.dim() != 1:
        ids, values = ids.reshape(-1), values.reshape(-1, *param.shape[1:])
    param.grad.index_add_(0, ids, values)


class RowOptimizer(torch.optim.Optimizer):
    """Shared loop: row gradients (given by :meth:`add_rows`, or a sparse ``.grad``) get
    :meth:`_update_rows` on the coalesced rows; dense gradients get :meth:`_update_dense`
    with multi-tensor (``foreach``) operations over all of them at once.

    Each optimizer is a component (:mod:`emu_dgl.training.optimizers`, one per file, named
    by ``train.optimizer``) that says how ``train.sparse: auto`` may treat it and builds
    the dense PyTorch optimizer or its row form (``from_options``)."""

    #: Whether a row update writes new values (unused slots must repeat a real one) rather
    #: than adding a change (unused slots add zero); see :func:`coalesce_rows`.
    repeat_first = False
    #: Whether its row update equals its dense update, so ``train.sparse: auto`` may pick
    #: rows for it (Adagrad: yes; lazy Adam: no, a different rule).
    rows_under_auto: ClassVar[bool] = False
    #: Optimizer state per weight (the memory check's estimate): Adagrad 1, Adam 2.
    state_per_weight: ClassVar[int] = 1

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]
    ) -> None:
        if defaults["lr"] <= 0:
            raise ConfigError(f"train.lr must be positive, got {defaults['lr']}")
        super().__init__(params, defaults)
        self._rows: dict[Tensor, tuple[list[Tensor], list[Tensor]]] = {}
        self._buffers: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def pending_gradient(self, param: Tensor) -> Tensor | None:
        """The dense gradient the next :meth:`step` applies to ``param`` (its ``.grad`` plus
        the rows given by :meth:`add_rows`, summed), for inspection; ``None`` if none."""
        grad = param.grad
        rows = self._rows.get(param)
        if rows is None:
            return None if grad is None else (grad.to_dense() if grad.is_sparse else grad)
        dense = torch.zeros_like(param) if grad is None else grad.to_dense().clone()
        for ids, values in zip(*rows, strict=True):
            dense.index_add_(0, ids, values)
        return dense

    def _buffer(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """A reusable work tensor of ``shape`` (uninitialised; the same one every step, so a
        captured step sees static memory)."""
        key = (name, like.dtype, like.device)
        need = math.prod(shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < need:
            buffer = self._buffers[key] = torch.empty(need, dtype=like.dtype, device=like.device)
        return buffer[:need].view(shape)

    def add_rows(self, param: Tensor, ids: Tensor, values: Tensor) -> None:
        """Lookups ``ids[N]`` of ``param``'s rows and their gradients ``values[N, ...]``,
        applied at the next :meth:`step` (duplicates are summed there; several calls
        before a step add up)."""
        if ids.dim() != 1:
            ids = ids.reshape(-1)
            values = values.reshape(ids.shape[0], *param.shape[1:])
        pending = self._rows.setdefault(param, ([], []))
        pending[0].append(ids)
        pending[1].append(values)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            dense: list[tuple[Tensor, Tensor]] = []
            for param in group["params"]:
                rows = self._rows.pop(param, None)
                grad = param.grad
                if grad is not None and grad.is_sparse:
                    rows, grad = ([grad._indices()[0]], [grad._values()]), None
                if rows is not None and grad is not None:  # a whole-table term made it dense
                    for ids, values in zip(*rows, strict=True):
                        grad = grad.index_add(0, ids, values)
                    rows = None
                state = self.state[param]
                if not state and (rows is not None or grad is not None):
                    self._init_state(param, state)
                if rows is not None:
                    slots, summed = coalesce_rows(
                        rows[0],
                        rows[1],
                        param.shape[0],
                        # a low-precision row is written back whole: no padding rows
                        repeat_first=self.repeat_first or param.dtype in LOW_PRECISION,
                        buffer=self._buffer,
                    )
                    self._update_rows(param, slots, summed, group, state)
                elif grad is not None:
                    dense.append((param, grad))
            if dense:
                params, grads = (list(x) for x in zip(*dense, strict=True))
                self._update_dense(params, grads, group, [self.state[p] for p in params])
        return loss

    def _gather(self, name: str, table: Tensor, rows: Tensor) -> Tensor:
        """``table[rows]`` into the work buffer ``name`` (float32 rows of a low-precision
        table: the update is computed in float32, written back rounded once)."""
        if table.dtype in LOW_PRECISION:
            return table.index_select(0, rows).float()
        out = self._buffer(name, (rows.shape[0], *table.shape[1:]), table)
        return torch.index_select(table, 0, rows, out=out)

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update_rows(
        self, param: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any], state: dict
    ) -> None:
        raise NotImplementedError

    def _update_dense(
        self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any], states: list
    ) -> None:
        raise NotImplementedError


def use_sparse_rows(
    sparse: bool | str,
    optimizer: str,
    *,
    dense_gradient: bool = False,
    num_entities: int | None = None,
    lookups: int | None = None,
) -> bool:
    """Whether the entity table is updated row-wise (else densely).

    ``True`` / ``False`` are obeyed. ``"auto"`` picks rows where the result is the same
    as the dense step and rows are the cheaper one: an optimizer whose row update is its
    dense update (``rows_under_auto``: Adagrad and row-wise Adagrad), unless the gradient
    reaches every entity row anyway (``dense_gradient``: a loss of every entity's score, a
    whole-table penalty), and only for a table of more than :data:`DENSE_UP_TO_LOOKUPS`
    times the rows a step looks up (when the sizes are not given, rows). Below that the
    dense update (fused, every row) is as fast or faster than the row bookkeeping. Adam
    stays dense under ``auto`` because lazy Adam is a different rule (see the module doc);
    ask for it with ``true``.
    """
    if isinstance(sparse, bool):
        return sparse
    if sparse != "auto":
        raise ConfigError(f"train.sparse: expected auto, true or false, got {sparse!r}")
    if dense_gradient or not getattr(OPTIMIZERS.get(optimizer), "rows_under_auto", False):
        return False
    return num_entities is None or lookups is None or num_entities > DENSE_UP_TO_LOOKUPS * lookups


@functools.cache
def fused_supported(name: str, device_type: str) -> bool:
    """Whether ``torch.optim.<name>(fused=True)`` runs on this kind of device here."""
    device = torch.device(device_type)
    param = torch.zeros(2, device=device, requires_grad=True)
    param.grad = torch.ones(2, device=device)
    cls = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}[name]
    try:
        cls([param], lr=0.1, fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def build_optimizer(
    model: nn.Module, name: str, *, lr: float, sparse: bool
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (a registered component) over ``model``'s parameters, updating
    the entity table row-wise (``sparse``) or densely: each optimizer's ``from_options``
    decides which class does that (the dense update is PyTorch's own optimizer, fused
    where the device has the kernel; see :mod:`emu_dgl.training.optimizers`)."""
    entity = getattr(model, "entity", None)
    if isinstance(entity, nn.Embedding):
        # for loops that look rows up through the module (the training step hands over
        # row gradients itself, see push_rows)
        entity.sparse = sparse
    params = list(model.parameters())
    return OPTIMIZERS.build(name, context={"params": params, "lr": lr, "sparse": sparse})
