"""How a run's budget is laid out: epochs as steps, positives per step, negatives fitted to
a small graph, the reference schedule's optimizer switch and the learning-rate schedule
(re-exported by :mod:`emu_dgl.training.build`)."""

from __future__ import annotations

from typing import Any

import torch

from emu_dgl.config import Config
from emu_dgl.registry import LOSSES

__all__ = [
    "apply_max_epochs",
    "batch_size_for",
    "fit_negatives",
    "scheduler_from_config",
    "scores_all_entities",
    "switch_step",
]


def scores_all_entities(config: Config) -> bool:
    """Whether the configured loss scores every entity (1-vs-all): no sampler, no EMU."""
    return bool(getattr(LOSSES.get(config.loss.name), "scores_all_entities", False))


def apply_max_epochs(config: Config, num_train: int) -> None:
    """With ``train.max_epochs`` set, make ``train.max_steps`` that many epochs: an epoch is
    ``floor(N / batch)`` steps (the batch order's pass over the ``N`` training triples)."""
    epochs = config.train.max_epochs
    if epochs > 0 and num_train > 0:
        per_epoch = num_train // min(config.train.batch_size, num_train)
        config.train.max_steps = epochs * per_epoch


def fit_negatives(config: Config, kg: Any) -> tuple[Config, str | None]:
    """``(config the sampler is built from, the line that says so or None)``: ``config``
    itself, or, where ``sampler.num_negatives`` exceeds the entities of a small graph, a
    copy drawing one negative per entity (more would repeat every entity, at that many
    times the cost, and carry no more information). The run's own config keeps the value it
    was given, so a template such as ``configs/own-tsv.yaml`` fits any graph."""
    import copy

    negatives, entities = config.sampler.num_negatives, kg.num_entities
    if scores_all_entities(config) or negatives <= entities:
        return config, None
    fitted = copy.deepcopy(config)
    fitted.sampler.num_negatives = entities
    note = (
        f"sampler.num_negatives={negatives} on the {entities} entities of '{kg.name}': "
        f"drawing {entities} negatives per positive (more would only repeat entities)"
    )
    return fitted, note


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
