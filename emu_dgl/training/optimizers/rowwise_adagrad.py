"""Row-wise Adagrad: one accumulator per entity row (DGL-KE, FBGEMM)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from emu_dgl.registry import OPTIMIZERS
from emu_dgl.training.sparse import LOW_PRECISION, RowOptimizer, state_dtype


@OPTIMIZERS.register("rowwise_adagrad")
class RowwiseAdagrad(RowOptimizer):
    """Adagrad with one accumulator per row (the mean squared gradient of the row).

    Parameters of one dimension keep one accumulator per element."""

    rows_under_auto: ClassVar[bool] = True
    state_per_weight: ClassVar[int] = 0  # one accumulator per row

    @classmethod
    def from_options(
        cls, *, params: list[Tensor], lr: float, sparse: bool = False
    ) -> RowwiseAdagrad:
        """Rows or dense, always this class (PyTorch has no row-wise Adagrad)."""
        return cls(params, lr=lr)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["sum"] = torch.zeros(param.shape[:1], dtype=state_dtype(param), device=param.device)

    @staticmethod
    def _mean_square(grad: Tensor) -> Tensor:
        return grad.square().flatten(1).mean(1) if grad.dim() > 1 else grad.square()

    @staticmethod
    def _per_row(std: Tensor, grad: Tensor) -> Tensor:
        return std.view(-1, *([1] * (grad.dim() - 1))) if grad.dim() > 1 else std

    def _update_rows(
        self, param: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any], state: dict
    ) -> None:
        work = self._buffer("work", tuple(grad.shape), grad)
        squares = torch.mul(grad, grad, out=work)
        mean_square = squares.flatten(1).mean(1) if grad.dim() > 1 else squares.clone()
        total = state["sum"].index_select(0, rows).add_(mean_square)
        if param.dtype in LOW_PRECISION:  # rows written back whole (unused slots: slot 0 again)
            state["sum"].index_copy_(0, rows, total)
            std = self._per_row(total.sqrt_().add_(group["eps"]), grad)
            weights = self._gather("weights", param, rows).addcdiv_(grad, std, value=-group["lr"])
            param.index_copy_(0, rows, weights.to(param.dtype))
            return
        state["sum"].index_add_(0, rows, mean_square)  # (unused slots: row 0 plus zero)
        std = self._per_row(total.sqrt_().add_(group["eps"]), grad)
        param.index_add_(0, rows, torch.div(grad, std, out=work).mul_(-group["lr"]))

    def _update_dense(
        self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any], states: list
    ) -> None:
        for param, grad, state in zip(params, grads, states, strict=True):
            total = state["sum"].add_(self._mean_square(grad))
            std = self._per_row(total.sqrt().add_(group["eps"]), grad)
            param.addcdiv_(grad, std, value=-group["lr"])
