"""ped.bench: ground-truth reductions (spread, noise ceiling), zoo scoring and Table 1 cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ped import bench as B
from ped.evaluation import weighted_tau
from ped.bench.zoo.finetune import COLUMNS


def _gt(acc: dict[str, float], noise: float, seeds: int = 3, task: str = "t",
        rng: int = 0) -> pd.DataFrame:  # fmt: skip
    """A ground truth: seed-0 grid of 2 settings (the second always worse), seeds at the best."""
    gen = np.random.default_rng(rng)
    rows = []
    for model, a in acc.items():
        rows.append([model, task, "finetune", 0, 0.1, 5e-4, a - 5, a - 5])
        for s in range(seeds):
            test = a + noise * gen.standard_normal()
            rows.append([model, task, "finetune", s, 0.01, 5e-4, a, test])
    return pd.DataFrame(rows, columns=COLUMNS)


def test_model_accuracy_uses_the_selected_setting() -> None:
    gt = _gt({"a": 90.0, "b": 80.0}, noise=0.0)
    acc = B.model_accuracy(gt)
    assert acc.loc["a", "t"] == pytest.approx(90.0) and acc.loc["b", "t"] == pytest.approx(80.0)
    assert B.model_accuracy(gt, seeds=[1]).loc["a", "t"] == pytest.approx(90.0)
    with pytest.raises(ValueError, match="seeds"):
        B.model_accuracy(gt, seeds=[7])
    with pytest.raises(ValueError, match="linear"):
        B.model_accuracy(gt, protocol="linear")


def test_spread_vs_noise_exact() -> None:
    # two models, seeds with known values: a = 90 +- 1, b = 80 +- 2 (sample SDs 1 and 2)
    rows = [["a", "t", "finetune", s, 0.01, 0.0, 0.0, v] for s, v in enumerate([89, 90, 91])]
    rows += [["b", "t", "finetune", s, 0.01, 0.0, 0.0, v] for s, v in enumerate([78, 80, 82])]
    out = B.spread_vs_noise(pd.DataFrame(rows, columns=COLUMNS)).loc["t"]
    assert out["models"] == 2 and out["seeds"] == 3
    assert out["spread"] == pytest.approx(np.std([90, 80], ddof=1))
    assert out["range"] == pytest.approx(10.0)
    assert out["seed_sd"] == pytest.approx(np.sqrt((1 + 4) / 2))
    assert out["se_mean"] == pytest.approx(np.sqrt(2.5 / 3))
    assert out["ratio"] == pytest.approx(out["spread"] / out["se_mean"])


def test_noise_ceiling_is_one_without_noise_and_drops_with_it() -> None:
    acc = {f"m{i}": 70.0 + 2 * i for i in range(10)}
    clean = B.noise_ceiling(_gt(acc, noise=0.0)).loc["t"]
    assert clean["ceiling"] == pytest.approx(1.0) and clean["splits"] == 3
    noisy = B.noise_ceiling(_gt(acc, noise=20.0)).loc["t"]
    assert noisy["ceiling"] < 0.9 and noisy["low"] <= noisy["ceiling"] <= noisy["high"]
    with pytest.raises(ValueError, match="2 seeds"):
        B.noise_ceiling(_gt(acc, noise=1.0, seeds=1))


def test_noise_ceiling_matches_a_hand_computed_split() -> None:
    acc = {f"m{i}": 70.0 + i for i in range(6)}
    gt = _gt(acc, noise=3.0, seeds=4, rng=3)
    runs = gt[(gt["lr"] == 0.01)].pivot_table(index="model", columns="seed", values="test")
    taus = [weighted_tau(runs[list(p)].mean(axis=1), runs[[s for s in range(4) if s not in p]].mean(axis=1))
            for p in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]]  # fmt: skip
    out = B.noise_ceiling(gt).loc["t"]
    # both orders of a split give the same tau_w: the three distinct splits are used
    assert out["splits"] == 3 and out["ceiling"] == pytest.approx(np.mean(taus))
    assert (out["low"], out["high"]) == (pytest.approx(min(taus)), pytest.approx(max(taus)))
    # many seeds: 200 random splits, never the C(22, 11) = 705,432 of an enumeration, the same
    # splits as the acceptance check's ceiling
    many = _gt(acc, noise=3.0, seeds=22, rng=3)
    out = B.noise_ceiling(many).loc["t"]
    table = many[many["lr"] == 0.01].pivot_table(index="model", columns="seed", values="test")
    assert out["splits"] == 200
    assert out["ceiling"] == pytest.approx(B.split_half_ceiling(table)[0], rel=1e-12)


def _features(n_models: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Models whose class separation grows with their index."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 20)
    out = {}
    for m in range(n_models):
        centres = rng.standard_normal((3, 8)) * (0.5 + m)
        out[f"m{m}"] = ((centres[y] + rng.standard_normal((60, 8))).astype(np.float32), y)
    return out


def test_score_zoo_and_tau_table() -> None:
    feats = _features()
    before = {k: (x.copy(), y.copy()) for k, (x, y) in feats.items()}
    plain = B.score_zoo(feats, ["logme", "gbc"])
    assert list(plain.columns) == ["model", "metric", "ped", "score", "seconds", "ped_seconds",
                                   "ped_steps"]  # fmt: skip
    assert len(plain) == 8 and not plain["ped"].any() and (plain["ped_steps"] == 0).all()
    moved = B.score_zoo(feats, ["logme"], ped=True, reference="target", nsigma=0.6)
    assert moved["ped"].all() and (moved["ped_steps"] >= 0).all()
    for k in feats:  # inputs untouched
        np.testing.assert_array_equal(feats[k][0], before[k][0])
    truth = pd.Series({f"m{m}": 50.0 + m for m in range(4)})
    taus = B.tau_table(plain, truth)
    assert set(taus.index) == {"logme", "gbc"}
    assert taus["gbc"] == pytest.approx(
        weighted_tau(plain[plain.metric == "gbc"]["score"].to_numpy(), truth.to_numpy()))
    assert taus["gbc"] > 0.5  # better separated models score higher


def test_score_zoo_definitions() -> None:
    """The release's SFDA (no log, the published rows) by default, the paper's on request."""
    from ped.metrics import nleep, sfda

    feats = _features(2)
    x, y = feats["m1"]
    release = B.score_zoo(feats, ["sfda", "nleep"]).set_index(["model", "metric"])["score"]
    paper = B.score_zoo(feats, ["sfda", "nleep"], definitions="paper")
    paper = paper.set_index(["model", "metric"])["score"]
    assert release["m1", "sfda"] == pytest.approx(sfda(x, y, log=False))
    assert paper["m1", "sfda"] == pytest.approx(sfda(x, y))
    assert release["m1", "nleep"] == pytest.approx(nleep(x, y, log=False))
    with pytest.raises(ValueError, match="definitions"):
        B.score_zoo(feats, ["sfda"], definitions="mine")


def test_score_zoo_errors() -> None:
    feats = _features(2)
    with pytest.raises(ValueError, match="unknown metric"):
        B.score_zoo(feats, ["nope"])
    with pytest.raises(ValueError, match="reference"):
        B.score_zoo(feats, ["logme"], ped=True, reference="imagenet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ped=False"):
        B.score_zoo(feats, ["logme"], nsigma=0.5)
    with pytest.raises(ValueError, match="no ground truth"):
        B.tau_table(B.score_zoo(feats, ["gbc"]), pd.Series({"m0": 1.0}))


def test_seed_bootstrap_tau() -> None:
    scores = pd.Series({f"m{i}": float(i) for i in range(8)})
    exact = pd.DataFrame({s: [70.0 + 2 * i for i in range(8)] for s in range(3)},
                         index=scores.index)  # fmt: skip
    ci = B.seed_bootstrap_tau(scores, exact, n_resamples=50)
    assert ci.estimate == pytest.approx(1.0) and ci.low == pytest.approx(1.0)
    noisy = exact + np.random.default_rng(0).normal(0, 5, exact.shape)
    ci = B.seed_bootstrap_tau(scores, noisy, n_resamples=200)
    assert ci.low <= ci.estimate <= ci.high and ci.high - ci.low > 0
    with pytest.raises(ValueError, match="missing"):
        B.seed_bootstrap_tau(scores, noisy.drop(index="m0"), n_resamples=10)
    gap = noisy.copy()
    gap.loc["m0", 1] = np.nan
    with pytest.raises(ValueError, match="missing"):
        B.seed_bootstrap_tau(scores, gap, n_resamples=10)


def test_load_ground_truth_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="make ground-truth"):
        B.load_ground_truth(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"model": ["a"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="lacks"):
        B.load_ground_truth(bad)
    good = tmp_path / "gt.csv"
    _gt({"a": 90.0}, noise=1.0).to_csv(good, index=False)
    assert len(B.load_ground_truth(good)) == 4


def test_synthetic_task() -> None:
    x, y = B.synthetic_task(120, 16, 4, seed=1)
    assert x.shape == (120, 16) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [30, 30, 30, 30]
    x2, y2 = B.synthetic_task(120, 16, 4, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="n >= n_classes"):
        B.synthetic_task(3, 16, 4)


def test_zoo_features_rejects_an_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        B.zoo_features("digits10", split="test")  # type: ignore[arg-type]


def test_selected_runs_keeps_every_seed_of_the_chosen_setting() -> None:
    gt = _gt({"a": 90.0, "b": 80.0}, noise=1.0)
    runs = B.selected_runs(gt)
    assert len(runs) == 6 and set(runs["lr"]) == {0.01}
    assert sorted(runs[runs.model == "a"]["seed"]) == [0, 1, 2]


def _v2_table(means: dict[str, float], noise: float, *, seeds: int = 6, edge_model: str | None = None,
              seed: int = 0) -> pd.DataFrame:
    """A synthetic rebuilt-protocol table: selection over lr {0.01, 0.03, 0.1} x wd {1e-4, 1e-3,
    1e-2} (the middle chosen, or the largest lr for ``edge_model``), evaluation seeds 0..S-1."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, mu in means.items():
        for lr in (0.01, 0.03, 0.1):
            for wd in (1e-4, 1e-3, 1e-2):
                rows.append({"model": model, "task": "t", "protocol": "finetune", "role": "select",
                             "seed": 100, "lr": lr, "wd": wd, "val": mu, "test": mu})
        lr = 0.1 if model == edge_model else 0.03
        for s in range(seeds):
            acc = mu + noise * rng.standard_normal()
            rows.append({"model": model, "task": "t", "protocol": "finetune", "role": "eval",
                         "seed": s, "lr": lr, "wd": 1e-3, "val": acc, "test": acc})
    return pd.DataFrame(rows)


def test_ground_truth_checks_against_hand_computation() -> None:
    means = {"random_init": 50.0, "a": 60.0, "b": 64.0, "c": 68.0, "d": 72.0, "e": 76.0}
    gt = _v2_table(means, noise=0.5)
    checks = B.ground_truth_checks(gt, n_resamples=300)
    row = checks.loc["t"]
    table = gt[gt["role"] == "eval"].pivot_table(index="model", columns="seed", values="test")
    m = table.mean(axis=1)
    assert row["pretrain_gap"] == pytest.approx(m.drop("random_init").median() - m["random_init"])
    # the model farthest from the median of the means is left out of the separability
    far = (m - m.median()).abs().idxmax()
    assert row["left_out"] == far == "random_init"
    kept = table.drop(far)
    se = np.sqrt(kept.var(axis=1, ddof=1).mean()) / np.sqrt(6)
    assert row["separability"] == pytest.approx(kept.mean(axis=1).std(ddof=1) / se)
    # se of the gap: about sqrt(2) * noise / sqrt(6) (median of 5 pretrained + random init)
    assert 0.1 < row["pretrain_se"] < 0.6
    assert row["ceiling"] == pytest.approx(1.0) and row["ceiling_splits"] == 10
    assert row["eval_seeds"] == 6 and row["disjoint"] and row["lr_edges"] == 0
    assert row["ok"]


def test_ground_truth_checks_fail_where_they_should() -> None:
    flat = {"random_init": 70.0, "a": 70.5, "b": 69.5, "c": 70.2, "d": 69.8, "e": 70.1}
    row = B.ground_truth_checks(_v2_table(flat, noise=2.0), n_resamples=300).loc["t"]
    assert not row["ok_pretrain"] and not row["ok_separable"] and not row["ok_crisp"]
    assert not row["ok"]
    means = {"random_init": 50.0, "a": 60.0, "b": 64.0, "c": 68.0, "d": 72.0, "e": 76.0}
    row = B.ground_truth_checks(_v2_table(means, 0.5, edge_model="c"), n_resamples=50)
    assert row.loc["t", "lr_edges"] == 1 and not row.loc["t", "ok_interior"]
    few = B.ground_truth_checks(_v2_table(means, 0.5, seeds=4), n_resamples=50, min_seeds=2)
    assert few.loc["t", "eval_seeds"] == 4 and not few.loc["t", "ok_crisp"]
    with pytest.raises(ValueError, match="no complete"):
        B.ground_truth_checks(_v2_table(means, 0.5, seeds=4), n_resamples=50)
    overlap = _v2_table(means, 0.5)
    overlap.loc[overlap["role"] == "select", "seed"] = 0
    assert not B.ground_truth_checks(overlap, n_resamples=50).loc["t", "disjoint"]
    with pytest.raises(ValueError, match="role"):
        B.ground_truth_checks(overlap.drop(columns="role"))
    with pytest.raises(ValueError, match="random_init"):
        B.ground_truth_checks(overlap[overlap["model"] != "random_init"])


def test_complete_cells_drops_cells_in_progress() -> None:
    means = {"random_init": 50.0, "a": 60.0, "b": 64.0, "c": 68.0, "d": 72.0, "e": 76.0}
    gt = _v2_table(means, 0.5)
    # "d" has two evaluation seeds left to run, "e" is still selecting
    partial = gt[~((gt["model"] == "d") & (gt["role"] == "eval") & (gt["seed"] >= 4))
                 & ~((gt["model"] == "e") & (gt["role"] == "eval"))]
    kept = B.complete_cells(partial)
    assert sorted(kept["model"].unique()) == ["a", "b", "c", "random_init"]
    assert len(kept) == 4 * (9 + 6)
    full = B.ground_truth_checks(gt[gt["model"].isin(kept["model"].unique())], n_resamples=50)
    row = B.ground_truth_checks(partial, n_resamples=50)
    assert row.loc["t", "models"] == 4
    pd.testing.assert_frame_equal(row, full)
    with pytest.raises(ValueError, match="role"):
        B.complete_cells(gt.drop(columns="role"))


def test_complete_cells_balances_seeds_being_extended() -> None:
    means = {"random_init": 50.0, "a": 60.0, "b": 64.0, "c": 68.0, "d": 72.0, "e": 76.0}
    gt = _v2_table(means, 0.5, seeds=10)
    # "a" and "b" have ten evaluation seeds, the others the first six; "e" has seeds 2..9
    short = (gt["role"] == "eval") & (gt["seed"] >= 6) & ~gt["model"].isin(["a", "b"])
    extending = gt[~short | (gt["model"] == "e")]
    extending = extending[~((extending["model"] == "e") & (extending["role"] == "eval")
                            & (extending["seed"] < 2))]
    before = extending.copy()
    kept = B.complete_cells(extending)
    pd.testing.assert_frame_equal(extending, before)  # nothing passed in is modified
    evals = kept[kept["role"] == "eval"]
    assert sorted(kept["model"].unique()) == sorted(means)
    # every model keeps the seeds all complete cells share: 2..5
    assert evals.groupby("model")["seed"].agg(lambda s: sorted(s)).map(tuple).unique().tolist() \
        == [(2, 3, 4, 5)]
    assert len(kept[kept["role"] == "select"]) == len(gt[gt["role"] == "select"])
    # with "e" still short of six seeds it drops out and the others keep 0..5
    kept6 = B.complete_cells(extending[~((extending["model"] == "e") & (extending["seed"] < 6)
                                         & (extending["role"] == "eval"))], min_seeds=6)
    assert "e" not in set(kept6["model"])
    assert set(kept6.loc[kept6["role"] == "eval", "seed"]) == set(range(6))
    balanced = gt[(gt["model"] != "e") & ((gt["role"] == "select") | (gt["seed"] < 6))]
    pd.testing.assert_frame_equal(
        B.ground_truth_checks(kept6, n_resamples=50),
        B.ground_truth_checks(balanced.reset_index(drop=True), n_resamples=50))
    with pytest.raises(ValueError, match="min_seeds"):
        B.complete_cells(gt, min_seeds=1)


def test_split_half_ceiling_counts_and_random_splits() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.standard_normal((8, 5)) + np.arange(8)[:, None] * 3)
    value, splits = B.split_half_ceiling(table)
    assert splits == 10 and 0.5 < value <= 1.0  # C(5, 2) splits of 2 against 3
    big = pd.DataFrame(rng.standard_normal((8, 14)))
    assert B.split_half_ceiling(big, n_splits=50)[1] == 50
    six = pd.DataFrame(rng.standard_normal((8, 6)))
    assert B.split_half_ceiling(six)[1] == 10  # C(6, 3) / 2: each split counted once
    # 40 seeds: C(40, 20) = 1.4e11 splits are never enumerated (the default draws 200)
    assert B.split_half_ceiling(pd.DataFrame(rng.standard_normal((4, 40))))[1] == 200
    with pytest.raises(ValueError, match="2 seeds"):
        B.split_half_ceiling(table[[0]])


def _edited(tmp_path: Path, edit: Any) -> str:
    """Write a valid ground truth, apply ``edit`` (to its table or text), return the error."""
    table = _gt({"a": 90.0, "b": 80.0}, noise=1.0)
    path = tmp_path / "gt.csv"
    if isinstance(edit, tuple):
        row, column, value = edit
        table[column] = table[column].astype(object)
        table.loc[row, column] = value
        table.to_csv(path, index=False)
    else:
        table.to_csv(path, index=False)
        path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError) as info:
        B.load_ground_truth(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((2, "test", np.nan), "run a/t/finetune seed 1 lr 0.01 wd 0.0005 (row 3): test accuracy "
                              "is missing (empty or NaN)"),
        ((2, "test", 1e9), "(row 3): test accuracy 1000000000.0 is not in [0, 100] %"),
        ((0, "val", -3.0), "run a/t/finetune seed 0 lr 0.1 wd 0.0005 (row 1): val accuracy -3.0"),
        ((1, "test", np.inf), "test accuracy inf is not in [0, 100] %"),
        ((1, "test", "high"), "test is 'high', not a number"),
        ((5, "protocol", "fine-tune"), "protocol 'fine-tune' is not one of"),
        ((5, "seed", 1.5), "seed 1.5 is not an integer >= 0"),
        ((5, "seed", -1), "seed -1 is not an integer >= 0"),
        ((5, "lr", 0.0), "lr 0.0 is not a finite number > 0"),
        ((5, "wd", np.nan), "wd nan is not a finite number >= 0"),
        ((5, "model", np.nan), "model is empty"),
        (lambda text: text[: text.rindex(",")], "(row 8): test accuracy is missing"),  # truncated
        (lambda text: text + text.splitlines()[-1] + "\n", "appears twice"),
        (lambda text: text + '"unterminated,\n', "does not parse as a CSV table"),
        (lambda text: "", "does not parse as a CSV table"),
        (lambda text: text.splitlines()[0] + "\n", "holds no run"),
    ],
    ids=["nan", "1e9", "negative", "inf", "text", "protocol", "seed-fraction", "seed-negative",
         "lr-zero", "wd-nan", "no-model", "truncated", "duplicate", "bad-quote", "empty",
         "header-only"],
)
def test_load_ground_truth_refuses_malformed_runs_naming_them(
    tmp_path: Path, edit: Any, message: str
) -> None:
    text = _edited(tmp_path, edit)
    assert message in text and str(tmp_path / "gt.csv") in text, text


def test_load_ground_truth_counts_the_bad_runs_and_accepts_linear_probes(tmp_path: Path) -> None:
    table = _gt({"a": 90.0, "b": 80.0}, noise=1.0)
    table["test"] = table["test"].astype(object)
    table.loc[[1, 4], "test"] = np.nan
    table.to_csv(tmp_path / "gt.csv", index=False)
    with pytest.raises(ValueError, match=r"\(row 2\).* \(2 bad runs in all\)"):
        B.load_ground_truth(tmp_path / "gt.csv")
    linear = pd.DataFrame([["a", "t", "linear", 0, np.nan, 1.0, 50.0, 55.0],
                           ["a", "t", "linear", 0, np.nan, 10.0, 40.0, 45.0]], columns=COLUMNS)
    linear.to_csv(tmp_path / "linear.csv", index=False)
    loaded = B.load_ground_truth(tmp_path / "linear.csv")
    assert loaded["lr"].isna().all() and loaded["seed"].dtype == np.int64
    linear.loc[0, "lr"] = 0.1
    linear.to_csv(tmp_path / "linear.csv", index=False)
    with pytest.raises(ValueError, match="a linear-probe run has an lr"):
        B.load_ground_truth(tmp_path / "linear.csv")


def test_a_run_file_without_test_is_refused(tmp_path: Path) -> None:
    """A run JSON without "test" becomes an empty cell of the gathered table: refused by name."""
    import json

    from ped.bench.zoo.finetune import ground_truth_table

    runs = tmp_path / "runs" / "a" / "t"
    runs.mkdir(parents=True)
    for seed in (0, 1):
        record = {"model": "a", "task": "t", "protocol": "finetune", "seed": seed, "lr": 0.01,
                  "wd": 5e-4, "val": 80.0, "test": 81.0, "seconds": 1.0}  # fmt: skip
        if seed == 1:
            del record["test"]
        (runs / f"finetune_lr0.01_wd0.0005_s{seed}.json").write_text(json.dumps(record))
    ground_truth_table(tmp_path).to_csv(tmp_path / "gt.csv", index=False)
    with pytest.raises(ValueError, match="run a/t/finetune seed 1 .*test accuracy is missing"):
        B.load_ground_truth(tmp_path / "gt.csv")


def test_the_committed_ground_truth_loads() -> None:
    gt = B.load_ground_truth()
    assert len(gt) == 780 and set(gt["protocol"]) == {"finetune", "linear"}
    assert gt["test"].between(0, 100).all() and gt["seed"].dtype == np.int64


def test_selected_runs_of_the_rebuilt_protocol_are_its_evaluation_runs() -> None:
    from ped.bench.zoo.finetune import COLUMNS_V2

    rows = [["a", "t", "finetune", "select", 100, lr, 5e-4, val, val - 1]
            for lr, val in ((0.01, 80.0), (0.03, 85.0))]
    rows += [["a", "t", "finetune", "eval", s, 0.03, 5e-4, 84.0, 80.0 + s] for s in range(6)]
    gt = pd.DataFrame(rows, columns=COLUMNS_V2)
    runs = B.selected_runs(gt)
    assert list(runs.columns) == list(COLUMNS) and len(runs) == 6
    assert set(runs["seed"]) == set(range(6)) and (runs["lr"] == 0.03).all()
    assert B.model_accuracy(gt).loc["a", "t"] == pytest.approx(82.5)


def test_zoo_records_and_table_read_the_committed_zoo() -> None:
    records = B.zoo_records()
    table = B.zoo_table(records)
    assert list(table.index) == list(records) and "random_init" in table.index
    simclr = records["simclr"]
    row = table.loc["simclr"]
    assert row["steps"] == simclr["steps"] and row["batch size"] == 256
    assert row["wall time (min)"] == pytest.approx(simclr["wall_time_s"] / 60)
    with pytest.raises(ValueError, match="no trained encoder"):
        B.zoo_records(Path("/nonexistent-zoo"))


def test_compute_cost_sums_runs_and_pretraining() -> None:
    gt = pd.DataFrame({"protocol": ["finetune", "finetune", "linear"], "seconds": [10.0, 30.0, 2.0]})
    zoo = pd.DataFrame({"method": ["simclr", "byol", "random"],
                        "wall time (min)": [1.0, 3.0, 0.0]})  # fmt: skip
    cost = B.compute_cost(gt, zoo)
    assert cost.loc["finetune", "count"] == 2 and cost.loc["finetune", "sum"] == 40.0
    assert cost.loc["pretraining", "sum"] == 240.0 and cost.loc["pretraining", "median"] == 120.0
    assert cost["hours"].sum() == pytest.approx((40 + 2 + 240) / 3600)
    v2 = gt.assign(role=["select", "eval", "eval"])
    assert {"finetune/select", "finetune/eval", "linear/eval"} <= set(B.compute_cost(v2, zoo).index)


def test_ground_truth_summary_joins_spread_ceiling_and_agreement() -> None:
    gt = B.load_ground_truth()
    summary = B.ground_truth_summary(gt)
    spread, ceiling = B.spread_vs_noise(gt), B.noise_ceiling(gt)
    pd.testing.assert_series_equal(summary["ratio"], spread["ratio"])
    pd.testing.assert_series_equal(summary["ceiling"], ceiling["ceiling"])
    assert summary["τ_w(linear, fine-tune)"].between(-1, 1).all()
    no_linear = B.ground_truth_summary(gt[gt["protocol"] == "finetune"])
    assert "τ_w(linear, fine-tune)" not in no_linear


def test_effective_rank_counts_the_directions_used():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    # r orthogonal directions with equal spread: rank exactly r (centred +-1 coefficients)
    signs = np.array([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]).T
    for r in (1, 2, 3):
        x = signs[:, :r] @ basis[:r]
        assert B.effective_rank(x) == pytest.approx(r, rel=1e-12)
    # one dominant direction: close to 1; isotropic with N >> D: close to D
    lopsided = rng.standard_normal((500, 12)) * np.r_[100.0, np.full(11, 1e-3)]
    assert 1.0 <= B.effective_rank(lopsided) < 1.01
    assert 11.5 < B.effective_rank(rng.standard_normal((20000, 12))) <= 12.0

    @settings(max_examples=25, deadline=None)
    @given(st.floats(1e-3, 1e3), st.floats(-50, 50))
    def invariant(scale, shift):
        x = rng.standard_normal((40, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1, 0.01])
        assert B.effective_rank(scale * x + shift) == pytest.approx(B.effective_rank(x), rel=1e-9)

    invariant()


@pytest.mark.parametrize(("features", "message"), [
    (np.ones((5, 3)), "no variance"),
    (np.ones((1, 3)), "at least 2 samples"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN|finite"),
    (np.arange(6).reshape(2, 3), "float"),
])  # fmt: skip
def test_effective_rank_refuses_bad_features(features, message):
    with pytest.raises(ValueError, match=message):
        B.effective_rank(features)


def test_benchmarks_registry_and_load() -> None:
    from ped.bench.tasks import REBUILT_EXCLUDED, REBUILT_TASK_NAMES, TASKS

    assert B.get_benchmark().name == B.DEFAULT_BENCHMARK == "v2"
    first, rebuilt = B.get_benchmark("v1"), B.get_benchmark("v2")
    assert first.tasks == tuple(TASKS) and not first.rebuilt
    assert rebuilt.tasks == REBUILT_TASK_NAMES and rebuilt.rebuilt
    assert not set(rebuilt.tasks) & set(REBUILT_EXCLUDED)
    with pytest.raises(ValueError, match="unknown benchmark 'v9'"):
        B.get_benchmark("v9")
    for bench in (first, rebuilt):
        gt, models = bench.load()
        assert set(gt["task"]) == set(bench.tasks) and "random_init" in models
        for task in bench.tasks:  # every model has the ground truth of every task
            assert set(models) <= set(gt.loc[gt["task"] == task, "model"])
    gt, models = rebuilt.load()
    counts = gt[gt["role"] == "eval"].groupby(["model", "task"])["seed"].nunique()
    # complete cells only, balanced: within a task every cell has the same evaluation seeds
    assert (counts.groupby(level="task").nunique() == 1).all() and counts.min() >= 6


def test_seeds_needed_projects_the_noise_corrected_law() -> None:
    means = {"random_init": 50.0, "a": 60.0, "b": 60.4, "c": 60.8, "d": 61.2, "e": 61.6}
    checks = B.ground_truth_checks(_v2_table(means, noise=1.0), n_resamples=50)
    sep = checks.loc["t", "separability"]
    need = B.seeds_needed(checks)["t"]
    assert need == max(6, int(np.ceil(6 * 24 / (sep**2 - 1))))
    projected = lambda s_: np.sqrt(s_ / 6 * (sep**2 - 1) + 1)  # noqa: E731
    assert projected(need) >= 5 and (need == 6 or projected(need - 1) < 5)
    # the law on simulated data: separability^2 - 1 grows in proportion to the seeds
    big = [B.ground_truth_checks(_v2_table(means, noise=1.0, seeds=n, seed=r),
                                 n_resamples=10).loc["t", "separability"] ** 2 - 1
           for n in (8, 32) for r in range(12)]
    ratio = np.mean(big[12:]) / np.mean(big[:12])
    assert 2.5 < ratio < 6  # 4 in expectation
    assert B.seeds_needed(checks, separability=1.01)["t"] == 6  # never fewer than measured
    flat = checks.assign(separability=0.9)
    assert B.seeds_needed(flat)["t"] == -1  # no spread beyond noise: no projection
    with pytest.raises(ValueError, match="> 1"):
        B.seeds_needed(checks, separability=1)



def test_as_rebuilt_table_marks_the_first_protocol_as_not_disjoint() -> None:
    gt = _gt({"random_init": 50.0, "a": 60.0, "b": 70.0}, noise=1.0)
    before = gt.copy()
    table = B.as_rebuilt_table(gt)
    pd.testing.assert_frame_equal(gt, before)  # input untouched
    select, evals = table[table["role"] == "select"], table[table["role"] == "eval"]
    assert len(select) == len(gt[gt["seed"] == 0]) and set(select["seed"]) == {0}
    pd.testing.assert_frame_equal(evals.drop(columns="role").reset_index(drop=True),
                                  B.selected_runs(gt).reset_index(drop=True), check_dtype=False)
    checks = B.ground_truth_checks(table, n_resamples=20, min_seeds=3)
    assert not checks["disjoint"].any() and (checks["eval_seeds"] == 3).all()
    rebuilt = _v2_table({"random_init": 50.0, "a": 60.0}, 0.5)
    pd.testing.assert_frame_equal(B.as_rebuilt_table(rebuilt), rebuilt)
    with pytest.raises(ValueError, match="fine-tuning"):
        B.as_rebuilt_table(gt[gt["protocol"] == "linear"])


@pytest.fixture(scope="module")
def rebuilt_checks() -> pd.DataFrame:
    gt, _ = B.get_benchmark("v2").load()
    return B.ground_truth_checks(gt)


def test_rebuilt_benchmark_keeps_what_it_meets(rebuilt_checks: pd.DataFrame) -> None:
    """The acceptance checks on the committed ground truth: what holds today must keep holding."""
    from ped.bench.tasks import REBUILT_TASK_NAMES, load_task

    checks = rebuilt_checks
    assert list(checks.index) == sorted(REBUILT_TASK_NAMES) and len(checks) >= 6  # point 5
    assert max(len(load_task(t).classes) for t in checks.index) >= 50
    assert (checks["models"] >= 8).all()
    assert checks["disjoint"].all() and (checks["eval_seeds"] >= 6).all()  # point 3, its design
    assert checks["ok_pretrain"].all()  # point 1 on every task (gap 3.1 to 11.3 points)
    # point 4: every selection interior; a weight decay of 0, the end of its axis, is no edge
    assert (checks["lr_edges"] == 0).all() and (checks["wd_edges"] == 0).all()
    assert checks["wd_zero"].sum() >= 1  # what the third extension found: no decay is best


def test_rebuilt_benchmark_meets_every_check(rebuilt_checks: pd.DataFrame) -> None:
    """Issue 11's four checks on every task of the committed ground truth (13 encoders;
    separability 5.1 to 9.5, noise ceiling 0.82 to 0.92 with 6 to 22 evaluation seeds)."""
    assert rebuilt_checks["ok"].all(), rebuilt_checks.loc[~rebuilt_checks["ok"]].index.tolist()
    assert (rebuilt_checks["models"] >= 13).all()


def test_the_rebuilt_ground_truth_is_verified_when_loaded(tmp_path, monkeypatch):
    """An in-range edit of one accuracy in the committed table is refused by the loader the
    book uses, naming the file (issue 26: the manifest is enforced where it is read)."""
    import shutil

    from ped.bench import get_benchmark
    from ped.paper import data_dir

    src = data_dir()
    shutil.copytree(src / "ground_truth_v2", tmp_path / "ground_truth_v2")
    (tmp_path / "zoo_v2").mkdir()
    shutil.copy(src / "zoo_v2" / "manifest.json", tmp_path / "zoo_v2" / "manifest.json")
    monkeypatch.setenv("PED_DATA_DIR", str(tmp_path))
    bm = get_benchmark("v2")
    gt, models = bm.load()
    assert len(models) == 13 and len(gt) > 0
    csv = tmp_path / "ground_truth_v2" / "ground_truth.csv"
    lines = csv.read_text().splitlines()
    fields = lines[1].split(",")
    fields[-2] = f"{min(float(fields[-2]) + 10, 100):.4f}"  # the test accuracy, still in range
    csv.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"ground_truth\.csv does not match its sha256"):
        bm.load()
