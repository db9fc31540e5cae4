"""Finding entity and relation names: case-insensitive search and "did you mean" hints."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = ["grep_names", "suggest_names"]


def grep_names(names: Sequence[str], text: str | None) -> list[str]:
    """Names containing ``text``, ignoring case (all names when ``text`` is empty), in id order."""
    if not text:
        return list(names)
    needle = text.casefold()
    return [name for name in names if needle in name.casefold()]


def suggest_names(name: str, names: Sequence[str], n: int = 5) -> list[str]:
    """Up to ``n`` likely meant names: same name in another case first, then names that
    contain it (ignoring case), then close spellings."""
    folded = name.casefold()
    exact = [c for c in names if c.casefold() == folded]
    contains = [c for c in names if folded and folded in c.casefold() and c not in exact]
    by_fold: dict[str, str] = {}
    for c in names:
        by_fold.setdefault(c.casefold(), c)
    close = [by_fold[c] for c in difflib.get_close_matches(folded, list(by_fold), n=n, cutoff=0.6)]
    return list(dict.fromkeys([*exact, *contains, *close]))[:n]
