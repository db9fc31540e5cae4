r"""The whole-table L3 penalty of the published EMU base arms."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from emu_dgl.losses.n3 import check_positive_weight
from emu_dgl.registry import REGULARIZERS, Option

__all__ = ["L3TableRegularizer", "l3_table_regularizer", "whole_table_l3"]


def l3_table_regularizer(model: nn.Module, *, weight: float, relation_share: float = 1.0) -> Tensor:
    r"""Whole-table L3 penalty of the published base arms (EMU paper code):

    .. math::
        \text{weight} \cdot \Big(\sum_{i,k} |E_{ik}|^3 + \sum_{j,k} |R_{jk}|^3\Big)

    over every real of the entity table ``E`` and the relation table ``R`` (for
    complex or projected rows, each stored real on its own), added once per step.
    Unlike :func:`~emu_dgl.losses.n3.n3_regularizer` it is not an average over the batch:
    it touches (and its gradient ``3 * weight * x * |x|`` updates) every row of both tables
    at every step, used or not, so it is dense by nature.

    ``relation_share`` scales the relation part: with the entity table split over
    processes, each process adds its own block's part and its share of the (replicated)
    relations' part, so the parts sum to the whole penalty.

    Both tables are handled by multi-tensor operations with the closed-form gradient
    (a handful of kernels instead of a dozen per table, forward and backward).
    """
    entity, relation = model.entity.weight, model.relation.weight
    a, b = entity.new_tensor(weight), entity.new_tensor(weight * relation_share)
    return whole_table_l3(entity, relation, a, b)


def whole_table_l3(
    entity: Tensor,
    relation: Tensor,
    a: Tensor,
    b: Tensor,
    a3: Tensor | None = None,
    b3: Tensor | None = None,
) -> Tensor:
    """``a * sum |entity|^3 + b * sum |relation|^3`` with 0-d tensors ``a``, ``b`` (and
    ``3 a``, ``3 b`` when the caller has them: the training step passes its stored ones;
    see :func:`l3_table_regularizer`)."""
    return _WholeTableL3.apply(
        entity, relation, a, b, a * 3 if a3 is None else a3, b * 3 if b3 is None else b3
    )


class _WholeTableL3(torch.autograd.Function):
    """``a sum |E|^3 + b sum |R|^3`` with its closed-form gradient ``3 a E |E|``,
    ``3 b R |R|``: a few kernels instead of a dozen per table."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        entity: Tensor,
        relation: Tensor,
        a: Tensor,
        b: Tensor,
        a3: Tensor,
        b3: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(entity, relation, a3, b3)
        n_e = torch.linalg.vector_norm(entity, 3)  # (sum |x|^3)^(1/3)
        n_r = torch.linalg.vector_norm(relation, 3)
        return n_e * n_e * n_e * a + n_r * n_r * n_r * b

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, Tensor, None, None, None, None]:
        entity, relation, a3, b3 = ctx.saved_tensors  # type: ignore[attr-defined]
        grad_entity = entity.abs().mul_(entity).mul_(grad * a3)  # 3 a E |E|
        grad_relation = relation.abs().mul_(relation).mul_(grad * b3)
        return grad_entity, grad_relation, None, None, None, None


@REGULARIZERS.register("l3_table")
class L3TableRegularizer:
    """``reg_weight * (sum |E|^3 + sum |R|^3)`` over the whole tables, every step (the
    published base arms; see :func:`l3_table_regularizer`). On several processes each adds
    its block's part and its ``share`` of the replicated relations' part."""

    touches_every_row: ClassVar[bool] = True
    options: ClassVar[dict[str, Option]] = {
        "reg_weight": Option(0.0, "weight of the regulariser", low=0),
    }

    def __init__(self, reg_weight: float = 0.0) -> None:
        self.weight = float(reg_weight)
        self.prepare(share=1.0, dtype=torch.float32, device=torch.device("cpu"))

    check_config = staticmethod(check_positive_weight)

    def prepare(self, *, share: float, dtype: torch.dtype, device: torch.device) -> None:
        """The constant factors as 0-d tensors on the device (none made per step)."""
        scales = (self.weight, self.weight * share)
        self.scales = tuple(torch.tensor(v, dtype=dtype, device=device) for v in scales)
        self.slopes = tuple(torch.tensor(3 * v, dtype=dtype, device=device) for v in scales)

    def __call__(self, model: Any, anchor: Tensor, relation: Tensor, true: Tensor) -> Tensor:
        """The penalty of the whole tables (the rows a step trains are not read)."""
        return whole_table_l3(
            model.entity.weight, model.relation.weight, *self.scales, *self.slopes
        )
