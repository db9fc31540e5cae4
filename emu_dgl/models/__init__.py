"""Decoders (one small class each), :class:`KGEModel`, which owns the embeddings, and the
EMU mutation that sits between the embedding lookup and the decoder."""

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
from emu_dgl.models.emu_mutation import EMUMutation
from emu_dgl.models.hake import HAKE
from emu_dgl.models.label_smoothing import LabelSmoothingOnly
from emu_dgl.models.mixup import MixupMutation
from emu_dgl.models.mutation import MUTATIONS, Mutation, build_mutation
from emu_dgl.models.protate import pRotatE
from emu_dgl.models.rotate import RotatE
from emu_dgl.models.transd import TransD
from emu_dgl.models.transe import TransE

__all__ = [
    "DECODERS",
    "MUTATIONS",
    "EMUMutation",
    "MixupMutation",
    "Mutation",
    "build_mutation",
    "SLICE_BUDGET_BYTES",
    "ComplEx",
    "Decoder",
    "DistMult",
    "HAKE",
    "LabelSmoothingOnly",
    "KGEModel",
    "NegativeScores",
    "RotatE",
    "SeparableDecoder",
    "TransD",
    "TransE",
    "pRotatE",
]
