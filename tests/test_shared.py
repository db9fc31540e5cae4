"""Negatives shared by chunks of positives (``sampler.shared_chunk``): the chunked scores of
every decoder against the broadcast reference, EMU and Mixup in that form, the known-answer
mask, the whole step's loss and gradients against a per-positive reference, and runs."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import KnowledgeGraph, load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.models import DECODERS, KGEModel
from emu_dgl.models.shared import score_shared
from emu_dgl.sampling import FilteredSampler, UniformSampler
from emu_dgl.training.build import lookups_per_step, loss_from_config, mutation_from_config
from emu_dgl.training.shared_step import SharedStep
from emu_dgl.training.step import compile_step, forbid_host_sync
from emu_dgl.training.trainer import Trainer
from tests.components import cases

#: Every registered decoder with each named value of its options (TransE with both norms:
#: p = 2 has the matrix-product form).
DECODER_CASES = cases(DECODERS)

TINY = [
    "dataset.name=synthetic", "model.dim=16", "sampler.num_negatives=16", "train.batch_size=64",
    "train.progress=false", "train.valid_every=0", "train.checkpoint_every=0",
    "train.max_steps=50", "sampler.shared_chunk=16",
]  # fmt: skip


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return load_dataset("synthetic")


@pytest.fixture(autouse=True)
def fresh_compiler():
    yield
    torch._dynamo.reset()


def _case(name: str, options: dict, *, K=2, C=5, N=7, d=6, seed=0):
    torch.manual_seed(seed)
    decoder = DECODERS.build(name, dim=d, **options).double()
    De, Dr = decoder.entity_width(d), decoder.relation_width(d)
    a, t = torch.randn(K, C, De, dtype=torch.double), torch.randn(K, C, De, dtype=torch.double)
    r = torch.randn(K, C, Dr, dtype=torch.double)
    n = torch.randn(K, N, De, dtype=torch.double)
    return decoder, a, r, t, n


def _reference(decoder, a, r, t, x):
    """Broadcast reference: every positive b scores its own copy of candidates ``x[K, C, N,
    De]`` (the per-positive layout)."""
    return decoder(a.unsqueeze(2), r.unsqueeze(2), x)


# ---------------------------------------------------------------------------- scores


@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
def test_chunk_scores_equal_the_broadcast_reference(name: str, options: dict) -> None:
    """Plain, EMU-mutated (per chunk, slot and coordinate; each positive mixes in its own
    true entity) and Mixup-mutated scores, values and gradients, to 1e-5 (float64)."""
    decoder, a, r, t, n = _case(name, options)
    K, C, N, De = *a.shape[:2], n.shape[1], n.shape[2]
    mask = torch.rand(K, N, De) < 0.39
    weights = torch.rand(K, N, dtype=torch.double)
    leaves = [x.requires_grad_(True) for x in (a, r, t, n)]
    every = n.unsqueeze(1).expand(K, C, N, De)
    mixed = torch.where(mask.unsqueeze(1), every, t.unsqueeze(2))
    w = weights[:, None, :, None]
    cases = {
        "plain": (score_shared(decoder, a, r, t, n).neg, _reference(decoder, a, r, t, every)),
        "emu": (
            score_shared(decoder, a, r, t, n, mask=mask).mutated,
            _reference(decoder, a, r, t, mixed),
        ),
        "emu 0/1 mask": (
            score_shared(decoder, a, r, t, n, mask=mask.double()).mutated,
            _reference(decoder, a, r, t, mixed),
        ),
        "mixup": (
            score_shared(decoder, a, r, t, n, weights=weights).mutated,
            _reference(decoder, a, r, t, w * every + (1 - w) * t.unsqueeze(2)),
        ),
        "positive": (score_shared(decoder, a, r, t, n).pos, decoder(a, r, t)),
    }
    for label, (got, want) in cases.items():
        assert got.shape == want.shape, label
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=label)
        probe = torch.randn_like(want)
        got_grads = torch.autograd.grad(
            (got * probe).sum(), leaves, allow_unused=True, retain_graph=True
        )
        want_grads = torch.autograd.grad(
            (want * probe).sum(), leaves, allow_unused=True, retain_graph=True
        )
        for g, h in zip(got_grads, want_grads, strict=True):
            if h is None:
                assert g is None or g.abs().max() == 0, label
            else:
                torch.testing.assert_close(g, h, rtol=0, atol=1e-5, msg=f"{label}: gradient")


def test_polynomial_decoders_score_chunks_as_matrix_products() -> None:
    """DistMult, ComplEx and TransE-L2 have the matrix-product form (no [C, N, De] tensor
    anywhere); TransE-L1, RotatE, pRotatE, HAKE and TransD broadcast."""

    def has_form(name: str, **options) -> bool:
        decoder = DECODERS.build(name, dim=4, **options)
        h, r = torch.ones(decoder.entity_width(4)), torch.ones(decoder.relation_width(4))
        return decoder.polynomial(h, r) is not None

    with_form = [("distmult", {}), ("complex", {}), ("transe", {"p_norm": 2})]
    without = [("transe", {}), ("rotate", {}), ("protate", {}), ("hake", {}), ("transd", {})]
    assert all(has_form(name, **options) for name, options in with_form)
    assert not any(has_form(name, **options) for name, options in without)
    # The polynomial path's largest intermediate is [K, C, N] (scores) or [K, N, De]
    decoder, a, r, t, n = _case("distmult", {}, K=1, C=300, N=200, d=50)
    mask = torch.rand(1, 200, 50) < 0.4
    sizes: list[int] = []

    class Sizes(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for x in out if isinstance(out, tuple | list) else [out]:
                if isinstance(x, torch.Tensor):
                    sizes.append(x.numel())
            return out

    with Sizes():
        score_shared(decoder, a, r, t, n, mask=mask)
    assert max(sizes) <= 300 * 200  # never 300 x 200 x 50


# ---------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("side", ["tail", "head", "bernoulli"])
def test_known_answers_among_shared_negatives_equal_the_brute_force_check(side: str) -> None:
    torch.manual_seed(1)
    E, R = 30, 4
    train = torch.stack(
        [torch.randint(0, E, (300,)), torch.randint(0, R, (300,)), torch.randint(0, E, (300,))], 1
    )
    filt = FilteredSampler(
        UniformSampler(num_entities=E, num_negatives=8), train, E, num_relations=R
    )
    pos = train[torch.randperm(300)[:12]]
    negatives = torch.randint(0, E, (3, 2, 8)).sort(-1).values
    spec = torch.rand(12) < 0.5 if side == "bernoulli" else side
    got = filt.known.member_shared(pos, spec, negatives)
    brute = torch.zeros(12, 2, 8, dtype=torch.bool)
    triples = {tuple(x) for x in train.tolist()}
    for b in range(12):
        h, r, t = pos[b].tolist()
        head = bool(spec[b]) if isinstance(spec, torch.Tensor) else spec == "head"
        for g in range(2):
            for k, e in enumerate(negatives[b // 4, g].tolist()):
                brute[b, g, k] = ((e, r, t) if head else (h, r, e)) in triples
    assert torch.equal(got, brute)
    assert brute.any()  # the case is not vacuous


# ---------------------------------------------------------------------------- the step


def _shared_trainer(kg, tmp_path, *extra: str) -> Trainer:
    return Trainer(load_config(None, [*TINY, *extra]), tmp_path, kg=kg)


def _reference_loss(step: SharedStep, batch, side, tables, negatives, known, mask, weights):
    """The loss of the step's draw, written per positive from the tables: every positive
    takes its chunk's negatives (and mask) as its own, known ones dropped from its
    softmax."""
    model, config_loss = step.model, step.loss
    entity, relation = tables
    C = step.chunk
    kept, true = (batch[:, 0], batch[:, 2]) if side == "tail" else (batch[:, 2], batch[:, 0])
    a, t = entity[kept], entity[true]
    r = model.tail_form(relation[batch[:, 1]], side)
    cands = entity[negatives.repeat_interleave(C, dim=0)]  # [B, G, n, De]
    pos = model.decoder(a, r, t)
    plain = model.decoder(a[:, None], r[:, None], cands[:, 0])
    last = cands[:, -1]
    if mask is not None:
        m = mask.repeat_interleave(C, dim=0).bool()
        last = torch.where(m, last, t[:, None])
    elif weights is not None:
        w = weights.repeat_interleave(C, dim=0)[..., None]
        last = w * last + (1 - w) * t[:, None]
    mutated = model.decoder(a[:, None], r[:, None], last)
    n = plain.shape[1]

    def log_p(neg, g):
        scores = torch.cat([pos[:, None], neg], 1)
        drop = known[:, g] if known is not None else torch.zeros_like(scores, dtype=torch.bool)
        return torch.log_softmax(scores.masked_fill(drop, -torch.inf), 1).masked_fill(drop, 0)

    lam, c = config_loss.neg_label, config_loss.ce_coef
    y = torch.tensor([1.0] + [lam] * n, dtype=pos.dtype) / n
    emu = -(log_p(mutated, -1) * y).sum(1).mean()
    ce = -log_p(plain, 0)[:, 0].mean()
    return emu + c * ce


@pytest.mark.parametrize(
    ("decoder", "extra"),
    [
        ("distmult", ()),
        ("complex", ("emu.separate_draws=true",)),
        ("transe", ("model.p_norm=2", "emu.variant=mixup")),
        ("transe", ()),
        ("rotate", ()),
        ("hake", ("emu.variant=label_smoothing",)),
    ],
)
@pytest.mark.parametrize("side", ["tail", "head"])
def test_the_shared_step_equals_the_per_positive_reference(
    kg, tmp_path, decoder: str, extra: tuple[str, ...], side: str
) -> None:
    """One step's loss and the gradient of every table row equal the loss written per
    positive from the same draw (negatives, known mask, EMU mask or Mixup weights)."""
    config = load_config(
        None,
        [*TINY, f"model.name={decoder}", "train.batch_size=32", "sampler.shared_chunk=8", *extra],
    )
    trainer = Trainer(config, tmp_path, kg=kg)
    step = trainer.step
    assert isinstance(step, SharedStep)
    model = trainer.model.double()
    step._targets(step.loss, torch.device("cpu"), torch.float64)
    batch = trainer._batch(0)
    words = step._fresh_words()
    kept, true, negatives, known, side_out = step.draw(batch, words, side)
    width = model.entity.weight.shape[1]
    mask, weights = step._mutation(words, width, torch.float64)
    entity = model.entity.weight.detach().clone().requires_grad_(True)
    relation = model.relation.weight.detach().clone().requires_grad_(True)
    want = _reference_loss(step, batch, side, (entity, relation), negatives, known, mask, weights)
    want.backward()
    # the step's own objective, on gathered leaves
    a = entity.detach()[kept].requires_grad_(True)
    t = entity.detach()[true].requires_grad_(True)
    n = entity.detach()[negatives].requires_grad_(True)
    r = relation.detach()[batch[:, 1]].requires_grad_(True)
    got = step.objective(batch, a, t, n, r, known, words, side_out)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    got.backward()
    grad = torch.zeros_like(entity)
    for ids, leaf in [(kept, a), (true, t), (negatives.reshape(-1), n)]:
        grad.index_add_(0, ids, leaf.grad.reshape(-1, width))
    rel_grad = torch.zeros_like(relation).index_add_(0, batch[:, 1], r.grad)
    torch.testing.assert_close(grad, entity.grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(rel_grad, relation.grad, rtol=0, atol=1e-9)
    if known is not None:
        assert not known[:, :, 0].any()  # the positive is never masked


def test_known_answers_are_masked_not_scored(kg, tmp_path) -> None:
    """A chunk whose every negative is a known answer leaves only the positive: its
    softmax puts all mass on it, and the known negatives get no gradient."""
    trainer = _shared_trainer(kg, tmp_path, "model.name=distmult", "emu.enabled=false")
    step = trainer.step
    batch = trainer._batch(0)[:16]
    step_words = step._fresh_words()
    kept, true, negatives, _, side = step.draw(trainer._batch(0), step_words, "tail")
    known = torch.zeros(64, 1, 17, dtype=torch.bool)
    known[:16, :, 1:] = True  # the first chunk: every negative "known"
    width = trainer.model.entity.weight.shape[1]
    e = trainer.model.entity.weight.detach()
    a, t = e[kept].requires_grad_(True), e[true].requires_grad_(True)
    n = e[negatives].requires_grad_(True)
    r = trainer.model.relation.weight.detach()[trainer._batch(0)[:, 1]].requires_grad_(True)
    loss = step.objective(trainer._batch(0), a, t, n, r, known, step_words, side)
    loss.backward()
    assert torch.isfinite(loss)
    assert n.grad[0].abs().max() == 0  # chunk 0's negatives: masked for all its positives
    assert n.grad[1:].abs().max() > 0
    assert a.grad[:16].abs().max() == 0  # those positives' loss is log 1 = 0: no gradient
    del batch, width


def test_shared_step_config_errors_are_one_line(kg, tmp_path) -> None:
    cases = {
        ("sampler.shared_chunk=-1",): "sampler.shared_chunk: must be >= 0",
        ("sampler.shared_chunk=48",): "must divide train.batch_size (64)",
        ("loss.name=1vsall", "emu.enabled=false"): "1vsall",
        ("sampler.name=sans", "sampler.walks=5"): "SANS draws near each anchor",
    }
    for extra, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            Trainer(load_config(None, [*TINY, *extra]), tmp_path / "x", kg=kg)
        assert "\n" not in str(caught.value)


def test_lookups_and_row_updates_follow_the_shared_draw() -> None:
    per_positive = load_config(None, ["train.batch_size=1000", "sampler.num_negatives=256"])
    shared = load_config(
        None, ["train.batch_size=1000", "sampler.num_negatives=256", "sampler.shared_chunk=250"]
    )
    assert lookups_per_step(per_positive) == 1000 * 258
    assert lookups_per_step(shared) == 2000 + 4 * 256


@pytest.mark.filterwarnings("ignore:'small'")  # (its valid and test hold unseen entities)
def test_a_small_graph_rounds_the_batch_to_whole_chunks(kg, tmp_path) -> None:
    """With fewer training triples than the batch, the batch shrinks to whole chunks."""
    small = KnowledgeGraph(
        train=kg.train[:100], valid=kg.valid[:10], test=kg.test[:10],
        entity_names=kg.entity_names, relation_names=kg.relation_names, name="small",
    )  # fmt: skip
    trainer = Trainer(
        load_config(None, [*TINY, "train.batch_size=128", "sampler.shared_chunk=64"]),
        tmp_path,
        kg=small,
    )
    assert (trainer.batch_size, trainer.step.chunk) == (64, 64)


@pytest.mark.parametrize(
    "extra",
    [
        ("model.name=distmult",),
        ("model.name=complex", "sampler.bernoulli=true"),
        ("model.name=transe", "model.p_norm=2", "loss.name=self_adversarial"),
        ("model.name=rotate", "emu.variant=mixup", "loss.regularizer=n3", "loss.reg_weight=0.01"),
    ],
)
def test_the_shared_step_makes_the_host_wait_nowhere(kg, tmp_path, extra) -> None:
    trainer = _shared_trainer(kg, tmp_path, *extra)
    for step in range(2):
        trainer.train_step(step)
    with forbid_host_sync():
        for step in range(2, 6):
            trainer.train_step(step)


@pytest.mark.parametrize(
    "extra",
    [
        ("model.name=distmult",),
        pytest.param(
            ("model.name=transe", "model.p_norm=2", "sampler.bernoulli=true"),
            marks=pytest.mark.slow,
        ),
        pytest.param(("model.name=hake", "emu.variant=mixup"), marks=pytest.mark.slow),
        pytest.param(("model.name=rotate",), marks=pytest.mark.slow),
        pytest.param(("model.name=transe", "loss.name=margin"), marks=pytest.mark.slow),
    ],
)
def test_the_shared_step_compiles_as_one_graph_and_equals_the_eager_step(
    kg, tmp_path, extra
) -> None:
    config = load_config(None, [*TINY, *extra])
    eager = Trainer(config, tmp_path / "eager", kg=kg)
    compiled = Trainer(copy.deepcopy(config), tmp_path / "compiled", kg=kg)
    compile_step(compiled.step, backend="aot_eager")
    losses = [float(compiled.train_step(s)) for s in range(30)]
    reference = [float(eager.train_step(s)) for s in range(30)]
    assert losses == pytest.approx(reference, abs=1e-5)
    for (name, x), (_, y) in zip(
        compiled.model.state_dict().items(), eager.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("decoder", ["distmult", "complex"])
def test_the_shared_step_never_holds_a_row_per_positive_and_negative(kg, tmp_path, decoder) -> None:
    """No tensor of a whole shared EMU step (draw, filter, scores, loss, backward, update)
    has B x n x De elements, where the per-positive step gathers that many: the chunks'
    scores are matrix products."""
    trainer = _shared_trainer(
        kg, tmp_path, f"model.name={decoder}", "train.batch_size=256", "sampler.num_negatives=64",
        "sampler.shared_chunk=128", "model.dim=32", "train.sparse=true",
    )  # fmt: skip
    trainer.train_step(0)
    width = trainer.model.entity.weight.shape[1]
    largest = 0

    class Largest(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal largest
            out = func(*args, **(kwargs or {}))
            for x in out if isinstance(out, tuple | list) else [out]:
                if isinstance(x, torch.Tensor) and x.dtype.is_floating_point:
                    largest = max(largest, x.numel())
            return out

    with Largest():
        trainer.train_step(1)
    assert largest < 256 * 64 * width / 4
    assert largest >= 256 * 65  # the [B, 1 + n] score blocks are there


@pytest.mark.slow
def test_shared_negatives_learn_as_well_as_per_positive_ones(kg, tmp_path) -> None:
    """On the built-in graph, a DistMult EMU run with shared negatives reaches the MRR of
    the per-positive run (within 0.05) at the same steps, and beats an untrained model."""
    common = [
        "dataset.name=synthetic", "model.name=distmult", "model.dim=32", "train.max_steps=300",
        "train.batch_size=128", "sampler.num_negatives=32", "train.progress=false",
        "train.valid_every=0", "train.checkpoint_every=0", "train.lr=0.1",
    ]  # fmt: skip
    results = {}
    for chunk in (0, 128):
        trainer = Trainer(
            load_config(None, [*common, f"sampler.shared_chunk={chunk}"]),
            tmp_path / str(chunk),
            kg=kg,
        )
        results[chunk] = trainer.fit()["test"]["mrr"]
    untrained = Trainer(load_config(None, [*common, "train.max_steps=1"]), tmp_path / "u", kg=kg)
    baseline = untrained.evaluator.evaluate(untrained.model, kg.test)["mrr"]
    assert results[128] > baseline + 0.2
    assert results[128] >= results[0] - 0.05


def test_mutation_and_loss_builders_are_the_per_positive_ones() -> None:
    config = load_config(None, ["sampler.shared_chunk=500"])
    assert type(mutation_from_config(config, torch.device("cpu"))).__name__ == "EMUMutation"
    assert type(loss_from_config(config)).__name__ == "EMULoss"
    assert KGEModel  # imported for the type
