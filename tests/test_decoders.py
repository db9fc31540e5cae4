from __future__ import annotations

import math

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.models import DECODERS, KGEModel, SeparableDecoder
from emu_dgl.models.base import masked_term_sums

NAMES = [
    "transe",
    "transe_l2",
    "distmult",
    "complex",
    "rotate",
    "protate",
    "transd",
    "transd_l2",
    "hake",
]
SEPARABLE = ["transe", "transe_l2", "distmult", "complex", "protate", "hake"]
E, R, DIM = 17, 5, 6


def make_model(name: str, device: torch.device, *, dtype: torch.dtype = torch.float64) -> KGEModel:
    kwargs: dict[str, object] = {"gamma": 3.0}
    if name.endswith("_l2"):
        name, kwargs["p_norm"] = name[:-3], 2
    torch.manual_seed(0)
    return KGEModel(E, R, decoder=name, dim=DIM, **kwargs).to(device=device, dtype=dtype)


def random_triples(batch: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hrt = torch.stack(
        [
            torch.randint(E, (batch,), generator=g),
            torch.randint(R, (batch,), generator=g),
            torch.randint(E, (batch,), generator=g),
        ],
        dim=1,
    )
    return hrt.to(device)


def test_registry_names() -> None:
    assert DECODERS.names() == [
        "complex",
        "distmult",
        "hake",
        "protate",
        "rotate",
        "transd",
        "transe",
    ]
    with pytest.raises(ConfigError, match="valid: complex, distmult"):
        KGEModel(3, 2, decoder="transx")


@pytest.mark.parametrize(
    ("name", "entity", "relation"),
    [
        ("transe", 6, 6),
        ("distmult", 6, 6),
        ("complex", 12, 12),
        ("rotate", 12, 6),
        ("protate", 6, 6),
        ("transd", 12, 12),
        ("hake", 12, 18),
    ],
)
def test_table_widths(name: str, entity: int, relation: int) -> None:
    model = KGEModel(E, R, decoder=name, dim=DIM)
    assert model.entity.weight.shape == (E, entity)
    assert model.relation.weight.shape == (R, relation)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("slice_size", [None, 4, 1])
def test_one_vs_all_matches_score_hrt(
    name: str, slice_size: int | None, device: torch.device
) -> None:
    model = make_model(name, device)
    hrt = random_triples(9, device)
    with torch.no_grad():
        expected = model.score_hrt(hrt)
        tails = model.score_t(hrt[:, :2], slice_size=slice_size)
        heads = model.score_h(hrt[:, 1:], slice_size=slice_size)
    rows = torch.arange(9, device=device)
    assert tails.shape == heads.shape == (9, E)
    torch.testing.assert_close(tails[rows, hrt[:, 2]], expected)
    torch.testing.assert_close(heads[rows, hrt[:, 0]], expected)
    # and every entity column is the score of that triple
    all_t = torch.stack(
        [
            hrt[:, 0].repeat_interleave(E),
            hrt[:, 1].repeat_interleave(E),
            torch.arange(E, device=device).repeat(9),
        ],
        dim=1,
    )
    with torch.no_grad():
        torch.testing.assert_close(tails.reshape(-1), model.score_hrt(all_t))


def test_default_slice_respects_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import emu_dgl.models.base as base

    model = make_model("transe", torch.device("cpu"), dtype=torch.float32)
    monkeypatch.setattr(base, "SLICE_BUDGET_BYTES", 9 * model.decoder.pair_bytes(4) * 5)
    assert model.default_slice_size(9) == 5  # 5 entities x 9 queries x bytes per pair
    calls: list[int] = []
    original = model.decoder.score_tails

    def spy(h: torch.Tensor, r: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        calls.append(cand.shape[0])
        return original(h, r, cand)

    monkeypatch.setattr(model.decoder, "score_tails", spy)
    model.score_t(random_triples(9, torch.device("cpu"))[:, :2])
    assert calls == [5, 5, 5, 2]


def _set(model: KGEModel, entities: list[list[float]], relations: list[list[float]]) -> None:
    with torch.no_grad():
        model.entity.weight[: len(entities)] = torch.tensor(
            entities, dtype=model.entity.weight.dtype
        )
        model.relation.weight[: len(relations)] = torch.tensor(
            relations, dtype=model.relation.weight.dtype
        )


def _score(model: KGEModel, device: torch.device) -> float:
    return model.score_hrt(torch.tensor([[0, 0, 1]], device=device)).item()


@pytest.mark.parametrize("p_norm", [1, 2])
def test_transe_hand(p_norm: int, device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="transe", dim=2, gamma=5.0, p_norm=p_norm).double().to(device)
    _set(model, [[1.0, 2.0], [0.5, -1.0]], [[0.25, -3.0]])
    diff = [1.0 + 0.25 - 0.5, 2.0 - 3.0 + 1.0]  # h + r - t = [0.75, 0]
    norm = sum(abs(x) for x in diff) if p_norm == 1 else math.sqrt(sum(x * x for x in diff))
    assert _score(model, device) == pytest.approx(5.0 - norm)


def test_distmult_hand(device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="distmult", dim=3).double().to(device)
    _set(model, [[1.0, 2.0, -1.0], [3.0, 0.5, 2.0]], [[2.0, -1.0, 0.5]])
    assert _score(model, device) == pytest.approx(1 * 2 * 3 + 2 * -1 * 0.5 + -1 * 0.5 * 2)


def test_complex_hand(device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="complex", dim=2).double().to(device)
    h, r, t = [1 + 2j, -1 + 0.5j], [0.5 - 1j, 2 + 1j], [3 - 1j, 1 + 1j]

    def store(z: list[complex]) -> list[float]:
        return [x.real for x in z] + [x.imag for x in z]

    _set(model, [store(h), store(t)], [store(r)])
    expected = sum(hk * rk * tk.conjugate() for hk, rk, tk in zip(h, r, t, strict=True)).real
    assert _score(model, device) == pytest.approx(expected)


def test_rotate_hand(device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="rotate", dim=2, gamma=4.0).double().to(device)
    a = (4.0 + 2.0) / 2  # embedding range: phase = w * pi / a
    h, t = [1 + 2j, -1 + 0.5j], [3 - 1j, 1 + 1j]
    phases = [math.pi / 2, math.pi]
    _set(model, [[1.0, -1.0, 2.0, 0.5], [3.0, 1.0, -1.0, 1.0]], [[p * a / math.pi for p in phases]])
    rot = [complex(math.cos(p), math.sin(p)) for p in phases]
    expected = 4.0 - sum(abs(hk * rk - tk) for hk, rk, tk in zip(h, rot, t, strict=True))
    assert _score(model, device) == pytest.approx(expected)


def test_protate_hand(device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="protate", dim=2, gamma=4.0).double().to(device)
    a = (4.0 + 2.0) / 2
    assert model.decoder.modulus.item() == pytest.approx(0.5 * a)
    ph, pr, pt = [0.3, -1.0], [1.2, 2.0], [-0.4, 0.1]
    to_w = [[x * a / math.pi for x in v] for v in (ph, pt)]
    _set(model, to_w, [[x * a / math.pi for x in pr]])
    chord = sum(abs(math.sin((x + y - z) / 2)) for x, y, z in zip(ph, pr, pt, strict=True))
    assert _score(model, device) == pytest.approx(4.0 - 0.5 * a * chord)
    # same as half the L1 distance of the unit-modulus rotations
    rot = sum(
        abs(complex(math.cos(x + y), math.sin(x + y)) - complex(math.cos(z), math.sin(z)))
        for x, y, z in zip(ph, pr, pt, strict=True)
    )
    assert chord == pytest.approx(rot / 2)


@pytest.mark.parametrize("p_norm", [1, 2])
def test_transd_hand(p_norm: int, device: torch.device) -> None:
    model = KGEModel(2, 1, decoder="transd", dim=2, gamma=6.0, p_norm=p_norm).double().to(device)
    h, hp, t, tp = [1.0, 2.0], [0.5, -1.0], [0.0, 1.0], [2.0, 1.0]
    r, rp = [0.5, 0.5], [1.0, -2.0]
    _set(model, [h + hp, t + tp], [r + rp])
    dot_h, dot_t = 0.5 * 1 - 1 * 2, 2 * 0 + 1 * 1
    h_perp = [x + dot_h * y for x, y in zip(h, rp, strict=True)]
    t_perp = [x + dot_t * y for x, y in zip(t, rp, strict=True)]
    diff = [a + b - c for a, b, c in zip(h_perp, r, t_perp, strict=True)]
    norm = sum(abs(x) for x in diff) if p_norm == 1 else math.sqrt(sum(x * x for x in diff))
    assert _score(model, device) == pytest.approx(6.0 - norm)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_score_negatives_match_score_hrt(name: str, side: str, device: torch.device) -> None:
    model = make_model(name, device)
    pos = random_triples(5, device)
    neg_ids = random_triples(5 * 7, device, seed=2)[:, 0].view(5, 7)
    scores = model.score_negatives(pos, neg_ids, side)  # type: ignore[arg-type]
    corrupted = pos.unsqueeze(1).repeat(1, 7, 1)
    corrupted[..., 0 if side == "head" else 2] = neg_ids
    torch.testing.assert_close(scores.neg, model.score_hrt(corrupted.view(-1, 3)).view(5, 7))
    torch.testing.assert_close(scores.pos, model.score_hrt(pos))
    assert scores.mutated is None
    h, r, t = scores.embeddings
    torch.testing.assert_close(h, model.entity.weight[pos[:, 0]])
    torch.testing.assert_close(r, model.relation.weight[pos[:, 1]])
    torch.testing.assert_close(t, model.entity.weight[pos[:, 2]])


@pytest.mark.parametrize("name", SEPARABLE)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_terms_are_coordinate_aligned(name: str, side: str, device: torch.device) -> None:
    """terms[..., k] depends on the corrupted entity only through its coordinate k."""
    model = make_model(name, device)
    decoder = model.decoder
    assert isinstance(decoder, SeparableDecoder)
    h, t = model.entity.weight[3].detach(), model.entity.weight[4].detach()
    r = model.relation.weight[1].detach()

    def terms(e: torch.Tensor) -> torch.Tensor:
        args = (h, r, e) if side == "tail" else (e, r, t)
        return decoder.terms(*args, side=side)  # type: ignore[arg-type]

    corrupted = t if side == "tail" else h
    jac = torch.autograd.functional.jacobian(terms, corrupted)
    assert jac.shape == (corrupted.numel(), corrupted.numel())
    off_diagonal = jac - torch.diag(torch.diagonal(jac))
    assert off_diagonal.abs().max() == 0
    assert torch.diagonal(jac).abs().min() > 0  # each term does depend on its coordinate
    torch.testing.assert_close(decoder.reduce(terms(corrupted)), decoder(h, r, t))


def test_masked_term_sums_matches_where(device: torch.device) -> None:
    g = torch.Generator().manual_seed(3)
    terms_neg = torch.randn(4, 6, 5, generator=g, dtype=torch.float64).to(device).requires_grad_()
    terms_pos = torch.randn(4, 1, 5, generator=g, dtype=torch.float64).to(device).requires_grad_()
    mask = (torch.rand(4, 6, 5, generator=g) < 0.4).to(device)
    weights = [
        torch.randn(4, 6, generator=g, dtype=torch.float64).to(device),
        torch.randn(4, generator=g, dtype=torch.float64).to(device),
        torch.randn(4, 6, generator=g, dtype=torch.float64).to(device),
    ]
    expected = (
        terms_neg.sum(-1),
        terms_pos.sum(-1).squeeze(1),
        torch.where(mask, terms_neg, terms_pos).sum(-1),
    )
    got = masked_term_sums(terms_neg, terms_pos, mask)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    grads_ref = torch.autograd.grad(
        sum((w * x).sum() for w, x in zip(weights, expected, strict=True)), (terms_neg, terms_pos)
    )
    grads = torch.autograd.grad(
        sum((w * x).sum() for w, x in zip(weights, got, strict=True)), (terms_neg, terms_pos)
    )
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)
    float_mask = mask.double()
    assert torch.autograd.gradcheck(
        lambda a, b: masked_term_sums(a, b, float_mask), (terms_neg, terms_pos)
    )
    assert torch.equal(float_mask, mask.double())  # not consumed unless asked
    # a consumed mask refuses a second traversal instead of giving wrong gradients
    sums = masked_term_sums(terms_neg, terms_pos, mask)
    sums[2].sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="consumed"):
        sums[2].sum().backward()


def test_grouped_masked_term_sums_match_where() -> None:
    """groups = 2: each half of the coordinates summed on its own (HAKE's phase and
    modulus blocks), values and gradients, the caller's mask untouched."""
    g = torch.Generator().manual_seed(5)
    terms_neg = torch.randn(3, 4, 6, generator=g, dtype=torch.float64).requires_grad_()
    terms_pos = torch.randn(3, 1, 6, generator=g, dtype=torch.float64).requires_grad_()
    mask = (torch.rand(3, 4, 6, generator=g) < 0.4).double()
    kept = mask.clone()

    def by_half(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (2, 3)).sum(-1)

    expected = (
        by_half(terms_neg),
        by_half(terms_pos).squeeze(1),
        by_half(torch.where(mask.bool(), terms_neg, terms_pos)),
    )
    got = masked_term_sums(terms_neg, terms_pos, mask, groups=2)
    assert [x.shape for x in got] == [(3, 4, 2), (3, 2), (3, 4, 2)]
    weights = [torch.randn(x.shape, generator=g, dtype=torch.float64) for x in expected]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    grads, ref = (
        torch.autograd.grad(
            sum((w * x).sum() for w, x in zip(weights, sums, strict=True)), (terms_neg, terms_pos)
        )
        for sums in (got, expected)
    )
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(mask, kept)


def test_decoder_instance_and_kwargs_conflict() -> None:
    decoder = DECODERS.build("transe", dim=4)
    model = KGEModel(3, 2, decoder=decoder)
    assert model.entity.weight.shape == (3, 4)
    with pytest.raises(ConfigError):
        KGEModel(3, 2, decoder=decoder, gamma=1.0)
    with pytest.raises(ConfigError, match="p_norm"):
        KGEModel(3, 2, decoder="transe", p_norm=3)


def test_default_init_range() -> None:
    model = KGEModel(200, 10, decoder="rotate", dim=10, gamma=8.0)
    a = (8.0 + 2.0) / 10
    for w in (model.entity.weight, model.relation.weight):
        assert w.abs().max() <= a
        assert w.abs().max() > 0.9 * a
