"""ped.scoring.score_arms, the one scoring path: arms (moves) run once and scored by every metric,
agreement with direct calls, failures recorded or raised, nothing passed in modified."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gaussian_classes

import ped
from ped.metrics import DEFINITIONS, METRICS
from ped.scoring import ArmScore, bind_metrics, score_arms


@pytest.fixture
def task():
    x, y = gaussian_classes(np.random.default_rng(0), n_classes=4, dim=6, n_per_class=12)
    return x, y


class Counting:
    """A move that counts its calls: it doubles the features."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, y):
        self.calls += 1
        return 2.0 * x


def test_scores_equal_direct_calls_and_each_move_runs_once(task):
    x, y = task
    move = Counting()
    metrics = {name: METRICS[name] for name in ("logme", "gbc", "knn")}
    scores = score_arms(x, y, {"static": None, "double": move}, metrics)
    assert move.calls == 1
    assert [(s.arm, s.metric) for s in scores] == [
        (a, m) for m in metrics for a in ("static", "double")]
    for s in scores:
        expected = metrics[s.metric](x if s.arm == "static" else 2.0 * x, y)
        assert s.score == float(expected) and s.error == "" and s.steps == 0
        assert s.seconds >= 0 and (s.move_seconds == 0.0) == (s.arm == "static")


def test_a_ped_arm_reports_its_steps_and_moved_features(task):
    x, y = task
    result = ped.potential_energy_descent(x, y)
    scores = score_arms(x, y, {"ped": lambda f, l: ped.potential_energy_descent(f, l)},
                        {"logme": METRICS["logme"]})  # fmt: skip
    assert scores[0].steps == result.steps
    assert scores[0].score == float(METRICS["logme"](result.features, y))


def test_failures_are_recorded_per_metric_and_per_move_or_raised(task):
    x, y = task

    def bad_metric(f, l):
        raise ValueError("no good")

    def bad_move(f, l):
        raise np.linalg.LinAlgError("singular")

    metrics = {"logme": METRICS["logme"], "bad": bad_metric}
    scores = score_arms(x, y, {"static": None, "broken": bad_move}, metrics, record_errors=True)
    by = {(s.arm, s.metric): s for s in scores}
    assert np.isfinite(by["static", "logme"].score) and by["static", "logme"].error == ""
    assert np.isnan(by["static", "bad"].score) and by["static", "bad"].error == "ValueError: no good"
    for metric in metrics:
        s = by["broken", metric]
        assert np.isnan(s.score) and s.error == s.move_error == "LinAlgError: singular"
    with pytest.raises(ValueError, match="no good"):
        score_arms(x, y, {"static": None}, metrics)
    with pytest.raises(np.linalg.LinAlgError):
        score_arms(x, y, {"broken": bad_move}, {"logme": METRICS["logme"]})
    with pytest.raises(KeyError):  # not a scoring error: never recorded
        score_arms(x, y, {"s": None}, {"k": lambda f, l: {}["x"]}, record_errors=True)


def test_nothing_passed_in_is_modified_and_progress_is_per_metric(task):
    x, y = task
    x0, y0 = x.copy(), y.copy()
    seen = []

    def in_place(f, l):
        return f - f.mean(axis=0)

    score_arms(x, y, {"static": None, "centred": in_place},
               {"logme": METRICS["logme"], "sfda": METRICS["sfda"]}, after_metric=seen.append)  # fmt: skip
    assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert seen == ["logme", "sfda"]


@pytest.mark.parametrize(("arms", "metrics"), [({}, {"logme": METRICS["logme"]}), ({"s": None}, {})])
def test_nothing_to_score_is_refused(task, arms, metrics):
    with pytest.raises(ValueError, match="at least one arm and one metric"):
        score_arms(*task, arms, metrics)


def test_arm_scores_are_plain_records():
    s = ArmScore("static", "logme", 1.0, 0.1, 0.0, 0, "")
    assert s.move_error == "" and s == ArmScore("static", "logme", 1.0, 0.1, 0.0, 0, "", "")


def test_one_binding_of_metric_definitions(task):
    x, y = task
    release = bind_metrics(["sfda", "gbc", "logme"], definitions="release")
    assert release["sfda"](x, y) == METRICS["sfda"](x, y, **DEFINITIONS["release"]["sfda"])
    assert release["gbc"](x, y) == METRICS["gbc"](x, y, **DEFINITIONS["release"]["gbc"])
    assert release["logme"] is METRICS["logme"]  # no option to bind
    paper = bind_metrics(["sfda"])
    assert paper["sfda"] is METRICS["sfda"]
    both = bind_metrics(["gbc"], definitions="release", options={"gbc": {"covariance": "diagonal"}})
    assert both["gbc"].keywords == {**DEFINITIONS["release"]["gbc"], "covariance": "diagonal"}
    given = {"mine": lambda f, l: 1.0}
    assert bind_metrics(given) == given and bind_metrics(given) is not given


@pytest.mark.parametrize(
    ("metrics", "kwargs", "message"),
    [(["nope"], {}, r"unknown metric\(s\) \['nope'\]; known metrics: "),
     (["logme"], {"definitions": "mine"}, "definitions must be one of"),
     ([], {}, "no metric given"),
     ({"x": 3}, {}, "not callable")],
)
def test_binding_refuses_bad_input(metrics, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bind_metrics(metrics, **kwargs)
