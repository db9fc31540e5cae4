"""A run's memory: a lower bound checked before anything large is allocated, and a plan.

:func:`memory_plan` (``emu-dgl plan``, and the line ``train`` prints at its start)
predicts each process's peak resident memory part by part: see the plan's section below.

A config such as ``model.dim=1e8`` or ``sampler.num_negatives=5e7`` passes validation
(the numbers are positive) and then dies deep inside an allocation, or swaps the
machine to a halt. :func:`check_memory` counts only what a run certainly holds at
once and refuses the run, with the key to change, when that alone exceeds the memory
of its device:

* the embedding tables, their gradients, and the optimizer state (Adagrad: one
  accumulator per weight; Adam: two), all float32;
* with a graph encoder, its layers' node vectors over the whole graph and their
  gradients (``model.encoder_layers x E`` rows of the encoder's width);
* one step's gathered embeddings: ``B * (n + 2)`` entity rows (positives' both sides
  and ``n`` negatives each), twice when EMU mutates them, and their gradients;
* one evaluation batch scored against every entity: ``eval.batch_size * E`` floats.

The true peak is higher (intermediates of the loss), so the check never refuses a
run that could fit; it catches the orders-of-magnitude mistakes. Batch sizes count as
the run uses them: a training batch is at most the training split, an evaluation batch
at most the largest split it ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from emu_dgl.errors import ConfigError

_FLOAT = 4  # bytes per float32


def estimate_bytes(
    config: Any,
    num_entities: int,
    num_relations: int,
    *,
    train_triples: int | None = None,
    eval_triples: int | None = None,
) -> dict[str, tuple[int, str]]:
    """Lower bounds, in bytes, of the parts listed in the module docstring, each with the
    config keys that set it. ``train_triples`` and ``eval_triples`` (when known) cap the
    batch sizes, as the trainer and the evaluator cap them."""
    from emu_dgl.registry import DECODERS, ENCODERS, OPTIMIZERS
    from emu_dgl.training.build import SWITCH_OPTIMIZER, scores_all_entities

    decoder = DECODERS.get(config.model.name)
    dim = config.model.dim
    entity_width, relation_width = decoder.table_widths(
        dim, **config.options_for(DECODERS.config_key)
    )
    encoder = config.options_for(ENCODERS.config_key)
    table_width = encoder.get("width") or entity_width
    # the entity table in its dtype with its optimizer state, as the plan counts them (a
    # row-wise optimizer keeps a float per row; row-wise updates need no dense gradient)
    table, state = _table_and_state(config, num_entities, table_width, num_entities)
    optimizers = [config.train.optimizer]
    if config.train.schedule == "reference":
        optimizers.append(SWITCH_OPTIMIZER)
    optimizer_copies = max(
        1, *(getattr(OPTIMIZERS.get(name), "state_per_weight", 1) for name in optimizers)
    )
    weights = table + state + num_relations * relation_width * _FLOAT * (2 + optimizer_copies)
    one_vs_all = scores_all_entities(config)
    batch = min(config.train.batch_size, train_triples or config.train.batch_size)
    eval_batch = min(config.eval.batch_size, eval_triples or config.eval.batch_size)
    rows = batch * (num_entities if one_vs_all else config.sampler.num_negatives + 2)
    mutated = 2 if config.emu.enabled else 1
    step_keys = (
        "train.batch_size, model.dim"
        if one_vs_all
        else "sampler.num_negatives, train.batch_size, model.dim"
    )
    parts = {
        "embedding tables and optimizer state": (weights, "model.dim"),
        "one training step": (rows * entity_width * _FLOAT * mutated * 2, step_keys),
        "one evaluation batch": (eval_batch * num_entities * _FLOAT, "eval.batch_size"),
    }
    if getattr(ENCODERS.lookup(config.model.encoder), "uses_graph", False):
        layers = encoder.get("layers") or 1
        parts["the encoder's layers"] = (
            2 * layers * num_entities * max(table_width, entity_width) * _FLOAT,
            "model.encoder_width, model.encoder_layers",
        )
    return parts


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory the device has (GPU: total; CPU: physical RAM), or None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PB"


def check_memory(
    config: Any,
    num_entities: int,
    num_relations: int,
    device: torch.device,
    *,
    train_triples: int | None = None,
    eval_triples: int | None = None,
) -> None:
    """Raise a one-line ConfigError when the run cannot fit the device's memory."""
    available = device_memory(device)
    if available is None:
        return
    parts = estimate_bytes(
        config,
        num_entities,
        num_relations,
        train_triples=train_triples,
        eval_triples=eval_triples,
    )
    total = sum(size for size, _ in parts.values())
    if total <= available:
        return
    what, (biggest, keys) = max(parts.items(), key=lambda kv: kv[1][0])
    values = ", ".join(
        f"{k}={getattr(getattr(config, k.split('.')[0]), k.split('.')[1])}"
        for k in keys.split(", ")
    )
    raise ConfigError(
        f"this run needs at least {_human(total)} of memory ({what}: {_human(biggest)}, from {values}) "
        f"but the {device.type} has {_human(available)}; lower "
        + (keys if "," not in keys else "one of them")
    )


# ============================================================================ the plan
# A memory plan predicts a run's peak resident memory per process, part by part, so that
# a user sees before the run whether a configuration fits, and which part to shrink.
#
# The run holds, from its start to its end (``always``): the interpreter with torch and
# DGL; the entity table (this process's rows) and its optimizer state; the relation
# table; the data (triples, names, the batch order); the filter indexes; the SANS
# candidates; the optimizer's row buffers (one row per distinct entity a step touches).
# On top of that, one at a time: a training step's temporaries, an evaluation batch, and
# at the end the best weights read back from their checkpoint. The peak is the largest
# of these phases (the best weights are read back only when a validation before the
# last step may have been the best). The step's temporaries are ``rows * (per_row +
# per_float * width)`` bytes for ``rows = B * (n + 2)`` looked-up entity rows (on N
# processes: the per-row
# part for the whole batch, whose draws every process makes, the rest for its 1/N of
# the rows): the coefficients below were fitted to measured peaks
# (benchmarks/bench_memory_plan.py, DistMult with EMU, CPU).

#: Bytes of a training step's temporaries per looked-up entity row, and per float of it.
STEP_BYTES_PER_ROW = 440
STEP_FLOATS_PER_ROW = 3.75
#: ... and without the EMU mutation (one mixed copy of the negatives less).
STEP_FLOATS_PER_ROW_NO_EMU = 2.75
#: A shared-negatives step (``sampler.shared_chunk``), per score of a positive against a
#: negative: bytes of the filter's known-triple test (keys, their order, the search), and
#: floats of the scores, loss terms and gradients with and without EMU (fitted like the
#: above, DistMult, CPU); a decoder that broadcasts adds floats per score and coordinate.
SHARED_FILTER_BYTES_PER_SCORE = 38
SHARED_FLOATS_PER_SCORE = 14
SHARED_FLOATS_PER_SCORE_NO_EMU = 5
SHARED_BROADCAST_FLOATS = 4
#: Row buffers of the row optimizers: floats per distinct row a step updates.
OPTIMIZER_BUFFER_FLOATS = 2.0


@dataclass(frozen=True)
class GraphSize:
    """What the plan needs to know of the data."""

    entities: int
    relations: int
    train: int
    valid: int
    test: int
    name_bytes: int  # the entity and relation names' UTF-8 bytes, one separator each

    @classmethod
    def of(cls, kg: Any) -> GraphSize:
        def blob_bytes(names: Any) -> int:
            blob = getattr(names, "blob", None)
            if blob is not None:
                return len(blob) + 1
            return sum(len(n.encode("utf-8")) + 1 for n in names)

        return cls(
            entities=kg.num_entities,
            relations=kg.num_relations,
            train=len(kg.train),
            valid=len(kg.valid),
            test=len(kg.test),
            name_bytes=blob_bytes(kg.entity_names) + blob_bytes(kg.relation_names),
        )

    @property
    def triples(self) -> int:
        return self.train + self.valid + self.test


@dataclass(frozen=True)
class Part:
    """One named part of the plan: its bytes per process, the phase that holds it
    (``always``, ``step``, ``evaluation`` or ``end``), what sets it, and whether its pages
    are shared by the processes of one machine (memory-mapped from the dataset cache)."""

    name: str
    bytes: int
    phase: str
    keys: str = ""
    shared: bool = False


@dataclass
class MemoryPlan:
    parts: list[Part]
    nproc: int
    available: int | None
    available_from: str

    def phase(self, phase: str) -> int:
        """Bytes held during ``phase``: everything held always, plus the phase's own parts."""
        always = sum(p.bytes for p in self.parts if p.phase == "always")
        if phase == "always":
            return always
        return always + sum(p.bytes for p in self.parts if p.phase == phase)

    @property
    def peak(self) -> int:
        """The predicted peak resident memory of one process."""
        return max(self.phase(phase) for phase in ("always", "step", "evaluation", "end"))

    @property
    def peak_phase(self) -> str:
        return max(("step", "evaluation", "end"), key=self.phase)

    @property
    def machine_peak(self) -> int:
        """All processes of one machine together: each one's peak, the shared pages once."""
        shared = sum(p.bytes for p in self.parts if p.shared)
        return self.nproc * (self.peak - shared) + shared

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.machine_peak <= self.available

    def table(self) -> str:
        """The plan as a table: one line per part, then the peak and the verdict."""
        width = max(len(p.name) for p in self.parts)
        lines = [f"memory plan per process ({self.nproc} process{'es' * (self.nproc > 1)}):"]
        for part in self.parts:
            when = "" if part.phase == "always" else f"  (during {_PHASE_WORDS[part.phase]})"
            mark = " *" if part.shared and self.nproc > 1 else ""
            lines.append(f"  {part.name:<{width}}  {_human(part.bytes):>10}{mark}{when}")
        lines.append(
            f"  {'peak':<{width}}  {_human(self.peak):>10}  ({_PHASE_WORDS[self.peak_phase]})"
        )
        if self.nproc > 1:
            lines.append(
                f"  {'all processes':<{width}}  {_human(self.machine_peak):>10}  "
                "(the parts marked * are mapped once and shared)"
            )
        lines.append(self.verdict())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for the start of a run."""
        biggest = sorted((p for p in self.parts if p.phase == "always"), key=lambda p: -p.bytes)[:3]
        what = ", ".join(f"{p.name} {_human(p.bytes)}" for p in biggest)
        return f"memory plan: peak {_human(self.peak)} per process ({what}); {self.verdict()}"

    def verdict(self) -> str:
        if self.available is None:
            return "available memory unknown"
        room = f"{_human(self.available)} available ({self.available_from})"
        if self.fits:
            return f"fits: {room}"
        return f"does NOT fit: {room}; see `emu-dgl plan` for what to shrink"


_PHASE_WORDS = {
    "always": "the whole run",
    "step": "a training step",
    "evaluation": "an evaluation batch",
    "end": "reloading the best weights at the end",
}


def available_memory() -> tuple[int | None, str]:
    """Bytes this process may still use: the least of the machine's available memory, a
    cgroup (container) limit and an address-space limit (``ulimit -v``), with its source."""
    import resource

    found: list[tuple[int, str]] = []
    try:
        for line in open("/proc/meminfo", encoding="ascii"):  # noqa: SIM115
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except OSError:
        total = device_memory(torch.device("cpu"))
        if total is not None:
            found.append((total, "physical memory"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path, encoding="ascii").read().strip()  # noqa: SIM115
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append((int(text), "cgroup memory limit"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        found.append((soft, "ulimit -v"))
    if not found:
        return None, ""
    return min(found)


def baseline_bytes() -> int:
    """Resident memory of the interpreter with torch, DGL and emu-dgl's training code
    imported (torch.optim brings torch._dynamo): measured in this process."""
    import torch._dynamo  # noqa: F401  (what the first optimizer imports)
    import tqdm  # noqa: F401

    import emu_dgl.evaluation  # noqa: F401
    import emu_dgl.sampling  # noqa: F401
    import emu_dgl.training.build  # noqa: F401
    from emu_dgl._dgl import dgl  # noqa: F401

    try:
        status = open("/proc/self/status", encoding="ascii").read()  # noqa: SIM115
        rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        rss = 390 * 2**20  # measured on Linux with torch 2.13 and DGL 2.1
    return rss


def memory_plan(
    config: Any,
    graph: GraphSize,
    *,
    nproc: int = 1,
    baseline: int | None = None,
    sans_bytes: int | None = None,
) -> MemoryPlan:
    """The plan of ``config`` on a graph of ``graph``'s size with ``nproc`` processes.

    Per process, each rank holding ``1 / nproc`` of the entity rows and their optimizer
    state and training ``1 / nproc`` of each batch; the data and the filter indexes are
    mapped from the dataset cache by every rank (counted in each rank's resident memory,
    though their pages are shared). ``sans_bytes`` is the size of the SANS candidates
    when known (their cache file), else estimated from ``sampler.walks``."""
    from emu_dgl.registry import DECODERS
    from emu_dgl.training.build import lookups_per_step

    n = max(1, int(nproc))
    decoder = DECODERS.get(config.model.name)
    width, rel_width = decoder.table_widths(
        config.model.dim, **config.options_for(DECODERS.config_key)
    )
    table_rows = -(-graph.entities // n)
    table, state = _table_and_state(config, table_rows, width, graph.entities)
    one_vs_all = _one_vs_all(config)
    rows_update = _rows_update(config, graph.entities)
    whole = min(config.train.batch_size, graph.train) if graph.train else 0
    all_rows = lookups_per_step(config) * whole // max(1, config.train.batch_size)
    # distinct rows of one step on this rank, at most (the row optimizers' buffers)
    touched = min(all_rows, table_rows) if rows_update else 0
    step = _step_bytes(config, graph, width, whole, all_rows, n)
    parts = [
        Part(
            "interpreter, torch and DGL",
            baseline if baseline is not None else baseline_bytes(),
            "always",
        ),
        Part("entity table", table, "always", "model.dim, model.dtype"),
        Part("optimizer state", state, "always", "train.optimizer"),
        Part("optimizer row buffers", int(touched * width * 4 * OPTIMIZER_BUFFER_FLOATS), "always"),
        Part("relation parameters", graph.relations * rel_width * 4 * 4, "always"),
        Part(
            "data (triples, names)",
            graph.triples * 24 + graph.name_bytes + 8 * (graph.entities + graph.relations + 2),
            "always",
            shared=True,
        ),
        Part("batch order", graph.train * 8, "always"),
        Part(
            "filter index",
            8 * (2 * graph.train + 2 * (graph.valid + graph.test)),
            "always",
            shared=True,
        ),
    ]
    if config.sampler.name == "sans" and config.sampler.walks >= 0 and not one_vs_all:
        if sans_bytes is None:  # each entity's distinct walk records, at most walks of them
            per_entity = config.sampler.walks if config.sampler.walks > 0 else 64
            sans_bytes = graph.entities * (8 + 8 * min(per_entity, graph.entities))
        parts.append(Part("SANS candidates", sans_bytes, "always", "sampler.walks"))
    if config.sampler.filter and _shared_chunk(config, whole):  # both orientations' keys
        parts.append(Part("shared-negative filter keys", 16 * graph.train, "always"))
    parts.append(Part("step's random words", _words_bytes(config, width), "always"))
    parts.append(Part("training step", step, "step", "train.batch_size, sampler.num_negatives"))
    parts.append(Part("evaluation", _evaluation_bytes(config, graph, width, n), "evaluation"))
    cfg = config.train
    if cfg.valid_every and cfg.valid_every < cfg.max_steps:  # the best may be an earlier step
        parts.append(Part("best weights read back", table + graph.relations * rel_width * 4, "end"))
    available, source = available_memory()
    return MemoryPlan(parts, n, available, source)


def _rows_update(config: Any, num_entities: int) -> bool:
    """Whether the entity table is updated row by row (no dense gradient)."""
    from emu_dgl.training.build import dense_entity_gradient, lookups_per_step
    from emu_dgl.training.sparse import use_sparse_rows

    return config.model.dtype != "float32" or use_sparse_rows(
        config.train.sparse,
        config.train.optimizer,
        dense_gradient=dense_entity_gradient(config),
        num_entities=num_entities,
        lookups=lookups_per_step(config),
    )


def _table_and_state(
    config: Any, table_rows: int, width: int, num_entities: int
) -> tuple[int, int]:
    """Bytes of ``table_rows`` entity rows in ``model.dtype``, and of their optimizer state
    (with the dense gradient where the table has one)."""
    from emu_dgl.training.precision import TABLE_DTYPES

    itemsize = torch.empty(0, dtype=TABLE_DTYPES[config.model.dtype]).element_size()
    rows_update = _rows_update(config, num_entities)
    state = _optimizer_bytes(config, table_rows * width, table_rows, rows_update)
    return table_rows * width * itemsize, state


def _one_vs_all(config: Any) -> bool:
    from emu_dgl.training.build import scores_all_entities

    return scores_all_entities(config)


def _state_floats(name: str, floats: int, table_rows: int) -> int:
    """Floats of optimizer ``name``'s state for a table of ``floats`` weights in
    ``table_rows`` rows: ``state_per_weight`` per weight, or one per row where it is 0."""
    from emu_dgl.registry import OPTIMIZERS

    per_weight = getattr(OPTIMIZERS.get(name), "state_per_weight", 1)
    return floats * per_weight if per_weight else table_rows


def _optimizer_bytes(config: Any, floats: int, table_rows: int, rows_update: bool) -> int:
    """The entity table's optimizer state (and its dense gradient, where it has one)."""
    from emu_dgl.training.build import SWITCH_OPTIMIZER

    state = _state_floats(config.train.optimizer, floats, table_rows) * 4
    if config.train.schedule == "reference":  # dense Adam after the switch
        state = max(state, _state_floats(SWITCH_OPTIMIZER, floats, table_rows) * 4)
    if not rows_update or config.train.schedule == "reference":
        state += floats * 4  # the table's dense gradient
    return state


def _step_bytes(
    config: Any, graph: GraphSize, width: int, whole: int, all_rows: int, nproc: int
) -> int:
    """A training step's temporaries: the draws (ids, filter keys) for the ``whole`` batch
    on every process, the scoring, loss and gradients for this process's rows, and the
    rows of other processes' blocks in one exchange buffer. A shared-negatives step
    (``sampler.shared_chunk``) looks up fewer rows but scores every positive against
    every negative of its chunk: :func:`_shared_scores_bytes` on top."""
    batch, rows = whole // nproc, all_rows // nproc  # this process's positives and rows
    if _one_vs_all(config):
        return int(batch * graph.entities * 4 * 4 + rows * width * 4 * 4)
    floats = STEP_FLOATS_PER_ROW if config.emu.enabled else STEP_FLOATS_PER_ROW_NO_EMU
    exchange = rows * width * 4 if nproc > 1 else 0
    lookups = all_rows * STEP_BYTES_PER_ROW + rows * floats * width * 4 + exchange
    if _shared_chunk(config, whole):
        lookups += _shared_scores_bytes(config, width, whole, batch)
    return int(lookups)


def _shared_chunk(config: Any, whole: int) -> int:
    """``C`` of a shared-negatives step (see :mod:`emu_dgl.training.shared_step`), else 0."""
    return 0 if _one_vs_all(config) else min(config.sampler.shared_chunk, whole)


def _shared_scores_bytes(config: Any, width: int, whole: int, batch: int) -> float:
    """A shared-negatives step's ``[positive, G n]`` scores: the filter's known-triple
    test for the whole batch (every process draws it), the scores, loss terms and their
    gradients for this process's ``batch`` positives, and for a decoder without a
    matrix-product form (TransE-L1, RotatE, ...) its broadcast ``[C, n, width]`` terms."""
    n = config.sampler.num_negatives * (
        2 if config.emu.enabled and config.emu.separate_draws else 1
    )
    filtered = SHARED_FILTER_BYTES_PER_SCORE * whole * n if config.sampler.filter else 0
    floats = SHARED_FLOATS_PER_SCORE if config.emu.enabled else SHARED_FLOATS_PER_SCORE_NO_EMU
    scores = batch * n * floats * 4
    if not _has_matrix_form(config):
        scores += batch * n * width * 4 * SHARED_BROADCAST_FLOATS
    return filtered + scores


def _has_matrix_form(config: Any) -> bool:
    """Whether the decoder scores shared negatives as matrix products (a polynomial form,
    see :mod:`emu_dgl.models.shared`); asked of a decoder built without tables."""
    from emu_dgl.models import KGEModel
    from emu_dgl.registry import DECODERS

    try:
        model = KGEModel(
            0,
            1,
            decoder=config.model.name,
            dim=config.model.dim,
            **config.options_for(DECODERS.config_key),
        )
        head = torch.zeros(1, model.decoder.entity_width(config.model.dim))
        relation = torch.zeros(1, model.relation.weight.shape[1])
        return model.decoder.polynomial(head, relation) is not None
    except (RuntimeError, TypeError, ValueError):  # no probe of this shape: plan the larger
        return False


def _words_bytes(config: Any, width: int) -> int:
    """The step's buffer of random words: the whole batch's (every process draws what one
    process would), for the negatives, the filter's spare draws and the EMU mask."""
    from emu_dgl.sampling.filtering import default_spares
    from emu_dgl.training.build import mutation_from_config

    if _one_vs_all(config):
        return 0
    batch, n = config.train.batch_size, config.sampler.num_negatives
    chunk = _shared_chunk(config, batch)
    if chunk:  # side coins, a draw of n per chunk (no spares), the chunks' EMU mask
        chunks = batch // chunk
        draws = chunks * n * (2 if config.emu.enabled and config.emu.separate_draws else 1)
        mutation = mutation_from_config(config, torch.device("cpu"))
        masks = mutation.words_needed((chunks, n, width)) if mutation is not None else 0
        return (batch + draws + masks) * 8
    per_row = n + (sum(default_spares(n)) if config.sampler.filter else 0)
    per_row *= 2 if config.emu.enabled and config.emu.separate_draws else 1
    mutation = mutation_from_config(config, torch.device("cpu"))
    if mutation is not None:
        per_row += mutation.words_needed((batch, 1 + n, width)) // batch
    return batch * per_row * 8


def _evaluation_bytes(config: Any, graph: GraphSize, width: int, nproc: int) -> int:
    """Scores of one evaluation batch: every entity of this rank (full protocol), or a
    chunk's shared candidates (sampled protocol)."""
    ev = config.eval
    if ev.protocol == "sampled":
        from emu_dgl.evaluation.ranking import SAMPLED_CHUNK

        candidates = min(graph.entities, ev.num_negatives * 2)
        return SAMPLED_CHUNK * candidates * (4 * 4 + 8) + candidates * width * 4 * 2
    batch = min(ev.batch_size, max(graph.valid, graph.test, 1))
    # the scores of every entity (of this rank), their differences to the target's and
    # signs; the decoder's intermediates stay under SLICE_BUDGET_BYTES
    from emu_dgl.models.base import SLICE_BUDGET_BYTES

    return batch * -(-graph.entities // nproc) * 4 * 3 + SLICE_BUDGET_BYTES


def graph_size(config: Any) -> GraphSize:
    """The size of the config's dataset: a generated graph's from its name alone (nothing
    is generated), any other dataset's by loading it (a cached one is only mapped)."""
    name = config.dataset.name
    if name.lower().startswith("synthetic:"):
        from emu_dgl.data.synthetic_large import parse_spec

        spec = parse_spec(name).check()
        digits = len(str(spec.entities))  # names e0 ... e<E-1>, r0 ...
        return GraphSize(
            entities=spec.entities,
            relations=spec.relations,
            train=spec.triples - spec.valid - spec.test,
            valid=spec.valid,
            test=spec.test,
            name_bytes=spec.entities * (digits + 1) + spec.relations * 6,
        )
    from emu_dgl.data import load_dataset

    return GraphSize.of(load_dataset(name, config.dataset.data_dir))


def plan_as_dict(plan: MemoryPlan) -> dict[str, Any]:
    """The plan as JSON-ready data (``emu-dgl plan --json``)."""
    return {
        "nproc": plan.nproc,
        "parts": {
            p.name: {"bytes": p.bytes, "phase": p.phase, "shared": p.shared} for p in plan.parts
        },
        "phases": {ph: plan.phase(ph) for ph in ("always", "step", "evaluation", "end")},
        "peak_bytes": plan.peak,
        "machine_peak_bytes": plan.machine_peak,
        "available_bytes": plan.available,
        "available_from": plan.available_from,
        "fits": plan.fits,
    }


def announce_plan(config: Any, kg: Any, baseline: int) -> MemoryPlan:
    """The plan of the run about to start, said in one line on stderr (with
    ``train.progress``); one warning when it does not fit."""
    import sys
    import warnings

    from emu_dgl.errors import EmuDglWarning

    nproc = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        nproc = torch.distributed.get_world_size()
    plan = memory_plan(config, GraphSize.of(kg), nproc=nproc, baseline=baseline)
    if plan.fits is False:
        warnings.warn(plan.summary(), EmuDglWarning, stacklevel=2)
    elif config.train.progress and (not nproc > 1 or torch.distributed.get_rank() == 0):
        print(plan.summary(), file=sys.stderr, flush=True)
    return plan
