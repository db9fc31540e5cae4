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

Writing an encoder: subclass :class:`Encoder`, take ``in_width``, ``out_width`` and
``num_relations`` as keyword arguments, declare your own settings as ``options`` (each
``<option>`` becomes the config key ``model.encoder_<option>``, see
:mod:`emu_dgl.registry`) and take them as keyword arguments of the same names, and register
it: ``@ENCODERS.register("name")`` (or announce it through the entry-point group
``emu_dgl.encoders``). Every encoder also has the options of :class:`Encoder` itself: the
table's width (``model.encoder_width``) and how the training step runs it
(``model.encoder_mode``, ``model.encoder_fanouts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from torch import Tensor, nn

from emu_dgl.config.values import int_list
from emu_dgl.errors import ConfigError, shown
from emu_dgl.registry import ENCODERS, LOSSES, Option

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = [
    "DROPOUT",
    "ENCODERS",
    "LAYERS",
    "BaseEncoder",
    "Encoder",
    "check_layers",
    "check_positive",
]

#: Options that several encoders declare: a config key means one thing whichever encoder
#: reads it, so they share one declaration (empty: each encoder's own default).
LAYERS = Option(
    None,
    "message-passing layers (empty: the encoder's default, rgcn 2, compgcn 1)",
    type=int | None,
    low=1,
    note="must be a positive integer",
)
DROPOUT = Option(
    None,
    "dropout after each layer (empty: the encoder's default, rgcn 0.2, compgcn 0.1)",
    type=float | None,
    low=0,
    high=1,
    high_open=True,
)


class BaseEncoder(nn.Module):
    """What every encoder is: entity table rows (and the training graph) -> the entity
    vectors the decoder scores. Subclassed by :class:`Encoder` (graph encoders) and
    :class:`~emu_dgl.encoders.table.TableEncoder`.

    Args (keyword-only, given by the model builder):
        in_width: width of the entity table's rows (``model.encoder_width``; by default the
            decoder's entity width).
        out_width: width of the vectors, the decoder's entity width.
        num_relations: message types of the graph, ``2R`` (each relation and its inverse).
    """

    #: False only for the table: its vectors are the table's rows (no graph, no parameters).
    uses_graph: ClassVar[bool] = True
    #: Whether the encoder runs where the entity table is split between processes (a
    #: sharded run, :mod:`emu_dgl.distributed`): only an encoder that reads each entity's
    #: own row alone can; message passing reads the rows of neighbours another process holds.
    runs_sharded: ClassVar[bool] = False

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


class Encoder(BaseEncoder):
    """A graph encoder: message passing over the training graph (see the module doc).

    Every graph encoder has the options below (the table's width and how the training step
    runs it); a subclass declares its own next to them.
    """

    options: ClassVar[dict[str, Option]] = {
        "width": Option(
            0,
            "width of the entity table and the hidden layers (0: the decoder's entity width)",
            low=0,
            note="must be >= 0 (0: the decoder's entity width)",
        ),
        "mode": Option(
            "full",
            "full: the encoder passes over the whole training graph every step | sampled: over "
            "DGL's neighbour samples around the step's entities",
            type=Literal["full", "sampled"],
        ),
        "fanouts": Option(
            [],
            "sampled: neighbours per node for each layer, bottom first, -1 = all (empty: all, "
            "every layer)",
            type=list[int],
        ),
    }

    @classmethod
    def from_options(
        cls, *, out_width: int, num_relations: int, width: int = 0, **options: Any
    ) -> Encoder:
        """The encoder of a config's ``model`` section: a table ``width`` wide (0: the
        decoder's entity width ``out_width``) and the encoder's own options (an empty one,
        ``None``, leaves the class's default). ``mode`` and ``fanouts`` say how the training
        step runs it (read there, not here)."""
        options.pop("mode", None)
        options.pop("fanouts", None)
        in_width = options.pop("in_width", None) or width or out_width
        own = {k: v for k, v in options.items() if v is not None}  # empty: the class's default
        return cls(in_width=in_width, out_width=out_width, num_relations=num_relations, **own)

    @classmethod
    def check_config(cls, config: Any) -> None:
        """The rules between the encoder's keys and the rest of the config (one line each);
        stores ``model.encoder_fanouts`` as a list of integers."""
        m = config.model
        fanouts = int_list(m.encoder_fanouts, "model.encoder_fanouts")
        if fanouts is None or not all(f > 0 or f == -1 for f in fanouts):
            raise ConfigError(
                "model.encoder_fanouts: expected a list of positive numbers of neighbours or "
                f"-1 (all), one per layer, such as [10, 10], got {shown(m.encoder_fanouts)}"
            )
        m.encoder_fanouts = fanouts
        if fanouts and m.encoder_mode != "sampled":
            raise ConfigError(
                "model.encoder_fanouts is read in model.encoder_mode=sampled only; set that "
                "mode or remove the fanouts"
            )
        loss = LOSSES.lookup(config.loss.name)
        if m.encoder_mode == "sampled" and getattr(loss, "scores_all_entities", False):
            raise ConfigError(
                f"model.encoder_mode=sampled encodes the step's entities only, but "
                f"loss.name={config.loss.name} scores every entity; use model.encoder_mode=full"
            )


def check_positive(key: str, value: int) -> None:
    """A one-line :class:`ConfigError` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def check_layers(layers: int, dropout: float) -> None:
    """The options every stack of message-passing layers shares, one line each when wrong:
    ``model.encoder_layers`` a positive integer, ``model.encoder_dropout`` in ``[0, 1)``."""
    check_positive("model.encoder_layers", layers)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.encoder_dropout must be in [0, 1), got {dropout}")
