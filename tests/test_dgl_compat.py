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
