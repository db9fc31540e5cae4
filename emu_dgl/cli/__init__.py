"""The ``emu-dgl`` command line (click): :func:`main` is the entry point.

* :mod:`emu_dgl.cli.main`: the group, ``train``, ``evaluate``, ``predict``, ``export``, ``compare``;
* :mod:`emu_dgl.cli.datasets`: ``datasets list | download | info | entities``;
* :mod:`emu_dgl.cli.tune`: ``tune`` (Optuna);
* :mod:`emu_dgl.cli.components`: ``components`` (what a config can name, with the options).

Commands import torch, DGL and pandas only when they run, so ``--help`` stays fast.
"""

from __future__ import annotations

from emu_dgl.cli.main import main

__all__ = ["main"]
