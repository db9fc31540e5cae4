"""A graph encoder: one round of mean aggregation over the training graph."""

import dgl.function as fn
from emu_dgl.encoders import Encoder
from torch import nn


class MeanNeighbours(Encoder):
    """vector(v) = W_own x_v + W_nb mean(x_u over the edges u -> v): one layer, relation-blind."""

    def __init__(self, *, in_width: int, out_width: int, num_relations: int):
        super().__init__(in_width=in_width, out_width=out_width, num_relations=num_relations)
        self.own = nn.Linear(in_width, out_width)
        self.neighbours = nn.Linear(in_width, out_width, bias=False)

    @property
    def num_layers(self) -> int:
        return 1

    def forward(self, blocks, x):
        block = blocks[0]
        with block.local_scope():
            block.srcdata["x"] = x
            block.update_all(fn.copy_u("x", "m"), fn.mean("m", "mean"))
            own = self.own(x[: block.num_dst_nodes()])
            return own + self.neighbours(block.dstdata["mean"])
