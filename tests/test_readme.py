"""The README's Python examples run as written (each in a fresh interpreter, in a temporary folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_datasets

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_its_examples():
    joined = "\n".join(BLOCKS)
    # the pieces a newcomer looks for: DGL next to emu_dgl, the loop, whole runs, networkx
    for piece in (
        "import dgl",
        "score_negatives",
        "emu_dgl.train(",
        "load_run(",
        "from_networkx",
        ".predict(head=",  # PyKEEN users: the Python API, by name (issue 24)
        ".evaluate(",
        ".export(",
        "entity_to_id",
        "from_dgl(",
        'side="both"',  # DGLNegativeSampler corrupting heads and tails
    ):
        assert piece in joined, piece
    assert "configs/quickstart.yaml" not in joined  # the packaged copy works from any folder


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if shared_datasets() is None:  # no benchmark data here: the built-in graph instead
        code = code.replace('load_dataset("wn18rr")', 'load_dataset("synthetic")')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: fastest on a busy machine
    if shared_datasets() is not None:
        env["EMU_DGL_DATA"] = str(shared_datasets())
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"README block {index}:\n{code}\n{done.stderr[-3000:]}"
    if "score_negatives" in code:  # the written-out loop learns
        mrr = float(re.search(r"test MRR ([0-9.]+)", done.stdout).group(1))
        assert mrr > 0.5, done.stdout


def test_the_readme_says_where_its_numbers_come_from():
    """Measured tables name the code that produced them; the load time of a heterograph is
    the first call of a new process, what a script pays (issue 24)."""
    text = README.read_text(encoding="utf-8")
    commits = re.findall(r"running the code of commit ([0-9a-f]{7,40})", text)
    assert commits, "the CPU protocol table names no commit"
    git = Path(__file__).resolve().parents[1] / ".git"
    if git.exists():  # a clone: the commit is in its history
        done = subprocess.run(
            ["git", "-C", str(git.parent), "cat-file", "-e", f"{commits[0]}^{{commit}}"],
            capture_output=True,
        )
        assert done.returncode == 0, f"commit {commits[0]} is not in this repository"
    (row,) = [line for line in text.splitlines() if "to_dgl" in line and "new process" in line]
    assert "bench_load.py" in row
    assert "an estimate of the whole comparison's time" in text  # compare's estimate
