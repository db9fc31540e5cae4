"""Typed run configuration: dataclasses with commented defaults, YAML, ``--set`` overrides.

A run is described by one :class:`Config`. It is built from (in order) the defaults
(:mod:`emu_dgl.config.sections`), a YAML file, and dotted ``--set section.key=value``
overrides (:mod:`emu_dgl.config.reading`). Unknown keys and impossible values are rejected
before any work starts, with the key path and the nearest valid key. The options of the
components a config names (``model.gamma`` of a decoder, ``sampler.k_hop`` of SANS, ...)
are declared by the components themselves (:mod:`emu_dgl.registry`) and checked here
without naming them. The resolved config is written into every run directory
(``config.yaml``), so a run can be resumed and reproduced.
"""

from __future__ import annotations

from pathlib import Path

from emu_dgl.config.reading import (
    MAX_CONFIG_BYTES,
    MAX_YAML_VALUES,
    config_arms,
    config_from_dict,
    load_config,
    parse_override,
    parse_yaml,
)
from emu_dgl.config.sections import (
    COMPONENT_KEYS,
    MAX_LR,
    MAX_SEED,
    Config,
    DatasetConfig,
    EMUConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OutputConfig,
    SamplerConfig,
    Section,
    TrackingConfig,
    TrainConfig,
)
from emu_dgl.config.values import OUTPUT_PLACEHOLDERS, canonical_choice

#: The packaged quickstart config (DistMult + EMU on the built-in synthetic graph): what
#: ``emu-dgl train`` runs without ``--config``, found wherever emu-dgl is installed.
QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"

__all__ = [
    "COMPONENT_KEYS",
    "MAX_CONFIG_BYTES",
    "MAX_LR",
    "MAX_SEED",
    "MAX_YAML_VALUES",
    "OUTPUT_PLACEHOLDERS",
    "QUICKSTART",
    "Config",
    "DatasetConfig",
    "EMUConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OutputConfig",
    "SamplerConfig",
    "Section",
    "TrackingConfig",
    "TrainConfig",
    "canonical_choice",
    "config_arms",
    "config_from_dict",
    "load_config",
    "parse_override",
    "parse_yaml",
]
