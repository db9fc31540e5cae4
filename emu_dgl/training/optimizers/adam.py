"""Adam (Kingma and Ba, 2015): PyTorch's dense update, or lazy Adam on rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from emu_dgl.registry import OPTIMIZERS
from emu_dgl.training.sparse import RowOptimizer, fused_supported, state_dtype


@OPTIMIZERS.register("adam")
class RowAdam(RowOptimizer):
    """Lazy Adam: the moments and weights of a row change only when it has a gradient.

    The step count lives on the parameter's device and the bias corrections are computed
    there, so a step needs no host synchronisation."""

    repeat_first = True  # a zero gradient still decays the moments: no padding rows
    state_per_weight: ClassVar[int] = 2

    @classmethod
    def from_options(
        cls, *, params: list[Tensor], lr: float, sparse: bool = False
    ) -> torch.optim.Optimizer:
        """Rows: this class (lazy Adam). Dense: ``torch.optim.Adam``, fused where the device
        has the kernel, ``capturable`` on CUDA (for CUDA graphs)."""
        if sparse:
            return cls(params, lr=lr)
        device = params[0].device
        fused = fused_supported("adam", device.type) or None
        return torch.optim.Adam(params, lr=lr, fused=fused, capturable=device.type == "cuda")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        state["step"] = torch.zeros((), dtype=torch.float64, device=param.device)
        state["exp_avg"] = torch.zeros_like(param, dtype=state_dtype(param))
        state["exp_avg_sq"] = torch.zeros_like(param, dtype=state_dtype(param))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for param, state in self.state.items():  # checkpoints of older versions: CPU steps
            if "step" in state:
                state["step"] = state["step"].to(device=param.device, dtype=torch.float64)

    @staticmethod
    def _corrections(state: dict, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """``(-lr / (1 - b1^t), sqrt(1 - b2^t))`` after counting this step, on the device."""
        beta1, beta2 = group["betas"]
        step = state["step"].add_(1)
        scale = -group["lr"] / (1 - torch.pow(beta1, step))
        return scale, (1 - torch.pow(beta2, step)).sqrt()

    def _moments(
        self, m: Tensor, v: Tensor, grad: Tensor, group: dict[str, Any]
    ) -> tuple[Tensor, Tensor]:
        beta1, beta2 = group["betas"]
        return m.lerp_(grad, 1 - beta1), v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

    def _update_rows(
        self, param: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any], state: dict
    ) -> None:
        m, v = self._moments(
            self._gather("m", state["exp_avg"], rows),
            self._gather("v", state["exp_avg_sq"], rows),
            grad,
            group,
        )
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        scale, correction = self._corrections(state, group)
        # torch.optim.Adam's arithmetic: w + (-lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
        denom = torch.sqrt(v, out=self._buffer("denom", tuple(v.shape), v))
        denom.div_(correction).add_(group["eps"])
        step = torch.div(m, denom, out=denom).mul_(scale)
        param.index_copy_(0, rows, self._gather("weights", param, rows).add_(step).to(param.dtype))

    def _update_dense(
        self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any], states: list
    ) -> None:
        for param, grad, state in zip(params, grads, states, strict=True):
            m, v = self._moments(state["exp_avg"], state["exp_avg_sq"], grad, group)
            scale, correction = self._corrections(state, group)
            denom = v.sqrt().div_(correction).add_(group["eps"])
            param.add_(m.div(denom).mul_(scale))
