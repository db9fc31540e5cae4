r"""R-GCN (Schlichtkrull et al., 2018), https://arxiv.org/abs/1703.06103, with ``dgl.nn.RelGraphConv``.

Layer ``l`` maps the vectors ``x`` of the nodes to

.. math::
    h_v = \sigma\Big(W_0 x_v + b + \sum_{(u, r, v)} \tfrac{1}{|N(v)|} W_r x_u\Big)

over the in-edges of ``v`` (every relation and its inverse), with ``W_r`` shared through a
decomposition: ``basis`` (``W_r = sum_b a_rb V_b``, ``bases`` matrices ``V_b``) or ``bdd``
(block-diagonal ``W_r`` of ``bases`` blocks). ReLU and dropout follow every layer but the
last (which has dropout only), as in DGL's link-prediction example.

Basis decomposition is computed in an exact, cheaper order than ``RelGraphConv``'s own (the
same parameters, the same values up to rounding; checked against it in the tests):
``sum_e a_{r_e b} norm_e (x_{u_e} V_b)`` is ``x V_b`` once per node and basis, then one
weighted sum per edge (``dgl.ops.u_mul_e_sum``), where ``RelGraphConv`` forms every
``W_r`` and multiplies per edge (on a CPU its backward takes minutes on FB15k-237).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn

from emu_dgl.encoders.base import DROPOUT, ENCODERS, LAYERS, Encoder, check_layers
from emu_dgl.encoders.graph import ETYPE, NORM
from emu_dgl.errors import ConfigError
from emu_dgl.registry import Option

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = ["RGCNEncoder", "RelationalConv"]

#: Block width of the default block-diagonal decomposition (DGL's example: 5 x 5 blocks).
BLOCK = 5
#: Bases of the default basis decomposition.
BASES = 4


def _conv_class() -> type[nn.Module]:
    from dgl.nn import RelGraphConv

    return RelGraphConv


class RelationalConv(nn.Module):
    """One R-GCN layer: a ``dgl.nn.RelGraphConv`` (its parameters, initialisation, self
    loop, bias and dropout); with ``basis`` its messages are summed in the cheaper order of
    the module doc."""

    def __init__(
        self,
        in_width: int,
        out_width: int,
        num_relations: int,
        *,
        decomposition: str,
        bases: int,
        self_loop: bool,
        dropout: float,
        activation: bool,
    ) -> None:
        super().__init__()
        self.conv = _conv_class()(
            in_width,
            out_width,
            num_relations,
            regularizer=decomposition,
            num_bases=bases,
            self_loop=self_loop,
            dropout=dropout,
            activation=torch.relu if activation else None,
        )

    def forward(self, graph: DGLGraph, x: Tensor) -> Tensor:
        conv = self.conv
        from emu_dgl._dgl import dgl

        etype, norm = graph.edata[ETYPE], graph.edata[NORM].to(x.dtype)
        if conv.linear_r.regularizer != "basis":
            return conv(graph, x, etype, norm)
        linear = conv.linear_r
        # x V_b for every node and basis: [N, B, out]
        bases = linear.W.permute(1, 0, 2).reshape(x.shape[1], -1)  # [in, B * out]: one product
        per_basis = (x @ bases).view(x.shape[0], linear.num_bases, -1)
        # edge weights a_{r_e b} * norm_e: [E, B, 1]; messages summed per destination
        weights = (linear.coeff.index_select(0, etype) * norm).unsqueeze(2)
        h = dgl.ops.u_mul_e_sum(graph, per_basis, weights).sum(1)
        # RelGraphConv's own tail (no layer norm: not offered here)
        if conv.bias:
            h = h + conv.h_bias
        if conv.self_loop:
            h = h + x[: graph.num_dst_nodes()] @ conv.loop_weight
        if conv.activation:
            h = conv.activation(h)
        return conv.dropout(h)


@ENCODERS.register("rgcn")
class RGCNEncoder(Encoder):
    """R-GCN over the training graph: ``layers`` :class:`RelationalConv` layers, widths
    ``in_width -> ... -> in_width -> out_width``.

    Args:
        layers: message-passing layers (hops).
        decomposition: ``bdd`` (block-diagonal, DGL's example) or ``basis``.
        bases: blocks (``bdd``; must divide both widths) or bases (``basis``);
            0 picks blocks of about 5 x 5 (``bdd``) or 4 bases (``basis``).
        dropout: after every layer.
        self_loop: each node's own vector passes through ``W_0``.
    """

    options: ClassVar[dict[str, Option]] = {
        "layers": LAYERS,
        "decomposition": Option(
            "bdd",
            "bdd (block-diagonal weights) | basis (shared bases)",
            type=Literal["bdd", "basis"],
        ),
        "bases": Option(
            0,
            "blocks (bdd) or bases (basis); 0: blocks of about 5 x 5, 4 bases",
            low=0,
            note="must be >= 0 (0 = automatic)",
        ),
        "dropout": DROPOUT,
        "self_loop": Option(True, "a node's own vector passes through a weight of its own"),
    }

    def __init__(
        self,
        *,
        in_width: int,
        out_width: int,
        num_relations: int,
        layers: int = 2,
        decomposition: Literal["bdd", "basis"] = "bdd",
        bases: int = 0,
        dropout: float = 0.2,
        self_loop: bool = True,
    ) -> None:
        super().__init__(in_width=in_width, out_width=out_width, num_relations=num_relations)
        check_layers(layers, dropout)
        if decomposition not in ("bdd", "basis"):
            raise ConfigError(
                f"model.encoder_decomposition: unknown value {decomposition!r}; valid: bdd, basis"
            )
        bases = _bases(decomposition, bases, in_width, out_width, num_relations)
        widths = [in_width] * layers + [out_width]
        self.decomposition, self.bases, self.dropout = decomposition, bases, dropout
        self.layers = nn.ModuleList(
            RelationalConv(
                widths[i],
                widths[i + 1],
                num_relations,
                decomposition=decomposition,
                bases=bases,
                self_loop=self_loop,
                dropout=dropout,
                activation=i < layers - 1,
            )
            for i in range(layers)
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, blocks: Sequence[DGLGraph], x: Tensor) -> Tensor:
        for layer, block in zip(self.layers, blocks, strict=True):
            x = layer(block, x)
        return x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, decomposition={self.decomposition}, bases={self.bases}"


def _bases(decomposition: str, bases: int, in_width: int, out_width: int, relations: int) -> int:
    """The number of bases or blocks, checked (one line naming the fix)."""
    if bases < 0:
        raise ConfigError(f"model.encoder_bases must be >= 0 (0 = automatic), got {bases}")
    if decomposition == "basis":
        return bases or min(BASES, relations)
    width = math.gcd(in_width, out_width)
    if bases == 0:  # the divisor of both widths whose blocks are closest to 5 x 5
        divisors = [k for k in range(1, width + 1) if width % k == 0]
        return min(divisors, key=lambda k: (abs(width // k - BLOCK), -k))
    if in_width % bases or out_width % bases:
        raise ConfigError(
            f"model.encoder_bases={bases}: block-diagonal weights need it to divide the widths "
            f"({in_width} and {out_width}); e.g. model.encoder_bases={max(1, width // BLOCK)}"
        )
    return bases
