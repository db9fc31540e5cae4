"""Negative sampling: uniform and structure-aware samplers, false-negative filter, DGL adapter.

The EMU mutation of the sampled negatives lives with the models that score them
(:mod:`emu_dgl.models.mutation`)."""

from __future__ import annotations

from emu_dgl.sampling.filtering import FilteredSampler, KnownTriples
from emu_dgl.sampling.negatives import (
    SAMPLERS,
    DGLNegativeSampler,
    NegativeSampler,
    OnTheFlyWalkSampler,
    SANSSampler,
    UniformSampler,
    bernoulli_head_probability,
    build_sampler,
)

__all__ = [
    "SAMPLERS",
    "DGLNegativeSampler",
    "FilteredSampler",
    "KnownTriples",
    "NegativeSampler",
    "OnTheFlyWalkSampler",
    "SANSSampler",
    "UniformSampler",
    "bernoulli_head_probability",
    "build_sampler",
]
