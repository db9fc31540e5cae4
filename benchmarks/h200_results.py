"""The paper's arms measured on an H200 at commit aaf41b5: copy, tabulate, plot.

Copies the small files of each run (``config.yaml``, ``metrics.jsonl``, and
``metrics.json`` or ``eval_test_killed.json``) into ``DEST/runs/<run>/``, then writes
``DEST/table.md`` (test MRR of the best validated checkpoint, arms side by side) and
``DEST/valid_mrr.png`` (validation MRR against step, one panel per dataset and decoder,
the reference schedule's switch marked). Run again on ``DEST`` alone (``--src DEST/runs``)
to redraw from the copies.

    python benchmarks/h200_results.py --src RAW/runs --dest benchmarks/results/h200-aaf41b5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from emu_dgl.experiments.compare import save_figure
from emu_dgl.files import read_bytes, write_atomic

KEEP = ("config.yaml", "metrics.jsonl", "metrics.json", "eval_test_killed.json")
ARMS = ("uniform-base", "uniform-emu", "sans-base", "sans-emu", "uniform-base-d500")


def describe(run: Path) -> dict:
    """Dataset, decoder, arm, curve and test metrics of one run folder."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    sampler = config["sampler"]["name"]
    arm = f"{sampler}-{'emu' if config['emu']['enabled'] else 'base'}"
    if config["model"]["dim"] != 100:
        arm += f"-d{config['model']['dim']}"
    curve, last_step = [], 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        last_step = max(last_step, record.get("step", 0))
        if record.get("split") == "valid":
            curve.append((record["step"], record["mrr"]))
    finished = (run / "metrics.json").is_file()
    final = json.loads(
        (run / ("metrics.json" if finished else "eval_test_killed.json")).read_text()
    )
    best_step, best_mrr = max(curve, key=lambda point: point[1])
    return {
        "run": run.name,
        "dataset": config["dataset"]["name"],
        "model": config["model"]["name"],
        "arm": arm,
        "max_steps": config["train"]["max_steps"],
        "steps_reached": last_step,
        "finished": finished,
        "best_step": best_step,
        "best_valid_mrr": best_mrr,
        "test_mrr": final["test"]["mrr"],
        "curve": curve,
        "switch": config["train"]["lr_decay_every"] or config["train"]["max_steps"] // 2,
    }


def _groups(runs: list[dict]) -> list[tuple[str, str]]:
    """(dataset, decoder) pairs, WN18RR and DistMult first."""
    return sorted(
        {(r["dataset"], r["model"]) for r in runs},
        key=lambda g: (g[0] != "wn18rr", g[1] != "distmult", g),
    )


def table(runs: list[dict]) -> str:
    groups = _groups(runs)
    arms = [a for a in ARMS if any(r["arm"] == a for r in runs)]
    lines = ["| dataset, decoder | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for dataset, model in groups:
        cells = []
        for arm in arms:
            match = [
                r for r in runs if (r["dataset"], r["model"], r["arm"]) == (dataset, model, arm)
            ]
            cells.append(f"{match[0]['test_mrr']:.3f}" if match else "")
        lines.append(f"| {dataset} {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | arm | steps reached | best step | best valid MRR | valid MRR at the last validation | test MRR |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: r["run"]):
        lines.append(
            f"| {r['run']} | {r['dataset']} {r['model']} {r['arm']} | {r['steps_reached']:,} | {r['best_step']:,} "
            f"| {r['best_valid_mrr']:.3f} | {r['curve'][-1][1]:.3f} (step {r['curve'][-1][0]:,}) | {r['test_mrr']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(runs)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6))
    colours = dict(zip(ARMS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, (dataset, model) in zip(axes, groups, strict=True):
        for r in sorted(
            (r for r in runs if (r["dataset"], r["model"]) == (dataset, model)),
            key=lambda r: ARMS.index(r["arm"]),
        ):
            steps, mrr = zip(*r["curve"], strict=True)
            ax.plot(steps, mrr, marker=".", color=colours[r["arm"]], label=r["arm"])
        switch = runs[0]["switch"]
        ax.axvline(switch, color="grey", linestyle="--", linewidth=1)
        ax.text(
            switch,
            ax.get_ylim()[0],
            " Adagrad -> Adam at lr/10",
            color="grey",
            fontsize=7,
            va="bottom",
        )
        ax.set_title(f"{dataset} {model}", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("validation MRR (filtered, full valid split)")
    fig.suptitle(
        "Paper arms on one H200, emu-dgl at aaf41b5: batch 1000, 256 negatives, 13,000-step budget",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, required=True, help="folder of run folders")
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args()
    runs = []
    for src in sorted(p for p in args.src.iterdir() if (p / "config.yaml").is_file()):
        target = args.dest / "runs" / src.name
        if target.resolve() != src.resolve():
            target.mkdir(parents=True, exist_ok=True)
            for name in KEEP:
                if (src / name).is_file():
                    data = read_bytes(src / name, "run file", follow=True)
                    write_atomic(target / name, data, "copied run file", durable=False)
        runs.append(describe(target))
    write_atomic(args.dest / "table.md", table(runs), "table", durable=False)
    write_atomic(
        args.dest / "curves.json", json.dumps(runs, indent=1) + "\n", "curves", durable=False
    )
    plot(runs, args.dest / "valid_mrr.png")
    print(table(runs))


if __name__ == "__main__":
    main()
