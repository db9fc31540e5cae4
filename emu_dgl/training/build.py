"""Every component of a run, built from a :class:`~emu_dgl.config.Config` in one place.

The config says *what* (names and numbers, checked for types and ranges by
:mod:`emu_dgl.config`); this module knows *which classes* those names mean. Each
component kind has one registry, and that registry is the one list of valid names:

=================  ==========================================  ======================
config key         registry                                    module
=================  ==========================================  ======================
``model.name``     :data:`~emu_dgl.models.DECODERS`            :mod:`emu_dgl.models`
``model.encoder``  :data:`~emu_dgl.encoders.ENCODERS`          :mod:`emu_dgl.encoders`
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
from emu_dgl.errors import ConfigError

if TYPE_CHECKING:
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.encoders import Encoder
    from emu_dgl.evaluation import FilteredEvaluator
    from emu_dgl.models import KGEModel, Mutation
    from emu_dgl.sampling import NegativeSampler
    from emu_dgl.training.step import EntityTable, TrainStep

__all__ = [
    "batch_size_for",
    "check_components",
    "component_names",
    "encoder_from_config",
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
    from emu_dgl.encoders import ENCODERS
    from emu_dgl.models import DECODERS, MUTATIONS
    from emu_dgl.sampling import SAMPLERS
    from emu_dgl.tracking import BACKENDS
    from emu_dgl.training.losses import LOSSES
    from emu_dgl.training.sparse import OPTIMIZERS

    return {
        "model.name": DECODERS.names(),
        "model.encoder": ENCODERS.names(),
        "sampler.name": SAMPLERS.names(),
        "emu.variant": [*MUTATIONS.names(), NO_MUTATION],
        "loss.name": [*LOSSES.names(), ONE_VS_ALL],
        "train.optimizer": OPTIMIZERS.names(),
        "tracking.backends": list(BACKENDS),
    }


def check_components(config: Config) -> None:
    """A :class:`ConfigError` naming the key, the nearest valid name and the valid ones, for
    the first component name that no registry knows. Reads the config, never changes it."""
    for key, valid in component_names().items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        for item in value if isinstance(value, list) else [value]:
            if item not in valid:
                canonical_choice(key, item, valid)  # raises with the hint


def _accepted(factory: Callable[..., Any], candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that ``factory`` takes by name (decoder- or
    loss-specific options such as ``p_norm`` or ``alpha``)."""
    params = inspect.signature(factory).parameters
    return {k: v for k, v in candidates.items() if k in params}


# --------------------------------------------------------------------------- model


def model_from_config(
    config: Config, num_entities: int, num_relations: int, *, kg: KnowledgeGraph | None = None
) -> KGEModel:
    """The model of the ``model`` section: the encoder ``model.encoder`` (the table by
    default; a graph encoder passes messages over ``kg``'s training triples, the data as
    read) and the decoder ``model.name`` (initialised with the global torch generator: seed
    it first for a reproducible start)."""
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
    decoder = decoder_cls(dim=m.dim, **options)
    encoder = encoder_from_config(
        config,
        out_width=decoder.entity_width(m.dim),
        num_relations=2 * (kg.num_relations if kg is not None else num_relations),
    )
    graph = None
    if encoder.uses_graph:
        from emu_dgl.encoders.graph import message_graph

        if kg is None:
            raise ValueError(f"model.encoder={m.encoder} needs the training graph: pass kg=")
        graph = message_graph(kg.train, kg.num_entities, kg.num_relations)
    return KGEModel(num_entities, num_relations, decoder=decoder, encoder=encoder, graph=graph)


#: Encoder options of the ``model`` section: ``model.encoder_<option>`` -> the encoder's
#: keyword ``<option>`` (unset: the encoder's own default).
ENCODER_OPTIONS = ("layers", "decomposition", "bases", "composition", "dropout", "self_loop")


def encoder_from_config(config: Config, *, out_width: int, num_relations: int) -> Encoder:
    """The encoder ``model.encoder`` with the ``model.encoder_*`` options it takes: one line
    naming an option it does not take, or a mode it cannot run in."""
    from emu_dgl.encoders import ENCODERS

    m = config.model
    factory = ENCODERS.get(m.encoder)
    takes = inspect.signature(factory).parameters
    given = {k: getattr(m, f"encoder_{k}") for k in ENCODER_OPTIONS}
    given = {k: v for k, v in given.items() if v is not None}
    for key in given:
        if key not in takes:
            own = [f"model.encoder_{k}" for k in ENCODER_OPTIONS if k in takes]
            raise ConfigError(
                f"model.encoder_{key} is not an option of model.encoder={m.encoder} "
                f"(its options: {', '.join(own) or 'none'}); remove it"
            )
    encoder = factory(
        in_width=m.encoder_width or out_width,
        out_width=out_width,
        num_relations=num_relations,
        **given,
    )
    if not encoder.uses_graph and m.encoder_mode != "full":
        raise ConfigError(
            f"model.encoder_mode={m.encoder_mode} samples graph neighbourhoods, but "
            f"model.encoder={m.encoder} reads no graph; use model.encoder=rgcn or compgcn"
        )
    if m.encoder_fanouts and m.encoder_mode != "sampled":
        raise ConfigError(
            "model.encoder_fanouts is read in model.encoder_mode=sampled only; set that mode "
            "or remove the fanouts"
        )
    return encoder


def mutation_from_config(config: Config, device: torch.device) -> Mutation | None:
    """The EMU mutation of ``emu.variant``, or ``None`` (EMU off, or label smoothing only)."""
    from emu_dgl.models import MUTATIONS

    emu = config.emu
    if not emu.enabled or emu.variant == NO_MUTATION:
        return None
    factory = MUTATIONS.get(emu.variant)
    return factory(**_accepted(factory, {"p": emu.p, "bits": emu.mask_bits})).to(device)


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
    from emu_dgl.sampling import build_sampler

    if config.loss.name == ONE_VS_ALL:
        return None
    s = config.sampler
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
        known=kg.train,
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
    """Entity rows one step looks up: anchor, true entity and every negative of each row
    (with shared negatives, every negative of each chunk)."""
    batch = config.train.batch_size
    if config.loss.name == ONE_VS_ALL:
        return 2 * batch
    draws = 2 if config.emu.enabled and config.emu.separate_draws else 1
    chunk = min(config.sampler.shared_chunk, batch)
    per_draw = batch // chunk if chunk else batch
    return 2 * batch + per_draw * draws * config.sampler.num_negatives


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
    encoder = getattr(model, "encoder", None)
    if encoder is not None and encoder.uses_graph:
        # The encoder's backward reaches the whole table (full mode: every row the graph
        # touches) and its layer weights are dense: the update is dense.
        if cfg.sparse is True:
            raise ConfigError(
                f"train.sparse=true updates entity rows one by one, but model.encoder="
                f"{config.model.encoder} gives the table and its layers dense gradients; "
                "set train.sparse=auto or false"
            )
        return build_optimizer(model, name, lr=lr, sparse=False), False
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
    from emu_dgl.training.shared_step import SharedStep
    from emu_dgl.training.step import TrainStep

    device = model.entity.weight.device
    emu = config.emu
    one_vs_all = config.loss.name == ONE_VS_ALL
    if table is None and model.encoder.uses_graph:
        table = encoded_table_from_config(config, model, generator)
    chunk = min(config.sampler.shared_chunk, batch_size)
    shared = {"chunk": chunk} if chunk and not one_vs_all else {}
    return (SharedStep if shared else TrainStep)(
        model,
        **shared,
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


def encoded_table_from_config(
    config: Config, model: KGEModel, generator: torch.Generator
) -> EntityTable:
    """The step's entity rows from the model's graph encoder, in ``model.encoder_mode``."""
    from emu_dgl.training.encoded import EncodedTable

    m = config.model
    if m.encoder_mode == "sampled" and config.loss.name == ONE_VS_ALL:
        raise ConfigError(
            "model.encoder_mode=sampled encodes the step's entities only, but loss.name=1vsall "
            "scores every entity; use model.encoder_mode=full"
        )
    return EncodedTable(
        model,
        mode=m.encoder_mode,
        fanouts=m.encoder_fanouts,
        generator=generator,
        seed=config.train.seed,
    )


def batch_size_for(config: Config, num_train: int) -> int:
    """Positives per step: ``train.batch_size``, at most the training triples; with shared
    negatives rounded down to whole chunks (a chunk is then at most the batch)."""
    size = min(config.train.batch_size, num_train)
    chunk = min(config.sampler.shared_chunk, size)
    return size - size % chunk if chunk else size


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
    config: Config, known: Iterable[torch.Tensor] | torch.Tensor, num_relations: int
) -> FilteredEvaluator:
    """The filtered evaluator of the ``eval`` section; ``known`` are every split's triples
    (concatenated here when given as a sequence), which the filtered setting removes."""
    from emu_dgl.evaluation import FilteredEvaluator

    if not isinstance(known, torch.Tensor):
        known = torch.cat(list(known))
    cfg = config.eval
    return FilteredEvaluator(
        known,
        num_relations,
        batch_size=cfg.batch_size,
        protocol=cfg.protocol,  # type: ignore[arg-type]
        num_negatives=cfg.num_negatives,
        seed=cfg.seed,
        hits_at=tuple(cfg.hits_at),
    )
