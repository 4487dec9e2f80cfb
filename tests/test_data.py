"""Tests of ped.paper: the published numbers load with the documented shape."""

from __future__ import annotations

import numpy as np
import pytest

from ped import paper as data
from ped.evaluation import weighted_tau


def test_published_tables_have_the_documented_shape():
    tau = data.published_tau_w()
    acc = data.finetune_accuracy()
    assert tau.shape == (8, 10) and "SFDA+PED" in tau.index
    assert acc.shape == (11, 12) and tuple(acc.columns) == data.PUBLISHED_MODELS
    assert set(tau.columns) <= set(acc.index)
    assert ((acc.values > 40) & (acc.values < 100)).all()


def test_published_means_match_the_reference_notes():
    """The ten-dataset means quoted in the reference notes, recomputed from the table."""
    means = data.published_tau_w().mean(axis=1).round(3)
    assert means["SFDA"] == pytest.approx(0.582)
    assert means["LogME+PED"] == pytest.approx(0.627)
    assert means["GBC"] == pytest.approx(0.152)


def test_ranking_the_truth_by_itself_is_perfect():
    acc = data.finetune_accuracy()
    assert weighted_tau(acc.loc["cifar100"], acc.loc["cifar100"]) == pytest.approx(1.0)
    assert np.isfinite(weighted_tau(acc.loc["cifar10"], acc.loc["cifar100"]))


def test_missing_data_dir_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PED_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="PED_DATA_DIR"):
        data.data_dir()


def test_dataset_table_matches_the_published_tables():
    table = data.dataset_table()
    assert set(table.index) == set(data.finetune_accuracy().index)
    assert table.loc["sun397", "classes"] == 397 and table.loc["voc2007", "accuracy_kind"] == "mAP"
    assert (table["samples"] > table["classes"]).all()


def test_measurements_load_and_unknown_names_are_reported():
    ped_gpu = data.measurement("ped_gpu_h200")
    assert {r["shape"] for r in ped_gpu["rows"]} == {"cifar100", "sun397"}
    with pytest.raises(FileNotFoundError, match="ped_gpu_h200"):
        data.measurement("nope")


def test_every_measurement_is_described_in_the_data_readme():
    readme = (data.data_dir() / "README.md").read_text(encoding="utf-8")
    files = sorted((data.data_dir() / "measurements").glob("*.json"))
    assert files
    missing = [f.name for f in files if f"| `measurements/{f.name}` |" not in readme]
    assert not missing, f"data/README.md has no row for {missing}"


def test_published_gains_are_the_table_means():
    gains = data.published_gains()
    tau = data.published_tau_w()
    assert gains["logme"] == pytest.approx((tau.loc["LogME+PED"] - tau.loc["LogME"]).mean())
    assert gains["mean"] == pytest.approx((gains["logme"] + gains["sfda"] + gains["gbc"]) / 3)
    assert gains["mean"] == pytest.approx(0.190, abs=5e-4)


def test_verdict_history_matches_the_repository():
    """Each event's commit exists and carries the stated time (when the tests run in a clone);
    the events are in time order."""
    import shutil
    import subprocess
    from pathlib import Path

    history = data.verdict_history()
    assert list(history["date"]) == sorted(history["date"])
    assert {"primary endpoint defined", "rebuilt benchmark's verdict scores"} <= set(
        history["event"])
    root = Path(data.__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git clone")
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=root,
                             capture_output=True, text=True).stdout.strip()
    if shallow == "true":
        pytest.skip("a shallow clone lacks the history")
    for commit, date in zip(history["commit"], history["date"]):
        out = subprocess.run(["git", "log", "-1", "--format=%cd",
                              "--date=format-local:%Y-%m-%d %H:%M", commit], cwd=root,
                             capture_output=True, text=True,
                             env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert out.returncode == 0, f"commit {commit} is not in the repository"
        assert f"{out.stdout.strip()} UTC" == date


def test_every_committed_artefact_matches_its_manifest():
    from ped.bench.artefacts import verify_artefacts

    checks = verify_artefacts()
    kinds = {c.kind for c in checks}
    assert {"zoo", "ground truth", "verdict scores", "simulations"} <= kinds
    failed = [f"{c.path}: {c.message}" for c in checks if not c.ok]
    assert not failed, failed
