"""More datasets (issue 24): the catalogue entries of CoDEx, FB15k, WN18 and YAGO3-10 (each
with its source, size, licence and a checksum per file), downloads of split files checked
by sha256 or by git blob id, ``datasets list``, and the converter for Wikidata5M and
ogbl-wikikg2 folders (ogb's layout), on tiny synthetic folders."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.data import load_dataset
from emu_dgl.data.catalogue import CATALOGUE, download_dataset
from emu_dgl.data.convert import convert, ogb_negatives
from emu_dgl.data.entries import CatalogueEntry, SourceFile, git_blob_id
from emu_dgl.errors import DataError
from tests.run_helpers import assert_one_line, invoke

NEW = ("codex-s", "codex-m", "codex-l", "fb15k", "wn18", "yago3-10")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMU_DGL_MIRROR", raising=False)
    monkeypatch.delenv("EMU_DGL_DATA", raising=False)


def test_every_entry_says_where_it_comes_from_and_how_it_is_checked() -> None:
    assert set(NEW) <= set(CATALOGUE)
    for entry in CATALOGUE.values():
        assert entry.base_url.startswith("https://") and entry.licence and entry.source
        entities, relations, train, valid, test = entry.counts
        assert entities > 0 and relations > 0 and min(train, valid, test) > 0
        files = entry.files or (
            SourceFile("archive", entry.archive, entry.sha256, entry.size, entry.git_blob),
        )
        assert not (entry.files and entry.archive)  # one kind or the other
        if entry.files:
            assert sorted(f.split for f in entry.files) == ["test", "train", "valid"]
        for source in files:
            if source.sha256:  # pinned: the sha256 of the exact bytes, and their size
                assert re.fullmatch(r"[0-9a-f]{64}", source.sha256) and source.size
            else:  # not pinned: checked by git blob id instead, and the entry says so
                assert re.fullmatch(r"[0-9a-f]{40}", source.git_blob), entry.name
                assert "sha256 not pinned" in entry.note and "git blob id" in entry.note
        if entry.files:  # split files come from a fixed commit of their repository
            assert "3132e42" in entry.base_url or "9e39245" in entry.base_url


def test_git_blob_id_is_gits_own(tmp_path: Path) -> None:
    empty, hello = tmp_path / "empty", tmp_path / "hello"
    empty.write_bytes(b"")
    hello.write_bytes(b"hello\n")
    assert git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    assert git_blob_id(hello) == "ce013625030ba8dba906f756967f9e9ca394464a"
    if shutil.which("git"):
        data = tmp_path / "data"
        data.write_bytes(bytes(range(256)) * 1000)
        done = subprocess.run(["git", "hash-object", str(data)], capture_output=True, text=True)
        assert git_blob_id(data) == done.stdout.strip()


def _files_entry(mirror: Path, *, tamper: str | None = None) -> CatalogueEntry:
    """A files entry served from ``mirror``: train checked by git blob id, the others by sha256."""
    text = {
        "train": "a\tr\tb\nb\tr\tc\nc\tr\ta\n",
        "valid": "a\tr\tc\n",
        "test": "b\tr\ta\n",
    }
    files = []
    for split, body in text.items():
        path = mirror / "g" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        if split == "train":
            files.append(SourceFile(split, f"g/{split}.txt", git_blob=git_blob_id(path)))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files.append(SourceFile(split, f"g/{split}.txt", digest, path.stat().st_size))
        if tamper == split:
            path.write_text(body.replace("a", "x"))
    return CatalogueEntry("tiny", "", "", "test", base_url=mirror.as_uri(), files=tuple(files))


@pytest.mark.parametrize("tamper", [None, "train", "valid"])
def test_a_files_entry_downloads_each_split_and_checks_it(
    tamper: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    entry = _files_entry(tmp_path / "mirror", tamper=tamper)
    monkeypatch.setitem(CATALOGUE, "tiny", entry)
    root = tmp_path / "root"
    if tamper is None:
        folder = download_dataset("tiny", root)
        kg = load_dataset("tiny", root)
        assert (len(kg.train), len(kg.valid), len(kg.test)) == (3, 1, 1)
        assert sorted(p.name for p in folder.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
        said = capsys.readouterr().err
        assert "verified: sha256 where pinned, else git blob id" in said
        assert "git blob id " in said and "sha256 " in said  # the unpinned file's sha256 shown
        return
    kind = "git blob id" if tamper == "train" else "sha256"
    with pytest.raises(DataError, match=f"checksum mismatch for .*{tamper}.txt: expected {kind}"):
        download_dataset("tiny", root)
    assert not root.exists()  # nothing half-downloaded is left


def test_datasets_list_shows_sizes_and_licences() -> None:
    result = invoke("datasets", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    for name in NEW:
        entry = CATALOGUE[name]
        assert name in rows and entry.licence in rows[name], name
        assert f"{entry.counts[0]:,}" in rows[name]
    assert "668.0 kB" in rows["codex-s"] and "3.5 MB" in rows["fb15k-237"]
    assert "not pinned" in rows["yago3-10"]
    assert "Wikidata5M, ogbl-wikikg2" in result.output and "datasets convert" in result.output


# ------------------------------------------------------------------------- converters


def test_wikidata5m_folder_converts(tmp_path: Path) -> None:
    source = tmp_path / "wikidata5m"
    source.mkdir()
    lines = {
        "train": "Q1\tP31\tQ5\nQ2\tP31\tQ5\nQ1\tP17\tQ2\n",
        "valid": "Q2\tP17\tQ1\n",
        "test": "Q5\tP31\tQ1\n",
    }
    for split, text in lines.items():
        (source / f"wikidata5m_transductive_{split}.txt").write_text(text)
    out = convert(source, tmp_path / "out")
    kg = load_dataset(str(out), cache=False)
    assert (kg.num_entities, kg.num_relations, len(kg.train)) == (3, 2, 3)
    assert (out / "valid.txt").read_text() == lines["valid"]  # the lines, as they were
    with pytest.raises(DataError, match="already holds train.txt"):
        convert(source, out)


def _ogb_folder(root: Path, *, mapping: bool) -> dict[str, dict[str, np.ndarray]]:
    """ogbl-wikikg2 in ogb's layout, tiny: 6 nodes, 2 relation types, 3 negatives per side."""
    rng = np.random.default_rng(0)
    splits = {
        "train": {
            "head": np.array([0, 1, 2, 3, 4]),
            "relation": np.array([0, 1, 0, 1, 0]),
            "tail": np.array([1, 2, 3, 4, 5]),
        },
        "valid": {"head": np.array([5, 0]), "relation": np.array([1, 1]), "tail": np.array([0, 3])},
        "test": {"head": np.array([2, 4]), "relation": np.array([0, 0]), "tail": np.array([0, 1])},
    }
    (root / "split" / "time").mkdir(parents=True)
    for split, data in splits.items():
        if split != "train":
            data["head_neg"] = rng.integers(0, 6, (2, 3))
            data["tail_neg"] = rng.integers(0, 6, (2, 3))
        torch.save(data, root / "split" / "time" / f"{split}.pt")
    if mapping:
        (root / "mapping").mkdir()
        with gzip.open(root / "mapping" / "nodeidx2entityid.csv.gz", "wt") as out:
            out.write("node idx,entity id\n" + "".join(f"{i},Q{100 + i}\n" for i in range(6)))
        with gzip.open(root / "mapping" / "reltype2relid.csv.gz", "wt") as out:
            out.write("reltype,rel id\n0,P31\n1,P17\n")
    return splits


@pytest.mark.parametrize("mapping", [True, False])
def test_ogbl_wikikg2_folder_converts_with_its_fixed_negatives(
    mapping: bool, tmp_path: Path
) -> None:
    splits = _ogb_folder(tmp_path / "ogbl_wikikg2", mapping=mapping)
    out = convert(tmp_path / "ogbl_wikikg2", tmp_path / "out")
    kg = load_dataset(str(out), cache=False)
    entity = (lambda i: f"Q{100 + i}") if mapping else (lambda i: f"e{i}")
    relation = (lambda r: ["P31", "P17"][r]) if mapping else (lambda r: f"r{r}")
    for split, data in splits.items():
        expected = [
            (entity(h), relation(r), entity(t))
            for h, r, t in zip(data["head"], data["relation"], data["tail"], strict=True)
        ]
        got = [
            (kg.entity_names[h], kg.relation_names[r], kg.entity_names[t])
            for h, r, t in kg.splits[split].tolist()
        ]
        assert got == expected, split
    head, tail = ogb_negatives(out, "test", kg)
    names = [[kg.entity_names[i] for i in row] for row in head.tolist()]
    assert names == [[entity(i) for i in row] for row in splits["test"]["head_neg"].tolist()]
    assert tail.shape == (2, 3)


def test_the_convert_command_and_its_errors(tmp_path: Path) -> None:
    _ogb_folder(tmp_path / "ogb", mapping=True)
    result = invoke("datasets", "convert", tmp_path / "ogb", "--out", tmp_path / "d")
    assert result.exit_code == 0 and "ogbl-wikikg2: wrote" in result.output
    assert_one_line(
        invoke("datasets", "convert", tmp_path, "--out", tmp_path / "e"),
        "holds neither Wikidata5M",
    )
    (tmp_path / "bad" / "split" / "time").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (tmp_path / "bad" / "split" / "time" / f"{split}.pt").write_bytes(b"not a pickle")
    assert_one_line(
        invoke("datasets", "convert", tmp_path / "bad", "--out", tmp_path / "f"),
        "not an ogb split file",
    )


@pytest.mark.slow
def test_a_run_on_a_converted_ogb_folder_evaluates_with_ogbs_negatives(tmp_path: Path) -> None:
    import json

    _ogb_folder(tmp_path / "ogb", mapping=True)
    convert(tmp_path / "ogb", tmp_path / "data" / "wikikg2")
    run = tmp_path / "run"
    sets = ["train.max_steps=10", "train.progress=false", "train.threads=1", "model.dim=8"]
    args = [
        a for x in ["dataset.name=wikikg2", "sampler.num_negatives=4", *sets] for a in ("--set", x)
    ]
    assert invoke("train", "--out", run, "--data-dir", tmp_path / "data", *args).exit_code == 0
    result = invoke("evaluate", run, "--protocol", "given", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["test"]
    assert metrics["protocol"] == "given" and metrics["num_negatives"] == 3
    table = invoke("evaluate", run, "--protocol", "given")
    assert "protocol: OGB's, against the 3 fixed negatives" in table.stdout
