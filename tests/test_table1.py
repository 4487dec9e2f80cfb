"""ped.bench.table1: Table 1's cells, layout, paired gains and claims on hand-made scores."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from ped import bench as B
from ped.evaluation import weighted_tau
from ped.plot import rank_scatter
from ped.bench import table1 as table1_module
from ped.bench.table1 import SUPPORT_FRACTION, claims, paired_gains, table1, tau_cells
from ped.bench.zoo.finetune import COLUMNS

MODELS = ["m0", "m1", "m2", "m3", "m4"]
TASKS = ["t1", "t2"]
ACC = {"t1": [60.0, 65.0, 70.0, 75.0, 80.0], "t2": [80.0, 70.0, 75.0, 60.0, 65.0]}


def _gt(seeds: int = 4, noise: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for task, accs in ACC.items():
        for model, a in zip(MODELS, accs):
            rows += [[model, task, "finetune", s, 0.01, 5e-4, a, a + noise * rng.standard_normal()]
                     for s in range(seeds)]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _scores() -> pd.DataFrame:
    """LogME orders t1 right and t2 wrong; with PED it orders both right. GBC is the reverse."""
    rows = []
    for task in TASKS:
        for ped in (False, True):
            for metric in ("logme", "gbc"):
                good = (metric == "logme") == ped or task == "t1"
                for model, a in zip(MODELS, ACC[task]):
                    rows.append({"model": model, "metric": metric, "ped": ped, "task": task,
                                 "score": a if good else -a})  # fmt: skip
    return pd.DataFrame(rows)


def test_tau_cells_match_weighted_tau_and_order_rows():
    gt = _gt()
    cells = tau_cells(_scores(), gt, n_resamples=0)
    assert list(cells.tau.index) == ["LogME", "LogME+PED", "GBC", "GBC+PED"]
    assert list(cells.tau.columns) == [*TASKS, "mean"] and cells.tasks == TASKS
    acc = B.model_accuracy(gt)
    for task in TASKS:
        truth = acc.loc[MODELS, task].to_numpy()
        assert cells.tau.loc["LogME+PED", task] == pytest.approx(weighted_tau(ACC[task], truth))
        assert cells.tau.loc["GBC+PED", task] == pytest.approx(
            weighted_tau(ACC[task] if task == "t1" else -np.array(ACC[task]), truth))
    assert cells.tau.loc["LogME", "mean"] == pytest.approx(cells.tau.loc["LogME", TASKS].mean())
    assert cells.low.isna().all().all() and not cells.draws


def test_tau_cells_intervals_cover_the_estimate():
    cells = tau_cells(_scores(), _gt(noise=3.0), n_resamples=200)
    assert set(cells.draws) == {(r, t) for r in cells.tau.index for t in TASKS}
    for r in cells.tau.index:
        for t in TASKS:
            assert cells.low.loc[r, t] <= cells.tau.loc[r, t] <= cells.high.loc[r, t]
            assert len(cells.draws[r, t]) == 200


def test_paired_gains_count_clear_changes():
    cells = tau_cells(_scores(), _gt(noise=0.5), n_resamples=200)
    gain, up, down = paired_gains(cells, ["logme", "gbc"])
    assert gain.loc["LogME", "t1"] == pytest.approx(0.0) and gain.loc["LogME", "t2"] > 1
    assert gain.loc["GBC", "t2"] < -1
    assert (up, down) == (1, 1)  # LogME up on t2, GBC down on t2; t1 unchanged
    no_draws = tau_cells(_scores(), _gt(), n_resamples=0)
    assert paired_gains(no_draws, ["logme"])[1:] == (0, 0)
    # no metric (a sweep that skips the SA rows): no rows, the same columns, nothing clear
    empty, up, down = paired_gains(cells, [], move="SA")
    assert empty.empty and list(empty.columns) == list(gain.columns) and (up, down) == (0, 0)


def test_paired_gains_calls_cells_after_holm():
    """Four cells with bootstrap p-values 2/201 (clear), and three at about 0.03: uncorrected
    all four would be called; Holm's step-down keeps the first only (0.03 > 0.05 / 3)."""
    from ped.bench.table1 import TauCells

    tau = pd.DataFrame(0.0, index=["LogME", "LogME+PED", "GBC", "GBC+PED"],
                       columns=["t1", "t2", "mean"])
    rng = np.random.default_rng(0)
    draws = {}
    base = rng.normal(0, 0.01, 200)
    for row in tau.index:
        for t in ("t1", "t2"):
            draws[(row, t)] = base
    draws[("LogME+PED", "t1")] = base + 1.0  # every draw up: p = 2/201
    for row, t in (("LogME+PED", "t2"), ("GBC+PED", "t1"), ("GBC+PED", "t2")):
        d = np.full(200, 0.5)
        d[:2] = -0.5  # 2 of 200 draws at or below zero: p = 2 * 3 / 201 = 0.030
        draws[(row, t)] = base + d
    cells = TauCells(tau, tau, tau, draws)
    assert paired_gains(cells, ["logme", "gbc"])[1:] == (1, 0)
    assert paired_gains(cells, ["logme", "gbc"], alpha=0.2)[1:] == (4, 0)


def test_table1_layout_bolds_a_raised_mean():
    cells = tau_cells(_scores(), _gt(), n_resamples=50)
    ceiling = pd.Series({"t1": 0.9, "t2": 0.7})
    styler = table1(cells, ceiling)
    frame = styler.data
    assert list(frame.index) == ["LogME", "LogME+PED", "GBC", "GBC+PED", "noise ceiling"]
    assert frame.loc["noise ceiling", "mean"] == "0.800"
    assert frame.loc["LogME", "t1"].startswith(f"{cells.tau.loc['LogME', 't1']:.3f} [")
    html = styler.to_html()
    assert html.count("font-weight: bold") == 1  # LogME+PED's mean only
    plain = table1(tau_cells(_scores(), _gt(), n_resamples=0)).data
    assert "[" not in plain.loc["LogME", "t1"] and "noise ceiling" not in plain.index


def test_claims_read_the_gains():
    cells = tau_cells(_scores(), _gt(), n_resamples=0)
    gain, _, _ = paired_gains(cells, ["logme", "gbc"])
    published = pd.DataFrame({"d1": [0.1, 0.3, 0.2, 0.1], "d2": [0.2, 0.4, 0.2, 0.3]},
                             index=["LogME", "LogME+PED", "GBC", "GBC+PED"])
    out = claims(gain, published.assign(mean=published.mean(axis=1)), ["logme", "gbc"])
    assert list(out.index) == ["PED raises the mean τ_w of LogME", "PED raises the mean τ_w of GBC",
                               "PED helps on (almost) every dataset"]  # fmt: skip
    assert out["verdict"].tolist() == ["supported", "not supported", "not supported"]
    assert out.loc["PED raises the mean τ_w of LogME", "published"] == "+0.200"
    assert out.iloc[2]["published"] == "3 of 4 cells improve"  # the mean column is no dataset
    assert out.iloc[2]["replica"] == "25% of the cells improve" and SUPPORT_FRACTION > 0.25


def test_rank_scatter_plots_every_model_per_task():
    cells = tau_cells(_scores(), _gt(), n_resamples=0)
    fig = rank_scatter(_scores(), B.model_accuracy(_gt()), cells.tau, "logme", TASKS,
                       label="LogME")  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == TASKS
    assert all(len(ax.collections) == 2 for ax in fig.axes)  # static and PED
    assert "τ_w" in fig.axes[0].get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="no task"):
        rank_scatter(_scores(), B.model_accuracy(_gt()), cells.tau, "logme", [])


def _moved_scores() -> pd.DataFrame:
    """_scores() with a ``move`` column and SA rows that order t2 right for LogME only."""
    base = _scores()
    base["move"] = np.where(base["ped"], "PED", "")
    sa = base[~base["ped"] & (base["metric"] == "logme")].copy()
    sa["move"] = "SA"
    sa["score"] = [ACC[t][MODELS.index(m)] for t, m in zip(sa["task"], sa["model"])]
    return pd.concat([base, sa], ignore_index=True)


def test_row_labels_name_the_move():
    from ped.metrics import row_label

    assert [row_label("logme", m) for m in (False, "", True, "PED", "SA")] == [
        "LogME", "LogME", "LogME+PED", "LogME+PED", "LogME+SA"]
    assert row_label("loto") == "Other tasks' mean" and row_label("unlisted") == "unlisted"


def test_tau_cells_keep_sa_rows_beside_ped_rows():
    gt = _gt(noise=0.5)
    cells = tau_cells(_moved_scores(), gt, n_resamples=100)
    assert list(cells.tau.index) == ["LogME", "LogME+PED", "LogME+SA", "GBC", "GBC+PED"]
    # SA and PED rows of LogME hold the same scores here: same cells, same draws
    assert cells.tau.loc["LogME+SA", TASKS].tolist() == cells.tau.loc["LogME+PED", TASKS].tolist()
    gain, up, down = paired_gains(cells, ["logme"], move="SA")
    ped_gain, *counts = paired_gains(cells, ["logme"])
    assert gain.equals(ped_gain) and (up, down) == tuple(counts) == (1, 0)
    with pytest.raises(ValueError, match="move must be one of"):
        paired_gains(cells, ["logme"], move="")
    style = table1(cells).to_html().split("</style>")[0]
    bold = {r for r in range(5) if f"row{r}_col2" in style}  # col2: the mean
    assert bold == {1, 2}  # LogME+PED and LogME+SA


def _fake_features(monkeypatch: pytest.MonkeyPatch) -> dict:
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 12)
    feats = {m: ((rng.standard_normal((36, 6)) + (i + 1) * np.eye(3, 6)[y]).astype(np.float32), y)
             for i, m in enumerate(MODELS)}  # fmt: skip
    monkeypatch.setattr(table1_module, "zoo_features", lambda task, **kw: feats)
    return feats


def test_score_tasks_adds_sa_zoo_level_and_loto_rows(monkeypatch: pytest.MonkeyPatch):
    from ped import potential_energy_descent, spread_attract
    from ped.bench.table1 import score_tasks
    from ped.evaluation import leave_one_task_out
    from ped.metrics import etran_combine, etran_terms, logme

    feats = _fake_features(monkeypatch)
    acc = B.model_accuracy(_gt())
    scores, shapes = score_tasks(TASKS, ["logme", "etran", "loto"], {"nsigma": 0.6},
                                 models=MODELS, reference="target", sa_metrics=["logme"],
                                 sa_options={"gate": False}, accuracy=acc)  # fmt: skip
    assert shapes.loc["t1"].tolist() == [36, 3, 6]
    one = scores[scores["task"] == "t2"].set_index(["metric", "move", "model"])["score"]
    one = one.sort_index()
    assert set(scores["move"]) == {"", "PED", "SA"}
    assert (scores["ped"] == (scores["move"] == "PED")).all()
    x, y = feats["m2"]
    assert one["logme", "", "m2"] == pytest.approx(logme(x, y))
    assert one["logme", "SA", "m2"] == pytest.approx(logme(spread_attract(x, y, gate=False)
                                                           .features, y))  # fmt: skip
    static = etran_combine([etran_terms(*feats[m]) for m in MODELS])
    moved = etran_combine([etran_terms(potential_energy_descent(*feats[m], nsigma=0.6)
                                       .features, feats[m][1]) for m in MODELS])  # fmt: skip
    np.testing.assert_allclose(one.loc["etran", ""].loc[MODELS], static)
    np.testing.assert_allclose(one.loc["etran", "PED"].loc[MODELS], moved)
    np.testing.assert_allclose(one.loc["loto", ""].loc[MODELS],
                               leave_one_task_out(acc, "t2").loc[MODELS])  # fmt: skip
    assert ("loto", "PED") not in one.index.droplevel("model")
    cells = tau_cells(scores, _gt(), n_resamples=0)
    assert list(cells.tau.index) == ["LogME", "LogME+PED", "LogME+SA", "ETran", "ETran+PED",
                                     "Other tasks' mean"]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sa_metrics": ["gbc"]}, "not among the metrics"),
    ({"metrics": ["logme", "loto"], "sa_metrics": ["loto"]}, "no \\+SA row"),
    ({"metrics": ["loto"]}, "needs the ground-truth accuracy"),
])  # fmt: skip
def test_score_tasks_refuses_inconsistent_rows(monkeypatch, kwargs, message):
    from ped.bench.table1 import score_tasks

    _fake_features(monkeypatch)
    kwargs = {"metrics": ["logme"], **kwargs}
    with pytest.raises(ValueError, match=message):
        score_tasks(TASKS, kwargs.pop("metrics"), {}, models=MODELS, **kwargs)
