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
    "load_run": "emu_dgl.training.results",
    "RunResult": "emu_dgl.training.results",
    "train": "emu_dgl.training.start",
}

__all__ = [
    "DECODERS",
    "SAMPLERS",
    "EMUMutation",
    "KGEModel",
    "KnowledgeGraph",
    "MixupMutation",
    "RunResult",
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
    from emu_dgl.training.results import RunResult, load_run
    from emu_dgl.training.start import train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'emu_dgl' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
