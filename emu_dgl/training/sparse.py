r"""Row-sparse optimizers: a step reads and writes only the entity rows it touched.

A training step looks up ``B * (n + 2)`` entity rows, yet a dense embedding gradient
plus a dense optimizer read and write all ``E`` rows every step, so the step cost grows
with the entity count. Here the entity table gives a sparse gradient (PyTorch's
``nn.Embedding(sparse=True)``: one gradient row per lookup, duplicates summed when the
gradient is coalesced), and the optimizers below update the rows in that gradient
only. A dense gradient (the relation table, or an entity gradient made dense by a
whole-table term such as an L3 penalty over every row) gets the ordinary dense update,
so a step is always exact for the gradient it is given.

With the coalesced gradient ``g_i`` of a touched row ``i`` (learning rate ``lr``):

``adagrad`` (elementwise accumulator, the update of ``torch.optim.Adagrad``)::

    s_i <- s_i + g_i^2,    w_i <- w_i - lr * g_i / (sqrt(s_i) + eps)

An untouched row has ``g_i = 0``, for which the dense update changes neither ``s_i``
nor ``w_i``: sparse Adagrad *is* dense Adagrad.

``rowwise_adagrad`` (one accumulator per row, as DGL-KE and FBGEMM do)::

    s_i <- s_i + mean_k g_ik^2,    w_i <- w_i - lr * g_i / (sqrt(s_i) + eps)

Optimizer state drops from ``d`` floats per row to one.

``adam`` ("lazy" Adam, the rule of ``torch.optim.SparseAdam`` written with the exact
arithmetic of ``torch.optim.Adam``; ``t`` counts optimizer steps, bias corrections use it)::

    m_i <- b1 m_i + (1 - b1) g_i,   v_i <- b2 v_i + (1 - b2) g_i^2
    w_i <- w_i - lr / (1 - b1^t) * m_i / (sqrt(v_i) / sqrt(1 - b2^t) + eps)

The one known difference from dense Adam: dense Adam also decays ``m_i`` and ``v_i`` of
rows with a zero gradient and keeps moving them by the decayed momentum; lazy Adam
leaves an untouched row and its moments exactly as they were. A row touched at every
step gets exactly the dense Adam update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import Registry

__all__ = [
    "OPTIMIZERS",
    "RowAdagrad",
    "RowAdam",
    "RowwiseAdagrad",
    "build_optimizer",
    "use_sparse_rows",
]

#: Regularisers whose gradient reaches every row of the entity table.
WHOLE_TABLE_REGULARIZERS = ("l3_table",)


def _put(state: Tensor, rows: Tensor | None, value: Tensor) -> None:
    if rows is None:
        state.copy_(value)
    else:
        state.index_copy_(0, rows, value)


def _apply(param: Tensor, rows: Tensor | None, update: Tensor) -> None:
    """``param[rows] += update`` (rows are unique after coalescing)."""
    if rows is None:
        param.add_(update)
    else:
        param.index_add_(0, rows, update)


class _RowOptimizer(torch.optim.Optimizer):
    """Shared loop: each parameter's gradient as (rows, values), then ``_update``.

    A step at a few hundred thousand touched rows handles [rows, d] blocks of ~100 MB;
    on CPU a fresh block that large costs more (page faults) than the arithmetic on it,
    so the blocks live in reusable work buffers (not part of the optimizer state).
    """

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]
    ) -> None:
        if defaults["lr"] <= 0:
            raise ConfigError(f"train.lr must be positive, got {defaults['lr']}")
        super().__init__(params, defaults)
        self._buffers: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def _buffer(self, name: str, shape: torch.Size | tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised tensor of ``shape`` backed by the reusable buffer ``name``."""
        key = (name, like.dtype, like.device)
        need = math.prod(shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < need:
            buffer = self._buffers[key] = torch.empty(
                need + need // 8, dtype=like.dtype, device=like.device
            )
        return buffer[:need].view(shape)

    def _take(self, name: str, state: Tensor, rows: Tensor | None) -> Tensor:
        """``state[rows]`` (all of it for ``rows=None``) copied into the buffer ``name``."""
        out = self._buffer(
            name, state.shape if rows is None else (len(rows), *state.shape[1:]), state
        )
        return out.copy_(state) if rows is None else torch.index_select(state, 0, rows, out=out)

    def _rows_of(self, grad: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(rows, values)``: a sparse gradient's sorted distinct rows with duplicates summed
        (into a work buffer), or ``(None, grad)`` for a dense one, meaning every row."""
        if not grad.is_sparse:
            return None, grad
        if grad.is_coalesced():
            return grad._indices()[0], grad._values()
        ids, values = grad._indices()[0], grad._values()
        rows, inverse = torch.unique(ids, sorted=True, return_inverse=True)
        summed = self._buffer("grad", (len(rows), *values.shape[1:]), values)
        return rows, summed.zero_().index_add_(0, inverse, values)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                rows, grad = self._rows_of(param.grad)
                state = self.state[param]
                if not state:
                    self._init_state(param, state)
                self._update(param, rows, grad, group, state)
        return loss

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _update(
        self,
        param: Tensor,
        rows: Tensor | None,
        grad: Tensor,
        group: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        raise NotImplementedError


class RowAdagrad(_RowOptimizer):
    """Adagrad whose state and weights change only in the rows of a sparse gradient."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["sum"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(
        self,
        param: Tensor,
        rows: Tensor | None,
        grad: Tensor,
        group: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        total = self._take("work", state["sum"], rows).addcmul_(grad, grad)
        _put(state["sum"], rows, total)
        # Same operation order as torch.optim.Adagrad: g / (sqrt(s) + eps), times -lr.
        update = torch.div(grad, total.sqrt_().add_(group["eps"]), out=total).mul_(-group["lr"])
        _apply(param, rows, update)


class RowwiseAdagrad(_RowOptimizer):
    """Adagrad with one accumulator per row (the mean squared gradient of the row).

    Parameters of one dimension keep one accumulator per element."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["sum"] = torch.zeros(param.shape[:1], dtype=param.dtype, device=param.device)

    def _update(
        self,
        param: Tensor,
        rows: Tensor | None,
        grad: Tensor,
        group: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        work = self._buffer("work", grad.shape, grad)
        squares = torch.mul(grad, grad, out=work)
        if grad.dim() > 1:
            squares = squares.flatten(1).mean(1)
        total = self._take("row_sum", state["sum"], rows).add_(squares)
        _put(state["sum"], rows, total)
        std = total.sqrt_().add_(group["eps"])
        if grad.dim() > 1:
            std = std.view(-1, *([1] * (grad.dim() - 1)))
        _apply(param, rows, torch.div(grad, std, out=work).mul_(-group["lr"]))


class RowAdam(_RowOptimizer):
    """Lazy Adam: the moments and weights of a row change only when it has a gradient."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["step"] = torch.zeros((), dtype=torch.float64)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def _update(
        self,
        param: Tensor,
        rows: Tensor | None,
        grad: Tensor,
        group: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = float(state["step"])
        m = self._take("m", state["exp_avg"], rows).lerp_(grad, 1 - beta1)
        v = (
            self._take("v", state["exp_avg_sq"], rows)
            .mul_(beta2)
            .addcmul_(grad, grad, value=1 - beta2)
        )
        _put(state["exp_avg"], rows, m)
        _put(state["exp_avg_sq"], rows, v)
        # torch.optim.Adam's arithmetic: m / (sqrt(v) / sqrt(1 - b2^t) + eps) * -lr / (1 - b1^t)
        denom = v.sqrt_().div_((1 - beta2**step) ** 0.5).add_(group["eps"])
        _apply(param, rows, torch.div(m, denom, out=denom).mul_(-group["lr"] / (1 - beta1**step)))


#: ``train.optimizer`` names -> the row-wise class (dense gradients: see :func:`build_optimizer`).
OPTIMIZERS: Registry[_RowOptimizer] = Registry("optimizer")
OPTIMIZERS.register("adagrad")(RowAdagrad)
OPTIMIZERS.register("adam")(RowAdam)
OPTIMIZERS.register("rowwise_adagrad")(RowwiseAdagrad)


def use_sparse_rows(
    sparse: bool | str, optimizer: str, *, loss: str = "", regularizer: str = "none"
) -> bool:
    """Whether the entity table gives sparse (row) gradients.

    ``True`` / ``False`` are obeyed. ``"auto"`` picks rows where the result is the same
    as the dense step: Adagrad and row-wise Adagrad, unless the loss or a regulariser
    reaches every entity row anyway (1-vs-all scoring, a whole-table L3 penalty), where
    the gradient is dense and rows only add work. Adam stays dense under ``auto``
    because lazy Adam is a different rule (see the module doc); ask for it with ``true``.
    """
    if isinstance(sparse, bool):
        return sparse
    if sparse != "auto":
        raise ConfigError(f"train.sparse: expected auto, true or false, got {sparse!r}")
    if loss == "1vsall" or regularizer in WHOLE_TABLE_REGULARIZERS:
        return False
    return optimizer in ("adagrad", "rowwise_adagrad")


def build_optimizer(
    model: nn.Module, name: str, *, lr: float, sparse: bool
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``model``'s parameters; sets the entity table's gradient layout.

    Dense gradients with ``adagrad``/``adam`` use PyTorch's own optimizers (bit-for-bit
    what a run without this module did); sparse rows, or ``rowwise_adagrad``, use the
    row optimizers above, which also handle the dense relation gradients.
    """
    row_class = OPTIMIZERS.get(name)
    entity = getattr(model, "entity", None)
    if isinstance(entity, nn.Embedding):
        entity.sparse = sparse
    if not sparse and name != "rowwise_adagrad":
        cls = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}[name]
        return cls(model.parameters(), lr=lr)
    return row_class(model.parameters(), lr=lr)
