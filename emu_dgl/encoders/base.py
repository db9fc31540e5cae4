r"""What an encoder is: the part of a model that maps entities to the vectors a decoder scores.

A model is an encoder followed by a decoder (:class:`~emu_dgl.models.KGEModel`). The model
owns an entity table ``x[E, in_width]`` (and the relation table the decoder reads); the
encoder maps the table, and optionally the training graph, to entity vectors
``[E, out_width]`` with ``out_width`` the decoder's entity width. The decoder, EMU's
mutation, every sampler and loss see those vectors only, so any encoder trains with any of
them.

* The **table** (:class:`~emu_dgl.encoders.table.TableEncoder`, the default) is the identity:
  the vectors are the table's rows. It has no parameters and reads no graph, so the step
  gathers rows straight from the table and updates them row-wise, as it always has.
* A **graph encoder** (R-GCN, CompGCN, a plugin's) runs message passing over the training
  graph: ``forward(blocks, x) -> vectors``.

The graph an encoder sees (:func:`~emu_dgl.encoders.graph.message_graph`): one node per
entity, every training triple ``(h, r, t)`` as two edges, ``h -> t`` of type ``r`` and
``t -> h`` of type ``r + R`` (its inverse), so ``num_relations`` message types ``= 2R``.
Each edge carries ``edata[dgl.ETYPE]`` (its type) and ``edata["norm"]`` (``[E, 1]``: one over
the in-degree of its destination in that graph, so a node averages its messages).

``blocks`` is a list of ``layers`` DGL graphs, one per layer, bottom first: the whole
training graph ``layers`` times (``model.encoder_mode: full``), or the message-flow graphs
(``dgl.to_block``) that DGL's neighbour sampler draws around the entities of a training step
(``sampled``). ``x`` holds the table rows of ``blocks[0]``'s source nodes; the result holds
the vectors of ``blocks[-1]``'s destination nodes. A layer reads its destination nodes' own
rows as the first ``block.num_dst_nodes()`` rows of its input (DGL's block convention, true
of the whole graph as well).

Writing an encoder: subclass :class:`Encoder`, take the widths and ``num_relations`` plus
your options as keyword arguments with types and defaults (``model.encoder_<option>`` in a
config sets ``<option>``), and register it: ``@ENCODERS.register("name")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

from emu_dgl.errors import ConfigError
from emu_dgl.registry import Registry

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = ["ENCODERS", "Encoder", "check_positive"]


ENCODERS: Registry[Encoder] = Registry("encoder")


class Encoder(nn.Module):
    """Entity table rows (and the training graph) -> the entity vectors the decoder scores.

    Args (keyword-only, given by the model builder):
        in_width: width of the entity table's rows (``model.encoder_width``; by default the
            decoder's entity width).
        out_width: width of the vectors, the decoder's entity width.
        num_relations: message types of the graph, ``2R`` (each relation and its inverse).
    """

    #: False only for the table: its vectors are the table's rows (no graph, no parameters).
    uses_graph: ClassVar[bool] = True

    def __init__(self, *, in_width: int, out_width: int, num_relations: int) -> None:
        super().__init__()
        check_positive("model.encoder_width", in_width)
        self.in_width, self.out_width = int(in_width), int(out_width)
        self.num_relations = int(num_relations)

    @property
    def num_layers(self) -> int:
        """Message-passing layers: how many hops of the graph a vector depends on."""
        return 0

    def forward(self, blocks: Sequence[DGLGraph], x: Tensor) -> Tensor:
        """``x[src nodes of blocks[0], in_width] -> [dst nodes of blocks[-1], out_width]``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_width={self.in_width}, out_width={self.out_width}"


def check_positive(key: str, value: int) -> None:
    """A one-line :class:`ConfigError` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
