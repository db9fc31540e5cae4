"""Small types shared by every layer (PyTorch Geometric keeps its own in ``typing.py`` too)."""

from __future__ import annotations

from typing import Literal

#: Which side of a triple ``(h, r, t)`` is corrupted, ranked or predicted.
Side = Literal["head", "tail"]

__all__ = ["Side"]
