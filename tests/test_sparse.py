"""Row-sparse optimizers against PyTorch's dense ones and brute-force references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.training.build import check_components
from emu_dgl.training.checkpoint import load_checkpoint
from emu_dgl.training.optimizers import RowAdagrad, RowAdam, RowwiseAdagrad
from emu_dgl.training.sparse import build_optimizer, use_sparse_rows
from emu_dgl.training.trainer import Trainer

ROWS, DIM = 12, 5
# Ids per step, with duplicates (row 3 three times at step 0) and rows 10, 11 never used.
STEPS = [
    torch.tensor([3, 1, 3, 7, 3, 0]),
    torch.tensor([2, 2, 5, 1]),
    torch.tensor([7, 9, 0, 8, 8, 4, 6]),
    torch.tensor([3, 5, 5]),
]
NEVER = torch.tensor([10, 11])


def _loss(rows: torch.Tensor, step: int) -> torch.Tensor:
    """A nonlinear loss whose gradient differs per lookup (so duplicates must be summed)."""
    target = torch.linspace(-1, 1, rows.numel(), dtype=rows.dtype).view_as(rows) * (step + 1)
    return ((rows - target) ** 3).abs().sum() + rows.sin().sum()


def _embedding(sparse: bool) -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(ROWS, DIM, sparse=sparse).double()


def _run(emb: nn.Embedding, opt: torch.optim.Optimizer, steps=STEPS) -> list[torch.Tensor]:
    snapshots = []
    for i, ids in enumerate(steps):
        opt.zero_grad(set_to_none=True)
        _loss(emb(ids), i).backward()
        opt.step()
        snapshots.append(emb.weight.detach().clone())
    return snapshots


def test_sparse_adagrad_equals_dense_adagrad_and_leaves_untouched_rows_alone():
    sparse, dense = _embedding(True), _embedding(False)
    start = sparse.weight.detach().clone()
    opt_s, opt_d = (
        RowAdagrad(sparse.parameters(), lr=0.3),
        torch.optim.Adagrad(dense.parameters(), lr=0.3),
    )
    before = start
    for i, (ws, wd) in enumerate(zip(_run(sparse, opt_s), _run(dense, opt_d), strict=True)):
        torch.testing.assert_close(ws, wd, rtol=0, atol=1e-14)
        untouched = torch.ones(ROWS, dtype=torch.bool)
        untouched[STEPS[i]] = False
        assert torch.equal(ws[untouched], before[untouched])  # bit-for-bit unchanged
        assert not torch.equal(ws[~untouched], before[~untouched])
        before = ws
    state_s = opt_s.state[sparse.weight]["sum"]
    torch.testing.assert_close(state_s, opt_d.state[dense.weight]["sum"], rtol=0, atol=1e-13)
    assert torch.equal(state_s[NEVER], torch.zeros(2, DIM, dtype=torch.double))
    assert torch.equal(sparse.weight[NEVER], start[NEVER])


def lazy_adam_reference(w0, grads_per_step, lr, betas=(0.9, 0.999), eps=1e-8):
    """Row by row: a row's moments and weight change only at steps that touch it."""
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    b1, b2 = betas
    for t, grads in enumerate(grads_per_step, start=1):
        for row, g in grads.items():
            m[row] = b1 * m[row] + (1 - b1) * g
            v[row] = b2 * v[row] + (1 - b2) * g * g
            w[row] = w[row] - lr / (1 - b1**t) * m[row] / (v[row].sqrt() / (1 - b2**t) ** 0.5 + eps)
    return w, m, v


def _row_grads(emb_weight: torch.Tensor, steps) -> list[dict[int, torch.Tensor]]:
    """Each step's summed gradient per touched row, from a dense autograd pass at a given weight."""
    out = []
    for i, ids in enumerate(steps):
        w = emb_weight[i].clone().requires_grad_(True)
        _loss(w[ids], i).backward()
        out.append({int(r): w.grad[r].clone() for r in ids.unique()})
    return out


def test_sparse_adam_is_lazy_adam_with_duplicate_ids():
    emb = _embedding(True)
    start = emb.weight.detach().clone()
    opt = RowAdam(emb.parameters(), lr=0.05)
    snapshots = _run(emb, opt)
    # The gradient of each step depends on the weights before it: replay them.
    weights_before = [start, *snapshots[:-1]]
    grads = _row_grads(weights_before, STEPS)
    w, m, v = lazy_adam_reference(start, grads, lr=0.05)
    torch.testing.assert_close(emb.weight.detach(), w, rtol=0, atol=1e-13)
    torch.testing.assert_close(opt.state[emb.weight]["exp_avg"], m, rtol=0, atol=1e-15)
    torch.testing.assert_close(opt.state[emb.weight]["exp_avg_sq"], v, rtol=0, atol=1e-15)
    assert torch.equal(
        opt.state[emb.weight]["exp_avg"][NEVER], torch.zeros(2, DIM, dtype=torch.double)
    )
    # Dense Adam moves row 1 at step 2 (untouched, decayed momentum); lazy Adam does not.
    assert torch.equal(snapshots[2][1], snapshots[1][1])


def test_sparse_adam_equals_dense_adam_when_every_row_is_touched():
    every = [torch.cat([torch.arange(ROWS), torch.tensor([4, 4])]) for _ in range(3)]
    sparse, dense = _embedding(True), _embedding(False)
    runs = zip(
        _run(sparse, RowAdam(sparse.parameters(), lr=0.05), every),
        _run(dense, torch.optim.Adam(dense.parameters(), lr=0.05), every),
        strict=True,
    )
    for ws, wd in runs:
        torch.testing.assert_close(ws, wd, rtol=0, atol=1e-14)


def test_rowwise_adagrad_keeps_one_accumulator_per_row():
    emb = _embedding(True)
    start = emb.weight.detach().clone()
    opt = RowwiseAdagrad(emb.parameters(), lr=0.2)
    snapshots = _run(emb, opt)
    state = opt.state[emb.weight]["sum"]
    assert state.shape == (ROWS,)
    # Closed form, row by row: s += mean(g^2); w -= lr * g / (sqrt(s) + eps).
    w, s = start.clone(), torch.zeros(ROWS, dtype=torch.double)
    for i, grads in enumerate(_row_grads([start, *snapshots[:-1]], STEPS)):
        for row, g in grads.items():
            s[row] += (g * g).mean()
            w[row] -= 0.2 * g / (s[row].sqrt() + 1e-10)
        torch.testing.assert_close(snapshots[i], w, rtol=0, atol=1e-14)
    torch.testing.assert_close(state, s, rtol=0, atol=1e-15)
    assert torch.equal(state[NEVER], torch.zeros(2, dtype=torch.double))


def test_a_whole_table_term_makes_the_row_step_exactly_dense():
    """An L3 penalty over every row gives a dense gradient: the row optimizer then runs the
    dense update (untouched rows move too), equal to torch.optim.Adagrad."""
    sparse, dense = _embedding(True), _embedding(False)
    opt_s, opt_d = (
        RowAdagrad(sparse.parameters(), lr=0.1),
        torch.optim.Adagrad(dense.parameters(), lr=0.1),
    )
    for emb, opt in ((sparse, opt_s), (dense, opt_d)):
        for i, ids in enumerate(STEPS):
            opt.zero_grad(set_to_none=True)
            (_loss(emb(ids), i) + 1e-2 * emb.weight.abs().pow(3).sum()).backward()
            opt.step()
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=0, atol=1e-14)
    assert not torch.equal(sparse.weight[NEVER], _embedding(False).weight[NEVER])


def test_auto_picks_rows_only_where_the_step_is_unchanged():
    assert use_sparse_rows("auto", "adagrad") and use_sparse_rows("auto", "rowwise_adagrad")
    assert not use_sparse_rows("auto", "adam")  # lazy Adam differs from Adam: opt in with true
    assert use_sparse_rows(True, "adam")
    # a gradient that reaches every row anyway (1-vs-all, a whole-table penalty): dense
    assert not use_sparse_rows("auto", "adagrad", dense_gradient=True)
    assert not use_sparse_rows(False, "rowwise_adagrad")
    model = nn.Module()
    model.entity = nn.Embedding(3, 2)
    assert isinstance(build_optimizer(model, "adam", lr=0.1, sparse=False), torch.optim.Adam)
    assert (
        isinstance(build_optimizer(model, "adam", lr=0.1, sparse=True), RowAdam)
        and model.entity.sparse
    )


def test_train_sparse_config_values():
    assert load_config(None, ["train.sparse=true"]).train.sparse is True
    assert load_config(None, ["train.sparse=auto"]).train.sparse == "auto"
    with pytest.raises(ConfigError, match="train.sparse"):
        load_config(None, ["train.sparse=sometimes"])
    with pytest.raises(ConfigError, match="rowwise_adagrad"):
        check_components(load_config(None, ["train.optimizer=rowwise"]))


def _config(*overrides: str):
    base = [
        "model.name=distmult", "model.dim=16", "sampler.num_negatives=16", "train.batch_size=128",
        "train.max_steps=20", "train.valid_every=10", "train.checkpoint_every=10", "train.log_every=5",
        "train.progress=false", "train.device=cpu",
    ]  # fmt: skip
    return load_config(None, [*base, *overrides])


@pytest.fixture(scope="module")
def kg():
    return load_dataset("synthetic")


def test_trainer_sparse_adagrad_matches_dense_adagrad(kg, tmp_path):
    sparse = Trainer(_config("train.sparse=true"), tmp_path / "s", kg=kg)
    dense = Trainer(_config("train.sparse=false"), tmp_path / "d", kg=kg)
    assert isinstance(sparse.optimizer, RowAdagrad) and isinstance(
        dense.optimizer, torch.optim.Adagrad
    )
    for step in range(8):
        sparse.train_step(step)
        dense.train_step(step)
        # rows: the lookups' gradients go to the optimizer, no dense table gradient exists
        assert sparse.model.entity.weight.grad is None
        assert dense.model.entity.weight.grad.shape == dense.model.entity.weight.shape
    torch.testing.assert_close(
        sparse.model.entity.weight, dense.model.entity.weight, rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        sparse.model.relation.weight, dense.model.relation.weight, rtol=0, atol=1e-5
    )


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "adagrad"])
def test_sparse_run_with_reference_schedule_resumes_exactly(kg, tmp_path, optimizer):
    """Adagrad rows (sparse=true), then the reference switch's dense Adam at step 10; killed at 15."""
    config = _config(
        "train.schedule=reference", "train.sparse=true", f"train.optimizer={optimizer}"
    )
    full = Trainer(config, tmp_path / "full", kg=kg)
    uninterrupted = full.fit()
    assert type(full.optimizer) is torch.optim.Adam and full.optimizer.param_groups[0][
        "lr"
    ] == pytest.approx(0.01)
    assert Trainer(config, tmp_path / "killed", kg=kg).fit(stop_after=15) == {}
    resumed = Trainer(config, tmp_path / "killed", kg=kg).fit(resume=True)
    assert resumed["valid"] == uninterrupted["valid"] and resumed["test"] == uninterrupted["test"]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for state_a, state_b in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        for key, value in state_a.items():
            assert torch.equal(value, state_b[key]), key


@pytest.mark.parametrize(
    ("ours", "theirs"), [(RowAdagrad, torch.optim.Adagrad), (RowAdam, torch.optim.Adam)]
)
def test_dense_parameters_of_any_shape_get_the_pytorch_update(ours, theirs):
    """Relation tables, vectors and scalars (e.g. a learned modulus) have dense gradients."""
    torch.manual_seed(1)
    start = [
        torch.randn(4, 3, dtype=torch.double),
        torch.randn(5, dtype=torch.double),
        torch.tensor(0.7, dtype=torch.double),
    ]
    a = [p.clone().requires_grad_(True) for p in start]
    b = [p.clone().requires_grad_(True) for p in start]
    opt_a, opt_b = ours(a, lr=0.1), theirs(b, lr=0.1)
    for step in range(3):
        for params, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            sum(((p * (step + 1)).sin() * p).sum() for p in params).backward()
            opt.step()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-14)
    rowwise = [p.clone().requires_grad_(True) for p in start]
    opt = RowwiseAdagrad(rowwise, lr=0.1)
    sum((p.sin() * p).sum() for p in rowwise).backward()
    opt.step()
    assert [opt.state[p]["sum"].shape for p in rowwise] == [(4,), (5,), ()]
