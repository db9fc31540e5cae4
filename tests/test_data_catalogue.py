"""Data root, processed-cache location, downloads through EMU_DGL_MIRROR, safe unpacking."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from emu_dgl.data import (
    CATALOGUE,
    CatalogueEntry,
    archive_url,
    cache_root,
    data_root,
    download_dataset,
    load_dataset,
)
from emu_dgl.data.catalogue import extract_splits
from emu_dgl.errors import DataError

SPLIT_TEXT = {"train.txt": b"a\tr\tb\n", "valid.txt": b"b\tr\ta\n", "test.txt": b"a\tr\ta\n"}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMU_DGL_MIRROR", raising=False)
    monkeypatch.delenv("EMU_DGL_DATA", raising=False)


@pytest.fixture
def archives(real_data_dir: Path) -> Path:
    folder = real_data_dir / "archives"
    if not (folder / "nations.tar.gz").is_file():
        pytest.skip("archives of the real datasets not found")
    return folder


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> CatalogueEntry:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CatalogueEntry(path.name.split(".")[0], path.name, digest, "test archive")


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


# ---------------------------------------------------------------- locations
def test_data_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMU_DGL_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("EMU_DGL_DATA")
    checkout = Path(__file__).resolve().parents[1]
    expected = (
        checkout / "datasets"
        if (checkout / "pyproject.toml").is_file() and (checkout / "datasets").is_dir()
        else tmp_path / "xdg" / "emu-dgl" / "datasets"
    )
    assert data_root() == expected


def test_user_cache_fallback_outside_a_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from emu_dgl.data import catalogue

    monkeypatch.setattr(catalogue, "_source_checkout_datasets", lambda: None)
    assert data_root() == tmp_path / "xdg" / "emu-dgl" / "datasets"


def test_cache_root_is_emu_dgl_cache_else_the_user_cache_never_the_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cache_root() == tmp_path / "cache"  # EMU_DGL_CACHE wins
    monkeypatch.delenv("EMU_DGL_CACHE")
    monkeypatch.setenv("EMU_DGL_DATA", str(tmp_path / "root"))  # a writable data root ...
    assert cache_root() == tmp_path / "xdg" / "emu-dgl" / "processed"  # ... is still not used
    root = tmp_path / "root" / "tiny"
    root.mkdir(parents=True)
    for name, text in SPLIT_TEXT.items():
        (root / name).write_bytes(text)
    load_dataset("tiny")
    assert sorted(p.name for p in (tmp_path / "root").rglob("*")) == sorted(["tiny", *SPLIT_TEXT])
    assert len(list((tmp_path / "xdg" / "emu-dgl" / "processed").glob("kg-*.store"))) == 1


def test_emu_dgl_cache_pointing_at_a_file_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("EMU_DGL_CACHE", str(tmp_path / "file"))
    with pytest.raises(
        DataError, match="EMU_DGL_CACHE is '.*file', which is a file; point it at a folder"
    ):
        load_dataset("synthetic:entities=50,triples=200")


def test_mirror_variants(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = CATALOGUE["nations"]
    assert archive_url(entry) == "https://github.com/TimDettmers/ConvE/raw/master/nations.tar.gz"
    monkeypatch.setenv("EMU_DGL_MIRROR", "https://example.org/kg")
    assert archive_url(entry) == "https://example.org/kg/nations.tar.gz"
    monkeypatch.setenv("EMU_DGL_MIRROR", str(tmp_path))
    assert archive_url(entry) == (tmp_path / "nations.tar.gz").as_uri()


def test_catalogue_table() -> None:
    assert list(CATALOGUE)[:5] == ["fb15k-237", "wn18rr", "nations", "kinship", "umls"]
    assert CATALOGUE["umls"].sha256 == (
        "26223aa91f0ec8db2324e0f489b9a4425e04d1d0df72ce5cfd62af4b91aee6fd"
    )
    archives = [e for e in CATALOGUE.values() if e.archive]
    assert all(len(e.sha256) == 64 or e.git_blob for e in archives)  # see test_datasets_more


# ---------------------------------------------------------------- downloads
def test_download_nations_from_file_mirror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, archives: Path
) -> None:
    monkeypatch.setenv("EMU_DGL_MIRROR", archives.as_uri())
    root = tmp_path / "empty-root"
    kg = load_dataset("nations", data_dir=root)
    assert (kg.num_entities, kg.num_relations) == (14, 55)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (1592, 199, 201)
    assert sorted(p.name for p in (root / "nations").iterdir()) == [
        "test.txt",
        "train.txt",
        "valid.txt",
    ]  # the archive and any staging files are gone
    # present now: no network needed any more
    monkeypatch.setenv("EMU_DGL_MIRROR", "http://127.0.0.1:9/")
    assert load_dataset("nations", data_dir=root).fingerprint == kg.fingerprint


def test_tampered_archive_is_rejected_and_deleted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, archives: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((archives / "nations.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (mirror / "nations.tar.gz").write_bytes(bytes(data))
    monkeypatch.setenv("EMU_DGL_MIRROR", mirror.as_uri())
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        download_dataset("nations", root)
    message = str(info.value)
    assert "checksum mismatch" in message and "deleted" in message
    assert CATALOGUE["nations"].sha256 in message
    assert not (root / "nations").exists()  # nothing half-downloaded is left
    # a folder the user made beforehand is kept, but emptied of the download
    (root / "nations").mkdir(parents=True)
    with pytest.raises(DataError, match="checksum mismatch"):
        download_dataset("nations", root)
    assert list((root / "nations").iterdir()) == []


def test_no_network_names_url_and_manual_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMU_DGL_MIRROR", "http://127.0.0.1:9/")
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        load_dataset("kinship", data_dir=root)
    message = str(info.value)
    assert "http://127.0.0.1:9/kinship.tar.gz" in message
    assert str(root / "kinship") in message and "train.txt" in message
    assert "\n" not in message
    assert not (root / "kinship").exists()


def test_download_false_and_read_only_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="datasets download umls"):
        load_dataset("umls", data_dir=tmp_path, download=False)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        with pytest.raises(DataError, match="read-only"):
            download_dataset("umls", read_only)
    finally:
        read_only.chmod(0o755)


def test_download_through_catalogue_with_nested_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    members = [regular(f"toy/{name}", data) for name, data in SPLIT_TEXT.items()]
    entry = make_tar(mirror / "toy.tar.gz", [*members, regular("toy/README", b"hi")])
    monkeypatch.setitem(CATALOGUE, "toy", entry)
    monkeypatch.setenv("EMU_DGL_MIRROR", str(mirror))  # a plain folder works too
    kg = load_dataset("toy", data_dir=tmp_path / "root")
    assert kg.entity_names == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "root" / "toy").iterdir()) == [
        "test.txt",
        "train.txt",
        "valid.txt",
    ]


# ---------------------------------------------------------------- unpacking
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (regular("/tmp/evil.txt", b"x"), "absolute path"),
        (regular("../evil.txt", b"x"), "'..'"),
        (regular("data/../../evil.txt", b"x"), "'..'"),
        (link("data/escape", "../../etc/passwd"), "outside"),
        (link("escape", "/etc/passwd"), "absolute"),
        (link("hard", "../outside", hard=True), "outside"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, bad: tuple, reason: str) -> None:
    members = [regular(name, data) for name, data in SPLIT_TEXT.items()]
    archive = tmp_path / "evil.tar.gz"
    make_tar(archive, [*members, bad])
    target = tmp_path / "out" / "target"
    target.mkdir(parents=True)
    with pytest.raises(DataError) as info:
        extract_splits(archive, target)
    assert "refusing to unpack unsafe member" in str(info.value)
    assert reason in str(info.value)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_link_inside_the_archive_is_fine(tmp_path: Path) -> None:
    members = [regular(f"d/{name}", data) for name, data in SPLIT_TEXT.items()]
    archive = tmp_path / "ok.tar.gz"
    make_tar(archive, [*members, link("d/alias", "train.txt"), link("d/sub/up", "../train.txt")])
    target = tmp_path / "target"
    target.mkdir()
    extract_splits(archive, target)
    assert (target / "train.txt").read_bytes() == SPLIT_TEXT["train.txt"]
    assert sorted(p.name for p in target.iterdir()) == ["test.txt", "train.txt", "valid.txt"]


def test_unsafe_archive_through_download_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    members = [regular(name, data) for name, data in SPLIT_TEXT.items()]
    entry = make_tar(mirror / "evil.tar.gz", [*members, regular("../../pwned.txt", b"x")])
    monkeypatch.setitem(CATALOGUE, "evil", entry)
    monkeypatch.setenv("EMU_DGL_MIRROR", mirror.as_uri())
    with pytest.raises(DataError, match="unsafe member"):
        download_dataset("evil", tmp_path / "root")
    assert not (tmp_path / "root" / "evil").exists()
    assert not (tmp_path / "pwned.txt").exists()


def test_archive_without_splits_or_not_a_tar(tmp_path: Path) -> None:
    archive = tmp_path / "partial.tar.gz"
    make_tar(archive, [regular("train.txt", b"a\tr\tb\n")])
    with pytest.raises(DataError, match=r"archive has no valid\.txt, test\.txt"):
        extract_splits(archive, tmp_path)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match="not a readable tar archive"):
        extract_splits(junk, tmp_path)


def test_real_archives_unpack_to_the_shared_split_files(tmp_path: Path, archives: Path) -> None:
    for name in ("nations", "wn18rr"):
        entry = CATALOGUE[name]
        archive = archives / entry.archive
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == entry.sha256
        target = tmp_path / name
        target.mkdir()
        extract_splits(archive, target)
        for split in ("train.txt", "valid.txt", "test.txt"):
            assert (target / split).read_bytes() == (archives.parent / name / split).read_bytes()
