"""Peak memory per process of one run on 1 and on N processes, for a large generated graph.

Each configuration is a whole run in fresh processes: the dataset
``synthetic:entities=E,triples=T`` loaded by every process (the generator's cache is
filled first, once), the trainer built, ``--steps`` steps with a sharded checkpoint
half-way and at the end, and the final evaluation with the sampled protocol. Per
process it reports, in MiB:

* ``table_and_state``: the bytes of this process's entity rows and their optimizer
  state (exact, from the tensors): the part the sharded table controls;
* ``after_build``: resident memory once the trainer is built (data, table, state);
* ``peak``: the process's peak resident memory over the whole run (``VmHWM``);

and, for N processes, each rank's peak as a share of the one-process peak. Prints one
JSON object.

    python benchmarks/bench_distributed_memory.py                         # 2M entities, 8M triples
    python benchmarks/bench_distributed_memory.py --entities 5000000 --triples 20000000
    python benchmarks/bench_distributed_memory.py --nproc 1,2,4 --optimizer rowwise_adagrad
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status(key: str) -> int:
    """A ``/proc/self/status`` entry (kB) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _settings(args: argparse.Namespace) -> list[str]:
    return [
        f"dataset.name=synthetic:entities={args.entities},triples={args.triples}",
        "model.name=distmult",
        f"model.dim={args.dim}",
        "sampler.name=uniform",
        "sampler.num_negatives=256",
        "train.batch_size=1000",
        f"train.optimizer={args.optimizer}",
        f"train.max_steps={args.steps}",
        f"train.checkpoint_every={max(1, args.steps // 2)}",
        "train.valid_every=0",
        "train.log_every=5",
        "train.progress=false",
        "train.device=cpu",
        "eval.protocol=sampled",
        "eval.num_negatives=500",
    ]


def _table_and_state(trainer: object) -> int:
    """Bytes of the entity rows this process holds and of their optimizer state."""
    import torch

    weight = trainer.model.entity.weight  # type: ignore[attr-defined]
    state = trainer.optimizer.state.get(weight, {})  # type: ignore[attr-defined]
    tensors = [weight, *(v for v in state.values() if isinstance(v, torch.Tensor))]
    return sum(t.numel() * t.element_size() for t in tensors)


def _run(rank: int, world: int, out: str, settings: list[str]) -> None:
    """One process's part of the run; writes its figures to ``out/<rank>.json``."""
    import torch

    from emu_dgl.config import load_config

    if world > 1:
        from emu_dgl.distributed.trainer import DistributedTrainer as Trainer
    else:
        from emu_dgl.training.trainer import Trainer
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    mib = 2**20
    start = _status("VmRSS")
    began = time.perf_counter()
    trainer = Trainer(load_config(None, settings), Path(out) / "run")
    built = _status("VmRSS")
    metrics = trainer.fit()
    figures = {
        "rows": int(trainer.model.entity.weight.shape[0]),
        "before_mib": start / mib,
        "table_and_state_mib": _table_and_state(trainer) / mib,
        "after_build_mib": built / mib,
        "peak_mib": _status("VmHWM") / mib,
        "seconds": time.perf_counter() - began,
        "test_mrr_sampled": metrics["test"]["mrr"],
    }
    (Path(out) / f"{rank}.json").write_text(json.dumps(figures))


def _one(nproc: int, settings: list[str]) -> list[dict]:
    """Figures of every process of one run on ``nproc`` processes (run in this process's
    children, so that each peak is that process's own)."""
    with tempfile.TemporaryDirectory(prefix="emu-dgl-bench-") as out:
        if nproc == 1:
            code = (
                "import sys, json; sys.path.insert(0, sys.argv[1]); "
                "from bench_distributed_memory import _run; "
                "_run(0, 1, sys.argv[2], json.loads(sys.argv[3]))"
            )
            here = str(Path(__file__).parent)
            subprocess.run(
                [sys.executable, "-c", code, here, out, json.dumps(settings)], check=True
            )
        else:
            from emu_dgl.config import load_config
            from emu_dgl.distributed import run_workers
            from emu_dgl.distributed.launch import _admit

            config = load_config(None, settings)  # admitted as the launcher admits a run
            with _admit(config, Path(out) / "run", nproc, resume=False, allow_nonempty=False):
                run_workers(nproc, _run, out, settings)
        return [json.loads((Path(out) / f"{r}.json").read_text()) for r in range(nproc)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=2_000_000)
    parser.add_argument("--triples", type=int, default=8_000_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--optimizer", default="adagrad", choices=["adagrad", "adam", "rowwise_adagrad"]
    )
    parser.add_argument("--nproc", default="1,2", help="process counts, e.g. 1,2,4 (1 first)")
    args = parser.parse_args()
    settings = _settings(args)

    from emu_dgl.data import load_dataset

    load_dataset(settings[0].split("=", 1)[1])  # generate and cache the graph once
    counts = [int(n) for n in args.nproc.split(",")]
    runs = {n: _one(n, settings) for n in counts}
    one = runs[1][0]["peak_mib"] if 1 in runs else None
    result = {
        "what": "peak resident memory per process of a whole run (load, build, steps, "
        "sharded checkpoints, sampled evaluation)",
        "graph": f"synthetic:entities={args.entities},triples={args.triples}",
        "model": f"distmult d={args.dim}, {args.optimizer}, batch 1000, 256 negatives",
        "steps": args.steps,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg()[0],
        "runs": {
            str(n): {
                "per_process": ranks,
                "peak_share_of_one_process": (
                    [r["peak_mib"] / one for r in ranks] if one is not None else None
                ),
                "table_and_state_share": (
                    [r["table_and_state_mib"] / runs[1][0]["table_and_state_mib"] for r in ranks]
                    if one is not None
                    else None
                ),
            }
            for n, ranks in runs.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
