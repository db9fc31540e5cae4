"""Every component of a run, built from a :class:`~emu_dgl.config.Config` in one place.

The config says *what* (names and numbers, checked for types and ranges by
:mod:`emu_dgl.config`, options included, from the components' own declarations); the
registries of :mod:`emu_dgl.registry` know *which classes* those names mean and how each
builds itself. This module wires them together and names no component:

=====================  ===================================  =================================
config key             registry                             built-in components in
=====================  ===================================  =================================
``model.name``         :data:`~emu_dgl.registry.DECODERS`    :mod:`emu_dgl.models`
``model.encoder``      :data:`~emu_dgl.registry.ENCODERS`    :mod:`emu_dgl.encoders`
``sampler.name``       :data:`~emu_dgl.registry.SAMPLERS`    :mod:`emu_dgl.sampling`
``emu.variant``        :data:`~emu_dgl.registry.MUTATIONS`   :mod:`emu_dgl.models`
``loss.name``          :data:`~emu_dgl.registry.LOSSES`      :mod:`emu_dgl.losses`
``loss.regularizer``   :data:`~emu_dgl.registry.REGULARIZERS` :mod:`emu_dgl.losses`
``train.optimizer``    :data:`~emu_dgl.registry.OPTIMIZERS`  :mod:`emu_dgl.training.optimizers`
``tracking.backends``  :data:`~emu_dgl.tracking.BACKENDS`    :mod:`emu_dgl.tracking`
=====================  ===================================  =================================

:func:`check_components` checks a config's names against them (the trainer, ``compare``
and ``tune`` call it before any work), and the ``*_from_config`` functions build the
pieces the trainer wires together. What a component can do that changes the wiring is a
property of its class, not of its name: a loss that ``scores_all_entities`` needs no
sampler, a regulariser that ``touches_every_row`` makes the entity gradient dense.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from emu_dgl.config import Config, canonical_choice
from emu_dgl.errors import ConfigError
from emu_dgl.registry import (
    DECODERS,
    KINDS,
    LOSSES,
    MUTATIONS,
    REGULARIZERS,
    SAMPLERS,
    Registry,
    describe_origin,
)
from emu_dgl.training.budget import (
    apply_max_epochs,
    batch_size_for,
    fit_negatives,
    scheduler_from_config,
    scores_all_entities,
    switch_step,
)
from emu_dgl.training.encoded import (
    check_sharded_encoder,
    encoded_table_from_config,
    encoder_from_config,
)

if TYPE_CHECKING:
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.evaluation import FilteredEvaluator
    from emu_dgl.models import KGEModel, Mutation
    from emu_dgl.sampling import NegativeSampler
    from emu_dgl.training.step import EntityTable, TrainStep

__all__ = [
    "EVALUATION_KINDS",
    "apply_max_epochs",
    "batch_size_for",
    "check_components",
    "component_names",
    "check_sharded_encoder",
    "encoded_table_from_config",
    "encoder_from_config",
    "evaluator_from_config",
    "fit_negatives",
    "head_probability_from_config",
    "lookups_per_step",
    "loss_from_config",
    "model_from_config",
    "mutation_from_config",
    "optimizer_from_config",
    "regularizer_from_config",
    "sampler_from_config",
    "scheduler_from_config",
    "scores_all_entities",
    "step_from_config",
    "switch_step",
]

#: The kinds of component evaluating, predicting and exporting a run needs: its model.
#: (A run's sampler, loss and optimizer are for training only: a run trained with a
#: sampler that is not installed here still opens for evaluation.)
EVALUATION_KINDS: tuple[str, ...] = ("decoder", "encoder")


def component_names() -> dict[str, list[str]]:
    """Valid values of every config key that names a component (see the module doc)."""
    from emu_dgl.tracking import BACKENDS

    return {
        **{r.config_key: r.names() for r in KINDS.values()},
        "tracking.backends": list(BACKENDS),
    }


def check_components(
    config: Config,
    *,
    kinds: Iterable[str] | None = None,
    record: Mapping[str, Any] | None = None,
) -> None:
    """A :class:`ConfigError` naming the key, the nearest valid name and the valid ones, for
    the first component name that no registry knows (or whose plugin fails to load).

    ``kinds`` limits the check to those kinds of component (``EVALUATION_KINDS`` for a run
    opened to evaluate); ``record`` is what a run recorded about the components it used
    (:func:`emu_dgl.training.components.read_components`): a component missing here that came
    from a plugin is then named with that plugin and its version. Reads the config, never
    changes it.
    """
    wanted = set(kinds) if kinds is not None else None
    for registry in KINDS.values():
        if wanted is not None and registry.kind not in wanted:
            continue
        name = getattr(getattr(config, registry.section), registry.key)
        _check_name(registry, name, (record or {}).get(registry.kind))
    if wanted is None:
        from emu_dgl.tracking import BACKENDS

        for item in config.tracking.backends:
            if item not in BACKENDS:
                canonical_choice("tracking.backends", item, list(BACKENDS))  # raises
        from emu_dgl.training.precision import check_table_dtype

        check_table_dtype(config)  # a bfloat16 table needs row-wise updates


def _check_name(registry: Registry[Any], name: str, used: Mapping[str, Any] | None) -> None:
    valid = registry.names()
    if name not in valid:
        if isinstance(used, Mapping) and used.get("name") == name:
            origin = used
            if origin.get("source") == "plugin":
                install = f"{origin.get('plugin')}=={origin.get('version')}"
                raise ConfigError(
                    f"{registry.config_key}: the run used the {registry.kind} '{name}' of the "
                    f"plugin {describe_origin(origin)}, which is not installed here; "
                    f"install it (pip install {install}) and try again"
                )
            if origin.get("source") == "python":
                raise ConfigError(
                    f"{registry.config_key}: the run used the {registry.kind} '{name}' "
                    f"{describe_origin(origin)}, which this process has not imported; import "
                    f"that module first (emu-dgl never imports a module a run folder names), "
                    f"or make it a plugin (README, 'Extending emu-dgl')"
                )
        canonical_choice(registry.config_key, name, valid)  # raises with the hint
    registry.get(name)  # a plugin that fails to load says so here, before any work


# --------------------------------------------------------------------------- model


def model_from_config(
    config: Config,
    num_entities: int,
    num_relations: int,
    *,
    rows: tuple[int, int] | None = None,
    kg: KnowledgeGraph | None = None,
) -> KGEModel:
    """The model of the ``model`` section: the encoder ``model.encoder`` (the table by
    default; a graph encoder passes messages over ``kg``'s training triples, the data as
    read) and the decoder ``model.name``, each with its options.

    Relations (and a decoder's or encoder's own parameters) are initialised from the global
    torch generator (seed it first for a reproducible start). Entity rows are ``U(-a, a)``
    drawn per block of rows from ``train.seed`` (:func:`~emu_dgl.models.init.uniform_rows_`),
    so row ``i`` starts the same however the table is split: ``rows=(lo, hi)`` builds
    only rows ``lo .. hi - 1``, one process's block of a table split over processes
    (``model.entity`` then holds those rows alone; an encoder that passes messages between
    rows cannot run so, see :func:`~emu_dgl.training.encoded.encoder_from_config`). With
    ``model.dtype: bfloat16`` the table is allocated and filled in bfloat16, the float32 draws
    rounded block by block (never a float32 copy of the table; see
    :mod:`emu_dgl.training.precision`).
    """
    from emu_dgl.models import KGEModel
    from emu_dgl.models.init import uniform_rows_

    m = config.model
    decoder = DECODERS.build(m.name, dim=m.dim, **config.options_for(DECODERS.config_key))
    encoder = encoder_from_config(
        config,
        out_width=decoder.entity_width(m.dim),
        num_relations=2 * (kg.num_relations if kg is not None else num_relations),
        sharded=rows is not None and rows != (0, num_entities),
    )
    graph = None
    if encoder.uses_graph:
        from emu_dgl.encoders.graph import message_graph

        if kg is None:
            raise ValueError(f"model.encoder={m.encoder} needs the training graph: pass kg=")
        graph = message_graph(kg.train, kg.num_entities, kg.num_relations)
    # No entity rows at first: the relations' draws do not depend on the table's size.
    model = KGEModel(0, num_relations, decoder=decoder, encoder=encoder, graph=graph)
    lo, hi = rows if rows is not None else (0, num_entities)
    if not 0 <= lo <= hi <= num_entities:
        raise ValueError(f"rows {lo}..{hi} are not rows of a table of {num_entities}")
    width = encoder.in_width
    if m.dtype == "float32":
        weight = torch.empty(hi - lo, width)
        model.entity = nn.Embedding.from_pretrained(weight, freeze=False)
    else:
        from emu_dgl.training.precision import TABLE_DTYPES, stored_entity_table

        model.entity = stored_entity_table(hi - lo, width, TABLE_DTYPES[m.dtype])
    uniform_rows_(model.entity.weight, lo, decoder.embedding_range, config.train.seed)
    return model


def mutation_from_config(config: Config, device: torch.device) -> Mutation | None:
    """The EMU mutation of ``emu.variant`` with its options, or ``None`` (EMU off, or a
    variant that mutates nothing: label smoothing only)."""
    if not config.emu.enabled:
        return None
    mutation = MUTATIONS.build(config.emu.variant, **config.options_for(MUTATIONS.config_key))
    return None if mutation is None else mutation.to(device)


# --------------------------------------------------------------------------- negatives


def sampler_from_config(
    config: Config,
    kg: KnowledgeGraph,
    device: torch.device,
    *,
    cache_dir: Path | None = None,
    announce: bool = False,
) -> NegativeSampler | None:
    """The negative sampler of the ``sampler`` section (with its options) on ``device``,
    filtered against the training triples when ``sampler.filter``; ``None`` for a loss that
    scores every entity (no negatives). Precomputed neighbourhoods are cached in
    ``cache_dir`` (default: the cache root's ``neighbourhoods/``); ``announce`` says on
    stderr when one is built."""
    from emu_dgl.sampling import KnownTriples, build_sampler

    if scores_all_entities(config):
        return None
    s = config.sampler
    # The filter's index: the training triples' sorted keys, memory-mapped from a dataset
    # cache (shared by every process) or sorted once here.
    known = (
        KnownTriples.from_sorted_keys(
            kg.filter_keys().to(device),
            num_entities=kg.num_entities,
            num_relations=kg.num_relations,
        )
        if s.filter
        else None
    )
    return build_sampler(
        s.name,
        train=kg.train,
        num_entities=kg.num_entities,
        num_relations=kg.num_relations,
        num_negatives=s.num_negatives,
        seed=config.train.seed,
        cache_dir=cache_dir,
        announce=announce,
        filter=s.filter,
        known=known,
        device=device,
        **config.options_for(SAMPLERS.config_key),
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
    """``loss.name`` with its options, wrapped in the EMU loss when ``emu.enabled`` (the
    named loss then scores the unmutated negatives)."""
    from emu_dgl.losses import EMULoss

    base = LOSSES.build(config.loss.name, **config.options_for(LOSSES.config_key))
    emu = config.emu
    if not emu.enabled or scores_all_entities(config):
        return base
    return EMULoss(base, neg_label=emu.neg_label, ce_coef=emu.ce_coef)


def regularizer_from_config(config: Config) -> Any:
    """The regulariser of ``loss.regularizer`` with its options (``None``: none)."""
    return REGULARIZERS.build(
        config.loss.regularizer, **config.options_for(REGULARIZERS.config_key)
    )


def lookups_per_step(config: Config) -> int:
    """Entity rows one step looks up: anchor, true entity and every negative of each row
    (with shared negatives, every negative of each chunk)."""
    batch = config.train.batch_size
    if scores_all_entities(config):
        return 2 * batch
    draws = 2 if config.emu.enabled and config.emu.separate_draws else 1
    chunk = min(config.sampler.shared_chunk, batch)
    per_draw = batch // chunk if chunk else batch
    return 2 * batch + per_draw * draws * config.sampler.num_negatives


def dense_entity_gradient(config: Config) -> bool:
    """Whether the entity table's gradient reaches every row: a loss that scores every
    entity, or a regulariser of the whole table."""
    regularizer = REGULARIZERS.get(config.loss.regularizer)
    return scores_all_entities(config) or bool(getattr(regularizer, "touches_every_row", False))


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
    name, lr = (
        (cfg.optimizer, cfg.lr) if phase == 0 else (SWITCH_OPTIMIZER, cfg.lr * cfg.lr_decay**phase)
    )
    if getattr(getattr(model, "encoder", None), "uses_graph", False):
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
        dense_gradient=dense_entity_gradient(config),
        num_entities=model.entity.num_embeddings,  # type: ignore[union-attr]  (all blocks)
        lookups=lookups_per_step(config),
    )
    if phase > 0 and cfg.schedule == "reference":
        sparse_rows = False  # the published switch: dense Adam over every row
    if config.model.dtype != "float32":
        sparse_rows = True  # a low-precision table is only updated row by row
    return build_optimizer(model, name, lr=lr, sparse=sparse_rows), sparse_rows


#: The optimizer the reference schedule switches to (the published scripts' Adam).
SWITCH_OPTIMIZER = "adam"


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
    one_vs_all = scores_all_entities(config)
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
        regularizer=regularizer_from_config(config),
        head_probability=head_probability,
        batch_size=batch_size,
        generator=generator,
        rows=rows,
        table=table,
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
        "hits_at": tuple(cfg.hits_at),
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
