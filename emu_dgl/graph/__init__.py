"""Graph side of emu-dgl: the training graph and its structure-aware neighbourhoods."""

from __future__ import annotations

from emu_dgl.graph.neighbourhood import (
    CACHE_FORMAT_VERSION,
    WALK_MODES,
    Neighbourhood,
    build_neighbourhood,
    default_cache_dir,
    exact_khop,
    neighbourhood_cache_key,
    random_walk_neighbourhood,
    training_graph,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "WALK_MODES",
    "Neighbourhood",
    "build_neighbourhood",
    "default_cache_dir",
    "exact_khop",
    "neighbourhood_cache_key",
    "random_walk_neighbourhood",
    "training_graph",
]
