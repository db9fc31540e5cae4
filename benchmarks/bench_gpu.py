"""The device measurements of ``benchmarks/gpu_check.sh``, one phase per call; JSON out.

    python benchmarks/bench_gpu.py steps  [--device cuda] [--quick]   # decoder x arm, eager vs graph
    python benchmarks/bench_gpu.py eval   [--device cuda] [--quick]   # filtered evaluation times
    python benchmarks/bench_gpu.py scale  [--device cuda] [--quick]   # step time at 40k / 4M / 40M entities
    python benchmarks/bench_gpu.py shared [--device cuda] [--quick]   # shared vs per-positive negatives
    python benchmarks/bench_gpu.py runs   RUN_DIR...                   # steps/s of finished runs

``steps``: ms per training step of the paper configs (WN18RR, batch 1000, 256 negatives,
d = 100) for every decoder and arm, run eagerly and as a CUDA graph (``train.cuda_graph``;
on a CPU the graph column says why it is off), with positives per second and the
positives x negatives x dim per second (the measure published GPU systems such as GraphVite report).
``--quick`` shrinks everything (the built-in graph, batch 64, 16 negatives, a few steps)
so the whole script dry-runs on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DECODERS = ("transe", "distmult", "complex", "rotate", "hake")
ARMS = ("uniform-base", "uniform-emu", "sans-base", "sans-emu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _budget(args: argparse.Namespace) -> list[str]:
    common = [f"train.device={args.device}", "train.progress=false", "train.threads=1"]
    if args.quick:
        return [*common, "dataset.name=synthetic", "train.batch_size=64",
                "sampler.num_negatives=16", "model.dim=16", "sampler.walks=20"]  # fmt: skip
    return [*common, "train.batch_size=1000", "sampler.num_negatives=256"]


def time_trainer(trainer, steps: int, warmup: int) -> float:
    """Seconds per ``train_step`` after ``warmup`` steps (which include any capture)."""
    device = trainer.device
    for step in range(warmup):
        trainer.train_step(step)
    _sync(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.train_step(step)
    _sync(device)
    return (time.perf_counter() - start) / steps


def phase_steps(args: argparse.Namespace) -> dict:
    from emu_dgl.config import load_config
    from emu_dgl.training.step import GraphedStep
    from emu_dgl.training.trainer import Trainer

    steps, warmup = (5, 6) if args.quick else (args.steps, 8)
    table: dict = {}
    for decoder in args.decoders:
        for arm in args.arms:
            row: dict = {}
            for mode in ("eager", "graph"):
                overrides = [*_budget(args), f"train.cuda_graph={str(mode == 'graph').lower()}"]
                config = load_config(
                    REPO / "configs/paper/wn18rr" / f"{decoder}.yaml", overrides, arm=arm
                )
                with tempfile.TemporaryDirectory() as tmp:
                    trainer = Trainer(config, tmp)
                    runner = trainer._run_step
                    if mode == "graph" and not isinstance(runner, GraphedStep):
                        row[mode] = {"off": "no CUDA graph on this device"}
                        continue
                    seconds = time_trainer(trainer, steps, warmup)
                    if isinstance(runner, GraphedStep) and runner.failed:
                        row[mode] = {"off": "capture failed (see stderr)"}
                        continue
                batch = config.train.batch_size
                negatives = config.sampler.num_negatives * (2 if arm == "uniform-emu" else 1)
                row[mode] = {
                    "ms_per_step": round(1000 * seconds, 3),
                    "positives_per_second": round(batch / seconds),
                    "pos_x_neg_x_dim_per_second": float(
                        f"{batch * negatives * config.model.dim / seconds:.3g}"
                    ),
                }
            table.setdefault(decoder, {})[arm] = row
            print(f"{decoder} {arm}: {row}", file=sys.stderr, flush=True)
    return {"phase": "steps", "steps_timed": steps, "table": table}


def phase_shared(args: argparse.Namespace) -> dict:
    """ms per step with negatives shared by the whole batch (``sampler.shared_chunk`` =
    batch: one draw, scored as matrix products) against per-positive negatives, uniform
    sampler, base and EMU, eager and as a CUDA graph, WN18RR."""
    from emu_dgl.config import load_config
    from emu_dgl.training.step import GraphedStep
    from emu_dgl.training.trainer import Trainer

    steps, warmup = (5, 6) if args.quick else (args.steps, 8)
    batch = 64 if args.quick else 1000
    table: dict = {}
    for decoder in args.decoders:
        for emu in (False, True):
            for chunk in (0, batch):
                row: dict = {}
                for mode in ("eager", "graph"):
                    overrides = [
                        *_budget(args),
                        f"model.name={decoder}",
                        "sampler.name=uniform",
                        f"emu.enabled={str(emu).lower()}",
                        f"sampler.shared_chunk={chunk}",
                        f"train.cuda_graph={str(mode == 'graph').lower()}",
                    ]
                    if not args.quick:
                        overrides.append("dataset.name=wn18rr")
                    config = load_config(None, overrides)
                    with tempfile.TemporaryDirectory() as tmp:
                        trainer = Trainer(config, tmp)
                        runner = trainer._run_step
                        if mode == "graph" and not isinstance(runner, GraphedStep):
                            row[mode] = {"off": "no CUDA graph on this device"}
                            continue
                        seconds = time_trainer(trainer, steps, warmup)
                    row[mode] = {
                        "ms_per_step": round(1000 * seconds, 3),
                        "positives_per_second": round(config.train.batch_size / seconds),
                    }
                name = f"{'emu' if emu else 'base'}-{'shared' if chunk else 'per_positive'}"
                table.setdefault(decoder, {})[name] = row
                print(f"{decoder} {name}: {row}", file=sys.stderr, flush=True)
    return {"phase": "shared", "steps_timed": steps, "table": table}


def phase_eval(args: argparse.Namespace) -> dict:
    from emu_dgl.data import load_dataset
    from emu_dgl.evaluation import FilteredEvaluator
    from emu_dgl.models import KGEModel

    device = torch.device(args.device)
    datasets = ["synthetic"] if args.quick else ["wn18rr", "fb15k-237"]
    out: dict = {}
    for name in datasets:
        kg = load_dataset(name)
        known = torch.cat([kg.train, kg.valid, kg.test]).to(device)
        evaluator = FilteredEvaluator(known, kg.num_relations, batch_size=256)
        for decoder in ("distmult", "transe"):
            torch.manual_seed(0)
            model = KGEModel(kg.num_entities, kg.num_relations, decoder=decoder, dim=100)
            model = model.to(device).eval()
            evaluator.evaluate(model, kg.test[:64])  # warm-up
            _sync(device)
            start = time.perf_counter()
            evaluator.evaluate(model, kg.test)
            _sync(device)
            out.setdefault(name, {})[decoder] = {
                "test_seconds": round(time.perf_counter() - start, 4),
                "queries": 2 * len(kg.test),
            }
    return {"phase": "eval", "filtered_test_evaluation": out}


def _random_triples(entities: int, gen: torch.Generator):
    def draw(n: int) -> torch.Tensor:
        columns = [(entities, n), (100, n), (entities, n)]
        return torch.stack([torch.randint(k, (m,), generator=gen) for k, m in columns], dim=1)

    return draw


def phase_scale(args: argparse.Namespace) -> dict:
    from emu_dgl.config import load_config
    from emu_dgl.data import KnowledgeGraph
    from emu_dgl.training.trainer import Trainer

    device = torch.device(args.device)
    sizes = [4_000, 40_000] if args.quick else [40_000, 4_000_000, 40_000_000]
    triples = 20_000 if args.quick else 1_000_000
    out: dict = {}
    for entities in sizes:
        gen = torch.Generator().manual_seed(0)
        draw = _random_triples(entities, gen)
        kg = KnowledgeGraph(
            name=f"random-{entities}",
            entity_names=[f"e{i}" for i in range(entities)],
            relation_names=[f"r{i}" for i in range(100)],
            train=draw(triples),
            valid=draw(100),
            test=draw(100),
        )
        config = load_config(
            None,
            [*_budget(args), "model.name=distmult", "sampler.name=uniform", "sampler.filter=false"]
            + ([] if args.quick else ["model.dim=100"]),
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(config, tmp, kg=kg)
            seconds = time_trainer(trainer, 5 if args.quick else 30, 5)
            row = {"ms_per_step": round(1000 * seconds, 3), "rows_update": trainer.sparse_rows}
        if device.type == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        out[str(entities)] = row
        del trainer, kg
        print(f"scale {entities}: {row}", file=sys.stderr, flush=True)
    return {"phase": "scale", "distmult_emu_step": out}


def phase_runs(args: argparse.Namespace) -> dict:
    """Steps per second of finished runs (their metrics.json), and their sum."""
    rates = {}
    for run in args.runs:
        path = Path(run) / "metrics.json"
        rates[run] = (
            json.loads(path.read_text())["train_steps_per_second"] if path.exists() else None
        )
    done = [r for r in rates.values() if r]
    return {
        "phase": "runs",
        "steps_per_second": rates,
        "aggregate": sum(done),
        "finished": len(done),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["steps", "shared", "eval", "scale", "runs"])
    parser.add_argument("runs", nargs="*", help="run folders (phase runs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU dry run")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    args = parser.parse_args()
    phases = {
        "steps": phase_steps,
        "shared": phase_shared,
        "eval": phase_eval,
        "scale": phase_scale,
        "runs": phase_runs,
    }
    result = phases[args.phase](args)
    result["machine"] = _machine(torch.device(args.device))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
