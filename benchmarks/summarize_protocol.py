"""Collect the comparisons of a protocol run (``paper_protocol.sh``, ``cpu_protocol.sh``).

For every comparison folder of the protocol's output this copies ``table.md`` and
``results.json`` (curves included, no checkpoints), draws ``valid_mrr.png``, and
writes ``SUMMARY.md`` with the test metrics of every arm side by side and ``table.md``,
the README's table: test MRR of every dataset and decoder (rows) and arm (columns),
mean ± sample standard deviation where several seeds ran, the best arm in bold.

    python benchmarks/summarize_protocol.py PROTOCOL_OUT benchmarks/results/cpu-protocol
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from emu_dgl.experiments.compare import plot_curves
from emu_dgl.files import read_bytes, write_atomic


def arm_stats(result: dict, arm: str, split: str, key: str) -> tuple[float, float, int]:
    values = [r[split][key] for r in result["runs"] if r["arm"] == arm]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread, len(values)


def _cell(mean: float, spread: float, count: int) -> str:
    return f"{mean:.3f} ± {spread:.3f}" if count > 1 else f"{mean:.3f}"


def readme_table(results: dict[str, dict]) -> str:
    """Test MRR, one row per comparison, one column per arm (first-seen order)."""
    arms: list[str] = []
    for result in results.values():
        arms += [arm for arm in result["arms"] if arm not in arms]
    lines = ["| comparison | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for name, result in results.items():
        stats = {arm: arm_stats(result, arm, "test", "mrr") for arm in result["arms"]}
        best = max(stats, key=lambda arm: stats[arm][0])
        seeds = max(count for _, _, count in stats.values())
        cells = []
        for arm in arms:
            if arm not in stats:
                cells.append("")
                continue
            text = _cell(*stats[arm])
            cells.append(f"**{text}**" if arm == best and len(stats) > 1 else text)
        label = f"{name} ({seeds} seeds)" if seeds > 1 else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("protocol_out", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()

    args.dest.mkdir(parents=True, exist_ok=True)
    folders = sorted(
        (p for p in args.protocol_out.iterdir() if (p / "results.json").is_file()),
        key=lambda p: (not p.name.startswith("wn18rr"), p.name),
    )
    results = {p.name: json.loads((p / "results.json").read_text()) for p in folders}
    budgets = {" ".join(r["base_overrides"]) for r in results.values()}
    lines = [
        "# The paper's arms at equal budget",
        "",
        "Produced by a protocol script (`benchmarks/paper_protocol.sh` or `benchmarks/cpu_protocol.sh`)",
        f"and `python benchmarks/summarize_protocol.py OUT {args.dest}`.",
        "Filtered MRR and Hits@10 on the full test split, both sides; mean ± sample std where",
        "several seeds ran. Wall time is per run (training plus evaluation).",
        "Settings of every run besides its config and arm: "
        + "; ".join(f"`{b}`" for b in sorted(budgets))
        + ".",
        "",
        "| comparison | arm | test MRR | test Hits@1 | test Hits@10 | valid MRR | best step | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_wall = 0.0
    machine = ""
    for folder in folders:
        result = results[folder.name]
        machine = result.get("machine", machine)
        target = args.dest / folder.name
        target.mkdir(exist_ok=True)
        for name in ("results.json", "table.md"):  # written, never through a planted link
            data = read_bytes(folder / name, "comparison file", follow=True)
            write_atomic(target / name, data, "summary file", durable=False)
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
    write_atomic(args.dest / "SUMMARY.md", "\n".join(lines), "summary file", durable=False)
    write_atomic(args.dest / "table.md", readme_table(results), "summary file", durable=False)
    print("\n".join(lines))
    print(readme_table(results))


if __name__ == "__main__":
    main()
