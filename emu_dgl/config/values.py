"""Values of config keys: coercion to a key's type, canonical names, one-line refusals.

A value reaches the config from YAML, from ``--set`` (read as YAML), or from a Python dict;
each key's annotation says what it takes: ``str``, ``int``, ``float``, ``bool``, a
``Literal`` of words, or a union of these (``bool | Literal["auto"]``, ``str | None``).
"""

from __future__ import annotations

import difflib
import re
import string
import types
import typing
from typing import Any, Literal

from emu_dgl.errors import ConfigError, shown

__all__ = ["OUTPUT_PLACEHOLDERS", "canonical_choice", "check_output_dir", "coerce"]

#: placeholders that ``output.dir`` may use.
OUTPUT_PLACEHOLDERS = ("dataset", "model", "time")

#: Spellings of booleans that YAML 1.1 (and so ``--set``) reads as true / false; the same
#: strings are accepted from Python dicts.
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def canonical_choice(key: str, value: str, valid: list[str]) -> str:
    """``value`` in its canonical spelling (case and '-'/'_' folded), or a ConfigError."""
    folded = str(value).strip().lower()
    for candidate in (folded, folded.replace("-", "_")):
        if candidate in valid:
            return candidate
    close = difflib.get_close_matches(folded, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{key}: unknown value {shown(str(value))}{hint}; valid: {', '.join(valid)}")


def check_output_dir(template: str) -> None:
    """``output.dir`` may only use the known ``{placeholders}``; a literal brace is ``{{``."""
    allowed = ", ".join("{" + p + "}" for p in OUTPUT_PLACEHOLDERS)
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(
            f"output.dir '{template}': {exc}; placeholders are {allowed}, write a literal brace as '{{{{' or '}}}}'"
        ) from None
    unknown = [name for name in used if name not in OUTPUT_PLACEHOLDERS]
    if unknown:
        raise ConfigError(
            f"output.dir '{template}': unknown placeholder '{{{unknown[0]}}}'; use {allowed}"
        )


def _expected(annotation: Any) -> str:
    """What a key of this annotation takes, in words."""
    if typing.get_origin(annotation) is Literal:
        return ", ".join(str(v) for v in typing.get_args(annotation))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        annotation, str(annotation)
    )


def shown_typed(value: Any) -> str:
    """A refused value, bounded, with its Python type: ``0 (int)`` for a flag given as 0."""
    return f"{shown(value)} ({type(value).__name__})"


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against a key's annotation (str, int, float, bool, a ``Literal`` of
    choices, or a union of these such as ``bool | Literal["auto"]`` or ``str | None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(annotation)):
            return None
        for arg in args:
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(
            f"{key}: expected {', or '.join(_expected(a) for a in args)}, got {shown_typed(value)}"
        )
    if origin is Literal:
        if isinstance(value, str):
            return canonical_choice(key, value, [str(v) for v in typing.get_args(annotation)])
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)  # what --set 'train.max_steps=100' gives as a string from Python
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"{key}: expected {_expected(annotation)}, got {shown_typed(value)}")
