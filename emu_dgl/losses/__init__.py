"""Losses of score blocks and regularisers: one component per file (:mod:`emu_dgl.registry`).

Losses (``loss.name``): ``softmax``, ``self_adversarial``, ``margin`` (pairwise, over a
positive and its sampled negatives) and ``1vsall`` (every entity scored). With
``emu.enabled`` the loss is wrapped in :class:`EMULoss`, whose arithmetic, like every
loss of a training step, lives in :class:`~emu_dgl.losses.base.BlockLoss`.

Regularisers (``loss.regularizer``): ``none``, ``n3`` (of the embeddings a step scores)
and ``l3_table`` (of the whole tables, the published base arms).
"""

from __future__ import annotations

from emu_dgl.losses.base import BlockLoss, PairwiseLoss, logits, pairwise_from_scores
from emu_dgl.losses.emu import EMULoss, emu_target_weights
from emu_dgl.losses.l3_table import L3TableRegularizer, l3_table_regularizer, whole_table_l3
from emu_dgl.losses.margin import MarginRankingLoss
from emu_dgl.losses.n3 import N3Regularizer, n3_regularizer
from emu_dgl.losses.no_regularizer import NoRegularizer
from emu_dgl.losses.one_vs_all import OneVsAllLoss
from emu_dgl.losses.self_adversarial import SelfAdversarialLoss
from emu_dgl.losses.softmax import SoftmaxLoss
from emu_dgl.registry import LOSSES, REGULARIZERS

__all__ = [
    "LOSSES",
    "REGULARIZERS",
    "BlockLoss",
    "EMULoss",
    "L3TableRegularizer",
    "MarginRankingLoss",
    "N3Regularizer",
    "NoRegularizer",
    "OneVsAllLoss",
    "PairwiseLoss",
    "SelfAdversarialLoss",
    "SoftmaxLoss",
    "emu_target_weights",
    "l3_table_regularizer",
    "logits",
    "n3_regularizer",
    "pairwise_from_scores",
    "whole_table_l3",
]
