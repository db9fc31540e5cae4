"""Contracts every component keeps, run over whatever the registries hold.

A decoder, sampler, loss, regulariser, mutation or optimizer added to a registry (a new
file of emu-dgl, or a plugin installed in the environment) is covered here without a line
of this file changing:

* its option declarations: defaults its builder agrees with, in their own ranges, keys the
  config accepts and writes into a run's ``config.yaml``;
* decoders: the training step's loss equals the public path (scores from
  :meth:`KGEModel.score_negatives`-style direct formulas and the EMU loss of
  :mod:`emu_dgl.losses`), values and gradients; the export layout covers every table
  column and every learnt parameter; the step compiles as one graph; a killed run resumes
  exactly (the last two slow);
* samplers: shapes, id bounds, devices and determinism, fixed-shape word draws, and the
  false-negative filter leaving no known triple.

Closed-form scores, the tail form and the EMU decomposition of every decoder are in
``tests/test_decoders.py``; the shared-negative forms in ``tests/test_shared.py``; both are
driven by the same registry cases (:mod:`tests.components`).
"""

from __future__ import annotations

import copy
import inspect
import json

import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data import load_dataset
from emu_dgl.errors import ConfigError
from emu_dgl.losses import EMULoss
from emu_dgl.registry import DECODERS, KINDS, SAMPLERS, builder_of, declared_options
from emu_dgl.sampling import FilteredSampler, build_sampler
from emu_dgl.sampling.base import draws_from_words
from emu_dgl.training.results import export_meta
from emu_dgl.training.step import compile_step, forbid_host_sync
from emu_dgl.training.trainer import Trainer
from tests.components import cases

DECODER_CASES = cases(DECODERS)
SAMPLER_CASES = cases(SAMPLERS)
COMPONENTS = [
    pytest.param(kind, name, id=f"{kind}-{name}")
    for kind, registry in KINDS.items()
    for name in registry.names()
]

#: A run of a few seconds on the built-in graph.
TINY = [
    "dataset.name=synthetic", "model.dim=8", "sampler.num_negatives=8", "train.batch_size=64",
    "train.progress=false", "train.valid_every=0", "train.checkpoint_every=0",
    "train.max_steps=20", "train.device=cpu", "eval.batch_size=128",
]  # fmt: skip


@pytest.fixture(scope="module")
def kg():
    return load_dataset("synthetic")


def overrides(section: str, options: dict) -> list[str]:
    return [
        f"{section}.{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in options.items()
    ]


# ---------------------------------------------------------------------------- declarations


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_declared_options_agree_with_the_builder_and_their_ranges(kind: str, name: str) -> None:
    """Each option's default is the builder's default for that parameter (when it has one),
    passes the option's own range, and is a plain identifier that no field of the
    section uses."""
    registry = KINDS[kind]
    component = registry.get(name)
    params = inspect.signature(builder_of(component)).parameters
    config = load_config(None, [], validate=False)
    fields = set(getattr(config, registry.section).__dataclass_fields__)
    for key, option in declared_options(component).items():
        assert key.isidentifier() and not key.startswith("_"), key
        assert registry.prefix + key not in fields, f"{kind} {name}: '{key}' is a field's key"
        assert option.problem(option.default) is None, (kind, name, key)
        if key in params and params[key].default is not inspect.Parameter.empty:
            assert params[key].default == option.default, (kind, name, key)


@pytest.mark.parametrize("section", sorted({r.section for r in KINDS.values()}))
def test_options_of_one_config_section_mean_one_thing(section: str) -> None:
    """Two components whose options share a config section and a name share the key: they
    must agree on its type and default (``model.gamma`` of every decoder)."""
    seen: dict[str, tuple[object, object, str]] = {}
    for registry in KINDS.values():
        if registry.section != section:
            continue
        for name in registry.names():
            for key, option in registry.options(name).items():
                first = seen.setdefault(registry.prefix + key, (option.kind, option.default, name))
                assert first[:2] == (option.kind, option.default), (key, first[2], name)


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_every_option_is_a_config_key_of_its_section(kind: str, name: str) -> None:
    """A config naming the component accepts each of its options as ``section.key`` and
    writes exactly the section's fields and those options into the resolved config."""
    registry = KINDS[kind]
    select = f"{registry.config_key}={name}"
    options = registry.options(name)
    given = {k: o.default for k, o in options.items()}
    keyed = {registry.prefix + k: v for k, v in given.items()}
    config = load_config(None, [select, *overrides(registry.section, keyed)], validate=False)
    part = getattr(config, registry.section)
    part.check_options()
    assert config.options_for(registry.config_key) == given
    written = config.to_dict()[registry.section]
    assert set(keyed) <= set(written)
    with pytest.raises(ConfigError, match=f"unknown config key '{registry.section}.not_an_option"):
        load_config(None, [select, f"{registry.section}.not_an_option=1"])


# ---------------------------------------------------------------------------- decoders


def _trainer(kg, tmp_path, name: str, options: dict, *extra: str) -> Trainer:
    config = load_config(None, [*TINY, f"model.name={name}", *overrides("model", options), *extra])
    return Trainer(config, tmp_path, kg=kg)


@pytest.mark.parametrize("variant", ["emu", "mixup", "label_smoothing"])
@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
def test_the_steps_loss_is_the_public_loss(kg, tmp_path, name, options, variant) -> None:
    """The training step (one gather, one fused scoring pass, the loss of its score blocks)
    equals the loss of the public path written out: the decoder's scores of the positives,
    of the negatives and of the negatives mutated by the same random words, then
    :class:`EMULoss` (``from_scores``), in value and in the gradient of every table row."""
    trainer = _trainer(kg, tmp_path, name, options, f"emu.variant={variant}")
    step, model = trainer.step, trainer.model.double()
    step._targets(step.loss, torch.device("cpu"), torch.float64)
    batch = trainer._batch(0)
    words = step._fresh_words()
    for side in ("tail", "head"):
        kept, candidates, side_out = step.draw(batch, words, side)
        entity = model.entity.weight.detach().clone().requires_grad_(True)
        relation = model.relation.weight.detach().clone().requires_grad_(True)
        # the public path, written out from the tables
        anchor, group = entity[kept], entity[candidates]  # [B, De], [B, 1 + n, De]
        rel = model.tail_form(relation[batch[:, 1]], side_out)
        plain = model.decoder(anchor[:, None], rel[:, None], group)
        mutated_group = group
        if step.mutation is not None:
            block = step._words(words, "mutation")
            flat = block.reshape(-1) if block is not None else words[:0]
            mutated_group = step.mutation.mutate_group(group, flat)
        mutated = model.decoder(anchor[:, None], rel[:, None], mutated_group)
        assert isinstance(step.loss, EMULoss)
        want = step.loss.from_scores(plain, mutated[:, 1:])
        want.backward()
        # the step's own objective, on gathered leaves
        a = entity.detach()[kept].view(-1, 1, entity.shape[1]).requires_grad_(True)
        g = entity.detach()[candidates].requires_grad_(True)
        r = relation.detach()[batch[:, 1]].view(-1, 1, relation.shape[1]).requires_grad_(True)
        got = step.objective(batch, a, g, r, words, side_out)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
        got.backward()
        grad = torch.zeros_like(entity).index_add_(0, kept, a.grad.view(len(kept), -1))
        grad.index_add_(0, candidates.reshape(-1), g.grad.reshape(-1, entity.shape[1]))
        rel_grad = torch.zeros_like(relation).index_add_(0, batch[:, 1], r.grad.squeeze(1))
        torch.testing.assert_close(grad, entity.grad, rtol=0, atol=1e-9)
        torch.testing.assert_close(rel_grad, relation.grad, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
def test_export_layout_covers_every_column_and_learnt_parameter(name, options) -> None:
    """``meta.json``'s blocks tile each table's row exactly, and every learnt parameter of
    the decoder is exported: scalars by value, any other tensor as an array file."""
    from emu_dgl.models import KGEModel

    config = load_config(None, [f"model.name={name}", "model.dim=6", *overrides("model", options)])
    model = KGEModel(11, 3, decoder=name, dim=6, **config.options_for("model.name"))
    meta = export_meta(config, model, "best")
    for table, weight in (("entities", model.entity.weight), ("relations", model.relation.weight)):
        blocks = sorted(meta[table]["blocks"].values())
        assert meta[table]["shape"] == list(weight.shape)
        assert blocks[0][0] == 0 and blocks[-1][1] == weight.shape[1], (table, blocks)
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False)), blocks
    exported = {**meta.get("decoder_parameters", {}), **meta.get("decoder_arrays", {})}
    assert set(exported) == {n for n, _ in model.decoder.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
def test_the_step_compiles_as_one_graph_for_every_decoder(kg, tmp_path, name, options) -> None:
    """``fullgraph=True`` through dynamo and AOTAutograd with EMU on (a graph break, a host
    synchronisation or a data-dependent shape fails here); 10 compiled steps equal 10
    eager ones."""
    eager = _trainer(kg, tmp_path / "eager", name, options)
    compiled = _trainer(kg, tmp_path / "compiled", name, options)
    compile_step(compiled.step, backend="aot_eager")
    try:
        losses = [float(compiled.train_step(s)) for s in range(10)]
        reference = [float(eager.train_step(s)) for s in range(10)]
    finally:
        torch._dynamo.reset()
    assert losses == pytest.approx(reference, abs=1e-5)
    for (key, x), (_, y) in zip(
        compiled.model.state_dict().items(), eager.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), DECODER_CASES)
def test_a_killed_run_of_every_decoder_resumes_exactly(kg, tmp_path, name, options) -> None:
    extra = ("train.valid_every=10", "train.checkpoint_every=10", "train.threads=1")
    full = _trainer(kg, tmp_path / "full", name, options, *extra).fit()
    assert _trainer(kg, tmp_path / "killed", name, options, *extra).fit(stop_after=15) == {}
    resumed = _trainer(kg, tmp_path / "killed", name, options, *extra).fit(resume=True)
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]


# ---------------------------------------------------------------------------- samplers

E, R = 40, 3


def small_kg(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    h, t = torch.randint(0, 35, (70,), generator=gen), torch.randint(0, 35, (70,), generator=gen)
    return torch.stack([h, torch.randint(0, R, (70,), generator=gen), t], dim=1)


def make_sampler(name: str, options: dict, train: torch.Tensor, n: int, device, **kw):
    return build_sampler(
        name, train=train, num_entities=E, num_relations=R, num_negatives=n, seed=0,
        cache=False, announce=False, device=device, **{**options, **kw},
    )  # fmt: skip


def generator(device: torch.device, seed: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "filtered"])
@pytest.mark.parametrize(("name", "options"), SAMPLER_CASES)
def test_sampler_shapes_bounds_devices_and_determinism(name, options, filtered, device) -> None:
    train = small_kg()
    sampler = make_sampler(name, options, train, 24, device, filter=filtered)
    pos = train[:17].to(device)
    for side in ("head", "tail"):
        neg = sampler.sample(pos, side, generator=generator(device, 7), step=3)
        assert neg.shape == (17, 24) and neg.dtype == torch.int64
        assert neg.device.type == device.type
        assert int(neg.min()) >= 0 and int(neg.max()) < E
        again = sampler.sample(pos, side, generator=generator(device, 7), step=3)
        other = sampler.sample(pos, side, generator=generator(device, 8), step=3)
        assert torch.equal(neg, again) and not torch.equal(neg, other)


@pytest.mark.parametrize(("name", "options"), SAMPLER_CASES)
def test_word_samplers_draw_in_fixed_shape_without_host_syncs(name, options) -> None:
    """A sampler that draws from given words does so for any leading shape (several draws
    at once) and a per-row side, with no host synchronisation; one whose draw ignores the
    positive (``anchor_free``: shareable by chunks of positives) gives the same ids for
    any positives."""
    train = small_kg()
    sampler = make_sampler(name, options, train, 12, "cpu")
    if not draws_from_words(sampler):
        pytest.skip(f"{name} draws on the host (it takes a generator, not words)")
    pos = train[:10]
    words = torch.empty(10, 2, sampler.words_per_row, dtype=torch.int64).random_(
        -(2**63), None, generator=torch.Generator().manual_seed(1)
    )
    side = torch.arange(10) % 2 == 0
    with forbid_host_sync():
        neg = sampler.sample_words(pos, side, words)
        flat = sampler.sample_words(pos, "tail", words[:, 0])
    assert neg.shape == (10, 2, 12) and flat.shape == (10, 12)
    assert int(neg.min()) >= 0 and int(neg.max()) < E
    if getattr(sampler, "anchor_free", False):
        shuffled = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(2))]
        assert torch.equal(sampler.sample_words(shuffled[:10], "head", words), neg)


@pytest.mark.parametrize(("name", "options"), SAMPLER_CASES)
@pytest.mark.parametrize("side", ["head", "tail"])
def test_no_filtered_negative_of_any_sampler_is_a_known_triple(name, options, side) -> None:
    # A dense known set: (h, 0, t) for every t < 30 and every h < 10, so an unfiltered
    # draw often hits a known triple; ample spare candidates leave none known.
    grid = torch.cartesian_prod(torch.arange(10), torch.arange(30))
    known = torch.stack([grid[:, 0], torch.zeros(len(grid), dtype=torch.long), grid[:, 1]], 1)
    if side == "head":
        known = known[:, [2, 1, 0]]
    train = torch.cat([known, small_kg()])
    base = make_sampler(name, options, train, 64, "cpu")
    filtered = FilteredSampler(base, train, E, spare=4 * 64, uniform_spare=8 * 64)
    assert filtered.residual_rate(0.75) < 1e-12
    pos = known[::7]
    if name == "uniform":  # the test can fail: unfiltered, a third of the draws are known
        hits = filtered.is_known(pos, base.sample(pos, side, generator=generator("cpu")), side)
        assert hits.float().mean() > 0.3
    neg = filtered.sample(pos, side, generator=generator(torch.device("cpu")))
    assert neg.shape == (len(pos), 64)
    assert filtered.is_known(pos, neg, side).sum() == 0
    truth = {tuple(x) for x in train.tolist()}
    for (h, r, t), row in zip(pos.tolist(), neg.tolist(), strict=True):
        for x in row:
            assert ((h, r, x) if side == "tail" else (x, r, t)) not in truth


@pytest.mark.parametrize(("name", "options"), SAMPLER_CASES)
def test_every_sampler_trains_a_step_through_the_config(kg, tmp_path, name, options) -> None:
    """The sampler as a config names it (with its options) drives a few training steps."""
    config = load_config(
        None, [*TINY, "model.name=distmult", f"sampler.name={name}", *overrides("sampler", options)]
    )
    trainer = Trainer(copy.deepcopy(config), tmp_path, kg=kg)
    losses = [float(trainer.train_step(s)) for s in range(4)]
    assert all(torch.isfinite(torch.tensor(losses)))


def test_the_components_command_lists_every_component_with_its_options() -> None:
    from click.testing import CliRunner

    from emu_dgl.cli import main

    listing = json.loads(CliRunner().invoke(main, ["components", "--json"]).output)
    assert set(listing) == set(KINDS)
    for kind, registry in KINDS.items():
        assert listing[kind]["config_key"] == registry.config_key
        assert set(listing[kind]["components"]) == set(registry.names())
        for name, entry in listing[kind]["components"].items():
            assert set(entry["options"]) == set(registry.options(name))
    text = CliRunner().invoke(main, ["components", "sampler"]).output
    assert "sampler.k_hop = 3" in text and "decoder" not in text
    bad = CliRunner().invoke(main, ["components", "decoders"])
    assert bad.exit_code == 2 and "unknown kind 'decoders'" in bad.output
