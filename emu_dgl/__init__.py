"""emu-dgl: knowledge-graph embeddings with structure-aware and EMU negatives, on DGL.

    from emu_dgl import load_dataset, KnowledgeGraph
    kg = load_dataset("wn18rr")
    g = kg.to_dgl()      # DGL heterograph: node type 'entity', one edge type per relation
"""

from __future__ import annotations

from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.models import DECODERS, KGEModel
from emu_dgl.sampling import SAMPLERS, EMUMutation, MixupMutation, build_sampler

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "SAMPLERS",
    "EMUMutation",
    "KGEModel",
    "KnowledgeGraph",
    "MixupMutation",
    "build_sampler",
    "load_dataset",
    "train",
]


def train(
    config: object = None, *, out: str | None = None, arm: str | None = None, **overrides: object
) -> dict:
    """Train from a config path (or the defaults) plus ``section__key=value`` overrides.

    ``train("configs/quickstart.yaml", train__max_steps=500)`` returns the final metrics;
    ``arm`` picks a named arm of the config file (e.g. ``"sans-base"``).
    """
    from emu_dgl.config import load_config
    from emu_dgl.training.trainer import Trainer, run_directory

    sets = [f"{key.replace('__', '.')}={value}" for key, value in overrides.items()]
    cfg = load_config(config, sets, arm=arm)  # type: ignore[arg-type]
    return Trainer(cfg, run_directory(cfg, out)).fit()
