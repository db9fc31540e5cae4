"""The embedding table as an encoder: entity ``i``'s vector is row ``i`` of the table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from emu_dgl.encoders.base import ENCODERS, BaseEncoder
from emu_dgl.errors import ConfigError

if TYPE_CHECKING:
    from dgl import DGLGraph


@ENCODERS.register("table")
class TableEncoder(BaseEncoder):
    """The identity: no graph, no parameters (every model before encoders, bit for bit).

    The training step never calls it: it gathers the rows of the table itself and hands
    their gradients to the optimizer row by row (``train.sparse``). It has no options: the
    graph encoders' keys (``model.encoder_width``, ``_mode``, ``_fanouts``) are refused with it.
    """

    uses_graph: ClassVar[bool] = False
    runs_sharded: ClassVar[bool] = True  # each entity's vector is its own row

    def __init__(
        self, *, out_width: int, in_width: int | None = None, num_relations: int = 0
    ) -> None:
        in_width = out_width if in_width is None else in_width
        super().__init__(in_width=in_width, out_width=out_width, num_relations=num_relations)
        if in_width != out_width:
            raise ConfigError(
                f"model.encoder_width ({in_width}) must be the decoder's entity width "
                f"({out_width}) with model.encoder=table; leave it at 0"
            )

    @classmethod
    def check_config(cls, config: Any) -> None:
        """A graph encoder's key set with the table: one line naming it (never ignored)."""
        m = config.model
        for key, unset, why in (
            ("width", (0, None), "has rows of the decoder's entity width"),
            ("mode", ("full",), "reads no graph"),
            ("fanouts", ([], None, ""), "reads no graph"),
        ):
            value = getattr(m, f"encoder_{key}", None)
            if value not in unset:
                raise ConfigError(
                    f"model.encoder_{key}={value} is a graph encoder's key, but "
                    f"model.encoder=table {why}; remove it or use a graph encoder (rgcn, compgcn)"
                )

    def forward(self, blocks: Sequence[DGLGraph], x: Tensor) -> Tensor:
        return x
