"""A run's records: JSON and text files written atomically, and what the run stores about
its data (``data.json``), with the mapping of the current files onto the run's ids.

The entity and relation names (in id order) and a fingerprint of the splits are stored with
the run; evaluation, prediction, export and resume map the current files onto those ids by
name and refuse data whose content changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from emu_dgl.errors import DataError, RunError
from emu_dgl.files import read_text, write_atomic

__all__ = [
    "DATA_FILE",
    "data_record",
    "dump_data_record",
    "match_data",
    "read_data_record",
    "read_json",
    "truncate_log",
    "write_text",
]

DATA_FILE = "data.json"


def write_text(path: Path, text: str, what: str, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with UTF-8 ``text`` (see :mod:`emu_dgl.files`)."""
    write_atomic(path, text, what, durable=durable)


def read_json(path: Path, what: str) -> Any:
    """A JSON file of the run (links and hard-linked files refused), or a RunError naming it."""
    text = read_text(path, what, single_link=True)
    try:
        return json.loads(text)
    except ValueError:
        raise RunError(
            f"the {what} '{path}' is not valid JSON (cut short or edited); it is not the file emu-dgl wrote"
        ) from None


def data_record(kg: Any, *, names: bool = True) -> dict[str, Any]:
    """What a run stores about its data: names in id order, split sizes and hashes,
    fingerprint (without the names when ``names`` is False: see :func:`dump_data_record`)."""
    return {
        "dataset": kg.name,
        "fingerprint": kg.fingerprint,
        "entities": list(kg.entity_names) if names else None,
        "relations": list(kg.relation_names) if names else None,
        # (a graph's split_sha256 is this hash, kept by a dataset cache: no sort of the triples)
        "splits": {
            split: {"triples": len(t), "sha256": kg.split_sha256(split)}
            for split, t in kg.splits.items()
        },
    }


def dump_data_record(kg: Any, handle: IO[bytes]) -> None:
    """``json.dumps(data_record(kg)) + "\\n"``, written name chunk by name chunk: the names
    of a graph of millions of entities are never all Python strings at once."""
    record = data_record(kg, names=False)

    def member(key: str) -> bytes:
        return f"{json.dumps(key)}: {json.dumps(record[key])}".encode()

    def names(values: Any) -> None:
        handle.write(b"[")
        for start in range(0, len(values), _NAME_CHUNK):
            chunk = values[start : start + _NAME_CHUNK]
            handle.write(
                (", " if start else "").encode() + ", ".join(map(json.dumps, chunk)).encode()
            )
        handle.write(b"]")

    handle.write(b"{" + member("dataset") + b", " + member("fingerprint") + b', "entities": ')
    names(kg.entity_names)
    handle.write(b', "relations": ')
    names(kg.relation_names)
    handle.write(b", " + member("splits") + b"}\n")


_NAME_CHUNK = 1 << 16


def read_data_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``data.json`` (None for runs saved before it existed), its types checked."""
    path = Path(run_dir) / DATA_FILE
    if not os.path.lexists(path):
        return None
    record = read_json(path, "data record")
    names_ok = isinstance(record, dict) and all(
        isinstance(record.get(key), list) and all(isinstance(n, str) for n in record[key])
        for key in ("entities", "relations")
    )
    splits = record.get("splits", {}) if isinstance(record, dict) else None
    if (
        not names_ok
        or not isinstance(record.get("fingerprint"), str)
        or not isinstance(splits, dict)
        or not all(
            isinstance(info, dict)
            and isinstance(info.get("triples"), int)
            and isinstance(info.get("sha256"), str)
            for info in splits.values()
        )
    ):
        raise RunError(
            f"'{path}' is not an emu-dgl data record (a field is missing or of the wrong type); "
            "restore the file emu-dgl wrote, the run's vocabulary is in it"
        )
    return record


def match_data(kg: Any, record: dict[str, Any] | None, run_dir: Path) -> Any:
    """``kg`` with the ids the run was trained with, or a DataError if its content changed.

    Ids come from the order of lines in the files, so a reordered but otherwise equal
    file gives other ids: the graph is then re-indexed by name onto the run's
    vocabulary. Different names or different triples are refused.
    """
    if record is None or kg.fingerprint == record["fingerprint"]:
        return kg
    what = f"dataset '{kg.name}' is not the data run '{run_dir}' was trained on"
    entities, relations = record["entities"], record["relations"]
    for kind, now, then in (
        ("entity", kg.entity_names, entities),
        ("relation", kg.relation_names, relations),
    ):
        if set(now) != set(then):
            extra = sorted(set(now) - set(then))[:2]
            missing = sorted(set(then) - set(now))[:2]
            detail = (
                f"new {kind} names such as {extra}"
                if extra
                else f"{kind} names such as {missing} are gone"
            )
            raise DataError(f"{what}: {detail}; evaluate with the files it was trained on")
    remapped = kg.reindexed(entities, relations)
    if remapped.fingerprint == record["fingerprint"]:
        return remapped
    changed = [
        f"{split} ({info['triples']} triples then, {len(remapped.splits[split])} now)"
        for split, info in record.get("splits", {}).items()
        if split in remapped.splits and remapped.split_sha256(split) != info["sha256"]
    ]
    raise DataError(
        f"{what}: the triples of {', '.join(changed) or 'a split'} changed; use the files it was trained on"
    )


def truncate_log(path: Path, after_step: int) -> None:
    """On resume, drop the log lines (``metrics.jsonl`` at ``path``) the interrupted run
    wrote after its checkpoint, a last line the kill cut in half, and any line that is not a
    record of a step."""
    from emu_dgl.files import lexists, read_bytes

    if not lexists(path):
        return
    kept = []
    for line in read_bytes(path, "metrics log").decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step <= after_step:
            kept.append(line)
    write_text(path, "".join(ln + "\n" for ln in kept), "metrics log")
