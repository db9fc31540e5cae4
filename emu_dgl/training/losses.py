"""The losses and regularisers, where they were before :mod:`emu_dgl.losses` held them
(one component per file there)."""

from __future__ import annotations

from emu_dgl.losses import *  # noqa: F403
from emu_dgl.losses import __all__  # noqa: F401
