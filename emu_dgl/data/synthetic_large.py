r"""Large random knowledge graphs with power-law degrees, for scale tests and benchmarks.

Reachable as a dataset name with parameters::

    synthetic:entities=4000000,triples=20000000
    synthetic:entities=100000,triples=1000000,relations=500,alpha=1.1,seed=3

Each triple draws its head and its tail independently from a Zipf-like law over the
entities and its relation from the same kind of law over the relations: the entity
of popularity rank ``k`` (``k = 1 .. E``) is drawn with probability close to
``k^-alpha / sum_j j^-alpha``, using the inverse CDF of the continuous power law on
``[1, E + 1)``

    k = floor((1 + U ((E + 1)^(1 - alpha) - 1))^(1 / (1 - alpha)))     (alpha != 1)
    k = floor((E + 1)^U)                                                 (alpha == 1)

for ``U ~ Uniform[0, 1)``, and a seeded random permutation decides which entity has
which rank (so hubs are spread over the id range, not packed at low ids). Degrees
then follow a power law, as in real graphs (a few hubs, a long tail of rare
entities; with the defaults some entities occur in no triple at all, as in WN18RR,
and keep their embedding row). Duplicate triples are dropped and redrawn; the
surviving triples are shuffled and split into test, valid and train.

Everything is vectorised tensor code seeded by ``seed``: the same parameters give
the same graph. Generated graphs are cached under the processed-data folder, keyed by
the parameters, as memory-mapped store files (see :mod:`emu_dgl.data.prepared`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from emu_dgl.errors import DataError, EmuDglError

__all__ = ["PREFIX", "PowerLawSpec", "generate_power_law", "load_power_law", "parse_spec"]

PREFIX = "synthetic:"
_VERSION = 1  # bump when the generator's output for given parameters changes
MAX_ALPHA = 4.0  # steeper laws put nearly every draw on the first few entities
#: A round of drawing in which fewer than this share of the draws are new triples means
#: the law is too steep for so many triples (it would take hundreds of rounds, or forever).
_MIN_YIELD = 0.02


@dataclass(frozen=True)
class PowerLawSpec:
    """Parameters of a generated graph (the keys of the ``synthetic:`` name)."""

    entities: int = 10_000
    triples: int = 100_000  # distinct triples over all three splits
    relations: int = 0  # 0 = about entities / 1000, at least 10 and at most 1000
    alpha: float = 0.8  # power-law exponent of entity (and relation) popularity (0 = uniform)
    valid: int = -1  # triples held out for validation; -1 = 1% of triples, at most 5000
    test: int = -1  # likewise for test
    seed: int = 0

    def resolved(self) -> PowerLawSpec:
        held = min(5000, max(1, self.triples // 100))
        return PowerLawSpec(
            entities=self.entities,
            triples=self.triples,
            relations=self.relations or min(1000, max(10, self.entities // 1000)),
            alpha=self.alpha,
            valid=held if self.valid < 0 else self.valid,
            test=held if self.test < 0 else self.test,
            seed=self.seed,
        )

    @property
    def name(self) -> str:
        spec = self.resolved()
        return PREFIX + ",".join(f"{f.name}={getattr(spec, f.name)}" for f in fields(spec))

    def check(self) -> PowerLawSpec:
        spec = self.resolved()
        if spec.entities < 2 or spec.relations < 1:
            raise DataError(
                f"{PREFIX} needs entities >= 2 and relations >= 1, got {spec.entities}, {spec.relations}"
            )
        if not (math.isfinite(spec.alpha) and 0 <= spec.alpha <= MAX_ALPHA):
            raise DataError(
                f"{PREFIX} alpha must be a number in [0, {MAX_ALPHA:g}] (0 = uniform; real graphs "
                f"lie near 1), got {spec.alpha}"
            )
        if not 0 <= spec.seed <= 2**31 - 1:
            raise DataError(f"{PREFIX} seed must be in [0, {2**31 - 1}], got {spec.seed}")
        if spec.valid < 0 or spec.test < 0 or spec.valid + spec.test >= spec.triples:
            raise DataError(
                f"{PREFIX} valid + test ({spec.valid} + {spec.test}) must be below triples ({spec.triples})"
            )
        if spec.triples > spec.entities**2 * spec.relations // 4:
            raise DataError(
                f"{PREFIX} {spec.triples} distinct triples do not fit {spec.entities} entities and "
                f"{spec.relations} relations; ask for fewer triples or more entities"
            )
        if spec.entities**2 * spec.relations >= 2**63:
            raise DataError(
                f"{PREFIX} entities^2 * relations must stay below 2^63 (one int64 key per triple)"
            )
        return spec


def parse_spec(text: str) -> PowerLawSpec:
    """``"synthetic:entities=4000000,triples=20000000"`` -> :class:`PowerLawSpec`."""
    if not text.lower().startswith(PREFIX):
        raise DataError(f"'{text}' is not a generated graph name (it starts with '{PREFIX}')")
    types = {f.name: f.type for f in fields(PowerLawSpec)}
    values: dict[str, int | float] = {}
    body = text[len(PREFIX) :].strip()
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in types:
            raise DataError(
                f"'{text}': '{item}' is not key=value with a known key; keys: {', '.join(types)} "
                f"(e.g. {PREFIX}entities=100000,triples=1000000)"
            )
        try:
            number = float(raw.replace("_", ""))
            values[key] = number if types[key] == "float" else int(number)
            if types[key] == "int" and number != int(number):
                raise ValueError
        except ValueError:
            raise DataError(
                f"'{text}': {key} must be a {'number' if types[key] == 'float' else 'whole number'}, got '{raw}'"
            ) from None
    return PowerLawSpec(**values)  # type: ignore[arg-type]


def _power_law_ranks(
    count: int, size: int, alpha: float, generator: torch.Generator
) -> torch.Tensor:
    """``count`` ranks in ``[0, size)``, rank ``k`` with probability about ``(k + 1)^-alpha``."""
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    if abs(alpha - 1.0) < 1e-12:
        x = torch.exp(u * math.log(size + 1.0))
    else:
        a = 1.0 - alpha
        x = (1.0 + u * ((size + 1.0) ** a - 1.0)) ** (1.0 / a)
    return (x.floor().long() - 1).clamp_(0, size - 1)


def generate_power_law(
    spec: PowerLawSpec,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, PowerLawSpec]:
    """(train, valid, test) id triples of the graph ``spec`` describes, and the resolved spec."""
    spec = spec.check()
    E, R = spec.entities, spec.relations
    gen = torch.Generator().manual_seed(spec.seed)
    entity_of_rank = torch.randperm(E, generator=gen)
    relation_of_rank = torch.randperm(R, generator=gen)
    keys = torch.empty(0, dtype=torch.long)
    rounds = 0
    while len(keys) < spec.triples:
        # Draw a little more than missing (duplicates are dropped), then keep distinct keys.
        missing = spec.triples - len(keys)
        count = int(missing * 1.1) + 1000
        h = entity_of_rank[_power_law_ranks(count, E, spec.alpha, gen)]
        r = relation_of_rank[_power_law_ranks(count, R, spec.alpha, gen)]
        t = entity_of_rank[_power_law_ranks(count, E, spec.alpha, gen)]
        before = len(keys)
        keys = torch.unique(torch.cat([keys, (h * R + r) * E + t]))
        rounds += 1
        if len(keys) - before < max(1.0, _MIN_YIELD * count):
            raise DataError(
                f"{spec.name}: alpha={spec.alpha:g} puts nearly every draw on the same few entities; "
                f"after {rounds} round(s) only {len(keys)} of {spec.triples} distinct triples were "
                "found: lower alpha, or ask for fewer triples or more entities"
            )
    # torch.unique sorted the keys: a seeded shuffle, then the first ``triples`` of them.
    keys = keys[torch.randperm(len(keys), generator=gen)[: spec.triples]]
    triples = torch.stack([keys // (R * E), keys // E % R, keys % E], dim=1)
    test, valid = triples[: spec.test], triples[spec.test : spec.test + spec.valid]
    return triples[spec.test + spec.valid :], valid, test, spec


def load_power_law(text: str, cache_dir: str | Path | None = None):  # -> KnowledgeGraph
    """The graph named ``text`` (see the module doc), from the cache or generated and cached.

    The cache is a store file (:mod:`emu_dgl.data.prepared`): a later load maps it, with
    its filter indexes, instead of generating again."""
    from emu_dgl.data.knowledge_graph import KnowledgeGraph
    from emu_dgl.data.names import Names, names_blob
    from emu_dgl.data.prepared import load_prepared, save_prepared
    from emu_dgl.data.store import StoreError

    spec = parse_spec(text).check()
    cache_path = None
    key = "-".join(f"{k}{v}" for k, v in asdict(spec).items())
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"synthetic-v{_VERSION}-{key}.store"
        try:
            return load_prepared(cache_path, key=key, name=spec.name)
        except (StoreError, EmuDglError, OSError):
            pass  # missing or unreadable: generate again and overwrite
    train, valid, test, spec = generate_power_law(spec)
    kg = KnowledgeGraph._trusted(
        name=spec.name,
        entity_names=Names(*names_blob([f"e{i}" for i in range(spec.entities)])),
        relation_names=[f"r{i}" for i in range(spec.relations)],
        # [3, N] columns, as a cached graph holds them (the trainer reads columns)
        splits={"train": _columns(train), "valid": _columns(valid), "test": _columns(test)},
        duplicates={},
        index={},
    )
    if cache_path is not None:
        try:
            save_prepared(kg, cache_path, key=key)
        except (OSError, EmuDglError) as exc:  # a cache is optional
            import warnings

            warnings.warn(f"could not write the dataset cache {cache_path}: {exc}", stacklevel=2)
    return kg


def _columns(triples: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` triples as the ``.t()`` view of contiguous ``[3, N]`` columns."""
    return triples.t().contiguous().t()
