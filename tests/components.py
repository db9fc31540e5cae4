"""What the registries hold, as test cases.

Every component with its default options, and once more with each other value its
declaration names (a choice such as TransE's ``p_norm: 1 | 2``, a word of a ``Literal``, the
other value of a flag): so a component added to a registry (a new file, or an installed
plugin) is covered by the contract tests at once, in every branch its options name.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import pytest

from emu_dgl.registry import Registry


def option_cases(registry: Registry[Any], name: str) -> list[dict[str, Any]]:
    """``{}`` (the defaults), then ``{option: value}`` for each named value that is not the
    default."""
    cases: list[dict[str, Any]] = [{}]
    for key, option in registry.options(name).items():
        if option.choices:
            values: tuple[Any, ...] = option.choices
        elif isinstance(option.default, bool):
            values = (not option.default,)
        elif typing.get_origin(option.kind) is Literal:
            values = typing.get_args(option.kind)
        else:
            values = ()
        cases += [{key: value} for value in values if value != option.default]
    return cases


def case_id(name: str, options: dict[str, Any]) -> str:
    return name + "".join(f"-{k}={v}" for k, v in options.items())


def cases(registry: Registry[Any], *, where: typing.Callable[[Any], bool] | None = None) -> list:
    """``pytest.param(name, options)`` for every component of ``registry`` (those whose
    class passes ``where``) and every option case."""
    return [
        pytest.param(name, options, id=case_id(name, options))
        for name in registry.names()
        if where is None or where(registry.get(name))
        for options in option_cases(registry, name)
    ]
