"""Loading a 20M-triple TSV: the first (parsing) load, the cached load, and the memory a
second process adds when it loads the same cached dataset while the first one holds it.

The dataset is generated into a temporary folder (never the repository or a data root):
``--triples`` training lines over ``--entities`` entities named like Wikidata's (``Q`` and
digits; ``--long-names`` gives 20-byte names, which take the hashed path), ``--relations``
relations, and 5,000 valid and test lines each. Every measurement runs in a fresh
process:

* ``first_load``: no cache; the wall and CPU seconds of ``load_dataset`` (read, parse,
  number, build the filter indexes, write the cache) and triples per second;
* ``cached_load``: the same call once the cache exists (hash the files, map the store,
  check its checksums);
* ``second_process``: process A loads the cached dataset and reads every page of its
  arrays (as training and evaluation do), then holds it; process B then does the same.
  Each reports its resident memory (RSS) and its private memory (USS: private clean +
  private dirty pages of ``/proc/self/smaps_rollup``) before and after. The memory B
  adds to the machine is its USS growth (its RSS also counts the mapped pages it shares
  with A); ``added_ratio`` = B's USS growth / A's RSS growth. Target: below 0.1.

Targets (issue: "Graphs that outgrow one machine's memory"): first load >= 1M triples/s,
cached load < 5 s, ``added_ratio`` < 0.1. Prints one JSON object; timings on a shared
machine depend on its load (``loadavg`` is recorded)::

    python benchmarks/bench_data_scale.py                     # 20M triples, 5M entities
    python benchmarks/bench_data_scale.py --triples 2000000 --entities 500000
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

import numpy as np


def _digits(ids: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((ids[:, None] // powers) % 10 + ord("0")).astype(np.uint8)


def _lines(h: np.ndarray, r: np.ndarray, t: np.ndarray, long: bool) -> bytes:
    """``Q<digits>\\tP<digits>\\tQ<digits>\\n`` lines built as one byte array (no Python loop)."""
    n = len(h)

    def column(byte: int) -> np.ndarray:
        return np.full((n, 1), byte, dtype=np.uint8)

    pad = [column(ord("-"))] * 11 if long else []  # 20-byte entity names: the hashed path
    parts = [column(ord("Q")), *pad, _digits(h, 8), column(9), column(ord("P")), _digits(r, 4)]
    parts += [column(9), column(ord("Q")), *pad, _digits(t, 8), column(10)]
    return np.concatenate(parts, axis=1).tobytes()


def generate(folder: Path, triples: int, entities: int, relations: int, long: bool) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", triples), ("valid", 5000), ("test", 5000)):
        with open(folder / f"{split}.txt", "wb") as out:
            for start in range(0, count, 2_000_000):
                m = min(2_000_000, count - start)
                h, t = rng.integers(0, entities, m), rng.integers(0, entities, m)
                out.write(_lines(h, rng.integers(0, relations, m), t, long))


# ---------------------------------------------------------------- child processes
def _memory() -> dict[str, float]:
    """RSS, USS (private pages) and PSS of this process, MiB."""
    fields: dict[str, float] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0]) / 1024
    return {
        "rss_mib": fields["Rss"],
        "uss_mib": fields["Private_Clean"] + fields["Private_Dirty"],
        "pss_mib": fields["Pss"],
    }


def _touch(kg: object) -> int:
    """Read every page of the graph's arrays (what training and evaluation read)."""
    total = 0
    for tensor in (kg.train, kg.valid, kg.test, kg.filter_keys()):  # type: ignore[attr-defined]
        total += int(tensor.sum())
    for side in ("head", "tail"):
        total += sum(int(t.sum()) for t in kg.answer_keys(side))  # type: ignore[attr-defined]
    names = kg.entity_names  # type: ignore[attr-defined]
    if hasattr(names, "blob"):
        total += int(names.blob.sum()) + int(names.offsets.sum())
    return total


def child(folder: str, cache: str, mode: str, hold: str | None) -> None:
    import torch  # noqa: F401  (imported before the measurement, as a training run has it)

    from emu_dgl.data import load_dataset

    before = _memory()
    wall, cpu = time.perf_counter(), time.process_time()
    kg = load_dataset(folder, cache=mode != "nocache", cache_dir=cache)
    result = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "triples": len(kg.train) + len(kg.valid) + len(kg.test),
        "entities": kg.num_entities,
        "before": before,
        "after_load": _memory(),
    }
    _touch(kg)
    result["after_touch"] = _memory()
    result["peak_rss_mib"] = (
        int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    )
    print(json.dumps(result), flush=True)
    if hold:  # keep the graph mapped until told to go
        while not Path(hold).exists():
            time.sleep(0.2)


def _run(folder: Path, cache: Path, mode: str, hold: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, __file__, "--child", mode, str(folder), str(cache)]
    if hold is not None:
        args += ["--hold", str(hold)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"a child process failed (exit {process.wait()})")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triples", type=int, default=20_000_000)
    parser.add_argument("--entities", type=int, default=5_000_000)
    parser.add_argument("--relations", type=int, default=1000)
    parser.add_argument("--long-names", action="store_true")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "FOLDER", "CACHE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--hold", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[1], args.child[2], args.child[0], args.hold)
        return
    with tempfile.TemporaryDirectory(prefix="emu-dgl-bench-data-") as tmp:
        folder, cache = Path(tmp) / "wikidata-like", Path(tmp) / "cache"
        started = time.perf_counter()
        generate(folder, args.triples, args.entities, args.relations, args.long_names)
        generate_s = time.perf_counter() - started
        file_mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        load_before = os.getloadavg()
        first = _result(_run(folder, cache, "first"))
        cached = _result(_run(folder, cache, "cached"))
        hold = Path(tmp) / "release"
        a = _run(folder, cache, "cached", hold)
        first_holder = _result(a)
        b = _run(folder, cache, "cached", hold)
        second = _result(b)
        hold.touch()
        a.wait(), b.wait()

    def grown(r: dict, key: str) -> float:
        return r["after_touch"][key] - r["before"][key]

    added = grown(second, "uss_mib")
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_1_5_15": [round(x, 2) for x in load_before],
        "dataset": {
            "triples": first["triples"],
            "entities": first["entities"],
            "file_mib": round(file_mib, 1),
            "long_names": args.long_names,
            "generate_s": round(generate_s, 1),
        },
        "first_load": {
            "wall_s": round(first["wall_s"], 2),
            "cpu_s": round(first["cpu_s"], 2),
            "triples_per_s": round(first["triples"] / first["wall_s"]),
            "triples_per_cpu_s": round(first["triples"] / first["cpu_s"]),
            "peak_rss_mib": round(first["peak_rss_mib"]),
            "target_triples_per_s": 1_000_000,
        },
        "cached_load": {
            "wall_s": round(cached["wall_s"], 2),
            "cpu_s": round(cached["cpu_s"], 2),
            "target_s": 5.0,
        },
        "second_process": {
            "first_rss_growth_mib": round(grown(first_holder, "rss_mib")),
            "second_rss_growth_mib": round(grown(second, "rss_mib")),
            "second_uss_growth_mib": round(added),
            "second_pss_growth_mib": round(grown(second, "pss_mib")),
            "added_ratio": round(added / max(grown(first_holder, "rss_mib"), 1e-9), 4),
            "target_ratio": 0.1,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
