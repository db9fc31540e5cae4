"""The dataset catalogue: where each dataset comes from, its size, licence and checksums.

Two kinds of entry. An *archive* entry (``archive``) is one tar archive holding
``train.txt``, ``valid.txt``, ``test.txt``; a *files* entry (``files``) is the three split
files fetched one by one. Every file is checked before it is used: against its sha256
where one is pinned, else against ``git_blob``, the id git gives the file's bytes
(SHA-1 of ``blob <size>\\0`` + bytes) in the source repository's tree at the commit
named in the entry, for the few files too large for any copy that could be reached when
the entry was written (the note of the entry says so). ``emu-dgl datasets list`` shows
sizes and licences; the sha256 of a file checked by its git blob is printed when it is
downloaded, so it can be pinned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATALOGUE", "CONVE", "CatalogueEntry", "SourceFile", "git_blob_id"]

#: TimDettmers/ConvE (master): the archives of the ConvE paper's datasets.
CONVE = "https://github.com/TimDettmers/ConvE/raw/master/"
#: tsafavi/codex at 3132e42: CoDEx's split files.
CODEX = "https://raw.githubusercontent.com/tsafavi/codex/3132e426c2a6b643b70bad679905a3a6270be440/data/triples/"
#: villmow/datasets_knowledge_embedding at 9e39245: FB15k and WN18 as split files.
VILLMOW = "https://raw.githubusercontent.com/villmow/datasets_knowledge_embedding/9e392453d6804d1f51c13e5650ae58ed48b638d5/"


@dataclass(frozen=True)
class SourceFile:
    """One split file of a files entry: its path below the entry's base address (and below
    a mirror), and what it must hash to."""

    split: str  # train | valid | test
    path: str
    sha256: str = ""  # empty where it could not be pinned: then git_blob
    size: int | None = None
    git_blob: str = ""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    archive: str  # file name of the tar archive below base_url; "" for a files entry
    sha256: str  # of the archive; "" where it could not be pinned (then git_blob)
    description: str
    #: bytes of the archive: a download is cut off past it (a mirror serving an endless
    #: stream would fill the disk before the checksum could tell); None: 4 GiB
    size: int | None = None
    base_url: str = CONVE
    files: tuple[SourceFile, ...] = ()
    git_blob: str = ""  # of the archive, where its sha256 is not pinned
    licence: str = "not stated by the source"
    #: entities, relations, train, valid and test triples, as published
    counts: tuple[int, int, int, int, int] | None = None
    source: str = ""  # where the data is described (paper, repository)
    note: str = ""  # how it is checked, where that differs from a pinned sha256

    @property
    def download_bytes(self) -> int | None:
        """Bytes a download fetches (None where a size is not known)."""
        if not self.files:
            return self.size
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s for s in sizes if s is not None)


def git_blob_id(path: Path) -> str:
    """git's id of the file's bytes: SHA-1 of ``blob <size>\\0`` followed by the bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _codex(
    size: str,
    counts: tuple[int, int, int, int, int],
    files: dict[str, tuple[str, int | None, str]],
    note: str = "",
) -> CatalogueEntry:
    return CatalogueEntry(
        f"codex-{size}",
        "",
        "",
        f"CoDEx-{size.upper()}: Wikidata triples, hard negatives kept out (Safavi & Koutra, EMNLP 2020)",
        base_url=CODEX,
        files=tuple(
            SourceFile(split, f"codex-{size}/{split}.txt", *spec) for split, spec in files.items()
        ),
        licence="MIT (the repository); the triples come from Wikidata (CC0)",
        counts=counts,
        source="https://github.com/tsafavi/codex",
        note=note,
    )


CATALOGUE: dict[str, CatalogueEntry] = {
    entry.name: entry
    for entry in (
        CatalogueEntry(
            "fb15k-237",
            "FB15k-237.tar.gz",
            "311df7930f842a02979eaa7a802484a6afe62303c07f915f1e6edbc30cbe05e8",
            "Freebase subset without inverse relations (Toutanova & Chen 2015)",
            3678603,
            licence="Freebase data: CC BY 2.5",
            counts=(14541, 237, 272115, 17535, 20466),
            source="https://aclanthology.org/W15-4007/",
        ),
        CatalogueEntry(
            "wn18rr",
            "WN18RR.tar.gz",
            "1eb9152f804c140d163462c0d49f65e5a0b30ab5fbb375c5e3353c11a6249060",
            "WordNet subset without inverse relations (Dettmers et al. 2018)",
            892861,
            licence="WordNet licence (BSD-style, Princeton University)",
            counts=(40943, 11, 86835, 3034, 3134),
            source="https://github.com/TimDettmers/ConvE",
        ),
        CatalogueEntry(
            "nations",
            "nations.tar.gz",
            "feb3e3e027103089934ea7dfb67d2048d8a43e65d6757a86f2e037acb66f640b",
            "relations between 14 countries (Kok & Domingos 2007)",
            8077,
            counts=(14, 55, 1592, 199, 201),
            source="https://github.com/TimDettmers/ConvE",
        ),
        CatalogueEntry(
            "kinship",
            "kinship.tar.gz",
            "a3cb9ca67213eb38133aebc12901195e283d844ebd59f1a6cbf2d4fa12ced4e6",
            "Alyawarra kinship terms (Kok & Domingos 2007)",
            42703,
            counts=(104, 25, 8544, 1068, 1074),
            source="https://github.com/TimDettmers/ConvE",
        ),
        CatalogueEntry(
            "umls",
            "umls.tar.gz",
            "26223aa91f0ec8db2324e0f489b9a4425e04d1d0df72ce5cfd62af4b91aee6fd",
            "Unified Medical Language System semantic network (Kok & Domingos 2007)",
            35648,
            counts=(135, 46, 5216, 652, 661),
            source="https://github.com/TimDettmers/ConvE",
        ),
        _codex(
            "s",
            (2034, 42, 32888, 1827, 1828),
            {
                "train": (
                    "64f93b7f314f3936a6f65739721429db3f6a7c8f5a1e1104ec3bb544f7434f59",
                    615428,
                    "",
                ),
                "valid": (
                    "3831c0e57daef03c3a18cdd1a72e370b496f696c5218883d35c7d2ab8a6a772c",
                    34323,
                    "",
                ),
                "test": (
                    "27127fcb34688c4778e88a39ef3c9b540807da846021e9d9685660ac1838aca1",
                    34252,
                    "",
                ),
            },
        ),
        _codex(
            "m",
            (17050, 51, 185584, 10310, 10311),
            {
                "train": (
                    "d99c3437ab51690391a26d96976adf6e5494dba7ef6902e77000551bfa566556",
                    3660213,
                    "",
                ),
                "valid": (
                    "11c323096367354940846b9ed940c5dabddc1d20a70474222babe7e7fd28b28d",
                    203470,
                    "",
                ),
                "test": (
                    "0575ce05e4ce915e395bb4f708e8df9547989dd4c8c71407cbfd78c19daffcf7",
                    203693,
                    "",
                ),
            },
        ),
        _codex(
            "l",
            (77951, 69, 551193, 30622, 30622),
            {
                "train": ("", None, "be8735738ba4728430922c630f25bf01bcc9eaac"),
                "valid": (
                    "f0119a22dc663e8df4a942cde7404927935b0c42e5a8980f5fb48ac6886e416f",
                    605471,
                    "",
                ),
                "test": (
                    "2d8188d6f199fc548c8e5fb97336a7ffd079240fc84c0425ed9c29d39bfdab8d",
                    605298,
                    "",
                ),
            },
            note="train.txt: sha256 not pinned (no reachable copy of that file); checked against "
            "its git blob id in tsafavi/codex at 3132e42",
        ),
        CatalogueEntry(
            "fb15k",
            "",
            "",
            "Freebase subset of Bordes et al. (NeurIPS 2013), with its inverse relations",
            base_url=VILLMOW,
            files=(
                SourceFile(
                    "train", "FB15K/train.txt", git_blob="de7b73e2a375b38236aa02bbcdca4c4b449b6e7d"
                ),
                SourceFile(
                    "valid",
                    "FB15K/valid.txt",
                    "471929cde9cf74b1caa8348c2b601c8010d6b2f2a56bae49b4ebfd14c9bce855",
                    3895668,
                ),
                SourceFile(
                    "test", "FB15K/test.txt", git_blob="4f8c953905abea1d4d212ebc839dbe6c3c68e0b8"
                ),
            ),
            licence="Freebase data: CC BY 2.5",
            counts=(14951, 1345, 483142, 50000, 59071),
            source="https://papers.nips.cc/paper/5071-translating-embeddings-for-modeling-multi-relational-data",
            note="train.txt and test.txt: sha256 not pinned (no reachable copy of those files); "
            "checked against their git blob ids in villmow/datasets_knowledge_embedding at 9e39245",
        ),
        CatalogueEntry(
            "wn18",
            "",
            "",
            "WordNet subset of Bordes et al. (2013), with its inverse relations; synsets by name",
            base_url=VILLMOW,
            files=(
                SourceFile(
                    "train",
                    "WN18/text/train.txt",
                    git_blob="7d59bef36bcb71b74e6ad2bbf0b162da071b6033",
                ),
                SourceFile(
                    "valid",
                    "WN18/text/valid.txt",
                    "35891a089c2ec28849dae704495f01258d85fc77d1a218250d34b37583253dc4",
                    227071,
                ),
                SourceFile(
                    "test",
                    "WN18/text/test.txt",
                    "4f3bdb3ad651064cadca421e5ce7e6415af06071361e9f10160f97174ce1d71f",
                    226079,
                ),
            ),
            licence="WordNet licence (BSD-style, Princeton University)",
            counts=(40943, 18, 141442, 5000, 5000),
            source="https://arxiv.org/abs/1301.3485",
            note="train.txt: sha256 not pinned (no reachable copy of that file); checked against "
            "its git blob id in villmow/datasets_knowledge_embedding at 9e39245",
        ),
        CatalogueEntry(
            "yago3-10",
            "YAGO3-10.tar.gz",
            "",
            "YAGO3 entities with at least 10 relations (Dettmers et al. 2018)",
            git_blob="be63d16955e1951cb6539710204af43cb38da7d9",
            licence="YAGO: CC BY 3.0",
            counts=(123182, 37, 1079040, 5000, 5000),
            source="https://github.com/TimDettmers/ConvE",
            note="archive: sha256 not pinned (no reachable copy of that file); checked against "
            "its git blob id in TimDettmers/ConvE at f3c0eb2",
        ),
    )
}
