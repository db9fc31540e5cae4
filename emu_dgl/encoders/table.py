"""The embedding table as an encoder: entity ``i``'s vector is row ``i`` of the table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from emu_dgl.encoders.base import ENCODERS, Encoder
from emu_dgl.errors import ConfigError

if TYPE_CHECKING:
    from dgl import DGLGraph


@ENCODERS.register("table")
class TableEncoder(Encoder):
    """The identity: no graph, no parameters (every model before encoders, bit for bit).

    The training step never calls it: it gathers the rows of the table itself and hands
    their gradients to the optimizer row by row (``train.sparse``).
    """

    uses_graph: ClassVar[bool] = False

    def __init__(self, *, in_width: int, out_width: int, num_relations: int = 0) -> None:
        super().__init__(in_width=in_width, out_width=out_width, num_relations=num_relations)
        if in_width != out_width:
            raise ConfigError(
                f"model.encoder_width ({in_width}) must be the decoder's entity width "
                f"({out_width}) with model.encoder=table; leave it at 0"
            )

    def forward(self, blocks: Sequence[DGLGraph], x: Tensor) -> Tensor:
        return x
