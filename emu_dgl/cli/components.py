"""``emu-dgl components``: every registered component, where it comes from, and its options."""

from __future__ import annotations

import json

import click

__all__ = ["components"]


@click.command()
@click.argument("kind", required=False, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def components(kind: str | None, as_json: bool) -> None:
    """List the components a config can name (decoders, samplers, losses, ...), built in or
    added by installed plugins, with each one's options (config keys, defaults, ranges).

    KIND limits the list to one kind: decoder, sampler, mutation, loss, regularizer,
    optimizer (and any kind a newer emu-dgl adds)."""
    from emu_dgl.errors import ConfigError
    from emu_dgl.registry import KINDS, describe_origin

    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown kind '{kind}'; valid: {', '.join(KINDS)}")
    listing: dict[str, dict[str, object]] = {}
    for registry in KINDS.values():
        if kind is not None and registry.kind != kind:
            continue
        entries = {}
        for name in registry.names():
            origin = registry.origin(name)
            entries[name] = {
                "origin": origin,
                "options": {
                    key: {
                        "default": option.default,
                        "help": option.help,
                        "range": option.range_text(),
                    }
                    for key, option in registry.options(name).items()
                },
            }
        listing[registry.kind] = {"config_key": registry.config_key, "components": entries}
    if as_json:
        click.echo(json.dumps(listing, indent=2, default=str))
        return
    for kind_name, info in listing.items():
        click.echo(f"{kind_name} ({info['config_key']})")
        for name, entry in info["components"].items():  # type: ignore[union-attr]
            origin = entry["origin"]
            where = ("plugin " if origin.get("source") == "plugin" else "") + describe_origin(
                origin
            )
            click.echo(f"  {name:<18} {where}")
            for key, option in entry["options"].items():
                section = str(info["config_key"]).split(".")[0]
                rule = "" if option["range"] == "is invalid" else f"; {option['range']}"
                click.echo(f"      {section}.{key} = {option['default']!r}: {option['help']}{rule}")
