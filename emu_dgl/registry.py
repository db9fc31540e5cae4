"""One registry pattern for decoders, samplers, losses and optimizers.

A name from YAML or an instance from Python both work; an unknown name fails with
the list of valid names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from emu_dgl.errors import ConfigError

T = TypeVar("T")


def registry_key(name: str) -> str:
    """The canonical spelling of a component name: case-insensitive, ``-`` read as ``_``
    (``Self-Adversarial`` is ``self_adversarial``)."""
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """Maps canonical names (:func:`registry_key`) to classes (or factories) of one kind of
    component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            key = registry_key(name)
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[key] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and registry_key(name) in self._entries

    def get(self, name: str) -> Callable[..., T]:
        key = registry_key(name)
        if key not in self._entries:
            close = difflib.get_close_matches(key, self.names(), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'{hint}; valid: {', '.join(self.names())}"
            )
        return self._entries[key]

    def build(self, spec: str | T, /, **kwargs: Any) -> T:
        """An instance passes through; a name is looked up and called with ``kwargs``."""
        if isinstance(spec, str):
            return self.get(spec)(**kwargs)
        return spec
