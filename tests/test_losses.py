from __future__ import annotations

import math

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.training.losses import (
    LOSSES,
    EMULoss,
    MarginRankingLoss,
    OneVsAllLoss,
    SelfAdversarialLoss,
    SoftmaxLoss,
    n3_regularizer,
)

POS = [[1.5], [-0.5]]
NEG = [[0.3, 2.0, -1.0], [0.0, -2.5, 1.0]]
MUT = [[1.0, 0.5, -0.2], [0.7, -1.0, 0.25]]


def tensors(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def t(x: list[list[float]]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64, device=device).requires_grad_()

    pos = torch.tensor([row[0] for row in POS], dtype=torch.float64, device=device)
    return pos.requires_grad_(), t(NEG), t(MUT)


def log_softmax(row: list[float]) -> list[float]:
    z = math.log(sum(math.exp(x) for x in row))
    return [x - z for x in row]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_registry() -> None:
    assert LOSSES.names() == ["1vsall", "margin", "self_adversarial", "softmax"]
    assert isinstance(LOSSES.build("self_adversarial", alpha=0.5), SelfAdversarialLoss)
    with pytest.raises(ConfigError, match="valid: 1vsall, margin"):
        LOSSES.get("hinge")


def test_softmax_by_hand(device: torch.device) -> None:
    pos, neg, _ = tensors(device)
    expected = sum(-log_softmax([p[0], *n])[0] for p, n in zip(POS, NEG, strict=True)) / 2
    assert SoftmaxLoss()(pos, neg).item() == pytest.approx(expected)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_self_adversarial_by_hand(alpha: float, device: torch.device) -> None:
    pos, neg, _ = tensors(device)
    total = 0.0
    for p, n in zip(POS, NEG, strict=True):
        z = sum(math.exp(alpha * x) for x in n)
        weights = [math.exp(alpha * x) / z for x in n]
        total += -math.log(sigmoid(p[0])) - sum(
            w * math.log(sigmoid(-x)) for w, x in zip(weights, n, strict=True)
        )
    loss = SelfAdversarialLoss(alpha)(pos, neg)
    assert loss.item() == pytest.approx(total / 2)
    # the adversarial weights carry no gradient: d/ds_j = w_j * sigmoid(s_j) / B
    (grad,) = torch.autograd.grad(loss, neg)
    for b, n in enumerate(NEG):
        z = sum(math.exp(alpha * x) for x in n)
        for j, x in enumerate(n):
            assert grad[b, j].item() == pytest.approx(math.exp(alpha * x) / z * sigmoid(x) / 2)


def test_margin_by_hand(device: torch.device) -> None:
    pos, neg, _ = tensors(device)
    expected = (
        sum(sum(max(0.0, 2.0 - p[0] + x) for x in n) / 3 for p, n in zip(POS, NEG, strict=True)) / 2
    )
    assert MarginRankingLoss(2.0)(pos, neg).item() == pytest.approx(expected)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_one_vs_all_by_hand(smoothing: float, device: torch.device) -> None:
    scores = torch.tensor([[0.1, 2.0, -1.0, 0.5], [1.0, 1.0, 3.0, -2.0]], device=device)
    targets = torch.tensor([1, 3], device=device)
    expected = 0.0
    for row, target in zip(scores.tolist(), targets.tolist(), strict=True):
        logp = log_softmax(row)
        expected += -(1 - smoothing) * logp[target] - smoothing * sum(logp) / len(row)
    loss = OneVsAllLoss(label_smoothing=smoothing)(scores, targets)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)


@pytest.mark.parametrize(("neg_label", "ce_coef"), [(0.53, 0.11), (0.0, 0.0), (1.0, 2.0)])
def test_emu_loss_by_hand(neg_label: float, ce_coef: float, device: torch.device) -> None:
    pos, neg, mut = tensors(device)
    n = 3
    total = 0.0
    for p, neg_row, mut_row in zip(POS, NEG, MUT, strict=True):
        logp = log_softmax([p[0], *mut_row])
        y = [1.0] + [neg_label] * n
        emu = -sum(y_j * lp for y_j, lp in zip(y, logp, strict=True)) / n
        ce = -log_softmax([p[0], *neg_row])[0]
        total += emu + ce_coef * ce
    loss = EMULoss(neg_label=neg_label, ce_coef=ce_coef)(pos, neg, mut)
    assert loss.item() == pytest.approx(total / 2)
    grads = torch.autograd.grad(loss, (pos, neg, mut), materialize_grads=True)
    assert all(torch.isfinite(g).all() for g in grads)
    if ce_coef == 0:
        assert grads[1].abs().max() == 0
    else:
        assert grads[1].abs().max() > 0


def test_emu_loss_base_is_configurable(device: torch.device) -> None:
    pos, neg, mut = tensors(device)
    margin = EMULoss("margin", neg_label=0.5, ce_coef=1.0)
    no_base = EMULoss(neg_label=0.5, ce_coef=0.0)
    expected = no_base(pos, neg, mut) + MarginRankingLoss()(pos, neg)
    torch.testing.assert_close(margin(pos, neg, mut), expected)


LOSS_CALLS = {
    "softmax": lambda p, n, m: SoftmaxLoss()(p, n),
    "self_adversarial": lambda p, n, m: SelfAdversarialLoss(1.0)(p, n),
    "margin": lambda p, n, m: MarginRankingLoss()(p, n),
    "emu": lambda p, n, m: EMULoss()(p, n, m),
    "emu_self_adversarial": lambda p, n, m: EMULoss("self_adversarial")(p, n, m),
}


@pytest.mark.parametrize("name", list(LOSS_CALLS))
@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
def test_losses_finite_with_finite_gradients(name: str, scale: float, device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    pos = (scale * torch.randn(8, generator=g)).to(device).requires_grad_()
    neg = (scale * torch.randn(8, 5, generator=g)).to(device).requires_grad_()
    mut = (scale * torch.randn(8, 5, generator=g)).to(device).requires_grad_()
    loss = LOSS_CALLS[name](pos, neg, mut)
    assert loss.dim() == 0 and torch.isfinite(loss)
    used = (pos, neg, mut) if name.startswith("emu") else (pos, neg)
    for grad in torch.autograd.grad(loss, used):
        assert torch.isfinite(grad).all()


def test_one_vs_all_extreme_scores(device: torch.device) -> None:
    scores = torch.tensor([[1e4, -1e4, 0.0]], device=device, requires_grad=True)
    loss = OneVsAllLoss(label_smoothing=0.1)(scores, torch.tensor([1], device=device))
    (grad,) = torch.autograd.grad(loss, scores)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_n3_real_and_complex(device: torch.device) -> None:
    h = torch.tensor([[1.0, -2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]], device=device)
    r = torch.tensor([[1.0, 1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 1.0]], device=device)
    real = (1 + 8 + 27 + 64 + 0.125 + 0 + 1 + 8) + (1 + 1 + 0 + 0 + 8 + 0 + 0 + 1)
    assert n3_regularizer(h, r, weight=0.1).item() == pytest.approx(0.1 * real / 2)
    # complex: [re | im], |z|^3 per coordinate
    moduli = [
        abs(complex(1, 3)),
        abs(complex(-2, 4)),
        abs(complex(0.5, -1)),
        abs(complex(0, 2)),
        abs(complex(1, 0)),
        abs(complex(1, 0)),
        abs(complex(2, 0)),
        abs(complex(0, 1)),
    ]
    expected = 0.1 * sum(m**3 for m in moduli) / 2
    got = n3_regularizer(h, r, weight=0.1, complex_parts=True)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    x = torch.zeros(2, 4, device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(n3_regularizer(x, weight=1.0, complex_parts=True), x)
    assert torch.isfinite(grad).all()
