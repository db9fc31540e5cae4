"""emu-dgl: knowledge-graph embeddings with structure-aware and EMU negatives, on DGL."""

from __future__ import annotations

__version__ = "0.1.0"
