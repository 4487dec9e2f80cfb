"""``ped.rank`` and ``ped rank``: the bootstrap, the probability of being best and the
contenders against hand computations, the contenders' coverage on simulated zoos with a known
best model, and every error path of the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ped.cli import main
from ped.inference import image_replicates
from ped.metrics import knn_accuracy, knn_credit, logme
from ped.rank import CONSENSUS, best_shares, contenders, rank_models


def _zoo(rng: np.random.Generator, separations, n_classes=4, per_class=15, dim=8):
    """Models that see the same class means at different scales: the larger the separation, the
    better the model, for every metric in expectation (m0 is the best when it is largest)."""
    y = np.repeat(np.arange(n_classes), per_class)
    means = rng.normal(size=(n_classes, dim))
    feats = {f"m{i}": means[y] * sep + rng.normal(size=(len(y), dim))
             for i, sep in enumerate(separations)}  # fmt: skip
    return feats, y


# --- the pieces, by hand -------------------------------------------------------------------


def test_best_shares_by_hand() -> None:
    values = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 1.0]])
    np.testing.assert_allclose(best_shares(values), [1.5 / 3, 0.5 / 3, 1 / 3])
    np.testing.assert_allclose(best_shares(values, lower_is_better=True), [1 / 3, 0, 2 / 3])
    with pytest.raises(ValueError, match="non-empty"):
        best_shares(np.empty((0, 3)))


@given(arrays(np.float64, (20, 4), elements=st.integers(-3, 3).map(float)))
@settings(max_examples=50, deadline=None)
def test_best_shares_sum_to_one_and_a_sole_winner_takes_its_rows(values) -> None:
    shares = best_shares(values)
    assert shares.sum() == pytest.approx(1.0) and (shares >= 0).all()
    sole = (values == values.max(axis=1, keepdims=True)).sum(axis=1) == 1
    for j in range(4):
        wins = sole & (values.argmax(axis=1) == j)
        assert shares[j] >= wins.mean() - 1e-12


def test_contenders_by_hand() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 1))
    values = np.hstack([base + 1.0, base + 0.99 + rng.normal(0, 0.05, (400, 1)), base - 1.0])
    inside = contenders(values, 0, level=0.95)
    assert inside.tolist() == [True, True, False]
    diff = values[:, 0] - values[:, 1]
    assert (np.quantile(diff, 0.025) <= 0) == inside[1]
    assert contenders(-values, 0, level=0.95, lower_is_better=True).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="level"):
        contenders(values, 0, level=1.0)


def test_the_bootstrap_by_hand() -> None:
    """Every interval is the percentile interval of the metric recomputed on the same
    class-stratified draws; k-NN's draws average the credits of all images."""
    rng = np.random.default_rng(1)
    feats, y = _zoo(rng, [2.0, 0.5, 1.0])
    r = rank_models(feats, y, n_boot=20, random_state=3)
    draws = image_replicates(y, 20, random_state=3)
    t = r.table.set_index(["metric", "model"])
    for name, x in feats.items():
        lg = np.array([logme(x[d], y[d]) for d in draws])
        assert t.loc[("logme", name), "score"] == pytest.approx(logme(x, y))
        assert t.loc[("logme", name), "low"] == pytest.approx(np.quantile(lg, 0.025))
        assert t.loc[("logme", name), "high"] == pytest.approx(np.quantile(lg, 0.975))
        credit = knn_credit(x, y)
        kn = np.array([credit[d].mean() for d in draws])
        assert t.loc[("knn", name), "score"] == pytest.approx(knn_accuracy(x, y))
        assert t.loc[("knn", name), "high"] == pytest.approx(np.quantile(kn, 0.975))
    assert set(r.table["metric"]) == {"knn", "logme", CONSENSUS}
    c = r.consensus()
    assert c["p_best"].sum() == pytest.approx(1.0) and c["contender"].iloc[0]
    assert r.best == c.index[0] == "m0"
    assert r.recommendation().startswith(("Fine-tune m0", f"{len(r.contenders)} models"))


def test_features_that_can_fit_the_labels_draw_a_warning_and_keep_their_repeats() -> None:
    """60 images: a resample holds about 38 distinct ones.  A 50-dimensional model can fit the
    labels of such a draw exactly (LogME has no maximum there): the ranking says so, names the
    model, and scores the draw with its repeats; the 8-dimensional models draw no warning."""
    rng = np.random.default_rng(8)
    feats, y = _zoo(rng, [2.0, 1.0])
    feats["wide"] = np.hstack([feats["m0"], rng.normal(size=(len(y), 42))])
    r = rank_models(feats, y, n_boot=10, random_state=2)
    (warning,) = [w for w in r.warnings if w.startswith("logme")]
    assert "wide has at least as many dimensions" in warning and "m0" not in warning
    draws = image_replicates(y, 10, random_state=2)
    lg = np.array([logme(feats["wide"][d], y[d]) for d in draws])
    t = r.table.set_index(["metric", "model"])
    assert t.loc[("logme", "wide"), "low"] == pytest.approx(np.quantile(lg, 0.025), rel=1e-12)
    assert t.loc[("logme", "wide"), "high"] == pytest.approx(np.quantile(lg, 0.975), rel=1e-12)
    assert not any(w.startswith("logme") for w in rank_models(
        {k: feats[k] for k in ("m0", "m1")}, y, n_boot=10).warnings)


def test_processes_give_the_same_ranking() -> None:
    rng = np.random.default_rng(7)
    feats, y = _zoo(rng, [2.0, 0.5, 1.0])
    one = rank_models(feats, y, n_boot=10, random_state=1)
    two = rank_models(feats, y, n_boot=10, random_state=1, n_jobs=2)
    pd.testing.assert_frame_equal(one.table, two.table, check_exact=False, rtol=1e-12)


def test_models_may_differ_in_width_and_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(2)
    feats, y = _zoo(rng, [2.0, 0.3])
    feats["wide"] = np.hstack([feats["m0"], rng.normal(size=(len(y), 24))])
    before = {k: v.copy() for k, v in feats.items()}
    y_before = y.copy()
    r = rank_models(feats, y, n_boot=10)
    assert set(r.consensus().index) == {"m0", "m1", "wide"}
    for k in feats:
        np.testing.assert_array_equal(feats[k], before[k])
    np.testing.assert_array_equal(y, y_before)


def test_a_degenerate_metric_is_named() -> None:
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 2)
    feats = {f"m{i}": rng.normal(size=(6, 4)) for i in range(3)}
    r = rank_models(feats, y, metrics=["knn"], n_boot=10)
    assert any("smallest class has 2 images" in w for w in r.warnings)
    same = {f"m{i}": np.tile(np.eye(3)[y], (1, 1)) * 5 for i in range(3)}
    r2 = rank_models(same, y, metrics=["knn"], n_boot=10)
    assert any("scores every model the same" in w for w in r2.warnings)
    assert len(r2.contenders) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"metrics": ["nope"]}, r"unknown metric\(s\) \['nope'\]"),
    ({"metrics": []}, "at least one metric"),
    ({"metrics": ["knn", "knn"]}, "named twice"),
    ({"n_boot": 5}, "at least 10"),
    ({"level": 1.5}, r"level must be in \(0, 1\)"),
    ({"n_jobs": 0}, "n_jobs"),
    ({"stats": {"m0": (0, 1)}}, r"no statistics for model\(s\) \['m1'\]"),
])  # fmt: skip
def test_bad_arguments_are_refused(kwargs, message) -> None:
    rng = np.random.default_rng(5)
    feats, y = _zoo(rng, [1.0, 2.0])
    with pytest.raises(ValueError, match=message):
        rank_models(feats, y, **kwargs)


def test_bad_inputs_name_the_model() -> None:
    rng = np.random.default_rng(6)
    feats, y = _zoo(rng, [1.0, 2.0])
    with pytest.raises(ValueError, match="at least two model"):
        rank_models({"m0": feats["m0"]}, y)
    bad = {**feats, "short": feats["m0"][:-1]}
    with pytest.raises(ValueError, match="model 'short'"):
        rank_models(bad, y)
    nan = {**feats, "nan": np.where(np.eye(*feats["m0"].shape) > 0, np.nan, feats["m0"])}
    with pytest.raises(ValueError, match="model 'nan'"):
        rank_models(nan, y)


def test_the_contenders_cover_a_known_best_model() -> None:
    """Simulated zoos whose best model is known (its classes lie furthest apart): over 40
    datasets, the consensus contenders (95 % level) hold it at least 90 % of the time (the rule
    is conservative: on this design it held it in all 40 while naming about two of the four
    models), and the set is not everything."""
    rng = np.random.default_rng(7)
    hits, sizes = [], []
    for _ in range(40):
        feats, y = _zoo(rng, [1.4, 1.2, 1.0, 0.6], per_class=12)
        r = rank_models(feats, y, n_boot=40, random_state=int(rng.integers(1 << 30)))
        hits.append("m0" in r.contenders)
        sizes.append(len(r.contenders))
    assert np.mean(hits) >= 0.9 and np.mean(sizes) < 3.5


# --- the command ---------------------------------------------------------------------------


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(8)
    feats, y = _zoo(rng, [2.0, 1.0, 0.4])
    out = tmp_path / "features"
    out.mkdir()
    for name, x in feats.items():
        np.save(out / f"{name}_toy_feature.npy", x.astype(np.float32))
        np.save(out / f"{name}_toy_label.npy", y)
    return out


def test_rank_writes_the_table_figure_and_report(folder, tmp_path, capsys) -> None:
    out, fig, report = tmp_path / "r.csv", tmp_path / "r.png", tmp_path / "r.html"
    assert main(["rank", "--features", str(folder), "--boot", "20", "--out", str(out),
                 "--figure", str(fig), "--report", str(report)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "toy: 60 images, 4 classes, 3 models, 20 resamples" in text
    assert "Fine-tune" in text or "cannot be told apart" in text
    table = pd.read_csv(out)
    assert set(table["metric"]) == {"knn", "logme", CONSENSUS} and len(table) == 9
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html


def _fail(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ped rank: error: ") and "Traceback" not in err
    return lines[0]


def test_rank_errors_are_one_line_and_leave_nothing(folder, tmp_path, capsys) -> None:
    listing = sorted(p.name for p in folder.iterdir())
    assert "not found" in _fail(["rank", "--features", str(tmp_path / "none")], capsys)
    np.save(folder / "m0_other_feature.npy", np.zeros((4, 2)))
    np.save(folder / "m0_other_label.npy", np.array([0, 0, 1, 1]))
    assert "choose one with --dataset" in _fail(["rank", "--features", str(folder)], capsys)
    assert "features of one model only" in _fail(["rank", "--features", str(folder),
                                                  "--dataset", "other"], capsys)  # fmt: skip
    assert "no features of dataset 'x'" in _fail(["rank", "--features", str(folder),
                                                  "--dataset", "x"], capsys)  # fmt: skip
    target = folder / "m0_toy_label.npy"
    assert "is one of the command's inputs" in _fail(
        ["rank", "--features", str(folder), "--dataset", "toy", "--out", str(target)], capsys)
    same = str(tmp_path / "same.png")
    assert "different files" in _fail(["rank", "--features", str(folder), "--dataset", "toy",
                                       "--figure", same, "--report", same], capsys)  # fmt: skip
    np.save(folder / "m1_toy_label.npy", np.load(folder / "m1_toy_label.npy")[::-1])
    assert "every model must score the same images" in _fail(
        ["rank", "--features", str(folder), "--dataset", "toy"], capsys)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*listing, "m0_other_feature.npy", "m0_other_label.npy"])
    assert not (tmp_path / "same.png").exists()


@pytest.mark.parametrize("flag, value", [("--boot", "5"), ("--level", "1.2"), ("--level", "x"),
                                         ("--jobs", "0")])  # fmt: skip
def test_rank_usage_errors(folder, capsys, flag, value) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rank", "--features", str(folder), flag, value])
    assert exc.value.code == 2


def test_rank_help_states_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    text = capsys.readouterr().out
    assert "k-NN accuracy" in text and "LogME" in text and "without PED" in text
    from ped.bench.choose import read_defaults_evidence

    evidence = read_defaults_evidence()
    assert evidence is not None  # committed: data/measurements/rank_defaults.json
    assert f"k-NN {evidence['mean_tau_w']['knn']:.3f}" in text
    assert f"{evidence['ped_change']:+.3f}" in text and json.dumps(evidence)


def test_rank_extracts_an_image_folder_then_ranks(tmp_path, capsys) -> None:
    """``--images`` with two random-weight ResNet-50s (seeds 0 and 1): their features of a tiny
    image folder are extracted into the cache once, reused on a second run, then ranked."""
    pytest.importorskip("torchvision")
    from PIL import Image

    rng = np.random.default_rng(9)
    images = tmp_path / "images"
    for c in ("cats", "dogs"):
        (images / c).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // (1 if c == "cats" else 3)
            Image.fromarray(pixels).save(images / c / f"{i}.png")
    cache = tmp_path / "cache"
    argv = ["rank", "--images", str(images), "--random-init", "r0", "--random-init", "r1",
            "--cache", str(cache), "--boot", "10", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "images: 12 images, 2 classes, 2 models" in out
    names = sorted(p.name for p in cache.iterdir())
    assert "r0_images_feature.npy" in names and "r1_images_label.npy" in names
    stamp = (cache / "r0_images_feature.npy").stat().st_mtime_ns
    assert main(argv) == 0  # the features are reused
    assert (cache / "r0_images_feature.npy").stat().st_mtime_ns == stamp


def test_rank_images_errors(tmp_path, capsys) -> None:
    base = ["rank", "--images", str(tmp_path)]
    assert "at least two models" in _fail([*base, "--random-init", "a"], capsys)
    assert "NAME=PATH" in _fail([*base, "--checkpoint", "nopath", "--random-init", "a"], capsys)
    assert "checkpoint file not found" in _fail(
        [*base, "--checkpoint", f"a={tmp_path / 'none.pth'}", "--random-init", "b"], capsys)
    assert "named twice" in _fail([*base, "--random-init", "a", "--random-init", "a"], capsys)
    assert "image folder" in _fail(["rank", "--images", str(tmp_path / "none"),
                                    "--random-init", "a", "--random-init", "b"], capsys)
    assert "go with --images" in _fail(["rank", "--features", str(tmp_path),
                                        "--random-init", "a"], capsys)  # fmt: skip
