"""Bulk parsing and the memory-mapped dataset cache: the same graph as a line-by-line reader,
the same graph cached or not, and the cache's arrays mapped rather than copied."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.data import load_directory, parse
from emu_dgl.data.knowledge_graph import KnowledgeGraph
from emu_dgl.data.names import Names, names_blob
from emu_dgl.evaluation import FilteredEvaluator
from emu_dgl.sampling import KnownTriples


def _reference(text: bytes) -> list[list[str]]:
    """A line-by-line reader of the format (the parser's specification)."""
    if text.startswith(b"\xef\xbb\xbf"):
        text = text[3:]
    lines = text.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = [line.split("\t") for line in lines if line.strip(" ")]
    assert all(len(r) == 3 and all(r) for r in rows)
    return rows


def _name(rng: random.Random, long: bool) -> str:
    letters = "abcdefgh/_.éüQ0123456789"
    size = rng.randint(9, 30) if long else rng.randint(1, 8 if rng.random() < 0.9 else 6)
    return "".join(rng.choice(letters) for _ in range(size))


def _dataset(folder: Path, seed: int, *, long: bool, crlf: bool, blanks: bool) -> Path:
    rng = random.Random(seed)
    entities = sorted({_name(rng, long and rng.random() < 0.5) for _ in range(60)})
    relations = sorted({_name(rng, long) for _ in range(6)})
    folder.mkdir(parents=True)
    for split, count in (("train", 400), ("valid", 40), ("test", 40)):
        lines = [
            "\t".join((rng.choice(entities), rng.choice(relations), rng.choice(entities)))
            for _ in range(count)
        ]
        if blanks:
            lines.insert(rng.randrange(len(lines)), "   ")
            lines.insert(0, "")
        end = "\r\n" if crlf else "\n"
        text = end.join(lines) + (end if rng.random() < 0.5 else "")
        bom = "\ufeff" if split == "train" and seed % 2 else ""
        (folder / f"{split}.txt").write_bytes((bom + text).encode("utf-8"))
    return folder


@pytest.mark.parametrize(
    ("seed", "long", "crlf", "blanks"),
    [
        (0, False, False, False),
        (1, True, False, False),
        (2, False, True, True),
        (3, True, True, True),
    ],
)
def test_bulk_parser_gives_the_graph_of_a_line_by_line_reader(
    tmp_path: Path, seed: int, long: bool, crlf: bool, blanks: bool
) -> None:
    folder = _dataset(tmp_path / "kg", seed, long=long, crlf=crlf, blanks=blanks)
    rows = {s: _reference((folder / f"{s}.txt").read_bytes()) for s in ("train", "valid", "test")}
    expected = KnowledgeGraph.from_labeled_triples(name="kg", **rows)
    got = load_directory(folder, cache=False)
    assert got.entity_names == expected.entity_names
    assert got.relation_names == expected.relation_names
    for split in ("train", "valid", "test"):
        assert got.splits[split].equal(expected.splits[split])
    assert got.duplicates == expected.duplicates
    assert got.fingerprint == expected.fingerprint


def test_a_name_gets_one_id_whatever_the_longest_name_of_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "kg"
    folder.mkdir()
    (folder / "train.txt").write_text("alpha-long-name\tr\tb\n")
    (folder / "valid.txt").write_text("b\tr\talpha-long-name\nc\tr-even-longer-relation\tb\n")
    (folder / "test.txt").write_text("b\tr\tc\n")
    kg = load_directory(folder, cache=False)
    assert kg.entity_names == ["alpha-long-name", "b", "c"]
    assert kg.valid.tolist() == [[1, 0, 0], [2, 1, 1]]


def test_a_hash_collision_falls_back_to_numbering_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _dataset(tmp_path / "kg", 1, long=True, crlf=False, blanks=False)
    expected = load_directory(folder, cache=False)
    real = parse._hash_fields

    def colliding(data, starts, lengths, out1, out2):  # noqa: ANN001, ANN202
        real(data, starts, lengths, out1, out2)
        out1[:] = 7  # every first hash collides; the second ones tell the names apart

    monkeypatch.setattr(parse, "_hash_fields", colliding)
    got = load_directory(folder, cache=False)
    assert got.entity_names == expected.entity_names
    assert got.train.equal(expected.train) and got.fingerprint == expected.fingerprint


def _old_fingerprint(kg: KnowledgeGraph) -> str:
    """The fingerprint as emu-dgl defined it before the sorted-key indexes (lexsort)."""
    digest = hashlib.sha256(b"emu-dgl-kg-fingerprint-v1")
    for names in (kg.entity_names, kg.relation_names):
        digest.update(f"\n{len(names)}\n".encode())
        digest.update("\n".join(names).encode())
    for split, triples in kg.splits.items():
        array = triples.numpy()
        order = np.lexsort((array[:, 2], array[:, 1], array[:, 0]))
        digest.update(f"\n{split}:{len(array)}\n".encode())
        digest.update(np.ascontiguousarray(array[order]).tobytes())
    return digest.hexdigest()


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            lo, hi = line.split()[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


def test_a_cached_graph_is_the_parsed_one_and_its_arrays_are_mapped_not_copied(
    tmp_path: Path,
) -> None:
    folder = _dataset(tmp_path / "kg", 3, long=True, crlf=True, blanks=True)
    cache = tmp_path / "cache"
    parsed = load_directory(folder, cache=False)
    load_directory(folder, cache_dir=cache)  # writes the cache
    cached = load_directory(folder, cache_dir=cache)  # maps it
    assert isinstance(cached.entity_names, Names)
    assert (
        cached.entity_names == parsed.entity_names
        and cached.relation_names == parsed.relation_names
    )
    for split in ("train", "valid", "test"):
        assert cached.splits[split].equal(parsed.splits[split])
    assert cached.fingerprint == parsed.fingerprint == _old_fingerprint(parsed)
    assert cached.filter_keys().equal(parsed.filter_keys())
    for side in ("head", "tail"):
        pairs = zip(cached.answer_keys(side), parsed.answer_keys(side), strict=True)
        assert all(a.equal(b) for a, b in pairs)
    (store,) = cache.glob("kg-*.store")
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc/self/maps")
    ranges = _mapped_ranges(store)
    assert ranges, "the cache file is not mapped"
    for tensor in (cached.train, cached.filter_keys(), cached.answer_keys("head")[0]):
        pointer = tensor.data_ptr()
        assert any(lo <= pointer < hi for lo, hi in ranges), "an array was copied"
    # the trainer's column layout is the mapped array itself (no copy)
    assert cached.train.t().contiguous().data_ptr() == cached.train.data_ptr()


def test_the_cached_filter_indexes_filter_and_rank_as_the_triples_do(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "kg", 0, long=False, crlf=False, blanks=False)
    load_directory(folder, cache_dir=tmp_path / "cache")
    kg = load_directory(folder, cache_dir=tmp_path / "cache")
    E, R = kg.num_entities, kg.num_relations
    mapped = KnownTriples.from_sorted_keys(kg.filter_keys(), num_entities=E, num_relations=R)
    built = KnownTriples(kg.train, num_entities=E, num_relations=R)
    h, r, t = (torch.randint(0, n, (5000,)) for n in (E, R, E))
    assert mapped.contains(h, r, t).equal(built.contains(h, r, t))
    assert mapped.contains(h, r, t).any()

    class Scores:  # a fixed random score for every (query, entity)
        num_entities = E

        def __init__(self) -> None:
            self.table = torch.randn(E, R, E, generator=torch.Generator().manual_seed(0))

        def score_t(self, hr: torch.Tensor) -> torch.Tensor:
            return self.table[hr[:, 0], hr[:, 1]]

        def score_h(self, rt: torch.Tensor) -> torch.Tensor:
            return self.table[:, rt[:, 0], rt[:, 1]].t()

    scorer = Scores()
    keys = {side: kg.answer_keys(side) for side in ("head", "tail")}
    from_keys = FilteredEvaluator(None, R, answer_keys=keys, num_entities=E)
    from_triples = FilteredEvaluator(kg.all_triples(), R)
    for side in ("head", "tail"):
        assert from_keys.ranks(scorer, kg.test, side).equal(
            from_triples.ranks(scorer, kg.test, side)
        )


def test_names_behave_as_a_list() -> None:
    names = ["a", "usa", "é-ü", "Q42", "x"]
    lazy = Names(*names_blob(names))
    assert len(lazy) == 5 and list(lazy) == names and lazy == names and names == lazy
    assert lazy[2] == "é-ü" and lazy[-1] == "x" and lazy[1:3] == ["usa", "é-ü"]
    assert lazy[::2] == ["a", "é-ü", "x"] and "Q42" in lazy and lazy.index("x") == 4
    assert lazy != names[:4] and Names(*names_blob([])) == []
    with pytest.raises(IndexError):
        lazy[5]


def test_the_data_record_is_streamed_with_the_bytes_json_dumps_gives(tmp_path: Path) -> None:
    import io
    import json

    from emu_dgl.training.run import data_record, dump_data_record

    folder = _dataset(tmp_path / "kg", 3, long=True, crlf=False, blanks=False)
    load_directory(folder, cache_dir=tmp_path / "cache")
    for kg in (
        load_directory(folder, cache_dir=tmp_path / "cache"),
        load_directory(folder, cache=False),
    ):
        out = io.BytesIO()
        dump_data_record(kg, out)
        assert out.getvalue() == (json.dumps(data_record(kg)) + "\n").encode()
