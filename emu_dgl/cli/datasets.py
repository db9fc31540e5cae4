"""``emu-dgl datasets``: list, download and describe knowledge graphs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from emu_dgl.cli.options import data_dir_option
from emu_dgl.errors import EmuDglError

__all__ = ["datasets"]

_DATA_DIR = data_dir_option(
    "Data root (default: $EMU_DGL_DATA, datasets/ of a source checkout, or the user cache)."
)


class _UserError(click.ClickException):
    """An EmuDglError as click reports it: ``error: <message>`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmuDglError as exc:
            raise _UserError(str(exc)) from None


@click.group(cls=_Group)
def datasets() -> None:
    """List, download and describe knowledge graphs."""


@datasets.command("list")
@_DATA_DIR
def list_command(data_dir: str | None) -> None:
    """Catalogue datasets: whether present locally, size, download, licence and source."""
    from emu_dgl.data.catalogue import CATALOGUE, archive_url, data_root, has_splits

    root = data_root(data_dir)
    click.echo(f"data root: {root}")
    header = ("name", "present", "entities", "relations", "train/valid/test", "download", "licence")
    rows = [header, ("synthetic", "generated", "605", "13", "4,939/463/422", "-", "built in")]
    notes = []
    for name, entry in CATALOGUE.items():
        counts = entry.counts or (0, 0, 0, 0, 0)
        size = entry.download_bytes
        rows.append(
            (
                name,
                "yes" if has_splits(root / name) else "no",
                f"{counts[0]:,}",
                f"{counts[1]:,}",
                "/".join(f"{c:,}" for c in counts[2:]),
                _bytes(size) if size is not None else "not pinned",
                entry.licence,
            )
        )
        notes.append(f"{name}: {archive_url(entry)}" + (f" ({entry.note})" if entry.note else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    click.echo("sources (each file checked by its sha256, or by its git blob id where noted):")
    for line in notes:
        click.echo(f"  {line}")
    click.echo(
        "Wikidata5M, ogbl-wikikg2: not downloaded; convert a copy you have with "
        "'emu-dgl datasets convert FOLDER --out DIR' (README, Datasets)"
    )


def _bytes(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@datasets.command("download")
@click.argument("name")
@click.option("--force", is_flag=True, help="Download again even when the files are present.")
@_DATA_DIR
def download_command(name: str, force: bool, data_dir: str | None) -> None:
    """Download NAME, verify its sha256 and unpack it into the data root."""
    from emu_dgl.data.catalogue import CATALOGUE, data_root, download_dataset, has_splits

    key = name.lower()
    if key == "synthetic":
        click.echo("synthetic is generated on the fly; nothing to download")
        return
    entry = CATALOGUE.get(key)
    if entry is not None:
        target = data_root(data_dir) / key
        if has_splits(target) and not force:
            click.echo(f"{key} already present in {target}")
            return
    folder = download_dataset(name, data_dir, force=force)  # an unknown name raises here
    click.echo(f"{key} ready in {folder}")


@datasets.command("convert")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="New dataset folder to write (train.txt, valid.txt, test.txt).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["wikidata5m", "ogbl-wikikg2"]),
    default=None,
    help="The layout of FOLDER (default: detected).",
)
@click.option(
    "--variant",
    type=click.Choice(["transductive", "inductive"]),
    default="transductive",
    show_default=True,
    help="Wikidata5M: which of its splits.",
)
def convert_command(folder: Path, out: Path, fmt: str | None, variant: str) -> None:
    """Turn a copy of Wikidata5M or ogbl-wikikg2 (ogb's layout) into a dataset folder.

    Neither is downloaded by emu-dgl (gigabytes, their own terms): FOLDER is the unpacked
    wikidata5m_transductive.tar.gz, or ogb's dataset root (e.g. dataset/ogbl_wikikg2,
    holding split/time/*.pt). Then: emu-dgl train --set dataset.name=OUT.
    """
    from emu_dgl.data.convert import convert, detect_format

    kind = fmt or detect_format(folder.expanduser(), variant)
    target = convert(folder, out, fmt=kind, variant=variant)
    click.echo(f"{kind}: wrote train.txt, valid.txt, test.txt to {target}")


@datasets.command("info")
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_DATA_DIR
def info_command(name_or_path: str, as_json: bool, data_dir: str | None) -> None:
    """Statistics of a catalogue dataset, 'synthetic', or a folder of split files."""
    from emu_dgl.data.catalogue import load_dataset
    from emu_dgl.data.stats import dataset_stats

    stats = dataset_stats(load_dataset(name_or_path, data_dir))
    if as_json:
        click.echo(json.dumps(stats))
        return
    _print_stats(stats, click.echo)


@datasets.command("entities")
@click.argument("name_or_path")
@click.option(
    "--grep",
    "text",
    default=None,
    metavar="TEXT",
    help="Only names containing TEXT (case-insensitive).",
)
@click.option("--relations", is_flag=True, help="List relation names instead of entity names.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Print at most this many names (0 = all).",
)
@_DATA_DIR
def entities_command(
    name_or_path: str, text: str | None, relations: bool, limit: int, data_dir: str | None
) -> None:
    """Entity (or relation) names of a dataset, e.g. to find the names 'emu-dgl predict' takes."""
    from emu_dgl.data.catalogue import load_dataset
    from emu_dgl.data.lookup import grep_names

    kg = load_dataset(name_or_path, data_dir)
    names = kg.relation_names if relations else kg.entity_names
    kind = "relations" if relations else "entities"
    found = grep_names(names, text)
    shown = found if limit == 0 else found[:limit]
    for name in shown:
        click.echo(name)
    what = f"{kind} matching '{text}'" if text else kind
    more = f"; showing {len(shown)} (--limit 0 for all)" if len(shown) < len(found) else ""
    click.echo(f"{len(found)} of {len(names)} {what} in {kg.name}{more}", err=True)


def _print_stats(stats: dict[str, Any], echo: Callable[[str], object]) -> None:
    echo(f"dataset      {stats['name']}")
    echo(f"entities     {stats['num_entities']:,}")
    echo(f"relations    {stats['num_relations']:,}")
    echo(
        f"triples      train {stats['num_train']:,} / valid {stats['num_valid']:,} "
        f"/ test {stats['num_test']:,}"
    )
    dup = stats["duplicates_removed"]
    echo(
        f"duplicates   removed: train {dup['train']:,} / valid {dup['valid']:,} / test {dup['test']:,}"
    )
    leak = stats["also_in_train"]
    echo(f"also in train  valid {leak['valid']:,} / test {leak['test']:,}")
    for split in ("valid", "test"):
        unseen = stats["unseen_in_train"][split]
        echo(
            f"unseen in train ({split}): {unseen['entities']:,} entities, "
            f"{unseen['relations']:,} relations, {unseen['triples']:,} triples touch them"
        )
    deg = stats["degree"]
    echo(
        f"train degree min {deg['min']:,}, median {deg['median']:g}, mean {deg['mean']:.2f}, "
        f"max {deg['max']:,}; {deg['zero']:,} entities absent from train"
    )
    comp = stats["components"]
    echo(
        f"components   {comp['count']:,} (largest {comp['largest']:,} entities, "
        f"{comp['singletons']:,} single-entity)"
    )
    echo("top relations (train)")
    for rel in stats["top_relations"]:
        echo(f"  {rel['count']:>9,}  {rel['name']}")
