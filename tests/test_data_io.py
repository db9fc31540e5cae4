"""Split-file parsing, its error messages, and the processed cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from emu_dgl.data import load_dataset, load_directory, prepared, read_split
from emu_dgl.errors import DataError

GOOD = "a\tr\tb\nb\tr\tc\n"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMU_DGL_MIRROR", raising=False)


def write_dataset(folder: Path, train: str = GOOD, valid: str = GOOD, test: str = GOOD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_bytes(text.encode("utf-8"))
    return folder


def test_reads_crlf_blank_lines_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes(b'a\t"r\tb\r\n\r\nc\tr2\td e\r\n   \n')
    assert read_split(path).tolist() == [["a", '"r', "b"], ["c", "r2", "d e"]]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a\tr\tb\nc\tr\n", 2, "found 2"),  # too few fields
        ("a\tr\tb\nc\tr\td\te\n", 2, "found 4"),  # too many
        ("a\tr\tb\td\nc\tr\td\n", 1, "found 4"),  # too many on the first line
        ("a\tr\tb\n\nc\tr\td\t\n", 3, "found 4"),  # trailing tab (after a blank line)
        ("a\tr\tb\nc\t\td\n", 2, "empty field"),  # empty relation
        ("a\tr\tb\nx\ty\tz\nc d e\n", 3, "found 1"),  # spaces instead of tabs
        ("a\tr\tb\r\nc\tr\r\n", 2, "found 2"),  # CRLF file
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    folder = write_dataset(tmp_path / "kg", valid=text)
    with pytest.raises(DataError) as info:
        load_directory(folder)
    message = str(info.value)
    assert f"valid.txt, line {line}:" in message
    assert reason in message
    assert "\n" not in message


def test_missing_and_empty_split_files(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "kg")
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match=r"test\.txt: split file not found"):
        load_directory(folder)
    (folder / "test.txt").write_text("")
    with pytest.raises(DataError, match=r"test\.txt: split file is empty"):
        load_directory(folder)
    (folder / "test.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"test\.txt: split file has no triples"):
        load_directory(folder)


def test_not_utf8(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "kg")
    (folder / "train.txt").write_bytes(b"a\tr\t\xff\xfe\n")
    with pytest.raises(
        DataError, match=r"train\.txt, line 1: not UTF-8 text \(byte 0xff at byte offset 4 "
    ):
        load_directory(folder)


def test_path_and_name_resolution_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder not found"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(DataError) as info:
        load_dataset("fb15k-238", data_dir=tmp_path)
    message = str(info.value)
    assert "unknown dataset 'fb15k-238'" in message
    for name in ("fb15k-237", "wn18rr", "nations", "kinship", "umls", "synthetic"):
        assert name in message


def test_folder_path_and_data_root_name(tmp_path: Path) -> None:
    write_dataset(tmp_path / "root" / "mykg")
    by_path = load_dataset(tmp_path / "root" / "mykg")
    by_name = load_dataset("mykg", data_dir=tmp_path / "root")
    assert by_path.name == by_name.name == "mykg"
    assert by_path.fingerprint == by_name.fingerprint
    assert by_path.entity_names == ["a", "b", "c"]


def test_cache_is_used_and_keyed_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_dataset(tmp_path / "kg")
    cache = tmp_path / "cache"
    first = load_directory(folder, cache_dir=cache)
    files = list(cache.glob("kg-*.store"))
    assert len(files) == 1
    assert not [p for p in cache.iterdir() if p.suffix != ".store"]  # no temporary files left

    def no_parsing(paths: object, **kwargs: object) -> None:
        raise AssertionError(f"parsed {paths} although the cache holds it")

    monkeypatch.setattr(prepared, "parse_directory", no_parsing)
    again = load_directory(folder, cache_dir=cache)
    assert again.fingerprint == first.fingerprint
    # changing one file changes the key: it is parsed again
    (folder / "test.txt").write_text("a\tr\tc\n")
    monkeypatch.undo()
    changed = load_directory(folder, cache_dir=cache)
    assert changed.test.tolist() == [[0, 0, 2]]
    assert len(list(cache.glob("kg-*.store"))) == 2


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "kg")
    cache = tmp_path / "cache"
    kg = load_directory(folder, cache_dir=cache)
    (path,) = cache.glob("kg-*.store")
    path.write_bytes(b"not a cache file")
    assert load_directory(folder, cache_dir=cache).fingerprint == kg.fingerprint
    assert path.stat().st_size > 100  # rewritten


def test_unwritable_cache_only_warns(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "kg")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        kg = load_directory(folder, cache_dir=blocker / "cache")
    assert kg.num_entities == 3


def test_cache_off(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "kg")
    load_dataset(folder, cache=False)
    assert not (tmp_path / "cache").exists()
