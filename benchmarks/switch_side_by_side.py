"""Validation curves across the reference schedule's switch: the published EMU-KG code
next to emu-dgl, one panel per arm.

Inputs: the published code's ``train.log`` of each arm (its ``Valid MRR at step N``
lines; the log's last such line, the best model evaluated again after training, is
dropped), and the ``results.json`` of ``emu-dgl compare`` runs of the same arms (one or
more, each with a label). The published loop validates after the update of step
index ``s``, i.e. after ``s + 1`` updates; emu-dgl's step ``s`` is after ``s`` updates;
the figure's x axis counts updates.

    python benchmarks/switch_side_by_side.py --switch 1000 --out benchmarks/results/switch-collapse \\
        --published uniform-base=PUB/uniform-base/train.log --published uniform-emu=PUB/uniform-emu/train.log \\
        --ours "reference schedule=OURS/reference/results.json" --ours "Adagrad only=OURS/adagrad/results.json"
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from emu_dgl.experiments.compare import save_figure
from emu_dgl.files import read_bytes, write_atomic

VALID = re.compile(r"Valid MRR at step (\d+): ([0-9.]+)")


def published_curve(log: Path) -> list[tuple[int, float]]:
    """(updates, valid MRR) of the training loop's validations, in order."""
    points = [(int(m.group(1)), float(m.group(2))) for m in VALID.finditer(log.read_text())]
    seen: set[int] = set()
    curve = []
    for step, mrr in points:
        if step not in seen:  # the re-evaluation of the best model repeats the last step
            seen.add(step)
            curve.append((step + 1, mrr))
    return curve


def labelled(pairs: list[str]) -> list[tuple[str, Path]]:
    out = []
    for pair in pairs:
        label, _, path = pair.partition("=")
        out.append((label, Path(path)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--published", action="append", default=[], metavar="ARM=TRAIN_LOG")
    parser.add_argument("--ours", action="append", default=[], metavar="LABEL=RESULTS_JSON")
    parser.add_argument(
        "--switch", type=int, required=True, help="updates before the switch to Adam"
    )
    parser.add_argument("--title", default="WN18RR DistMult: batch 256, 64 negatives, 2,000 steps")
    parser.add_argument("--ylabel", default="validation MRR (filtered, full valid split)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for arm, log in labelled(args.published):
        curves.setdefault(arm, {})["published EMU-KG code, reference schedule"] = published_curve(
            log
        )
        target = args.out / "published" / arm / "train.log"
        if target.resolve() != log.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, read_bytes(log, "log", follow=True), "copied log", durable=False)
    for label, path in labelled(args.ours):
        result = json.loads(path.read_text())
        for run in result["runs"]:
            curves.setdefault(run["arm"], {})[f"emu-dgl, {label}"] = [
                tuple(p) for p in run["curve"]
            ]
        target = (
            args.out
            / "emu-dgl"
            / re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            / "results.json"
        )
        if target.resolve() != path.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            data = read_bytes(path, "results", follow=True)
            write_atomic(target, data, "copied results", durable=False)
    write_atomic(
        args.out / "curves.json", json.dumps(curves, indent=1) + "\n", "curves", durable=False
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(curves)
    fig, axes = plt.subplots(1, len(arms), figsize=(5.2 * len(arms), 3.9), sharey=True)
    axes = [axes] if len(arms) == 1 else list(axes)
    published = ("black", "-", "s")
    ours = [("tab:blue", "-", "o"), ("tab:orange", "--", "^"), ("tab:green", ":", "v")]
    for ax, arm in zip(axes, arms, strict=True):
        own = iter(ours)
        for label, curve in curves[arm].items():
            colour, line, marker = published if label.startswith("published") else next(own)
            # the published loop also validates after its first update (MRR ~0.001): not drawn
            steps, mrr = zip(*[(x, y) for x, y in curve if x >= 100], strict=True)
            ax.plot(
                steps, mrr, color=colour, linestyle=line, marker=marker, markersize=4, label=label
            )
        ax.axvline(args.switch, color="grey", linestyle="--", linewidth=1)
        ax.text(
            args.switch,
            0.97,
            " switch: Adagrad -> Adam at lr/10",
            color="grey",
            fontsize=7,
            va="top",
            transform=ax.get_xaxis_transform(),
        )
        ax.set_title(arm, fontsize=10)
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel(args.ylabel)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, args.out / "valid_mrr.png", dpi=110)
    plt.close(fig)
    for arm in arms:
        for label, curve in curves[arm].items():
            print(f"{arm:14s} {label:45s} " + " ".join(f"{s}:{m:.3f}" for s, m in curve))


if __name__ == "__main__":
    main()
