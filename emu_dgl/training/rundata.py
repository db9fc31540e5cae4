"""Where a run's data lives: recorded when the run starts, looked for there first afterwards.

A run started on a dataset found by name in a data root (``--data-dir``, else
``$EMU_DGL_DATA``, else ``datasets/`` of a source checkout, else the user cache) records
that root, absolute, as ``dataset.data_dir`` in its ``config.yaml``; its ``data.json``
holds the data's fingerprint. Every later command on the run (``evaluate``, ``predict``,
``export``, ``train --resume``, :func:`emu_dgl.load_run`) looks for the dataset in the
recorded root (or the ``--data-dir`` it is given) first, then where a new run would look,
and never downloads: a run's data is the data it was trained on, not a fresh copy. Data
found nowhere is one error naming ``--data-dir`` and the fingerprint to match.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu_dgl.errors import DataError
from emu_dgl.training.run import CONFIG_FILE, GRAPH_FILE, match_data, read_data_record

if TYPE_CHECKING:
    from emu_dgl.config import Config
    from emu_dgl.data import KnowledgeGraph

__all__ = ["is_plain_name", "load_run_dataset", "open_run_data", "record_data_root"]


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is looked up in a data root (a catalogue or folder name), not a path
    or a generated graph."""
    text = os.fspath(name)
    return (
        "/" not in text
        and os.sep not in text
        and text not in ("", ".", "..")
        and not text.lower().startswith("synthetic")
    )


def record_data_root(config: Config) -> None:
    """Set a new run's ``dataset.data_dir`` to the absolute data root its dataset name is
    found in (``--data-dir``, ``$EMU_DGL_DATA``, ...), so that later commands find the data
    without the environment the run was started in. Paths and generated graphs: unchanged."""
    from emu_dgl.data import data_root

    if is_plain_name(config.dataset.name):
        config.dataset.data_dir = str(data_root(config.dataset.data_dir).absolute())


def _candidates(name: str, data_dir: str | None) -> list[tuple[str, str | None]]:
    """(dataset name or path, data root) to try, in order, for a run's dataset."""
    from emu_dgl.data import data_root

    if is_plain_name(name):
        roots = [data_dir] if data_dir else []
        roots.append(str(data_root(None)))  # where a new run would look now
        folders = dict.fromkeys(str(Path(r).expanduser().absolute()) for r in roots)
        return [(name, root) for root in folders]
    tried = [(name, None)]
    if data_dir and "/" in name:  # a folder that moved: DATA_DIR/<its name>
        tried.append((str(Path(data_dir).expanduser() / Path(name).name), None))
    return tried


def _present(name: str, root: str | None) -> bool:
    """Whether the dataset ``name`` (in ``root``) can be read without a download."""
    if name.lower().startswith("synthetic"):
        return True
    if root is None:
        return Path(name).expanduser().exists()
    return any((Path(root) / n).is_dir() for n in (name, name.lower()))


def load_run_dataset(run_dir: Path, config: Config) -> KnowledgeGraph:
    """The graph of an existing run, with the ids it was trained with.

    In order: the graph the run keeps (``graph.npz``, a run trained on a graph given in
    Python, wherever the folder has moved); the dataset in ``dataset.data_dir`` (the root
    recorded when the run started, or the one the caller gives); then where a new run would
    look (``$EMU_DGL_DATA``, ...). A copy whose content differs from the run's
    (``data.json``) is passed over for the next one; with none left, the first such
    difference is the error. Nothing is downloaded.
    """
    from emu_dgl.data import KnowledgeGraph, load_dataset

    name, data_dir = config.dataset.name, config.dataset.data_dir
    own = Path(run_dir) / GRAPH_FILE
    if own.is_file() and Path(name).name == GRAPH_FILE:
        return KnowledgeGraph.load(own)
    record = read_data_record(Path(run_dir))
    mismatch: DataError | None = None
    tried = []
    for candidate, root in _candidates(name, data_dir):
        tried.append(str(Path(root) / candidate) if root else candidate)
        if not _present(candidate, root):
            continue
        kg = load_dataset(candidate, root, download=False)
        try:
            return match_data(kg, record, Path(run_dir))
        except DataError as exc:
            mismatch = mismatch or exc
    if mismatch is not None:
        raise mismatch
    raise DataError(_missing(run_dir, name, tried, record))


def _missing(run_dir: Path, name: str, tried: list[str], record: dict[str, Any] | None) -> str:
    looked = " nor ".join(f"'{t}'" for t in dict.fromkeys(tried))
    match = (
        f" (its content has fingerprint {record['fingerprint'][:16]}..., recorded in "
        f"{Path(run_dir) / 'data.json'})"
        if record
        else ""
    )
    where = f"a data root holding {name}/" if is_plain_name(name) else "a folder holding it"
    return (
        f"the data run '{run_dir}' was trained on is not found: dataset '{name}' is in neither "
        f"{looked}; pass --data-dir DIR (in Python: data_dir=DIR), {where}, with the files the "
        f"run was trained on{match}"
    )


def open_run_data(
    config: Config, run_dir: Path, kg: KnowledgeGraph | None
) -> tuple[Config, KnowledgeGraph, bool]:
    """``(the run's config, its graph, whether to save the graph into the run)``.

    An existing run (to resume) keeps its config and gets its data with the ids it was
    trained with. A new run gets its own copy of ``config`` (the caller's is not touched)
    that names a dataset folder given by a relative path absolutely and records the data
    root (so the run loads from anywhere, without ``$EMU_DGL_DATA``); a graph given in
    Python (``kg``) is saved into the run (``graph.npz``) and named by the run's config.
    """
    import copy

    from emu_dgl.data import canonical_dataset, load_dataset
    from emu_dgl.files import lexists

    if lexists(run_dir / CONFIG_FILE):
        graph = kg if kg is not None else load_run_dataset(run_dir, config)
        return config, match_data(graph, read_data_record(run_dir), run_dir), False
    own = copy.deepcopy(config)
    own.dataset.name = canonical_dataset(config.dataset.name, config.dataset.data_dir)
    if kg is not None:  # the run's config names the graph it trains on, not the dataset
        own.dataset.name = str((run_dir / GRAPH_FILE).absolute())
        return own, kg, True
    record_data_root(own)  # later commands find the data without $EMU_DGL_DATA
    return own, load_dataset(own.dataset.name, config.dataset.data_dir), False
