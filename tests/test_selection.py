"""Tests of ped.bench.zoo.selection: the selection rerun with a second seed, its comparison with
the original choice, and the ground truth it implies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ped.bench.zoo import finetune as F
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
    monkeypatch.setattr(F, "finetune_run", fake_run)
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


def test_selection_changes_and_the_perturbed_ground_truth() -> None:
    gt = _gt()
    noise = pd.DataFrame([
        # a: the second seed prefers lr 0.03; evaluated there on seeds 0, 1
        {"model": "a", "task": "t", "role": "select", "seed": 101, "lr": 0.01, "wd": 5e-4,
         "val": 50.0, "test": 0.0},
        {"model": "a", "task": "t", "role": "select", "seed": 101, "lr": 0.03, "wd": 5e-4,
         "val": 52.0, "test": 0.0},
        {"model": "a", "task": "t", "role": "eval", "seed": 0, "lr": 0.03, "wd": 5e-4,
         "val": 0.0, "test": 65.0},
        {"model": "a", "task": "t", "role": "eval", "seed": 1, "lr": 0.03, "wd": 5e-4,
         "val": 0.0, "test": 66.0},
        # b: the same choice
        {"model": "b", "task": "t", "role": "select", "seed": 101, "lr": 0.03, "wd": 5e-4,
         "val": 70.0, "test": 0.0},
        {"model": "b", "task": "t", "role": "select", "seed": 101, "lr": 0.1, "wd": 5e-4,
         "val": 69.0, "test": 0.0},
    ])
    ch = S.selection_changes(gt, noise).set_index("model")
    assert bool(ch.loc["a", "changed"]) and not bool(ch.loc["b", "changed"])
    # seeds 0, 1: new 65, 66 against the original's 60, 61: +5 points
    assert ch.loc["a", "shift"] == pytest.approx(5.0) and ch.loc["a", "n_eval"] == 2
    assert ch.loc["a", "val_gap"] == pytest.approx(2.0)
    assert ch.loc["b", "shift"] == 0.0
    acc = np.array([[60.0, 61, 62, 63], [70, 71, 72, 73], [80, 81, 82, 83]])
    before = acc.copy()
    moved = S.perturbed_accuracy(acc, ["a", "b", "c"], "t", ch.reset_index())
    np.testing.assert_array_equal(acc, before)  # not modified
    np.testing.assert_array_equal(moved[0], acc[0] + 5.0)
    np.testing.assert_array_equal(moved[1:], acc[1:])
    with pytest.raises(ValueError, match="no evaluation runs"):
        S.selection_changes(gt, noise[noise["role"] == "select"])
    with pytest.raises(ValueError, match=r"\(3, S\)"):
        S.perturbed_accuracy(acc[:2], ["a", "b", "c"], "t", ch.reset_index())
