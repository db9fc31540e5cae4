"""Bad inputs, round two (issue 16): results that cannot silently go stale, and every case of
the second probe ending in a correct result or one clear line.

Each test is one case of the probe: it asserts the exit status, one line (``error:`` or
``warning:``), no traceback, and that the finished files of a run are unchanged. The
run-folder attacks (links, names, non-empty folders) are in ``test_run_folder_safety.py``.
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import emu_dgl.data.io as data_io
import emu_dgl.training.checkpoint as checkpoint
from emu_dgl.config import load_config
from emu_dgl.data.synthetic_large import load_power_law
from emu_dgl.device import usable_cores
from emu_dgl.errors import ConfigError, DataError
from emu_dgl.training.memory import estimate_bytes
from tests.conftest import need_data
from tests.run_helpers import (
    SET,
    TINY,
    assert_one_line,
    copy_run,
    finished_tiny_run,
    invoke,
    nations_root,
    snapshot,
    train_tiny,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a finished tiny run on nations, its writable data root)."""
    return finished_tiny_run(tmp_path_factory.mktemp("bad2"))


@pytest.fixture
def run(base: tuple[Path, Path], tmp_path: Path) -> Path:
    return copy_run(base[0], tmp_path / "run")


def archives() -> Path:
    return need_data() / "archives"


# ------------------------------------------------------------- 4. catalogue folders


def test_an_incomplete_catalogue_folder_is_refused_not_downloaded_over(tmp_path: Path) -> None:
    root = nations_root(tmp_path / "data")
    (root / "nations" / "test.txt").unlink()
    train = root / "nations" / "train.txt"
    train.write_text(train.read_text() + "usa\tmy_edit\tuk\n")  # the user's edit
    before = snapshot(root)
    env = {"EMU_DGL_MIRROR": archives().as_uri()}  # a download would succeed: it is refused
    line = assert_one_line(
        invoke("train", "--data-dir", root, *SET, "--out", tmp_path / "r", env=env),
        "holds train.txt, valid.txt but not test.txt",
    )
    assert "--force" in line
    assert snapshot(root) == before and not (tmp_path / "r").exists()


def test_every_download_is_announced(tmp_path: Path) -> None:
    env = {"EMU_DGL_MIRROR": archives().as_uri()}
    result = invoke("datasets", "info", "nations", "--data-dir", tmp_path / "fresh", env=env)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("downloading")] == [
        f"downloading 'nations' from {archives().as_uri()}/nations.tar.gz into "
        f"{tmp_path / 'fresh' / 'nations'} (8077 bytes, sha256-verified)"
    ]


class _Endless(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(20_000):  # 1.3 GB if nobody stops reading
                self.wfile.write(b"x" * 65536)
        except OSError:
            pass  # the client hung up

    def log_message(self, *args: object) -> None:
        pass


def test_an_endless_mirror_is_cut_off_at_the_archives_size(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"EMU_DGL_MIRROR": f"http://127.0.0.1:{server.server_address[1]}/"}
        start = time.monotonic()
        assert_one_line(
            invoke("datasets", "download", "nations", "--data-dir", tmp_path / "root", env=env),
            "sent more than the 8077 bytes the archive has",
            only=False,  # after the announcement
        )
        assert time.monotonic() - start < 10
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "root").exists()  # nothing left: no partial archive, no folder


# ------------------------------------------------------------ 6. the model of a checkpoint


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_weights_are_never_loaded_into_another_model(
    run: Path, tmp_path: Path, command: str
) -> None:
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("name: distmult", "name: transe"))
    before = snapshot(run)
    args = {
        "evaluate": ["evaluate", run, "--device", "cpu"],
        "predict": ["predict", run, "--head", "usa", "--relation", "embassy", "--device", "cpu"],
        "export": ["export", run, "--out", tmp_path / "exp"],
    }[command]
    assert_one_line(
        invoke(*args), "model.name 'distmult' in the checkpoint, 'transe' in config.yaml"
    )
    assert snapshot(run) == before and not (tmp_path / "exp").exists()


def test_an_older_checkpoint_of_another_width_is_one_line(run: Path) -> None:
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    del state["model_config"]  # as written before checkpoints carried it
    torch.save(state, best)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("dim: 16", "dim: 8"))
    before = snapshot(run)
    assert_one_line(invoke("evaluate", run, "--device", "cpu"), "size mismatch")
    assert snapshot(run) == before


# ------------------------------------------------------------------------ 7. compare


@pytest.mark.slow
def test_compare_does_not_reuse_a_run_made_on_other_data(tmp_path: Path) -> None:
    root = nations_root(tmp_path / "data")
    out = tmp_path / "cmp"
    args = ["compare", "--out", out, "--arm", "base:emu.enabled=false", *SET]
    args += ["--set", f"dataset.data_dir={root}"]
    assert invoke(*args).exit_code == 0
    before = snapshot(out)
    test = root / "nations" / "test.txt"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-5]))
    assert_one_line(invoke(*args), "holds a run trained on other data")
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("seeds", "fragment"),
    [
        ("0,0", "--seeds lists 0 more than once"),
        ("1,2,1", "--seeds lists 1 more than once"),
        (",", "--seeds names no seed"),
        ("0,x", "'x' is not an integer"),
        ("0,2147483648", "train.seed: must be in [0, 2147483647]"),
    ],
)
def test_compare_seeds_are_distinct_integers(tmp_path: Path, seeds: str, fragment: str) -> None:
    out = tmp_path / "cmp"
    assert_one_line(invoke("compare", "--seeds", seeds, "--out", out, *SET), fragment)
    assert not out.exists()


@pytest.mark.slow
def test_compare_reads_a_cut_log_and_a_corrupt_metrics_file(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--out", out, "--arm", "base:emu.enabled=false", *SET]
    args += ["--set", f"dataset.data_dir={base[1]}"]
    assert invoke(*args).exit_code == 0
    run = out / "base" / "seed0"
    first = json.loads((out / "results.json").read_text())["runs"][0]
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 21, "split": "val')  # a cut last line
    (run / "metrics.json").write_text('{"valid": {"mrr": 0.')  # cut short
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    again = json.loads((out / "results.json").read_text())["runs"][0]
    assert again["test"] == first["test"] and again["curve"] == first["curve"]
    assert json.loads((run / "metrics.json").read_text())["test"] == first["test"]


# ------------------------------------------------------------- 8, 9. configs and generators


@pytest.mark.slow
def test_a_yaml_alias_bomb_fails_fast_with_a_short_line(tmp_path: Path) -> None:
    # 9 items, each level 9 aliases of the one below: 9^9 = 387 million values once expanded,
    # in under 500 bytes. Before, the message quoting 'train' spent minutes and gigabytes.
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    for key in ("train", "trian"):  # a section given a list, and a mistyped section
        bomb = tmp_path / f"{key}.yaml"
        bomb.write_text(f"{key}: [{', '.join(levels)}]\n")
        assert len(bomb.read_bytes()) < 500
        start = time.perf_counter()
        line = assert_one_line(invoke("train", "--config", bomb), "aliases (*name) are expanded")
        assert time.perf_counter() - start < 1.0 and len(line) < 300
    big = tmp_path / "big.yaml"  # no alias, but a long value: quoted in a bounded form
    big.write_text(f"train: [{', '.join(str(i) for i in range(50_000))}]\n")
    line = assert_one_line(invoke("train", "--config", big), "train: expected a mapping of keys")
    assert len(line) < 300


def test_yaml_merge_keys_are_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "arms:\n"
        "  small: &small {model.dim: 8, train.max_steps: 5}\n"
        "  smaller:\n"
        "    <<: *small\n"
        "    model.dim: 4\n"
    )
    assert load_config(path, arm="smaller").model.dim == 4
    assert load_config(path, arm="smaller").train.max_steps == 5


@pytest.mark.parametrize("alpha", ["5", "nan", "inf", "1e308", "-1"])
def test_synthetic_alpha_out_of_range_is_one_line(alpha: str) -> None:
    assert_one_line(
        invoke("datasets", "info", f"synthetic:entities=1000,triples=5000,alpha={alpha}"),
        "alpha must be a number in [0, 4]",
    )


def test_a_law_too_steep_for_its_triples_stops_instead_of_looping() -> None:
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"alpha=3 puts nearly every draw on the same few"):
        load_power_law("synthetic:entities=10000,triples=100000,alpha=3")
    assert time.perf_counter() - start < 30
    assert len(load_power_law("synthetic:entities=1000,triples=5000,alpha=1.5").train) > 0


# ------------------------------------------------------------------------- split files


def _dataset(tmp_path: Path) -> Path:
    folder = nations_root(tmp_path / "d") / "nations"
    return folder


@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "folder"])
def test_a_split_file_that_is_not_a_file_is_named(tmp_path: Path, kind: str) -> None:
    folder = _dataset(tmp_path)
    test = folder / "test.txt"
    test.unlink()
    if kind == "fifo":
        os.mkfifo(test)
    elif kind == "device":
        test.symlink_to("/dev/zero")
    elif kind == "loop":
        test.symlink_to(test)
    else:
        test.mkdir()
    expected = {
        "fifo": "is a FIFO (named pipe)",
        "device": "is a symbolic link to a character device",
        "loop": "is a symbolic link loop",
        "folder": "is a folder",
    }[kind]
    out = tmp_path / "r"
    assert_one_line(
        invoke("train", *SET, "--set", f"dataset.name={folder}", "--out", out), expected
    )
    assert not out.exists()


def test_an_unreadable_split_file_is_not_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _dataset(tmp_path)

    def no_permission(path: object, *args: object, **kwargs: object) -> object:
        if str(path).endswith("valid.txt"):  # as chmod 000 does for anyone but root
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, *args, **kwargs)  # noqa: SIM115

    monkeypatch.setattr(data_io, "open", no_permission, raising=False)
    line = assert_one_line(
        invoke("datasets", "info", folder), "cannot read the split file (Permission denied)"
    )
    assert "space" not in line and "write" not in line


@pytest.mark.slow
def test_a_sparse_gigabyte_of_nul_bytes_is_refused_in_a_streaming_pass(tmp_path: Path) -> None:
    folder = _dataset(tmp_path)
    train = folder / "train.txt"
    with train.open("r+b") as handle:
        handle.truncate(1 << 30)  # a sparse file: 1 GB of NUL bytes after the real lines
    code = (
        "import sys\n"
        "from emu_dgl.data.io import read_split\n"
        "from emu_dgl.errors import DataError\n"
        "try:\n"
        "    read_split(__import__('pathlib').Path(sys.argv[1]))\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
        # this process's own peak (getrusage would report the forking pytest's)
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(train)], capture_output=True, text=True, timeout=120
    )
    message, peak_kb = done.stdout.strip().splitlines()
    assert "line 1593: a NUL byte" in message and "binary file" in message, message
    assert int(peak_kb) < 300_000, peak_kb  # reading the whole file would take over 1 GB
    assert time.perf_counter() - start < 60


def test_names_with_surrounding_whitespace_or_a_bom_are_warned_with_examples(
    tmp_path: Path,
) -> None:
    folder = _dataset(tmp_path)
    valid = folder / "valid.txt"
    valid.write_text(valid.read_text() + "usa \tembassy\tuk\n\ufeffburma\tembassy\tuk\n")
    result = invoke("datasets", "info", folder)
    assert result.exit_code == 0, result.output
    line = assert_one_line(
        result, "2 name(s) have surrounding whitespace", code=0, prefix="warning:"
    )
    assert "'usa ' (also present as 'usa')" in line
    assert "'\\ufeffburma' (also present as 'burma')" in line


def test_an_empty_dataset_name_is_one_line(tmp_path: Path) -> None:
    for value in ("", "'  '"):
        assert_one_line(
            invoke("train", *SET, "--set", f"dataset.name={value}", "--out", tmp_path / "r"),
            "dataset.name: is empty",
        )
    assert not (tmp_path / "r").exists()


def test_a_fifo_as_config_is_named(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert_one_line(invoke("train", "--config", fifo), "is a FIFO (named pipe), not a regular file")


# --------------------------------------------------------------------- training settings


@pytest.mark.parametrize(
    "setting",
    ["train.seed=-1", "train.seed=2147483648", "train.seed=18446744073709551616", "eval.seed=-5"],
)
def test_seeds_outside_what_torch_and_dgl_accept_are_refused_before_any_file(
    tmp_path: Path, setting: str
) -> None:
    out = tmp_path / "r"
    assert_one_line(
        invoke("train", *SET, "--set", setting, "--out", out), "must be in [0, 2147483647]"
    )
    assert not out.exists()


def test_an_overflowing_learning_rate_is_refused_and_a_huge_one_diverges(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    adam = ["--set", "train.optimizer=adam", "--data-dir", base[1]]
    assert_one_line(
        invoke("train", *SET, *adam, "--set", "train.lr=1e38", "--out", tmp_path / "a"),
        "train.lr: must be in (0, 1e+30]",
    )
    assert not (tmp_path / "a").exists()
    result = invoke("train", *SET, *adam, "--set", "train.lr=1e30", "--out", tmp_path / "b")
    assert_one_line(result, "training diverged at step", only=False)


def test_batches_the_run_would_shrink_do_not_fail_the_memory_check(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    config = load_config(None, [*TINY, "train.batch_size=100000000", "eval.batch_size=100000000"])
    capped = estimate_bytes(config, 14, 55, train_triples=1592, eval_triples=201)
    assert capped["one training step"][0] == 1592 * (8 + 2) * 16 * 4 * 2 * 2
    assert capped["one evaluation batch"][0] == 201 * 14 * 4
    result = invoke(
        "train",
        *SET,
        "--set",
        "train.batch_size=100000000",
        "--set",
        "eval.batch_size=100000000",
        "--set",
        "train.max_steps=2",
        "--data-dir",
        base[1],
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        (  # (more negatives than entities: fitted to the graph, see test_defaults.py)
            f"train.threads={usable_cores() + 1}",
            f"train.threads={usable_cores() + 1} is more than the",
        ),
    ],
)
def test_wasteful_settings_run_with_a_warning(
    base: tuple[Path, Path], tmp_path: Path, setting: str, fragment: str
) -> None:
    threads = torch.get_num_threads()
    result = invoke(
        "train",
        *SET,
        "--set",
        setting,
        "--set",
        "train.max_steps=2",
        "--data-dir",
        base[1],
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    torch.set_num_threads(threads)  # the run set them for this whole process
    assert len(warnings) == 1 and fragment in warnings[0], result.stderr


# ---------------------------------------------------------------- run folders on resume


def test_a_full_disk_while_appending_metrics_is_one_line_and_loses_nothing(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = snapshot(run / "checkpoints")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    line = assert_one_line(
        invoke("train", "--resume", run, "--set", "train.max_steps=30"),
        "cannot write the metrics log",
        only=False,
    )
    assert "No space left on device" in line and "free some space" in line
    monkeypatch.undo()
    assert snapshot(run / "checkpoints") == checkpoints


def test_a_full_disk_inside_torch_save_is_one_line_and_keeps_the_checkpoints(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = snapshot(run / "checkpoints")

    def cut(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
            "data/3: file write failed"
        )

    monkeypatch.setattr(checkpoint.torch, "save", cut)
    line = assert_one_line(
        invoke("train", "--resume", run, "--set", "train.max_steps=30"),
        "cannot write checkpoint",
        only=False,
    )
    assert "is the disk full?" in line and "previous checkpoints are kept" in line
    assert snapshot(run / "checkpoints") == checkpoints
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
        "previous.pt",
    ]


def test_garbage_lines_in_the_log_do_not_stop_resume(run: Path) -> None:
    log = run / "metrics.jsonl"
    garbage = ['{"step": null}', "[1, 2]", '"text"', '{"step": "5"}', '{"step": true}', "{"]
    log.write_text(log.read_text() + "\n".join(garbage) + "\n")
    result = invoke("train", "--resume", run, "--set", "train.max_steps=30")
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert all(type(s) is int for s in steps) and max(steps) == 30


def test_a_corrupt_metrics_file_is_evaluated_again_on_resume(run: Path) -> None:
    expected = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text('{"valid": ')
    checkpoints = snapshot(run / "checkpoints")
    result = invoke("train", "--resume", run)
    assert result.exit_code == 0, result.output
    again = json.loads((run / "metrics.json").read_text())
    assert again["test"] == expected["test"] and again["best_step"] == expected["best_step"]
    assert snapshot(run / "checkpoints") == checkpoints


@pytest.mark.parametrize(
    "record",
    [
        {"fingerprint": 5, "entities": [], "relations": []},
        {"fingerprint": "x", "entities": "usa", "relations": []},
        {"fingerprint": "x", "entities": [1, 2], "relations": []},
        {"fingerprint": "x", "entities": [], "relations": [], "splits": {"train": 3}},
        [1, 2, 3],
    ],
)
def test_a_data_record_of_the_wrong_types_is_one_line(run: Path, record: object) -> None:
    (run / "data.json").write_text(json.dumps(record))
    before = snapshot(run)
    assert_one_line(invoke("evaluate", run, "--device", "cpu"), "is not an emu-dgl data record")
    assert snapshot(run) == before


def test_a_missing_best_checkpoint_points_at_last(run: Path) -> None:
    (run / "checkpoints" / "best.pt").unlink()
    line = assert_one_line(invoke("evaluate", run, "--device", "cpu"), "--checkpoint last")
    assert "no checkpoint at" in line
    assert invoke("evaluate", run, "--checkpoint", "last", "--device", "cpu").exit_code == 0


def test_predict_on_a_missing_gpu_names_the_device_option(run: Path) -> None:
    line = assert_one_line(
        invoke("predict", run, "--head", "usa", "--relation", "embassy", "--device", "cuda:99"),
        "--device is 'cuda:99'",
    )
    assert "train.device" not in line


@pytest.mark.slow
def test_export_writes_utf8_names_under_an_ascii_locale(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    root = nations_root(tmp_path / "data")
    for split in ("train", "valid", "test"):
        path = root / "nations" / f"{split}.txt"
        path.write_text(path.read_text().replace("usa", "états-unis"))
    train_tiny(tmp_path / "run", root)
    env = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONUTF8": "0",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    probe = "import locale; print(locale.getpreferredencoding(False))"
    assert (
        "utf"
        not in subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True
        ).stdout.lower()
    )  # the child really runs under an ASCII locale
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emu_dgl",
            "export",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "e"),
        ],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert "états-unis" in (tmp_path / "e" / "entities.tsv").read_bytes().decode("utf-8")


# ------------------------------------------------------------------------------- tune


TUNE = [
    "--set",
    "dataset.name=nations",
    "--set",
    "model.dim=16",
    "--set",
    "train.batch_size=256",
    "--set",
    "train.max_steps=10",
    "--set",
    "train.valid_every=5",
    "--set",
    "train.threads=1",
    "--set",
    "sampler.num_negatives=8",
    "--pruner",
    "none",
]


@pytest.mark.slow
def test_a_diverging_trial_is_pruned_and_the_study_goes_on(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: categorical, choices: [1.0e+30, 0.1]}\n")
    out = tmp_path / "tune"
    result = invoke(
        "tune", "--out", out, "--trials", "2", "--space", space, "--data-dir", base[1], *TUNE
    )
    assert result.exit_code == 0, result.output
    assert "trial 1: pruned: training diverged at step" in result.stderr
    assert "trial 0: valid mrr" in result.stderr
    assert "2 trials (1 complete, 1 pruned)" in result.output


@pytest.mark.slow
def test_a_deleted_study_database_does_not_block_later_calls(
    base: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "tune"
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: categorical, choices: [0.1]}\n")
    args = ["tune", "--out", out, "--trials", "1", "--space", space, "--data-dir", base[1], *TUNE]
    assert invoke(*args).exit_code == 0
    first = snapshot(out / "trials" / "trial-0000")
    (out / "study.db").unlink()
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert snapshot(out / "trials" / "trial-0000") == first  # the earlier trial's run is kept
    assert (out / "trials" / "trial-0000-2" / "metrics.json").is_file()


@pytest.mark.parametrize("storage", ["corrupt", "sqlite:////nonexistent-folder/x.db"])
def test_a_study_storage_that_cannot_be_opened_is_one_line(tmp_path: Path, storage: str) -> None:
    out = tmp_path / "tune"
    if storage == "corrupt":
        out.mkdir()
        (out / "study.db").write_text("not a database")
        args = []
    else:
        args = ["--storage", storage]
    before = snapshot(out) if out.exists() else {}
    assert_one_line(
        invoke("tune", "--out", out, "--trials", "1", *args, *TUNE), "cannot open the study storage"
    )
    assert (snapshot(out) if out.exists() else {}) == before


def test_tune_seed_out_of_range_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--seed must be in \[0, 2147483647\]"):
        from emu_dgl.experiments.tune import run_study

        run_study(None, trials=1, out=tmp_path / "t", seed=-1)
    assert not (tmp_path / "t").exists()
