r"""CompGCN (Vashishth et al., 2020), https://arxiv.org/abs/1911.03082, with DGL message passing.

Every relation type ``r`` (each relation and its inverse, ``2R``) has a vector ``z_r``. A
layer composes each in-edge's source vector with its relation's vector and sums the
compositions per direction:

.. math::
    h_v = \tfrac13 \Big( W_F \sum_{(u, r, v),\, r < R} n_e\, \phi(x_u, z_r)
        + W_I \sum_{(u, r, v),\, r \ge R} n_e\, \phi(x_u, z_r)
        + W_S\, \phi(x_v, z_{\text{self}}) \Big) + b,
    \qquad z_r \leftarrow W_{\text{rel}}\, z_r

with ``n_e`` one over the in-degree of ``v``, and the composition ``phi``: ``sub``
(``x - z``, TransE-like), ``mult`` (``x * z``, DistMult-like) or ``corr`` (circular
correlation, HolE-like: ``(x * z)_k = sum_i x_i z_{(i + k) mod d}``, computed by FFT).
Because ``W_F`` and ``W_I`` are linear they are applied after the sums, once per node
rather than once per edge. Tanh and dropout follow every layer but the last (dropout
only). The decoder keeps its own relation table: the ``z_r`` shape the messages only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn

from emu_dgl.encoders.base import DROPOUT, ENCODERS, LAYERS, Encoder, check_layers
from emu_dgl.encoders.graph import ETYPE, NORM
from emu_dgl.errors import ConfigError
from emu_dgl.registry import Option

if TYPE_CHECKING:
    from dgl import DGLGraph

__all__ = ["COMPOSITIONS", "CompGCNEncoder", "CompGCNLayer", "circular_correlation"]


def circular_correlation(x: Tensor, z: Tensor) -> Tensor:
    """``c_k = sum_i x_i z_{(i + k) mod d}`` over the last dim, as
    ``irfft(conj(rfft(x)) * rfft(z))`` (``O(d log d)``)."""
    width = x.shape[-1]
    spectrum = torch.conj(torch.fft.rfft(x, dim=-1)) * torch.fft.rfft(z, dim=-1)
    return torch.fft.irfft(spectrum, n=width, dim=-1)


#: ``model.encoder_composition`` -> ``phi(x, z)``.
COMPOSITIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "sub": torch.sub,
    "mult": torch.mul,
    "corr": circular_correlation,
}


class CompGCNLayer(nn.Module):
    """One CompGCN layer: ``(graph, x, z) -> (h, W_rel z)`` (see the module doc)."""

    def __init__(
        self,
        in_width: int,
        out_width: int,
        num_relations: int,
        *,
        composition: str,
        dropout: float,
        activation: bool,
    ) -> None:
        super().__init__()
        self.compose = COMPOSITIONS[composition]
        self.forward_relations = num_relations // 2  # types below this follow the relation
        self.w_forward = nn.Linear(in_width, out_width, bias=False)
        self.w_inverse = nn.Linear(in_width, out_width, bias=False)
        self.w_self = nn.Linear(in_width, out_width, bias=False)
        self.w_relation = nn.Linear(in_width, out_width, bias=False)
        self.self_relation = nn.Parameter(torch.empty(1, in_width))
        self.bias = nn.Parameter(torch.zeros(out_width))
        self.activation = torch.tanh if activation else None
        self.dropout = nn.Dropout(dropout)
        for linear in (self.w_forward, self.w_inverse, self.w_self, self.w_relation):
            nn.init.xavier_uniform_(linear.weight)
        nn.init.xavier_uniform_(self.self_relation)

    def forward(self, graph: DGLGraph, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        from emu_dgl._dgl import dgl

        etype, norm = graph.edata[ETYPE], graph.edata[NORM].to(x.dtype)
        # phi(x_u, z_r) * n_e for every edge: [E, in]
        messages = self.compose(dgl.ops.copy_u(graph, x), z.index_select(0, etype)) * norm
        along = (etype < self.forward_relations).unsqueeze(1).to(messages.dtype)
        summed_forward = dgl.ops.copy_e_sum(graph, messages * along)
        summed_inverse = dgl.ops.copy_e_sum(graph, messages - messages * along)
        own = self.compose(x[: graph.num_dst_nodes()], self.self_relation)
        h = (
            self.w_forward(summed_forward) + self.w_inverse(summed_inverse) + self.w_self(own)
        ) / 3 + self.bias
        if self.activation is not None:
            h = self.activation(h)
        return self.dropout(h), self.w_relation(z)


@ENCODERS.register("compgcn")
class CompGCNEncoder(Encoder):
    """CompGCN over the training graph: ``layers`` :class:`CompGCNLayer` layers, widths
    ``in_width -> ... -> in_width -> out_width``, relation vectors of its own (``2R`` rows).

    Args:
        layers: message-passing layers (hops).
        composition: ``sub``, ``mult`` or ``corr``.
        dropout: after every layer.
    """

    options: ClassVar[dict[str, Option]] = {
        "layers": LAYERS,
        "composition": Option(
            "mult",
            "how a neighbour's vector meets its relation's: sub | mult | corr",
            type=Literal["sub", "mult", "corr"],
        ),
        "dropout": DROPOUT,
    }

    def __init__(
        self,
        *,
        in_width: int,
        out_width: int,
        num_relations: int,
        layers: int = 1,
        composition: Literal["sub", "mult", "corr"] = "mult",
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_width=in_width, out_width=out_width, num_relations=num_relations)
        check_layers(layers, dropout)
        if composition not in COMPOSITIONS:
            raise ConfigError(
                f"model.encoder_composition: unknown value {composition!r}; "
                f"valid: {', '.join(COMPOSITIONS)}"
            )
        self.composition = composition
        self.relation = nn.Parameter(torch.empty(num_relations, in_width))
        nn.init.xavier_uniform_(self.relation)
        widths = [in_width] * layers + [out_width]
        self.layers = nn.ModuleList(
            CompGCNLayer(
                widths[i],
                widths[i + 1],
                num_relations,
                composition=composition,
                dropout=dropout,
                activation=i < layers - 1,
            )
            for i in range(layers)
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, blocks: Sequence[DGLGraph], x: Tensor) -> Tensor:
        z = self.relation
        for layer, block in zip(self.layers, blocks, strict=True):
            x, z = layer(block, x, z)
        return x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, composition={self.composition}"
