"""Config: YAML, --set overrides, rejection of unknown keys and impossible values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from emu_dgl.config import Config, config_from_dict, load_config, parse_override
from emu_dgl.errors import ConfigError
from emu_dgl.training.build import check_components

REPO = Path(__file__).resolve().parents[1]


def test_defaults_validate_and_round_trip(tmp_path):
    config = load_config()
    path = tmp_path / "c.yaml"
    config.dump(path)
    assert load_config(path) == config


def test_yaml_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: distmult\n  dim: 32\ntrain:\n  lr: 0.5\n")
    config = load_config(path, ["train.lr=0.05", "emu.enabled=false", "sampler.name=sans"])
    assert config.model.name == "distmult" and config.model.dim == 32
    assert config.train.lr == 0.05 and config.emu.enabled is False and config.sampler.name == "sans"


def test_extends_applies_the_base_first(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  dim: 10\ntrain:\n  lr: 0.3\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain:\n  lr: 0.2\n")
    config = load_config(tmp_path / "child.yaml")
    assert config.model.dim == 10 and config.train.lr == 0.2


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.lrr=0.1", "did you mean 'train.lr'"),
        ("trian.lr=0.1", "did you mean 'train'"),
        ("train.lr=-1", "train.lr"),
        ("train.lr=abc", "expected a number"),
        ("model.dim=0", "model.dim"),
        ("model.name=transee", "did you mean 'transe'"),
        ("emu.p=1.5", "emu.p"),
        ("emu.enabled=maybe", "expected true or false"),
        ("sampler.walks=-5", "sampler.walks"),
        ("train.device=tpu", "train.device"),
        ("train", "section.key=value"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override, fragment):
    # Types and ranges are the config's to check; component names the registries'
    # (check_components): a run is admitted after both.
    with pytest.raises(ConfigError, match=None) as info:
        check_components(load_config(None, [override]))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("model.name", "transee", "model.name: unknown value 'transee' (did you mean 'transe'?)"),
        ("sampler.name", "sanss", "sampler.name: unknown value 'sanss' (did you mean 'sans'?)"),
        ("loss.name", "softmx", "loss.name: unknown value 'softmx' (did you mean 'softmax'?)"),
        ("emu.variant", "mixupp", "emu.variant: unknown value 'mixupp' (did you mean 'mixup'?)"),
        ("train.optimizer", "adamw", "train.optimizer: unknown value 'adamw'"),
        ("tracking.backends", "[tensorbord]", "tracking.backends: unknown value 'tensorbord'"),
    ],
)
def test_component_names_are_checked_by_their_registries(key, value, fragment):
    config = load_config(None, [f"{key}={value}"])  # a well-typed name: the config takes it
    with pytest.raises(ConfigError) as info:
        check_components(config)
    assert fragment in str(info.value)


def test_names_are_canonical_and_booleans_read_as_yaml_does():
    config = config_from_dict(
        {
            "model": {"name": "DistMult"},
            "loss": {"name": "Self-Adversarial"},
            "train": {"sparse": "false"},
        }
    )
    assert (config.model.name, config.loss.name, config.train.sparse) == (
        "distmult",
        "self_adversarial",
        False,
    )
    check_components(config)
    assert (
        config_from_dict({"train": {"sparse": "AUTO", "schedule": "Reference"}}).train.schedule
        == "reference"
    )
    with pytest.raises(
        ConfigError, match=r"train.sparse: expected true or false, or auto, got 'maybe' \(str\)"
    ):
        config_from_dict({"train": {"sparse": "maybe"}})
    # what YAML and --set accept, a Python dict may give as strings too
    strings = config_from_dict(
        {"train": {"max_steps": "100", "lr": "1e-3", "progress": "off"}, "model": {"dim": " 64 "}}
    )
    assert (strings.train.max_steps, strings.train.lr, strings.train.progress) == (100, 1e-3, False)
    assert strings.model.dim == 64
    with pytest.raises(ConfigError, match=r"train.progress: expected true or false, got 0 \(int\)"):
        config_from_dict({"train": {"progress": 0}})
    with pytest.raises(
        ConfigError, match=r"train.max_steps: expected an integer, got '1.5' \(str\)"
    ):
        config_from_dict({"train": {"max_steps": "1.5"}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_parse_override_reads_yaml_values():
    assert parse_override("train.lr=0.001") == (["train", "lr"], 1e-3)
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
    assert parse_override("emu.enabled=false") == (["emu", "enabled"], False)
    assert parse_override("dataset.name=wn18rr") == (["dataset", "name"], "wn18rr")


def test_shipped_configs_all_load():
    paths = sorted((REPO / "configs").rglob("*.yaml"))
    assert len(paths) >= 9
    for path in paths:
        config = load_config(path)
        if "paper" in path.parts and path.name != "reference.yaml":
            # the faithful reproduction settings of the published EMU scripts
            assert config.train.schedule == "reference" and config.train.max_steps == 100_000
            assert (config.emu.p, config.emu.neg_label, config.emu.ce_coef) == (0.39, 0.53, 0.11)
            assert config.sampler.num_negatives == 256 and config.train.batch_size == 1000
            assert config.model.dim == 100 and config.dataset.name in ("fb15k-237", "wn18rr")


def test_quickstart_is_the_shipped_default():
    from emu_dgl.config import QUICKSTART

    assert load_config(REPO / "configs" / "quickstart.yaml") == load_config(QUICKSTART)
    assert isinstance(load_config(QUICKSTART), Config)


def test_options_belong_to_their_components_and_old_run_configs_resolve_alike():
    """A component's options are keys of its section; the resolved config holds those of the
    selected components only, and a config.yaml written before (every decoder's and
    sampler's options, whatever the run used) resolves to the same config, so a newer
    emu-dgl resumes and reuses such a run."""
    from emu_dgl.training.run import differing_keys, with_defaults

    config = load_config(None, ["model.name=distmult", "sampler.name=uniform"])
    written = config.to_dict()
    assert set(written["model"]) == {
        "name",
        "encoder",
        "dim",
        "dtype",
        "gamma",
    }  # the table: no options
    assert set(written["sampler"]) == {
        "name",
        "num_negatives",
        "filter",
        "bernoulli",
        "shared_chunk",
    }
    assert config.model.p_norm == 1 and config.sampler.k_hop == 3  # still readable
    old = copy.deepcopy(written)
    del old["model"]["encoder"]  # written before encoders
    old["model"].update(p_norm=1, modulus_weight=1.0, phase_weight=0.5)
    del old["model"]["dtype"]  # written before tables could be stored in bfloat16
    old["sampler"].update(k_hop=3, walks=1000, walk_mode="continue", weighted=False)
    old["loss"].update(alpha=1.0, margin=1.0, label_smoothing=0.0, reg_weight=0.0)
    assert differing_keys(with_defaults(old), written) == []
    assert config_from_dict(old) == config
    # an option of another decoder is accepted (arms switch decoders) and checked
    assert load_config(None, ["model.name=distmult", "model.p_norm=2"]).to_dict() == written
    with pytest.raises(ConfigError, match="model.p_norm: must be 1 or 2, got 3"):
        load_config(None, ["model.name=distmult", "model.p_norm=3"])
    with pytest.raises(ConfigError, match="did you mean 'model.gamma'"):
        load_config(None, ["model.gamm=1"])
