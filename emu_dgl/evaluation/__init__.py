"""Filtered rank metrics."""

from emu_dgl.evaluation.given import evaluate_given, given_rank_table
from emu_dgl.evaluation.ranking import (
    FilteredEvaluator,
    adjusted_mean_rank_index,
    describe_protocol,
    metrics_from_ranks,
    per_relation_metrics,
    rank_table,
    realistic_ranks,
)

__all__ = [
    "FilteredEvaluator",
    "adjusted_mean_rank_index",
    "describe_protocol",
    "evaluate_given",
    "given_rank_table",
    "metrics_from_ranks",
    "per_relation_metrics",
    "rank_table",
    "realistic_ranks",
]
