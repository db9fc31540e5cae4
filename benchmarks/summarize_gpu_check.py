"""Summarise the files ``benchmarks/gpu_check.sh`` wrote into OUT: ``OUT/summary.json``,
and a markdown report on stdout.

    python benchmarks/summarize_gpu_check.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emu_dgl.files import write_atomic


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "off" in entry:
        return f"off ({entry['off']})"
    return f"{entry['ms_per_step']:.3f} ms ({entry['positives_per_second']:,} pos/s)"


def main() -> None:
    out = Path(sys.argv[1])
    summary: dict = {
        "phases": (out / "phases.txt").read_text().splitlines()
        if (out / "phases.txt").exists()
        else [],
        "env": (out / "env.txt").read_text().splitlines()[:1] if (out / "env.txt").exists() else [],
    }
    tests = (
        (out / "tests.out").read_text().strip().splitlines() if (out / "tests.out").exists() else []
    )
    summary["tests"] = tests[-1] if tests else "not run"
    for name in ("steps", "shared", "eval", "scale"):
        summary[name] = _json(out / f"{name}.out")
    alone, four = _json(out / "runs_alone.json"), _json(out / "runs_4.json")
    summary["runs"] = {"alone": alone, "four": four}
    if alone and four and alone.get("aggregate"):
        summary["runs"]["aggregate_over_alone"] = round(four["aggregate"] / alone["aggregate"], 2)
    write_atomic(
        out / "summary.json", json.dumps(summary, indent=2) + "\n", "summary", durable=False
    )

    lines = [f"# GPU check: {' '.join(summary['env'])}", "", f"Tests: {summary['tests']}", ""]
    lines += ["Phases: " + "; ".join(summary["phases"]), ""]
    steps = summary["steps"]
    if steps:
        lines += ["| decoder | arm | eager | CUDA graph |", "|---|---|---|---|"]
        for decoder, arms in steps["table"].items():
            for arm, row in arms.items():
                lines.append(
                    f"| {decoder} | {arm} | {_cell(row.get('eager'))} | {_cell(row.get('graph'))} |"
                )
        lines.append("")
    if summary["shared"]:
        lines += ["| decoder | step | eager | CUDA graph |", "|---|---|---|---|"]
        for decoder, kinds in summary["shared"]["table"].items():
            for kind, row in kinds.items():
                lines.append(
                    f"| {decoder} | {kind} | {_cell(row.get('eager'))} | {_cell(row.get('graph'))} |"
                )
        lines.append("")
    if summary["eval"]:
        lines += ["| dataset | decoder | filtered test evaluation |", "|---|---|---|"]
        for dataset, decoders in summary["eval"]["filtered_test_evaluation"].items():
            for decoder, row in decoders.items():
                lines.append(
                    f"| {dataset} | {decoder} | {row['test_seconds']} s ({row['queries']} queries) |"
                )
        lines.append("")
    if summary["scale"]:
        lines += ["| entities | DistMult EMU step | rows | peak memory |", "|---|---|---|---|"]
        for entities, row in summary["scale"]["distmult_emu_step"].items():
            lines.append(
                f"| {int(entities):,} | {row['ms_per_step']} ms | {row['rows_update']} | "
                f"{row.get('peak_gib', '-')} GiB |"
            )
        lines.append("")
    runs = summary["runs"]
    if alone and four:
        lines.append(
            f"Paper runs: one alone {alone['aggregate']:.1f} steps/s; "
            f"{four['finished']} at once {four['aggregate']:.1f} steps/s in total "
            f"({runs.get('aggregate_over_alone', '-')}x)."
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
