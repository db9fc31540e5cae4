"""Caches go to the cache folder ($EMU_DGL_CACHE, else the user cache), never into the data root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu_dgl.cli import main
from emu_dgl.data import generate_synthetic
from tests.run_helpers import write_dataset


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of its content (folders: empty)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else ""
        for path in sorted(root.rglob("*"))
    }


def test_a_run_leaves_the_data_root_unchanged_and_caches_in_the_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, cache = tmp_path / "data", tmp_path / "xdg" / "emu-dgl" / "processed"
    write_dataset(data / "toy")  # a writable data root: a cache could go there, and must not
    monkeypatch.delenv("EMU_DGL_CACHE")  # the default: the user cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    before = _snapshot(data)
    run = tmp_path / "run"
    args = [
        "--set",
        "train.max_steps=4",
        "--set",
        "train.valid_every=2",
        "--set",
        "train.threads=1",
    ]
    args += [
        "--set",
        "sampler.name=sans",
        "--set",
        "sampler.walks=5",
        "--set",
        "train.progress=false",
    ]
    for command in (
        ["train", "--data-dir", str(data), "--set", "dataset.name=toy", "--out", str(run), *args],
        ["evaluate", str(run), "--device", "cpu"],
        ["export", str(run), "--out", str(tmp_path / "export")],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    assert _snapshot(data) == before  # not one file added, removed or changed
    assert len(list(cache.glob("kg-*.store"))) == 1  # the parsed graph, read again by evaluate
    assert len(list((cache / "neighbourhoods").glob("neighbourhood-*.pt"))) == 1


def test_build_sampler_reuses_the_cached_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from emu_dgl.sampling import build_sampler

    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    kg = generate_synthetic()
    options = {"train": kg.train, "num_entities": kg.num_entities, "num_negatives": 8, "walks": 20}
    first = build_sampler("sans", **options)
    err = capsys.readouterr().err
    assert "building SANS candidates (continue walks, k=3, w=20)" in err
    files = list((tmp_path / "cache" / "neighbourhoods").glob("*.pt"))
    assert len(files) == 1 and f"cached at {files[0]}" in err
    files[0].touch()
    stamp = files[0].stat().st_mtime_ns
    second = build_sampler("sans", **options)  # from the cache: nothing built, nothing said
    assert capsys.readouterr().err == ""
    assert files[0].stat().st_mtime_ns == stamp
    assert second.neighbourhood.indices.equal(first.neighbourhood.indices)
    build_sampler("sans", **options, cache=False, announce=False)
    assert list((tmp_path / "cache" / "neighbourhoods").glob("*.pt")) == files
