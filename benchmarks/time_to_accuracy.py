"""Minutes to MRR: validation MRR against training time, for emu-dgl and for PyKEEN.

Each run trains for a wall-clock budget and validates on a fixed schedule of *training*
seconds (``--every``; the validation itself is not counted), on the whole validation
split, filtered, realistic ranks (``emu_dgl.evaluation.FilteredEvaluator``: the same
protocol for every system). The best validated weights are kept in memory and the test
split is ranked once with them at the end. Each run writes ``OUT/curve.json``:
``{"label", "system", "threads", "points": [{"train_seconds", "wall_seconds", "steps",
"valid_mrr", "valid_hits@10"}], "best": {...}, "test": {...}}``.

    # emu-dgl, a config (a preset of configs/fast/, or a paper config and arm)
    python benchmarks/time_to_accuracy.py emu --config configs/fast/wn18rr-complex-emu.yaml \\
        --minutes 10 --every 30 --out tta/wn18rr-fast --data-dir ../shared/datasets
    python benchmarks/time_to_accuracy.py emu --config configs/paper/wn18rr/complex.yaml \\
        --arm uniform-emu --set train.schedule=none --minutes 60 --every 120 --out tta/wn18rr-paper
    # PyKEEN 1.11 (pip install pykeen==1.11.1 in an environment of its own), sLCWA
    python benchmarks/time_to_accuracy.py pykeen --dataset wn18rr --model complex --dim 200 \\
        --minutes 60 --every 120 --out tta/wn18rr-pykeen --data-dir ../shared/datasets
    # one figure (valid MRR against minutes) and a markdown table from finished runs
    python benchmarks/time_to_accuracy.py report tta/wn18rr-* --figure tta/wn18rr.png

PyKEEN trains on emu-dgl's own id maps (a ``TriplesFactory`` from the same id tensors),
so its ``score_t``/``score_h`` are ranked by the same evaluator. emu-dgl is driven step
by step (``Trainer.train_step``), so a config's schedule must be ``none`` or ``step``;
the reference schedule's switch at ``max_steps / 2`` has no meaning for a time budget.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _write(out: Path, record: dict) -> None:
    from emu_dgl.files import make_dir, write_atomic

    make_dir(out, "output folder")
    write_atomic(out / "curve.json", json.dumps(record, indent=2) + "\n", "curve", durable=False)


class Schedule:
    """Training-time bookkeeping: validations at ``every``, 2x``every``, ... training
    seconds, until ``budget`` seconds of training."""

    def __init__(self, budget: float, every: float) -> None:
        self.budget, self.every = budget, every
        self.trained = 0.0
        self.next_mark = every
        self.started = time.perf_counter()
        self._since = time.perf_counter()

    def resume(self) -> None:  # training starts (again)
        self._since = time.perf_counter()

    def pause(self) -> None:  # training stops for a validation
        self.trained += time.perf_counter() - self._since

    def now(self) -> float:
        return self.trained + time.perf_counter() - self._since

    def due(self) -> bool:
        return self.now() >= min(self.next_mark, self.budget)

    def done(self) -> bool:
        return self.now() >= self.budget

    def wall(self) -> float:
        return time.perf_counter() - self.started


class Tracker:
    """The curve, the best weights and the record written after every validation."""

    def __init__(self, out: Path, record: dict, validate: Callable[[], dict]) -> None:
        self.out, self.record, self.validate = out, record, validate
        self.record["points"] = []
        self.best_mrr = -1.0
        self.best_state: dict | None = None

    def point(self, schedule: Schedule, steps: int, model: torch.nn.Module) -> None:
        schedule.pause()
        metrics = self.validate()
        mrr = float(metrics["mrr"])
        self.record["points"].append(
            {
                "train_seconds": round(schedule.trained, 2),
                "wall_seconds": round(schedule.wall(), 2),
                "steps": steps,
                "valid_mrr": round(mrr, 5),
                "valid_hits@10": round(float(metrics["hits@10"]), 5),
            }
        )
        if mrr > self.best_mrr:
            self.best_mrr = mrr
            self.best_state = copy.deepcopy(model.state_dict())
            self.record["best"] = self.record["points"][-1]
        print(json.dumps(self.record["points"][-1]), file=sys.stderr, flush=True)
        _write(self.out, self.record)
        schedule.next_mark += schedule.every
        schedule.resume()


def _test(record: dict, model: torch.nn.Module, state: dict | None, evaluate: Callable) -> None:
    if state is not None:
        model.load_state_dict(state)
    metrics = evaluate()
    record["test"] = {
        k: round(float(metrics[k]), 5) for k in ("mrr", "hits@1", "hits@3", "hits@10")
    }


def run_emu(args: argparse.Namespace) -> None:
    from emu_dgl.config import load_config
    from emu_dgl.training.trainer import Trainer

    overrides = [
        *args.set,
        f"train.threads={args.threads}",
        "train.progress=false",
        "train.valid_every=0",
        "train.checkpoint_every=0",
    ]  # (train.max_steps stays the config's: the budget is time, but train.compile: auto reads it)
    if args.data_dir:
        overrides.append(f"dataset.data_dir={args.data_dir}")
    config = load_config(args.config, overrides, arm=args.arm)
    if config.train.schedule == "reference":
        sys.exit(
            "error: the reference schedule switches at max_steps / 2, which a time budget has "
            "not; add --set train.schedule=none"
        )
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run")
        kg, model, evaluator = trainer.kg, trainer.model, trainer.evaluator
        valid, test = kg.valid.to(trainer.device), kg.test.to(trainer.device)
        record = {
            "label": args.label or Path(args.config).stem + (f" {args.arm}" if args.arm else ""),
            "system": "emu-dgl",
            "config": config.to_dict(),
            "threads": args.threads,
            "dataset": kg.name,
            "load_average_at_start": list(os.getloadavg()),
        }
        tracker = Tracker(args.out, record, lambda: evaluator.evaluate(model, valid))
        schedule, step = Schedule(60 * args.minutes, args.every), 0
        while not schedule.done():
            loss = trainer.train_step(step)
            step += 1
            if step % 10 == 0 or schedule.due():
                float(loss)  # the device has finished the step (a no-op wait on a CPU)
            if schedule.due():
                tracker.point(schedule, step, model)
        _test(record, model, tracker.best_state, lambda: evaluator.evaluate(model, test))
        record["steps"] = step
        _write(args.out, record)
    print(json.dumps({k: record[k] for k in ("label", "best", "test")}))


def run_pykeen(args: argparse.Namespace) -> None:
    from pykeen.models import ComplEx, DistMult, TransE
    from pykeen.training import SLCWATrainingLoop, TrainingCallback
    from pykeen.triples import TriplesFactory

    from emu_dgl.config import load_config
    from emu_dgl.data import load_dataset
    from emu_dgl.models import KGEModel
    from emu_dgl.training.build import evaluator_from_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    kg = load_dataset(args.dataset, args.data_dir)
    factory = TriplesFactory(
        mapped_triples=kg.train,
        entity_to_id={name: i for i, name in enumerate(kg.entity_names)},
        relation_to_id={name: i for i, name in enumerate(kg.relation_names)},
    )
    models = {"complex": ComplEx, "distmult": DistMult, "transe": TransE}
    options: dict = {"embedding_dim": args.dim, "loss": args.loss, "random_seed": args.seed}
    if args.model == "transe":
        options["scoring_fct_norm"] = 1
    model = models[args.model](triples_factory=factory, **options)
    optimizers = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}
    optimizer = optimizers[args.optimizer](model.parameters(), lr=args.lr)
    loop = SLCWATrainingLoop(
        model=model,
        triples_factory=factory,
        optimizer=optimizer,
        negative_sampler="basic",
        negative_sampler_kwargs={"num_negs_per_pos": args.negatives},
    )
    evaluator = evaluator_from_config(
        load_config(None, []), [kg.train, kg.valid, kg.test], kg.num_relations
    )
    twin = KGEModel(kg.num_entities, kg.num_relations, decoder=args.model, dim=args.dim)

    def ranked(triples: torch.Tensor) -> dict:
        copy_weights(model, twin)
        return evaluator.evaluate(twin, triples)

    with torch.no_grad():  # the twin scores as PyKEEN does, up to a constant (TransE's gamma)
        copy_weights(model, twin)
        probe = kg.train[:64]
        gap = twin.score_hrt(probe) - model.score_hrt(probe).view(-1)
        if float(gap.max() - gap.min()) > 1e-3:
            sys.exit("error: emu-dgl's decoder does not score as PyKEEN's model does")

    record = {
        "label": args.label or f"PyKEEN {args.model} d={args.dim}",
        "system": "pykeen",
        "pykeen": _pykeen_version(),
        "settings": {
            k: getattr(args, k)
            for k in ("model", "dim", "loss", "optimizer", "lr", "negatives", "batch", "seed")
        },
        "threads": args.threads,
        "dataset": kg.name,
        "load_average_at_start": list(os.getloadavg()),
    }
    tracker = Tracker(args.out, record, lambda: ranked(kg.valid))
    schedule = Schedule(60 * args.minutes, args.every)
    batches = [0]

    class Budget(Exception):
        pass

    class Clock(TrainingCallback):
        def post_batch(self, epoch: int, batch, **kwargs) -> None:  # type: ignore[override]
            batches[0] += 1
            if schedule.due():
                tracker.point(schedule, batches[0], model)
                model.train()
            if schedule.done():
                raise Budget

    try:  # epochs until the callback ends the budget (PyKEEN's num_epochs is a total)
        loop.train(
            triples_factory=factory,
            num_epochs=10**6,
            batch_size=args.batch,
            use_tqdm=False,
            pin_memory=False,
            callbacks=[Clock()],
        )
    except Budget:
        pass
    _test(record, model, tracker.best_state, lambda: ranked(kg.test))
    record["steps"] = batches[0]
    _write(args.out, record)
    print(json.dumps({k: record[k] for k in ("label", "best", "test")}))


@torch.no_grad()
def copy_weights(model, twin) -> None:
    """PyKEEN's ComplEx / DistMult / TransE (L1) weights into emu-dgl's decoder of the same
    name, whose scores are the same functions (ComplEx: ``Re <h, r, conj t>``, complex rows
    stored as ``[re | im]``; TransE: ``-||h + r - t||_1`` up to emu-dgl's constant
    ``gamma``, which no ranking sees), so both systems are ranked by one evaluator (PyKEEN's
    own ``score_t`` of ComplEx broadcasts ``[B, E, d]`` complex numbers: 16 GB on WN18RR)."""
    for source, target in (
        (model.entity_representations[0], twin.entity.weight),
        (model.relation_representations[0], twin.relation.weight),
    ):
        rows = source(indices=None)
        if rows.is_complex():
            rows = torch.cat([rows.real, rows.imag], dim=-1)
        target.copy_(rows)


def _pykeen_version() -> str:
    from importlib.metadata import version

    return version("pykeen")


def minutes_to(points: list[dict], mrr: float) -> float | None:
    """Training minutes at the first validation reaching ``mrr`` (None if never)."""
    for point in points:
        if point["valid_mrr"] >= mrr:
            return point["train_seconds"] / 60
    return None


def report(args: argparse.Namespace) -> None:
    records = [json.loads((Path(folder) / "curve.json").read_text()) for folder in args.runs]
    rows = [
        "| run | threads | best valid MRR | at minute | test MRR (best) | Hits@10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        best, test = r.get("best") or {}, r.get("test") or {}  # a stopped run has no test
        rows.append(
            f"| {r['label']} | {r['threads']} | {best.get('valid_mrr', float('nan')):.3f} | "
            f"{best.get('train_seconds', 0) / 60:.1f} | {test.get('mrr', float('nan')):.3f} | "
            f"{test.get('hits@10', float('nan')):.3f} |"
        )
    reference = next((r for r in records if r["system"] == "pykeen"), None)
    lines = rows
    if reference is not None and reference.get("best"):
        target = reference["best"]["valid_mrr"]
        spent = reference["best"]["train_seconds"] / 60
        lines += [
            "",
            f"PyKEEN's best valid MRR, {target:.3f}, took it {spent:.1f} min. Reached by:",
        ]
        for r in records:
            if r is reference:
                continue
            took = minutes_to(r["points"], target)
            lines.append(
                f"- {r['label']}: "
                + (
                    "never"
                    if took is None
                    else f"{took:.1f} min ({spent / max(took, 1e-9):.1f}x less time)"
                )
            )
    text = "\n".join(lines)
    print(text)
    if args.table:
        from emu_dgl.files import write_atomic

        write_atomic(args.table, text + "\n", "table", durable=False)
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for r in records:
            xs = [0.0] + [p["train_seconds"] / 60 for p in r["points"]]
            ys = [0.0] + [p["valid_mrr"] for p in r["points"]]
            ax.plot(xs, ys, marker=".", label=f"{r['label']} ({r['threads']} threads)")
        ax.set_xlabel("training minutes (validation not counted)")
        ax.set_ylabel("filtered valid MRR")
        ax.set_title(args.title or records[0].get("dataset", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        from emu_dgl.experiments.compare import save_figure

        save_figure(fig, Path(args.figure), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("emu", "pykeen"):
        p = sub.add_parser(name)
        p.add_argument("--minutes", type=float, required=True, help="training budget")
        p.add_argument(
            "--every", type=float, default=60, help="training seconds between validations"
        )
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--data-dir", default=None)
        p.add_argument("--label", default=None)
    emu = sub.choices["emu"]
    emu.add_argument("--config", required=True)
    emu.add_argument("--arm", default=None)
    emu.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pk = sub.choices["pykeen"]
    pk.add_argument("--dataset", required=True)
    pk.add_argument("--model", choices=["complex", "distmult", "transe"], required=True)
    pk.add_argument("--dim", type=int, required=True)
    pk.add_argument("--negatives", type=int, default=256)
    pk.add_argument("--batch", type=int, default=1000)
    pk.add_argument("--loss", default="crossentropy")
    pk.add_argument("--optimizer", choices=["adagrad", "adam"], default="adagrad")
    pk.add_argument("--lr", type=float, default=0.1)
    pk.add_argument("--seed", type=int, default=0)
    rp = sub.add_parser("report")
    rp.add_argument("runs", nargs="+")
    rp.add_argument("--figure", default=None)
    rp.add_argument("--table", default=None)
    rp.add_argument("--title", default=None)
    args = parser.parse_args()
    {"emu": run_emu, "pykeen": run_pykeen, "report": report}[args.mode](args)


if __name__ == "__main__":
    main()
