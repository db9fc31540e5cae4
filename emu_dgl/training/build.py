"""Every component of a run, built from a :class:`~emu_dgl.config.Config` in one place.

The config says *what* (names and numbers, checked for types and ranges by
:mod:`emu_dgl.config`); this module knows *which classes* those names mean. Each
component kind has one registry, and that registry is the one list of valid names:

=================  ==========================================  ======================
config key         registry                                    module
=================  ==========================================  ======================
``model.name``     :data:`~emu_dgl.models.DECODERS`            :mod:`emu_dgl.models`
``sampler.name``   :data:`~emu_dgl.sampling.SAMPLERS`          :mod:`emu_dgl.sampling`
``emu.variant``    :data:`~emu_dgl.models.MUTATIONS`           :mod:`emu_dgl.models.mutation`
                   (plus ``label_smoothing``: no mutation)
``loss.name``      :data:`~emu_dgl.training.losses.LOSSES`     :mod:`emu_dgl.training.losses`
                   (plus ``1vsall``: every entity scored)
``train.optimizer`` :data:`~emu_dgl.training.sparse.OPTIMIZERS` :mod:`emu_dgl.training.sparse`
``tracking.backends`` :data:`~emu_dgl.tracking.BACKENDS`       :mod:`emu_dgl.tracking`
=================  ==========================================  ======================

:func:`check_components` checks a config's names against them (the trainer, ``compare``
and ``tune`` call it before any work), and the ``*_from_config`` functions build the
pieces the trainer wires together.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from emu_dgl.config import Config, canonical_choice

if TYPE_CHECKING:
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.evaluation import FilteredEvaluator
    from emu_dgl.models import KGEModel, Mutation
    from emu_dgl.sampling import NegativeSampler
    from emu_dgl.training.step import EntityTable, TrainStep

__all__ = [
    "check_components",
    "component_names",
    "evaluator_from_config",
    "head_probability_from_config",
    "lookups_per_step",
    "loss_from_config",
    "model_from_config",
    "mutation_from_config",
    "optimizer_from_config",
    "sampler_from_config",
    "scheduler_from_config",
    "step_from_config",
    "switch_step",
]

#: Values of ``emu.variant`` and ``loss.name`` that are not registered components.
NO_MUTATION = "label_smoothing"
ONE_VS_ALL = "1vsall"


def component_names() -> dict[str, list[str]]:
    """Valid values of every config key that names a component (see the module doc)."""
    from emu_dgl.models import DECODERS, MUTATIONS
    from emu_dgl.sampling import SAMPLERS
    from emu_dgl.tracking import BACKENDS
    from emu_dgl.training.losses import LOSSES
    from emu_dgl.training.sparse import OPTIMIZERS

    return {
        "model.name": DECODERS.names(),
        "sampler.name": SAMPLERS.names(),
        "emu.variant": [*MUTATIONS.names(), NO_MUTATION],
        "loss.name": [*LOSSES.names(), ONE_VS_ALL],
        "train.optimizer": OPTIMIZERS.names(),
        "tracking.backends": list(BACKENDS),
    }


def check_components(config: Config) -> None:
    """A :class:`ConfigError` naming the key, the nearest valid name and the valid ones, for
    the first component name that no registry knows. Reads the config, never changes it."""
    from emu_dgl.training.precision import check_table_dtype

    for key, valid in component_names().items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        for item in value if isinstance(value, list) else [value]:
            if item not in valid:
                canonical_choice(key, item, valid)  # raises with the hint
    check_table_dtype(config)  # a bfloat16 table needs row-wise updates


def _accepted(factory: Callable[..., Any], candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``factory`` takes by name (decoder- or
    loss-specific options such as ``p_norm`` or ``alpha``)."""
    params = inspect.signature(factory).parameters
    return {k: v for k, v in candidates.items() if k in params}


# --------------------------------------------------------------------------- model


def model_from_config(config: Config, num_entities: int, num_relations: int) -> KGEModel:
    """Entity and relation tables plus the decoder ``model.name`` (initialised with the
    global torch generator: seed it first for a reproducible start). With ``model.dtype:
    bfloat16`` the entity table is stored in bfloat16 (see :mod:`emu_dgl.training.precision`)."""
    from emu_dgl.models import DECODERS, KGEModel

    m = config.model
    decoder_cls = DECODERS.get(m.name)
    options = _accepted(
        decoder_cls,
        {
            "gamma": m.gamma,
            "p_norm": m.p_norm,
            "modulus_weight": m.modulus_weight,
            "phase_weight": m.phase_weight,
        },
    )
    if m.dtype == "float32":
        return KGEModel(num_entities, num_relations, decoder=m.name, dim=m.dim, **options)
    # A table stored in low precision is allocated and initialised in that dtype (a float32
    # copy first would need the memory the smaller table saves).
    from emu_dgl.training.precision import TABLE_DTYPES, stored_entity_table

    model = KGEModel(1, num_relations, decoder=m.name, dim=m.dim, **options)
    width = model.decoder.entity_width(m.dim)
    model.entity = stored_entity_table(num_entities, width, TABLE_DTYPES[m.dtype])
    model.reset_parameters()
    return model


def mutation_from_config(config: Config, device: torch.device) -> Mutation | None:
    """The EMU mutation of ``emu.variant``, or ``None`` (EMU off, or label smoothing only)."""
    from emu_dgl.models import MUTATIONS

    emu = config.emu
    if not emu.enabled or emu.variant == NO_MUTATION:
        return None
    factory = MUTATIONS.get(emu.variant)
    return factory(**_accepted(factory, {"p": emu.p})).to(device)


# --------------------------------------------------------------------------- negatives


def sampler_from_config(
    config: Config,
    kg: KnowledgeGraph,
    device: torch.device,
    *,
    cache_dir: Path | None = None,
    announce: bool = False,
) -> NegativeSampler | None:
    """The negative sampler of the ``sampler`` section on ``device``, filtered against the
    training triples when ``sampler.filter``; ``None`` for the 1-vs-all loss (no negatives).
    SANS neighbourhoods are cached in ``cache_dir`` (default: the cache root's
    ``neighbourhoods/``); ``announce`` says on stderr when one is built."""
    from emu_dgl.sampling import KnownTriples, build_sampler

    if config.loss.name == ONE_VS_ALL:
        return None
    s = config.sampler
    # The filter's index: the training triples' sorted keys, memory-mapped from a dataset
    # cache (shared by every process) or sorted once here.
    known = KnownTriples.from_sorted_keys(
        kg.filter_keys().to(device), num_entities=kg.num_entities, num_relations=kg.num_relations
    )
    return build_sampler(
        s.name,
        train=kg.train,
        num_entities=kg.num_entities,
        num_negatives=s.num_negatives,
        k_hop=s.k_hop,
        walks=s.walks,
        walk_mode=s.walk_mode,
        weighted=s.weighted,
        seed=config.train.seed,
        cache_dir=cache_dir,
        announce=announce,
        filter=s.filter,
        known=known,
        device=device,
    )


def head_probability_from_config(
    config: Config, kg: KnowledgeGraph, device: torch.device
) -> torch.Tensor | None:
    """Per-relation probability of corrupting the head with ``sampler.bernoulli``, else ``None``
    (heads and tails alternate from step to step)."""
    from emu_dgl.sampling import bernoulli_head_probability

    if not config.sampler.bernoulli:
        return None
    return bernoulli_head_probability(kg.train, kg.num_relations).to(device)


# --------------------------------------------------------------------------- loss, optimizer


def loss_from_config(config: Config) -> nn.Module:
    """``loss.name`` (1-vs-all cross entropy for ``1vsall``), wrapped in the EMU loss when
    ``emu.enabled`` (the named loss then scores the unmutated negatives)."""
    from emu_dgl.training.losses import LOSSES, EMULoss, OneVsAllLoss

    cfg = config.loss
    if cfg.name == ONE_VS_ALL:
        return OneVsAllLoss(label_smoothing=cfg.label_smoothing)
    factory = LOSSES.get(cfg.name)
    base = factory(**_accepted(factory, {"alpha": cfg.alpha, "margin": cfg.margin}))
    emu = config.emu
    return EMULoss(base, neg_label=emu.neg_label, ce_coef=emu.ce_coef) if emu.enabled else base


def lookups_per_step(config: Config) -> int:
    """Entity rows one step looks up: anchor, true entity and every negative of each row."""
    if config.loss.name == ONE_VS_ALL:
        return 2 * config.train.batch_size
    draws = 2 if config.emu.enabled and config.emu.separate_draws else 1
    return config.train.batch_size * (2 + draws * config.sampler.num_negatives)


def optimizer_from_config(
    config: Config, model: nn.Module, *, phase: int = 0
) -> tuple[torch.optim.Optimizer, bool]:
    """``(optimizer, sparse_rows)`` for optimizer phase ``phase``: the one optimizer spec
    of every trainer (one process or many, where ``model.entity`` is this process's block).

    Phase 0 is ``train.optimizer`` at ``train.lr``. The reference schedule's phase ``k``
    is a fresh Adam at ``lr * lr_decay**k`` (the published scripts' switch).
    ``sparse_rows`` says whether the entity table is updated row-wise (``train.sparse``;
    ``auto`` decides by the table's size against the rows a step looks up).

    After a switch of the reference schedule the update is dense ``torch.optim.Adam`` over
    every row, whatever ``train.sparse`` says: the published code replaces its optimizer by
    Adam over the whole tables, which also moves a row whose gradient is zero (by its
    decayed momentum). Row-wise "lazy" Adam leaves such a row still, so it would be another
    method, and the arms of one comparison would differ in it (the base arms' whole-table
    penalty makes their gradient dense, the EMU arms' is not). A lazy catch-up cannot be
    exact cheaply: with Adam's eps and per-step bias corrections an idle row's drift has no
    closed form, so catching up means replaying the skipped steps; dense is the exact and
    simple choice, at the dense cost per step.
    """
    from emu_dgl.training.sparse import build_optimizer, use_sparse_rows

    cfg = config.train
    name, lr = (cfg.optimizer, cfg.lr) if phase == 0 else ("adam", cfg.lr * cfg.lr_decay**phase)
    loss = config.loss
    sparse_rows = use_sparse_rows(
        cfg.sparse,
        name,
        loss=loss.name,
        regularizer=loss.regularizer,
        num_entities=model.entity.num_embeddings,  # type: ignore[union-attr]  (all blocks)
        lookups=lookups_per_step(config),
    )
    if phase > 0 and cfg.schedule == "reference":
        sparse_rows = False  # the published switch: dense Adam over every row
    if config.model.dtype != "float32":
        sparse_rows = True  # a low-precision table is only updated row by row
    return build_optimizer(model, name, lr=lr, sparse=sparse_rows), sparse_rows


def step_from_config(
    config: Config,
    model: KGEModel,
    sampler: NegativeSampler | None,
    *,
    head_probability: torch.Tensor | None,
    generator: torch.Generator,
    batch_size: int,
    rows: tuple[int, int] | None = None,
    table: EntityTable | None = None,
) -> TrainStep:
    """The pure training step of the config (see :mod:`emu_dgl.training.step`): sampler,
    mutation, loss and regulariser wired together; ``rows`` and ``table`` are the seams
    a data-parallel trainer uses. The trainer sets its ``optimizer``."""
    from emu_dgl.training.step import TrainStep

    device = model.entity.weight.device
    emu = config.emu
    one_vs_all = config.loss.name == ONE_VS_ALL
    return TrainStep(
        model,
        sampler=sampler,
        mutation=mutation_from_config(config, device),
        loss=loss_from_config(config),
        emu=emu.enabled and not one_vs_all,
        separate_draws=emu.enabled and emu.separate_draws and not one_vs_all,
        one_vs_all=one_vs_all,
        regularizer=config.loss.regularizer,
        reg_weight=config.loss.reg_weight,
        head_probability=head_probability,
        batch_size=batch_size,
        generator=generator,
        rows=rows,
        table=table,
    )


def switch_step(config: Config, phase: int) -> int:
    """The reference schedule's step of the switch after ``phase`` (0: no schedule, never)."""
    cfg = config.train
    if cfg.schedule != "reference":
        return 0
    return (cfg.lr_decay_every or cfg.max_steps // 2) * 3**phase


def scheduler_from_config(
    config: Config, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``train.schedule: step`` as a StepLR; ``None`` for the other schedules."""
    cfg = config.train
    if cfg.schedule != "step":
        return None
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay
    )


# --------------------------------------------------------------------------- evaluation


def evaluator_from_config(
    config: Config,
    known: Iterable[torch.Tensor] | torch.Tensor | KnowledgeGraph,
    num_relations: int,
    *,
    device: torch.device | None = None,
) -> FilteredEvaluator:
    """The filtered evaluator of the ``eval`` section; ``known`` are every split's triples
    (concatenated here when given as a sequence), which the filtered setting removes, or
    the graph itself, whose filter index (memory-mapped from a dataset cache) is used
    as it is, on ``device``."""
    from emu_dgl.evaluation import FilteredEvaluator

    cfg = config.eval
    options: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "protocol": cfg.protocol,
        "num_negatives": cfg.num_negatives,
        "seed": cfg.seed,
    }
    if hasattr(known, "answer_keys"):
        kg: Any = known
        keys = {side: [k.to(device) for k in kg.answer_keys(side)] for side in ("head", "tail")}
        return FilteredEvaluator(
            None, num_relations, answer_keys=keys, num_entities=kg.num_entities, **options
        )
    if not isinstance(known, torch.Tensor):
        known = torch.cat(list(known))  # type: ignore[arg-type]
    return FilteredEvaluator(known, num_relations, **options)
