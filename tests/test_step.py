"""The training step as one pure function: compilable as one graph, equal to itself when
compiled or graphed, few operations; the fixed-shape filter and row updates it relies on."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.sampling import FilteredSampler, UniformSampler
from emu_dgl.training import step as step_module
from emu_dgl.training.optimizers import RowAdagrad, RowAdam, RowwiseAdagrad
from emu_dgl.training.sparse import coalesce_rows, push_rows
from emu_dgl.training.step import (
    GraphedStep,
    TrainStep,
    aten_ops_per_call,
    compile_step,
    forbid_host_sync,
)
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper" / "wn18rr"
TINY = [
    "dataset.name=synthetic", "model.dim=16", "sampler.num_negatives=16", "sampler.walks=20",
    "train.batch_size=64", "train.progress=false", "train.valid_every=0",
    "train.checkpoint_every=0", "train.max_steps=50",
]  # fmt: skip


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return load_dataset("synthetic")


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles from scratch (no specialisation of another test's steps)."""
    yield
    torch._dynamo.reset()


def paper_config(decoder: str, arm: str, device: torch.device, *extra: str):
    """A paper config (arm and all) on the built-in graph at a tiny budget. pRotatE and
    TransD have no paper config: DistMult's, with the decoder replaced."""
    path = PAPER / f"{decoder}.yaml"
    overrides = [*TINY, f"train.device={device.type}", *extra]
    if not path.exists():
        path, overrides = PAPER / "distmult.yaml", [*overrides, f"model.name={decoder}"]
    return load_config(path, overrides, arm=arm)


def run_steps(trainer: Trainer, steps: int) -> list[float]:
    return [float(trainer.train_step(step)) for step in range(steps)]


def assert_same_run(a: Trainer, b: Trainer, losses_a, losses_b, tol: float) -> None:
    assert losses_a == pytest.approx(losses_b, abs=tol)
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=tol, msg=name)


# ---------------------------------------------------------------------------- compiled


#: DistMult's four paper arms (every decoder compiles in tests/test_contracts.py). One fast
#: case runs without the slow marker; the others trace a graph each (seconds apiece).
COMPILED = [("distmult", "uniform-emu")] + [
    pytest.param("distmult", arm, marks=pytest.mark.slow)
    for arm in ("uniform-base", "sans-base", "sans-emu")
]


@pytest.mark.parametrize(("decoder", "arm"), COMPILED)
def test_step_compiles_as_one_graph_and_equals_the_eager_step(
    kg, tmp_path, decoder: str, arm: str, device: torch.device
) -> None:
    """``fullgraph=True`` through dynamo and AOTAutograd (``aot_eager``: what fails on host
    synchronisation, data-dependent shapes or Python branches on tensor values), then 50
    compiled steps equal 50 eager steps, losses and weights."""
    config = paper_config(decoder, arm, device)
    eager = Trainer(config, tmp_path / "eager", kg=kg)
    compiled = Trainer(copy.deepcopy(config), tmp_path / "compiled", kg=kg)
    compile_step(compiled.step, backend="aot_eager")
    losses = run_steps(compiled, 50)  # a graph break would raise here (fullgraph)
    assert_same_run(compiled, eager, losses, run_steps(eager, 50), 1e-5)
    assert losses[-1] < losses[0]  # it trains


@pytest.mark.parametrize(
    ("decoder", "arm", "extra"),
    [
        ("distmult", "uniform-emu", ()),
        ("distmult", "sans-emu", ()),
        ("distmult", "uniform-base", ()),
        ("rotate", "sans-emu", ("sampler.bernoulli=true",)),
        ("hake", "uniform-emu", ("emu.variant=mixup", "train.sparse=true")),
        ("complex", "sans-emu", ("train.optimizer=adam", "train.sparse=true")),
        ("transe", "sans-emu", ("loss.name=self_adversarial", "emu.variant=label_smoothing")),
        ("distmult", "uniform-base", ("loss.name=1vsall", "emu.enabled=false")),
        ("distmult", "sans-base", ("train.optimizer=rowwise_adagrad", "loss.regularizer=n3")),
    ],
)
def test_the_whole_step_makes_the_host_wait_nowhere(
    kg, tmp_path, decoder: str, arm: str, extra: tuple[str, ...]
) -> None:
    """Every operation of whole steps (draw, filter, gather, scoring, EMU, loss, backward,
    optimizer, for both sides, row and dense updates, each loss and mutation) passes the
    host-synchronisation check: what a CUDA graph could not capture."""
    config = paper_config(decoder, arm, torch.device("cpu"), *extra)
    trainer = Trainer(config, tmp_path, kg=kg)
    for step in range(2):  # warm-up: the optimizer state is created here
        trainer.train_step(step)
    with forbid_host_sync():
        for step in range(2, 6):
            trainer.train_step(step)


def test_the_host_sync_check_can_fail(kg, tmp_path, monkeypatch) -> None:
    """Boolean-mask indexing in the filter (an output whose shape depends on the data) is
    caught, and so is a scalar read."""
    config = paper_config("distmult", "sans-emu", torch.device("cpu"))
    trainer = Trainer(config, tmp_path, kg=kg)

    def leaky(self, pos, side, candidates):
        good = ~self.is_known(pos, candidates, side)
        return candidates[good][: pos.shape[0] * self.num_negatives].view(pos.shape[0], -1)

    monkeypatch.setattr(FilteredSampler, "first_unknown", leaky)
    with forbid_host_sync(), pytest.raises(RuntimeError, match="boolean-mask indexing"):
        trainer.train_step(0)
    with forbid_host_sync(), pytest.raises(RuntimeError, match="_local_scalar_dense"):
        float(torch.ones(2).sum())


@pytest.mark.slow
def test_inductor_compiled_step_equals_the_eager_step(kg, tmp_path) -> None:
    """Real code generation (C++ kernels on the CPU) on the paper's SANS EMU arm."""
    config = paper_config("distmult", "sans-emu", torch.device("cpu"))
    eager = Trainer(config, tmp_path / "eager", kg=kg)
    compiled = Trainer(copy.deepcopy(config), tmp_path / "compiled", kg=kg)
    compile_step(compiled.step)
    losses, reference = run_steps(compiled, 20), run_steps(eager, 20)
    assert losses == pytest.approx(reference, abs=1e-5)
    # Generated kernels sum in another order, and Adagrad's g / sqrt(sum g^2) magnifies the
    # last bits of tiny gradients: weights agree to 1e-4 (measured: about 1e-5).
    assert_same_run(compiled, eager, losses, reference, 1e-4)


@pytest.mark.slow
def test_train_compile_key_compiles_the_run(kg, tmp_path) -> None:
    """``train.compile: true`` through the whole run (inductor): the same metrics."""
    overrides = ("train.max_steps=6", "train.valid_every=3")
    plain = paper_config("distmult", "uniform-emu", torch.device("cpu"), *overrides)
    config = paper_config(
        "distmult", "uniform-emu", torch.device("cpu"), *overrides, "train.compile=true"
    )
    trainer = Trainer(config, tmp_path / "compiled", kg=kg)
    assert trainer.step.draw is not step_module.TrainStep.draw  # compiled in place
    got = trainer.fit()
    expected = Trainer(plain, tmp_path / "eager", kg=kg).fit()
    assert got["test"]["mrr"] == pytest.approx(expected["test"]["mrr"], abs=1e-3)


def test_compile_auto_compiles_only_long_per_positive_cpu_runs(kg, tmp_path) -> None:
    """``train.compile: auto`` (the default): a per-positive step on the CPU when the run is
    long enough to repay compiling; never a short run, the shared step or a CUDA device."""
    from emu_dgl.training.step import AUTO_COMPILE_WORK, compile_pays

    cpu = torch.device("cpu")
    trainer = Trainer(paper_config("distmult", "uniform-emu", cpu), tmp_path / "a", kg=kg)
    step = trainer.step
    per_step = step.batch_size * (1 + step.draws * step.num_negatives) * 16  # model.dim 16
    long_run = AUTO_COMPILE_WORK // per_step + 1
    assert compile_pays(step, 50, cpu) is None
    assert "per-positive" in compile_pays(step, long_run, cpu)
    assert compile_pays(step, long_run, torch.device("cuda")) is None
    shared = Trainer(
        paper_config("distmult", "uniform-emu", cpu, "sampler.shared_chunk=64"),
        tmp_path / "b",
        kg=kg,
    )
    assert compile_pays(shared.step, 10**12, cpu) is None  # matrix products: no gain
    broadcast = Trainer(
        paper_config("rotate", "uniform-emu", cpu, "sampler.shared_chunk=64"),
        tmp_path / "c",
        kg=kg,
    )
    assert "shared step that broadcasts" in compile_pays(broadcast.step, 10**12, cpu)
    assert isinstance(trainer._run_step, TrainStep)  # 50 steps: eager


def test_a_failed_compile_runs_the_eager_step_from_the_same_random_state(
    kg, tmp_path, monkeypatch, capfd
) -> None:
    """When compiling fails (here: the compiled draw raises as a missing C++ compiler
    would), one line says so and the run goes on eagerly, equal to an eager run."""
    from emu_dgl.training.step import CompiledStep

    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("C++ compile error: no compiler found\nmore detail")

        return call

    config = paper_config("distmult", "uniform-emu", torch.device("cpu"))
    eager = Trainer(config, tmp_path / "eager", kg=kg)
    trainer = Trainer(copy.deepcopy(config), tmp_path / "compiled", kg=kg)
    monkeypatch.setattr(torch, "compile", broken)
    trainer._run_step = CompiledStep(trainer.step)
    losses = [float(trainer.train_step(s)) for s in range(5)]
    assert losses == run_steps(eager, 5)
    err = capfd.readouterr().err
    assert err.count("train.compile: compiling failed (RuntimeError: C++ compile error") == 1
    assert "more detail" not in err


# ---------------------------------------------------------------------------- few operations


#: aten operations per step (torch.profiler on the CPU; paper configs on the built-in
#: graph). Before the pure step, on WN18RR: DistMult 288 / 730, RotatE 494 / 1,092.
OP_TARGETS = {
    ("distmult", "uniform-base"): 150,
    ("distmult", "uniform-emu"): 250,
    ("rotate", "uniform-emu"): 400,
}


@pytest.mark.parametrize(("decoder", "arm"), list(OP_TARGETS))
def test_aten_operations_per_step_meet_the_targets(kg, tmp_path, decoder: str, arm: str) -> None:
    trainer = Trainer(paper_config(decoder, arm, torch.device("cpu")), tmp_path, kg=kg)
    steps = iter(range(100))
    ops = aten_ops_per_call(lambda: trainer.train_step(next(steps)), calls=2, warmup=2)
    assert 20 < ops <= OP_TARGETS[decoder, arm], ops


# ---------------------------------------------------------------------------- CUDA graphs


def test_a_failed_capture_falls_back_to_the_eager_step_in_one_line(
    kg, tmp_path, monkeypatch, capsys
) -> None:
    """The graph logic without a GPU: warm-up steps, then a capture that fails; the run
    goes on with eager steps, equal to a plain eager run, after one line on stderr."""
    config = paper_config("distmult", "sans-emu", torch.device("cpu"))
    plain = Trainer(config, tmp_path / "plain", kg=kg)
    graphed = Trainer(copy.deepcopy(config), tmp_path / "graphed", kg=kg)
    runner = GraphedStep(graphed.step, warmup=2)
    monkeypatch.setattr(runner, "_on_side_stream", lambda run: run())

    def no_capture(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(runner, "_capture", no_capture)
    graphed._run_step = runner
    losses = run_steps(graphed, 6)
    assert runner.failed and runner.eager_steps == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.cuda_graph: capture failed (RuntimeError")
    assert_same_run(graphed, plain, losses, run_steps(plain, 6), 0)


def test_cuda_graph_requested_on_the_cpu_says_why_it_is_off(kg, tmp_path, capsys) -> None:
    config = paper_config("distmult", "sans-emu", torch.device("cpu"), "train.cuda_graph=true")
    trainer = Trainer(config, tmp_path, kg=kg)
    assert trainer._run_step is trainer.step
    assert "train.cuda_graph: off (the device is cpu)" in capsys.readouterr().err


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("arm", ["uniform-emu", "sans-emu"])
def test_graphed_steps_equal_eager_steps_on_cuda(kg, tmp_path, arm: str) -> None:
    config = paper_config("distmult", arm, torch.device("cuda"), "train.cuda_graph=false")
    eager = Trainer(config, tmp_path / "eager", kg=kg)
    graphed_config = copy.deepcopy(config)
    graphed_config.train.cuda_graph = True
    graphed = Trainer(graphed_config, tmp_path / "graphed", kg=kg)
    assert isinstance(graphed._run_step, GraphedStep)
    losses = run_steps(graphed, 50)
    assert graphed._run_step.graphs and not graphed._run_step.failed  # replayed, not eager
    # index_add_ sums with atomics on CUDA: equal up to the order of float additions
    assert_same_run(graphed, eager, losses, run_steps(eager, 50), 1e-5)
    # the generator's state after replays is the state after as many eager steps
    assert torch.equal(graphed.generator.get_state(), eager.generator.get_state())


@cuda
def test_graphed_run_resumes_like_an_uninterrupted_one(kg, tmp_path) -> None:
    config = paper_config(
        "distmult",
        "sans-emu",
        torch.device("cuda"),
        "train.cuda_graph=true",
        "train.max_steps=40",
        "train.checkpoint_every=10",
        "train.valid_every=20",
    )
    full = Trainer(config, tmp_path / "full", kg=kg).fit()
    assert Trainer(config, tmp_path / "killed", kg=kg).fit(stop_after=25) == {}
    resumed = Trainer(config, tmp_path / "killed", kg=kg).fit(resume=True)
    assert resumed["test"]["mrr"] == pytest.approx(full["test"]["mrr"], abs=1e-4)


# ---------------------------------------------------------------------------- filter


def dense_graph(entities: int, known_tails: list[int]) -> torch.Tensor:
    """Head ``h`` has tails ``0 .. known_tails[h] - 1`` under relation 0."""
    rows = [(h, 0, t) for h, k in enumerate(known_tails) for t in range(k)]
    return torch.tensor(rows, dtype=torch.long)


def test_filter_residual_matches_the_exact_binomial_tail() -> None:
    """Uniform candidates of head ``h`` are known with probability ``q_h = k_h / E``
    exactly, so the expected share of known triples left among the negatives is the
    binomial tail of ``residual_rate(q_h)``: measured over many rows, it agrees."""
    entities, n = 50, 16
    known_tails = [10, 25, 35, 40, 45]
    triples = dense_graph(entities, known_tails)
    sampler = FilteredSampler(
        UniformSampler(num_entities=entities, num_negatives=n),
        triples,
        entities,
        spare=4,
        uniform_spare=2,
    )
    rows = 4000
    gen = torch.Generator().manual_seed(0)
    for h, k in enumerate(known_tails):
        pos = torch.tensor([[h, 0, 0]]).repeat(rows, 1)
        neg = sampler.sample(pos, "tail", generator=gen)
        measured = (neg < k).double().mean().item()  # tails below k are known
        expected = sampler.residual_rate(k / entities)
        spread = math.sqrt(max(expected * (1 - expected), 1e-4) / (rows * n))
        assert abs(measured - expected) < 6 * spread + 1e-3, (h, measured, expected)
    assert sampler.residual_rate(0.2) < 0.02 < sampler.residual_rate(0.7)
    # The defaults (n/4 spare and n uniform candidates) leave nothing measurable at n = 256
    # even when a tenth of all candidates is known.
    default = FilteredSampler(UniformSampler(num_entities=10, num_negatives=256), triples, 10)
    assert default.residual_rate(0.1) < 1e-12


def test_filter_keeps_the_first_unknown_candidates_in_draw_order() -> None:
    triples = dense_graph(10, [4])  # (0, 0, t) known for t < 4
    sampler = FilteredSampler(
        UniformSampler(num_entities=10, num_negatives=3), triples, 10, spare=2, uniform_spare=0
    )
    pos = torch.tensor([[0, 0, 9], [0, 0, 9], [0, 0, 9]])
    candidates = torch.tensor([[5, 1, 6, 2, 7], [0, 1, 2, 8, 3], [1, 2, 3, 0, 9]])
    got = sampler.first_unknown(pos, "tail", candidates)
    # row 0: 5, 6, 7; row 1: one unknown (8), then the first rejected ones in order;
    # row 2: only 9 passes
    assert got.tolist() == [[5, 6, 7], [8, 0, 1], [9, 1, 2]]


# ---------------------------------------------------------------------------- row updates


def test_row_adagrad_from_lookups_equals_dense_adagrad_with_duplicates() -> None:
    torch.manual_seed(0)
    rows, width = 30, 5
    table = torch.randn(rows, width, dtype=torch.float64)
    dense = table.clone().requires_grad_(True)
    sparse = table.clone().requires_grad_(True)
    opt_dense = torch.optim.Adagrad([dense], lr=0.2)
    opt_rows = RowAdagrad([sparse], lr=0.2)
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        ids = torch.randint(0, 12, (40,), generator=gen)  # rows 12.. never touched
        grads = torch.randn(40, width, generator=gen, dtype=torch.float64) * (step + 1)
        dense.grad = torch.zeros_like(dense).index_add_(0, ids, grads)
        opt_dense.step()
        push_rows(opt_rows, sparse, ids, grads)
        opt_rows.step()
        torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)
    assert torch.equal(sparse.detach()[12:], table[12:])
    torch.testing.assert_close(
        opt_rows.state[sparse]["sum"], opt_dense.state[dense]["sum"], rtol=0, atol=1e-12
    )


def test_coalesce_rows_has_a_fixed_shape_and_sums_duplicates() -> None:
    ids = torch.tensor([4, 1, 4, 7, 1, 4])
    values = torch.arange(12, dtype=torch.float64).view(6, 2)
    slots, summed = coalesce_rows(ids, values, num_rows=10)
    assert slots.shape == (6,) and summed.shape == (6, 2)  # min(lookups, rows) slots
    assert slots[:3].tolist() == [1, 4, 7]
    assert summed[:3].tolist() == [[2 + 8, 3 + 9], [0 + 4 + 10, 1 + 5 + 11], [6, 7]]
    # unused slots: row 0 with a zero gradient (an addition of nothing) ...
    assert slots[3:].tolist() == [0, 0, 0] and summed[3:].tolist() == [[0, 0]] * 3
    # ... or copies of slot 0, same row and gradient (identical writes)
    slots, summed = coalesce_rows(ids, values, num_rows=10, repeat_first=True)
    assert slots[3:].tolist() == [1, 1, 1] and summed[3:].tolist() == [[10, 12]] * 3
    slots, summed = coalesce_rows(ids, values, num_rows=3)  # fewer rows than lookups
    assert slots.shape == (3,) and slots.tolist() == [1, 4, 7]


def test_row_updates_leave_row_zero_alone_when_it_is_not_touched() -> None:
    """The padding slots point at row 0 with a zero gradient: row 0 must not move."""
    table = torch.randn(20, 3, dtype=torch.float64)
    for cls in (RowAdagrad, RowwiseAdagrad, RowAdam):
        weight = table.clone().requires_grad_(True)
        opt = cls([weight], lr=0.1)
        for _ in range(3):
            push_rows(opt, weight, torch.tensor([5, 9, 5]), torch.ones(3, 3, dtype=torch.float64))
            opt.step()
        assert torch.equal(weight.detach()[0], table[0]), cls.__name__
        assert not torch.equal(weight.detach()[5], table[5])
