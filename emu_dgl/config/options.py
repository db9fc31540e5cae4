"""A config section: its typed fields, plus the options of the components it names.

A section that names components (``model.name``, ``sampler.name``, ``loss.name``,
``loss.regularizer``, ``emu.variant``, ``train.optimizer``) also holds those components'
options: ``model.gamma`` and ``model.p_norm`` are options TransE declares
(:mod:`emu_dgl.registry`), read and written as attributes like the fields, and this module
names no component.

Rules for options (:meth:`Section.check_options`):

* a key is valid when the selected component, or any component of the section's kinds
  that emu-dgl or an installed plugin in use provides, declares it (so one file can hold
  arms with different decoders); its value is checked against that declaration;
* the resolved config (:meth:`Section.to_dict`, ``config.yaml`` of a run) holds the
  options of the selected components only: what the run uses;
* when the selected component is unknown here (a plugin that is not installed), options
  nobody here declares are kept as given, so that opening such a run for evaluation
  (which needs neither its sampler nor its loss) never fails on them.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import fields
from typing import Any, ClassVar

from emu_dgl.config.values import coerce
from emu_dgl.errors import ConfigError, shown
from emu_dgl.registry import KINDS, Option, Registry, declared_options

__all__ = ["Section", "unknown_key"]


class Section:
    """A config section: its dataclass fields, plus the options its components declare,
    read and written as attributes (``config.model.gamma``) like the fields."""

    #: The section's key in :class:`Config`.
    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_options", {})  # options given (YAML, --set, Python)

    # -- attributes -----------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        given = self.__dict__.get("_options")
        if given is None:
            raise AttributeError(name)
        if name in given:
            return given[name]
        option = self.option(name)
        if option is None:
            raise AttributeError(f"config section '{self.section}' has no key '{name}'")
        return copy.deepcopy(option.default)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in _field_names(type(self)):
            object.__setattr__(self, name, value)
        else:
            self._options[name] = value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    # -- components -----------------------------------------------------------------------
    def registries(self) -> list[Registry[Any]]:
        """The registries whose components keep their options here."""
        return [r for r in KINDS.values() if r.section == self.section]

    def components(self) -> list[tuple[Registry[Any], Any]]:
        """``(registry, class or None)`` of each component this section names; ``None`` for
        a name no registry knows here (a plugin not installed, or a typo that
        :func:`~emu_dgl.training.build.check_components` reports)."""
        return [(r, r.lookup(getattr(self, r.key))) for r in self.registries()]

    def option(self, key: str) -> Option | None:
        """The declaration behind config key ``key``: the selected components' first, else
        any known component's of this section's kinds."""
        for registry, component in self.components():
            if component is not None:
                declared = _keyed(registry, component)
                if key in declared:
                    return declared[key]
        for registry in self.registries():
            declared = registry.vocabulary()
            if key in declared:
                return declared[key]
        return None

    def options_of(self, registry: Registry[Any]) -> dict[str, Any]:
        """The option values of the component this section names in ``registry`` (its
        declared options, as given or their defaults, by option name): what the component
        is built with."""
        component = registry.lookup(getattr(self, registry.key))
        if component is None:
            return {}
        return {
            name: copy.deepcopy(self._options.get(registry.prefix + name, option.default))
            for name, option in declared_options(component).items()
        }

    def valid_keys(self) -> list[str]:
        keys = list(_field_names(type(self)))
        for registry, component in self.components():
            if component is not None:
                keys += [k for k in _keyed(registry, component) if k not in keys]
        for registry in self.registries():
            keys += [k for k in registry.vocabulary() if k not in keys]
        return keys

    # -- checking and writing -------------------------------------------------------------
    def accept(self, key: Any, value: Any, path: str) -> None:
        """Store ``value`` for key ``key`` that is not a field: an option, checked by
        :meth:`check_options` once every key is in (the component may come later)."""
        if not self.registries() or not isinstance(key, str) or not key.isidentifier():
            raise unknown_key(path, key, self.valid_keys(), f"{self.section}.")
        self._options[key] = value

    def check_options(self) -> None:
        """Type and range of every given option (see the module doc for the rules)."""
        unresolved = any(component is None for _, component in self.components())
        for name, value in list(self._options.items()):
            key = f"{self.section}.{name}"
            option = self.option(name)
            if option is None:
                if unresolved:
                    continue  # judged once its component is known here
                raise unknown_key(key, name, self.valid_keys(), f"{self.section}.")
            value = coerce(value, option.kind, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value}")
            problem = option.problem(value)
            if problem is not None:
                raise ConfigError(f"{key}: {problem}")
            self._options[name] = value

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        unresolved = False
        for registry, component in self.components():
            if component is None:
                unresolved = True
                continue
            for name, value in self.options_of(registry).items():
                data.setdefault(registry.prefix + name, value)
        if unresolved:  # keep what was given for a component unknown here
            data.update({k: copy.deepcopy(v) for k, v in self._options.items() if k not in data})
        return data


def _keyed(registry: Registry[Any], component: Any) -> dict[str, Option]:
    """A component's declared options by config key (the registry's prefix + name)."""
    return {registry.prefix + k: v for k, v in declared_options(component).items()}


def _field_names(cls: type) -> tuple[str, ...]:
    cached = cls.__dict__.get("_fields_cache")
    if cached is None:
        cached = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        cls._fields_cache = cached  # type: ignore[attr-defined]
    return cached


def unknown_key(path: str, key: Any, valid: list[str], prefix: str) -> ConfigError:
    """The one-line error for an unknown key, with the nearest valid one."""
    close = difflib.get_close_matches(str(key)[:100], valid, n=1)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(f"unknown config key {shown(path)}{hint} (valid here: {', '.join(valid)})")
