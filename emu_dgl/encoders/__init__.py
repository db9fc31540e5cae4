"""Encoders: what maps entities (and the training graph) to the vectors a decoder scores.

See :mod:`emu_dgl.encoders.base` for the contract. Registered in
:data:`~emu_dgl.registry.ENCODERS` (``model.encoder``): ``table`` (the default), ``rgcn``
(R-GCN with ``dgl.nn.RelGraphConv``), ``compgcn`` (CompGCN); a plugin adds its own through
the entry-point group ``emu_dgl.encoders``."""

from __future__ import annotations

from emu_dgl.encoders.base import ENCODERS, BaseEncoder, Encoder
from emu_dgl.encoders.compgcn import CompGCNEncoder
from emu_dgl.encoders.rgcn import RGCNEncoder
from emu_dgl.encoders.table import TableEncoder

__all__ = ["ENCODERS", "BaseEncoder", "CompGCNEncoder", "Encoder", "RGCNEncoder", "TableEncoder"]
