"""Filtered rank metrics."""

from emu_dgl.evaluation.ranking import (
    FilteredEvaluator,
    metrics_from_ranks,
    per_relation_metrics,
    realistic_ranks,
)

__all__ = ["FilteredEvaluator", "metrics_from_ranks", "per_relation_metrics", "realistic_ranks"]
