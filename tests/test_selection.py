"""Tests of ped.bench.zoo.selection: the selection rerun with a second seed, its comparison with
the original choice, and the ground truth it implies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ped.bench.zoo import finetune as F
from ped.bench.zoo import protocol as P
from ped.bench.zoo import selection as S


def test_choose_cells_is_seeded_distinct_and_nested() -> None:
    models, tasks = ["a", "b", "c", "d"], ["t1", "t2", "t3"]
    cells = S.choose_cells(models, tasks, 7, random_state=3)
    assert len(set(cells)) == 7 and all(m in models and t in tasks for m, t in cells)
    assert cells == S.choose_cells(models, tasks, 7, random_state=3)
    assert S.choose_cells(models, tasks, 4, random_state=3) == cells[:4]  # a prefix
    assert S.choose_cells(models, tasks, 7, random_state=4) != cells
    with pytest.raises(ValueError, match="1..12"):
        S.choose_cells(models, tasks, 13)


def test_select_setting_reproduces_every_committed_choice() -> None:
    """The selection loop, fed the stored runs, chooses what the ground truth evaluated."""
    gt = pd.read_csv(Path(__file__).resolve().parent.parent / "data/ground_truth_v2/ground_truth.csv")
    gt = gt[gt["task"] != "clipart_symbols3"]
    n = 0
    for (model, task), g in gt.groupby(["model", "task"]):
        runs = g[g["role"] == "select"].set_index(["lr", "wd", "seed"])["val"]
        best, rows = F.select_setting(lambda role, lr, wd, s: {"lr": lr, "wd": wd,
                                                               "val": runs[(lr, wd, s)]})
        assert (float(best[0]), float(best[1])) == S.original_choice(gt, model, task)
        assert len(rows) == len(runs)  # every stored selection run, and nothing more
        n += 1
    assert n == 78


def _fake(monkeypatch: pytest.MonkeyPatch, best_lr: float) -> list[tuple]:
    calls: list[tuple] = []

    def fake_run(encoder, task, *, lr, wd, seed, **kw):  # noqa: ANN001, ANN202
        calls.append((lr, wd, seed))
        val = 50 - abs(np.log10(lr) - np.log10(best_lr)) - abs(np.log10(wd) + 3.3)
        return val, val + seed / 10  # test accuracy depends on the seed, for the shift
    monkeypatch.setattr(P, "finetune_run", fake_run)
    return calls


def test_rerun_cell_runs_the_selection_and_evaluates_a_changed_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ped.bench.tasks import load_task

    task = load_task("digits10")
    protocol = F.Protocol(steps=2, lr_grid=(0.01, 0.03, 0.1), wd_grid=(5e-5, 5e-4, 5e-3),
                          selection_seeds=(100,), eval_seeds=(0, 1, 2), max_extensions=1)
    calls = _fake(monkeypatch, best_lr=0.03)
    rows = S.rerun_cell(None, task, tmp_path, model="m", encoder_sha256="x",
                        original=(0.03, 5e-4), seed=101, n_eval=2, protocol=protocol)
    assert {r["seed"] for r in rows} == {101} and len(rows) == 9  # unchanged: no evaluation
    calls.clear()
    rows = S.rerun_cell(None, task, tmp_path, model="m", encoder_sha256="x",
                        original=(0.01, 5e-4), seed=101, n_eval=2, protocol=protocol)
    assert calls == [(0.03, 5e-4, 0), (0.03, 5e-4, 1)]  # the selection resumed, two evals ran
    evals = [r for r in rows if r["role"] == "eval"]
    assert [(r["lr"], r["wd"], r["seed"]) for r in evals] == [(0.03, 5e-4, 0), (0.03, 5e-4, 1)]
    with pytest.raises(ValueError, match="already"):
        S.rerun_cell(None, task, tmp_path, model="m", encoder_sha256="x", original=(0.01, 5e-4),
                     seed=100, protocol=protocol)
    with pytest.raises(ValueError, match="n_eval"):
        S.rerun_cell(None, task, tmp_path, model="m", encoder_sha256="x", original=(0.01, 5e-4),
                     n_eval=4, protocol=protocol)


def _gt() -> pd.DataFrame:
    rows = []
    for model, lr, base in (("a", 0.01, 60.0), ("b", 0.03, 70.0), ("c", 0.1, 80.0)):
        for seed in range(4):
            rows.append({"model": model, "task": "t", "protocol": "finetune", "role": "eval",
                         "seed": seed, "lr": lr, "wd": 5e-4, "val": base, "test": base + seed})
    return pd.DataFrame(rows)


def _select_rows(model: str, best: tuple[float, float], skip: int = 0) -> list[dict]:
    rows = []
    for lr in (0.01, 0.03, 0.1):
        for wd in (5e-5, 5e-4, 5e-3):
            val = 70.0 - abs(np.log10(lr / best[0])) - abs(np.log10(wd / best[1]))
            rows.append({"model": model, "task": "t", "role": "select", "seed": 101, "lr": lr,
                         "wd": wd, "val": val, "test": 0.0})
    return rows[skip:]


def test_selection_changes_and_the_perturbed_ground_truth() -> None:
    protocol = F.Protocol(steps=2, lr_grid=(0.01, 0.03, 0.1), wd_grid=(5e-5, 5e-4, 5e-3),
                          selection_seeds=(100,), eval_seeds=(0, 1, 2, 3), max_extensions=0)
    gt = _gt()
    evals = [{"model": "a", "task": "t", "role": "eval", "seed": s, "lr": 0.03, "wd": 5e-4,
              "val": 0.0, "test": 65.0 + s} for s in range(2)]
    noise = pd.DataFrame([
        *_select_rows("a", (0.03, 5e-4)), *evals,  # a: prefers lr 0.03 now, evaluated there
        *_select_rows("b", (0.03, 5e-4)),          # b: the same choice
        *_select_rows("c", (0.1, 5e-4), skip=2),   # c: still running (two runs missing)
    ])
    ch = S.selection_changes(gt, noise, protocol=protocol, n_eval=2).set_index("model")
    assert list(ch.index) == ["a", "b"]  # the unfinished cell is left out
    assert bool(ch.loc["a", "changed"]) and not bool(ch.loc["b", "changed"])
    # seeds 0, 1: new 65, 66 against the original's 60, 61: +5 points
    assert ch.loc["a", "shift"] == pytest.approx(5.0) and ch.loc["a", "n_eval"] == 2
    assert ch.loc["a", "val_gap"] == pytest.approx(np.log10(3))  # 70 against 70 - log10(3)
    assert ch.loc["b", "shift"] == 0.0 and ch.loc["b", "n_eval"] == 0
    # a changed choice whose evaluation is not finished is left out too
    assert "a" not in set(S.selection_changes(gt, noise[noise["role"] == "select"],
                                              protocol=protocol, n_eval=2)["model"])
    before = gt.copy()
    moved = S.perturbed_ground_truth(gt, ch.reset_index())
    pd.testing.assert_frame_equal(gt, before)  # not modified
    np.testing.assert_array_equal(moved.loc[moved["model"] == "a", "test"],
                                  gt.loc[gt["model"] == "a", "test"] + 5.0)
    np.testing.assert_array_equal(moved.loc[moved["model"] != "a", "test"],
                                  gt.loc[gt["model"] != "a", "test"])
    unchanged = S.perturbed_ground_truth(gt, ch.reset_index().assign(changed=False))
    pd.testing.assert_frame_equal(unchanged, gt)
    two_seeds = noise.copy()
    two_seeds.loc[0, "seed"] = 102
    with pytest.raises(ValueError, match="one seed"):
        S.selection_changes(gt, two_seeds, protocol=protocol)


def test_selection_margins_by_hand() -> None:
    rows = [{"model": "a", "task": "t", "role": "select", "seed": 100, "lr": lr, "wd": 5e-4,
             "val": v, "test": 0.0} for lr, v in ((0.01, 60.0), (0.03, 62.0), (0.1, 61.5))]
    rows += [{"model": "a", "task": "t", "role": "eval", "seed": s, "lr": 0.03, "wd": 5e-4,
              "val": v, "test": 0.0} for s, v in enumerate((61.0, 63.0, 62.0))]
    m = S.selection_margins(pd.DataFrame(rows)).iloc[0]
    assert m["margin"] == pytest.approx(0.5) and m["val_sd"] == pytest.approx(1.0)
    assert bool(m["close"])
