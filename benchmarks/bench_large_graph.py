"""Large generated graphs on one machine: Wikidata5M's size, and a 20M-entity table in bfloat16.

Rows of the table (each run in a fresh process, on a generated power-law graph that is
cached before the run, as any run after the first one finds it):

* ``40k``: 40k entities, 400k triples: the reference step time;
* ``wikidata5m-size``: 5M entities, 20M triples (Wikidata5M: 4.6M and 20.6M), d = 100,
  float32: load, ``--steps`` training steps, the sampled evaluation protocol (500
  candidates) on valid and test; target: step time within 1.3x of ``40k``'s;
* ``20m-bfloat16``: 20M entities, 20M triples, d = 100, ``model.dtype=bfloat16``: the
  table takes 3.7 GiB instead of 7.5 GiB. The row records the plans of a 6 GiB limit:
  float32 on one process, bfloat16 on one and on two processes, and the measured peak of
  the bfloat16 run (one process; ``--nproc 2`` adds the two-process run).

Every run: DistMult, batch 1000, 256 uniform negatives, EMU on, row-wise Adagrad with
row-wise updates. Step time is the median of the logged rates after the first log
(``train.log_every=10``). Prints one JSON object::

    python benchmarks/bench_large_graph.py                  # all rows, 200 steps
    python benchmarks/bench_large_graph.py --rows 40k,wikidata5m-size --steps 100
    python benchmarks/bench_large_graph.py --nproc 2         # also the two-process bfloat16 run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = [
    "model.name=distmult",
    "model.dim=100",
    "sampler.name=uniform",
    "sampler.num_negatives=256",
    "train.batch_size=1000",
    "train.optimizer=rowwise_adagrad",
    "train.sparse=true",
    "train.log_every=10",
    "eval.protocol=sampled",
    "eval.num_negatives=500",
    "train.progress=false",
]
ROWS = {
    "40k": ("synthetic:entities=40000,triples=400000", []),
    "wikidata5m-size": ("synthetic:entities=5000000,triples=20000000", []),
    "20m-bfloat16": ("synthetic:entities=20000000,triples=20000000", ["model.dtype=bfloat16"]),
}
LIMIT = 6 * 2**30  # the memory limit the bfloat16 row is planned against


def _emu(*args: str) -> list[str]:
    code = "import sys; from emu_dgl.cli import main; sys.argv[0] = 'emu-dgl'; main()"
    return [sys.executable, "-c", code, *args]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _plan(config: list[str], nproc: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        _emu("plan", "--json", "--nproc", str(nproc), *_sets(config)),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    plan = json.loads(out)
    return {
        "peak_gib": round(plan["peak_bytes"] / 2**30, 2),
        "all_processes_gib": round(plan["machine_peak_bytes"] / 2**30, 2),
        "table_gib": round(plan["parts"]["entity table"]["bytes"] / 2**30, 2),
        "fits_6_gib": plan["machine_peak_bytes"] <= LIMIT,
    }


def _run(config: list[str], nproc: int, out: Path, env: dict[str, str]) -> dict:
    """A training run; per process peak memory, wall time, step rate and metrics."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_memory_plan import measure_run  # the same process-tree sampling

    launch = ["--nproc", str(nproc)] if nproc > 1 else []
    peaks, wall, code = measure_run(_emu("train", *launch, *_sets(config), "--out", str(out)), env)
    result: dict = {"exit_code": code, "wall_s": round(wall, 1)}
    result["peak_gib_per_process"] = [
        round(p / 2**30, 2) for p in sorted(peaks.values(), reverse=True)[:nproc]
    ]
    if code:
        return result
    metrics = json.loads((out / "metrics.json").read_text())
    rates = [
        r["steps_per_second"]
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if "steps_per_second" in r
    ]
    steady = rates[1:] or rates
    result.update(
        {
            "step_s": round(1 / statistics.median(steady), 4),
            "preprocess_s": round(metrics["preprocess_seconds"], 1),
            "valid_mrr_sampled": round(metrics["valid"]["mrr"], 4),
            "test_mrr_sampled": round(metrics["test"]["mrr"], 4),
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--nproc", type=int, default=1, help="2: also the two-process bfloat16 run")
    args = parser.parse_args()
    env = dict(os.environ)
    own_cache = None
    if "EMU_DGL_CACHE" not in env:
        own_cache = tempfile.TemporaryDirectory(prefix="emu-dgl-bench-large-")
        env["EMU_DGL_CACHE"] = own_cache.name
    table = {}
    with tempfile.TemporaryDirectory(prefix="emu-dgl-bench-large-runs-") as tmp:
        for row in args.rows.split(","):
            name, extra = ROWS[row]
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"from emu_dgl.data import load_dataset; load_dataset({name!r})",
                ],
                env=env,
                check=True,
            )
            entry: dict = {
                "dataset": name,
                "generate_and_cache_s": round(time.perf_counter() - started, 1),
            }
            config = [f"dataset.name={name}", *RUN, *extra, f"train.max_steps={args.steps}"]
            config.append(f"train.valid_every={args.steps}")
            if row == "20m-bfloat16":
                float32 = [c for c in config if c != "model.dtype=bfloat16"]
                entry["plan_float32_1_process"] = _plan(float32, 1, env)
                entry["plan_bfloat16_1_process"] = _plan(config, 1, env)
                entry["plan_bfloat16_2_processes"] = _plan(config, 2, env)
            else:
                entry["plan_1_process"] = _plan(config, 1, env)
            entry["run_1_process"] = _run(config, 1, Path(tmp) / f"{row}-1", env)
            if row == "20m-bfloat16" and args.nproc > 1:
                entry[f"run_{args.nproc}_processes"] = _run(
                    config, args.nproc, Path(tmp) / f"{row}-{args.nproc}", env
                )
            table[row] = entry
            print(json.dumps({row: entry}), file=sys.stderr, flush=True)
    if own_cache is not None:
        own_cache.cleanup()
    ratio = None
    if "40k" in table and "wikidata5m-size" in table:
        small = table["40k"]["run_1_process"].get("step_s")
        large = table["wikidata5m-size"]["run_1_process"].get("step_s")
        ratio = round(large / small, 3) if small and large else None
    report = {
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "run": RUN,
        "step_time_ratio_5m_vs_40k": ratio,
        "target_step_time_ratio": 1.3,
        "rows": table,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
