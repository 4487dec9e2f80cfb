"""The digits zoo of the metric chapters (ped.examples) and the book's figures (ped.plot)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from sklearn.datasets import load_digits

import ped
from ped.examples import PED_SUFFIX, digits_zoo, linear_probe, score_before_after
from ped.metrics import gbc, logme
from ped.plot import BOOK_STYLE, before_after_figure, use_book_style


@pytest.fixture(scope="module")
def zoo():
    return digits_zoo([2, 8, 32], seed=3)


def test_digits_zoo_is_tanh_of_a_scaled_gaussian_projection(zoo):
    digits, labels = load_digits(return_X_y=True)
    assert np.array_equal(zoo.labels, labels) and zoo.widths == (2, 8, 32)
    assert list(zoo.features) == ["width 2", "width 8", "width 32"]
    # independent derivation: the same generator, drawn in width order
    rng = np.random.default_rng(3)
    sd = digits.std(axis=0)
    pixels = np.where(sd > 0, (digits - digits.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
    for width in (2, 8, 32):
        projection = rng.normal(scale=1 / 8, size=(64, width))
        np.testing.assert_allclose(zoo.features[f"width {width}"], np.tanh(pixels @ projection),
                                   atol=1e-12)  # fmt: skip
    assert all(np.abs(f).max() < 1 for f in zoo.features.values())


def test_linear_probe_orders_the_zoo_by_width(zoo):
    acc = zoo.probe
    assert set(acc) == set(zoo.features) and all(0 < a <= 1 for a in acc.values())
    assert acc["width 2"] < acc["width 8"] < acc["width 32"]
    assert linear_probe(zoo.features, zoo.labels, seed=3) == acc  # deterministic
    assert digits_zoo([2], seed=3, probe=False).probe == {}


@pytest.mark.parametrize("widths", [[], [0, 4], [4, 4]])
def test_digits_zoo_rejects_bad_widths(widths):
    with pytest.raises(ValueError, match="widths"):
        digits_zoo(widths)


def test_score_before_after_matches_direct_calls(zoo):
    labels = zoo.labels
    calls = []

    def score(name, f):
        calls.append(name)
        return {"LogME": logme(f, labels), "GBC": gbc(f, labels)}

    features = {k: v for k, v in zoo.features.items() if k != "width 32"}
    before = {k: v.copy() for k, v in features.items()}
    table = score_before_after(features, labels, score, probe=zoo.probe)
    assert list(table.columns) == ["linear-probe accuracy", "LogME", "LogME" + PED_SUFFIX,
                                   "GBC", "GBC" + PED_SUFFIX]  # fmt: skip
    assert calls == ["width 2", "width 2", "width 8", "width 8"]
    for name, f in features.items():
        np.testing.assert_array_equal(f, before[name])  # nothing passed in is modified
        moved = ped.potential_energy_descent(f, labels).features
        assert table.loc[name, "LogME"] == logme(f, labels)
        assert table.loc[name, "GBC+PED"] == gbc(moved, labels)
        assert table.loc[name, "linear-probe accuracy"] == zoo.probe[name]
    # reference statistics: PED standardised by the given features, not the target's own
    ref = {k: 3.0 * v[:500] + 1.0 for k, v in features.items()}
    with_ref = score_before_after(features, labels, score, reference=ref)
    moved = ped.potential_energy_descent(features["width 8"], labels, reference=ref["width 8"])
    assert with_ref.loc["width 8", "LogME+PED"] == logme(moved.features, labels)
    assert "linear-probe accuracy" not in with_ref


def test_before_after_figure_has_one_labelled_panel_per_metric(zoo):
    table = score_before_after(zoo.features, zoo.labels,
                               lambda n, f: {"GBC": gbc(f, zoo.labels)}, probe=zoo.probe)
    table["X"], table["X+PED"] = 1.0, 2.0
    fig = before_after_figure(table, zoo.widths, {"GBC": "GBC", "X": "units of X"})
    axes = [ax for ax in fig.axes]
    assert len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["GBC", "X"]
    assert axes[1].get_ylabel() == "units of X" and "width" in axes[0].get_xlabel()
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), [2.0, 2.0, 2.0])
    fig = before_after_figure(table, zoo.widths, {"GBC": "GBC"}, probe=True, title="T")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "T"  # the probe's right axis
    assert fig.axes[1].get_ylabel() == "linear-probe accuracy"
    with pytest.raises(ValueError, match="single-panel"):
        before_after_figure(table, zoo.widths, {"GBC": "a", "X": "b"}, title="T")
    with pytest.raises(ValueError, match="no metric"):
        before_after_figure(table, zoo.widths, {})


def test_use_book_style_sets_the_palette_and_grid():
    import matplotlib.pyplot as plt

    with matplotlib.rc_context():
        use_book_style()
        for key, value in BOOK_STYLE.items():
            assert plt.rcParams[key] == value
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        assert colours[0].lower() == "#006ba4"  # tableau-colorblind10's first colour


def test_benchmark_figures_have_titles_and_labels():
    import pandas as pd

    from ped import bench as benchmark
    from ped.plot import accuracy_matrix, pretraining_curves, spread_noise, task_samples

    records = {"a": {"method": "simclr", "loss_curve": [4.0, 3.0, 2.0]},
               "r": {"method": "random", "loss_curve": []}}  # fmt: skip
    fig = pretraining_curves(records)
    assert len(fig.axes[0].lines) == 1 and fig.axes[0].get_ylabel() == "loss / first loss"
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1.0, 0.875, 0.75])
    acc = pd.DataFrame({"t1": [70.0, 80.0], "t2": [60.0, 50.0]}, index=["m1", "m2"])
    fig = accuracy_matrix({"fine-tuning": acc, "linear probe": acc.iloc[::-1]})
    assert [ax.get_title() for ax in fig.axes[:2]] == ["fine-tuning accuracy (%)",
                                                       "linear probe accuracy (%)"]  # fmt: skip
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["m1", "m2"]
    assert fig.axes[1].texts[0].get_text() == "70.0"  # rows in the first panel's order
    runs = benchmark.selected_runs(benchmark.load_ground_truth())
    fig = spread_noise(runs)
    assert fig.axes[0].get_ylabel().startswith("accuracy − task mean")
    assert len(fig.axes[0].containers) == runs["task"].nunique()

    class FakeTask:
        classes = ("a", "b")
        y_train = np.array([0, 1, 0, 1])
        x_train = np.zeros((4, 32, 32, 1), dtype=np.uint8)

    fig = task_samples({"fake": FakeTask()}, samples_per_class=2)
    assert fig.axes[0].get_title(loc="left") == "fake: a, b"
    assert fig.axes[0].images[0].get_array().shape == (32, 32 * 5)  # 2 + gap + 2


def test_descent_tsne_shows_start_middle_end_and_the_energy():
    from ped.plot import descent_tsne

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 5)) + 0.3 * y[:, None]
    result = ped.potential_energy_descent(x, y)
    fig = descent_tsne(x, y, result, title="T")
    steps = sorted({0, result.steps // 2, result.steps})
    assert len(fig.axes) == len(steps) + 1
    assert [ax.get_title() for ax in fig.axes[:-1]] == [f"step {s} of {result.steps}" for s in steps]
    np.testing.assert_array_equal(fig.axes[-1].lines[0].get_ydata(), result.energy)
    assert fig._suptitle.get_text() == "T"


def test_method_timings_time_every_metric_and_ped():
    from ped.bench import method_timings

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 15)
    x = rng.normal(size=(45, 4)) + y[:, None]
    t = method_timings(x, y, ["logme", "gbc"], ped_options={"nsigma": 0.3}, repeats=2)
    assert list(t.index) == ["LogME", "GBC", "PED"] and (t > 0).all()
    with pytest.raises(ValueError, match="repeats"):
        method_timings(x, y, ["logme"], ped_options={}, repeats=0)


def test_sensitivity_heatmaps_box_the_defaults():
    import pandas as pd

    from ped.plot import sensitivity_heatmaps

    table = pd.DataFrame([{"variant": v, "nsigma": n, "time_step": t, "mean_tau_ped": n * t}
                          for v in ("official", "paper") for n in (0.3, 0.6)
                          for t in (0.1, 0.2)])  # fmt: skip
    fig = sensitivity_heatmaps(table, "time_step", {"nsigma": 0.6, "time_step": 0.1}, "T")
    panels = [ax for ax in fig.axes if ax.get_title().endswith("variant")]
    assert [ax.get_title() for ax in panels] == ["official variant", "paper variant"]
    assert all(len(ax.patches) == 1 for ax in panels)  # the red box of the defaults
    assert panels[0].images[0].get_array()[1, 0] == pytest.approx(0.06)  # row 0.2, col 0.3
    fig = sensitivity_heatmaps(table, "time_step", {"nsigma": 0.9, "time_step": 0.1}, "T")
    assert not any(ax.patches for ax in fig.axes)  # defaults outside the grid: no box


def test_balls_figure_draws_a_ball_per_class_before_and_after():
    from ped.plot import balls_figure

    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 40)
    pts = np.array([[0.0, 0.0], [0.7, 0.2], [0.25, 0.6]])[y] + rng.normal(scale=0.6, size=(120, 2))
    result = ped.potential_energy_descent(pts, y, max_steps=4, exit_ratio=0.0)
    fig = balls_figure(pts, y, result)
    before, after = fig.axes
    assert before.get_title() == "before descent" and after.get_title() == f"after {result.steps} steps"
    assert len(before.patches) == len(after.patches) == 3
    assert [p.radius for p in before.patches] == list(result.radii)
    assert len(after.lines) == 3 + 3  # centre crosses and paths
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        balls_figure(np.zeros((5, 3)), y[:5], result)


def test_scale_response_rescales_the_features():
    from ped.examples import scale_response

    x = np.arange(12.0).reshape(6, 2)
    seen = []
    table = scale_response({"norm": lambda f: seen.append(f) or float(np.abs(f).max())}, x,
                           scales=(0.5, 2.0))  # fmt: skip
    assert list(table.index) == [0.5, 2.0] and table.index.name == "feature scale"
    assert table["norm"].tolist() == [5.5, 22.0]
    np.testing.assert_array_equal(x, np.arange(12.0).reshape(6, 2))  # the input is untouched
    with pytest.raises(ValueError, match="positive"):
        scale_response({}, x, scales=(0.0,))
