"""Knowledge graphs: loading, the dataset catalogue, the synthetic graph, statistics.

Usage::

    from emu_dgl.data import KnowledgeGraph, load_dataset

    kg = load_dataset("fb15k-237")  # a catalogue name, "synthetic", or a folder
    g = kg.to_dgl()  # DGL heterograph, one edge type per relation
    assert KnowledgeGraph.from_dgl(g).fingerprint == kg.fingerprint
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule; imported on first use so that the catalogue (``datasets
# list``) does not pull in torch through KnowledgeGraph
_LAZY = {
    "CATALOGUE": "catalogue",
    "CatalogueEntry": "catalogue",
    "archive_url": "catalogue",
    "canonical_dataset": "catalogue",
    "data_root": "catalogue",
    "download_dataset": "catalogue",
    "has_splits": "catalogue",
    "load_dataset": "catalogue",
    "load_directory": "catalogue",
    "cache_root": "catalogue",
    "read_split": "io",
    "KnowledgeGraph": "knowledge_graph",
    "dataset_stats": "stats",
    "generate_synthetic": "synthetic",
}

if TYPE_CHECKING:
    from emu_dgl.data.catalogue import (
        CATALOGUE,
        CatalogueEntry,
        archive_url,
        cache_root,
        canonical_dataset,
        data_root,
        download_dataset,
        has_splits,
        load_dataset,
        load_directory,
    )
    from emu_dgl.data.io import read_split
    from emu_dgl.data.knowledge_graph import KnowledgeGraph
    from emu_dgl.data.stats import dataset_stats
    from emu_dgl.data.synthetic import generate_synthetic


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"emu_dgl.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emu_dgl.data' has no attribute '{name}'")


__all__ = [
    "CATALOGUE",
    "CatalogueEntry",
    "KnowledgeGraph",
    "archive_url",
    "cache_root",
    "canonical_dataset",
    "data_root",
    "dataset_stats",
    "download_dataset",
    "generate_synthetic",
    "has_splits",
    "load_dataset",
    "load_directory",
    "read_split",
]
