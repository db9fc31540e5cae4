"""A lower bound on a run's memory, checked before anything large is allocated.

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
    weights = (num_entities * table_width + num_relations * relation_width) * _FLOAT
    optimizers = [config.train.optimizer]
    if config.train.schedule == "reference":
        optimizers.append(SWITCH_OPTIMIZER)
    optimizer_copies = max(
        1, *(getattr(OPTIMIZERS.get(name), "state_per_weight", 1) for name in optimizers)
    )
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
        "embedding tables and optimizer state": (weights * (2 + optimizer_copies), "model.dim"),
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
