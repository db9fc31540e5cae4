"""Encoders: what maps entities (and the training graph) to the vectors a decoder scores.

See :mod:`emu_dgl.encoders.base` for the contract. Registered: ``table`` (the default),
``rgcn`` (R-GCN with ``dgl.nn.RelGraphConv``), ``compgcn`` (CompGCN)."""

from __future__ import annotations

from emu_dgl.encoders.base import ENCODERS, Encoder
from emu_dgl.encoders.compgcn import CompGCNEncoder
from emu_dgl.encoders.rgcn import RGCNEncoder
from emu_dgl.encoders.table import TableEncoder

__all__ = ["ENCODERS", "CompGCNEncoder", "Encoder", "RGCNEncoder", "TableEncoder"]
