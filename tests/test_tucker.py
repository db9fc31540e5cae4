"""TuckER: the decoder that proves a decoder is one file (emu_dgl/models/tucker.py).

It holds what the decoder contract asks for and then some: a core tensor shared by every
relation (a learnt decoder parameter, exported as an array), relation rows of another width
than entity rows, and a tail form that is no relation row of the stored width. The generic
contract tests run over it from the registry (default options: relation width = entity
width); here they run again with the widths apart, next to the closed form and a run that
learns. No module of the package, the tests or the benchmarks other than these two files
names it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.models import DECODERS, KGEModel
from emu_dgl.training.results import export_meta
from emu_dgl.training.trainer import Trainer
from tests import test_decoders, test_mutation, test_shared

REPO = Path(__file__).resolve().parents[1]
APART = {"relation_dim": 3}  # entity rows 6 wide in the generic tests, relation rows 3


def test_the_score_is_the_core_contracted_with_h_r_t_and_the_widths_differ() -> None:
    torch.manual_seed(0)
    model = KGEModel(7, 2, decoder="tucker", dim=4, relation_dim=3).double()
    assert model.entity.weight.shape == (7, 4) and model.relation.weight.shape == (2, 3)
    assert model.decoder.core.shape == (4, 3, 4)
    assert DECODERS.get("tucker").table_widths(4, relation_dim=3) == (4, 3)
    hrt = torch.tensor([[0, 1, 5], [3, 0, 3], [6, 1, 2]])
    e, r = model.entity.weight.detach(), model.relation.weight.detach()
    w = model.decoder.core.detach()
    by_hand = torch.tensor(
        [
            sum(
                float(w[i, j, k] * e[h, i] * r[q, j] * e[t, k])
                for i in range(4)
                for j in range(3)
                for k in range(4)
            )
            for h, q, t in hrt.tolist()
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(model.score_hrt(hrt), by_hand)


def test_initial_scores_are_of_order_one() -> None:
    torch.manual_seed(0)
    model = KGEModel(500, 20, decoder="tucker", dim=32, relation_dim=8)
    hrt = torch.stack([torch.randint(500, (4000,)), torch.randint(20, (4000,)),
                       torch.randint(500, (4000,))], 1)  # fmt: skip
    std = float(model.score_hrt(hrt).detach().std())
    assert 0.5 < std < 2.0, std


@pytest.mark.parametrize("slice_size", [None, 2])
def test_generic_contracts_with_relation_width_apart(slice_size, device) -> None:
    """The registry-driven contract tests of tests/test_decoders.py, test_mutation.py and
    test_shared.py, once more with relation rows narrower than entity rows."""
    test_decoders.test_one_vs_all_matches_score_hrt("tucker", APART, slice_size, device)
    for side in ("head", "tail"):
        test_decoders.test_score_negatives_match_score_hrt("tucker", APART, side, device)
        test_decoders.test_terms_are_coordinate_aligned("tucker", APART, side, device)
        test_mutation.test_score_negatives_mutated_equals_direct("tucker", APART, side, device)
    for side in ("head", "per-row"):
        test_decoders.test_the_tail_form_scores_a_head_corruption_as_a_tail_corruption(
            "tucker", APART, side, device
        )
    test_decoders.test_score_groups_mixes_terms_like_embeddings("tucker", APART, device)
    test_shared.test_chunk_scores_equal_the_broadcast_reference("tucker", {"relation_dim": 4})


def test_export_keeps_the_core(tmp_path: Path) -> None:
    config = load_config(None, ["model.name=tucker", "model.dim=6", "model.relation_dim=3"])
    model = KGEModel(9, 2, decoder="tucker", dim=6, relation_dim=3)
    meta = export_meta(config, model, "best")
    assert meta["decoder_arrays"] == {"core": {"file": "decoder.core.npy", "shape": [6, 3, 6]}}
    assert meta["relations"]["blocks"] == {"embedding": [0, 3]}
    assert config.to_dict()["model"]["relation_dim"] == 3


@pytest.mark.slow
def test_tucker_learns_and_its_run_exports_the_core(tmp_path: Path) -> None:
    """A short EMU run on the built-in graph (relation rows half the entity width, Bernoulli
    sides: both tail forms in one step) beats an untrained model many times over; the
    exported core is the trained one."""
    kg = load_dataset("synthetic")
    config = load_config(None, [
        "model.name=tucker", "model.dim=32", "model.relation_dim=16", "train.max_steps=300",
        "train.batch_size=256", "sampler.num_negatives=32", "sampler.bernoulli=true",
        "train.progress=false", "train.valid_every=0", "train.checkpoint_every=0",
        "train.threads=1", "train.lr=0.05",
    ])  # fmt: skip
    untrained = Trainer(config, tmp_path / "untrained", kg=kg)
    before = untrained.evaluator.evaluate(untrained.model, kg.test)["mrr"]
    trainer = Trainer(config, tmp_path / "run", kg=kg)
    after = trainer.fit()["test"]["mrr"]
    assert after > 0.3 and after > 5 * before, (before, after)
    from emu_dgl.training.results import load_run

    out = load_run(tmp_path / "run").export(tmp_path / "export")
    core = np.load(out / "decoder.core.npy")
    np.testing.assert_allclose(core, trainer.model.decoder.core.detach().numpy())
    assert json.loads((out / "meta.json").read_text())["model"] == "tucker"


def test_no_other_module_names_tucker() -> None:
    """The decoder is one file and this test: nothing else in the package, the tests, the
    benchmarks or the examples knows it exists."""
    own = {REPO / "emu_dgl" / "models" / "tucker.py", Path(__file__).resolve()}
    naming = [
        str(path.relative_to(REPO))
        for folder in ("emu_dgl", "tests", "benchmarks", "examples")
        for path in (REPO / folder).rglob("*.py")
        if path.resolve() not in own and re.search("tucker", path.read_text(), re.IGNORECASE)
    ]
    assert naming == []
