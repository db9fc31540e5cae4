"""Filtered rank metrics."""

from emu_dgl.evaluation.ranking import (
    FilteredEvaluator,
    describe_protocol,
    metrics_from_ranks,
    per_relation_metrics,
    realistic_ranks,
)

__all__ = [
    "FilteredEvaluator",
    "describe_protocol",
    "metrics_from_ranks",
    "per_relation_metrics",
    "realistic_ranks",
]
