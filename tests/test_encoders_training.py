"""Graph encoders through the one training step and the run around it: gradients into the
table and the layers, the default encoder bit for bit as before encoders, runs that learn,
exact resume, the host-synchronisation and compile rules in full-graph mode, checkpoints
that evaluate, predict and export reopen, and one-line errors for impossible settings."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import emu_dgl
from emu_dgl.config import load_config
from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.training.encoded import EncodedTable
from emu_dgl.training.step import compile_step, forbid_host_sync
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper" / "wn18rr"
TINY = [
    "dataset.name=synthetic", "model.name=distmult", "model.dim=16", "sampler.num_negatives=16",
    "train.batch_size=64", "train.progress=false", "train.valid_every=0",
    "train.checkpoint_every=0", "train.max_steps=50", "train.threads=1", "train.device=cpu",
]  # fmt: skip
RGCN = ["model.encoder=rgcn", "model.encoder_dropout=0"]


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return load_dataset("synthetic")


def config(*extra: str):
    return load_config(None, [*TINY, *extra])


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


# ---------------------------------------------------------------------------- the table


#: Losses (float.hex) of 6 steps and a hash of the weights after them, recorded with the code
#: before encoders existed (commit d89d037, torch 2.13.0 CPU, one thread) on paper configs
#: at the TINY budget of tests/test_step.py: the default encoder must give the same bits.
#: SANS reads exact k-hop neighbourhoods (sampler.walks=0): DGL's random walks are not
#: bit-exact across thread counts, and the session's neighbourhood cache may hold either.
BEFORE_ENCODERS = {
    ("distmult", "uniform-emu", ()): (
        ["0x1.de5ec80000000p+1", "0x1.b642cc0000000p+1", "0x1.9c29340000000p+1",
         "0x1.827b7c0000000p+1", "0x1.7277ec0000000p+1", "0x1.675a4c0000000p+1"],
        "1933820fdb618798",
    ),
    ("rotate", "sans-emu", ("sampler.bernoulli=true", "train.sparse=true")): (
        ["0x1.c74f5c0000000p+1", "0x1.c5443c0000000p+1", "0x1.c5dde80000000p+1",
         "0x1.cf61fc0000000p+1", "0x1.bddd900000000p+1", "0x1.c28bc80000000p+1"],
        "45632aa22c3e0c42",
    ),
    ("complex", "uniform-base", ("loss.name=1vsall", "emu.enabled=false")): (
        ["0x1.3d27a60000000p+4", "0x1.3168d60000000p+4", "0x1.fab2de0000000p+3",
         "0x1.0661e40000000p+4", "0x1.cf8cde0000000p+3", "0x1.8a69ec0000000p+3"],
        "e350503138eac6bf",
    ),
    ("transe", "uniform-emu", ("sampler.shared_chunk=16",)): (
        ["0x1.cec6a40000000p+1", "0x1.d04aaa0000000p+1", "0x1.bf06440000000p+1",
         "0x1.c7dcf80000000p+1", "0x1.c435080000000p+1", "0x1.c3c8f40000000p+1"],
        "94b115dce1f2ba34",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BEFORE_ENCODERS), ids=lambda c: "-".join(c[:2]))
def test_the_table_encoder_trains_bit_for_bit_as_before_encoders(kg, tmp_path, case) -> None:
    decoder, arm, extra = case
    overrides = [t for t in TINY if not t.startswith("model.name")] + ["sampler.walks=0", *extra]
    cfg = load_config(PAPER / f"{decoder}.yaml", overrides, arm=arm)
    trainer = Trainer(cfg, tmp_path, kg=kg)
    torch.set_num_threads(1)
    losses = [float(trainer.train_step(step)).hex() for step in range(6)]
    digest = hashlib.sha256()
    for key, value in trainer.model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    assert (losses, digest.hexdigest()[:16]) == BEFORE_ENCODERS[case]
    assert trainer.model.encoder.uses_graph is False and trainer.sparse_rows == (
        "train.sparse=true" in extra
    )


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("encoder", ["rgcn", "compgcn"])
def test_push_backpropagates_the_rows_gradients_into_the_table_and_every_layer(
    kg, tmp_path, encoder
) -> None:
    """``gather`` then ``push`` gives every parameter the gradient of ``sum(g * rows)``
    computed directly through the encoder, duplicates and all."""
    trainer = Trainer(
        config(f"model.encoder={encoder}", "model.encoder_dropout=0"), tmp_path, kg=kg
    )
    model = trainer.model.double()
    table = EncodedTable(model)
    ids = [torch.tensor([3, 1, 3]), torch.tensor([0, 7, 7, 600, 2])]
    rows = table.gather(ids)
    grads = [torch.randn_like(r) for r in rows]
    model.zero_grad(set_to_none=True)
    table.push(trainer.optimizer, list(zip(ids, grads, strict=True)))
    pushed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    vectors = model.encode_all()
    sum((g * vectors[i]).sum() for i, g in zip(ids, grads, strict=True)).backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert pushed.keys() == expected.keys()
    assert "entity.weight" in pushed and any(n.startswith("encoder.layers") for n in pushed)
    for name, grad in expected.items():
        torch.testing.assert_close(pushed[name], grad, msg=name)
    assert all(bool(g.abs().sum() > 0) for n, g in pushed.items() if n != "relation.weight")


@pytest.mark.parametrize("encoder", ["rgcn", "compgcn"])
def test_full_and_sampled_steps_agree_when_the_sampler_takes_every_neighbour(
    kg, tmp_path, encoder
) -> None:
    """Whole-graph and sampled-block steps: the same losses and weights (no dropout)."""
    extra = (f"model.encoder={encoder}", "model.encoder_dropout=0", "model.encoder_layers=2")
    full = Trainer(config(*extra), tmp_path / "full", kg=kg)
    sampled = Trainer(config(*extra, "model.encoder_mode=sampled"), tmp_path / "s", kg=kg)
    assert isinstance(sampled.step.table, EncodedTable) and sampled.step.table.mode == "sampled"
    for trainer in (full, sampled):
        trainer.model.double()
        trainer.optimizer = trainer._make_optimizer(0)  # its state in the new precision
    a = [float(full.train_step(s)) for s in range(3)]
    b = [float(sampled.train_step(s)) for s in range(3)]
    assert a == pytest.approx(b, abs=1e-9)
    for (name, x), y in zip(weights(full).items(), weights(sampled).values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)


def test_an_evaluation_encodes_the_graph_once(kg, tmp_path) -> None:
    trainer = Trainer(config(*RGCN, "model.encoder_layers=1"), tmp_path, kg=kg)
    calls = []
    trainer.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    trainer.evaluator.evaluate(trainer.model, kg.valid[:100])
    assert len(calls) == 1
    trainer.evaluator.evaluate(trainer.model, kg.valid[:100])
    assert len(calls) == 2  # each evaluation encodes once
    trainer.train_step(0)  # one encoding in the step
    assert len(calls) == 3
    assert trainer.model.training and trainer.model._frozen is None


# ---------------------------------------------------------------------------- runs


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["rgcn", "compgcn"])
def test_a_short_encoder_run_learns(kg, tmp_path, encoder) -> None:
    """200 steps on the synthetic graph: filtered valid MRR several times the untrained
    model's (measured: about 0.014 before; R-GCN 0.14, CompGCN 0.09 after)."""
    cfg = config(f"model.encoder={encoder}", "train.max_steps=200")
    trainer = Trainer(cfg, tmp_path, kg=kg)
    before = trainer.evaluator.evaluate(trainer.model, kg.valid)["mrr"]
    result = trainer.fit()
    assert result["valid"]["mrr"] > max(0.05, 3 * before), (before, result["valid"]["mrr"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ("model.encoder=rgcn",),
        ("model.encoder=compgcn", "emu.variant=mixup", "sampler.bernoulli=true"),
        ("model.encoder=rgcn", "model.encoder_mode=sampled", "model.encoder_fanouts=4,4"),
    ],
    ids=["rgcn-full", "compgcn-full-mixup", "rgcn-sampled"],
)
def test_a_killed_encoder_run_resumes_bit_for_bit(kg, tmp_path, extra) -> None:
    cfg = config(*extra, "train.max_steps=30", "train.valid_every=10", "train.log_every=5")
    uninterrupted = Trainer(cfg, tmp_path / "full", kg=kg).fit()
    assert Trainer(cfg, tmp_path / "killed", kg=kg).fit(stop_after=15) == {}
    resumed = Trainer(cfg, tmp_path / "killed", kg=kg).fit(resume=True)
    assert resumed["valid"] == uninterrupted["valid"] and resumed["test"] == uninterrupted["test"]

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]

    assert losses(tmp_path / "killed") == losses(tmp_path / "full")
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


@pytest.mark.parametrize("encoder", ["rgcn", "compgcn"])
def test_full_graph_steps_make_the_host_wait_nowhere_and_are_capturable(
    kg, tmp_path, encoder
) -> None:
    trainer = Trainer(config(f"model.encoder={encoder}"), tmp_path, kg=kg)
    assert trainer.step.capturable is None
    for step in range(2):  # the optimizer state is made here
        trainer.train_step(step)
    with forbid_host_sync():
        for step in range(2, 4):
            trainer.train_step(step)
    sampled = Trainer(
        config(f"model.encoder={encoder}", "model.encoder_mode=sampled"), tmp_path / "s", kg=kg
    )
    assert "samples neighbour blocks on the host" in sampled.step.capturable


@pytest.mark.slow
def test_a_compiled_encoder_step_equals_the_eager_step(kg, tmp_path) -> None:
    cfg = config(*RGCN)
    eager = Trainer(cfg, tmp_path / "eager", kg=kg)
    compiled = Trainer(copy.deepcopy(cfg), tmp_path / "compiled", kg=kg)
    compile_step(compiled.step, backend="aot_eager")
    try:
        a = [float(compiled.train_step(s)) for s in range(4)]
    finally:
        torch._dynamo.reset()
    assert a == pytest.approx([float(eager.train_step(s)) for s in range(4)], abs=1e-5)


@pytest.mark.slow
def test_checkpoints_carry_the_encoder_and_evaluate_predict_export_reopen_them(
    kg, tmp_path
) -> None:
    run = emu_dgl.train(
        config("model.encoder=compgcn", "train.max_steps=20", "train.valid_every=10"),
        out=tmp_path / "run",
        say=lambda _: None,
    )
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert any(key.startswith("encoder.layers.0.w_forward") for key in state["model"])
    reopened = emu_dgl.load_run(tmp_path / "run")
    assert reopened.model.encoder.uses_graph
    assert reopened.evaluate("test")["mrr"] == pytest.approx(run.metrics["test"]["mrr"])
    names = reopened.kg.entity_names
    table = reopened.predict(relation=reopened.kg.relation_names[0], head=names[0], top=5)
    assert len(table) == 5 and list(table["rank"]) == [1, 2, 3, 4, 5]
    out = reopened.export(tmp_path / "export")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"] == "compgcn"
    with torch.no_grad():
        vectors = reopened.model.entity_vectors().numpy()
    np.testing.assert_array_equal(np.load(out / "entities.npy"), vectors)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["model.encoder=gcn"], "unknown value 'gcn'"),
        (["model.encoder=rgcn", "model.encoder_layer=2"], "did you mean 'model.encoder_layers'"),
        (["model.encoder=rgcn", "model.encoder_bases=7"], "model.encoder_bases=7: block-diagonal"),
        (["model.encoder=rgcn", "model.encoder_decomposition=cp"], "model.encoder_decomposition: unknown"),
        (["model.encoder=compgcn", "model.encoder_composition=add"], "model.encoder_composition: unknown"),
        (["model.encoder=rgcn", "model.encoder_layers=0"], "model.encoder_layers: must be a positive integer"),
        (["model.encoder=rgcn", "model.encoder_dropout=1.5"], "model.encoder_dropout: must be in [0, 1)"),
        (["model.encoder_width=32"], "model.encoder=table has rows of the decoder's entity width"),
        (["model.encoder_mode=sampled"], "model.encoder=table reads no graph"),
        (["model.encoder=rgcn", "model.encoder_fanouts=5,5"], "read in model.encoder_mode=sampled only"),
        (["model.encoder=rgcn", "model.encoder_mode=sampled", "model.encoder_fanouts=5"], "1 entries for 2 encoder layers"),
        (["model.encoder=rgcn", "train.sparse=true"], "train.sparse=true updates entity rows"),
        (["model.encoder=rgcn", "model.encoder_mode=sampled", "loss.name=1vsall", "emu.enabled=false"], "use model.encoder_mode=full"),
    ],
)  # fmt: skip
def test_impossible_encoder_settings_fail_in_one_line(kg, tmp_path, extra, fragment) -> None:
    with pytest.raises(ConfigError) as caught:
        Trainer(config(*extra), tmp_path, kg=kg)
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message


def test_several_processes_refuse_a_graph_encoder_in_one_line() -> None:
    from emu_dgl.distributed.trainer import check_distributed_config

    with pytest.raises(ConfigError, match="not supported on 2 processes") as caught:
        check_distributed_config(config("model.encoder=rgcn"), 2)
    assert "\n" not in str(caught.value)


def test_a_block_of_rows_builds_the_tables_rows_and_refuses_a_graph_encoder(kg) -> None:
    """``model_from_config(rows=...)`` (one process's block of a split table): the table
    encoder's block holds the whole table's rows; a graph encoder, which reads neighbours'
    rows, is refused in one line, as is an encoder that does not say it runs sharded."""
    from emu_dgl.encoders import Encoder
    from emu_dgl.registry import ENCODERS
    from emu_dgl.training.build import model_from_config

    E, R = kg.num_entities, kg.num_relations
    whole = model_from_config(config(), E, R, kg=kg)
    block = model_from_config(config(), E, R, rows=(7, 40), kg=kg)
    assert torch.equal(block.entity.weight, whole.entity.weight[7:40])
    assert model_from_config(config(*RGCN), E, R, rows=(0, E), kg=kg).encoder.uses_graph
    for name in ("rgcn", "compgcn"):
        with pytest.raises(ConfigError, match=f"model.encoder={name} is not supported") as caught:
            model_from_config(config(f"model.encoder={name}"), E, R, rows=(7, 40), kg=kg)
        assert "\n" not in str(caught.value)
    ENCODERS.register("sharded_identity")(
        type("ShardedIdentity", (Encoder,), {"runs_sharded": True, "forward": lambda s, b, x: x})
    )
    try:
        model = model_from_config(
            config("model.encoder=sharded_identity"), E, R, rows=(7, 40), kg=kg
        )
        assert model.entity.weight.shape[0] == 33
    finally:
        ENCODERS.unregister("sharded_identity")


def test_auto_updates_a_graph_encoder_densely_and_the_table_row_wise(tmp_path) -> None:
    big = load_dataset("synthetic")  # 605 entities: rows would pay only on large tables
    rows = Trainer(config("train.sparse=auto"), tmp_path / "t", kg=big)
    encoded = Trainer(config(*RGCN, "train.sparse=auto"), tmp_path / "e", kg=big)
    assert encoded.sparse_rows is False
    assert type(encoded.optimizer) is type(rows.optimizer) or not rows.sparse_rows
    names = {n for n, _ in encoded.model.named_parameters()}
    grouped = {id(p) for g in encoded.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in encoded.model.parameters()} == grouped and "entity.weight" in names


@pytest.mark.slow
def test_the_cli_trains_resumes_evaluates_predicts_and_exports_an_encoder_run(tmp_path) -> None:
    from tests.run_helpers import invoke

    run = tmp_path / "run"
    settings = [*TINY, "model.encoder=rgcn", "train.max_steps=10", "train.valid_every=5"]
    args = [arg for item in settings for arg in ("--set", item)]
    assert invoke("train", *args, "--out", run).exit_code == 0
    more = invoke("train", "--resume", run, "--set", "train.max_steps=14")
    assert more.exit_code == 0, more.output
    evaluated = invoke("evaluate", run)
    assert evaluated.exit_code == 0 and "test" in evaluated.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 14
    kg = load_dataset("synthetic")
    predicted = invoke(
        "predict", run, "--head", kg.entity_names[0], "--relation", kg.relation_names[0]
    )
    assert predicted.exit_code == 0 and "rank" in predicted.output
    assert invoke("export", run, "--out", tmp_path / "export").exit_code == 0
    assert json.loads((tmp_path / "export" / "meta.json").read_text())["encoder"] == "rgcn"


@pytest.mark.slow
def test_compare_and_tune_run_an_encoder_with_a_tracker(tmp_path) -> None:
    from tests.run_helpers import invoke

    settings = [*TINY, "model.encoder=rgcn", "train.max_steps=10", "train.valid_every=5"]
    settings.append("tracking.backends=tensorboard")
    args = [arg for item in settings for arg in ("--set", item)]
    compared = invoke("compare", *args, "--out", tmp_path / "compare")
    assert compared.exit_code == 0, compared.output
    results = json.loads((tmp_path / "compare" / "results.json").read_text())
    assert {"base", "emu"} <= set(json.dumps(results).replace('"', " ").split())
    for arm in ("base", "emu"):
        state = torch.load(next((tmp_path / "compare" / arm).rglob("best.pt")), weights_only=True)
        assert any(key.startswith("encoder.layers") for key in state["model"])
    tuned = invoke("tune", *args, "--trials", "1", "--out", tmp_path / "tune")
    assert tuned.exit_code == 0, tuned.output
    assert "rgcn" in (tmp_path / "tune" / "best.yaml").read_text()


@pytest.mark.parametrize(
    "preset", ["fb15k-237-rgcn-distmult.yaml", "fb15k-237-rgcn-distmult-emu.yaml"]
)
def test_the_fb15k237_encoder_presets_build_and_step(kg, tmp_path, preset) -> None:
    """The presets as written (on the built-in graph, a few steps): sampled R-GCN blocks,
    shared negatives, EMU in the variant only."""
    cfg = load_config(
        REPO / "configs" / "encoders" / preset,
        ["dataset.name=synthetic", "train.max_steps=3", "train.progress=false"],
    )
    trainer = Trainer(cfg, tmp_path, kg=kg)
    assert trainer.step.table.mode == "sampled" and trainer.model.encoder.num_layers == 1
    assert (trainer.mutation is not None) == preset.endswith("-emu.yaml")
    losses = [float(trainer.train_step(step)) for step in range(3)]
    assert all(np.isfinite(losses))


@pytest.mark.parametrize(
    "extra",
    [
        *(
            pytest.param((f"model.name={name}",), id=name, marks=pytest.mark.slow)
            for name in ("transe", "complex", "rotate", "protate", "transd", "hake")
        ),
        pytest.param(("loss.name=self_adversarial",), id="self_adversarial"),
        pytest.param(("loss.name=margin", "emu.enabled=false"), id="margin"),
        pytest.param(("loss.name=1vsall", "emu.enabled=false"), id="1vsall"),
        pytest.param(("emu.variant=label_smoothing", "sampler.name=sans"), id="sans-ls"),
        pytest.param(("emu.separate_draws=true", "loss.regularizer=n3", "loss.reg_weight=1e-3"), id="two-draws-n3"),
        pytest.param(("sampler.shared_chunk=16", "model.encoder_mode=sampled"), id="shared-sampled"),
    ],
)  # fmt: skip
def test_an_encoder_trains_under_every_decoder_loss_and_sampler(kg, tmp_path, extra) -> None:
    """Two steps through an R-GCN: finite losses, and the table, the layers and the
    relations all move."""
    trainer = Trainer(config("model.encoder=rgcn", "sampler.walks=20", *extra), tmp_path, kg=kg)
    before = weights(trainer)
    losses = [float(trainer.train_step(step)) for step in range(2)]
    assert all(np.isfinite(losses)), losses
    after = weights(trainer)
    for name in ("entity.weight", "relation.weight", "encoder.layers.1.conv.loop_weight"):
        assert not torch.equal(before[name], after[name]), name
