"""Optimizers, one component per file (``train.optimizer``; see :mod:`emu_dgl.training.sparse`
for the dense and row updates they share)."""

from __future__ import annotations

from emu_dgl.registry import OPTIMIZERS
from emu_dgl.training.optimizers.adagrad import RowAdagrad
from emu_dgl.training.optimizers.adam import RowAdam
from emu_dgl.training.optimizers.rowwise_adagrad import RowwiseAdagrad

__all__ = ["OPTIMIZERS", "RowAdagrad", "RowAdam", "RowwiseAdagrad"]
