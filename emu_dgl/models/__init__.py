"""Decoders (one small class each) and :class:`KGEModel`, which owns the embeddings."""

from __future__ import annotations

from emu_dgl.models.base import (
    DECODERS,
    SLICE_BUDGET_BYTES,
    Decoder,
    KGEModel,
    NegativeScores,
    SeparableDecoder,
)
from emu_dgl.models.complex import ComplEx
from emu_dgl.models.distmult import DistMult
from emu_dgl.models.hake import HAKE
from emu_dgl.models.rotate import RotatE, pRotatE
from emu_dgl.models.transd import TransD
from emu_dgl.models.transe import TransE

__all__ = [
    "DECODERS",
    "SLICE_BUDGET_BYTES",
    "ComplEx",
    "Decoder",
    "DistMult",
    "HAKE",
    "KGEModel",
    "NegativeScores",
    "RotatE",
    "SeparableDecoder",
    "TransD",
    "TransE",
    "pRotatE",
]
