"""The regime chapter's building blocks: class subsets, feature maps, image shares, the arm
scorer, PED's movement, the weak-base selection and the regime ground truth's plan."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import gaussian_classes
from hypothesis import given, settings
from hypothesis import strategies as st

from ped import potential_energy_descent
from ped.bench import tasks as D
from ped.bench.regime_analysis import axis_verdict, published_base_gain, weak_base
from ped.bench.regime_axes import AXIS_POINTS, FeatureMap, stratified_share
from ped.bench.scoring import (
    PEDRuns,
    ped_arm,
    ped_movement,
    score_replicates,
    shift_arm,
)
from ped.dynamics import standardisation
from ped.metrics import METRICS
from ped.scoring import bind_metrics

# --- class subsets ---------------------------------------------------------------------------


@given(n=st.integers(2, 80), draw=st.integers(0, 5), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_class_subsets_are_nested_sorted_and_reproducible(n: int, draw: int, seed: int) -> None:
    subsets = [D.class_subset(n, k, draw, seed=seed) for k in range(1, n + 1)]
    for small, large in itertools.pairwise(subsets):
        assert set(small) < set(large)
    for k, s in enumerate(subsets, start=1):
        assert len(s) == k and list(s) == sorted(s) and set(s) <= set(range(n))
    assert subsets == [D.class_subset(n, k, draw, seed=seed) for k in range(1, n + 1)]


def test_class_subset_draws_differ_and_bad_arguments_are_refused() -> None:
    assert D.class_subset(62, 8, 0) != D.class_subset(62, 8, 1)
    assert D.class_subset(62, 8, 0, seed=1) != D.class_subset(62, 8, 0)
    for size in (0, 63):
        with pytest.raises(ValueError, match="size must be in 1..62"):
            D.class_subset(62, size, 0)
    with pytest.raises(ValueError, match="draw must be >= 0"):
        D.class_subset(62, 8, -1)


def test_class_subset_tasks_name_nested_classes_of_glyphs62() -> None:
    names = [f"glyphs62_{k}{d}" for d in D.CLASS_SUBSET_DRAWS for k in D.CLASS_SUBSET_SIZES]
    assert list(D.CLASS_SUBSET_TASKS) == names
    for d in D.CLASS_SUBSET_DRAWS:
        chain = [set(D.CLASS_SUBSET_TASKS[f"glyphs62_{k}{d}"].classes)
                 for k in D.CLASS_SUBSET_SIZES]  # fmt: skip
        assert all(a < b for a, b in itertools.pairwise(chain))
        assert chain[-1] <= set(D.GLYPH_CHARS)
    for name, spec in D.CLASS_SUBSET_TASKS.items():
        assert spec.source == "glyphs62" and D.task_spec(name) is spec
        assert len(spec.classes) == int(name.split("_")[1][:-1])
    assert not set(D.CLASS_SUBSET_TASKS) & set(D.REBUILT_TASK_NAMES)  # neither benchmark's


def test_a_class_subset_keeps_its_parents_images_in_their_splits() -> None:
    parent = D.load_task("digits10")
    spec = D.TaskSpec("digits_sub", "digits10", None, ("7", "2", "5"), 10, 20, None, False, "t")
    sub = D.load_task(spec)
    assert sub.classes == ("7", "2", "5")
    for split in ("train", "val", "test"):
        xp, yp = parent.split(split)
        xs, ys = sub.split(split)
        expected = np.concatenate([np.flatnonzero(yp == parent.classes.index(c))
                                   for c in ("7", "2", "5")])  # fmt: skip
        order = np.sort(expected)
        np.testing.assert_array_equal(xs, xp[order])
        relabel = {parent.classes.index(c): i for i, c in enumerate(("7", "2", "5"))}
        np.testing.assert_array_equal(ys, [relabel[int(v)] for v in yp[order]])
    bad = D.TaskSpec("digits_bad", "digits10", None, ("7", "x"), 10, 20, None, False, "t")
    with pytest.raises(ValueError, match=r"classes \['x'\] not in task digits10"):
        D.load_task(bad)


# --- feature maps ----------------------------------------------------------------------------


@pytest.fixture()
def reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(300, 16)) * rng.uniform(0.5, 2, 16)
    return x, x.mean(axis=0), x.std(axis=0)


def test_projections_have_orthonormal_rows_and_centre_the_reference(reference) -> None:
    x, mean, std = reference
    for kind, dim in (("project", 4), ("project", 9), ("rotate", 16)):
        fmap = FeatureMap(kind, dim)
        w, b = fmap.weights(16)
        assert b is None and w.shape == (dim, 16)
        np.testing.assert_allclose(w @ w.T, np.eye(dim), atol=1e-12)
        z = fmap(x, mean, std)
        np.testing.assert_allclose(z, ((x - mean) / std) @ w.T, atol=1e-12)
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)  # the reference maps to 0
    u = (x - mean) / std
    z = FeatureMap("rotate", 16)(x, mean, std)
    d_u = np.linalg.norm(u[:, None] - u[None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(z[:, None] - z[None], axis=2), d_u, atol=1e-9)


def test_the_lift_is_a_seeded_relu_random_feature_map(reference) -> None:
    x, mean, std = reference
    fmap = FeatureMap("lift", 64, seed=3)
    z = fmap(x, mean, std)
    w, b = fmap.weights(16)
    np.testing.assert_allclose(z, np.maximum(((x - mean) / std) @ w.T / 4.0 + b, 0), atol=1e-12)
    assert z.shape == (300, 64) and (z >= 0).all() and (z == 0).any()
    np.testing.assert_array_equal(z, FeatureMap("lift", 64, seed=3)(x, mean, std))
    assert not np.array_equal(z, FeatureMap("lift", 64, seed=4)(x, mean, std))


def test_feature_maps_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        FeatureMap("pca", 4)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        FeatureMap("project", 0)
    with pytest.raises(ValueError, match="cannot project 16 dimensions to 32"):
        FeatureMap("project", 32).weights(16)
    with pytest.raises(ValueError, match="a rotation keeps the dimension"):
        FeatureMap("rotate", 8).weights(16)


# --- image shares ----------------------------------------------------------------------------


@given(counts=st.lists(st.integers(2, 40), min_size=2, max_size=6),
       share=st.floats(0.01, 1.0), seed=st.integers(0, 99))  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_a_stratified_share_keeps_each_class_share_and_at_least_two(counts, share, seed) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    idx = stratified_share(y, share, seed=seed)
    assert list(idx) == sorted(set(idx.tolist()))
    for c, n in enumerate(counts):
        assert (y[idx] == c).sum() == min(n, max(2, int(round(share * n))))
    np.testing.assert_array_equal(idx, stratified_share(y, share, seed=seed))


def test_a_stratified_share_out_of_range_is_refused() -> None:
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
            stratified_share(np.array([0, 0, 1, 1]), share)


# --- the arm scorer and PED's movement ---------------------------------------------------------


def test_score_arms_matches_direct_metric_calls() -> None:
    rng = np.random.default_rng(1)
    feats, stats = {}, {}
    for m in ("b", "a", "c"):
        x, y = gaussian_classes(rng, n_classes=4, dim=6, n_per_class=15)
        feats[m], stats[m] = (x, y), (x.mean(axis=0), x.std(axis=0))
    reps = [np.arange(60), rng.integers(0, 60, 60)]
    fns = bind_metrics(("logme", "gbc"), options={"gbc": {"variant": "reference"}})
    out = score_replicates(feats, arms={"base": None, "ped": ped_arm(PEDRuns(stats))}, metrics=fns,
                     replicates=reps)
    for j, m in enumerate(sorted(feats)):
        x, y = feats[m]
        for r, idx in enumerate(reps):
            moved = potential_energy_descent(x[idx], y[idx], reference=stats[m]).features
            assert out["base__logme"][r, j] == pytest.approx(METRICS["logme"](x[idx], y[idx]))
            assert out["ped__gbc"][r, j] == pytest.approx(
                METRICS["gbc"](moved, y[idx], variant="reference"))
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['nope'\]"):
        bind_metrics(("logme", "nope"))
    feats["d"] = (feats["a"][0], feats["a"][1][::-1].copy())
    with pytest.raises(ValueError, match="'d' scores other images than 'a'"):
        score_replicates(feats, arms={"base": None}, metrics=fns, replicates=reps)


def test_ped_runs_are_shared_by_the_arms_of_one_model_and_row() -> None:
    rng = np.random.default_rng(6)
    x, y = gaussian_classes(rng, n_classes=3, dim=4, n_per_class=10, spread=0.5)
    runs = PEDRuns({"a": (x.mean(axis=0), x.std(axis=0)), "b": (np.zeros(4), np.ones(4))})
    first = runs(x, y, "a", 0)
    assert runs(x, y, "a", 0) is first and runs(x, y, "a", 1) is not first
    assert runs(x, y, "b", 0) is not first and runs(x, y, "a", 0) is not first  # model changed
    moved = shift_arm(runs, lambda x, y, s, scale: x + s[y] * 0 + scale[0])(x, y, "b", 0)
    np.testing.assert_allclose(moved, x + 1.0)


def test_ped_movement_against_a_hand_computation() -> None:
    rng = np.random.default_rng(2)
    feats, stats = {}, {}
    for m, spread in (("near", 0.3), ("far", 30.0)):
        x, y = gaussian_classes(rng, n_classes=5, dim=4, n_per_class=20, spread=spread)
        feats[m], stats[m] = (x, y), (np.zeros(4), np.ones(4) * 2.0)
    out = ped_movement(feats, stats)
    for j, m in enumerate(sorted(feats)):
        x, y = feats[m]
        res = potential_energy_descent(x, y, reference=stats[m])
        c = res.centers[0] / 2.0
        pairs = [(i, k) for i in range(5) for k in range(i + 1, 5)]
        hand = np.mean([np.linalg.norm(c[i] - c[k]) < res.radii[i] + res.radii[k]
                        for i, k in pairs])  # fmt: skip
        assert out["overlap"][j] == pytest.approx(hand)
        assert out["steps"][j] == res.steps
        assert out["exit_fired"][j] == float(0 < res.steps < 6)
        disp = np.linalg.norm(res.shift / standardisation(stats[m], x)[1], axis=1)[y].mean()
        assert out["displacement"][j] == pytest.approx(disp)
    far = sorted(feats).index("far")
    assert out["overlap"][far] == 0 and out["steps"][far] == 0 and out["displacement"][far] == 0


# --- weak base, the verdict rule, the paper's cells ---------------------------------------------


def _scores(rng: np.random.Generator, truth: np.ndarray, noise: float, ped_noise: float) -> dict:
    m = truth.shape[0]
    s: dict = {"models": [f"m{i}" for i in range(m)]}
    for metric in ("logme", "sfda", "gbc"):
        base = truth.mean(axis=1) + rng.normal(0, noise, (11, m))
        s[f"base__{metric}"] = base
        s[f"ped__{metric}"] = truth.mean(axis=1) + rng.normal(0, ped_noise, (11, m)) \
            if ped_noise >= 0 else base.copy()  # fmt: skip
    return s


def _gt(acc: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [{"task": t, "model": f"m{i}", "role": "eval", "seed": s, "test": a[i, s]}
            for t, a in acc.items() for i in range(a.shape[0]) for s in range(a.shape[1])]
    return pd.DataFrame(rows)


def test_weak_base_bins_are_ordered_and_an_identical_arm_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    acc = {t: rng.normal(70, 5, (10, 1))[:, [0] * 6] + rng.normal(0, 1, (10, 6)) for t in "xyz"}
    scores = {t: _scores(rng, acc[t], 3.0, -1) for t in acc}
    out = weak_base(scores, _gt(acc), size=5, n_subzoos=80, n_resamples=50)
    assert list(out["bin"]) == [0, 1, 2, 3] and (out["n_tasks"] == 3).all()
    assert out["base_on_a"].is_monotonic_increasing
    np.testing.assert_allclose(out[["change", "change_on_a", "low", "high"]], 0.0, atol=1e-12)


def test_weak_base_finds_a_gain_where_the_arm_ranks_better() -> None:  # positive control
    rng = np.random.default_rng(4)
    acc = {t: rng.normal(70, 5, (10, 1))[:, [0] * 6] + rng.normal(0, 0.5, (10, 6)) for t in "xyz"}
    scores = {t: _scores(rng, acc[t], 6.0, 0.5) for t in acc}
    out = weak_base(scores, _gt(acc), size=5, n_subzoos=80, n_resamples=50)
    assert (out["low"] > 0).all()
    assert out["change"].iloc[0] > out["change"].iloc[-1]  # the weakest base gains most
    with pytest.raises(ValueError, match="size must be below the zoo's 10 models"):
        weak_base(scores, _gt(acc), size=10)


def test_the_verdict_rule() -> None:
    row = {"published": 0.19}
    assert axis_verdict({**row, "pop_low": 0.01, "pop_high": 0.3}) == "overturned"
    assert axis_verdict({**row, "pop_low": -0.2, "pop_high": 0.1}) == "holds"
    assert axis_verdict({**row, "pop_low": -0.2, "pop_high": 0.2}) == "undecided"


def test_published_base_gain_has_the_papers_thirty_cells() -> None:
    cells = published_base_gain()
    assert len(cells) == 30 and set(cells["metric"]) == {"logme", "sfda", "gbc"}
    from ped.paper import published_gains

    gains = cells.groupby("metric")["gain"].mean()
    for m, g in gains.items():
        assert g == pytest.approx(published_gains()[m])


def test_the_axis_points_are_as_documented() -> None:
    assert [p.name for p in AXIS_POINTS["classes"]] == ["8", "16", "32", "62"]
    assert [p.value for p in AXIS_POINTS["dimension"]] == [32, 64, 128, 2048]
    assert AXIS_POINTS["images"][-1].splits == "all" and AXIS_POINTS["quality"][0].zoo == "spread"
    assert all(len(p.tasks) == 2 for p in AXIS_POINTS["classes"][:-1])


def test_the_regime_ground_truth_reuses_the_selected_settings_in_its_order() -> None:
    from ped.bench.zoo.regime import regime_cells, short_models

    rebuilt, first = ["byol", "simclr", "random_init"], ["simclr", "random_init", "byol", "swav"]
    assert short_models(first, rebuilt) == ["simclr", "byol"]
    rows = [{"model": m, "task": t, "role": "eval", "seed": 0, "lr": 0.01 * (i + 1),
             "wd": 0.001 * (k + 1), "test": 50.0}
            for i, m in enumerate(rebuilt) for k, t in enumerate(D.REBUILT_TASK_NAMES)]
    gt = pd.DataFrame(rows)
    cells = regime_cells(gt, rebuilt, first, zoo_dir="z2", first_zoo_dir="z1")
    n_sub, n_short = len(D.CLASS_SUBSET_TASKS) * 3, len(D.REBUILT_TASK_NAMES) * 2
    assert len(cells) == n_sub + n_short
    assert [c.task for c in cells[:9]] == ["glyphs62_8a"] * 3 + ["glyphs62_16a"] * 3 + \
        ["glyphs62_32a"] * 3  # fmt: skip
    assert {c.task for c in cells[9:9 + n_short]} == set(D.REBUILT_TASK_NAMES)
    k = D.REBUILT_TASK_NAMES.index("glyphs62")
    for c in cells:
        i = rebuilt.index(c.encoder)
        if c.task.startswith("glyphs62_"):  # glyphs62's setting of the same model
            assert (c.model, c.lr, c.wd, str(c.zoo_dir)) == (c.encoder, 0.01 * (i + 1),
                                                              0.001 * (k + 1), "z2")
        else:  # the 80-epoch method's setting on the same task
            t = D.REBUILT_TASK_NAMES.index(c.task)
            assert (c.model, c.lr, c.wd, str(c.zoo_dir)) == (c.encoder + "_5ep", 0.01 * (i + 1),
                                                              0.001 * (t + 1), "z1")
    assert len(regime_cells(gt, rebuilt, first, zoo_dir="z2", first_zoo_dir="z1",
                            parts=("short",))) == n_short  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown part\(s\) \['x'\]"):
        regime_cells(gt, rebuilt, first, zoo_dir="z2", first_zoo_dir="z1", parts=("x",))


def test_quality_seeds_keeps_the_seeds_every_model_has() -> None:
    from ped.bench.regime_analysis import MIN_QUALITY_SEEDS, quality_seeds

    rows = [{"task": t, "model": m, "role": "eval", "seed": seed, "test": 50.0}
            for t, seeds in (("a", {"x": range(6), "y": range(3), "z": range(4)}),
                             ("b", {"x": range(6), "y": range(2), "z": range(6)}),
                             ("c", {"x": range(6), "y": range(6)}))
            for m, ss in seeds.items() for seed in ss]  # fmt: skip
    rows.append({"task": "a", "model": "x", "role": "select", "seed": 100, "test": 50.0})
    kept = quality_seeds(pd.DataFrame(rows), ["x", "y", "z"])
    assert MIN_QUALITY_SEEDS == 3
    assert set(kept["task"]) == {"a"}  # b: two common seeds; c: z has no run
    assert sorted(set(kept["seed"])) == [0, 1, 2] and len(kept) == 9
    assert (kept["role"] == "eval").all()
