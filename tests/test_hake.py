"""HAKE: closed-form scores, the fast one-vs-all path, EMU scores (two-group separable
path) against the mutated embeddings scored directly, config plumbing, a short run."""

from __future__ import annotations

import math

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.models import HAKE, KGEModel
from emu_dgl.models.mutation import EMUMutation
from emu_dgl.training.build import model_from_config
from emu_dgl.training.trainer import Trainer

E, R, DIM, GAMMA = 13, 3, 4, 6.0


def reference_scores(
    h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, model: KGEModel
) -> torch.Tensor:
    """The score written out step by step on explicit [B, ...] rows, with the bias clipped
    by masked assignment (the authors' formulation), independent of the decoder's code."""
    dec = model.decoder
    assert isinstance(dec, HAKE)
    d, a = dec.dim, dec.embedding_range
    radians = math.pi / a
    phase_h, mod_h = h[..., :d] * radians, h[..., d:]
    phase_t, mod_t = t[..., :d] * radians, t[..., d:]
    phase_r, mod_r, bias = r[..., :d] * radians, r[..., d : 2 * d].abs(), r[..., 2 * d :]
    bias = torch.minimum(bias, torch.ones_like(bias)).clone()
    low = bias < -mod_r
    bias[low] = -mod_r[low]
    phase = torch.sin((phase_h + phase_r - phase_t) / 2).abs().sum(-1)
    residual = mod_h * (mod_r + bias) - mod_t * (1 - bias)
    modulus = residual.square().sum(-1).sqrt()
    return dec.gamma - (dec.phase_weight * phase + dec.modulus_weight * modulus)


def make_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> KGEModel:
    """A HAKE model whose relation moduli and biases are spread so that every branch of
    the bias clip (below -|m_r|, inside, above 1) and negative stored moduli occur."""
    torch.manual_seed(seed)
    model = KGEModel(
        E, R, decoder="hake", dim=DIM, gamma=GAMMA, modulus_weight=0.7, phase_weight=0.3
    )
    model = model.to(dtype)
    with torch.no_grad():
        model.relation.weight[:, DIM:].uniform_(-2.0, 2.0)
    bias = model.relation.weight[:, 2 * DIM :]
    mod = model.relation.weight[:, DIM : 2 * DIM].abs()
    assert (bias < -mod).any() and (bias > 1).any() and ((bias > -mod) & (bias < 1)).any()
    assert (model.relation.weight[:, DIM : 2 * DIM] < 0).any()
    return model


def test_widths_and_init() -> None:
    model = KGEModel(50, 4, decoder="hake", dim=5, gamma=8.0, modulus_weight=3.5, phase_weight=1.0)
    a = (8.0 + 2.0) / 5
    assert model.entity.weight.shape == (50, 10) and model.relation.weight.shape == (4, 15)
    rel = model.relation.weight.detach()
    assert rel[:, :5].abs().max() <= a and model.entity.weight.abs().max() <= a
    assert torch.equal(rel[:, 5:10], torch.ones(4, 5)) and torch.equal(
        rel[:, 10:], torch.zeros(4, 5)
    )
    assert model.decoder.modulus_weight.item() == pytest.approx(3.5)
    assert model.decoder.phase_weight.item() == pytest.approx(1.0 * a)
    # the two loss weights are learnt, as in the authors' code
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"decoder.modulus_weight", "decoder.phase_weight"} <= names


def test_hand_computed_score() -> None:
    model = KGEModel(2, 1, decoder="hake", dim=2, gamma=4.0, modulus_weight=2.0, phase_weight=0.5)
    model = model.double()
    a = (4.0 + 2.0) / 2
    to_w, f64 = a / math.pi, torch.float64  # to_w: stored value of one radian
    ph_h, ph_r, ph_t = [0.3, -1.0], [1.2, 2.0], [-0.4, 0.1]
    m_h, m_t = [1.5, -0.5], [2.0, 1.0]
    m_r, b = [-2.0, 0.5], [-3.0, 1.5]  # stored modulus -2 -> 2; biases clip to -2 and 1
    with torch.no_grad():
        model.entity.weight[0] = torch.tensor([x * to_w for x in ph_h] + m_h, dtype=f64)
        model.entity.weight[1] = torch.tensor([x * to_w for x in ph_t] + m_t, dtype=f64)
        model.relation.weight[0] = torch.tensor([x * to_w for x in ph_r] + m_r + b, dtype=f64)
    # phase: |sin((0.3 + 1.2 + 0.4) / 2)| + |sin((-1 + 2 - 0.1) / 2)|
    phase = abs(math.sin(1.9 / 2)) + abs(math.sin(0.9 / 2))
    # modulus, coordinate 1: m_r = 2, b = -2: 1.5 * 0 - 2 * 3 = -6
    #          coordinate 2: m_r = 0.5, b = 1: -0.5 * 1.5 - 1 * 0 = -0.75
    modulus = math.hypot(-6.0, -0.75)
    expected = 4.0 - (0.5 * a * phase + 2.0 * modulus)
    got = model.score_hrt(torch.tensor([[0, 0, 1]])).item()
    assert got == pytest.approx(expected, rel=1e-12)


def random_triples(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.randint(E, (batch,), generator=g),
            torch.randint(R, (batch,), generator=g),
            torch.randint(E, (batch,), generator=g),
        ],
        dim=1,
    )


def test_score_hrt_matches_reference() -> None:
    model = make_model()
    hrt = random_triples(40, seed=1)
    h, r, t = model.entity(hrt[:, 0]), model.relation(hrt[:, 1]), model.entity(hrt[:, 2])
    torch.testing.assert_close(model.score_hrt(hrt), reference_scores(h, r, t, model))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("grad", [False, True])
def test_one_side_against_all_matches_reference(dtype: torch.dtype, grad: bool) -> None:
    """score_t / score_h (matrix-product modulus, in-place phase without autograd) against
    the reference on every (query, entity) pair, in values and, with autograd, gradients."""
    model = make_model(dtype)
    hrt = random_triples(9, seed=2)
    ent = model.entity.weight
    with torch.set_grad_enabled(grad):
        tails = model.score_t(hrt[:, :2], slice_size=5)
        heads = model.score_h(hrt[:, 1:], slice_size=5)
        r = model.relation(hrt[:, 1])[:, None]
        ref_tails = reference_scores(model.entity(hrt[:, 0])[:, None], r, ent[None], model)
        ref_heads = reference_scores(ent[None], r, model.entity(hrt[:, 2])[:, None], model)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(tails, ref_tails, **tol)
    torch.testing.assert_close(heads, ref_heads, **tol)
    rows = torch.arange(9)
    torch.testing.assert_close(tails[rows, hrt[:, 2]], model.score_hrt(hrt).detach(), **tol)
    torch.testing.assert_close(heads[rows, hrt[:, 0]], model.score_hrt(hrt).detach(), **tol)
    if grad:  # 1-vs-all training backpropagates through this path
        w = torch.randn(9, E, generator=torch.Generator().manual_seed(3), dtype=dtype)
        params = list(model.parameters())
        got = torch.autograd.grad(((tails + heads) * w).sum(), params)
        ref = torch.autograd.grad(((ref_tails + ref_heads) * w).sum(), params)
        for x, y in zip(got, ref, strict=True):
            torch.testing.assert_close(x, y, **tol)


@pytest.mark.parametrize("side", ["head", "tail"])
@pytest.mark.parametrize("emu", [False, True])
def test_score_negatives_with_and_without_emu(side: str, emu: bool) -> None:
    """Negatives, positives and EMU-mutated negatives equal the reference applied to
    ``where(mask, neg, pos)`` for the same seeded mask, in value and gradient."""
    model = make_model()
    B, n = 5, 7
    pos = random_triples(B, seed=4)
    neg_ids = random_triples(B * n, seed=5)[:, 0].view(B, n)
    mutation = EMUMutation(0.39) if emu else None
    out = model.score_negatives(
        pos,
        neg_ids,
        side,
        mutation=mutation,
        generator=torch.Generator().manual_seed(6),  # type: ignore[arg-type]
    )

    h, r, t = (
        model.entity(pos[:, 0])[:, None],
        model.relation(pos[:, 1])[:, None],
        model.entity(pos[:, 2])[:, None],
    )
    neg = model.entity(neg_ids)

    def score(e: torch.Tensor) -> torch.Tensor:
        return (
            reference_scores(h, r, e, model) if side == "tail" else reference_scores(e, r, t, model)
        )

    ref = [score(neg), reference_scores(h, r, t, model)[:, 0]]
    got = [out.neg, out.pos]
    if emu:
        assert mutation is not None
        mask = mutation.draw_mask(
            neg.shape, device=neg.device, generator=torch.Generator().manual_seed(6)
        )
        true = t if side == "tail" else h
        ref.append(score(torch.where(mask, neg, true)))
        assert out.mutated is not None
        got.append(out.mutated)
        assert not torch.allclose(out.mutated, out.neg)
    else:
        assert out.mutated is None
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in ref]
    params = list(model.parameters())
    grads = torch.autograd.grad(
        sum((w * x).sum() for w, x in zip(weights, got, strict=True)), params
    )
    ref_grads = torch.autograd.grad(
        sum((w * x).sum() for w, x in zip(weights, ref, strict=True)), params
    )
    for x, y in zip(got, ref, strict=True):
        torch.testing.assert_close(x, y)
    for x, y in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(x, y)


def test_config_builds_hake_with_its_weights() -> None:
    config = load_config(
        None,
        [
            "model.name=hake",
            "model.dim=8",
            "model.gamma=6",
            "model.modulus_weight=3.5",
            "model.phase_weight=1.0",
        ],
    )
    model = model_from_config(config, 20, 3)
    assert isinstance(model.decoder, HAKE)
    assert model.decoder.modulus_weight.item() == pytest.approx(3.5)
    assert model.decoder.phase_weight.item() == pytest.approx(1.0 * (6 + 2) / 8)
    with pytest.raises(ConfigError, match="model.modulus_weight: must be >= 0"):
        load_config(None, ["model.name=hake", "model.modulus_weight=-1"])
    with pytest.raises(ConfigError, match="model.phase_weight is nan but must be >= 0"):
        KGEModel(20, 3, decoder="hake", dim=4, phase_weight=float("nan"))
    # other decoders ignore the HAKE keys
    assert model_from_config(
        load_config(None, ["model.name=transe", "model.phase_weight=2"]), 20, 3
    )


def test_shipped_hake_configs() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    weights = {"wn18rr": (0.5, 0.5), "fb15k-237": (3.5, 1.0)}
    for dataset, (mw, pw) in weights.items():
        paper = load_config(root / "paper" / dataset / "hake.yaml")
        published = load_config(root / "hake-published" / f"{dataset}.yaml")
        for c in (paper, published):
            assert c.model.name == "hake" and c.dataset.name == dataset
            assert (c.model.modulus_weight, c.model.phase_weight) == (mw, pw)
        assert paper.emu.enabled and paper.model.dim == 100 and paper.model.gamma == 24.0
        for arm in ("uniform-base", "sans-base"):
            base = load_config(root / "paper" / dataset / "hake.yaml", arm=arm)
            assert base.loss.regularizer == "l3_table" and base.loss.reg_weight == 1e-3
        assert not published.emu.enabled and published.loss.name == "self_adversarial"
        assert published.train.optimizer == "adam" and published.train.lr == 5e-5


@pytest.mark.slow
def test_hake_learns_with_emu(tmp_path) -> None:
    kg = load_dataset("synthetic")
    config = load_config(
        None,
        [
            "model.name=hake",
            "model.dim=32",
            "model.gamma=6",
            "sampler.num_negatives=32",
            "emu.enabled=true",
            "train.batch_size=256",
            "train.max_steps=300",
            "train.lr=0.05",
            "train.valid_every=100",
            "train.checkpoint_every=0",
            "train.log_every=50",
            "train.progress=false",
            "train.device=cpu",
        ],
    )
    untrained = Trainer(config, tmp_path / "untrained", kg=kg)
    before = untrained.evaluator.evaluate(untrained.model, kg.test)["mrr"]
    metrics = Trainer(config, tmp_path / "run", kg=kg).fit()
    # a random ranker's MRR is about (ln E) / E, ~0.02 on this graph
    assert metrics["test"]["mrr"] > 0.5, metrics["test"]  # measured: 0.82 after 300 steps
    assert metrics["test"]["mrr"] > 20 * before
