"""The one place that imports DGL; every other module does ``from emu_dgl._dgl import dgl``.

The newest DGL wheel on PyPI for Linux (2.1.0) does not import as shipped next to
a current PyTorch. Three things stand in the way, and all three are handled here:

1. ``import dgl`` imports ``dgl.graphbolt`` (via ``dgl.distributed``), which loads a
   compiled GraphBolt library that exists only for torch 2.0.0 ... 2.2.1 and raises
   otherwise. emu-dgl uses no GraphBolt (no distributed training, no GraphBolt data
   pipes), so we register a stand-in module under that name before DGL is imported.
   Touching any attribute of it raises an error that says why.
2. ``dgl.utils`` imports ``packaging.version`` and, when ``packaging`` is missing,
   falls back to ``setuptools.extern.packaging``, which setuptools >= 71 removed. We
   depend on ``packaging``; should it still be missing, we alias the setuptools
   name to whichever copy exists so the fallback resolves.
3. ``dgl.data`` imports pandas; pandas is a declared dependency of emu-dgl.

The core C++ library (graph structure, ``dgl.sampling.random_walk``, sparse ops)
works with any torch >= 2.1 through DLPack, which is all emu-dgl needs.

Importing this module only installs the fixes (cheap: no torch, no DGL); ``dgl`` itself
is imported on first use of the name (``from emu_dgl._dgl import dgl``). Two things import
this module before DGL, so a plain ``import dgl`` works in any order, in any process:
``import emu_dgl``, and the start-up hook the package installs (``emu_dgl_dgl_fix.pth`` at
the top of site-packages, see ``setup.py``: on the first ``import dgl`` it imports this
module first). A version pin could not do it: no pin of torchdata brings back the
GraphBolt library for a current torch (fix 1). ``emu_dgl.dgl`` is the same module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dgl  # at run time: imported on first use, see __getattr__ below

__all__ = ["GRAPHBOLT_STUB_MESSAGE", "dgl", "prepare"]

GRAPHBOLT_STUB_MESSAGE = (
    "dgl.graphbolt is disabled by emu-dgl: the PyPI wheel of DGL 2.1.0 ships GraphBolt "
    "only for torch <= 2.2.1 and emu-dgl does not need it"
)


def _install_graphbolt_stub() -> None:
    if "dgl.graphbolt" in sys.modules:
        return
    stub = types.ModuleType("dgl.graphbolt")
    stub.__doc__ = GRAPHBOLT_STUB_MESSAGE

    def __getattr__(name: str) -> object:
        # AttributeError (not ImportError) so that hasattr()/inspect keep working.
        raise AttributeError(f"{GRAPHBOLT_STUB_MESSAGE} (asked for dgl.graphbolt.{name})")

    stub.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules["dgl.graphbolt"] = stub


def _alias_setuptools_packaging() -> None:
    if importlib.util.find_spec("packaging") is not None:
        return  # dgl.utils takes the first branch of its try/except
    name = "setuptools.extern.packaging"
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except ImportError:
        try:
            vendored = importlib.import_module("setuptools._vendor.packaging")
        except ImportError as exc:  # pragma: no cover - environment without either copy
            raise ImportError("DGL needs the 'packaging' package: pip install packaging") from exc
        sys.modules[name] = vendored
        sys.modules[name + ".version"] = importlib.import_module(
            "setuptools._vendor.packaging.version"
        )


def prepare() -> None:
    """Install both fixes (idempotent); after this, ``import dgl`` works."""
    _install_graphbolt_stub()
    _alias_setuptools_packaging()


def _import_dgl() -> types.ModuleType:
    prepare()
    module = importlib.import_module("dgl")
    # `dgl.graphbolt` as an attribute should give the same clear message as the import.
    if isinstance(sys.modules.get("dgl.graphbolt"), types.ModuleType):
        module.graphbolt = sys.modules["dgl.graphbolt"]  # type: ignore[attr-defined]
    return module


def __getattr__(name: str) -> object:
    # PEP 562: `from emu_dgl._dgl import dgl` lands here the first time and imports DGL.
    if name == "dgl":
        module = _import_dgl()
        globals()["dgl"] = module  # later look-ups skip this function
        return module
    raise AttributeError(f"module 'emu_dgl._dgl' has no attribute '{name}'")


prepare()
