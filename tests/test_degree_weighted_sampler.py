"""The degree-weighted sampler: the proof that a sampler is one file
(emu_dgl/sampling/degree_weighted.py), named in a config and trained with, shared by chunks
of positives, and covered by the registry-driven sampler contracts
(tests/test_contracts.py: shapes, bounds, determinism, fixed-shape draws, the filter).
No module of the package, the tests, the benchmarks or the examples other than these two
files names it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from scipy.stats import chi2

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.sampling import build_sampler
from emu_dgl.training.step import forbid_host_sync
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
NAME = "degree_weighted"

# entity degrees 3, 2, 2, 1, 1, 1 and entity 6 in no training triple
TRAIN = torch.tensor([[0, 0, 1], [0, 1, 2], [0, 0, 3], [1, 1, 4], [2, 0, 5]])
DEGREE = torch.tensor([3.0, 2, 2, 1, 1, 1, 0], dtype=torch.float64)


def sampler(power: float, n: int = 20_000, device: torch.device | str = "cpu"):
    return build_sampler(
        NAME, train=TRAIN, num_entities=7, num_negatives=n, degree_power=power, device=device
    )


@pytest.mark.parametrize("power", [0.0, 0.75, 1.0, 2.0])
def test_draws_follow_degree_to_the_power(power: float, device: torch.device) -> None:
    """Chi-square against deg^alpha / sum deg^alpha (alpha = 0: every entity alike, the
    isolated one included; alpha > 0: the isolated one never)."""
    draws = sampler(power, device=device).sample(
        TRAIN.to(device), "tail", generator=torch.Generator(device=device).manual_seed(1)
    )
    observed = torch.bincount(draws.flatten().cpu(), minlength=7).double()
    weight = DEGREE.pow(power)
    expected = weight / weight.sum() * draws.numel()
    if power > 0:
        assert observed[6] == 0
    support = expected > 0
    stat = float(((observed[support] - expected[support]) ** 2 / expected[support]).sum())
    assert stat < chi2.ppf(0.9999, int(support.sum()) - 1), (observed, expected)
    if power > 0:  # the test can fail: uniform draws are far from the degree's law
        uniform = torch.full_like(expected[support], draws.numel() / int(support.sum()))
        off = float(((uniform - expected[support]) ** 2 / expected[support]).sum())
        assert off > chi2.ppf(0.9999, int(support.sum()) - 1)


def test_the_draw_ignores_the_positive_and_makes_the_host_wait_nowhere() -> None:
    draw = sampler(0.75, n=12)
    words = torch.empty(5, 3, 12, dtype=torch.int64).random_(
        -(2**63), None, generator=torch.Generator().manual_seed(0)
    )
    with forbid_host_sync():
        a = draw.sample_words(TRAIN, "tail", words)
        b = draw.sample_words(TRAIN[[4, 3, 2, 1, 0]], torch.ones(5, dtype=torch.bool), words)
    assert a.shape == (5, 3, 12) and torch.equal(a, b)


def test_its_option_is_a_config_key_of_the_sampler_section() -> None:
    config = load_config(None, [f"sampler.name={NAME}", "sampler.degree_power=0.5"])
    assert config.sampler.degree_power == 0.5
    assert config.to_dict()["sampler"]["degree_power"] == 0.5
    assert "degree_power" not in load_config(None, []).to_dict()["sampler"]
    with pytest.raises(ConfigError, match="sampler.degree_power: must be >= 0"):
        load_config(None, [f"sampler.name={NAME}", "sampler.degree_power=-1"])


@pytest.mark.slow
def test_it_trains_per_positive_and_with_shared_chunks(tmp_path: Path) -> None:
    """A DistMult EMU run on the built-in graph learns far beyond an untrained model with
    degree-weighted negatives, per positive and shared by chunks of 64 positives."""
    kg = load_dataset("synthetic")
    common = [
        "model.name=distmult", "model.dim=32", "train.max_steps=300", "train.batch_size=256",
        "sampler.num_negatives=32", f"sampler.name={NAME}", "train.progress=false",
        "train.valid_every=0", "train.checkpoint_every=0", "train.threads=1",
    ]  # fmt: skip
    results = {}
    for chunk in (0, 64):
        config = load_config(None, [*common, f"sampler.shared_chunk={chunk}"])
        results[chunk] = Trainer(config, tmp_path / str(chunk), kg=kg).fit()["test"]["mrr"]
    untrained = Trainer(load_config(None, [*common, "train.max_steps=1"]), tmp_path / "u", kg=kg)
    before = untrained.evaluator.evaluate(untrained.model, kg.test)["mrr"]
    assert min(results.values()) > 0.3 and min(results.values()) > 5 * before, results


def test_no_other_module_names_the_degree_weighted_sampler() -> None:
    own = {REPO / "emu_dgl" / "sampling" / "degree_weighted.py", Path(__file__).resolve()}
    pattern = re.compile(r"degree_weighted|DegreeWeighted|degree_power", re.IGNORECASE)
    naming = [
        str(path.relative_to(REPO))
        for folder in ("emu_dgl", "tests", "benchmarks", "examples")
        for path in (REPO / folder).rglob("*.py")
        if path.resolve() not in own and pattern.search(path.read_text())
    ]
    assert naming == []
