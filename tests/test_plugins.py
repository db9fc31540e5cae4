"""Plugins: components of another package, registered through entry points, used by name.

The example package of ``examples/plugin`` (a decoder and a negative sampler, each a
class in a module of its own, announced in its ``pyproject.toml``) is installed, offline,
into a temporary folder (``pip install --no-deps --no-build-isolation --target``), and
every command runs in a process of its own with that folder on its path, or without it:
a run records the plugin and its version, a later process with the plugin reopens the run
(``evaluate``, ``predict``, ``export``, ``--resume``), one without it gets one line naming
the package, and evaluation never needs the sampler.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples" / "plugin"

#: A run of about two seconds on the built-in graph.
QUICK = [
    "model.dim=8", "sampler.num_negatives=16", "train.batch_size=128", "train.max_steps=20",
    "train.valid_every=10", "train.checkpoint_every=10", "train.progress=false",
    "train.threads=1", "eval.batch_size=256",
]  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed into a folder of its own (the source copied first, so
    the build leaves nothing in the repository)."""
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN, root / "source")
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return target


def emu(*args: object, site: Path | None = None, code: int = 0) -> subprocess.CompletedProcess:
    """``emu-dgl ARGS`` in a fresh process, with the plugin's folder on its path or not."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-m", "emu_dgl", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == code, result.stdout + result.stderr
    return result


def train(out: Path, *sets: str, site: Path | None) -> None:
    emu("train", "--out", out, *(a for s in [*QUICK, *sets] for a in ("--set", s)), site=site)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_plugin_components_train_and_reopen_in_new_processes(site: Path, tmp_path: Path) -> None:
    listing = emu("components", site=site).stdout
    assert "bilinear" in listing and "in_batch" in listing
    assert "plugin 'emu-dgl-example' 0.1.0" in listing and "sampler.batch_share = 1.0" in listing
    assert "bilinear" not in emu("components", "decoder").stdout  # not installed: not there

    run = tmp_path / "run"
    train(run, "model.name=bilinear", "sampler.name=in_batch", "sampler.batch_share=0.5", site=site)
    used = json.loads((run / "components.json").read_text())["components"]
    assert used["decoder"] == {
        "name": "bilinear", "source": "plugin", "plugin": "emu-dgl-example", "version": "0.1.0",
        "entry_point": "emu_dgl_example.decoder:Bilinear",
    }  # fmt: skip
    assert used["sampler"]["plugin"] == "emu-dgl-example" and used["loss"]["source"] == "emu-dgl"
    assert "batch_share: 0.5" in (run / "config.yaml").read_text()  # the plugin's option

    # with the plugin: every command reopens the run
    metrics = json.loads(emu("evaluate", run, "--json", site=site).stdout)["test"]
    assert metrics["mrr"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["test"]["mrr"]
    )
    data = json.loads((run / "data.json").read_text())
    head, relation = data["entities"][0], data["relations"][0]
    predicted = emu("predict", run, "--head", head, "--relation", relation, "--top", "3", site=site)
    assert len([line for line in predicted.stdout.splitlines() if line.strip()]) >= 3
    emu("export", run, "--out", tmp_path / "export", site=site)
    meta = json.loads((tmp_path / "export" / "meta.json").read_text())
    assert meta["model"] == "bilinear" and meta["relations"]["shape"][1] == 8 * 8
    emu("train", "--resume", run, "--set", "train.max_steps=30", site=site)
    assert json.loads((run / "metrics.json").read_text())["steps"] == 30

    # without it: one line naming the package and its version
    for args in (("evaluate", run), ("train", "--resume", run, "--set", "train.max_steps=40")):
        line = one_line_error(emu(*args, code=2))
        assert "'bilinear' of the plugin 'emu-dgl-example' 0.1.0" in line
        assert "pip install emu-dgl-example==0.1.0" in line


def test_evaluation_never_needs_the_sampler(site: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, "model.name=distmult", "sampler.name=in_batch", site=site)
    # the sampler's plugin gone: evaluate, predict and export open the run all the same
    assert "mrr" in json.loads(emu("evaluate", run, "--json").stdout)["test"]
    emu("export", run, "--out", tmp_path / "export")
    # training on needs the sampler: named
    line = one_line_error(emu("train", "--resume", run, "--set", "train.max_steps=30", code=2))
    assert "sampler 'in_batch' of the plugin 'emu-dgl-example' 0.1.0" in line


def test_a_plugin_encoder_trains_under_a_decoder(site: Path, tmp_path: Path) -> None:
    """The example's graph encoder (entry point group ``emu_dgl.encoders``) runs over the
    training graph under a built-in decoder, and the run reopens in a new process."""
    import importlib.util

    if importlib.util.find_spec("emu_dgl.encoders") is None:
        pytest.skip("this emu-dgl has no encoders (model.encoder) yet")
    run = tmp_path / "run"
    train(run, "model.name=distmult", "model.encoder=mean_neighbours", site=site)
    used = json.loads((run / "components.json").read_text())["components"]
    assert used["encoder"]["plugin"] == "emu-dgl-example"
    assert "mrr" in json.loads(emu("evaluate", run, "--json", site=site).stdout)["test"]
    line = one_line_error(emu("evaluate", run, code=2))
    assert "'mean_neighbours' of the plugin 'emu-dgl-example' 0.1.0" in line


def test_a_component_registered_in_python_is_named_by_its_module(tmp_path: Path) -> None:
    """A sampler registered by a script (not installed) trains in that process; a later
    process evaluates the run without it, and refuses to resume it in one line naming the
    module (never importing it: a run folder's contents are no reason to run code)."""
    run = tmp_path / "run"
    script = tmp_path / "mine.py"
    script.write_text(
        "import sys\n"
        "import emu_dgl\n"
        "from emu_dgl.registry import SAMPLERS\n"
        "from emu_dgl.sampling import UniformSampler\n"
        "SAMPLERS.register('my_uniform')(type('MyUniform', (UniformSampler,), {}))\n"
        "emu_dgl.train(None, out=sys.argv[1], sampler__name='my_uniform', "
        + ", ".join(f"{k.replace('.', '__')}={v!r}" for k, v in (s.split("=") for s in QUICK))
        + ", model__name='distmult')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, str(script), str(run)], check=True, env=env, timeout=600)
    used = json.loads((run / "components.json").read_text())["components"]["sampler"]
    assert used == {"name": "my_uniform", "source": "python", "module": "__main__"}
    assert "mrr" in json.loads(emu("evaluate", run, "--json").stdout)["test"]
    line = one_line_error(emu("train", "--resume", run, "--set", "train.max_steps=30", code=2))
    assert "sampler 'my_uniform' registered by the Python module '__main__'" in line
