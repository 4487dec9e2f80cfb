"""The command line under bad input and faults (issue 15): one line on stderr, exit status 2 (130
for Ctrl-C), no traceback, checks before any work, nothing partial or stale left behind."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import gaussian_classes

import ped.scoring
from ped import _io
from ped.cli import CommandError, _describe, main

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("alpha", "beta_v2", "gamma")


# ------------------------------------------------------------------------------ helpers


def _one_error_line(err: str, command: str) -> str:
    """The single line a failing command writes; fails unless there is exactly one."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ped {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _fail(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    return capsys.readouterr().err


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Recorder:
    """A metric that records its calls (and can fail in a chosen way)."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.calls = 0
        self.raises = raises

    def __call__(self, features: np.ndarray, labels: np.ndarray) -> float:
        self.calls += 1
        if self.raises is not None:
            raise self.raises
        return float(np.asarray(features, dtype=np.float64).std())


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """A stand-in metric registry, in the one place metrics are looked up by name
    (:func:`ped.scoring.bind_metrics`), whose metrics record their calls."""
    metrics = {"rec": Recorder()}
    monkeypatch.setattr(ped.scoring, "METRICS", metrics)
    monkeypatch.setattr(ped.scoring, "DEFINITIONS", {"paper": {}, "release": {}})
    return metrics


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "features"
    folder.mkdir()
    for model in MODELS:
        x, y = gaussian_classes(rng, n_classes=3, dim=4, n_per_class=8, dtype=np.float32)
        np.save(folder / f"{model}_toy_feature.npy", x)
        np.save(folder / f"{model}_toy_label.npy", y.astype(np.int64))
    return folder


def _score(features: Path, out: Path, *extra: str, metric: str = "rec") -> list[str]:
    return ["score", "--features", str(features), "--metric", metric, "--out", str(out),
            "--no-progress", *extra]  # fmt: skip


# ------------------------------------------------------------- 1. labels that are not classes


@pytest.mark.parametrize(
    "labels",
    [np.random.default_rng(1).random(24), np.repeat([0.5, 1.5, 2.5], 8)],
    ids=["random-floats", "halves"],
)
def test_score_refuses_fractional_labels(features_dir, tmp_path, registry, capsys, labels):
    np.save(features_dir / "gamma_toy_label.npy", labels)
    out = tmp_path / "out" / "scores.csv"
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert "gamma_toy_label.npy: labels must be whole numbers" in line
    assert "nothing scored" in line and "2 of 3 feature file pair(s) are readable" in line
    assert registry["rec"].calls == 0 and _listing(out.parent) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, 2]).astype(bool), "dtype bool"),
        (np.array(["a", "b", "c"]), "dtype <U1"),
        (np.zeros((3, 1), int), "1-D"),
        (np.zeros(3, int), "single class"),
        (np.array([0.0, 1.0, np.nan]), "whole numbers"),
        (np.zeros(0, int), "empty"),
    ],
)
def test_check_score_labels_rejects(labels, message):
    from ped.fullscale.folder import check_score_labels

    with pytest.raises(ValueError, match=message):
        check_score_labels(labels, "x_label.npy")


def test_check_score_labels_remaps_whole_numbers_and_keeps_the_input():
    from ped.fullscale.folder import check_score_labels

    labels = np.array([3.0, 13.0, 3.0, 23.0])
    before = labels.copy()
    np.testing.assert_array_equal(check_score_labels(labels), [0, 1, 0, 2])
    np.testing.assert_array_equal(labels, before)


# ------------------------------------------------------------- 2. an unwritable --out


def test_out_is_a_folder(features_dir, tmp_path, registry, capsys):
    out = tmp_path / "a-folder"
    out.mkdir()
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert f"scores CSV {out} is a folder" in line
    assert registry["rec"].calls == 0 and _listing(out) == []


def test_out_under_a_file(features_dir, tmp_path, registry, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_error_line(_fail(_score(features_dir, blocker / "sub" / "s.csv"), capsys), "score")
    assert f"{blocker} is a file, not a folder" in line
    assert registry["rec"].calls == 0 and blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")],
)
def test_out_on_a_read_only_or_forbidden_folder(features_dir, tmp_path, registry, capsys,
                                                monkeypatch, code, reason):  # fmt: skip
    # as root chmod cannot forbid anything: the file system's answer is simulated
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(kwargs.get("dir")))

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    out = tmp_path / "ro" / "scores.csv"
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert line == f"ped score: error: cannot write scores CSV {out}: {reason}"
    assert registry["rec"].calls == 0 and _listing(out.parent) == []


def test_a_write_that_fails_after_the_work_keeps_the_old_file_and_no_temporary(
    features_dir, tmp_path, registry, capsys, monkeypatch
):
    out = tmp_path / "scores.csv"
    out.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full)
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert line == f"ped score: error: No space left on device: {out}"
    assert out.read_text() == "old\n" and _listing(tmp_path) == ["features", "scores.csv"]


@pytest.mark.parametrize(
    ("raised", "text"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/some/file"),
         "Permission denied: /some/file"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (EOFError(), "unexpected end of file"),
        (EOFError("No data left in file"), "No data left in file"),
        (KeyError("no such key"), "no such key"),
        (CommandError("it failed\non two lines"), "it failed on two lines"),
    ],
)
def test_every_reported_error_is_one_line_with_exit_2(features_dir, tmp_path, registry, capsys,
                                                      raised, text):  # fmt: skip
    registry["rec"].raises = raised
    out = tmp_path / "out.csv"
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert line == f"ped score: error: {text}"
    assert _listing(tmp_path) == ["features"]


def test_describe_names_both_paths_of_an_os_error():
    exc = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    assert _describe(exc) == "Invalid cross-device link: /a: /b"


# ------------------------------------------------------------- 3. unreadable .npy files


def _savez(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a path would get ".npz" appended
        np.savez(handle, **arrays)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])


CORRUPTIONS = {
    "0-byte": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "truncated": (_truncated, "truncated or corrupt .npy file"),
    "garbage": (lambda p: p.write_bytes(b"\x00garbage" * 10), "not a .npy file (no NumPy header)"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps(np.zeros((3, 2)))),
               "a pickle, not a .npy array"),
    "object-array": (lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object)),
                     "holds Python objects (dtype object)"),
    "npz": (lambda p: _savez(p, x=np.zeros(2)), "an .npz archive"),
    "integers": (lambda p: np.save(p, np.zeros((24, 4), np.int64)),
                 "features must be floating-point, got dtype int64"),
    "1-D": (lambda p: np.save(p, np.zeros(24)), "non-empty (N, D) array, got shape (24,)"),
    "rows": (lambda p: np.save(p, np.zeros((5, 4))), "has 5 rows but beta_v2_toy_label.npy has 24"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_bad_feature_file_is_named_and_nothing_is_scored(features_dir, tmp_path, registry,
                                                          capsys, kind):  # fmt: skip
    corrupt, message = CORRUPTIONS[kind]
    corrupt(features_dir / "beta_v2_toy_feature.npy")
    out = tmp_path / "scores.csv"
    line = _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert "beta_v2_toy_feature.npy" in line and message in line, line
    assert "nothing scored: 1 bad file(s)" in line
    assert "2 of 3 feature file pair(s) are readable" in line
    assert registry["rec"].calls == 0 and not out.exists()


def test_every_bad_file_is_listed_and_the_library_raises_too(features_dir, registry):
    from ped.fullscale.scoring import score_features

    (features_dir / "alpha_toy_feature.npy").write_bytes(b"")
    (features_dir / "gamma_toy_label.npy").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        score_features(features_dir, ["rec"])
    text = str(info.value)
    assert "2 bad file(s)" in text and "1 of 3 feature file pair(s) are readable" in text
    assert "alpha_toy_feature.npy: empty file" in text and "gamma_toy_label.npy: empty" in text
    assert registry["rec"].calls == 0


def test_a_bad_reference_file_is_named(features_dir, tmp_path, registry, capsys):
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "gamma_imagenet_feature.npy").write_bytes(b"\x93NUMPY garbage")
    line = _one_error_line(
        _fail(_score(features_dir, tmp_path / "s.csv", "--ped", "--reference", str(ref)), capsys),
        "score",
    )
    assert "reference gamma_imagenet_feature.npy: truncated or corrupt" in line
    assert registry["rec"].calls == 0


# ------------------------------------------------------------- 4. PED options


@pytest.mark.parametrize(
    ("option", "value"),
    [("--nsigma", "-1"), ("--nsigma", "0"), ("--time-step", "0"), ("--time-step", "nan"),
     ("--nsigma", "inf")],
)  # fmt: skip
def test_bad_ped_options_are_usage_errors(features_dir, tmp_path, registry, capsys, option,
                                          value):  # fmt: skip
    out = tmp_path / "s.csv"
    err = _fail(_score(features_dir, out, "--ped", option, value), capsys)
    assert f"argument {option}: must be a finite number > 0, got {value}" in err
    assert "Traceback" not in err and registry["rec"].calls == 0 and not out.exists()


@pytest.mark.parametrize(("option", "value"), [("--nsigma", "1e308"), ("--time-step", "1e200")])
def test_extreme_ped_options_are_refused_before_scoring(features_dir, tmp_path, registry, capsys,
                                                        option, value):  # fmt: skip
    """Finite but absurd options used to make every PED row fail (overflow) with exit 0."""
    out = tmp_path / "s.csv"
    line = _one_error_line(_fail(_score(features_dir, out, "--ped", option, value), capsys),
                           "score")  # fmt: skip
    assert f"{option[2:].replace('-', '_')} must be at most" in line
    assert registry["rec"].calls == 0 and not out.exists()


def test_ped_options_are_checked_before_scoring(features_dir, registry):
    from ped.fullscale.scoring import score_features

    for options, message in [({"nsigma": -1.0}, "nsigma must be a finite number > 0"),
                             ({"time_step": 0}, "time_step must be"),
                             ({"time_step": 1e200}, "time_step must be at most 1e"),
                             ({"nsigma": 1e308}, "nsigma must be at most 1e"),
                             ({"max_steps": 0}, "max_steps must be"),
                             ({"variant": "fast"}, "variant must be"),
                             ({"sigma": 1.0}, r"unknown PED option\(s\) \['sigma'\]")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            score_features(features_dir, ["rec"], ped=True, ped_options=options)
    with pytest.raises(ValueError, match="without ped=True"):
        score_features(features_dir, ["rec"], ped_options={"nsigma": 0.3})
    assert registry["rec"].calls == 0


# ------------------------------------------------------------- 5. names that do not round-trip


@pytest.mark.parametrize(
    ("model", "dataset", "message"),
    [
        ("rnd", "my_set", "must not contain '_'"),
        ("", "set", "non-empty"),
        ("a/b", "set", "file-name fragment"),
        ("rnd", ".hidden", "file-name fragment"),
    ],
)
def test_extract_refuses_names_that_do_not_round_trip(tmp_path, capsys, model, dataset, message):
    out = tmp_path / "feats"
    argv = ["extract", "--model", model, "--random-init", "--dataset", "fake", "--name", dataset,
            "--out", str(out)]  # fmt: skip
    line = _one_error_line(_fail(argv, capsys), "extract")
    assert message in line and not out.exists()


def test_names_round_trip_through_the_file_names():
    from hypothesis import given
    from hypothesis import strategies as st

    from ped.fullscale.extraction import check_names, output_paths
    from ped.fullscale.folder import parse_feature_name

    @given(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,12}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,12}", fullmatch=True),
    )
    def check(model: str, dataset: str) -> None:
        assert check_names(model, dataset) == (model, dataset)
        path, _ = output_paths("out", model, dataset)
        assert parse_feature_name(path.name) == (model, dataset)

    check()
    with pytest.raises(ValueError, match="'my-set'"):
        check_names("rnd", "my_set")


# ------------------------------------------------------------- 6. reuse only matching outputs


def _extract(out: Path, *extra: str) -> list[str]:
    return ["extract", "--model", "rnd", "--random-init", "--dataset", "fake", "--out", str(out),
            "--device", "cpu", "--no-progress", *extra]  # fmt: skip


def test_extract_reuses_only_outputs_with_the_same_settings(tmp_path, capsys):
    pytest.importorskip("torchvision")
    out = tmp_path / "feats"
    assert main(_extract(out, "--limit", "4", "--image-size", "32")) == 0
    feature = out / "rnd_fake_feature.npy"
    record = json.loads((out / "rnd_fake_extract.json").read_text())
    assert record["n_samples"] == 4 and record["metadata"]["image_size"] == 32
    assert record["metadata"]["source_dataset"] == "fake"
    assert _listing(out) == ["rnd_fake_extract.json", "rnd_fake_feature.npy", "rnd_fake_label.npy"]
    stamp = feature.stat().st_mtime_ns
    capsys.readouterr()

    # another batch size gives the same content: reused
    assert main(_extract(out, "--limit", "4", "--image-size", "32", "--batch-size", "2")) == 0
    assert "same settings" in capsys.readouterr().out

    for extra, diff in [
        (["--limit", "6", "--image-size", "32"], "n_samples 4 -> 6"),
        (["--limit", "4", "--image-size", "32", "--seed", "1"], "metadata.seed 0 -> 1"),
        (["--limit", "4", "--image-size", "40"], "metadata.image_size 32 -> 40"),
    ]:
        line = _one_error_line(_fail(_extract(out, *extra), capsys), "extract")
        assert "exists but was extracted with other settings" in line and diff in line, line
        assert "--overwrite" in line
    assert feature.stat().st_mtime_ns == stamp and np.load(feature).shape == (4, 2048)

    assert main(_extract(out, "--limit", "6", "--image-size", "32", "--overwrite")) == 0
    assert np.load(feature).shape == (6, 2048) and np.load(out / "rnd_fake_label.npy").shape == (6,)
    assert json.loads((out / "rnd_fake_extract.json").read_text())["n_samples"] == 6
    assert _listing(out) == ["rnd_fake_extract.json", "rnd_fake_feature.npy", "rnd_fake_label.npy"]
    capsys.readouterr()

    # a feature file truncated to 0 bytes (or cut short) is not taken for finished
    kept = feature.read_bytes()
    for broken in (b"", kept[: len(kept) // 2]):
        feature.write_bytes(broken)
        line = _one_error_line(_fail(_extract(out, "--limit", "6", "--image-size", "32"),
                                     capsys), "extract")  # fmt: skip
        assert "rnd_fake_feature.npy is unreadable or truncated" in line and "--overwrite" in line
    feature.write_bytes(kept)

    (out / "rnd_fake_extract.json").unlink()  # outputs without a record: not trusted
    line = _one_error_line(_fail(_extract(out, "--limit", "6", "--image-size", "32"), capsys),
                           "extract")  # fmt: skip
    assert "the record of its settings, does not" in line
    assert _listing(out) == ["rnd_fake_feature.npy", "rnd_fake_label.npy"]


# ------------------------------------------------------------- 7. ped execute: failures, modes

NOTEBOOK = (
    "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
    "  name: python3\n  display_name: Python 3\n---\n\n"
    "```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n\n"
    "```{code-cell} ipython3\nif x == 5:\n    raise RuntimeError(f'boom {x}')\n```\n"
)


def test_execute_failure_removes_the_stale_success_and_outputs_get_the_usual_mode(
    tmp_path, capsys
):
    pytest.importorskip("papermill")
    source = tmp_path / "nb.md"
    source.write_text(NOTEBOOK)
    out = tmp_path / "executed"
    expected_mode = _io.file_mode()
    assert main(["execute", str(source), "--out", str(out), "-p", "x=1"]) == 0
    assert "1/1" in capsys.readouterr().err  # the progress bar
    good = out / "nb.ipynb"
    assert good.stat().st_mode & 0o777 == expected_mode == 0o666 & ~_umask()

    err = _fail(["execute", str(source), "--out", str(out), "-p", "x=5", "--no-progress"], capsys)
    line = _one_error_line(err, "execute")
    assert "nb.md failed: cell [" in line and "] raised RuntimeError: boom 5" in line
    assert f"partial notebook: {out / 'nb.failed.ipynb'}; the earlier nb.ipynb was removed" in line
    assert "0 notebook(s) executed before it, 0 not run" in line
    assert _listing(out) == ["nb.failed.ipynb"]  # no stale success, no temporary
    assert (out / "nb.failed.ipynb").stat().st_mode & 0o777 == expected_mode

    assert main(["execute", str(source), "--out", str(out), "-p", "x=1", "--no-progress"]) == 0
    assert _listing(out) == ["nb.ipynb"]


def test_execute_checks_every_notebook_before_running_any(tmp_path, capsys):
    pytest.importorskip("jupytext")
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text(NOTEBOOK)
    second.write_text(NOTEBOOK.replace("x = 1", "y = 1").replace("if x", "if y"))
    out = tmp_path / "executed"
    line = _one_error_line(
        _fail(["execute", str(first), str(second), "--out", str(out), "-p", "x=2"], capsys),
        "execute",
    )
    assert line == "ped execute: error: b.md has no parameter(s) ['x']"
    assert _listing(out) == []
    line = _one_error_line(
        _fail(["execute", str(first), str(tmp_path / "none.md"), "--out", str(out)], capsys),
        "execute",
    )
    assert "notebook source(s) not found" in line and "none.md" in line
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    line = _one_error_line(_fail(["execute", str(first), "--out", str(blocker)], capsys), "execute")
    assert f"{blocker} is a file, not a folder" in line


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------- 12. progress and quiet logs


def test_score_shows_progress_unless_told_not_to(features_dir, tmp_path, registry, capsys):
    argv = ["score", "--features", str(features_dir), "--metric", "rec", "--out",
            str(tmp_path / "s.csv")]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "score" in err and "3/3" in err
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_library_info_logs_are_quiet_unless_verbose(features_dir, tmp_path, registry, capsys):
    # a library logger set to INFO by its own configuration, as distributed sets its loggers
    chatter = logging.getLogger("ped_test_library.scheduler")
    old_level = chatter.level
    chatter.setLevel(logging.INFO)

    def chatty(features, labels):
        chatter.info("flood of library info")
        chatter.warning("a real library warning")
        return 0.0

    registry["chatty"] = chatty
    argv = _score(features_dir, tmp_path / "s.csv", metric="chatty")
    handlers = list(logging.getLogger().handlers)
    try:
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "a real library warning" in err and "flood of library info" not in err
        assert "INFO" not in err
        assert main(["-v", *argv]) == 0
        err = capsys.readouterr().err
        assert "flood of library info" in err and "ped.fullscale.scoring INFO" in err
    finally:
        chatter.setLevel(old_level)
    assert logging.getLogger().handlers == handlers  # main() removed the handler it added


# ------------------------------------------------------------- 13. Ctrl-C, usage errors


def test_ctrl_c_is_one_line_and_exit_130(features_dir, tmp_path, registry, capsys):
    registry["rec"].raises = KeyboardInterrupt()
    out = tmp_path / "s.csv"
    err = _fail(_score(features_dir, out), capsys, code=130)
    assert [line for line in err.splitlines() if line] == ["ped score: interrupted"]
    assert _listing(tmp_path) == ["features"]


def test_ctrl_c_in_a_real_process(features_dir, tmp_path):
    marker = tmp_path / "started"
    out = tmp_path / "s.csv"
    script = (
        "import pathlib, signal, sys, time\n"
        # a job started in the background inherits SIGINT ignored (POSIX); a terminal's is not
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import ped.metrics\n"
        "def slow(x, y):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('x')\n"
        "    time.sleep(60)\n"
        "ped.metrics.METRICS['slow'] = slow\n"
        "from ped.cli import main\n"
        f"sys.exit(main({_score(features_dir, out, metric='slow')!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    # generous: on a loaded 2-core machine a niced child's shutdown alone can take tens of
    # seconds; a lost signal would show as the sleep's normal exit (status 0), not as a timeout
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if line] == ["ped score: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features", "started"]


def test_python_m_ped_cli_reports_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "ped.cli", "score", "--features", str(tmp_path), "--metric",
         "logme", "--out", str(blocker / "s.csv")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    _one_error_line(result.stderr, "score")
    assert f"{blocker} is a file, not a folder" in result.stderr


def test_min_models_below_two_is_a_usage_error(tmp_path, capsys):
    scores = tmp_path / "scores.csv"
    scores.write_text("model,dataset,metric,score\na,d,m,1.0\n")
    err = _fail(["evaluate", "--scores", str(scores), "--min-models", "1", "--out",
                 str(tmp_path / "e.csv")], capsys)  # fmt: skip
    assert "argument --min-models: must be an integer >= 2" in err and "Traceback" not in err
    assert not (tmp_path / "e.csv").exists()
    from ped.fullscale.scoring import evaluate_scores

    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="min_models must be"):
            evaluate_scores(scores, min_models=bad)


def test_evaluate_checks_its_output_before_reading(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    line = _one_error_line(_fail(["evaluate", "--scores", str(tmp_path / "none.csv"), "--out",
                                  str(folder)], capsys), "evaluate")  # fmt: skip
    assert f"evaluation CSV {folder} is a folder" in line


def test_verdict_refuses_an_unknown_task_or_benchmark_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "verdict"
    line = _one_error_line(_fail(["verdict", "--task", "nope", "--out", str(out)], capsys),
                           "verdict")  # fmt: skip
    assert "unknown task 'nope'" in line
    assert not out.exists()
    err = _fail(["verdict", "--benchmark", "v9", "--out", str(out)], capsys)
    assert "invalid choice: 'v9'" in err and "Traceback" not in err and not out.exists()
    # a secondary set fixes its images: a contradicting --split is refused before any work
    line = _one_error_line(_fail(["verdict", "--set", "train", "--split", "trainval", "--out",
                                  str(out)], capsys), "verdict")  # fmt: skip
    assert "--set train scores the train images; drop --split trainval" in line
    assert not out.exists()
    err = _fail(["verdict", "--set", "nsigma9", "--out", str(out)], capsys)
    assert "invalid choice: 'nsigma9'" in err and not out.exists()
    for args, message in ((["--set", "train", "--seed-spread", "nleep"], "give one"),
                          (["--seed-spread", "nleep", "--seeds", "1"], "--seeds must be >= 2"),
                          (["--seed-spread", "nope"], "unknown metric 'nope'"),
                          (["--control", "radial", "--set", "train"], "give one"),
                          (["--replication", "--set", "train"], "drop --set"),
                          (["--replication", "--task", "mnist10"], "drop --set"),
                          (["--replication"], "no stored verdict scores")):
        line = _one_error_line(_fail(["verdict", *args, "--out", str(out)], capsys), "verdict")
        assert message in line and not out.exists()
    err = _fail(["verdict", "--control", "nope", "--out", str(out)], capsys)
    assert "invalid choice: 'nope'" in err and not out.exists()


def test_selection_noise_refuses_bad_arguments_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "noise"
    for args, message in ((["--cells", "0"], "--cells must be >= 1"),
                          (["--cells", "9999"], "n must be in 1..78"),
                          (["--only", "nope"], "no trained encoder for ['nope']"),
                          (["--task", "nope"], "no ground truth for task(s) ['nope']")):
        line = _one_error_line(_fail(["zoo", "selection-noise", "--out", "data/zoo_v2",
                                      "--noise-out", str(out), *args], capsys), "zoo")
        assert message in line and not out.exists()


def test_output_rule_refuses_links_devices_and_inputs(features_dir, tmp_path, registry, capsys):
    """No command replaces a symbolic link, a device, pipe or socket, or one of its own inputs;
    the refused target is untouched and nothing is scored."""
    target = tmp_path / "kept.csv"
    target.write_text("mine\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    line = _one_error_line(_fail(_score(features_dir, link), capsys), "score")
    assert "is a symbolic link" in line
    assert link.is_symlink() and target.read_text() == "mine\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    line = _one_error_line(_fail(_score(features_dir, fifo), capsys), "score")
    assert "not a regular file" in line and stat.S_ISFIFO(fifo.lstat().st_mode)
    own = features_dir / "alpha_toy_label.npy"
    before = own.read_bytes()
    line = _one_error_line(_fail(_score(features_dir, own), capsys), "score")
    assert "one of the command's inputs" in line and own.read_bytes() == before
    assert registry["rec"].calls == 0
    # evaluate: its own scores file is an input
    scores = tmp_path / "scores.csv"
    scores.write_text("model,dataset,metric,ped,score,error\n")
    line = _one_error_line(_fail(["evaluate", "--scores", str(scores), "--out", str(scores)],
                                 capsys), "evaluate")  # fmt: skip
    assert "one of the command's inputs" in line


def test_library_writers_follow_the_output_rule(tmp_path):
    from ped._io import write_text_atomic

    target = tmp_path / "t.txt"
    target.write_text("old")
    link = tmp_path / "l.txt"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match="symbolic link"):
        write_text_atomic(link, "new")
    assert target.read_text() == "old" and link.is_symlink()
    write_text_atomic(target, "new")  # a regular file is replaced, as asked
    assert target.read_text() == "new"
    with pytest.raises(FileExistsError, match="not a regular file"):
        write_text_atomic("/dev/null", "x")
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_execute_refuses_to_overwrite_its_source_and_clashing_names(tmp_path, capsys):
    import shutil

    src = Path(__file__).resolve().parent.parent / "notebooks" / "01_gradient_and_energy.md"
    nb = tmp_path / "n.ipynb"
    import jupytext

    jupytext.write(jupytext.read(src), nb)
    before = nb.read_bytes()
    line = _one_error_line(_fail(["execute", str(nb), "--out", str(tmp_path)], capsys),
                           "execute")
    assert "one of the command's inputs" in line and nb.read_bytes() == before
    other = tmp_path / "b"
    other.mkdir()
    shutil.copy(src, other / "n.md")
    line = _one_error_line(_fail(["execute", str(nb), str(other / "n.md"), "--out",
                                  str(tmp_path / "out")], capsys), "execute")
    assert "the same executed notebook" in line and not (tmp_path / "out").exists()


def test_a_refused_command_creates_no_output_folder(features_dir, tmp_path, registry, capsys):
    out = tmp_path / "new" / "deeper" / "s.csv"
    line = _one_error_line(_fail(_score(features_dir, out, "--metric", "nope"), capsys), "score")
    assert "nope" in line and not (tmp_path / "new").exists()
    (features_dir / "alpha_toy_feature.npy").write_bytes(b"not an array")
    _one_error_line(_fail(_score(features_dir, out), capsys), "score")
    assert not (tmp_path / "new").exists() and registry["rec"].calls == 0


def test_verify_names_the_artefact_that_does_not_match(tmp_path, capsys):
    import shutil

    from ped.paper import data_dir

    data = tmp_path / "data"
    shutil.copytree(data_dir() / "verdict" / "v1", data / "verdict" / "v1")
    assert main(["verify", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "all 1 artefact(s) match their manifests" in out
    victim = data / "verdict" / "v1" / "mnist10.npz"
    blob = bytearray(victim.read_bytes())
    blob[-100] ^= 0x01
    victim.write_bytes(bytes(blob))
    line = _one_error_line(_fail(["verify", "--data", str(data)], capsys), "verify")
    assert "mnist10.npz does not match its sha256" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_error_line(_fail(["verify", "--data", str(empty)], capsys), "verify")
    assert "no artefact with a manifest" in line


def test_a_metric_that_fails_on_one_model_keeps_the_others_and_names_it(
    features_dir, tmp_path, registry, capsys
):
    """A failure mid-run (here a metric that breaks on the second model) does not lose what was
    scored: every row is written, the failed one carries its error, and the log names it."""
    calls = {"n": 0}

    def flaky(features: np.ndarray, labels: np.ndarray) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise np.linalg.LinAlgError("singular matrix")
        return float(np.asarray(features, dtype=np.float64).std())

    registry["flaky"] = flaky
    out = tmp_path / "scores.csv"
    assert main(_score(features_dir, out, metric="flaky")) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == len(MODELS) and table["score"].isna().sum() == 1
    failed = table[table["score"].isna()].iloc[0]
    assert "singular matrix" in failed["error"]
    err = capsys.readouterr().err
    assert failed["model"] in err and "singular matrix" in err and "Traceback" not in err


_SLOW_NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A notebook that waits

```{code-cell} ipython3
:tags: [parameters]

wait = 0.0
marker = ""
```

```{code-cell} ipython3
import pathlib, time
if marker:
    pathlib.Path(marker).write_text("x")
time.sleep(wait)
```
"""


def _execute_process(tmp_path: Path, *params: str) -> subprocess.Popen:
    source = tmp_path / "waits.md"
    source.write_text(_SLOW_NOTEBOOK)
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from ped.cli import main\n"
              f"sys.exit(main(['execute', {str(source)!r}, '--out', {str(tmp_path / 'out')!r}, "
              f"'--no-progress', {', '.join(repr(p) for p in params)}]))\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def test_execute_prints_nothing_of_the_kernels_own(tmp_path):
    """ipykernel's start-up warning ("running over TCP without encryption") stays off stderr."""
    proc = _execute_process(tmp_path, "-p", "wait=0")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert err.strip() == "", err
    assert (tmp_path / "out" / "waits.ipynb").is_file()


def test_ctrl_c_of_execute_is_one_line_without_the_kernels_traceback(tmp_path):
    marker = tmp_path / "started"
    proc = _execute_process(tmp_path, "-p", "wait=60", "-p", f"marker={json.dumps(str(marker))}")
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if line] == ["ped execute: interrupted"]
    assert not (tmp_path / "out" / "waits.ipynb").exists()


def test_dask_commands_without_the_sweep_group_name_it_and_write_nothing(
        features_dir, tmp_path, registry, capsys, monkeypatch):  # fmt: skip
    """Without ``ped[sweep]`` (Dask), ``ped score --workers`` and ``ped sweep`` say which group to
    install, in one line with exit status 2, before writing anything."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    out = tmp_path / "new" / "s.csv"
    line = _one_error_line(_fail(_score(features_dir, out, "--workers", "2"), capsys), "score")
    assert "pip install 'ped[sweep]'" in line
    assert not (tmp_path / "new").exists() and registry["rec"].calls == 0
    notebook = tmp_path / "nb.md"
    notebook.write_text("---\njupytext:\n  text_representation:\n    format_name: myst\n"
                        "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n"
                        "```{code-cell} python\n:tags: [parameters]\nseed = 0\n```\n")
    sweep_out = tmp_path / "sweep"
    line = _one_error_line(_fail(["sweep", str(notebook), "--out", str(sweep_out),
                                  "-p", "seed=[1, 2]"], capsys), "sweep")  # fmt: skip
    assert "pip install 'ped[sweep]'" in line and not sweep_out.exists()
