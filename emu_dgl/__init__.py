"""emu-dgl: knowledge-graph embeddings with structure-aware and EMU negatives, on DGL.

    from emu_dgl import load_dataset, KnowledgeGraph
    kg = load_dataset("wn18rr")
    g = kg.to_dgl()      # DGL heterograph: node type 'entity', one edge type per relation

The public names are imported on first use (PEP 562), so ``import emu_dgl`` and
``emu-dgl --help`` do not pay for torch, DGL and pandas.

A plain ``import dgl`` works in any order: the PyPI wheel of DGL 2.1.0 does not import
next to a current torch as shipped, and :mod:`emu_dgl._dgl` holds the fixes it needs. The
package installs a start-up hook (``emu_dgl_dgl_fix.pth``, see ``setup.py``) that applies
them when ``dgl`` is first imported, and ``import emu_dgl`` applies them too (without
importing DGL yet). ``emu_dgl.dgl`` (``import emu_dgl.dgl``) is that DGL module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emu_dgl import _dgl  # noqa: F401  (cheap: makes `import dgl` work, imports no DGL)

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
    "dgl": "emu_dgl._dgl",  # also a module of its own: import emu_dgl.dgl
    "load_run": "emu_dgl.training.trainer",
}

__all__ = [
    "DECODERS",
    "SAMPLERS",
    "EMUMutation",
    "KGEModel",
    "KnowledgeGraph",
    "MixupMutation",
    "build_sampler",
    "dgl",
    "load_dataset",
    "load_run",
    "train",
]

if TYPE_CHECKING:
    import dgl

    from emu_dgl.data import KnowledgeGraph, load_dataset
    from emu_dgl.models import DECODERS, EMUMutation, KGEModel, MixupMutation
    from emu_dgl.sampling import SAMPLERS, build_sampler
    from emu_dgl.training.trainer import load_run


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
    """``emu-dgl train`` from Python: a config file (default: the packaged quickstart,
    ``emu_dgl.config.QUICKSTART``, as for the command) plus ``section__key=value``
    overrides; returns the final metrics (also in ``<out>/metrics.json``).

    ``train(QUICKSTART, out="runs/q", train__max_steps=500)``; ``arm`` picks a named arm
    of the config file (e.g. ``"sans-base"``); without ``out`` the run folder follows
    the config's ``output.dir``. :func:`load_run` opens the run afterwards.
    """
    from emu_dgl.config import QUICKSTART, load_config
    from emu_dgl.training.trainer import Trainer, run_directory

    sets = [f"{key.replace('__', '.')}={value}" for key, value in overrides.items()]
    cfg = load_config(config if config is not None else QUICKSTART, sets, arm=arm)  # type: ignore[arg-type]
    return Trainer(cfg, run_directory(cfg, out)).fit()
