"""Property-based tests: arbitrary bytes and text never raise anything but emu-dgl's own errors.

The TSV reader either returns well-formed triples or raises :class:`DataError`; the config
loader and the ``--set`` parser either return a valid :class:`Config` or raise
:class:`ConfigError`. Example counts stay small so the file runs in seconds.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu_dgl.config import Config, load_config, parse_override
from emu_dgl.data.io import read_split
from emu_dgl.errors import ConfigError, DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_field = st.text(
    alphabet=st.sampled_from(
        ["a", "b", "é", " ", "\t", "\r", "\n", "\x00", '"', "#", "\\", "ü", "\x85"]
    ),
    max_size=6,
)
_tsv_text = st.lists(st.tuples(_field, _field, _field).map("\t".join), max_size=8).map("\n".join)


def _read(data: bytes) -> np.ndarray | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.txt"
        path.write_bytes(data)
        try:
            triples = read_split(path)
        except DataError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return None
    return triples


def _check_triples(triples: np.ndarray | None) -> None:
    if triples is None:
        return
    assert triples.ndim == 2 and triples.shape[1] == 3 and len(triples) > 0
    assert all(isinstance(x, str) and x for x in triples.ravel())


@FUZZ
@given(st.binary(max_size=300))
def test_tsv_reader_on_arbitrary_bytes(data: bytes) -> None:
    _check_triples(_read(data))


@FUZZ
@given(_tsv_text, st.sampled_from(["utf-8", "latin-1"]))
def test_tsv_reader_on_tab_separated_text(text: str, encoding: str) -> None:
    triples = _read(text.encode(encoding, errors="replace"))
    _check_triples(triples)
    if triples is not None and encoding == "utf-8":
        # Whatever was accepted is exactly the non-blank lines of the file (a line ends at
        # \n, \r\n or a lone \r), split at tabs.
        rows = [line.split("\t") for line in re.split("\r\n|\r|\n", text) if line.strip(" ")]
        assert [list(map(str, r)) for r in triples] == rows


def _load(text: str | bytes, overrides: list[str] = ()) -> Config | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_bytes(
            text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass")
        )
        try:
            return load_config(path, overrides)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            return None


@FUZZ
@given(st.binary(max_size=200))
def test_config_loader_on_arbitrary_bytes(data: bytes) -> None:
    _load(data)


_keys = st.sampled_from(
    [
        "model",
        "train",
        "sampler",
        "emu",
        "loss",
        "eval",
        "output",
        "dataset",
        "extends",
        "arms",
        "trian",
        "1",
        "~",
    ]
)
_sub = st.sampled_from(
    ["name", "dim", "lr", "p", "metric", "schedule", "max_steps", "dir", "walks", "enabled", "x"]
)
_scalar = st.one_of(
    st.sampled_from(
        [
            "",
            "~",
            "null",
            "true",
            "1e8",
            ".nan",
            "-.inf",
            "1_000",
            "0x1F",
            "Step",
            "MRR",
            "{",
            "[",
            "!!binary aGk=",
            "2024-13-45",
            "&a x",
            "*a",
            "!!python/object:os.system x",
            "'",
            "{time}",
            "1e400",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)


@FUZZ
@given(st.lists(st.tuples(_keys, st.lists(st.tuples(_sub, _scalar), max_size=3)), max_size=4))
def test_config_loader_on_yaml_shaped_text(
    sections: list[tuple[str, list[tuple[str, str]]]],
) -> None:
    text = "".join(
        f"{key}:\n" + "".join(f"  {sub}: {value}\n" for sub, value in body)
        for key, body in sections
    )
    config = _load(text)
    if config is not None:
        assert load_config(None, []) == load_config(None, []) and isinstance(config, Config)
        config.validate()  # what was accepted is valid, and stays so when validated again


@FUZZ
@given(st.text(max_size=40))
def test_set_parser_on_arbitrary_text(text: str) -> None:
    try:
        parse_override(text)
        load_config(None, [text])
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(
    st.sampled_from(
        [
            "model.dim",
            "train.lr",
            "emu.p",
            "train.schedule",
            "eval.metric",
            "output.dir",
            "train.device",
            "sampler.walks",
            "loss.name",
            "dataset.name",
            "train.progress",
        ]
    ),
    _scalar,
)
def test_set_parser_on_every_kind_of_value(key: str, value: str) -> None:
    try:
        config = load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    config.validate()
