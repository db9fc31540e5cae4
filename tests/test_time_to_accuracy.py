"""benchmarks/time_to_accuracy.py: a time-budgeted run writes its curve and the test metrics
of its best validated weights; the report draws the figure and the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "time_to_accuracy.py"


@pytest.mark.slow
def test_a_budgeted_run_writes_its_curve_and_the_report_its_figure(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "quick"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "emu", "--config", str(REPO / "configs/quickstart.yaml"),
         "--set", "train.batch_size=64", "--set", "model.dim=16", "--set", "train.compile=false",
         "--minutes", "0.1",
         "--every", "2", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "curve.json").read_text())
    points = record["points"]
    assert len(points) >= 2
    seconds = [p["train_seconds"] for p in points]
    assert seconds == sorted(seconds) and seconds[-1] >= 6.0  # the whole budget, validated
    assert all(0.0 <= p["valid_mrr"] <= 1.0 for p in points)
    assert record["best"]["valid_mrr"] == max(p["valid_mrr"] for p in points)
    assert 0.0 < record["test"]["mrr"] <= 1.0
    assert points[-1]["valid_mrr"] > points[0]["valid_mrr"] or points[0]["valid_mrr"] > 0.3
    report = subprocess.run(
        [sys.executable, str(SCRIPT), "report", str(out), "--figure", str(tmp_path / "f.png"),
         "--table", str(tmp_path / "t.md")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert "| quickstart |" in (tmp_path / "t.md").read_text()


def test_the_reference_schedule_is_refused_for_a_time_budget(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "emu", "--config",
         str(REPO / "configs/paper/wn18rr/distmult.yaml"), "--minutes", "1",
         "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "add --set train.schedule=none" in done.stderr
