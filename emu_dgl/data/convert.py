"""Converters for large datasets that are not downloaded: Wikidata5M and ogbl-wikikg2.

Both are gigabytes, distributed under their own terms by their authors, so emu-dgl does
not fetch them: a user who has a copy converts it once into a dataset folder
(``train.txt``, ``valid.txt``, ``test.txt``, ``head<TAB>relation<TAB>tail``) that every
command then takes by path or by name in a data root::

    emu-dgl datasets convert path/to/wikidata5m --out datasets/wikidata5m
    emu-dgl datasets convert path/to/ogbl_wikikg2 --out datasets/ogbl-wikikg2

Layouts understood:

* **Wikidata5M** (Wang et al. 2021), the folder of ``wikidata5m_transductive.tar.gz``
  unpacked: ``wikidata5m_transductive_{train,valid,test}.txt``, Wikidata ids separated by
  tabs (``wikidata5m_inductive_...`` with ``variant="inductive"``). The lines are copied.
* **ogbl-wikikg2** (Hu et al. 2020) as the ``ogb`` package lays it out (the dataset
  root, e.g. ``dataset/ogbl_wikikg2``): ``split/time/{train,valid,test}.pt`` (dicts of
  ``head``, ``relation``, ``tail`` arrays; valid and test also ``head_neg``, ``tail_neg``)
  and, when present, ``mapping/nodeidx2entityid.csv.gz`` and
  ``mapping/reltype2relid.csv.gz``, which give the names (Wikidata ids) written to the
  split files; without them entities are named ``e<index>`` and relations ``r<index>``.
  OGB's fixed evaluation negatives are kept beside the splits as
  ``ogb_negatives_{valid,test}.npz`` (``head_neg``, ``tail_neg``: node indices) with
  ``ogb_entities.txt`` (the name of each node index, one a line), for
  :func:`ogb_negatives`.

The ``.pt`` files are read with ``torch.load(weights_only=True)``: only tensors, numpy
arrays and plain containers load, nothing that runs code.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu_dgl.data.io import SPLITS
from emu_dgl.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from emu_dgl.data.knowledge_graph import KnowledgeGraph

__all__ = ["FORMATS", "convert", "detect_format", "ogb_negatives"]

FORMATS = ("wikidata5m", "ogbl-wikikg2")
OGB_SPLIT = Path("split") / "time"
ENTITY_LIST = "ogb_entities.txt"


def _wikidata5m_files(folder: Path, variant: str) -> dict[str, Path]:
    return {s: folder / f"wikidata5m_{variant}_{s}.txt" for s in SPLITS}


def detect_format(folder: Path, variant: str = "transductive") -> str:
    """Which layout ``folder`` holds (one of :data:`FORMATS`), or a DataError naming both."""
    if all(p.is_file() for p in _wikidata5m_files(folder, variant).values()):
        return "wikidata5m"
    if all((folder / OGB_SPLIT / f"{s}.pt").is_file() for s in SPLITS):
        return "ogbl-wikikg2"
    raise DataError(
        f"'{folder}' holds neither Wikidata5M (wikidata5m_{variant}_train.txt, _valid.txt, "
        f"_test.txt) nor ogbl-wikikg2 in ogb's layout ({OGB_SPLIT}/train.pt, valid.pt, test.pt); "
        "point at the folder that holds those files"
    )


def convert(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    variant: str = "transductive",
) -> Path:
    """Write the dataset in ``folder`` (a layout of :data:`FORMATS`, detected unless ``fmt``)
    as ``out/{train,valid,test}.txt``. ``out`` must be new or hold no split file yet.
    Returns ``out``."""
    from emu_dgl.files import make_dir

    source, target = Path(folder).expanduser(), Path(out).expanduser()
    if not source.is_dir():
        raise DataError(f"'{source}' is not a folder; give the folder holding the dataset's files")
    fmt = fmt or detect_format(source, variant)
    if fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}'; known: {', '.join(FORMATS)}")
    present = [f for f in SPLITS.values() if os.path.lexists(target / f)]
    if present:
        raise DataError(
            f"'{target}' already holds {', '.join(present)}; choose a new --out folder "
            "(a converted dataset is never written over)"
        )
    make_dir(target, "dataset folder")
    if fmt == "wikidata5m":
        files = _wikidata5m_files(source, variant)
        missing = [p.name for p in files.values() if not p.is_file()]
        if missing:
            raise DataError(f"'{source}' has no {', '.join(missing)} (Wikidata5M, {variant})")
        for split, path in files.items():
            _copy(path, target / SPLITS[split])
    else:
        _convert_ogb(source, target)
    return target


def _copy(source: Path, target: Path) -> None:
    """Copy through a temporary name, so an interrupted copy leaves no split file behind."""
    tmp = target.with_name(f".{target.name}.part")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, target)


def _load_split(path: Path) -> dict[str, Any]:
    """An ogb ``.pt`` split: a dict of arrays, loaded with ``weights_only=True`` (numpy arrays
    allowed as data, no code)."""
    import numpy as np
    import torch
    from numpy._core.multiarray import _reconstruct  # type: ignore[import-not-found]

    # The pickles name numpy's array rebuilder under numpy 1's module name or numpy 2's.
    safe: list[Any] = [np.ndarray, np.dtype, _reconstruct]
    safe.append((_reconstruct, "numpy.core.multiarray._reconstruct"))
    safe += [type(np.dtype(t)) for t in ("int64", "int32", "float32", "float64", "int16", "int8")]
    try:
        with torch.serialization.safe_globals(safe):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many kinds
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: not an ogb split file ({reason[:200]})") from None
    if not isinstance(data, dict) or not {"head", "relation", "tail"} <= set(data):
        raise DataError(f"{path}: not an ogb split file (no head, relation, tail arrays)")
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in data.items()}


def _mapping(path: Path, key: str, value: str, size: int, prefix: str) -> list[str]:
    """Names by index from an ogb mapping file (``index column,name column``, gzipped CSV),
    or ``<prefix><index>`` without it."""
    if not path.is_file():
        return [f"{prefix}{i}" for i in range(size)]
    import pandas as pd

    table = pd.read_csv(path)
    if key not in table or value not in table:
        raise DataError(f"{path}: expected columns '{key}' and '{value}'")
    names = [f"{prefix}{i}" for i in range(max(size, int(table[key].max()) + 1))]
    for index, name in zip(table[key].tolist(), table[value].astype(str).tolist(), strict=True):
        names[int(index)] = name
    return names


def _convert_ogb(source: Path, target: Path) -> None:
    import numpy as np

    splits = {s: _load_split(source / OGB_SPLIT / f"{s}.pt") for s in SPLITS}
    columns = ("head", "relation", "tail")
    num_nodes = 1 + max(int(max(d["head"].max(), d["tail"].max())) for d in splits.values())
    num_relations = 1 + max(int(d["relation"].max()) for d in splits.values())
    entities = _mapping(
        source / "mapping" / "nodeidx2entityid.csv.gz", "node idx", "entity id", num_nodes, "e"
    )
    relations = _mapping(
        source / "mapping" / "reltype2relid.csv.gz", "reltype", "rel id", num_relations, "r"
    )
    for split, data in splits.items():
        h, r, t = (np.asarray(data[c], dtype=np.int64) for c in columns)
        lines = (
            f"{entities[a]}\t{relations[b]}\t{entities[c]}\n"
            for a, b, c in zip(h, r, t, strict=True)
        )
        _write_lines(target / SPLITS[split], lines)
        if "head_neg" in data and "tail_neg" in data:
            np.savez(
                target / f"ogb_negatives_{split}.npz",
                head_neg=np.asarray(data["head_neg"], dtype=np.int64),
                tail_neg=np.asarray(data["tail_neg"], dtype=np.int64),
            )
    _write_lines(target / ENTITY_LIST, (f"{name}\n" for name in entities))


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with gzip.open(tmp, "wt") if path.suffix == ".gz" else open(tmp, "w", encoding="utf-8") as out:
        out.writelines(lines)
    os.replace(tmp, path)


def ogb_negatives(
    folder: str | os.PathLike[str], split: str, kg: KnowledgeGraph
) -> tuple[np.ndarray, np.ndarray]:
    """OGB's fixed negatives of ``split`` (valid or test) of a converted ogbl-wikikg2 folder,
    as ``kg``'s entity ids: ``(head_neg [N, k], tail_neg [N, k])``, row ``i`` for the
    ``i``-th triple of ``kg``'s split (in the order of its file)."""
    import numpy as np

    folder = Path(folder).expanduser()
    path = folder / f"ogb_negatives_{split}.npz"
    if not path.is_file():
        raise DataError(f"'{folder}' has no {path.name}; convert the ogb folder again")
    names = (folder / ENTITY_LIST).read_text(encoding="utf-8").splitlines()
    lookup = kg.entity_to_id
    # node index -> kg id; a node that occurs in no triple is not one of kg's entities: -1
    to_id = np.array([lookup.get(name, -1) for name in names], dtype=np.int64)
    with np.load(path) as arrays:
        head, tail = to_id[arrays["head_neg"]], to_id[arrays["tail_neg"]]
    if len(head) != len(kg.splits[split]):
        raise DataError(
            f"{path}: {len(head)} rows of negatives for the {len(kg.splits[split])} {split} triples "
            f"of '{kg.name}' (duplicate lines dropped?); they must match one to one"
        )
    if (head < 0).any() or (tail < 0).any():
        raise DataError(f"{path}: a negative names an entity that is in no split of '{kg.name}'")
    return head, tail
