"""DGL 2.1.0 (the newest PyPI wheel) works next to the installed torch through emu_dgl._dgl."""

from __future__ import annotations

import importlib

import pytest
import torch


def test_import_emu_dgl() -> None:
    import emu_dgl
    from emu_dgl._dgl import dgl

    assert emu_dgl.__version__
    assert dgl.__version__.startswith("2.")


def test_random_walk_traces_follow_edges() -> None:
    from emu_dgl._dgl import dgl

    generator = torch.Generator().manual_seed(0)
    num_nodes = 50
    src = torch.randint(num_nodes, (300,), generator=generator)
    dst = torch.randint(num_nodes, (300,), generator=generator)
    g = dgl.graph((src, dst), num_nodes=num_nodes)
    dgl.seed(0)
    starts = torch.arange(num_nodes).repeat(4)
    traces, _ = dgl.sampling.random_walk(g, starts, length=6)
    assert traces.shape == (len(starts), 7)
    assert torch.equal(traces[:, 0], starts)
    u, v = traces[:, :-1].flatten(), traces[:, 1:].flatten()
    step = v >= 0  # -1 pads a walk that reached a node without out-edges
    assert int(step.sum()) > 0
    assert bool(g.has_edges_between(u[step], v[step]).all())
    # once a walk stops it stays stopped
    stopped = traces < 0
    assert bool((stopped[:, :-1] <= stopped[:, 1:]).all())


def test_graphbolt_stub_says_why() -> None:
    from emu_dgl._dgl import GRAPHBOLT_STUB_MESSAGE

    graphbolt = importlib.import_module("dgl.graphbolt")
    with pytest.raises(AttributeError, match="GraphBolt") as info:
        _ = graphbolt.ItemSampler
    assert "dgl.graphbolt.ItemSampler" in str(info.value)
    assert "disabled by emu-dgl" in GRAPHBOLT_STUB_MESSAGE
    assert not hasattr(graphbolt, "BasicFeatureStore")


def test_dgl_data_importable() -> None:
    import emu_dgl._dgl  # noqa: F401  (the compat fixes come first)

    data = importlib.import_module("dgl.data")
    assert hasattr(data, "FB15k237Dataset")


@pytest.mark.slow
def test_plain_import_dgl_works_after_import_emu_dgl() -> None:
    """What a user's own DGL code does: `import emu_dgl`, then `import dgl` directly."""
    import subprocess
    import sys

    code = (
        "import sys, emu_dgl\n"
        "assert 'dgl' not in sys.modules and 'torch' not in sys.modules, 'import emu_dgl is lazy'\n"
        "import dgl\n"
        "g = dgl.graph(([0, 1], [1, 2]))\n"
        "assert g.num_edges() == 2 and emu_dgl.dgl is dgl\n"
        "from emu_dgl import load_dataset\n"
        "assert load_dataset('synthetic').to_dgl().num_nodes() > 0\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# --------------------------------------------------- `import dgl` in any order (issue 24)
# Each case runs in a fresh interpreter of this environment: what a user's script, notebook
# or test suite does, with no `import emu_dgl` of ours before it.

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
HOOK = "emu_dgl_dgl_fix.pth"


def _python(code: str, cwd: object = None) -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_plain_import_dgl_first_works_in_a_fresh_interpreter(tmp_path) -> None:
    code = (
        "import sys\n"
        "import dgl\n"  # first: the start-up hook applies emu-dgl's fixes on the way
        "assert 'emu_dgl._dgl' in sys.modules and 'torch' in sys.modules\n"
        "g = dgl.graph(([0, 1], [1, 2]))\n"
        "assert g.num_edges() == 2\n"
        "import emu_dgl, emu_dgl.dgl\n"
        "import emu_dgl.dgl as as_module\n"
        "from emu_dgl import dgl as as_name\n"
        "assert as_module is dgl and as_name is dgl and emu_dgl.dgl is dgl\n"
        "print('ok')\n"
    )
    assert _python(code, cwd=tmp_path).strip() == "ok"  # cwd: no source checkout on sys.path


@pytest.mark.slow
def test_import_emu_dgl_dgl_is_a_module_in_a_fresh_interpreter(tmp_path) -> None:
    code = "import emu_dgl.dgl as dgl\nprint(dgl.graph(([0], [1])).num_nodes())\n"
    assert _python(code, cwd=tmp_path).strip() == "2"


@pytest.mark.slow
def test_import_dgl_at_the_top_of_a_test_file_collected_by_pytest(tmp_path) -> None:
    """A DGL project's test file that imports dgl before anything else, collected by pytest."""
    import subprocess
    import sys

    (tmp_path / "test_user.py").write_text(
        "import dgl\n\n\ndef test_graph():\n    assert dgl.graph(([0, 1], [1, 0])).num_edges() == 2\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_the_start_up_hook_is_installed_in_this_environment() -> None:
    """`pip install` (editable or not) put the hook at the top of site-packages, unchanged."""
    import site
    from pathlib import Path

    folders = [*site.getsitepackages(), site.getusersitepackages()]
    installed = [Path(f) / HOOK for f in folders if (Path(f) / HOOK).is_file()]
    assert installed, f"{HOOK} not in {folders}: reinstall with pip install -e ."
    assert installed[0].read_text() == (ROOT / "emu_dgl" / HOOK).read_text()
    # one line, run by site.py at start-up: it must stay a single `import` statement
    lines = installed[0].read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("import ")


@pytest.mark.slow
def test_the_wheel_carries_the_start_up_hook_at_its_top(tmp_path) -> None:
    """What `pip install emu-dgl` installs from a wheel: the hook beside the package."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "src"  # built from a copy: no build/ or egg-info in the checkout
    shutil.copytree(
        ROOT / "emu_dgl", source / "emu_dgl", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert HOOK in names and "emu_dgl/_dgl.py" in names and "emu_dgl/dgl.py" in names
