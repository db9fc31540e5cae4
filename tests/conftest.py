from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from emu_dgl.device import available_devices

#: Why a test that reads the benchmark datasets is skipped: one line in pytest's summary.
NO_DATA = (
    "needs the benchmark datasets: set EMU_DGL_DATA to a folder with fb15k-237/, wn18rr/, nations/"
)


def shared_datasets() -> Path | None:
    """The folder of real benchmark data, or None when absent.

    ``EMU_DGL_DATA`` is the only way in: no folder beside the clone is looked for, so a
    fresh clone runs exactly the tests it can (the rest skip with :data:`NO_DATA`)."""
    env = os.environ.get("EMU_DGL_DATA")
    if env and (Path(env) / "wn18rr" / "train.txt").exists():
        return Path(env)
    return None


def need_data() -> Path:
    """The benchmark data root, or skip the calling test with one line (:data:`NO_DATA`)."""
    root = shared_datasets()
    if root is None:
        pytest.skip(NO_DATA)
    return root


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
    return need_data()


@pytest.fixture(params=available_devices(), ids=lambda d: d.type)
def device(request: pytest.FixtureRequest) -> torch.device:
    return request.param
