"""``ped score`` and ``ped evaluate`` on small synthetic feature files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import gaussian_classes

import ped.scoring
from ped import potential_energy_descent
from ped.cli import main
from ped.evaluation import rank_statistics
from ped.fullscale.folder import find_feature_files
from ped.fullscale.scoring import (
    EVALUATION_COLUMNS,
    SCORE_COLUMNS,
    ScoreItem,
    evaluate_scores,
    load_truth,
    score_features,
    score_items,
    table1_layout,
)
from ped.paper import PUBLISHED_MODELS, finetune_accuracy

MODELS = ("alpha", "beta_v2", "gamma", "delta")  # one name with an underscore
DATASETS = ("toyA", "toyB")
SPREADS = {"alpha": 0.5, "beta_v2": 1.0, "gamma": 2.0, "delta": 4.0}


def separation(features: np.ndarray, labels: np.ndarray) -> float:
    """Between-class over total variance (a tiny metric for the tests)."""
    x = np.asarray(features, dtype=np.float64)
    counts = np.bincount(labels)
    means = np.zeros((counts.size, x.shape[1]))
    np.add.at(means, labels, x)
    means /= counts[:, None]
    between = (counts[:, None] * (means - x.mean(0)) ** 2).sum()
    return float(between / ((x - x.mean(0)) ** 2).sum())


def mean_norm(features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.linalg.norm(features, axis=1).mean())


def failing(features: np.ndarray, labels: np.ndarray) -> float:
    raise ValueError("this metric always fails")


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    folder = tmp_path / "features"
    folder.mkdir()
    for d, dataset in enumerate(DATASETS):
        for model in MODELS:
            x, y = gaussian_classes(rng, n_classes=3 + d, dim=6, n_per_class=12,
                                    spread=SPREADS[model], dtype=np.float32)  # fmt: skip
            np.save(folder / f"{model}_{dataset}_feature.npy", x)
            np.save(folder / f"{model}_{dataset}_label.npy", y.astype(np.int64))
    # reference features kept in the same folder are not targets; orphans are skipped
    np.save(folder / "alpha_imagenet_feature.npy", rng.normal(size=(20, 6)).astype(np.float32))
    np.save(folder / "orphan_toyA_feature.npy", np.zeros((3, 6), np.float32))
    return folder


def test_find_feature_files(features_dir, tmp_path):
    files = find_feature_files(features_dir, exclude_datasets={"imagenet"})
    assert [(f.dataset, f.model) for f in files] == [
        (d, m) for d in DATASETS for m in sorted(MODELS)
    ]
    with pytest.raises(FileNotFoundError, match="nothere"):
        find_feature_files(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <model>_<dataset>_feature.npy"):
        find_feature_files(tmp_path / "empty")


def test_score_without_ped(features_dir):
    before = np.load(features_dir / "gamma_toyA_feature.npy")
    table = score_features(features_dir, {"sep": separation, "norm": mean_norm})
    assert tuple(table.columns) == SCORE_COLUMNS
    assert len(table) == len(MODELS) * len(DATASETS) * 2
    assert not table["ped"].any() and (table["ped_reference"] == "").all()
    assert set(table["model"]) == set(MODELS) and set(table["dataset"]) == set(DATASETS)
    row = table[(table.model == "gamma") & (table.dataset == "toyA") & (table.metric == "sep")]
    y = np.load(features_dir / "gamma_toyA_label.npy")
    assert row["score"].item() == pytest.approx(separation(before, y))
    assert (table["seconds"] >= 0).all() and (table["error"] == "").all()
    np.testing.assert_array_equal(np.load(features_dir / "gamma_toyA_feature.npy"), before)
    # better-separated models score higher with this metric
    toy = table[(table.dataset == "toyA") & (table.metric == "sep")].set_index("model")["score"]
    assert toy["delta"] > toy["alpha"]


def test_score_with_ped_and_reference(features_dir, tmp_path):
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    ref = np.random.default_rng(3).normal(size=(30, 6)).astype(np.float32) * 3
    np.save(ref_dir / "gamma_imagenet_feature.npy", ref)
    options = {"nsigma": 0.6, "time_step": 0.5}
    table = score_features(
        features_dir, {"sep": separation}, ped=True, reference_dir=ref_dir, ped_options=options
    )
    assert len(table) == len(MODELS) * len(DATASETS) * 2
    moved = table[table["ped"]]
    assert set(moved.loc[moved.model == "gamma", "ped_reference"]) == {"imagenet"}
    assert set(moved.loc[moved.model != "gamma", "ped_reference"]) == {"target"}
    assert (moved["ped_seconds"] > 0).all()
    x = np.load(features_dir / "gamma_toyB_feature.npy")
    y = np.load(features_dir / "gamma_toyB_label.npy")
    expected = separation(potential_energy_descent(x, y, reference=ref, **options).features, y)
    got = moved[(moved.model == "gamma") & (moved.dataset == "toyB")]["score"].item()
    assert got == pytest.approx(expected)
    plain = table[~table["ped"]].set_index(["model", "dataset"])["score"]
    ped = moved.set_index(["model", "dataset"])["score"]
    assert (ped >= plain - 1e-9).all()  # PED pushes classes apart

    only = score_features(features_dir, {"sep": separation}, ped=True, datasets=["toyB"],
                          models=["alpha", "gamma"])  # fmt: skip
    assert set(only["dataset"]) == {"toyB"} and set(only["model"]) == {"alpha", "gamma"}
    assert set(only.loc[only["ped"], "ped_reference"]) == {"target"}
    with pytest.raises(FileNotFoundError, match="reference folder"):
        score_features(features_dir, {"sep": separation}, ped=True, reference_dir=tmp_path / "x")


def test_failing_metric_recorded_and_run_goes_on(features_dir):
    table = score_features(features_dir, {"bad": failing, "sep": separation}, models=["alpha"])
    bad = table[table.metric == "bad"]
    assert bad["score"].isna().all() and bad["error"].str.contains("always fails").all()
    assert table.loc[table.metric == "sep", "score"].notna().all()


def test_labels_remapped(tmp_path):
    x, y = gaussian_classes(np.random.default_rng(0), n_classes=3, dim=4, n_per_class=5)
    np.save(tmp_path / "m_d_feature.npy", x)
    np.save(tmp_path / "m_d_label.npy", y * 10 + 3)  # labels 3, 13, 23
    table = score_features(tmp_path, {"sep": separation})
    assert table["score"].item() == pytest.approx(separation(x, y))


def test_default_registry(features_dir):
    metrics = pytest.importorskip("ped.metrics")
    name = "logme" if "logme" in metrics.METRICS else next(iter(metrics.METRICS))
    table = score_features(features_dir, [name], models=["alpha", "delta"])
    assert len(table) == 4 and (table["metric"] == name).all()
    with pytest.raises(ValueError, match="unknown metric"):
        score_features(features_dir, ["no-such-metric"])


# ------------------------------------------------------------------------------ evaluate


def _scores_from(truth: pd.DataFrame, metric: str, sign: float = 1.0, ped: bool = False):
    return pd.DataFrame(
        {"model": truth["model"], "dataset": truth["dataset"], "metric": metric,
         "ped": ped, "score": sign * truth["accuracy"]}
    )  # fmt: skip


def test_evaluate_default_truth_is_published():
    truth = load_truth()
    wide = finetune_accuracy()
    assert len(truth) == wide.size and set(truth["model"]) == set(PUBLISHED_MODELS)
    cifar = truth[truth.dataset == "cifar10"]
    scores = pd.concat([_scores_from(cifar, "oracle"), _scores_from(cifar, "anti", -1.0, True)])
    out = evaluate_scores(scores)
    assert tuple(out.columns) == EVALUATION_COLUMNS and len(out) == 2
    oracle = out[out.metric == "oracle"].iloc[0]
    assert oracle["weighted_tau"] == pytest.approx(1.0) and oracle["n_models"] == 12
    assert oracle["top1_regret"] == 0.0 and not oracle["ped"]
    anti = out[out.metric == "anti"].iloc[0]
    assert anti["weighted_tau"] == pytest.approx(-1.0) and anti["ped"]


def test_evaluate_matches_rank_statistics_and_truth_formats(tmp_path):
    rng = np.random.default_rng(1)
    models = [f"m{i}" for i in range(6)]
    tidy = pd.DataFrame(
        [(m, d, float(rng.uniform(50, 90))) for d in ("d1", "d2") for m in models],
        columns=["model", "dataset", "accuracy"],
    )
    scores = _scores_from(tidy, "noisy")
    scores["score"] = scores["score"] + rng.normal(scale=10, size=len(scores))
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    tidy.pivot(index="dataset", columns="model", values="accuracy").to_csv(tmp_path / "wide.csv")
    a = evaluate_scores(scores, tmp_path / "tidy.csv")
    b = evaluate_scores(scores, tmp_path / "wide.csv")
    pd.testing.assert_frame_equal(a, b)
    d1 = scores[scores.dataset == "d1"]
    expected = rank_statistics(d1["score"].to_numpy(), tidy[tidy.dataset == "d1"]["accuracy"])
    row = a[a.dataset == "d1"].iloc[0]
    for key, value in expected.items():
        assert row[key] == pytest.approx(value)


def test_evaluate_drops_missing_and_small_groups(caplog):
    truth = pd.DataFrame({"model": ["a", "b", "c", "d"], "dataset": "x",
                          "accuracy": [1.0, 2.0, 3.0, 4.0]})  # fmt: skip
    scores = pd.DataFrame({"model": ["a", "b", "c", "d", "e"], "dataset": "x", "metric": "s",
                           "ped": False, "score": [1.0, 2.0, np.nan, 4.0, 5.0]})  # fmt: skip
    out = evaluate_scores(scores, truth)
    assert out["n_models"].item() == 3 and out["weighted_tau"].item() == pytest.approx(1.0)
    assert "['c', 'e']" in caplog.text
    assert evaluate_scores(scores, truth, min_models=4).empty
    with pytest.raises(ValueError, match="needs columns"):
        evaluate_scores(scores.drop(columns="score"), truth)
    with pytest.raises(ValueError, match="tidy"):
        load_truth(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="several accuracies"):
        load_truth(pd.concat([truth, truth]))


# ------------------------------------------------------------------------------ CLI


@pytest.fixture
def fake_registry(monkeypatch):
    """A stand-in metric registry (where :func:`ped.scoring.bind_metrics` looks metrics up), so
    the CLI test does not depend on the metrics package."""
    metrics = {"sep": separation, "norm": mean_norm}
    monkeypatch.setattr(ped.scoring, "METRICS", metrics)
    monkeypatch.setattr(ped.scoring, "DEFINITIONS", {"paper": {}, "release": {}})
    return metrics


def test_cli_score_and_evaluate(features_dir, tmp_path, fake_registry, capsys):
    scores_csv = tmp_path / "out" / "scores.csv"
    argv = ["score", "--features", str(features_dir), "--metric", "sep", "--metric", "norm",
            "--ped", "--nsigma", "0.3", "--out", str(scores_csv)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "32 row(s)" in out and "PED standardisation: target" in out
    table = pd.read_csv(scores_csv, keep_default_na=False)
    assert tuple(table.columns) == SCORE_COLUMNS and len(table) == 32

    truth = pd.DataFrame(
        [(m, d, 60.0 + 10 * i) for d in DATASETS for i, m in enumerate(MODELS)],
        columns=["model", "dataset", "accuracy"],
    )
    truth.to_csv(tmp_path / "truth.csv", index=False)
    eval_csv = tmp_path / "eval.csv"
    argv = ["evaluate", "--scores", str(scores_csv), "--truth", str(tmp_path / "truth.csv"),
            "--out", str(eval_csv)]  # fmt: skip
    assert main(argv) == 0
    assert "weighted tau" in capsys.readouterr().out
    result = pd.read_csv(eval_csv)
    assert len(result) == len(DATASETS) * 2 * 2  # datasets x metrics x ped
    sep = result[(result.metric == "sep") & (~result.ped)]
    np.testing.assert_allclose(sep["weighted_tau"], 1.0)  # spreads grow with the truth here

    with pytest.raises(SystemExit) as exc:
        main(["score", "--features", str(features_dir), "--metric", "nope", "--out",
              str(tmp_path / "x.csv")])  # fmt: skip
    assert exc.value.code == 2
    assert "unknown metric(s) ['nope']" in capsys.readouterr().err


def test_definitions_bind_the_released_options(features_dir):
    pytest.importorskip("ped.metrics")
    from ped.metrics import sfda

    paper = score_features(features_dir, ["sfda"])
    release = score_features(features_dir, ["sfda"], definitions="release")
    for (_, p), (_, r) in zip(paper.iterrows(), release.iterrows()):
        x = np.load(features_dir / f"{p.model}_{p.dataset}_feature.npy")
        y = np.load(features_dir / f"{p.model}_{p.dataset}_label.npy")
        assert p.score == sfda(x, y) < 0 < r.score == sfda(x, y, log=False) < 1
    with pytest.raises(ValueError, match="definitions must be one of"):
        score_features(features_dir, ["sfda"], definitions="latest")


def test_score_items_records_or_raises_failures():
    rng = np.random.default_rng(0)
    x, y = gaussian_classes(rng, n_classes=3, dim=4, n_per_class=10, spread=2.0)
    items = [ScoreItem("m", "d", x, y)]
    rows = score_items(items, {"sep": separation, "bad": failing}, ped=True)
    assert [(r["metric"], r["ped"]) for r in rows] == [("sep", False), ("sep", True),
                                                       ("bad", False), ("bad", True)]  # fmt: skip
    sep_ped = rows[1]
    moved = potential_energy_descent(x, y)
    assert sep_ped["score"] == separation(moved.features, y)
    assert sep_ped["ped_steps"] == moved.steps and sep_ped["ped_reference"] == "target"
    assert np.isnan(rows[2]["score"]) and rows[2]["error"].startswith("ValueError: this metric")
    with pytest.raises(ValueError, match="always fails"):
        score_items(items, {"bad": failing}, record_errors=False)
    only_ped = score_items(items, {"sep": separation}, static=False, ped=True)
    assert [r["ped"] for r in only_ped] == [True]
    with pytest.raises(ValueError, match="nothing to score"):
        score_items(items, {"sep": separation}, static=False)


def test_score_zoo_and_score_features_are_one_loop(features_dir):
    """The embedded benchmark's scorer and the feature-folder scorer give the same numbers."""
    pytest.importorskip("ped.metrics")
    from ped.bench import score_zoo

    files = score_features(features_dir, ["logme", "gbc"], ped=True, datasets=["toyA"],
                           definitions="release")  # fmt: skip
    feats = {m: (np.load(features_dir / f"{m}_toyA_feature.npy"),
                 np.load(features_dir / f"{m}_toyA_label.npy")) for m in MODELS}  # fmt: skip
    for moved in (False, True):
        zoo = score_zoo(feats, ["logme", "gbc"], ped=moved, reference="target")
        ours = files[files["ped"] == moved].set_index(["model", "metric"])["score"]
        theirs = zoo.set_index(["model", "metric"])["score"]
        pd.testing.assert_series_equal(ours.sort_index(), theirs.sort_index())


def test_cli_score_takes_the_definitions(features_dir, tmp_path, fake_registry, capsys):
    out = tmp_path / "s.csv"
    base = ["score", "--features", str(features_dir), "--metric", "sep", "--out", str(out)]
    assert main([*base, "--definitions", "release"]) == 0
    with pytest.raises(SystemExit) as exc:
        main([*base, "--definitions", "latest"])
    assert exc.value.code == 2 and "invalid choice: 'latest'" in capsys.readouterr().err


def test_table1_layout_is_the_papers_rows_and_columns():
    evaluation = pd.DataFrame({
        "dataset": ["d1", "d2", "d1", "d2", "d1", "d2"],
        "metric": ["logme", "logme", "logme", "logme", "gbc", "gbc"],
        "ped": [False, False, True, True, "False", "False"],  # as read back from a CSV
        "weighted_tau": [0.1, 0.3, 0.5, 0.7, -0.2, 0.0],
    })  # fmt: skip
    wide = table1_layout(evaluation)
    assert list(wide.index) == ["LogME", "LogME+PED", "GBC"]
    assert list(wide.columns) == ["d1", "d2", "mean"]
    assert wide.loc["LogME+PED", "mean"] == pytest.approx(0.6)
    assert wide.loc["GBC", "d1"] == -0.2
    with pytest.raises(ValueError, match="no column 'kendall'"):
        table1_layout(evaluation, "kendall")


@pytest.mark.parametrize("value", ["-80", "1e9", "", "inf", "high"])
def test_truth_values_are_checked_with_the_file_and_row_named(tmp_path, value):
    """Accuracies outside [0, 100] %, missing, infinite or not numbers are refused, naming the
    file, the line, the model and the dataset, in the tidy and in the wide layout."""
    tidy = tmp_path / "tidy.csv"
    tidy.write_text(f"model,dataset,accuracy\na,d1,50\nb,d1,{value}\n")
    with pytest.raises(ValueError, match=rf"truth file {tidy}, row 3 \(model 'b', dataset "
                                         r"'d1'\): accuracy"):
        load_truth(tidy)
    wide = tmp_path / "wide.csv"
    wide.write_text(f"dataset,a,b\nd1,50,60\nd2,70,{value}\n")
    with pytest.raises(ValueError, match=rf"truth file {wide}, row 3 \(model 'b', dataset 'd2'\)"):
        load_truth(wide)


def test_truth_in_range_loads_tidy_and_wide_alike(tmp_path):
    tidy = tmp_path / "tidy.csv"
    tidy.write_text("model,dataset,accuracy\na,d1,50\nb,d1,60.5\n")
    wide = tmp_path / "wide.csv"
    wide.write_text("dataset,a,b\nd1,50,60.5\n")
    a = load_truth(tidy).sort_values("model").reset_index(drop=True)
    b = load_truth(wide).sort_values("model").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["model", "dataset", "accuracy"]
