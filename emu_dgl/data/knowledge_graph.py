"""The knowledge graph: vocabularies, three splits of id triples, and the DGL view.

Id convention
-------------
Ids span train + valid + test, so every entity that occurs in any split has a
row in the embedding table (WN18RR has valid/test entities that never occur in
train). Ids are given in order of first appearance reading train, then valid,
then test, top to bottom, and within a line the head before the tail; relations
likewise. The same files therefore always give the same ids. A triple that
occurs twice in one split is kept once; ``duplicates`` counts the copies dropped.

DGL view
--------
``to_dgl()`` builds a heterograph with one node type ``entity`` and one
canonical edge type ``('entity', relation_name, 'entity')`` per relation. By default
it holds the training triples only: a GNN that passes messages over a graph holding
the valid and test edges sees the answers it is evaluated on.
``to_dgl(splits="all")`` holds every split, told apart by DGL's boolean edge masks
``train_mask``, ``val_mask`` and ``test_mask`` (present in either case). Names travel inside the graph's own tensors, not
as Python attributes (which DGL drops whenever it makes a new graph object):

- relation names are the edge types; DGL sorts edge types by name, so each edge
  type also carries ``edata['etype']``, its relation id (DGL's name for it in the
  homogeneous knowledge-graph format; ``dgl.to_homogeneous(g, edata=[...])`` keeps it);
- entity names are ``ndata['name']``: a ``uint8`` tensor of shape
  (num_entities, max_bytes) holding each name's UTF-8 bytes, zero-padded. Being
  node data it is sliced along with the nodes by subgraphs, moved by ``g.to()``
  and written by ``dgl.save_graphs``.

``from_dgl`` reads all of that back, so ``from_dgl(kg.to_dgl(splits="all"))`` has the
same names, ids and triples per split as ``kg``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emu_dgl.data.dgl_io import MASK_NAMES, NODE_TYPE, names_to_tensor
from emu_dgl.data.io import decode_names, encode_names, load_npz, save_npz
from emu_dgl.data.names import Names
from emu_dgl.data.triples import (
    SPLIT_NAMES,
    answer_keys,
    distinct_sorted,
    drop_duplicate_triples,
    hash_key_rows,
    sorted_keys,
    triple_keys,
)
from emu_dgl.errors import DataError

if TYPE_CHECKING:
    import dgl as dgl_module

__all__ = ["KnowledgeGraph", "SPLIT_NAMES", "triple_keys"]

_FINGERPRINT_VERSION = b"emu-dgl-kg-fingerprint-v1"


class KnowledgeGraph:
    """Entity and relation vocabularies plus ``train``/``valid``/``test`` triples.

    Attributes:
        name: dataset name (catalogue name, folder name, or what the caller chose).
        entity_names, relation_names: the name of each id.
        train, valid, test: int64 CPU tensors of shape (N, 3), columns (head, relation, tail).
        duplicates: per split, how many duplicate triples were dropped when it was built.
    """

    def __init__(
        self,
        *,
        name: str,
        entity_names: Sequence[str],
        relation_names: Sequence[str],
        train: torch.Tensor | np.ndarray,
        valid: torch.Tensor | np.ndarray,
        test: torch.Tensor | np.ndarray,
        duplicates: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        # Names from a cache stay one blob (decoded where asked for); any other sequence
        # becomes a list.
        self.entity_names: Sequence[str] = _names(entity_names)
        self.relation_names: Sequence[str] = _names(relation_names)
        self.train = _as_triples(train, "train")
        self.valid = _as_triples(valid, "valid")
        self.test = _as_triples(test, "test")
        self.duplicates = {split: int((duplicates or {}).get(split, 0)) for split in SPLIT_NAMES}
        self._index: dict[str, Any] = {}  # sorted key indexes and digests, built on demand
        self._validate()

    @classmethod
    def _trusted(
        cls,
        *,
        name: str,
        entity_names: Sequence[str],
        relation_names: Sequence[str],
        splits: dict[str, torch.Tensor],
        duplicates: dict[str, int],
        index: dict[str, Any],
    ) -> KnowledgeGraph:
        """A graph from parts already checked (the parser's or a verified cache's), without
        the checks of ``__init__`` (which read every name and triple). The triples may be
        views, e.g. ``[3, N].t()`` of a memory-mapped cache: the trainer's column layout."""
        kg = cls.__new__(cls)
        kg.name = name
        kg.entity_names, kg.relation_names = _names(entity_names), _names(relation_names)
        kg.train, kg.valid, kg.test = (splits[split] for split in SPLIT_NAMES)
        kg.duplicates = {split: int(duplicates.get(split, 0)) for split in SPLIT_NAMES}
        kg._index = dict(index)
        if "fingerprint" in index:
            kg.__dict__["fingerprint"] = index["fingerprint"]
        return kg

    # ------------------------------------------------------------------ basics
    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    @property
    def splits(self) -> dict[str, torch.Tensor]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}

    @cached_property
    def entity_to_id(self) -> dict[str, int]:
        """Entity name -> id (PyKEEN's ``TriplesFactory.entity_to_id``); ``entity_names`` is
        the inverse. Built on first use."""
        return {name: i for i, name in enumerate(self.entity_names)}

    @cached_property
    def relation_to_id(self) -> dict[str, int]:
        """Relation name -> id; ``relation_names`` is the inverse."""
        return {name: i for i, name in enumerate(self.relation_names)}

    def all_triples(self) -> torch.Tensor:
        """Train, valid and test triples stacked (the 'known' set of filtered ranking)."""
        return torch.cat([self.train, self.valid, self.test])

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex of the content: names with their ids, and the triples of each split.

        The triples are hashed in sorted order, so the fingerprint does not depend on
        the order of lines within a split (a DGL round trip regroups them by relation).
        """
        digest = hashlib.sha256(_FINGERPRINT_VERSION)
        for names in (self.entity_names, self.relation_names):
            digest.update(f"\n{len(names)}\n".encode())
            digest.update(encode_names(names))
        for split, triples in self.splits.items():
            digest.update(f"\n{split}:{len(triples)}\n".encode())
            split_digest = hashlib.sha256()
            keys = self._sorted_keys(split)
            hash_key_rows(keys, self.num_entities, self.num_relations, digest, split_digest)
            self._index.setdefault(f"sha256:{split}", split_digest.hexdigest())
        return digest.hexdigest()

    # ---------------------------------------------------------------- indexes
    def _sorted_keys(self, split: str) -> np.ndarray:
        if split == "train" and "filter_keys" in self._index:
            return self._index["filter_keys"]
        keys = sorted_keys(self.splits[split].numpy(), self.num_entities, self.num_relations)
        if split == "train":
            self._index["filter_keys"] = keys
        return keys

    def filter_keys(self) -> torch.Tensor:
        """The sorted int64 keys ``(h * R + r) * E + t`` of the training triples: the index of
        the training sampler's false-negative filter (memory-mapped from a dataset cache)."""
        return torch.from_numpy(self._sorted_keys("train"))

    def answer_keys(self, side: str) -> list[torch.Tensor]:
        """The filter index of filtered ranking for ``side`` (``"head"`` or ``"tail"``): sorted
        int64 key arrays (see :func:`emu_dgl.data.triples.answer_keys`) whose union holds
        every known triple. Tail queries share the training keys with :meth:`filter_keys`
        and add the valid and test triples' keys; head queries have one array of their own."""
        if side == "tail":
            if "heldout_tail" not in self._index:
                held = np.concatenate([self._sorted_keys("valid"), self._sorted_keys("test")])
                held.sort(kind="stable")  # (a merge of two sorted runs)
                self._index["heldout_tail"] = distinct_sorted(held)
            return [self.filter_keys(), torch.from_numpy(self._index["heldout_tail"])]
        if "answers_head" not in self._index:
            E, R = self.num_entities, self.num_relations
            keys = np.concatenate(
                [answer_keys(t.numpy(), E, R, "head") for t in self.splits.values()]
            )
            keys.sort()
            self._index["answers_head"] = distinct_sorted(keys)
        return [torch.from_numpy(self._index["answers_head"])]

    def split_sha256(self, split: str) -> str:
        """sha256 of a split's triples as sorted ``[N, 3]`` int64 rows (a run's data record)."""
        if f"sha256:{split}" not in self._index:
            digest = hashlib.sha256()
            keys = self._sorted_keys(split)
            hash_key_rows(keys, self.num_entities, self.num_relations, digest)
            self._index[f"sha256:{split}"] = digest.hexdigest()
        return self._index[f"sha256:{split}"]

    def __repr__(self) -> str:
        return (
            f"KnowledgeGraph(name={self.name!r}, entities={self.num_entities}, "
            f"relations={self.num_relations}, train={len(self.train)}, "
            f"valid={len(self.valid)}, test={len(self.test)})"
        )

    def _validate(self) -> None:
        if self.num_entities * self.num_entities * max(self.num_relations, 1) >= 2**63:
            raise DataError(
                f"{self.name}: {self.num_entities} entities and {self.num_relations} relations are "
                "too many for int64 triple keys"
            )
        if len(set(self.entity_names)) != self.num_entities:
            raise DataError(f"{self.name}: entity names are not unique")
        if len(set(self.relation_names)) != self.num_relations:
            raise DataError(f"{self.name}: relation names are not unique")
        for kind, names in (("entity", self.entity_names), ("relation", self.relation_names)):
            if "\n" in "".join(names):
                raise DataError(f"{self.name}: an {kind} name contains a newline")
        if not self.relation_names:
            raise DataError(f"{self.name}: a knowledge graph needs at least one relation")
        for split, triples in self.splits.items():
            if triples.numel() == 0:
                continue
            low = int(triples.min())
            entity_max = max(int(triples[:, 0].max()), int(triples[:, 2].max()))
            relation_max = int(triples[:, 1].max())
            if low < 0 or entity_max >= self.num_entities or relation_max >= self.num_relations:
                raise DataError(
                    f"{self.name}: {split} holds ids outside [0, {self.num_entities}) entities "
                    f"/ [0, {self.num_relations}) relations"
                )

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_labeled_triples(
        cls,
        *,
        name: str,
        train: np.ndarray | Sequence[Sequence[str]],
        valid: np.ndarray | Sequence[Sequence[str]],
        test: np.ndarray | Sequence[Sequence[str]],
    ) -> KnowledgeGraph:
        """Build from (N, 3) arrays of names, assigning ids by first appearance (see module doc).

        Vectorised: ``pandas.factorize`` numbers the names in order of appearance.
        """
        import pandas as pd

        parts = [np.asarray(part, dtype=object).reshape(-1, 3) for part in (train, valid, test)]
        sizes = [len(part) for part in parts]
        labeled = np.concatenate(parts)
        # Row-major ravel of the (head, tail) columns reads h0, t0, h1, t1, ...:
        # first appearance within a line is head before tail.
        entity_codes, entity_names = pd.factorize(labeled[:, [0, 2]].ravel())
        relation_codes, relation_names = pd.factorize(labeled[:, 1])
        ids = np.stack([entity_codes[0::2], relation_codes, entity_codes[1::2]], axis=1)
        num_entities, num_relations = len(entity_names), len(relation_names)
        splits: dict[str, np.ndarray] = {}
        duplicates: dict[str, int] = {}
        start = 0
        for split, size in zip(SPLIT_NAMES, sizes, strict=True):
            splits[split], duplicates[split] = drop_duplicate_triples(
                ids[start : start + size], num_entities, num_relations
            )
            start += size
        return cls(
            name=name,
            entity_names=[str(n) for n in entity_names.tolist()],
            relation_names=[str(n) for n in relation_names.tolist()],
            duplicates=duplicates,
            **splits,
        )

    def reindexed(
        self, entity_names: Sequence[str], relation_names: Sequence[str]
    ) -> KnowledgeGraph:
        """The same graph with ids given by ``entity_names`` / ``relation_names`` (same name sets).

        Used to read a dataset whose lines were reordered with the ids a run was trained with.
        """
        if set(entity_names) != set(self.entity_names) or set(relation_names) != set(
            self.relation_names
        ):
            raise DataError(f"{self.name}: re-indexing needs the same entity and relation names")
        entity_index = {name: i for i, name in enumerate(entity_names)}
        relation_index = {name: i for i, name in enumerate(relation_names)}
        entity_map = torch.tensor([entity_index[n] for n in self.entity_names], dtype=torch.int64)
        relation_map = torch.tensor(
            [relation_index[n] for n in self.relation_names], dtype=torch.int64
        )

        def remap(triples: torch.Tensor) -> torch.Tensor:
            return (
                torch.stack(
                    [
                        entity_map[triples[:, 0]],
                        relation_map[triples[:, 1]],
                        entity_map[triples[:, 2]],
                    ],
                    dim=1,
                )
                if len(triples)
                else triples
            )

        return KnowledgeGraph(
            name=self.name,
            entity_names=entity_names,
            relation_names=relation_names,
            duplicates=self.duplicates,
            **{split: remap(triples) for split, triples in self.splits.items()},
        )

    # --------------------------------------------------------------------- DGL
    def to_dgl(self, splits: Sequence[str] | str = ("train",)) -> dgl_module.DGLGraph:
        """Heterograph: node type ``entity``, one canonical edge type per relation.

        ``splits`` names the triples that become edges: the training triples by default
        (message passing over valid or test edges would train on the answers), or any of
        ``"train"``, ``"valid"``, ``"test"``, or ``"all"``. Every entity is a node either
        way. Edge data per edge type: ``train_mask``, ``val_mask``, ``test_mask`` (bool)
        and ``etype`` (int64 relation id). Node data: ``name`` (uint8 UTF-8 bytes, see
        module doc). Within an edge type, edges are ordered train, valid, test, each in
        file order.
        """
        from emu_dgl._dgl import dgl

        chosen = (
            SPLIT_NAMES if splits == "all" else (splits,) if isinstance(splits, str) else splits
        )
        unknown = [s for s in chosen if s not in SPLIT_NAMES]
        if unknown or not chosen:
            raise DataError(
                f"to_dgl(splits={splits!r}): name splits among {', '.join(SPLIT_NAMES)}, or 'all'"
            )
        parts = [self.splits[s] if s in chosen else self.train[:0] for s in SPLIT_NAMES]
        triples = torch.cat(parts)
        sizes = torch.tensor([len(part) for part in parts])
        split_code = torch.repeat_interleave(torch.arange(3, dtype=torch.int8), sizes)
        # Stable sort by relation keeps the split and file order inside each edge type
        # (NumPy radix-sorts 16-bit keys, several times faster than a 64-bit sort).
        relation = triples[:, 1].numpy()
        small = np.int16 if self.num_relations <= np.iinfo(np.int16).max else np.int32
        order = torch.from_numpy(np.argsort(relation.astype(small), kind="stable"))
        counts = torch.bincount(triples[:, 1], minlength=self.num_relations).tolist()
        heads = triples[order, 0].split(counts)
        tails = triples[order, 2].split(counts)
        codes = split_code[order].split(counts)
        etypes = [(NODE_TYPE, relation, NODE_TYPE) for relation in self.relation_names]
        graph = dgl.heterograph(
            {etype: (heads[r], tails[r]) for r, etype in enumerate(etypes)},
            num_nodes_dict={NODE_TYPE: self.num_entities},
            idtype=torch.int64,
        )
        for r, etype in enumerate(etypes):
            data = graph.edges[etype].data
            for code, mask_name in enumerate(MASK_NAMES):
                data[mask_name] = codes[r] == code
            data["etype"] = torch.full((counts[r],), r, dtype=torch.int64)
        graph.nodes[NODE_TYPE].data["name"] = names_to_tensor(self.entity_names)
        return graph

    @classmethod
    def from_dgl(cls, graph: dgl_module.DGLGraph, *, name: str = "dgl") -> KnowledgeGraph:
        """Build from a DGL graph with one node type.

        Accepted layouts:

        - a heterograph as :meth:`to_dgl` makes (relation names = edge types; ids from
          ``edata['etype']`` when present, else DGL's edge-type order);
        - DGL's homogeneous knowledge-graph format (a single edge type ``_E`` with
          ``edata['etype']`` holding relation ids, as ``dgl.data.FB15k237Dataset`` makes);
          relation names are then the ids as strings.

        Splits come from ``train_edge_mask``/``valid_edge_mask``/``test_edge_mask`` when
        present (``dgl.data`` keeps its added reverse edges out of those), else from
        ``train_mask``/``val_mask``/``test_mask``; an edge in no mask is left out. A graph
        with no masks at all counts every edge as train. Entity names come from
        ``ndata['name']`` when present, else they are the node ids as strings.
        """
        from emu_dgl.data.dgl_io import dgl_parts

        return cls(**dgl_parts(graph, name=name))

    # ---------------------------------------------------------------- networkx
    def to_networkx(self) -> Any:
        """``networkx.MultiDiGraph``: entity names as nodes, one edge per triple with
        attributes ``relation`` and ``split`` (see :mod:`emu_dgl.data.networkx_io`)."""
        from emu_dgl.data.networkx_io import to_networkx

        return to_networkx(self)

    @classmethod
    def from_networkx(
        cls,
        graph: Any,
        *,
        relation_key: str | None = "relation",
        split_key: str = "split",
        default_split: str = "train",
        name: str | None = None,
    ) -> KnowledgeGraph:
        """From a directed networkx graph whose edges name their relation in ``relation_key``
        and their split in ``split_key`` (default ``default_split``)."""
        from emu_dgl.data.networkx_io import networkx_parts

        return cls(
            **networkx_parts(
                graph,
                relation_key=relation_key,
                split_key=split_key,
                default_split=default_split,
                name=name,
            )
        )

    def random_split(
        self, *, valid: float = 0.05, test: float = 0.05, seed: int = 0
    ) -> KnowledgeGraph:
        """A copy whose valid and test splits gain a random ``valid`` / ``test`` fraction of
        the training triples (for a graph that came without splits, e.g. from networkx).

        Names and ids are unchanged; the triples that move are drawn by one permutation
        seeded by ``seed``, so the same call gives the same splits.
        """
        if not (0.0 <= valid < 1.0 and 0.0 <= test < 1.0 and valid + test < 1.0):
            raise DataError(
                f"random_split: valid and test must be fractions with valid + test < 1, got {valid} and {test}"
            )
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))
        n_valid, n_test = round(valid * len(order)), round(test * len(order))
        moved_valid, moved_test = (
            order[:n_valid].sort().values,
            order[n_valid : n_valid + n_test].sort().values,
        )
        kept = order[n_valid + n_test :].sort().values

        def extend(split: torch.Tensor, moved: torch.Tensor) -> np.ndarray:
            # a moved triple may already be in the split (a train/valid overlap): keep one copy
            both = torch.cat([split, self.train[moved]]).numpy()
            return drop_duplicate_triples(both, self.num_entities, self.num_relations)[0]

        return KnowledgeGraph(
            name=self.name,
            entity_names=self.entity_names,
            relation_names=self.relation_names,
            train=self.train[kept],
            valid=extend(self.valid, moved_valid),
            test=extend(self.test, moved_test),
            duplicates=self.duplicates,
        )

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, source_key: str = "") -> None:
        """Write to an uncompressed ``.npz`` (no pickle), atomically.

        ``source_key`` (e.g. the hash of the files it was parsed from) is stored with it and
        read back as ``source_key``, so a cache can be checked against its source.
        """
        save_npz(
            Path(path),
            {
                "name": np.frombuffer(self.name.encode(), dtype=np.uint8),
                "source_key": np.frombuffer(source_key.encode(), dtype=np.uint8),
                "entity_names": encode_names(self.entity_names),
                "relation_names": encode_names(self.relation_names),
                "counts": np.array([self.num_entities, self.num_relations], dtype=np.int64),
                "duplicates": np.array([self.duplicates[s] for s in SPLIT_NAMES], dtype=np.int64),
                **{split: triples.numpy() for split, triples in self.splits.items()},
            },
        )

    @classmethod
    def load(cls, path: str | Path, *, name: str | None = None) -> KnowledgeGraph:
        """Read what :meth:`save` wrote. ``name`` defaults to the saved name (else the file's stem).

        Every array is checked (present, dtype, shape) before use; a file that is not what
        :meth:`save` wrote is one :class:`DataError` line."""
        path = Path(path)
        arrays: dict[str, Any] = load_npz(path)
        try:
            _check_saved(arrays)
            num_entities, num_relations = (int(x) for x in arrays["counts"])
            if name is None:
                name = arrays["name"].tobytes().decode() if "name" in arrays else path.stem
            entity_names = decode_names(arrays["entity_names"], num_entities)
            relation_names = decode_names(arrays["relation_names"], num_relations)
            source_key = arrays["source_key"].tobytes().decode() if "source_key" in arrays else ""
        except (ValueError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
            reason = str(exc).strip("'\"").splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise DataError(
                f"{path}: not a graph written by KnowledgeGraph.save ({reason}); restore the "
                "file (a cache file can be deleted: it is rebuilt)"
            ) from None
        kg = cls(
            name=name,
            entity_names=entity_names,
            relation_names=relation_names,
            duplicates=dict(zip(SPLIT_NAMES, (int(x) for x in arrays["duplicates"]), strict=True)),
            **{split: torch.from_numpy(arrays[split].astype(np.int64)) for split in SPLIT_NAMES},
        )
        kg.source_key = source_key
        return kg


# ---------------------------------------------------------------- helpers
def _names(names: Sequence[str]) -> Sequence[str]:
    return names if isinstance(names, Names) else list(names)


#: What :meth:`KnowledgeGraph.save` writes: array name -> (dtype kind, rank, fixed length).
_SAVED: dict[str, tuple[str, int, int | None]] = {
    "entity_names": ("u", 1, None),
    "relation_names": ("u", 1, None),
    "counts": ("i", 1, 2),
    "duplicates": ("i", 1, 3),
    **{split: ("i", 2, None) for split in SPLIT_NAMES},
}
_OPTIONAL = {"name": ("u", 1, None), "source_key": ("u", 1, None)}


def _check_saved(arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueError naming the first array that is missing or not as :meth:`save` wrote it."""
    for key, (kind, rank, length) in {**_SAVED, **_OPTIONAL}.items():
        if key not in arrays:
            if key in _SAVED:
                raise ValueError(f"the array '{key}' is missing")
            continue
        array = arrays[key]
        wrong = (
            array.dtype.kind != kind
            or (kind == "u" and array.dtype.itemsize != 1)
            or array.ndim != rank
            or (length is not None and array.shape[0] != length)
            or (rank == 2 and array.shape[1] != 3)
        )
        if wrong:
            raise ValueError(f"the array '{key}' is {array.dtype} of shape {array.shape}")
    if (arrays["counts"] < 0).any() or (arrays["duplicates"] < 0).any():
        raise ValueError("negative counts")


def _as_triples(value: torch.Tensor | np.ndarray, split: str) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.int64)
    if tensor.numel() == 0:
        return tensor.reshape(0, 3).contiguous()
    if tensor.dim() != 2 or tensor.shape[1] != 3:
        raise DataError(f"{split} triples must have shape (N, 3), got {tuple(tensor.shape)}")
    return tensor.contiguous()
