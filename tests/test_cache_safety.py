"""Caches validated by what they hold, and caches that cannot hang, lie or stop a run.

The dataset cache is keyed by the hash of the very bytes it parsed and holds checksums
bound to that key; the SANS cache holds its full key. A cache folder that cannot be
written degrades to an uncached run with one warning; a FIFO or a link at a cache path
is neither read (no hang) nor replaced.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.data import catalogue, io, load_directory
from emu_dgl.data.knowledge_graph import KnowledgeGraph
from emu_dgl.data.synthetic import generate_synthetic
from emu_dgl.graph import neighbourhood
from tests.run_helpers import write_dataset

OTHER_TRAIN = "x\tp\ty\ny\tp\tz\nz\tq\tx\n"


def _same_graph(a: KnowledgeGraph, b: KnowledgeGraph) -> bool:
    return (
        list(a.entity_names) == list(b.entity_names)
        and list(a.relation_names) == list(b.relation_names)
        and all(a.splits[s].equal(b.splits[s]) for s in ("train", "valid", "test"))
        and a.fingerprint == b.fingerprint
    )


def _cache_file(cache: Path) -> Path:
    (path,) = (p for p in cache.iterdir() if p.name.startswith("kg-"))
    return path


# ------------------------------------------------------------------ dataset cache
def test_a_split_file_replaced_during_a_load_does_not_poison_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = write_dataset(tmp_path / "kg"), tmp_path / "cache"
    train = folder / "train.txt"
    original = train.read_bytes()
    real_sha256 = io.file_sha256
    swapped = []

    def hash_then_replace(path: Path, **kwargs: object) -> str:
        digest = real_sha256(path, **kwargs)
        if path.name == "train.txt" and not swapped:  # replaced right after it was hashed
            swapped.append(True)
            path.write_text(OTHER_TRAIN)
        return digest

    monkeypatch.setattr(io, "file_sha256", hash_then_replace)
    load_directory(folder, cache_dir=cache)  # hashed the original, read the replacement
    monkeypatch.undo()
    assert swapped
    train.write_bytes(original)  # restored: every later load must see the original again
    expected = load_directory(folder, cache=False)
    assert _same_graph(load_directory(folder, cache_dir=cache), expected)
    assert _same_graph(load_directory(folder, cache_dir=cache), expected)  # (now cached)


@pytest.mark.parametrize("how", ["saved with the key", "bytes changed in place"])
def test_a_cache_file_rewritten_with_the_right_key_but_other_triples_is_rebuilt(
    tmp_path: Path, how: str
) -> None:
    folder, cache = write_dataset(tmp_path / "kg"), tmp_path / "cache"
    expected = load_directory(folder, cache_dir=cache)
    path = _cache_file(cache)
    if how == "saved with the key":  # another writer, with this dataset's key, other triples
        other = load_directory(write_dataset_text(tmp_path / "other", OTHER_TRAIN), cache=False)
        other.save(path, source_key=catalogue.splits_key(folder))
    else:  # one triple's tail id changed, header and key untouched
        blob = bytearray(path.read_bytes())
        for layout in (expected.train.t(), expected.train):  # [3, N] columns or [N, 3] rows
            data = np.ascontiguousarray(layout.numpy()).tobytes()
            at = bytes(blob).find(data)
            if at >= 0:
                break
        assert at >= 0, "the triples are not in the cache file"
        first = int(np.frombuffer(data[:8], dtype=np.int64)[0])
        blob[at : at + 8] = np.int64((first + 1) % expected.num_entities).tobytes()
        path.write_bytes(bytes(blob))
    again = load_directory(folder, cache_dir=cache)
    assert _same_graph(again, expected)


def write_dataset_text(folder: Path, train: str) -> Path:
    folder.mkdir(parents=True)
    for name in ("train", "valid", "test"):
        (folder / f"{name}.txt").write_text(train)
    return folder


@pytest.mark.parametrize("kind", ["fifo", "link"])
def test_a_fifo_or_a_link_at_the_dataset_cache_path_is_neither_read_nor_replaced(
    tmp_path: Path, kind: str
) -> None:
    folder, cache = write_dataset(tmp_path / "kg"), tmp_path / "cache"
    expected = load_directory(folder, cache_dir=cache)
    path = _cache_file(cache)
    victim = tmp_path / "victim.store"
    os.replace(path, victim)  # a valid cache file, outside the cache folder
    before = victim.read_bytes(), victim.stat().st_ino
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(victim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_directory(folder, cache_dir=cache)
    assert _same_graph(again, expected)
    assert [w for w in caught if "dataset cache" in str(w.message)], caught
    assert (victim.read_bytes(), victim.stat().st_ino) == before
    assert path.is_fifo() if kind == "fifo" else path.is_symlink()


# ------------------------------------------------------------------ SANS cache
def _sans(cache: Path, kg: KnowledgeGraph | None = None) -> neighbourhood.Neighbourhood:
    kg = kg or generate_synthetic()
    return neighbourhood.build_neighbourhood(
        kg.train, kg.num_entities, k=2, walks=5, seed=0, walk_mode="continue", cache_dir=cache
    )


def _sans_path(cache: Path) -> Path:
    kg = generate_synthetic()
    key = neighbourhood.neighbourhood_cache_key(
        kg.train, kg.num_entities, k=2, walks=5, seed=0, walk_mode="continue"
    )
    return neighbourhood._cache_path(cache, key, k=2, walks=5, walk_mode="continue")


_FIFO_SCRIPT = """
import sys, warnings
from pathlib import Path
from emu_dgl.data.synthetic import generate_synthetic
from emu_dgl.graph import neighbourhood
kg = generate_synthetic()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    neighbourhood.build_neighbourhood(
        kg.train, kg.num_entities, k=2, walks=5, seed=0, walk_mode="continue",
        cache_dir=Path(sys.argv[1]),
    )
print(len([w for w in caught if "cache" in str(w.message)]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "link to a fifo"])
def test_a_fifo_at_the_sans_cache_path_does_not_hang_the_run(tmp_path: Path, kind: str) -> None:
    cache = tmp_path / "neighbourhoods"
    cache.mkdir()
    path = _sans_path(cache)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkfifo(tmp_path / "fifo")
        path.symlink_to(tmp_path / "fifo")
    done = subprocess.run(
        [sys.executable, "-c", _FIFO_SCRIPT, str(cache)],
        capture_output=True,
        text=True,
        timeout=120,  # the old code blocked forever opening the FIFO for reading
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1", done.stdout + done.stderr  # one warning, not one per step
    assert os.path.islink(path) if kind != "fifo" else path.is_fifo()


def test_a_sans_cache_link_is_not_read_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "neighbourhoods"
    built = _sans(cache)
    path = _sans_path(cache)
    victim = tmp_path / "elsewhere.pt"
    os.replace(path, victim)
    path.symlink_to(victim)
    before = victim.read_bytes(), victim.stat().st_ino
    calls = []
    real_walk = neighbourhood.random_walk_neighbourhood
    monkeypatch.setattr(
        neighbourhood,
        "random_walk_neighbourhood",
        lambda *a, **k: calls.append(1) or real_walk(*a, **k),
    )
    with pytest.warns(RuntimeWarning, match="symbolic link"):
        again = _sans(cache)
    assert calls, "the candidates were read through the link instead of built"
    assert again.indices.equal(built.indices) and again.indptr.equal(built.indptr)
    assert (victim.read_bytes(), victim.stat().st_ino) == before and path.is_symlink()


def test_a_sans_cache_file_of_another_key_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "neighbourhoods"
    kg = generate_synthetic()
    # The same entities and parameters, other training triples: another key.
    other = KnowledgeGraph(
        name="other",
        entity_names=kg.entity_names,
        relation_names=kg.relation_names,
        train=kg.train.flip(0)[: len(kg.train) // 2],
        valid=kg.valid,
        test=kg.test,
    )
    foreign = _sans(cache, other)
    (foreign_file,) = cache.iterdir()
    os.replace(foreign_file, _sans_path(cache))  # planted under this graph's key
    with pytest.warns(RuntimeWarning, match="other training triples"):
        got = _sans(cache, kg)
    expected = _sans(tmp_path / "fresh", kg)
    assert got.indices.equal(expected.indices) and not got.indices.equal(foreign.indices)


# ------------------------------------------------------------------ unwritable caches
def _unwritable(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Every cache write fails as on a read-only or a full file system."""
    from emu_dgl import files

    real = files.temporary_beside

    def failing(path: Path, what: str):  # noqa: ANN202
        if "cache" not in what:
            return real(path, what)
        if how == "read-only":
            raise files.write_error(OSError(errno.EROFS, "Read-only file system"), path, what)
        fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        return fd, path.with_name(f".{path.name}.full.tmp")

    monkeypatch.setattr(files, "temporary_beside", failing)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["read-only", "full"])
def test_an_unwritable_cache_folder_degrades_to_an_uncached_run_with_one_warning_per_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    from emu_dgl.config import load_config
    from emu_dgl.training.trainer import Trainer

    folder = write_dataset(tmp_path / "kg")
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "neighbourhoods").mkdir(parents=True)
    _unwritable(monkeypatch, how)
    config = load_config(
        None,
        [
            f"dataset.name={folder}",
            "model.name=distmult",
            "model.dim=8",
            "sampler.name=sans",
            "sampler.walks=5",
            "sampler.num_negatives=4",
            "train.batch_size=64",
            "train.max_steps=4",
            "train.valid_every=2",
            "train.progress=false",
            "train.threads=1",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Trainer(config, tmp_path / "run").fit()
    assert result["steps"] == 4
    messages = [str(w.message) for w in caught]
    assert len([m for m in messages if "dataset cache" in m]) == 1, messages
    assert len([m for m in messages if "neighbourhood cache" in m]) == 1, messages
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    assert torch.isfinite(torch.tensor(result["valid"]["mrr"]))
