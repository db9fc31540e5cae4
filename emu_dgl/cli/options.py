"""Options several ``emu-dgl`` commands share, each declared once; only the help differs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = [
    "allow_nonempty_option",
    "checkpoint_option",
    "config_option",
    "data_dir_option",
    "device_option",
    "out_option",
    "set_option",
]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def config_option(help: str) -> Decorator:
    """``--config FILE`` into ``config_path`` (``None``: the quickstart)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def set_option(help: str) -> Decorator:
    """``--set KEY=VALUE`` (repeatable) into ``overrides``."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def out_option(help: str, *, required: bool = True) -> Decorator:
    """``--out DIR``: the folder a command writes."""
    return click.option(
        "--out",
        required=required,
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
    )


def data_dir_option(
    help: str = "Data root (overrides dataset.data_dir).",
) -> Decorator:
    """``--data-dir DIR``: where the datasets live."""
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=help)


def allow_nonempty_option(what: str = "run") -> Decorator:
    """``--allow-nonempty``: write into a non-empty folder that holds no ``what``."""
    return click.option(
        "--allow-nonempty",
        is_flag=True,
        help=f"Write into an --out folder that is not empty and holds no {what} (its files named "
        f"like the {what}'s are replaced); without it such a folder is refused.",
    )


#: ``--checkpoint best|last`` into ``which``: the weights a trained run's command uses.
checkpoint_option = click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Weights to use: the best validation step's (best.pt) or the last step's (last.pt).",
)

#: ``--device``: where a trained run's command computes.
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)
