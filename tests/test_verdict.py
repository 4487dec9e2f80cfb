"""Tests of ped.bench.verdict: stored arm scores, the primary endpoint and its controls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ped import potential_energy_descent
from ped.bench import verdict as V
from ped.evaluation import weighted_tau
from ped.inference import image_replicates
from ped.metrics import METRICS


@pytest.fixture(scope="module")
def zoo() -> tuple[dict, dict, pd.DataFrame]:
    rng = np.random.default_rng(0)
    models = [f"m{i}" for i in range(6)] + ["random_init"]
    y = np.repeat(np.arange(4), 10)
    feats, stats, rows = {}, {}, []
    for i, m in enumerate(models):
        centres = np.repeat(rng.normal(0, 0.2 + 0.15 * i, (4, 8)), 10, axis=0)
        x = (rng.normal(0, 1, (40, 8)) + centres).astype(np.float32)
        feats[m] = (x, y)
        stats[m] = (x.mean(0).astype(float), x.std(0).astype(float) + 0.1)
        for s in range(4):
            rows.append({"model": m, "task": "t", "protocol": "finetune", "role": "eval",
                         "seed": s, "lr": 0.01, "wd": 1e-4, "val": 0.0,
                         "test": 50 + 3 * i + rng.normal()})  # fmt: skip
    return feats, stats, pd.DataFrame(rows)


def test_score_task_arms_against_direct_computation(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, _ = zoo
    before = {m: f[0].copy() for m, f in feats.items()}
    path = V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=3, n_placebo=4)
    s = V.load_task_scores(path)
    assert s["models"] == sorted(feats) and s["config"]["n_replicates"] == 3
    for m, f in feats.items():
        np.testing.assert_array_equal(f[0], before[m])  # inputs untouched
    j = s["models"].index("m3")
    x, y = feats["m3"]
    idx = image_replicates(y, 3, random_state=0)
    for metric in V.PRIMARY_METRICS:
        opts = V.PRIMARY_OPTIONS[metric]
        assert s[f"base__{metric}"].shape == (4, 7) and s[f"placebo__{metric}"].shape == (4, 7)
        assert s[f"base__{metric}"][0, j] == pytest.approx(METRICS[metric](x, y, **opts))
        assert s[f"base__{metric}"][2, j] == pytest.approx(METRICS[metric](x[idx[1]], y, **opts))
        moved = potential_energy_descent(x, y, reference=stats["m3"]).features
        assert s[f"ped__{metric}"][0, j] == pytest.approx(METRICS[metric](moved, y, **opts))
    # resumed: the same file, untouched; another configuration rescores
    mtime = path.stat().st_mtime_ns
    V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=3, n_placebo=4)
    assert path.stat().st_mtime_ns == mtime
    V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=2, n_placebo=4)
    assert V.load_task_scores(path)["config"]["n_replicates"] == 2


def test_score_task_rejects_bad_input(zoo, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    feats, stats, _ = zoo
    with pytest.raises(ValueError, match="unknown metric"):
        V.score_task("t", tmp_path, features=feats, stats=stats, metrics=("nope",))
    with pytest.raises(ValueError, match="statistics"):
        V.score_task("t", tmp_path, features=feats, stats={"m0": stats["m0"]})
    other = dict(feats)
    other["m1"] = (feats["m1"][0], feats["m1"][1][::-1].copy())
    with pytest.raises(ValueError, match="other images"):
        V.score_task("t", tmp_path, features=other, stats=stats, n_replicates=1, n_placebo=0)
    assert not list(tmp_path.glob("*.npz"))
    # a metric that returns NaN is named, and nothing is stored
    import ped.metrics as pm

    def broken(x, y, **kw):  # noqa: ANN001, ANN003, ANN202
        return float("nan") if x.shape[0] == len(feats["m0"][1]) else 0.0

    monkeypatch.setitem(pm.METRICS, "logme", broken)
    with pytest.raises(ValueError, match="logme of 'm0' is nan in the base arm"):
        V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=1, n_placebo=0)
    assert not list(tmp_path.glob("*.npz"))


def test_endpoint_controls_and_leave_one_out(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, gt = zoo
    path = V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=4, n_placebo=6)
    scores = {"t": V.load_task_scores(path)}
    s = scores["t"]
    truth = gt.pivot_table(index="model", columns="seed", values="test").loc[s["models"]]
    truth = truth.mean(axis=1).to_numpy()
    by_hand = np.mean([weighted_tau(s[f"ped__{m}"][0], truth) - weighted_tau(s[f"base__{m}"][0],
                       truth) for m in V.PRIMARY_METRICS])  # fmt: skip
    result = V.endpoint(scores, gt, n_resamples=50)
    assert result.estimate == pytest.approx(by_hand) and result.draws.shape == (50,)
    changes = V.arm_changes(scores, gt)
    assert set(changes["arm"]) == {"ped", "shuffled"} and len(changes) == 6
    assert changes[changes.arm == "ped"]["change"].mean() == pytest.approx(by_hand)
    placebo = V.placebo_percentile(scores, gt)
    assert placebo["ped"] == pytest.approx(by_hand) and 0 <= placebo["percentile"] <= 1
    assert placebo["n_draws"] == 6 and placebo["placebo_draws"].shape == (6,)
    loo = V.leave_one_model_out(scores, gt)
    assert list(loo.index) == s["models"]
    keep = [i for i, m in enumerate(s["models"]) if m != "m2"]
    t2 = truth[keep]
    manual = np.mean([weighted_tau(s[f"ped__{m}"][0, keep], t2) -
                      weighted_tau(s[f"base__{m}"][0, keep], t2) for m in V.PRIMARY_METRICS])
    assert loo["m2"] == pytest.approx(manual)
    with pytest.raises(ValueError, match="no ground truth"):
        V.accuracy_table(gt, "t", ["m0", "ghost"])


def test_best_setting_and_split_comparison(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, gt = zoo
    sets = {}
    for nsigma in (0.3, 0.6):
        for task in ("t", "u"):
            V.score_task(task, tmp_path / str(nsigma), features=feats, stats=stats,
                         n_replicates=2, n_placebo=0, ped_options={"nsigma": nsigma})
        sets[f"nsigma {nsigma}"] = V.load_scores(tmp_path / str(nsigma), ["t", "u"])
    gt2 = pd.concat([gt, gt.assign(task="u", test=gt["test"][::-1].to_numpy())])
    table, bound = V.best_setting(sets, gt2, n_resamples=30)
    # by hand: each setting's mean change per task, the larger one chosen
    for label, scores in sets.items():
        for task in ("t", "u"):
            one = V.endpoint({task: scores[task]}, gt2, n_resamples=1).estimate
            assert table.loc[task, label] == pytest.approx(one)
    chosen = table[list(sets)].max(axis=1).mean()
    assert bound.estimate == pytest.approx(chosen)
    assert (table["best"] == table[list(sets)].idxmax(axis=1)).all()
    assert bound.estimate >= max(table[label].mean() for label in sets) - 1e-12  # an upper bound
    with pytest.raises(ValueError, match="tasks"):
        V.best_setting({"a": sets["nsigma 0.3"], "b": {"t": sets["nsigma 0.6"]["t"]}}, gt2)
    with pytest.raises(ValueError, match="no setting"):
        V.best_setting({}, gt2)
    # two score sets compared cell by cell; a set against itself flips nothing
    same = V.split_comparison(sets["nsigma 0.6"], sets["nsigma 0.6"], gt2)
    assert len(same) == 2 * len(V.PRIMARY_METRICS) and not same["flipped"].any()
    np.testing.assert_allclose(same["first"], same["second"])
    cmp = V.split_comparison(sets["nsigma 0.3"], sets["nsigma 0.6"], gt2)
    np.testing.assert_allclose(cmp.groupby("task", sort=False)["second"].mean(),
                               table["nsigma 0.6"])  # fmt: skip
    assert (cmp["flipped"] == (cmp["first"] * cmp["second"] < 0)).all()
    with pytest.raises(ValueError, match="different tasks"):
        V.split_comparison(sets["nsigma 0.3"], {"t": sets["nsigma 0.6"]["t"]}, gt2)
    with pytest.raises(ValueError, match="make verdict"):
        V.load_scores(tmp_path / "0.3", ["t", "nope"])
    assert V.load_scores(tmp_path / "0.3", ["t"], ["m1", "m0"])["t"]["models"] == ["m1", "m0"]
    assert set(V.SECONDARY) == {"nsigma0.3", "train"}


def test_score_seeds_and_their_spread(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, gt = zoo
    path = V.score_seeds("t", tmp_path, features=feats, stats=stats, seeds=(0, 3))
    s = V.load_task_scores(path)
    assert s["models"] == sorted(feats) and list(s["seeds"]) == [0, 3]
    opts = V.DEFINITIONS["release"].get("nleep", {})
    j = s["models"].index("m4")
    x, y = feats["m4"]
    moved = potential_energy_descent(x, y, reference=stats["m4"]).features
    for i, seed in enumerate((0, 3)):
        assert s["base__nleep"][i, j] == pytest.approx(METRICS["nleep"](x, y, random_state=seed,
                                                                        **opts))  # fmt: skip
        assert s["ped__nleep"][i, j] == pytest.approx(METRICS["nleep"](moved, y,
                                                                       random_state=seed, **opts))
    mtime = path.stat().st_mtime_ns
    V.score_seeds("t", tmp_path, features=feats, stats=stats, seeds=(0, 3))
    assert path.stat().st_mtime_ns == mtime  # current: skipped
    spread = V.seed_spread({"t": s}, gt)
    truth = gt.pivot_table(index="model", columns="seed", values="test").loc[s["models"]]
    truth = truth.mean(axis=1).to_numpy()
    assert list(spread["seed"]) == [0, 3]
    assert spread["tau"].iloc[1] == pytest.approx(weighted_tau(s["base__nleep"][1], truth))
    np.testing.assert_allclose(spread["change"], spread["tau_ped"] - spread["tau"])
    sub = V.restrict_models({"t": s}, ["m1", "m0"])["t"]
    assert sub["base__nleep"].shape == (2, 2)
    for bad, match in (({"metric": "nope"}, "unknown metric"), ({"seeds": (1,)}, "two distinct"),
                       ({"seeds": (1, 1)}, "two distinct")):
        with pytest.raises(ValueError, match=match):
            V.score_seeds("t", tmp_path / "bad", features=feats, stats=stats, **bad)
    with pytest.raises(ValueError, match="statistics"):
        V.score_seeds("t", tmp_path / "bad", features=feats, stats={"m0": stats["m0"]})
    assert not (tmp_path / "bad").exists()


def test_primary_options_are_the_release_definitions() -> None:
    from ped.metrics import DEFINITIONS

    assert V.PRIMARY_OPTIONS == {m: DEFINITIONS["release"].get(m, {}) for m in V.PRIMARY_METRICS}


def test_restrict_models_equals_scoring_the_subset(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, gt = zoo
    full = {"t": V.load_task_scores(V.score_task("t", tmp_path / "all", features=feats,
                                                 stats=stats, n_replicates=2, n_placebo=3))}
    kept = ["m4", "m1", "random_init"]
    sub = {"t": V.load_task_scores(V.score_task(
        "t", tmp_path / "sub", features={m: feats[m] for m in kept},
        stats={m: stats[m] for m in kept}, n_replicates=2, n_placebo=3))}
    before = {k: np.copy(v) for k, v in full["t"].items() if isinstance(v, np.ndarray)}
    restricted = V.restrict_models(full, kept)["t"]
    assert restricted["models"] == kept
    order = [sub["t"]["models"].index(m) for m in kept]  # score_task sorts its models
    for metric in V.PRIMARY_METRICS:
        for arm in V.ARMS:  # per-model scores: restricting equals scoring the subset
            np.testing.assert_allclose(restricted[f"{arm}__{metric}"],
                                       sub["t"][f"{arm}__{metric}"][:, order])
    np.testing.assert_array_equal(restricted["steps"], sub["t"]["steps"][order])
    for k, v in before.items():
        np.testing.assert_array_equal(full["t"][k], v)  # input untouched
    assert V.endpoint(V.restrict_models(full, kept), gt, n_resamples=10).draws.shape == (10,)
    with pytest.raises(ValueError, match="ghost"):
        V.restrict_models(full, ["m1", "ghost"])


def test_mechanism_recovers_a_finetuning_that_is_ped(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    feats, stats, _ = zoo
    # fine-tuning that moved the features exactly as PED (source statistics) does
    finetuned = {m: (potential_energy_descent(x, y, reference=stats[m]).features, y)
                 for m, (x, y) in feats.items()}
    before = {m: f[0].copy() for m, f in feats.items()}
    table = V.mechanism(feats, finetuned, stats)
    for m, f in feats.items():
        np.testing.assert_array_equal(f[0], before[m])
    moved = table["cosine"].notna()  # NaN: PED kept no step, so no class moved at all
    assert moved.sum() >= 3
    np.testing.assert_allclose(table.loc[moved, "cosine"], 1.0, atol=1e-9)  # the same shifts
    np.testing.assert_allclose(table["energy_ped"], table["energy_finetuned"], rtol=1e-9)
    assert (table["energy_finetuned"] <= table["energy_before"] + 1e-12).all()
    for metric in V.PRIMARY_METRICS:
        np.testing.assert_allclose(table[f"{metric}+PED"], table[f"{metric}@T"])
        x, y = feats["m2"]
        assert table.loc["m2", metric] == pytest.approx(
            METRICS[metric](x, y, **V.PRIMARY_OPTIONS[metric]))
    track = V.tracking(table)
    np.testing.assert_allclose(track["PED"], 1.0)  # PED's scores are the fine-tuned scores
    # fine-tuning that did nothing: the static scores track it exactly
    still = V.tracking(V.mechanism(feats, {m: (x.copy(), y) for m, (x, y) in feats.items()},
                                   stats))
    np.testing.assert_allclose(still["static"], 1.0)
    shuffled = {m: (x, y[::-1].copy()) for m, (x, y) in finetuned.items()}
    with pytest.raises(ValueError, match="other images"):
        V.mechanism(feats, shuffled, stats)
    with pytest.raises(ValueError, match="lacks"):
        V.mechanism(feats, {"m0": finetuned["m0"]}, stats)


def test_finetuned_features_reads_the_stored_files(tmp_path: Path) -> None:
    from ped._io import write_npz_atomic
    from ped.bench.zoo.finetune import features_path

    z, y = np.arange(12.0).reshape(4, 3), np.array([0, 1, 0, 1])
    path = features_path(tmp_path, "m", "t")
    path.parent.mkdir(parents=True)
    write_npz_atomic(path, features=z, labels=y)
    got = V.finetuned_features(tmp_path, "t", ["m"])
    np.testing.assert_array_equal(got["m"][0], z)
    np.testing.assert_array_equal(got["m"][1], y)
    with pytest.raises(FileNotFoundError, match="ghost"):
        V.finetuned_features(tmp_path, "t", ["m", "ghost"])


def test_score_control_pairs_with_the_primary_scores(zoo, tmp_path: Path) -> None:  # noqa: ANN001
    from ped.inference import radial_shift

    feats, stats, _ = zoo
    path = V.score_control("t", tmp_path, features=feats, stats=stats, n_replicates=3)
    s = V.load_task_scores(path)
    assert s["models"] == sorted(feats) and s["config"]["control"] == "radial"
    j = s["models"].index("m2")
    x, y = feats["m2"]
    idx = image_replicates(y, 3, random_state=0)  # the primary scores' replicates
    for r, rows in ((0, np.arange(len(y))), (2, idx[1])):
        moved = potential_energy_descent(x[rows], y[rows], reference=stats["m2"])
        xc = radial_shift(x[rows], y[rows], moved.shift, scale=stats["m2"][1])
        for metric in V.PRIMARY_METRICS:
            expected = METRICS[metric](xc, y[rows], **V.PRIMARY_OPTIONS[metric])
            assert s[f"radial__{metric}"][r, j] == pytest.approx(expected)
    mtime = path.stat().st_mtime_ns
    V.score_control("t", tmp_path, features=feats, stats=stats, n_replicates=3)
    assert path.stat().st_mtime_ns == mtime  # current: kept
    with pytest.raises(ValueError, match="unknown control"):
        V.score_control("t", tmp_path, features=feats, stats=stats, control="nope")
    with pytest.raises(ValueError, match="unknown metric"):
        V.score_control("t", tmp_path, features=feats, stats=stats, metrics=["nope"])


def test_dose_movement_counts_steps_exits_and_displacement(zoo) -> None:  # noqa: ANN001
    from ped.bench import dose

    feats, stats, _ = zoo
    m = dose.movement(feats, stats, nsigma=0.6, max_steps=4)
    steps = [potential_energy_descent(x, y, reference=stats[k], nsigma=0.6, max_steps=4).steps
             for k, (x, y) in feats.items()]
    assert m["steps"] == pytest.approx(np.mean(steps))
    assert m["exit_fired"] == pytest.approx(np.mean([0 < s < 4 for s in steps]))
    assert m["no_step"] == pytest.approx(np.mean([s == 0 for s in steps]))
    assert m["displacement"] > 0
    tiny = dose.movement(feats, stats, nsigma=0.6, max_steps=4, time_step=0.01)
    assert tiny["displacement"] < m["displacement"]  # a smaller step moves less
    sweep = pd.DataFrame({"nsigma": [0.3, 0.6], "variant": ["official", "paper"],
                          "mean_tau_ped": [0.5, 0.4], "mean_tau_plain": [0.45, 0.45]})
    settings = dose.sweep_settings([sweep, sweep])
    assert len(settings) == 2 and list(settings["change"]) == pytest.approx([0.05, -0.05])
    assert set(settings["time_step"]) == {0.1} and set(settings["max_steps"]) == {6}
    table = dose.dose_response(settings, {"t": feats}, stats)
    assert {"steps", "exit_fired", "displacement", "change"} <= set(table.columns)


def test_stored_scores_are_verified_when_read_and_rescored_when_corrupt(zoo, tmp_path: Path
                                                                        ) -> None:  # noqa: ANN001
    feats, stats, _ = zoo
    path = V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=2, n_placebo=1)
    manifest = json.loads((tmp_path / V.SCORES_MANIFEST).read_text())
    assert set(manifest["files"]) == {"t.npz"}
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"t\.npz does not match its sha256"):
        V.load_task_scores(path)
    with pytest.raises(ValueError, match="does not match its sha256"):
        V.load_scores(tmp_path, ["t"])
    # the writer does not take the corrupt file for a current one: it rescores it
    V.score_task("t", tmp_path, features=feats, stats=stats, n_replicates=2, n_placebo=1)
    assert V.load_task_scores(path)["models"] == sorted(feats)
    assert path.read_bytes() == good  # the same scores, recomputed
    # a file that the manifest does not list is refused too
    stray = tmp_path / "other.npz"
    stray.write_bytes(good)
    with pytest.raises(ValueError, match="other.npz is not in"):
        V.load_task_scores(stray)


def test_committed_scores_match_their_manifests() -> None:
    from ped.paper import data_dir

    folders = [p.parent for p in (data_dir() / "verdict").rglob("*.npz")]
    assert folders
    for folder in set(folders):
        for path in folder.glob("*.npz"):
            V.verify_scores(path)
