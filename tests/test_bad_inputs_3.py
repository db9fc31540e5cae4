"""Bad inputs, round three (issue 25, items 8 and 9 and the data, environment and Python API
cases): inputs bounded before they cost, and one line instead of a traceback or a hang.

Cases that would exhaust memory or hang on an unfixed version run in a subprocess under a
memory limit and a timeout, so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_dgl.config import load_config
from emu_dgl.data.synthetic import generate_synthetic
from emu_dgl.errors import ConfigError, DataError, EmuDglError
from emu_dgl.training.trainer import Trainer
from tests.conftest import shared_datasets
from tests.run_helpers import SET, TINY, assert_one_line, invoke, nations_root

REPO = Path(__file__).resolve().parents[1]


def _bounded(code: str, *, seconds: int = 120, memory_gb: int = 4) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter limited to ``memory_gb`` of address space and
    ``seconds`` of wall time (a hang or a runaway allocation fails, the machine is spared)."""
    prelude = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_gb} << 30, {memory_gb} << 30))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=seconds,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _one_line(error: BaseException, fragment: str) -> None:
    assert isinstance(error, EmuDglError), repr(error)
    assert "\n" not in str(error) and fragment in str(error), str(error)


# ------------------------------------------------------------------ 9. from_dgl sizes


def _dgl_graph(etype: torch.Tensor, *, nodes: int | None = None):  # -> dgl.DGLGraph
    from emu_dgl._dgl import dgl

    src = torch.arange(len(etype)) % 3
    graph = dgl.graph((src, (src + 1) % 3), num_nodes=nodes)
    graph.edata["etype"] = etype
    return graph


@pytest.mark.parametrize(
    ("etype", "fragment"),
    [
        (torch.tensor([0.0, 1.7, 1.2]), "is torch.float32; relation ids must be integers"),
        (torch.tensor([[0, 1], [1, 0], [0, 0]]), "has shape (3, 2)"),
        (torch.tensor([True, False, True]), "is torch.bool"),
    ],
)
def test_from_dgl_refuses_relation_ids_it_would_truncate_or_misread(
    etype: torch.Tensor, fragment: str
) -> None:
    from emu_dgl.data.knowledge_graph import KnowledgeGraph

    with pytest.raises(DataError) as info:
        KnowledgeGraph.from_dgl(_dgl_graph(etype))
    _one_line(info.value, fragment)


def test_from_dgl_refuses_names_it_would_ignore_or_fail_to_decode() -> None:
    from emu_dgl.data.knowledge_graph import KnowledgeGraph

    graph = _dgl_graph(torch.tensor([0, 1, 0]))
    graph.ndata["name"] = torch.zeros(3, 4)  # float: silently named by id before
    with pytest.raises(DataError) as info:
        KnowledgeGraph.from_dgl(graph)
    _one_line(info.value, "ndata['name'] is torch.float32 of shape (3, 4)")
    graph.ndata["name"] = torch.tensor([[97, 0], [0xFF, 0xFE], [98, 0]], dtype=torch.uint8)
    with pytest.raises(DataError) as info:
        KnowledgeGraph.from_dgl(graph)
    _one_line(info.value, "entity name 1 is not UTF-8 (byte 0xff")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        ("g = graph(torch.tensor([0, 10**9, 5]))", "holds relation id 1,000,000,000"),
        ("g = graph(torch.tensor([0, 1, 0]), nodes=10**8)", "100,000,000 nodes"),
    ],
)
def test_from_dgl_refuses_sizes_before_it_allocates_by_them(build: str, fragment: str) -> None:
    done = _bounded(
        f"""
        import time, torch
        from emu_dgl._dgl import dgl
        from emu_dgl.data.knowledge_graph import KnowledgeGraph
        from emu_dgl.errors import DataError

        def graph(etype, nodes=None):
            src = torch.arange(len(etype)) % 3
            g = dgl.graph((src, (src + 1) % 3), num_nodes=nodes)
            g.edata["etype"] = etype
            return g

        {build}
        start = time.perf_counter()
        try:
            KnowledgeGraph.from_dgl(g)
        except DataError as exc:
            print("refused in", round(time.perf_counter() - start, 3), "s:", exc)
        """,
        seconds=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("refused in ") and fragment in line
    assert float(line.split()[2]) < 5.0  # bounded by the edges, not by the ids


def test_config_from_dict_of_a_list_or_a_string_is_one_line() -> None:
    from emu_dgl.config import config_from_dict

    for value in ([{"train": {"lr": 0.1}}], "train: {lr: 0.1}", None):
        with pytest.raises(ConfigError) as info:
            config_from_dict(value)  # type: ignore[arg-type]
        _one_line(info.value, "a config is a mapping of sections")


# ------------------------------------------------------------------------ graph.npz


@pytest.fixture(scope="module")
def python_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run trained on a graph given in Python: it keeps the graph as graph.npz."""
    run = tmp_path_factory.mktemp("npz") / "run"
    overrides = [s for s in TINY if not s.startswith("dataset.")] + ["train.max_steps=4"]
    config = load_config(None, [*overrides, "train.valid_every=2", "train.checkpoint_every=2"])
    Trainer(config, run, kg=generate_synthetic()).fit()
    assert (run / "graph.npz").is_file()
    return run


def _rewrite(path: Path, change: dict[str, object], *, compress: set[str] = frozenset()) -> None:
    """Write ``path`` again with some members replaced (None: dropped) or compressed."""
    old = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as new:
        for info in old.infolist():
            key = info.filename.removesuffix(".npy")
            data = old.read(info)
            if key in change:
                if change[key] is None:
                    continue
                buffer = io.BytesIO()
                np.save(buffer, change[key], allow_pickle=True)
                data = buffer.getvalue()
            method = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            new.writestr(info.filename, data, compress_type=method)
    path.write_bytes(out.getvalue())


def _damage(path: Path, how: str) -> str:
    """Damage the saved graph ``how``; returns a fragment the one-line error must hold."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return "not an intact .npz"
    if how == "pickled":
        _rewrite(path, {"train": np.array([{"a": 1}, None], dtype=object)})
        return "holds Python objects (a pickle)"
    if how == "missing key":
        _rewrite(path, {"counts": None})
        return "the array 'counts' is missing"
    if how == "wrong shape":
        _rewrite(path, {"counts": np.array([605, 13, 1], dtype=np.int64)})
        return "the array 'counts' is int64 of shape (3,)"
    if how == "flipped byte":
        data = bytearray(path.read_bytes())
        at = data.index(b"train.npy") + 200  # inside the train array's data
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))
        return "Bad CRC-32"
    if how == "compressed bomb":  # a small file that would inflate to 48 MB
        _rewrite(path, {"train": np.zeros((2_000_000, 3), dtype=np.int64)}, compress={"train"})
        return "is compressed"
    raise AssertionError(how)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    ["truncated", "pickled", "missing key", "wrong shape", "flipped byte", "compressed bomb"],
)
def test_a_damaged_graph_npz_is_one_line(python_run: Path, tmp_path: Path, how: str) -> None:
    import shutil

    run = Path(shutil.copytree(python_run, tmp_path / "run"))
    (run / ".lock").unlink(missing_ok=True)
    fragment = _damage(run / "graph.npz", how)
    for command in (["evaluate", run], ["export", run, "--out", tmp_path / "out"]):
        line = assert_one_line(invoke(*command), fragment)
        assert "graph.npz" in line


# ------------------------------------------------------------------ 8. mirror FIFO


def test_a_fifo_as_the_mirrors_archive_is_refused_without_hanging(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.mkfifo(mirror / "nations.tar.gz")
    done = subprocess.run(
        [sys.executable, "-m", "emu_dgl", "datasets", "download", "nations",
         "--data-dir", str(tmp_path / "root")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), "EMU_DGL_MIRROR": mirror.as_uri()},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "is a FIFO" in line and "Traceback" not in done.stderr
    assert not (tmp_path / "root" / "nations").exists()


# ----------------------------------------------------------------- environment, data


@pytest.mark.parametrize("variable", ["EMU_DGL_DATA", "EMU_DGL_CACHE"])
def test_an_address_where_a_folder_is_meant_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    source = shared_datasets()
    if source is None:
        pytest.skip("real benchmark datasets not found (set EMU_DGL_DATA)")
    root = nations_root(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    env = {
        "EMU_DGL_DATA": str(root),
        variable: "http://example.org/emu",
        "EMU_DGL_MIRROR": str(source / "archives"),
    }
    line = assert_one_line(invoke("train", *SET, "--out", tmp_path / "run", env=env), variable)
    assert "'http://example.org/emu', an address" in line
    assert list(work.iterdir()) == []  # no ./http:/ folder


def test_entities_and_relations_unseen_in_train_are_warned_about(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    data.mkdir()
    train = "".join(f"e{i}\tr\te{(i + 1) % 6}\n" for i in range(6))
    (data / "train.txt").write_text(train + "e0\tq\te3\n")
    (data / "valid.txt").write_text("e1\tr\te3\n")
    (data / "test.txt").write_text("e2\tunseen_relation\te4\ne5\tr\tnew_entity\n")
    result = invoke(
        "train", "--out", tmp_path / "run", "--set", f"dataset.name={data}",
        "--set", "train.max_steps=2", "--set", "train.valid_every=0", "--set", "model.dim=4",
        "--set", "sampler.num_negatives=2", "--set", "train.batch_size=4",
        "--set", "train.progress=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "never occur in train" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert "test: 1 entities, 1 relations, 2 triples" in warned[0]
    assert "untrained" in warned[0]
