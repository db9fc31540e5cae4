"""Negative sampling: uniform and structure-aware samplers, false-negative filter, DGL adapter."""

from __future__ import annotations

from emu_dgl.sampling.filtering import FilteredSampler, KnownTriples
from emu_dgl.sampling.mutation import MUTATIONS, EMUMutation, MixupMutation
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
    "MUTATIONS",
    "SAMPLERS",
    "EMUMutation",
    "MixupMutation",
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
