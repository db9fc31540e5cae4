"""How long a comparison will take: its planned steps at once, an estimate after the first
validation of any of its runs (the pace of that run, setup and validation included)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emu_dgl.errors import EmuDglError
from emu_dgl.training.run import METRICS_LOG

__all__ = ["Pace", "duration"]


def duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Pace:
    """Says the planned training steps of ``steps`` (one entry per pending run, trained up to
    ``jobs`` at a time) at once, and the estimate once :meth:`observe` first hears of a
    validation."""

    def __init__(self, steps: list[int], jobs: int, say: Callable[[str], object]) -> None:
        self.total = sum(max(s, 0) for s in steps)
        self.lanes = max(1, min(jobs, len(steps)))
        self.say = say
        self.done = not steps
        if steps:
            at_once = f", {self.lanes} at a time" if self.lanes > 1 else ""
            say(f"planned: {self.total:,} training steps in {len(steps)} run(s){at_once}")

    def observe(self, steps: int, seconds: float) -> None:
        """A run's first validation came ``steps`` steps and ``seconds`` after it started."""
        if self.done or steps <= 0:
            return
        self.done = True
        per_step = seconds / steps
        self.say(
            f"estimate: about {duration(self.total * per_step / self.lanes)} for all "
            f"{self.total:,} steps, at the first run's pace up to its first validation "
            f"({per_step:.3g} s per step, setup and validation included; arms differ in cost, "
            "final evaluations come on top)"
        )

    def hook(self, start_step: int) -> Callable[[dict[str, Any]], None]:
        """A ``metrics.jsonl`` hook for a run trained in this process from now on, from
        ``start_step`` (a resumed run's checkpoint)."""
        started = time.perf_counter()

        def on_record(record: dict[str, Any]) -> None:
            if record.get("split") == "valid" and isinstance(record.get("step"), int):
                self.observe(record["step"] - start_step, time.perf_counter() - started)

        return on_record

    def poll(self, run_dir: Path, start_step: int, started: float) -> None:
        """A run trained in a child process since ``started`` (``time.perf_counter``): look
        for its first validation in its ``metrics.jsonl``."""
        if self.done:
            return
        from emu_dgl.files import read_bytes

        try:  # no link followed, as every read of a run's files
            text = read_bytes(Path(run_dir) / METRICS_LOG, "metrics log").decode(errors="replace")
        except (OSError, EmuDglError):
            return  # not written yet
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line being written
            step = record.get("step") if isinstance(record, dict) else None
            if record.get("split") == "valid" and isinstance(step, int) and step > start_step:
                self.observe(step - start_step, time.perf_counter() - started)
                return
