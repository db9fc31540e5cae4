from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from emu_dgl.device import available_devices

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_datasets() -> Path | None:
    """The folder of real benchmark data (EMU_DGL_DATA in CI), or None when absent."""
    env = os.environ.get("EMU_DGL_DATA")
    for candidate in ([Path(env)] if env else []) + [SHARED_DATASETS]:
        if (candidate / "wn18rr" / "train.txt").exists():
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every cache the tests write (parsed graphs, neighbourhoods) goes to one temporary
    folder: never into a data root, never into the user's own cache. Subprocesses
    inherit it through the environment."""
    folder = tmp_path_factory.mktemp("emu-dgl-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMU_DGL_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    root = shared_datasets()
    if root is None:
        pytest.skip("real benchmark datasets not found (set EMU_DGL_DATA)")
    return root


@pytest.fixture(params=available_devices(), ids=lambda d: d.type)
def device(request: pytest.FixtureRequest) -> torch.device:
    return request.param
