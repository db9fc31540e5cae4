"""Collect the comparisons of ``cpu_protocol.sh`` into ``benchmarks/results/``.

For every comparison folder of the protocol's output this copies ``table.md`` and
``results.json`` (curves included, no checkpoints), draws ``valid_mrr.png``, and
writes one ``SUMMARY.md`` with the test metrics of every arm side by side.

    python benchmarks/summarize_protocol.py PROTOCOL_OUT benchmarks/results/cpu-protocol
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from emu_dgl.experiments.compare import plot_curves


def arm_stats(result: dict, arm: str, split: str, key: str) -> tuple[float, float, int]:
    values = [r[split][key] for r in result["runs"] if r["arm"] == arm]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread, len(values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("protocol_out", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()

    args.dest.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The paper's four arms at equal budget (CPU protocol)",
        "",
        "Produced by `bash benchmarks/cpu_protocol.sh OUT` (budget and settings in that script) and",
        "`python benchmarks/summarize_protocol.py OUT benchmarks/results/cpu-protocol`.",
        "Filtered MRR and Hits@10 on the full test split, both sides; mean ± sample std where",
        "several seeds ran. Wall time is per run (training plus evaluation).",
        "",
        "| comparison | arm | test MRR | test Hits@1 | test Hits@10 | valid MRR | best step | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_wall = 0.0
    machine = ""
    for folder in sorted(p for p in args.protocol_out.iterdir() if (p / "results.json").is_file()):
        result = json.loads((folder / "results.json").read_text())
        machine = result.get("machine", machine)
        target = args.dest / folder.name
        target.mkdir(exist_ok=True)
        for name in ("results.json", "table.md"):
            shutil.copy(folder / name, target / name)
        plot_curves(result, target / "valid_mrr.png")
        for arm in result["arms"]:
            cells = []
            for split, key in (
                ("test", "mrr"),
                ("test", "hits@1"),
                ("test", "hits@10"),
                ("valid", "mrr"),
            ):
                mean, spread, count = arm_stats(result, arm, split, key)
                cells.append(f"{mean:.4f} ± {spread:.4f}" if count > 1 else f"{mean:.4f}")
            runs = [r for r in result["runs"] if r["arm"] == arm]
            best = "/".join(str(r["best_step"]) for r in runs)
            wall = statistics.fmean(r["wall_seconds"] for r in runs)
            total_wall += sum(r["wall_seconds"] for r in runs)
            lines.append(
                f"| {folder.name} | {arm} | " + " | ".join(cells) + f" | {best} | {wall:.0f} |"
            )
    lines += [
        "",
        f"Machine: {machine}. Sum of the per-run wall times listed: {total_wall / 60:.1f} minutes (a reused run is listed twice).",
        "",
    ]
    (args.dest / "SUMMARY.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
