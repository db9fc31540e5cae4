"""The reference schedule's optimizers, row by row, against plain dense PyTorch.

The published EMU code trains with ``torch.optim.Adagrad`` and at half the steps
replaces it by a fresh ``torch.optim.Adam`` at lr/10 over the whole tables. Dense Adam
keeps moving a row whose gradient is zero (its decayed momentum), so "lazy" row-wise
Adam is a different method. Whatever the arm (dense gradient from the L3 penalty, or
row gradients without it) and whatever ``train.sparse`` says, every row must follow
dense Adagrad, then dense Adam.

The check goes through the public :class:`Trainer` and its run folder only: the training
step's ``after_backward`` seam records the weights and the gradient of every step; a
reference of ``nn.Embedding`` tables and PyTorch's own optimizers is fed the same
gradients, and its tables must equal the trainer's after every step, to 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.training.checkpoint import load_checkpoint
from emu_dgl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper" / "wn18rr" / "distmult.yaml"
STEPS, LR = 20, 0.1  # the reference schedule switches at STEPS // 2
TINY = [
    "dataset.name=synthetic",
    "model.dim=8",
    "sampler.num_negatives=4",
    "train.batch_size=32",
    f"train.max_steps={STEPS}",
    f"train.lr={LR}",
    "train.valid_every=0",
    "train.checkpoint_every=0",
    "train.log_every=5",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def kg():
    return load_dataset("synthetic")


def _train_recording(
    config, run_dir: Path, kg
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]], dict[str, Tensor]]:
    """Train through ``Trainer.fit``; per step, the weights the step started from and the
    dense gradient it computed (zeros for untouched rows), plus the final weights."""
    trainer = Trainer(config, run_dir, kg=kg)
    tables = {"entity": trainer.model.entity.weight, "relation": trainer.model.relation.weight}
    assert {id(p) for p in trainer.model.parameters()} == {id(p) for p in tables.values()}
    weights: list[dict[str, Tensor]] = []
    grads: list[dict[str, Tensor]] = []

    def record() -> None:
        # Between backward and the update: the weights the step started from, and the
        # gradient the optimizer is about to apply (dense .grad, or rows it holds).
        optimizer = trainer.step.optimizer
        weights.append({k: w.detach().clone() for k, w in tables.items()})
        step: dict[str, Tensor] = {}
        for name, weight in tables.items():
            pending = getattr(optimizer, "pending_gradient", None)
            grad = pending(weight) if pending is not None else weight.grad
            step[name] = torch.zeros_like(weight) if grad is None else grad.detach().clone()
        grads.append(step)

    trainer.step.after_backward = record
    trainer.fit()
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    return weights, grads, {"entity": final["entity.weight"], "relation": final["relation.weight"]}


def _dense_reference(
    start: dict[str, Tensor], grads: list[dict[str, Tensor]], switch: int | None
) -> list[dict[str, Tensor]]:
    """Plain PyTorch: nn.Embedding tables, Adagrad(lr), then from ``switch`` a fresh Adam(lr/10)."""
    tables = {k: nn.Embedding.from_pretrained(w.clone(), freeze=False) for k, w in start.items()}
    params = [t.weight for t in tables.values()]
    optimizer: torch.optim.Optimizer = torch.optim.Adagrad(params, lr=LR)
    after = []
    for step, grad in enumerate(grads):
        if step == switch:
            optimizer = torch.optim.Adam(params, lr=LR / 10)
        for name, table in tables.items():
            table.weight.grad = grad.get(name, torch.zeros_like(table.weight))
        optimizer.step()
        after.append({k: t.weight.detach().clone() for k, t in tables.items()})
    return after


def _max_gap(trained: list[dict[str, Tensor]], reference: list[dict[str, Tensor]]) -> float:
    return max(
        (a[k] - b[k]).abs().max().item() for a, b in zip(trained, reference, strict=True) for k in a
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arm", "extra"),
    [("uniform-base", []), ("uniform-emu", []), ("uniform-emu", ["train.sparse=true"])],
    ids=["uniform-base", "uniform-emu", "uniform-emu-sparse-true"],
)
def test_reference_schedule_is_dense_adagrad_then_dense_adam(
    kg, tmp_path: Path, arm: str, extra: list[str]
) -> None:
    config = load_config(PAPER, [*TINY, *extra], arm=arm)
    assert config.train.schedule == "reference" and config.train.optimizer == "adagrad"
    weights, grads, final = _train_recording(config, tmp_path / "run", kg)
    assert len(grads) == STEPS
    reference = _dense_reference(weights[0], grads, switch=STEPS // 2)
    # after step s the trainer holds weights[s + 1]; after the last step, the final checkpoint
    trained = [*weights[1:], final]
    assert _max_gap(trained, reference) < 1e-6

    # The check has teeth: during the Adam phase some entity rows have a zero gradient
    # after a non-zero one, so lazy Adam would have left them still while dense Adam moves them.
    adam = [g["entity"].abs().sum(1) for g in grads[STEPS // 2 :]]
    touched_then_idle = [
        (adam[s] == 0) & torch.stack(adam[:s]).gt(0).any(0) for s in range(1, len(adam))
    ]
    if arm == "uniform-emu":  # (the base arms' L3 penalty gives every row a gradient)
        assert sum(int(m.sum()) for m in touched_then_idle) > 0
    for s, idle in enumerate(touched_then_idle, start=STEPS // 2 + 1):
        if idle.any():
            moved = (trained[s]["entity"][idle] - trained[s - 1]["entity"][idle]).abs().amax()
            assert moved > 0  # an idle row still moves by its momentum, as in dense Adam


@pytest.mark.slow
def test_the_check_tells_lazy_adam_from_dense_adam(kg, tmp_path: Path) -> None:
    """Negative control: row-wise lazy Adam (train.sparse=true, no schedule) is not dense Adam,
    and the same recording and reference see the difference."""
    config = load_config(
        PAPER,
        [*TINY, "train.schedule=none", "train.optimizer=adam", "train.sparse=true"],
        arm="uniform-emu",
    )
    weights, grads, final = _train_recording(config, tmp_path / "lazy", kg)
    tables = {
        k: nn.Embedding.from_pretrained(w.clone(), freeze=False) for k, w in weights[0].items()
    }
    params = [t.weight for t in tables.values()]
    optimizer = torch.optim.Adam(params, lr=LR)
    reference = []
    for grad in grads:
        for name, table in tables.items():
            table.weight.grad = grad[name]
        optimizer.step()
        reference.append({k: t.weight.detach().clone() for k, t in tables.items()})
    assert _max_gap([*weights[1:], final], reference) > 1e-3


@pytest.mark.slow
def test_two_processes_run_the_reference_schedule_as_one(tmp_path: Path) -> None:
    """On two processes each rank's block takes the switch's dense Adam (a dense update of
    each block is the dense update of the table): the paper arm ends where one process
    ends (float32 sums in another order; tests/test_distributed.py checks 1e-9 in float64)."""
    from click.testing import CliRunner

    from emu_dgl.cli import main
    from emu_dgl.training.shards import run_weights

    states = {}
    for nproc in (1, 2):
        args = ["train", "--config", str(PAPER), "--arm", "uniform-emu", "--nproc", str(nproc)]
        run = tmp_path / f"run{nproc}"
        result = CliRunner().invoke(main, [*args, "--out", str(run), *(f"--set={o}" for o in TINY)])
        assert result.exit_code == 0, result.output
        states[nproc] = run_weights(run, "last")[0]
    assert states[1]["optim_phase"] == states[2]["optim_phase"] == 1  # past the switch
    for key in ("entity.weight", "relation.weight"):
        torch.testing.assert_close(
            states[2]["model"][key], states[1]["model"][key], rtol=0, atol=1e-5
        )
