"""The paper's arms as the published code runs them: named arms in config files, the
whole-table L3 penalty of the base arms, separate draws of the uniform EMU arm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emu_dgl.config import config_arms, load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.models import KGEModel
from emu_dgl.training.losses import l3_table_regularizer
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
PAPER = sorted((REPO / "configs" / "paper").glob("*/*.yaml"))
ARMS = ("uniform-base", "uniform-emu", "sans-base", "sans-emu")
#: published base-arm L3 weights (experiments_base.sh of the EMU code): by decoder
L3_WEIGHT = {"distmult": 1e-5, "complex": 1e-5, "transe": 1e-3, "rotate": 1e-3}


@pytest.fixture(scope="module")
def kg():
    return load_dataset("synthetic")


def step_draw(trainer: Trainer, step: int, state: torch.Tensor):
    """(batch, entity ids, random words) of ``step`` from the generator ``state`` it started
    from: the step's words replayed and its pure draw called again."""
    gen = torch.Generator(device=trainer.device)
    gen.set_state(state)
    words = torch.empty_like(trainer.step.words).random_(-(2**63), None, generator=gen)
    batch = trainer._batch(step)
    kept, candidates, _ = trainer.step.draw(batch, words, trainer.side(step))
    # one row per positive: its anchor, then per draw the true entity and the negatives
    ids = torch.cat([kept.unsqueeze(1), candidates.reshape(len(batch), -1)], dim=1)
    return batch, ids, words


# ---------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", PAPER, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_paper_configs_carry_the_published_arms(path: Path) -> None:
    assert tuple(config_arms(path))[:4] == ARMS
    model = load_config(path).model.name
    for arm in ARMS:
        cfg = load_config(path, arm=arm)
        assert cfg.model.gamma == 24.0 and cfg.model.dim == 100
        assert cfg.sampler.num_negatives == 256 and cfg.train.batch_size == 1000
        uniform, emu = arm.startswith("uniform"), arm.endswith("emu")
        assert cfg.sampler.name == ("uniform" if uniform else "sans")
        assert cfg.emu.enabled is emu
        if uniform:
            # the published uniform arms draw unfiltered, and EMU draws its own negatives
            assert cfg.sampler.filter is False
            assert cfg.emu.separate_draws is emu
        else:
            assert cfg.sampler.filter is True and cfg.emu.separate_draws is False
            assert (
                cfg.sampler.walk_mode,
                cfg.sampler.weighted,
                cfg.sampler.k_hop,
                cfg.sampler.walks,
            ) == (
                "continue",
                False,
                3,
                1000,
            )
        if emu:
            assert cfg.loss.regularizer == "none"
            assert (cfg.emu.p, cfg.emu.neg_label, cfg.emu.ce_coef) == (0.39, 0.53, 0.11)
        elif model in L3_WEIGHT:
            assert cfg.loss.regularizer == "l3_table"
            assert cfg.loss.reg_weight == pytest.approx(L3_WEIGHT[model])


@pytest.mark.parametrize("path", PAPER, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_d500_arms_are_the_base_arms_five_times_wider(path: Path) -> None:
    """uniform-base-d500 / sans-base-d500: the paper's width claim (EMU at d = 100 against
    the base loss at d = 500) as named arms; only model.dim differs from the base arm."""
    assert tuple(config_arms(path))[4:6] == ("uniform-base-d500", "sans-base-d500")
    for base in ("uniform-base", "sans-base"):
        narrow, wide = (
            load_config(path, arm=base).to_dict(),
            load_config(path, arm=f"{base}-d500").to_dict(),
        )
        assert wide["model"]["dim"] == 500 and narrow["model"]["dim"] == 100
        wide["model"]["dim"] = 100
        assert wide == narrow


def test_arms_merge_along_extends_and_apply_before_set(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "train:\n  lr: 0.1\narms:\n  a: {train.lr: 0.2, emu.enabled: false}\n  b: {train.lr: 0.3}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\narms:\n  a: {model.dim: 8}\n  c: {}\n"
    )
    child = tmp_path / "child.yaml"
    assert list(config_arms(child)) == ["a", "b", "c"]
    cfg = load_config(child, arm="a")
    assert (cfg.train.lr, cfg.emu.enabled, cfg.model.dim) == (0.2, False, 8)
    assert load_config(child, ["train.lr=0.5"], arm="a").train.lr == 0.5  # --set wins
    assert load_config(child).train.lr == 0.1  # no arm: the top level
    with pytest.raises(ConfigError, match="no arm 'z'.*a, b, c"):
        load_config(child, arm="z")
    (tmp_path / "bad.yaml").write_text("arms:\n  a: {train.nope: 1}\n")
    with pytest.raises(ConfigError, match="train.nope"):
        load_config(tmp_path / "bad.yaml", arm="a")
    (tmp_path / "bad2.yaml").write_text("arms: [a, b]\n")
    with pytest.raises(ConfigError, match="'arms' must map"):
        load_config(tmp_path / "bad2.yaml")


def test_regularizer_without_weight_is_rejected() -> None:
    with pytest.raises(ConfigError, match="loss.reg_weight"):
        load_config(None, ["loss.regularizer=l3_table"])


# ---------------------------------------------------------------------------- L3 table


def test_l3_table_closed_form_and_gradient() -> None:
    model = KGEModel(3, 2, decoder="distmult", dim=2)
    with torch.no_grad():
        model.entity.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, -1.0]]))
        model.relation.weight.copy_(torch.tensor([[3.0, 0.0], [-0.5, 1.0]]))
    value = l3_table_regularizer(model, weight=0.1)
    # |1|^3 + |-2|^3 + |0.5|^3 + |-1|^3 = 10.125 ; |3|^3 + |-0.5|^3 + |1|^3 = 28.125
    assert value.item() == pytest.approx(0.1 * (10.125 + 28.125))
    value.backward()
    x = model.entity.weight.detach()
    assert torch.allclose(model.entity.weight.grad, 0.3 * x * x.abs())  # d/dx w|x|^3 = 3w x|x|


def test_l3_table_is_added_once_per_step_over_the_whole_table(kg, tmp_path: Path) -> None:
    common = [
        "model.name=distmult",
        "model.dim=16",
        "sampler.num_negatives=8",
        "train.batch_size=64",
        "train.progress=false",
        "train.device=cpu",
        "emu.enabled=false",
    ]
    plain = Trainer(load_config(None, common), tmp_path / "a", kg=kg)
    reg = Trainer(
        load_config(None, [*common, "loss.regularizer=l3_table", "loss.reg_weight=0.01"]),
        tmp_path / "b",
        kg=kg,
    )
    expected = l3_table_regularizer(reg.model, weight=0.01).item()
    before = reg.model.entity.weight.detach().clone()
    state = plain.generator.get_state()
    difference = reg.train_step(0).item() - plain.train_step(0).item()
    assert difference == pytest.approx(expected, rel=1e-5)
    # the penalty's gradient reaches rows that no triple of the batch nor a negative touched
    used = torch.zeros(kg.num_entities, dtype=torch.bool)
    _, ids, _ = step_draw(plain, 0, state)  # both trainers drew the same entities
    used[ids.flatten()] = True
    idle = (~used).nonzero().flatten()
    assert len(idle) > 10
    assert (reg.model.entity.weight.detach()[idle] != before[idle]).all(1).all()
    assert torch.equal(plain.model.entity.weight.detach()[idle], before[idle])


# ---------------------------------------------------------------------------- separate draws


@pytest.mark.parametrize("separate", [True, False])
def test_separate_draws_give_the_emu_term_its_own_negatives(
    kg, tmp_path: Path, separate: bool
) -> None:
    config = load_config(
        None,
        [
            "model.name=distmult",
            "model.dim=16",
            "sampler.name=uniform",
            "sampler.filter=false",
            "sampler.num_negatives=8",
            "train.batch_size=32",
            "train.progress=false",
            "train.device=cpu",
            f"emu.separate_draws={str(separate).lower()}",
        ],
    )
    trainer = Trainer(config, tmp_path / "run", kg=kg)
    state = trainer.generator.get_state()
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss = trainer.train_step(0).item()
    batch, ids, words = step_draw(trainer, 0, state)
    n, groups = 8, 2 if separate else 1
    # anchor, then per draw: the true entity and its negatives (draws side by side)
    assert ids.shape == (32, 1 + groups * (1 + n))
    assert torch.equal(ids[:, 0], batch[:, 0])
    for g in range(groups):
        assert torch.equal(ids[:, 1 + g * (1 + n)], batch[:, 2])
    first = ids[:, 2 : 2 + n]
    second = ids[:, 3 + n :] if separate else first
    if separate:  # a draw of its own, from other random words
        assert not torch.equal(first, second)
    # The loss is the EMU loss of the one-hot draw's scores and the mutated scores of
    # the (second, if separate) draw, written out here from the formula.
    trainer.model.load_state_dict(weights)
    entity, decoder = trainer.model.entity.weight.detach(), trainer.model.decoder
    h, t = entity[batch[:, 0]], entity[batch[:, 2]]
    r = trainer.model.relation.weight.detach()[batch[:, 1]]
    group_mask = trainer.mutation.group_mask_from_words(
        words[trainer.step.blocks["mutation"]], (32, 1 + n, entity.shape[1])
    )
    assert not group_mask[:, 0].any()  # the positive itself is never mutated
    mask = group_mask[:, 1:]
    m = mask.float()
    mutated = m * entity[second] + (1 - m) * t[:, None]
    s_pos, s_neg = decoder(h, r, t), decoder(h[:, None], r[:, None], entity[first])
    s_mut = decoder(h[:, None], r[:, None], mutated)
    log_p = torch.log_softmax(torch.cat([s_pos[:, None], s_mut], 1), 1)
    emu = -(log_p[:, 0] + 0.53 * log_p[:, 1:].sum(1)) / n
    one_hot = torch.logsumexp(torch.cat([s_pos[:, None], s_neg], 1), 1) - s_pos
    assert loss == pytest.approx((emu + 0.11 * one_hot).mean().item(), rel=1e-6)


@pytest.mark.slow
def test_paper_arms_train_on_a_small_graph(kg, tmp_path: Path) -> None:
    """Every arm of a paper config runs end to end (budget shrunk to a few steps)."""
    path = REPO / "configs" / "paper" / "wn18rr" / "distmult.yaml"
    budget = [
        "dataset.name=synthetic",
        "model.dim=16",
        "sampler.num_negatives=16",
        "sampler.walks=20",
        "train.batch_size=128",
        "train.max_steps=6",
        "train.valid_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        "train.device=cpu",
        f"dataset.data_dir={tmp_path / 'data'}",
    ]
    for arm in ARMS:
        metrics = Trainer(load_config(path, budget, arm=arm), tmp_path / arm, kg=kg).fit()
        assert 0 < metrics["test"]["mrr"] <= 1
