"""Device resolution: done once per run, then passed explicitly."""

from __future__ import annotations

import re

import torch

from emu_dgl.errors import ConfigError


def resolve_device(spec: str | torch.device = "auto", *, key: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``; ``cuda`` or ``cuda:N``.

    ``key`` is where the value came from, named in errors (``--device`` for the CLI's
    evaluate and predict)."""
    if isinstance(spec, torch.device):
        return spec
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", spec):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key} is '{spec}' but no CUDA device is available; use {_setting(key)}auto or {_setting(key)}cpu"
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key} is '{spec}' but only {torch.cuda.device_count()} CUDA "
                "device(s) exist; pick an index below that"
            )
        return torch.device(spec)
    raise ConfigError(f"{key} '{spec}' is not one of auto, cpu, cuda, cuda:N")


def _setting(key: str) -> str:
    return f"{key}=" if not key.startswith("-") else f"{key} "


def available_devices() -> list[torch.device]:
    """Devices the test-suite parametrises over: CPU always, CUDA when present."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def resolve_threads(threads: int = 0) -> tuple[int, str]:
    """(intra-op CPU threads, why): ``threads`` when positive, else half the usable cores.

    torch's own default, one thread per core, spins every core on every operation; on a
    machine shared with other jobs that made a small run six times slower than with one
    thread, while on an idle machine half the cores lose little.
    """
    if threads > 0:
        return threads, "train.threads"
    cores = usable_cores()
    return max(1, min(cores // 2, 8)), f"auto: half of {cores} usable cores, at most 8"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
