"""Adagrad (Duchi et al., 2011): the dense update, or its row form for large tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from emu_dgl.registry import OPTIMIZERS
from emu_dgl.training.sparse import RowOptimizer, fused_supported, state_dtype


@OPTIMIZERS.register("adagrad")
class RowAdagrad(RowOptimizer):
    """Adagrad whose state and weights change only in the rows of a row gradient."""

    repeat_first = True  # new values are written (bit-for-bit torch.optim.Adagrad's)
    rows_under_auto: ClassVar[bool] = True  # untouched rows have a zero gradient: no change

    @classmethod
    def from_options(
        cls, *, params: list[Tensor], lr: float, sparse: bool = False
    ) -> torch.optim.Optimizer:
        """Rows: this class. Dense: ``torch.optim.Adagrad`` (fused) where the device has the
        fused kernel, else this class's dense update (the same arithmetic, multi-tensor,
        capturable)."""
        if not sparse and fused_supported("adagrad", params[0].device.type):
            return torch.optim.Adagrad(params, lr=lr, fused=True)
        return cls(params, lr=lr)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["sum"] = torch.zeros_like(param, dtype=state_dtype(param))

    def _update_rows(
        self, param: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any], state: dict
    ) -> None:
        # torch.optim.Adagrad's own operations, row by row (addcmul and addcdiv round once,
        # as fused multiply-adds), written back: the same bits as the dense update
        total = self._gather("state", state["sum"], rows).addcmul_(grad, grad)
        state["sum"].index_copy_(0, rows, total)
        std = total.sqrt_().add_(group["eps"])
        weights = self._gather("weights", param, rows).addcdiv_(grad, std, value=-group["lr"])
        param.index_copy_(0, rows, weights.to(param.dtype))

    def _update_dense(
        self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any], states: list
    ) -> None:
        sums = [state["sum"] for state in states]
        torch._foreach_addcmul_(sums, grads, grads)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, group["eps"])
        torch._foreach_addcdiv_(params, grads, std, value=-group["lr"])
