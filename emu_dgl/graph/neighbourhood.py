"""Structure-aware neighbourhoods of entities, stored as CSR tensors.

The graph is the training set seen as an undirected, relation-blind simple
graph ``G``: an edge ``{h, t}`` for every training triple ``(h, r, t)`` with
``h != t``, parallel edges (several relations between one pair, or both
directions) merged into one. ``A`` is its symmetric 0/1 adjacency matrix.

Two neighbourhoods of an anchor entity ``a`` are offered (Ahrabian et al.,
2020, "Structure Aware Negative Sampling in Knowledge Graphs",
https://arxiv.org/abs/2009.11355):

* **exact** (``walks == 0``): ``N_k(a) = supp(A + A^2 + ... + A^k)[a] \\ {a}``,
  the entities at distance 1..k from ``a``. Computed with boolean sparse
  products on CSR matrices, in row blocks, never densely.
* **random walks** (``walks = w > 0``), in one of two modes (``walk_mode``):

  - ``restart`` (what the SANS paper describes): ``w`` independent walks of
    ``k`` steps from every entity with :func:`dgl.sampling.random_walk` (each
    step moves to a uniformly chosen neighbour in ``G``). The endpoints are kept
    *with multiplicity*: ``counts[a, b]`` is the number of walks from ``a`` that
    end in ``b``, so sampling proportionally to ``counts`` draws from the
    empirical ``k``-step transition distribution ``P^k[a, :]`` (``P = D^-1 A``).
    Walks that end back at their anchor are dropped (the anchor is never its
    own candidate, as in the exact set), and walks that die early (an entity
    with no edge in ``G``, e.g. one seen only in valid/test) are dropped too.
    Every endpoint is within ``k`` hops: a subset of the exact set.
  - ``continue`` (what the published SANS and EMU code actually runs, so the
    mode the papers' numbers rest on): ONE walk of ``k * w`` steps from every
    entity, recording the current node every ``k`` steps (``w`` records). The
    walk is never sent back to the anchor, so after a few records it drifts
    far from it: the recorded entities are a sample of the walk's stationary
    distribution (proportional to degree) more than of the anchor's
    neighbourhood. The anchor itself is kept when the walk records it.
    ``counts[a, b]`` is how often ``b`` was recorded. On WN18RR with
    ``k = 3, w = 1000`` only a few percent of such candidates lie within 3
    hops of their anchor.

Both are returned as a :class:`Neighbourhood`: ``indptr`` (E+1, int64),
``indices`` (nnz, int32, sorted within each row) and ``counts`` (nnz, int32, or
``None`` for exact sets). Results are cached on disk under a key made from the
training triples' bytes and every parameter that changes the result, in
:func:`default_cache_dir` unless told otherwise. Cache files are written atomically and
hold their full key: a corrupt file, or one built for another key, is rebuilt with a
warning. A cache path is opened without following links and without blocking (a FIFO
or a link there is neither read nor replaced), and a cache folder that cannot be
written (read-only, full) costs one warning: the run goes on with the candidates it
built.

Determinism: walks draw from DGL's own generator, seeded with ``dgl.seed(seed)``
before the first walk; anchors are walked in fixed-size chunks, so the same
seed gives the same neighbourhood within a process and, as observed, across
fresh processes with the same thread count. DGL seeds one engine per OpenMP
thread and mixes the thread's identity into it, so it does not promise
bit-exact walks across processes (one run on a heavily loaded machine gave a
sample that differed in 0.03% of its pairs); the disk cache makes a built
neighbourhood the one every later run uses.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from emu_dgl._dgl import dgl
from emu_dgl.errors import EmuDglError

__all__ = [
    "Neighbourhood",
    "build_neighbourhood",
    "default_cache_dir",
    "exact_khop",
    "random_walk_neighbourhood",
    "training_graph",
    "neighbourhood_cache_key",
    "CACHE_FORMAT_VERSION",
    "WALK_MODES",
    "WalkMode",
]

CACHE_FORMAT_VERSION = 3
WalkMode = Literal["restart", "continue"]
WALK_MODES: tuple[str, ...] = ("restart", "continue")
# Walks per chunk: bounds the peak memory of the (walks, k+1) int64 trace to ~128 MB at k = 3.
DEFAULT_CHUNK_WALKS = 4_000_000
# Rows per block of the exact k-hop products: bounds the intermediate sparse matrices.
_EXACT_ROW_BLOCK = 4096


@dataclass(frozen=True)
class Neighbourhood:
    """Candidate entities per anchor in CSR form.

    Row ``a`` is ``indices[indptr[a]:indptr[a + 1]]`` (sorted; never ``a``
    itself, except in ``continue`` walks that came back to it), with optional
    multiplicities ``counts`` (same slice) usable as sampling weights.
    """

    indptr: torch.Tensor  # (E + 1,) int64
    indices: torch.Tensor  # (nnz,) int32
    counts: torch.Tensor | None  # (nnz,) int32, or None for unweighted (exact) sets
    k: int
    walks: int
    walk_mode: str = "restart"  # restart | continue (walks > 0 only)

    @property
    def num_entities(self) -> int:
        return self.indptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the CSR tensors."""
        tensors = [self.indptr, self.indices] + ([self.counts] if self.counts is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)

    def degrees(self) -> torch.Tensor:
        """Number of distinct candidates per anchor, (E,) int64."""
        return self.indptr[1:] - self.indptr[:-1]

    def row(self, anchor: int) -> torch.Tensor:
        """Candidates of one anchor as int64 (for inspection and tests, not hot paths)."""
        return self.indices[self.indptr[anchor] : self.indptr[anchor + 1]].long()

    def to(self, device: torch.device | str) -> Neighbourhood:
        device = torch.device(device)
        return Neighbourhood(
            indptr=self.indptr.to(device),
            indices=self.indices.to(device),
            counts=None if self.counts is None else self.counts.to(device),
            k=self.k,
            walks=self.walks,
            walk_mode=self.walk_mode,
        )

    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {
            "format": CACHE_FORMAT_VERSION,
            "indptr": self.indptr.cpu(),
            "indices": self.indices.cpu(),
            "k": self.k,
            "walks": self.walks,
            "walk_mode": self.walk_mode,
        }
        if self.counts is not None:
            state["counts"] = self.counts.cpu()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, object]) -> Neighbourhood:
        if state.get("format") != CACHE_FORMAT_VERSION:
            raise ValueError(f"neighbourhood format {state.get('format')!r} is not supported")
        indptr, indices = state["indptr"], state["indices"]
        counts = state.get("counts")
        if not (isinstance(indptr, torch.Tensor) and isinstance(indices, torch.Tensor)):
            raise ValueError("neighbourhood state lacks its CSR tensors")
        if indptr.dtype != torch.int64 or indices.dtype != torch.int32:
            raise ValueError("neighbourhood CSR tensors have unexpected dtypes")
        if int(indptr[0]) != 0 or int(indptr[-1]) != indices.numel():
            raise ValueError("neighbourhood indptr does not match its indices")
        if counts is not None and (
            not isinstance(counts, torch.Tensor) or counts.shape != indices.shape
        ):
            raise ValueError("neighbourhood counts do not match its indices")
        k, walks = int(state["k"]), int(state["walks"])  # type: ignore[call-overload]
        mode = str(state.get("walk_mode", "restart"))
        if mode not in WALK_MODES:
            raise ValueError(f"unknown walk mode {mode!r}")
        return cls(indptr=indptr, indices=indices, counts=counts, k=k, walks=walks, walk_mode=mode)


# ---------------------------------------------------------------------------- graph


def _check_train(train: torch.Tensor, num_entities: int) -> None:
    if train.dim() != 2 or train.shape[1] != 3:
        raise ValueError(
            f"train must be a (N, 3) tensor of (head, relation, tail) ids, got {tuple(train.shape)}"
        )
    if train.numel() and (
        int(train[:, [0, 2]].min()) < 0 or int(train[:, [0, 2]].max()) >= num_entities
    ):
        raise ValueError(f"entity ids of train must lie in [0, {num_entities})")


def _undirected_edges(train: torch.Tensor, num_entities: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (src, dst) of the simple undirected graph: both directions, no loops, no duplicates."""
    h, t = train[:, 0].long().cpu(), train[:, 2].long().cpu()
    keep = h != t
    h, t = h[keep], t[keep]
    key = torch.unique(torch.cat([h * num_entities + t, t * num_entities + h]))  # sorted
    return key // num_entities, key % num_entities


def training_graph(train: torch.Tensor, num_entities: int) -> dgl.DGLGraph:
    """The undirected, relation-blind simple graph of ``train`` as a homogeneous DGL graph.

    Every undirected edge ``{h, t}`` is stored as the two directed edges
    ``h -> t`` and ``t -> h``; self loops and parallel edges are removed so a
    walk step is uniform over distinct neighbours. Entities without edges
    (e.g. seen only in valid/test) are isolated nodes.
    """
    _check_train(train, num_entities)
    src, dst = _undirected_edges(train, num_entities)
    return dgl.graph((src, dst), num_nodes=num_entities, idtype=torch.int64)


# ---------------------------------------------------------------------------- exact


def exact_khop(train: torch.Tensor, num_entities: int, *, k: int) -> Neighbourhood:
    """Exact ``k``-hop sets: the support of ``A + ... + A^k`` without the diagonal.

    Computed block of rows by block of rows as ``R <- R + R A`` (values reset
    to 1 after each product so only the support matters), with sparse CSR
    products; memory grows with the output, never with ``E^2``.
    """
    import scipy.sparse as sp  # a dependency of DGL

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_train(train, num_entities)
    src, dst = _undirected_edges(train, num_entities)
    n = num_entities
    adj = sp.csr_matrix(
        (np.ones(src.numel(), dtype=np.float32), (src.numpy(), dst.numpy())), shape=(n, n)
    )
    row_counts: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, n, _EXACT_ROW_BLOCK):
        stop = min(n, start + _EXACT_ROW_BLOCK)
        reach = adj[start:stop]
        for _ in range(k - 1):
            reach = reach + reach @ adj
            reach.data[:] = 1.0  # support only; keeps values small
        reach = sp.csr_matrix(reach)
        reach.sort_indices()
        # drop the anchor itself: in row i of the block that is column start + i
        rows = np.repeat(np.arange(stop - start), np.diff(reach.indptr))
        keep = reach.indices != rows + start
        row_counts.append(np.bincount(rows[keep], minlength=stop - start))
        cols.append(reach.indices[keep].astype(np.int32, copy=False))
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    if row_counts:
        indptr[1:] = torch.from_numpy(np.concatenate(row_counts).astype(np.int64)).cumsum(0)
    indices = torch.from_numpy(np.concatenate(cols)) if cols else torch.zeros(0, dtype=torch.int32)
    return Neighbourhood(indptr=indptr, indices=indices, counts=None, k=k, walks=0)


# ---------------------------------------------------------------------------- walks


def _check_walk_mode(walk_mode: str) -> None:
    if walk_mode not in WALK_MODES:
        raise ValueError(f"walk_mode must be one of {', '.join(WALK_MODES)}, got {walk_mode!r}")


def _records_to_csr(
    records: torch.Tensor, invalid: torch.Tensor, n: int, key_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct (anchor, entity) pairs of a chunk's records, in CSR order.

    ``records`` is ``(c, w)``: row ``i`` holds the entities recorded for the
    chunk's ``i``-th anchor. Invalid records are replaced by a sentinel ``n``
    that sorts last, each row is sorted, and ``unique_consecutive`` over
    ``row * (n + 1) + entity`` gives the distinct pairs and their multiplicities.
    Returns (entries per row (c,), entities, counts).
    """
    c = records.shape[0]
    records = records.masked_fill(invalid, n).to(key_dtype)
    records, _ = torch.sort(records, dim=1)
    key = records + (torch.arange(c, dtype=key_dtype) * (n + 1)).unsqueeze(1)
    uniq, cnt = torch.unique_consecutive(key.view(-1), return_counts=True)
    row, col = uniq // (n + 1), uniq % (n + 1)
    valid = col < n
    row, col, cnt = row[valid], col[valid], cnt[valid]
    return torch.bincount(row.long(), minlength=c), col.to(torch.int32), cnt.to(torch.int32)


def random_walk_neighbourhood(
    graph: dgl.DGLGraph,
    *,
    k: int,
    walks: int,
    seed: int,
    walk_mode: WalkMode | str = "restart",
    chunk_walks: int = DEFAULT_CHUNK_WALKS,
) -> Neighbourhood:
    """Entities recorded by random walks from every node, with multiplicity.

    ``restart``: ``walks`` independent walks of ``k`` steps per anchor; the
    endpoints are recorded, except dead walks (``-1``) and returns to the anchor.
    ``continue``: one walk of ``k * walks`` steps per anchor (a single
    :func:`dgl.sampling.random_walk` call of that length), recording every
    ``k``-th node of the trace (columns ``k, 2k, ..., k * walks``); only dead
    records (``-1``, from an isolated anchor) are dropped.

    Anchors are processed in chunks whose traces hold about ``chunk_walks * (k + 1)``
    ids; the ``(c, walks)`` records of a chunk become CSR rows with
    :func:`_records_to_csr`.
    """
    if k < 1 or walks < 1:
        raise ValueError(f"k and walks must be >= 1, got k={k}, walks={walks}")
    _check_walk_mode(walk_mode)
    n = graph.num_nodes()
    trace_per_anchor = walks * (k + 1) if walk_mode == "restart" else k * walks + 1
    anchors_per_chunk = max(1, chunk_walks * (k + 1) // trace_per_anchor)
    # int32 keys are enough (and sort faster) while chunk * (E + 1) fits.
    key_dtype = torch.int32 if anchors_per_chunk * (n + 1) < 2**31 - 1 else torch.int64
    row_counts: list[torch.Tensor] = []
    cols: list[torch.Tensor] = []
    vals: list[torch.Tensor] = []
    dgl.seed(seed)
    for start in range(0, n, anchors_per_chunk):
        stop = min(n, start + anchors_per_chunk)
        c = stop - start
        anchors = torch.arange(start, stop, dtype=torch.int64)
        if walk_mode == "restart":
            trace, _ = dgl.sampling.random_walk(graph, anchors.repeat_interleave(walks), length=k)
            records = trace[:, -1].view(c, walks)
            invalid = (records < 0) | (records == anchors.unsqueeze(1))
        else:
            trace, _ = dgl.sampling.random_walk(graph, anchors, length=k * walks)
            records = trace[:, k::k]  # (c, walks): the node after every k steps
            invalid = records < 0
        del trace
        per_row, col, cnt = _records_to_csr(records, invalid, n, key_dtype)
        row_counts.append(per_row)
        cols.append(col)
        vals.append(cnt)
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    if row_counts:
        indptr[1:] = torch.cat(row_counts).cumsum(0)
    empty = torch.zeros(0, dtype=torch.int32)
    return Neighbourhood(
        indptr=indptr,
        indices=torch.cat(cols) if cols else empty,
        counts=torch.cat(vals) if vals else empty,
        k=k,
        walks=walks,
        walk_mode=walk_mode,
    )


# ---------------------------------------------------------------------------- cache + entry point


def neighbourhood_cache_key(
    train: torch.Tensor,
    num_entities: int,
    *,
    k: int,
    walks: int,
    seed: int,
    walk_mode: str = "restart",
) -> str:
    """sha256 over the training triples' bytes and every parameter that changes the result."""
    digest = hashlib.sha256()
    digest.update(f"emu-dgl-neighbourhood:v{CACHE_FORMAT_VERSION}\n".encode())
    mode = walk_mode if walks > 0 else "exact"
    digest.update(f"E={num_entities};k={k};walks={walks};mode={mode};".encode())
    # The seed only matters for walks; exact sets share one cache file whatever the seed.
    digest.update(f"seed={seed if walks > 0 else 0};shape={tuple(train.shape)}\n".encode())
    digest.update(train.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where neighbourhoods are cached by default: ``neighbourhoods/`` of the cache root
    (``$EMU_DGL_CACHE``, else the user cache; see :func:`emu_dgl.data.cache_root`)."""
    from emu_dgl.data.catalogue import cache_root

    return cache_root() / "neighbourhoods"


def _cache_path(cache_dir: Path, key: str, *, k: int, walks: int, walk_mode: str) -> Path:
    kind = f"{walk_mode}{walks}" if walks > 0 else "exact"
    return Path(cache_dir) / f"neighbourhood-k{k}-{kind}-{key[:24]}.pt"


class _CacheBlocked(Exception):
    """Something that is not a regular file of ours sits at the cache path (a link, a
    FIFO, a device): it is neither read nor replaced."""


def _load(
    path: Path, *, key: str, num_entities: int, k: int, walks: int, walk_mode: str
) -> Neighbourhood | None:
    from emu_dgl.errors import FileError
    from emu_dgl.files import describe_kind, open_read

    if not os.path.lexists(path):
        return None
    try:
        # Never through a link, never blocking on a FIFO: opened non-blocking, then fstat.
        handle = open_read(path, "neighbourhood cache")
    except FileError as exc:
        if describe_kind(path) in ("missing", "a regular file"):  # gone, or unreadable
            warnings.warn(f"{exc}; rebuilding it", RuntimeWarning, stacklevel=3)
            return None
        raise _CacheBlocked(str(exc)) from None
    try:
        with handle:
            state = torch.load(handle, map_location="cpu", weights_only=True)
        if state.get("key") != key:
            raise ValueError("it was built from other training triples or parameters")
        nb = Neighbourhood.from_state_dict(state)
        expected = (num_entities, k, walks, walk_mode if walks > 0 else nb.walk_mode)
        if (nb.num_entities, nb.k, nb.walks, nb.walk_mode) != expected:
            raise ValueError("it holds a neighbourhood built with other parameters")
        if nb.nnz and (int(nb.indices.min()) < 0 or int(nb.indices.max()) >= num_entities):
            raise ValueError("entity ids out of range")
        if bool((nb.indptr[1:] < nb.indptr[:-1]).any()):
            raise ValueError("indptr is not monotone")
        return nb
    except Exception as exc:  # corrupt or foreign file: rebuild rather than crash
        warnings.warn(
            f"neighbourhood cache {path} is unreadable ({type(exc).__name__}: {exc}); rebuilding it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _save_atomic(neighbourhood: Neighbourhood, path: Path, key: str) -> None:
    from emu_dgl.data.io import remove_stale_temporaries
    from emu_dgl.files import make_dir, write_atomic

    make_dir(path.parent, "neighbourhood cache folder")
    remove_stale_temporaries(path)
    state = {**neighbourhood.state_dict(), "key": key}
    write_atomic(
        path, lambda handle: torch.save(state, handle), "neighbourhood cache", durable=False
    )


def build_neighbourhood(
    train: torch.Tensor,
    num_entities: int,
    *,
    k: int,
    walks: int,
    seed: int = 0,
    walk_mode: WalkMode | str = "restart",
    cache_dir: Path | str | None = None,
    chunk_walks: int = DEFAULT_CHUNK_WALKS,
    announce: bool = False,
) -> Neighbourhood:
    """Neighbourhoods of all entities of the training graph, on the CPU.

    ``walks == 0`` gives the exact ``k``-hop sets (``counts is None``);
    ``walks > 0`` the random-walk candidates of ``walk_mode`` (``restart`` or
    ``continue``, see the module docstring) with their counts. With a
    ``cache_dir`` the result is loaded from / saved to a file keyed by
    :func:`neighbourhood_cache_key`. With ``announce``, a build (not a cache hit)
    says on stderr what it builds, then how long it took and where it was cached:
    on large graphs it takes seconds and the file hundreds of MB.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if walks < 0:
        raise ValueError(f"walks must be >= 0 (0 = exact k-hop), got {walks}")
    _check_walk_mode(walk_mode)
    _check_train(train, num_entities)
    path, key = None, ""
    if cache_dir is not None:
        key = neighbourhood_cache_key(
            train, num_entities, k=k, walks=walks, seed=seed, walk_mode=walk_mode
        )
        path = _cache_path(Path(cache_dir), key, k=k, walks=walks, walk_mode=walk_mode)
        try:
            cached = _load(
                path, key=key, num_entities=num_entities, k=k, walks=walks, walk_mode=walk_mode
            )
        except _CacheBlocked as exc:
            warnings.warn(
                f"{exc}; building the SANS candidates without the cache",
                RuntimeWarning,
                stacklevel=2,
            )
            cached, path = None, None
        if cached is not None:
            return cached
    what = f"exact {k}-hop sets" if walks == 0 else f"{walk_mode} walks, k={k}, w={walks}"
    if announce:
        _say(f"building SANS candidates ({what}) for {num_entities:,} entities ...")
    started = time.perf_counter()
    if walks == 0:
        result = exact_khop(train, num_entities, k=k)
    else:
        graph = training_graph(train, num_entities)
        result = random_walk_neighbourhood(
            graph, k=k, walks=walks, seed=seed, walk_mode=walk_mode, chunk_walks=chunk_walks
        )
    if path is not None:
        try:
            _save_atomic(result, path, key)
        except (OSError, EmuDglError) as exc:  # a read-only or full cache folder: one warning
            warnings.warn(
                f"could not write the neighbourhood cache {path} ({exc}); the run goes on "
                "without it",
                RuntimeWarning,
                stacklevel=2,
            )
            path = None
    if announce:
        where = f"cached at {path} ({result.nbytes / 2**20:,.0f} MB)" if path else "not cached"
        _say(
            f"SANS candidates built in {time.perf_counter() - started:.1f} s "
            f"({result.nnz:,} pairs); {where}"
        )
    return result


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
