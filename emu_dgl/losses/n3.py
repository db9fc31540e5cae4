"""N3 regularisation (Lacroix et al., 2018) of the embeddings a step scores."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from emu_dgl.errors import ConfigError
from emu_dgl.registry import REGULARIZERS, Option

__all__ = ["N3Regularizer", "n3_regularizer", "check_positive_weight"]


def n3_regularizer(*embeddings: Tensor, weight: float, complex_parts: bool = False) -> Tensor:
    r"""N3 (Lacroix et al., 2018, https://arxiv.org/abs/1806.07297):

    .. math::
        \text{weight} \cdot \frac1B \sum_b \sum_{x \in \text{embeddings}} \sum_k |x_{b,k}|^3

    With ``complex_parts=True`` each row is ``[re | im]`` and :math:`|x_k|` is the modulus
    :math:`\sqrt{re_k^2 + im_k^2}` (ComplEx); otherwise (real embeddings, e.g.
    DistMult/CP) the absolute value of each real coordinate.
    """
    total = embeddings[0].new_zeros(())
    for x in embeddings:
        if complex_parts:
            re, im = x.chunk(2, dim=-1)
            cubes = (re.square() + im.square()).pow(1.5)
        else:
            cubes = x.abs().pow(3)
        total = total + cubes.sum(-1).mean()
    return weight * total


def check_positive_weight(config: Any) -> None:
    """A regulariser of weight 0 would do nothing: say so (shared by the weighted ones)."""
    if not config.loss.reg_weight > 0:
        raise ConfigError(
            f"loss.reg_weight: is {config.loss.reg_weight:g}, so "
            f"loss.regularizer={config.loss.regularizer} would do nothing; set a positive weight"
        )


@REGULARIZERS.register("n3")
class N3Regularizer:
    """``reg_weight`` times the N3 norm of the positives' embeddings (anchor, relation,
    true entity) of each step, a mean over the batch; complex rows by their moduli."""

    #: Whether its gradient reaches every entity row (then updates cannot be row-wise).
    touches_every_row: ClassVar[bool] = False
    options: ClassVar[dict[str, Option]] = {
        "reg_weight": Option(0.0, "weight of the regulariser", low=0),
    }

    def __init__(self, reg_weight: float = 0.0) -> None:
        self.weight = float(reg_weight)
        self.share = 1.0

    check_config = staticmethod(check_positive_weight)

    def prepare(self, *, share: float, dtype: torch.dtype, device: torch.device) -> None:
        """``share``: the part of the batch this process trains (its terms add up)."""
        self.share = share

    def __call__(self, model: Any, anchor: Tensor, relation: Tensor, true: Tensor) -> Tensor:
        """The penalty of the rows a step trains (each ``[b, ..., width]``: one row per
        positive, viewed as ``[b, width]``)."""
        rows = [x if x.dim() == 2 else x.reshape(x.shape[0], -1) for x in (anchor, relation, true)]
        complex_parts = model.decoder.complex_entities
        return self.share * n3_regularizer(*rows, weight=self.weight, complex_parts=complex_parts)
