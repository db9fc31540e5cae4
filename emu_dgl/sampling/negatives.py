"""Negative samplers: one contract, built by name from the sampler registry.

Every sampler answers

    sample(pos: LongTensor[B, 3], side: "head" | "tail", *, generator, step=0) -> LongTensor[B, n]

with the entity ids that replace ``side`` of each positive ``(h, r, t)``. All
draws come from ``generator`` (on the device of ``pos``), so a run that saves
the generator's state resumes exactly. The *anchor* is the kept side: ``h``
when corrupting tails, ``t`` when corrupting heads. Each sampler is a component in a
file of its own (:mod:`emu_dgl.registry`):

* ``uniform`` (:class:`~emu_dgl.sampling.base.UniformSampler`): ``n`` ids uniform over all
  entities.
* ``sans`` (:class:`~emu_dgl.sampling.sans.SANSSampler`): ``n`` ids from the anchor's
  precomputed neighbourhood (:mod:`emu_dgl.graph.neighbourhood`): uniformly over the
  distinct candidates (``weighted=False``, what the published SANS code does) or
  proportionally to how often the walks recorded them (``weighted=True``). The candidates
  come from ``restart`` walks (``w`` walks of ``k`` steps: all within ``k`` hops) or
  ``continue`` walks (one walk of ``k * w`` steps recorded every ``k`` steps: the
  published builder, whose candidates drift far from the anchor). The default SANS mode.
* ``sans_online`` (:class:`~emu_dgl.sampling.sans_online.OnTheFlyWalkSampler`): ``n`` fresh
  ``k``-step DGL walks from each anchor per batch, endpoints used directly (the
  ``w -> infinity`` limit of the walk neighbourhood, no preprocessing).

:func:`build_sampler` builds any of them (and any sampler a plugin adds) by name, wrapped
in the false-negative filter on request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from emu_dgl.errors import ConfigError
from emu_dgl.graph.neighbourhood import default_cache_dir
from emu_dgl.registry import SAMPLERS
from emu_dgl.sampling.base import NegativeSampler, UniformSampler
from emu_dgl.sampling.dgl_adapter import DGLNegativeSampler
from emu_dgl.sampling.filtering import FilteredSampler, KnownTriples
from emu_dgl.sampling.sans import SANSSampler
from emu_dgl.sampling.sans_online import OnTheFlyWalkSampler

__all__ = [
    "NegativeSampler",
    "UniformSampler",
    "SANSSampler",
    "OnTheFlyWalkSampler",
    "FilteredSampler",
    "KnownTriples",
    "DGLNegativeSampler",
    "SAMPLERS",
    "build_sampler",
    "bernoulli_head_probability",
]


def bernoulli_head_probability(train: torch.Tensor, num_relations: int) -> torch.Tensor:
    """Per-relation probability of corrupting the head (Wang et al. 2014, TransH).

    ``tph_r`` = triples of ``r`` / distinct heads of ``r`` (tails per head),
    ``hpt_r`` = triples of ``r`` / distinct tails of ``r``; the head is corrupted
    with probability ``tph / (tph + hpt)``, so for a 1-to-N relation mostly the
    head is replaced (fewer false negatives). Relations without triples get 0.5.
    """
    train = train.long()
    h, r, t = train[:, 0], train[:, 1], train[:, 2]
    span = int(train[:, [0, 2]].max()) + 1 if train.numel() else 1
    count = torch.bincount(r, minlength=num_relations).double()
    heads = torch.bincount(torch.unique(r * span + h) // span, minlength=num_relations).double()
    tails = torch.bincount(torch.unique(r * span + t) // span, minlength=num_relations).double()
    tph = count / heads.clamp_min(1)
    hpt = count / tails.clamp_min(1)
    prob = tph / (tph + hpt).clamp_min(1e-12)
    return torch.where(count > 0, prob, torch.full_like(prob, 0.5)).float()


def build_sampler(
    name: str,
    *,
    train: torch.Tensor,
    num_entities: int,
    num_negatives: int,
    seed: int = 0,
    cache: bool = True,
    cache_dir: Path | str | None = None,
    announce: bool = True,
    filter: bool = False,  # named after the config key `sampler.filter`
    known: torch.Tensor | KnownTriples | None = None,
    num_relations: int | None = None,
    spare: int | None = None,
    uniform_spare: int | None = None,
    device: torch.device | str = "cpu",
    **options: Any,
) -> NegativeSampler:
    """Build a registered sampler by name, optionally wrapped in a :class:`FilteredSampler`.

    ``options`` are the sampler's own (``sans``: ``k_hop``, ``walks`` with ``0`` = exact
    k-hop and ``-1`` = walks on the fly, ``walk_mode``, ``weighted``); an option another
    sampler declares is ignored, as in a config, and one no sampler declares is an error.
    Every sampler takes what it needs of: the training triples ``train``, ``num_entities``,
    ``num_relations``, ``num_negatives``, ``seed``, the cache folder of precomputed
    neighbourhoods (``cache_dir``, by default :func:`~emu_dgl.graph.default_cache_dir`;
    ``cache=False`` builds every time; a build says so on stderr unless
    ``announce=False``) and the ``device`` it draws on. With ``filter`` the negatives are
    filtered against ``known`` (default: ``train``), drawing ``spare`` and
    ``uniform_spare`` candidates per row beyond the ``n`` needed (default:
    :func:`~emu_dgl.sampling.filtering.default_spares`).
    """
    device = torch.device(device)
    declared = SAMPLERS.options(name)
    unknown = [k for k in options if k not in SAMPLERS.vocabulary()]
    if unknown:
        raise ConfigError(
            f"sampler '{name}' takes no option '{unknown[0]}'; its options: "
            f"{', '.join(declared) or 'none'}"
        )
    context = {
        "train": train,
        "num_entities": num_entities,
        "num_relations": num_relations,
        "num_negatives": num_negatives,
        "seed": seed,
        "cache_dir": (cache_dir if cache_dir is not None else default_cache_dir())
        if cache
        else None,
        "announce": announce,
        "device": device,
    }
    base = SAMPLERS.build(
        name, context=context, **{k: v for k, v in options.items() if k in declared}
    )
    if not filter:
        return base
    known_triples = (
        known
        if isinstance(known, KnownTriples)
        else KnownTriples(
            (train if known is None else known).to(device),
            num_entities=num_entities,
            num_relations=num_relations,
        )
    )
    return FilteredSampler(
        base, known_triples, num_entities, spare=spare, uniform_spare=uniform_spare
    )
