from __future__ import annotations

import math

import pytest
import torch

from emu_dgl.errors import ConfigError
from emu_dgl.models import DECODERS, KGEModel, SeparableDecoder
from emu_dgl.models.base import mixed_term_sums
from tests.components import cases

#: Every registered decoder, with its defaults and each named value of its options
#: (TransE and TransD with p_norm 1 and 2): a decoder added to the registry is tested here.
CASES = cases(DECODERS)
SEPARABLE = cases(DECODERS, where=lambda cls: cls.separable)
E, R, DIM = 17, 5, 6


def make_model(
    name: str,
    device: torch.device,
    options: dict | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> KGEModel:
    torch.manual_seed(0)
    kwargs = {"gamma": 3.0, **(options or {})}
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
    builtin = {"complex", "distmult", "hake", "protate", "rotate", "transd", "transe"}
    assert builtin <= set(DECODERS.names())
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


@pytest.mark.parametrize(("name", "options"), CASES)
@pytest.mark.parametrize("slice_size", [None, 4, 1])
def test_one_vs_all_matches_score_hrt(
    name: str, options: dict, slice_size: int | None, device: torch.device
) -> None:
    model = make_model(name, device, options)
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


@pytest.mark.parametrize(("name", "options"), CASES)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_score_negatives_match_score_hrt(
    name: str, options: dict, side: str, device: torch.device
) -> None:
    model = make_model(name, device, options)
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


@pytest.mark.parametrize(("name", "options"), SEPARABLE)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_terms_are_coordinate_aligned(
    name: str, options: dict, side: str, device: torch.device
) -> None:
    """terms[..., k] depends on the corrupted entity only through its coordinate k."""
    model = make_model(name, device, options)
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


@pytest.mark.parametrize(("name", "options"), CASES)
@pytest.mark.parametrize("side", ["head", "per-row"])
def test_the_tail_form_scores_a_head_corruption_as_a_tail_corruption(
    name: str, options: dict, side: str, device: torch.device
) -> None:
    """forward(h, r, t) == forward(t, tail_relation(r, "head"), h), values and gradients,
    with relation rows pushed far from their init (HAKE's bias clipping on both sides);
    with a side per row (Bernoulli), each row in its own form."""
    model = make_model(name, device, options)
    with torch.no_grad():
        g = torch.Generator().manual_seed(8)
        model.relation.weight.add_(
            3
            * torch.randn(model.relation.weight.shape, generator=g, dtype=torch.float64).to(device)
        )
    pos = random_triples(9, device)
    h, t = model.entity(pos[:, 0]), model.entity(pos[:, 2])
    r = model.relation(pos[:, 1])
    direct = model.decoder(h, r, t)
    if side == "head":
        reversed_ = model.decoder(t, model.decoder.tail_relation(r, "head"), h)
    else:  # rows 0, 2, 4, ... corrupt the head (scored from the tail), the others the tail
        head = torch.arange(9, device=device) % 2 == 0
        rel = model.decoder.tail_relation(r, head)
        anchor = torch.where(head.unsqueeze(1), t, h)
        other = torch.where(head.unsqueeze(1), h, t)
        reversed_ = model.decoder(anchor, rel, other)
    torch.testing.assert_close(reversed_, direct)
    weights = torch.randn(direct.shape, generator=g, dtype=direct.dtype).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(
        (weights * reversed_).sum(), params, allow_unused=True, retain_graph=True
    )
    ref = torch.autograd.grad((weights * direct).sum(), params, allow_unused=True)
    for a, b in zip(got, ref, strict=True):
        if b is None:
            assert a is None or a.abs().max() == 0
        else:
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("name", "options"), CASES)
def test_score_groups_mixes_terms_like_embeddings(
    name: str, options: dict, device: torch.device
) -> None:
    """One pass over two candidate groups: group 0 unmutated, the last group mutated
    towards its column 0. The separable fast path (mixed terms) and the generic one
    (mixed embeddings) equal the direct formula, values and gradients."""
    model = make_model(name, device, options)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(model.num_entities, (4, 2, 5), generator=g).to(device)
    anchor = model.entity(torch.randint(model.num_entities, (4,), generator=g).to(device))
    rel = model.relation(torch.randint(model.num_relations, (4,), generator=g).to(device))
    groups = model.entity(ids)
    mask = (torch.rand(4, 5, groups.shape[-1], generator=g) < 0.4).to(device)
    mask[:, 0] = False
    scores, mutated = model.score_groups(anchor, rel, groups, mask=mask)
    mixed = torch.where(mask, groups[:, 1], groups[:, 1, :1])
    ref_scores = model.decoder(anchor[:, None], rel[:, None], groups[:, 0])
    ref_mutated = model.decoder(anchor[:, None], rel[:, None], mixed)
    torch.testing.assert_close(scores, ref_scores)
    torch.testing.assert_close(mutated, ref_mutated)
    torch.testing.assert_close(mutated[:, 0], model.decoder(anchor, rel, groups[:, 1, 0]))
    weights = torch.randn(4, 5, generator=g, dtype=torch.float64).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(
        (weights * mutated).sum() + scores.sum(), params, allow_unused=True, retain_graph=True
    )
    ref = torch.autograd.grad(
        (weights * ref_mutated).sum() + ref_scores.sum(), params, allow_unused=True
    )
    for a, b in zip(got, ref, strict=True):
        if b is not None:
            torch.testing.assert_close(a, b)


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


@pytest.mark.parametrize("groups", [1, 2])
def test_mixed_term_sums_bool_and_float_masks_agree(groups: int) -> None:
    """The GPU form (bool mask, one where) and the CPU form (0/1 float mask, batched
    products that reuse the mask's memory for the gradient) give the direct formula's
    values and gradients; the CPU form refuses a second backward instead of a wrong one."""
    g = torch.Generator().manual_seed(3)
    terms = torch.randn(4, 6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 6, 10, generator=g) < 0.4
    mask[:, 0] = False
    weights = torch.randn(4, 6, *([groups] if groups > 1 else []), generator=g, dtype=torch.float64)
    mixed = torch.where(mask, terms, terms[:, :1])
    ref = mixed.unflatten(-1, (groups, -1)).sum(-1) if groups > 1 else mixed.sum(-1)
    (ref_grad,) = torch.autograd.grad((weights * ref).sum(), terms)
    for form in (mask, mask.double()):
        got = mixed_term_sums(terms, form, groups=groups)
        torch.testing.assert_close(got, ref)
        (grad,) = torch.autograd.grad((weights * got).sum(), terms, retain_graph=True)
        torch.testing.assert_close(grad, ref_grad)
    got = mixed_term_sums(terms, mask.double(), groups=1)
    got.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="consumed"):
        got.sum().backward()
