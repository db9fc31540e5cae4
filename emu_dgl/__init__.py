"""emu-dgl: knowledge-graph embeddings with structure-aware and EMU negatives, on DGL.

    from emu_dgl import load_dataset, KnowledgeGraph
    kg = load_dataset("wn18rr")
    g = kg.to_dgl()      # DGL heterograph: node type 'entity', one edge type per relation

The public names are imported on first use (PEP 562), so ``import emu_dgl`` and
``emu-dgl --help`` do not pay for torch, DGL and pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "KnowledgeGraph": "emu_dgl.data",
    "load_dataset": "emu_dgl.data",
    "DECODERS": "emu_dgl.models",
    "KGEModel": "emu_dgl.models",
    "SAMPLERS": "emu_dgl.sampling",
    "EMUMutation": "emu_dgl.models",
    "MixupMutation": "emu_dgl.models",
    "build_sampler": "emu_dgl.sampling",
}

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

if TYPE_CHECKING:
    from emu_dgl.data import KnowledgeGraph, load_dataset
    from emu_dgl.models import DECODERS, EMUMutation, KGEModel, MixupMutation
    from emu_dgl.sampling import SAMPLERS, build_sampler


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'emu_dgl' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
