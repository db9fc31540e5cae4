"""Reading configs: YAML files (with ``extends`` and ``arms``), ``--set`` overrides, dicts.

A run is described by one :class:`~emu_dgl.config.Config`, built from (in order) the
defaults, a YAML file (the files it extends first), one of its arms, and dotted
``--set section.key=value`` overrides; then validated. YAML is read safely (no Python
objects), with duplicate keys refused and alias expansion bounded.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from emu_dgl.config.sections import Config, Section
from emu_dgl.config.values import coerce
from emu_dgl.errors import ConfigError, EmuDglError, shown
from emu_dgl.files import read_bytes

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_VALUES",
    "config_arms",
    "config_from_dict",
    "load_config",
    "parse_override",
    "parse_yaml",
]


def _merge(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    valid = [f.name for f in fields(obj)]
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in valid:
            if isinstance(obj, Section):
                obj.accept(key, value, path)  # an option: checked when the config is validated
                continue
            close = difflib.get_close_matches(str(key)[:100], valid, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown config key {shown(path)}{hint} (valid here: {', '.join(valid)})"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of keys, got {shown(value)}")
            _merge(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, coerce(value, hints[key], path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=0.05'`` -> (['train', 'lr'], 0.05); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected section.key=value, e.g. --set train.lr=0.05")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set '{text}': the key must be section.key, e.g. train.lr")
    try:
        value = parse_yaml(raw, f"--set '{text}'") if raw.strip() else ""
    except ConfigError:
        value = raw  # not YAML: taken as the plain string it is
    return parts, value


#: At most this many YAML values, aliases expanded: a config holds a few hundred. An
#: "alias bomb" (a few lines of nested ``*alias`` references) expands to billions.
MAX_YAML_VALUES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last).

    Merge keys (``<<: *base``) work as in YAML: the mapping's own keys override the merged
    ones, and only the mapping's own keys are checked for duplicates.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise ConfigError(
                    f"duplicate key {shown(key)} at line {line} (first at line {seen[key]}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoised per node,
    so the count costs one visit per distinct node however far the aliases expand)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a node that (through a recursive alias) contains itself counts once
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> Python data (safe types only, duplicate keys refused, alias expansion
    bounded by :data:`MAX_YAML_VALUES`), or a ConfigError."""
    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"holds more than {MAX_YAML_VALUES} values once its aliases (*name) are expanded; "
                "a config needs a few hundred: remove the nested aliases"
            )
        return loader.construct_document(node)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(
            f"{where} is not valid YAML{at} ({shown(problem, 80)}); fix the syntax"
        ) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # e.g. a timestamp like 2024-13-45, or anchors nested past the recursion limit
        raise ConfigError(
            f"{where} holds a value YAML cannot read ({exc.__class__.__name__}); fix it"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


#: A config file larger than this is not a config (a FIFO or /dev/zero never ends).
MAX_CONFIG_BYTES = 1 << 20


def _read_yaml(path: Path) -> dict[str, Any]:
    import os

    if not os.path.lexists(path):
        raise ConfigError(f"config file '{path}' does not exist; pass an existing YAML file")
    try:
        raw = read_bytes(path, "config file", follow=True, limit=MAX_CONFIG_BYTES)
    except EmuDglError as exc:  # a FIFO, a folder, a link loop, unreadable: one line from files
        raise ConfigError(f"{exc}; pass a YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.start}); pass a YAML file"
        ) from None
    data = parse_yaml(text, f"config file '{path}'") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections")
    return data


def _read_chain(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The file and the files it ``extends`` (a path relative to it), base first, and
    the named arms of the whole chain (a later file adds arms or keys to an arm)."""
    chain: list[dict[str, Any]] = []
    arms_chain: list[tuple[Path, Any]] = []
    seen: set[Path] = set()
    while True:
        data = _read_yaml(path)
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError(
                f"config file '{path}' extends itself in a cycle; break the 'extends' chain"
            )
        seen.add(resolved)
        parent = data.pop("extends", None)
        arms_chain.append((path, data.pop("arms", None)))
        chain.append(data)
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ConfigError(
                f"config file '{path}': 'extends' must be a path to another YAML file"
            )
        path = path.parent / parent
    arms: dict[str, dict[str, Any]] = {}
    for source, section in reversed(arms_chain):
        if section is None:
            continue
        if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
            raise ConfigError(
                f"config file '{source}': 'arms' must map arm names to {{section.key: value}} mappings"
            )
        for name, settings in section.items():
            arms.setdefault(str(name), {}).update({str(k): v for k, v in settings.items()})
    return chain[::-1], arms


def config_arms(path: str | Path) -> dict[str, dict[str, Any]]:
    """The named arms of a config file (its ``arms:`` section and those of the files it
    extends): ``{name: {"section.key": value}}``, in file order."""
    return _read_chain(Path(path))[1]


def _apply(config: Config, dotted: str, value: Any, origin: str) -> None:
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{origin} '{dotted}': the key must be section.key, e.g. train.lr")
    _merge(config, {parts[0]: {parts[1]: value}})


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    arm: str | None = None,
    validate: bool = True,
) -> Config:
    """Defaults, then the YAML file (if any), then its ``arm``, then ``--set`` overrides; validated.

    A YAML file may start with ``extends: other.yaml`` (relative to itself): the other
    file is applied first, so families of configs share one base. It may also name
    *arms*, variants of itself that differ in a few keys::

        arms:
          sans-base: {sampler.name: sans, emu.enabled: false}

    ``arm`` picks one of them (``emu-dgl train --arm sans-base``); the arms of a file
    are what ``emu-dgl compare`` runs by default.
    """
    config = Config()
    if arm is not None and path is None:
        raise ConfigError(f"arm '{arm}' needs a config file that defines it (pass --config)")
    if path is not None:
        chain, arms = _read_chain(Path(path))
        for data in chain:
            _merge(config, data)
        if arm is not None:
            if arm not in arms:
                valid = ", ".join(arms) if arms else "none: the file has no 'arms' section"
                raise ConfigError(f"config file '{path}' has no arm '{arm}' (arms: {valid})")
            for dotted, value in arms[arm].items():
                _apply(config, dotted, value, f"arm '{arm}':")
    for text in overrides:
        parts, value = parse_override(text)
        nested: dict[str, Any] = {parts[0]: {parts[1]: value}}
        _merge(config, nested)
    return config.validate() if validate else config


def config_from_dict(data: dict[str, Any], *, validate: bool = True) -> Config:
    """A config from a (possibly partial) nested dict; missing keys take their defaults."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config is a mapping of sections, e.g. {{'train': {{'lr': 0.05}}}}, got "
            f"{type(data).__name__} {shown(data)}"
        )
    config = Config()
    _merge(config, data)
    return config.validate() if validate else config
