"""Tests of ped.bench.replication: the stored simulations (resumable, verified when read), the
power summary and the selection noise's effect on the endpoint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ped.bench import replication as BR
from ped.inference import Cell

PUBLISHED = {"a": 0.2, "b": 0.1, "mean": 0.15}
SMALL = {"n_null": 4, "n_power": 4, "n_curve": 3, "n_duplicates": 2, "n_resamples": 20,
         "curve": (0.1, 0.3)}


def _cells(seed: int = 0) -> tuple[list[Cell], list[str]]:
    rng = np.random.default_rng(seed)
    cells, labels = [], []
    for t in range(3):
        mu = rng.standard_normal(8)
        acc = mu[:, None] + rng.normal(0, 0.4, (8, 6))
        for m in ("a", "b"):
            base = mu + rng.normal(0, 1.0, 8)
            treated = base + rng.normal(0, 0.5, 8)
            reps = rng.normal(0, 0.2, (5, 8))
            cells.append(Cell(np.vstack([base, base + reps]), np.vstack([treated, treated + reps]),
                              acc, group=f"t{t}"))
            labels.append(m)
    return cells, labels


def test_simulations_are_stored_resumed_and_verified(tmp_path) -> None:
    cells, labels = _cells()
    out = tmp_path / "sims"
    tables = BR.run_simulations(out, cells, labels, PUBLISHED, **SMALL)
    assert set(tables) == {"null", "published", "curve_0", "curve_1", "duplicates_null",
                           "duplicates_published"}
    assert len(tables["null"]) == 4 * 3  # simulations x labels (a, b, mean)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.csv")}
    BR.run_simulations(out, cells, labels, PUBLISHED, **SMALL)  # current: nothing recomputed
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.csv")} == stamp
    shape, loaded = BR.load_simulations(out, cells, labels, PUBLISHED, **SMALL)
    pd.testing.assert_frame_equal(loaded["null"], tables["null"])
    summary = BR.power_summary(loaded)
    assert list(summary.per_metric.index) == ["a", "b", "mean"]
    assert list(summary.curve["effect"]) == [0.0, 0.1, 0.3]  # the null, then the common gains
    assert 0 <= summary.null["reject_pop"] <= 1 and summary.null["simulations"] == 4
    # other scores make the stored units stale; an edited file is refused, naming it
    with pytest.raises(ValueError, match="stale"):
        BR.load_simulations(out, *_cells(1), PUBLISHED, **SMALL)
    csv = out / "null.csv"
    csv.write_text(csv.read_text().replace("0.", "1.", 1))
    with pytest.raises(ValueError, match=r"null\.csv does not match its sha256"):
        BR.load_simulations(out)
    BR.run_simulations(out, cells, labels, PUBLISHED, **SMALL)  # the edited unit is redone
    BR.load_simulations(out, cells, labels, PUBLISHED, **SMALL)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["units"]) == set(tables) and "shape" in manifest
    with pytest.raises(FileNotFoundError, match="make replication"):
        BR.load_simulations(tmp_path / "nothing")


def test_selection_endpoint_on_the_committed_reruns() -> None:
    """With no changed cell the ground truth is untouched; the committed reruns give the
    rate of changed choices and an endpoint that each draw recomputes."""
    from ped.bench import get_benchmark, verdict
    from ped.bench.zoo.finetune import verify_ground_truth
    from ped.bench.zoo.selection import selection_changes

    bm = get_benchmark("v2")
    gt, models = bm.load()
    scores = verdict.load_scores(bm.verdict_dir(), list(bm.tasks), models)
    changes = selection_changes(gt, verify_ground_truth(bm.ground_truth_csv().parent.parent
                                                        / "selection_noise"))
    none = BR.selection_endpoint(scores, gt, changes.assign(changed=False), n_draws=3)
    assert none["observed"] == pytest.approx(none["base"]) and none["rate"] == 0.0
    assert (none["ranking"] == 1.0).all() and np.allclose(none["draws"], none["base"])
    sel = BR.selection_endpoint(scores, gt, changes, n_draws=5)
    assert sel["rate"] == pytest.approx(changes["changed"].mean()) and sel["n_cells"] >= 20
    assert sel["base"] == pytest.approx(BR.verdict_replication(scores, gt, n_resamples=2)
                                        ["mean"].estimate)
    assert sel["draws"].shape == (5,) and sel["sd"] > 0
