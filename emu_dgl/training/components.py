"""What components a run used, and where they came from: ``components.json`` in its folder.

A run names its components in ``config.yaml`` (``model.name``, ``sampler.name``, ...). A
name alone cannot say what to do when a later process does not know it: a component of a
plugin (an installed package that registers it through an entry point, see
:mod:`emu_dgl.registry`) is found again by any process where that package is installed,
so the record keeps the plugin's distribution name and version, and a process without it
gets one line naming the package to install. A component registered from Python code
(not installed) is recorded with its module, which emu-dgl never imports on its own (a
run folder may sit in a shared place: a name in it is no reason to run code).

``evaluate``, ``predict`` and ``export`` check only the components evaluation needs
(:data:`~emu_dgl.training.build.EVALUATION_KINDS`: the model); ``--resume`` checks all.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emu_dgl.config import Config
from emu_dgl.errors import EmuDglWarning, RunError
from emu_dgl.registry import KINDS
from emu_dgl.training.build import check_components
from emu_dgl.training.run import COMPONENTS_FILE, read_json

__all__ = ["check_run_components", "components_record", "read_components"]


def components_record(config: Config) -> dict[str, Any]:
    """``{"emu_dgl": version, "components": {kind: {"name", "source", ...}}}`` for the
    components ``config`` names (each one's :meth:`~emu_dgl.registry.Registry.origin`)."""
    used = {}
    for registry in KINDS.values():
        name = getattr(getattr(config, registry.section), registry.key)
        used[registry.kind] = {"name": name, **registry.origin(name)}
    return {"emu_dgl": installed_version("emu-dgl"), "components": used}


def installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:  # a source tree on the path, not installed
        return "unknown"


def read_components(run_dir: Path) -> dict[str, Any] | None:
    """The run's record of its components (``None`` for a run saved before it existed)."""
    path = Path(run_dir) / COMPONENTS_FILE
    if not os.path.lexists(path):
        return None
    record = read_json(path, "components record")
    used = record.get("components") if isinstance(record, dict) else None
    if not isinstance(used, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("name"), str) for v in used.values()
    ):
        raise RunError(
            f"'{path}' is not an emu-dgl components record (a field is missing or of the wrong "
            "type); restore the file emu-dgl wrote"
        )
    return used


def check_run_components(
    config: Config, run_dir: Path, *, kinds: Iterable[str] | None = None
) -> None:
    """Check the components a run's ``config`` names (``kinds`` of them, default all) with
    what the run recorded: a missing plugin is named with its version; a plugin installed in
    another version than the run used is said in one warning line (the run still opens)."""
    used = read_components(run_dir) or {}
    check_components(config, kinds=kinds, record=used)
    wanted = set(kinds) if kinds is not None else set(KINDS)
    for kind, entry in used.items():
        registry = KINDS.get(kind)
        if registry is None or kind not in wanted or entry.get("source") != "plugin":
            continue
        now = registry.origin(entry["name"])
        if now.get("version") != entry.get("version"):
            warnings.warn(
                f"run '{run_dir}' was trained with {kind} '{entry['name']}' of the plugin "
                f"'{entry.get('plugin')}' {entry.get('version')}; version {now.get('version')} "
                f"of '{now.get('plugin')}' is installed here",
                EmuDglWarning,
                stacklevel=2,
            )


def record_text(config: Config) -> str:
    """``components.json`` as written into a run folder."""
    return json.dumps(components_record(config), indent=2) + "\n"
