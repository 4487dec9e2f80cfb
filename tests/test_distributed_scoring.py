"""``ped score`` on Dask (:mod:`ped.fullscale.distributed`): the same table as a local run, one
task per model x dataset kept as it finishes, resumed after an interruption, on a LocalCluster
and on a scheduler given by its address."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import gaussian_classes
from ped.cli import main
from ped.fullscale.distributed import parts_dir, score_features_distributed
from ped.fullscale.scoring import score_features

TIMINGS = ["seconds", "ped_seconds"]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    out = tmp_path / "features"
    out.mkdir()
    for dataset in ("toy", "other"):
        for model in ("alpha", "beta_v2", "gamma"):
            x, y = gaussian_classes(rng, n_classes=3, dim=5, n_per_class=9, dtype=np.float32)
            np.save(out / f"{model}_{dataset}_feature.npy", x)
            np.save(out / f"{model}_{dataset}_label.npy", y + 1)  # remapped to 0..C-1
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=TIMINGS), b.drop(columns=TIMINGS))


def test_a_distributed_run_equals_a_local_one_and_resumes(folder, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    local = score_features(folder, ["logme", "gbc"], ped=True)
    first = score_features_distributed(folder, ["logme", "gbc"], out=out, n_workers=1, ped=True)
    _same(first, local)
    parts = sorted(p.name for p in parts_dir(out).iterdir())
    assert parts == sorted(f"{m}__{d}.json" for m in ("alpha", "beta_v2", "gamma")
                           for d in ("toy", "other"))  # fmt: skip
    # an interrupted run: one task kept (marked), one stale (other options), one lost
    kept = parts_dir(out) / "alpha__toy.json"
    record = json.loads(kept.read_text())
    for row in record["rows"]:
        row["score"] = 123.0
    kept.write_text(json.dumps(record))
    stale = parts_dir(out) / "gamma__other.json"
    record = json.loads(stale.read_text())
    record["config"]["definitions"] = "release"
    stale.write_text(json.dumps(record))
    (parts_dir(out) / "beta_v2__toy.json").unlink()
    again = score_features_distributed(folder, ["logme", "gbc"], out=out, n_workers=1, ped=True)
    marked = again[(again["model"] == "alpha") & (again["dataset"] == "toy")]
    assert (marked["score"] == 123.0).all()  # kept, not rescored
    rest = again[~((again["model"] == "alpha") & (again["dataset"] == "toy"))]
    _same(rest.reset_index(drop=True),
          local[~((local["model"] == "alpha") & (local["dataset"] == "toy"))]
          .reset_index(drop=True))  # fmt: skip


def test_a_changed_input_is_rescored(folder, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    score_features_distributed(folder, ["logme"], out=out, n_workers=1)
    part = parts_dir(out) / "gamma__toy.json"
    record = json.loads(part.read_text())
    for row in record["rows"]:
        row["score"] = -1.0
    part.write_text(json.dumps(record))
    x = np.load(folder / "gamma_toy_feature.npy")
    np.save(folder / "gamma_toy_feature.npy", x * 2 + 1)
    table = score_features_distributed(folder, ["logme"], out=out, n_workers=1)
    assert (table["score"] != -1.0).all()


def test_on_a_scheduler_given_by_its_address(folder, tmp_path) -> None:
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        table = score_features_distributed(folder, ["logme"], out=tmp_path / "s.csv",
                                           scheduler=cluster.scheduler_address)  # fmt: skip
    _same(table, score_features(folder, ["logme"]))


def test_the_command_writes_the_local_csv_and_removes_its_parts(folder, tmp_path, capsys) -> None:
    dist, local = tmp_path / "dist.csv", tmp_path / "local.csv"
    base = ["score", "--features", str(folder), "--metric", "logme", "--no-progress"]
    assert main([*base, "--out", str(dist), "--workers", "1"]) == 0
    assert main([*base, "--out", str(local)]) == 0
    _same(pd.read_csv(dist), pd.read_csv(local))
    assert not parts_dir(dist).exists()


def test_metric_functions_are_refused(folder, tmp_path) -> None:
    with pytest.raises(ValueError, match="takes metric names"):
        score_features_distributed(folder, {"f": lambda x, y: 0.0}, out=tmp_path / "s.csv")
    with pytest.raises(ValueError, match="unknown metric"):
        score_features_distributed(folder, ["nope"], out=tmp_path / "s.csv")
    assert not parts_dir(tmp_path / "s.csv").exists()
