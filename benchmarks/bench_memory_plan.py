"""The memory plan against measured peak memory, at 40k, 1M and 5M entities.

For each graph (a generated power-law graph: 40k entities and 400k triples, 1M and 5M,
5M and 20M, the size of Wikidata5M) and each process count, this script

1. generates the graph once into the dataset cache (``$EMU_DGL_CACHE``, or a temporary
   folder), in a process of its own, so that the run maps it as any later run would;
2. asks ``emu-dgl plan --json`` for the predicted peak resident memory per process;
3. runs ``emu-dgl train`` (``--nproc N``) for ``--steps`` steps with one validation and
   the final evaluation, and samples the peak resident memory (``VmHWM`` of
   ``/proc/PID/status``) of every process of the run, workers included;
4. reports plan, measurement and their relative difference (target: within 15%).

The run: DistMult, d = 100, batch 1000, 256 uniform negatives, EMU on, row-wise Adagrad
with row-wise updates (``train.sparse=true``), the sampled evaluation protocol (500
candidates). Prints one JSON object::

    python benchmarks/bench_memory_plan.py                           # 40k, 1M, 5M; 1 process
    python benchmarks/bench_memory_plan.py --nproc 1,2               # and 2 processes
    python benchmarks/bench_memory_plan.py --sizes 40000:400000 --steps 20

With ``--nproc 2`` each process is one rank; its plan holds half the table and its
optimizer state (the slices a rank allocates when the distributed trainer builds only
its own rows).
"""

from __future__ import annotations

import argparse
import json
import os
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
    "emu.enabled=true",
    "train.batch_size=1000",
    "train.optimizer=rowwise_adagrad",
    "train.sparse=true",  # row-wise updates at every size (auto picks dense below ~1M rows)
    "train.lr=0.1",
    "eval.protocol=sampled",
    "eval.num_negatives=500",
    "train.progress=false",
]


def _emu(*args: str) -> list[str]:
    """The ``emu-dgl`` command line, run by this interpreter."""
    code = "import sys; from emu_dgl.cli import main; sys.argv[0] = 'emu-dgl'; main()"
    return [sys.executable, "-c", code, *args]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _tree(root: int) -> list[int]:
    """``root`` and every descendant process, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _hwm(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return None


def measure_run(args: list[str], env: dict[str, str]) -> tuple[dict[int, int], float, int]:
    """Peak resident memory of each process of the run (pid -> bytes), wall seconds, exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    while process.poll() is None:
        for pid in _tree(process.pid):
            value = _hwm(pid)
            if value is not None:
                peaks[pid] = max(peaks.get(pid, 0), value)
        time.sleep(0.05)
    if process.returncode:
        sys.stderr.write(process.stderr.read().decode(errors="replace")[-3000:])
    return peaks, time.perf_counter() - started, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="40000:400000,1000000:5000000,5000000:20000000",
        help="entities:triples of each generated graph",
    )
    parser.add_argument("--nproc", default="1", help="process counts, e.g. 1,2")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    env = dict(os.environ)
    own_cache = None
    if "EMU_DGL_CACHE" not in env:
        own_cache = tempfile.TemporaryDirectory(prefix="emu-dgl-bench-plan-")
        env["EMU_DGL_CACHE"] = own_cache.name
    rows = []
    with tempfile.TemporaryDirectory(prefix="emu-dgl-bench-plan-runs-") as tmp:
        for size in args.sizes.split(","):
            entities, triples = (int(float(x)) for x in size.split(":"))
            name = f"synthetic:entities={entities},triples={triples}"
            started = time.perf_counter()
            subprocess.run(  # generate and cache the graph, as a first run would
                [
                    sys.executable,
                    "-c",
                    f"from emu_dgl.data import load_dataset; load_dataset({name!r})",
                ],
                env=env,
                check=True,
            )
            generate_s = time.perf_counter() - started
            config = [f"dataset.name={name}", *RUN, f"train.max_steps={args.steps}"]
            config += [f"train.valid_every={args.steps}", f"train.checkpoint_every={args.steps}"]
            for nproc in (int(n) for n in args.nproc.split(",")):
                plan_out = subprocess.run(
                    _emu("plan", "--json", "--nproc", str(nproc), *_sets(config)),
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                plan = json.loads(plan_out)
                out = Path(tmp) / f"run-{entities}-{nproc}"
                launch = ["--nproc", str(nproc)] if nproc > 1 else []
                peaks, wall, code = measure_run(
                    _emu("train", *launch, *_sets(config), "--out", str(out)), env
                )
                ranks = sorted(peaks.values(), reverse=True)[:nproc]  # the workers' (largest)
                measured = max(ranks) if ranks else 0
                metrics = json.loads((out / "metrics.json").read_text()) if code == 0 else {}
                rows.append(
                    {
                        "entities": entities,
                        "triples": triples,
                        "nproc": nproc,
                        "exit_code": code,
                        "plan_peak_mib": round(plan["peak_bytes"] / 2**20),
                        "plan_phases_mib": {k: round(v / 2**20) for k, v in plan["phases"].items()},
                        "plan_parts_mib": {
                            k: round(v["bytes"] / 2**20, 1) for k, v in plan["parts"].items()
                        },
                        "measured_peak_mib": round(measured / 2**20),
                        "measured_peak_mib_per_process": [round(p / 2**20) for p in ranks],
                        "plan_error": round(plan["peak_bytes"] / measured - 1, 4)
                        if measured
                        else None,
                        "run_seconds": round(wall, 1),
                        "steps_per_second": metrics.get("train_steps_per_second"),
                        "generate_seconds": round(generate_s, 1),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if own_cache is not None:
        own_cache.cleanup()
    report = {
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "run": RUN,
        "target": "plan within 15% of the measured peak",
        "rows": rows,
        "all_within_15_percent": all(
            r["plan_error"] is not None and abs(r["plan_error"]) <= 0.15 for r in rows
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
