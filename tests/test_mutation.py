from __future__ import annotations

import math

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.models import DECODERS, KGEModel
from emu_dgl.models.mutation import (
    MUTATIONS,
    EMUMutation,
    MixupMutation,
    build_mutation,
)
from tests.components import cases

#: Every registered decoder, with each named value of its options (TransE's p_norm 1, 2).
DECODER_CASES = cases(DECODERS)


def gen(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def test_registry() -> None:
    assert MUTATIONS.names() == ["emu", "label_smoothing", "mixup"]
    assert isinstance(build_mutation("emu", p=0.2), EMUMutation)
    assert build_mutation("emu", p=0.2).p == 0.2  # type: ignore[union-attr]
    assert isinstance(build_mutation("mixup"), MixupMutation)
    assert build_mutation("label_smoothing") is None
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_mutation("cutmix")
    with pytest.raises(ConfigError):
        EMUMutation(1.5)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("p", [0.39, 0.05, 0.5, 0.93])
def test_mask_mean_is_p(p: float, bits: int, device: torch.device) -> None:
    shape = (64, 128, 50)  # 409,600 Bernoulli draws
    mutation = EMUMutation(p, bits=bits)
    mask = mutation.draw_mask(shape, device=device, generator=gen(device))
    assert mask.dtype == torch.bool and mask.shape == shape
    assert abs(mutation.p_effective - p) <= 2 ** -(bits + 1)
    assert mutation.words_needed(shape) == 64 * math.ceil(128 * 50 * bits / 64)
    sd = math.sqrt(p * (1 - p) / mask.numel())
    assert abs(mask.float().mean().item() - mutation.p_effective) < 5 * sd
    # each lane of a 64-bit draw is unbiased (no dead sign bit)
    lanes = mask.reshape(-1, 64 // bits).float().mean(0)
    assert (lanes - p).abs().max().item() < 5 * sd * 2
    # coordinates, negatives and batch rows all vary
    assert 0 < mask[0, 0].float().mean() < 1 and 0 < mask[:, 0, 0].float().mean() < 1


def test_mask_extremes_and_float(device: torch.device) -> None:
    shape = (3, 4, 5)
    assert not EMUMutation(0.0).draw_mask(shape, device=device).any()
    assert EMUMutation(1.0).draw_mask(shape, device=device).all()
    mutation = EMUMutation(0.39)
    as_bool = mutation.draw_mask(shape, device=device, generator=gen(device, 7))
    as_float = mutation.draw_mask(
        shape, device=device, generator=gen(device, 7), dtype=torch.float32
    )
    assert as_float.dtype == torch.float32
    assert torch.equal(as_float, as_bool.float())


def test_same_seed_same_mask(device: torch.device) -> None:
    mutation = EMUMutation(0.39)
    shape = (8, 16, 10)
    a = mutation.draw_mask(shape, device=device, generator=gen(device, 5))
    b = mutation.draw_mask(shape, device=device, generator=gen(device, 5))
    c = mutation.draw_mask(shape, device=device, generator=gen(device, 6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_emu_mutation_values_and_gradients(device: torch.device) -> None:
    B, n, D = 4, 9, 12
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(B, 1, D, generator=g).to(device).requires_grad_()
    neg = (torch.randn(B, n, D, generator=g) + 10).to(device).requires_grad_()  # disjoint values
    pos_before = pos.detach().clone()
    mutation = EMUMutation(0.39)
    mask = mutation.draw_mask(neg.shape, device=device, generator=gen(device, 3))
    mutated = mutation(pos, neg, generator=gen(device, 3))
    assert mutated.shape == (B, n, D)
    assert torch.equal(pos.detach(), pos_before)  # the positive is never mutated
    from_neg = mutated == neg
    from_pos = mutated == pos.expand_as(neg)
    assert torch.all(from_neg ^ from_pos)  # every coordinate is exactly one of the two
    assert torch.equal(from_neg, mask)  # the same seeded generator gives the same mask
    # m * neg + (1 - m) * pos
    m = mask.float()
    torch.testing.assert_close(mutated, m * neg + (1 - m) * pos, rtol=0, atol=0)
    weights = torch.randn(B, n, D, generator=g).to(device)
    (mutated * weights).sum().backward()
    assert pos.grad is not None and neg.grad is not None
    torch.testing.assert_close(neg.grad, weights * m)
    torch.testing.assert_close(pos.grad, (weights * (1 - m)).sum(1, keepdim=True))
    assert neg.grad.abs().sum() > 0 and pos.grad.abs().sum() > 0
    # an explicit mask overrides the draw
    assert torch.equal(mutation(pos, neg, mask=~mask) == neg, ~mask)


def test_mixup_weights_and_values(device: torch.device) -> None:
    mixup = MixupMutation()
    lam = mixup.draw_weights((200_000,), device=device, generator=gen(device))
    assert lam.min() >= 0 and lam.max() <= 1
    sd = math.sqrt(1 / 18 / lam.numel())  # Var Beta(2, 1) = 1/18
    assert abs(lam.mean().item() - 2 / 3) < 5 * sd
    # CDF of Beta(2, 1) is x^2
    assert abs((lam < 0.5).float().mean().item() - 0.25) < 0.005
    B, n, D = 3, 5, 4
    pos = torch.randn(B, 1, D, device=device, requires_grad=True)
    neg = torch.randn(B, n, D, device=device, requires_grad=True)
    mixed = mixup(pos, neg, generator=gen(device, 2))
    w = mixup.draw_weights((B, n, 1), device=device, generator=gen(device, 2))
    torch.testing.assert_close(mixed, w * neg + (1 - w) * pos)
    mixed.sum().backward()
    torch.testing.assert_close(neg.grad, w.expand(B, n, D))
    torch.testing.assert_close(pos.grad, (1 - w).sum(1, keepdim=True).expand(B, 1, D))


def make_model(name: str, device: torch.device, options: dict | None = None) -> KGEModel:
    torch.manual_seed(0)
    kwargs = {"gamma": 3.0, **(options or {})}
    return KGEModel(23, 4, decoder=name, dim=7, **kwargs).to(device=device, dtype=torch.float64)


def direct_mutated_scores(
    model: KGEModel, pos: torch.Tensor, neg_ids: torch.Tensor, side: str, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The formula written out: gather, mutate the corrupted entity, score again."""
    h = model.entity(pos[:, 0]).unsqueeze(1)
    r = model.relation(pos[:, 1]).unsqueeze(1)
    t = model.entity(pos[:, 2]).unsqueeze(1)
    neg = model.entity(neg_ids)
    m = mask.to(neg.dtype)
    if side == "tail":
        mutated = m * neg + (1 - m) * t
        return model.decoder(h, r, neg), model.decoder(h, r, mutated)
    mutated = m * neg + (1 - m) * h
    return model.decoder(neg, r, t), model.decoder(mutated, r, t)


@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_score_negatives_mutated_equals_direct(
    name: str, options: dict, side: str, device: torch.device
) -> None:
    """Fast path (separable decoders) and embedding mutation (others) both equal the
    direct formula, in value and in gradient, for the same seeded mask."""
    model = make_model(name, device, options)
    g = torch.Generator().manual_seed(4)
    B, n = 6, 11
    pos = torch.stack(
        [
            torch.randint(23, (B,), generator=g),
            torch.randint(4, (B,), generator=g),
            torch.randint(23, (B,), generator=g),
        ],
        dim=1,
    ).to(device)
    neg_ids = torch.randint(23, (B, n), generator=g).to(device)
    mutation = EMUMutation(0.39)
    width = model.entity.weight.shape[1]
    mask = mutation.draw_mask((B, n, width), device=device, generator=gen(device, 9))
    w_neg, w_mut, w_pos = (
        torch.randn(*s, generator=g, dtype=torch.float64).to(device) for s in ((B, n), (B, n), (B,))
    )

    scores = model.score_negatives(pos, neg_ids, side, mutation=mutation, generator=gen(device, 9))  # type: ignore[arg-type]
    assert scores.mutated is not None and scores.mutated.shape == (B, n)
    loss = (w_neg * scores.neg).sum() + (w_mut * scores.mutated).sum() + (w_pos * scores.pos).sum()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)

    ref_neg, ref_mut = direct_mutated_scores(model, pos, neg_ids, side, mask)
    ref_pos = model.score_hrt(pos)
    torch.testing.assert_close(scores.neg, ref_neg)
    torch.testing.assert_close(scores.mutated, ref_mut)
    torch.testing.assert_close(scores.pos, ref_pos)
    ref_loss = (w_neg * ref_neg).sum() + (w_mut * ref_mut).sum() + (w_pos * ref_pos).sum()
    ref_grads = torch.autograd.grad(ref_loss, params)
    for got, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, ref)
    # the mutated scores differ from the unmutated ones, and are not all the positive's
    assert not torch.allclose(scores.mutated, scores.neg)
    assert not torch.allclose(scores.mutated, scores.pos.unsqueeze(1).expand(B, n))


@pytest.mark.parametrize("name", ["transe", "complex", "rotate", "transd", "hake"])
def test_gradients_reach_negative_and_positive_entities(name: str, device: torch.device) -> None:
    """Through the mutated scores alone, both the negatives' rows and the true entity's
    row get gradient (2d-wide entities included); the anchor too (it is scored)."""
    model = make_model(name, device)
    pos = torch.tensor([[0, 1, 2]], device=device)
    neg_ids = torch.tensor([[5, 6, 7]], device=device)
    scores = model.score_negatives(
        pos, neg_ids, "tail", mutation=EMUMutation(0.5), generator=gen(device, 1)
    )
    assert scores.mutated is not None
    (grad,) = torch.autograd.grad(scores.mutated.sum(), model.entity.weight)
    touched = grad.abs().sum(1) > 0
    assert touched[[0, 2, 5, 6, 7]].all()
    assert not touched[[1, 3, 4, 8]].any()


@pytest.mark.parametrize("name", ["transe", "complex", "rotate"])
def test_mixup_through_model(name: str, device: torch.device) -> None:
    model = make_model(name, device)
    pos = torch.tensor([[0, 1, 2], [3, 0, 4]], device=device)
    neg_ids = torch.tensor([[5, 6], [7, 8]], device=device)
    mixup = MixupMutation()
    scores = model.score_negatives(pos, neg_ids, "head", mutation=mixup, generator=gen(device, 1))
    lam = mixup.draw_weights(
        (2, 2, 1), device=device, dtype=torch.float64, generator=gen(device, 1)
    )
    h, neg = model.entity(pos[:, 0]).unsqueeze(1), model.entity(neg_ids)
    mixed = lam * neg + (1 - lam) * h
    r, t = model.relation(pos[:, 1]).unsqueeze(1), model.entity(pos[:, 2]).unsqueeze(1)
    torch.testing.assert_close(scores.mutated, model.decoder(mixed, r, t))


def test_label_smoothing_only_has_no_mutated_scores(device: torch.device) -> None:
    model = make_model("distmult", device)
    scores = model.score_negatives(
        torch.tensor([[0, 1, 2]], device=device),
        torch.tensor([[3, 4]], device=device),
        "tail",
        mutation=build_mutation("label_smoothing"),
    )
    assert scores.mutated is None
