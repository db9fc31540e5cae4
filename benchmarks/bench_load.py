"""Time loading a knowledge graph from its three TSV files into a KnowledgeGraph plus DGL heterograph.

Prints one JSON object:

- ``cold_s``: parse the TSV files, build the KnowledgeGraph (vocabularies, ids,
  duplicate check), write the processed cache, and build the heterograph with ``to_dgl``;
- ``warm_s``: the same with the processed cache present (hash the files, read the cache,
  ``to_dgl``).

Interpreter start-up and the imports of torch, DGL and pandas are not counted (reported
apart as ``imports_s``). Each repeat uses a fresh, empty cache folder, so every cold run
really parses. ``cold_first_s`` is the first cold run of the process (it also pays
one-time lazy initialisation); ``cold_s`` and ``warm_s`` are medians over the repeats.

``to_dgl_new_process_s`` is what a user's script pays: the first ``to_dgl`` call of a
fresh process (DGL's lazy set-up included; the graph loaded from the cache), the median
of ``--repeats`` new processes; ``to_dgl_s`` is a later call in the same process.

    python benchmarks/bench_load.py --data-dir PATH [--dataset fb15k-237] [--repeats 5]
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


def first_to_dgl(data_dir: str | None, dataset: str, cache: str) -> None:
    """In a new process: load from the cache, then time the process's first ``to_dgl``."""
    from emu_dgl.data import load_dataset

    kg = load_dataset(dataset, data_dir, cache_dir=cache, download=False)
    start = time.perf_counter()
    kg.to_dgl(splits="all")
    print(json.dumps({"first_to_dgl_s": time.perf_counter() - start}))


def to_dgl_new_process(args: argparse.Namespace) -> float:
    """Median seconds of the first ``to_dgl`` in ``args.repeats`` new processes."""
    times = []
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, __file__, "--first-to-dgl", cache, "--dataset", args.dataset]
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        subprocess.run(command, check=True, capture_output=True)  # fills the cache
        for _ in range(args.repeats):
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            times.append(json.loads(done.stdout.strip().splitlines()[-1])["first_to_dgl_s"])
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data root holding <dataset>/")
    parser.add_argument("--dataset", default="fb15k-237")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--first-to-dgl", metavar="CACHE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_to_dgl:
        first_to_dgl(args.data_dir, args.dataset, args.first_to_dgl)
        return

    start = time.perf_counter()
    import pandas  # noqa: F401  (imported here so that its import time is not counted below)
    import torch

    from emu_dgl._dgl import dgl
    from emu_dgl.data import load_dataset

    imports_s = time.perf_counter() - start

    cold, cold_load, warm, warm_load = [], [], [], []
    graph = None
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            kg = load_dataset(args.dataset, args.data_dir, cache_dir=cache, download=False)
            loaded = time.perf_counter()
            graph = kg.to_dgl(splits="all")
            end = time.perf_counter()
            cold.append(end - start)
            cold_load.append(loaded - start)

            start = time.perf_counter()
            kg = load_dataset(args.dataset, args.data_dir, cache_dir=cache, download=False)
            loaded = time.perf_counter()
            graph = kg.to_dgl(splits="all")
            end = time.perf_counter()
            warm.append(end - start)
            warm_load.append(loaded - start)
    assert graph is not None

    print(
        json.dumps(
            {
                "benchmark": "load",
                "dataset": args.dataset,
                "num_entities": kg.num_entities,
                "num_relations": kg.num_relations,
                "num_triples": [len(kg.train), len(kg.valid), len(kg.test)],
                "num_edges": graph.num_edges(),
                "repeats": args.repeats,
                "cold_first_s": round(cold[0], 3),
                "cold_s": round(statistics.median(cold), 3),
                "cold_parse_build_s": round(statistics.median(cold_load), 3),
                "warm_s": round(statistics.median(warm), 3),
                "warm_read_cache_s": round(statistics.median(warm_load), 3),
                "to_dgl_s": round(
                    statistics.median(w - wl for w, wl in zip(warm, warm_load, strict=True)), 3
                ),
                "to_dgl_new_process_s": round(to_dgl_new_process(args), 3),
                "imports_s": round(imports_s, 3),
                "target_cold_s": 2.0,
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "dgl": dgl.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
