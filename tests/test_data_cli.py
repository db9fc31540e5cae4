"""`emu-dgl datasets ...` through click's runner on the command group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from emu_dgl.cli.datasets import datasets
from emu_dgl.data.catalogue import CATALOGUE


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMU_DGL_MIRROR", raising=False)
    monkeypatch.delenv("EMU_DGL_DATA", raising=False)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(datasets, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_info_json_fb15k237(real_data_dir: Path) -> None:
    code, out, _ = run("info", "fb15k-237", "--json", "--data-dir", str(real_data_dir))
    assert code == 0
    stats = json.loads(out)
    assert (stats["num_entities"], stats["num_relations"]) == (14_541, 237)
    assert (stats["num_train"], stats["num_valid"], stats["num_test"]) == (272_115, 17_535, 20_466)


def test_info_text_and_json_synthetic() -> None:
    code, out, _ = run("info", "synthetic")
    assert code == 0
    for word in ("entities", "relations", "unseen in train", "components", "top relations"):
        assert word in out
    code, out, _ = run("info", "synthetic", "--json")
    stats = json.loads(out)
    for key in ("num_entities", "num_relations", "num_train", "num_valid", "num_test"):
        assert isinstance(stats[key], int) and stats[key] > 0
    assert f"{stats['num_entities']:,}" in run("info", "synthetic")[1]


def test_info_of_a_folder_with_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "kg"
    folder.mkdir()
    (folder / "train.txt").write_text("a\tr\tb\na\tr\tb\nb\tr\tc\n")
    (folder / "valid.txt").write_text("a\tr\tc\n")
    (folder / "test.txt").write_text("c\tr\ta\n")
    code, out, _ = run("info", str(folder), "--json")
    assert code == 0
    assert json.loads(out)["duplicates_removed"]["train"] == 1


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    code, out, err = run("info", "no-such-dataset", "--data-dir", str(tmp_path))
    assert code == 2
    assert err.startswith("error: unknown dataset 'no-such-dataset'")
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.txt").write_text("a\tr\tb\nbroken line\n")
    (folder / "valid.txt").write_text("a\tr\tb\n")
    (folder / "test.txt").write_text("a\tr\tb\n")
    code, _, err = run("info", str(folder))
    assert code == 2
    assert "train.txt, line 2:" in err


def test_list_shows_presence(tmp_path: Path) -> None:
    (tmp_path / "wn18rr").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "wn18rr" / f"{split}.txt").write_text("a\tr\tb\n")
    code, out, _ = run("list", "--data-dir", str(tmp_path))
    assert code == 0
    table = out.split("sources")[0].splitlines()[2:]  # below the data root and the header
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert rows == {
        "synthetic": "generated",
        "wn18rr": "yes",
        **{name: "no" for name in CATALOGUE if name != "wn18rr"},
    }
    assert "nations.tar.gz" in out


def test_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data_dir: Path) -> None:
    archives = real_data_dir / "archives"
    if not (archives / "nations.tar.gz").is_file():
        pytest.skip("archives of the real datasets not found")
    monkeypatch.setenv("EMU_DGL_MIRROR", archives.as_uri())
    code, out, _ = run("download", "nations", "--data-dir", str(tmp_path))
    assert code == 0 and "ready" in out
    assert (tmp_path / "nations" / "train.txt").is_file()
    code, out, _ = run("download", "nations", "--data-dir", str(tmp_path))
    assert code == 0 and "already present" in out
    monkeypatch.setenv("EMU_DGL_MIRROR", "http://127.0.0.1:9/")
    code, _, err = run("download", "umls", "--data-dir", str(tmp_path))
    assert code == 2 and "http://127.0.0.1:9/umls.tar.gz" in err
    code, _, err = run("download", "nope", "--data-dir", str(tmp_path))
    assert code == 2 and "unknown dataset 'nope'" in err
