"""Every notebook executes with papermill, and the numbers its prose quotes are sane."""

from __future__ import annotations

import json
import re
import tempfile

import numpy as np
import pytest

from ped._io import file_mode
from ped.tools.notebooks import (
    REPO_ROOT,
    execute_notebook,
    glued_values,
    notebook_parameters,
    notebook_sources,
)

# Small parameters keep the suite fast; the book build runs the notebooks at their defaults.
FAST = {
    "01_gradient_and_energy": {"toy_steps": 5},
    "02_ped_step_by_step": {"n_per_class": 30, "nsigma_grid": [0.3, 0.6],
                            "class_grid": [4, 128]},
    "03_metrics_evidence": {"zoo_widths": [4, 16], "example_width": 16, "grid_size": 15},
    "04_metrics_discriminability": {"zoo_widths": [4, 16], "example_width": 16},
    "05_metrics_separation": {"zoo_widths": [4, 16], "example_width": 16},
    "06_metrics_probabilistic": {"zoo_widths": [4, 16], "example_width": 16,
                                 "nleep_covariance": "diag"},
    "06b_newer_baselines": {"zoo_widths": [4, 16], "example_width": 16},
    "07_full_scale": {"demo_images": 40},
    "08_benchmark": {"samples_per_class": 2},
    "09_table1": {"metrics": ["logme", "gbc"], "tasks": ["digits10", "mnist10"],
                  "baselines": ["knn", "etran", "loto"], "sa_metrics": ["logme"],
                  "n_resamples": 50, "figure_tasks": ["digits10"]},
    "10_dynamics_and_cost": {"task": "digits10", "flowers_shape": [400, 64, 8],
                             "repeats": 1, "timed_metrics": ["logme", "sfda", "gbc"]},
    "11_sensitivity": {},
    "12_regimes": {"n_resamples": 50},
    "13_choose_a_model": {"n_boot": 10, "tasks": ["digits10", "mnist10"]},
}

# Bounds on glued values that the chapters' prose relies on.
CHECKS = {
    "01_gradient_and_energy": lambda g: g["gap_force"] < 1e-10 and g["gap_step"] < 1e-10
    and g["toy_u1"] < g["toy_u0"] and 0 < g["n_overlapping"] <= g["n_pairs"],
    "02_ped_step_by_step": lambda g: g["gap_official"] < 1e-5 and g["literal_omega"] < 1e-12
    < g["frobenius_omega"] and g["steps_official"] >= 1 and g["shift_03"] <= g["shift_06"]
    and g["relstep_small"] < g["relstep_large"] and g["steps_large"] <= g["steps_small"],
    "03_metrics_evidence": lambda g: g["gap_logme"] < 1e-10 and g["gap_default"] < 1e-6
    and g["updates_class0"] >= 1 and 0 < g["min_change"] <= g["max_change"]
    and -1 <= g["tau_logme"] <= 1 and -1 <= g["tau_logme_ped"] <= 1
    and g["pub_logme"] < g["pub_logme_ped"],
    "04_metrics_discriminability": lambda g: g["gap_sfda"] < 1e-10 and g["gap_hscore"] < 1e-8
    and g["gap_transrate"] < 1e-8 and g["sfda_log"] < 0 < g["sfda_prob"] < 1
    and 0 < g["hscore_example"] <= g["hscore_bound"] and g["sfda_gain_min"] > 0
    and 0 < g["sfda_shrinkage"] < 1,
    "05_metrics_separation": lambda g: g["gap_gbc"] < 1e-10 and g["gap_parc"] < 1e-8
    and g["gbc_example"] <= 0 and g["gbc_gain_min"] > 0
    and g["bc_max_after"] <= g["bc_max_before"] and -100 <= g["parc_example"] <= 100,
    "06_metrics_probabilistic": lambda g: g["gap_leep"] < 1e-10 and g["gap_nce"] < 1e-10
    and g["gap_nleep"] < 1e-8 and g["leep_example"] < 0 < g["leep_nolog_example"] < 1
    and g["nce_floor"] - 1e-9 <= g["nce_example"] <= 0 and 0 < g["nleep_released"] <= 1,
    "06b_newer_baselines": lambda g: g["knn_gap"] < 1e-12 and 0 < g["knn_example"] <= 1
    and g["loto_beats_all"] <= g["loto_beats_best"] <= g["n_published_datasets"] == 10
    and -1 <= g["loto_min"] <= g["loto_mean"] <= 1 and g["sa_gate"] < g["sa_threshold"]
    and g["sa_cos_negative"] <= g["n_classes"] == 10 and g["ncti_example"] != g["ncti_without_widest"]
    and g["logme_ped_change"] > 0,
    "07_full_scale": lambda g: g["table1_cells"] == 0 and 0 < g["gpu_hours"] < 100
    and g["n_images"] > 300_000,
    "08_benchmark": lambda g: g["n_ssl"] >= 10 and g["n_methods"] >= 8 and g["n_tasks"] >= 6
    and g["n_out_domain"] >= 2 and g["classes_max"] >= 50 and g["n_gt_models"] >= 8
    and 0 < g["sep_min"] <= g["sep_max"] and g["need_max"] >= g["n_eval_seeds"] >= 6
    and -1 <= g["ceiling_min"] <= g["ceiling_max"] <= 1 and g["gap_min_first"] < g["gap_max"]
    and g["epochs_ratio"] > 1 and 0 <= g["n_all_ok"] <= g["n_checked"],
    "09_table1": lambda g: all(-1 <= g[k] <= 1 for k in ("mean_tau_logme", "mean_tau_logme_ped",
                                                         "mean_tau_gbc", "mean_tau_gbc_ped"))
    and 0 <= g["clear_up"] + g["clear_down"] <= g["n_cells"] == 4
    and all(-1 <= g[f"mean_tau_{b}"] <= 1 for b in ("knn", "etran", "loto"))
    and 0 <= g["sa_clear_up"] + g["sa_clear_down"] <= g["n_sa_cells"] == 2
    and g["pub_cells_up"] <= g["pub_cells"] == 30
    # the per-task better radius bounds both radii's endpoints from above
    and g["bound"] >= max(g["endpoint"], g["radius_small"]) - 1e-12
    and g["bound_low"] <= g["bound_high"] and 0 <= g["split_flips"] <= g["split_cells"] == 6
    and 0 <= g["bound_small_tasks"] <= 2
    # the replication: each interval holds its estimate, the rates are rates
    and g["rep_mean_zoo_low"] <= g["endpoint"] <= g["rep_mean_zoo_high"]
    and g["endpoint_low"] <= g["endpoint"] <= g["endpoint_high"]
    and g["n_null"] >= 400 and 0 <= g["null_reject"] <= 0.1 and g["power_pop"] > 0.5
    and 0 <= g["geo_control_detected"] <= 1 and -1 <= g["geo_rho"] <= 1
    and g["dose_settings"] == 66 and -1 <= g["dose_rho"] <= 1
    and 0 <= g["sel_changed"] <= g["sel_cells"] and 0 < g["sel_close"] <= g["sel_all"] == 26,
    "10_dynamics_and_cost": lambda g: g["fig4_u_end"] <= g["fig4_u0"] and g["fig4_steps"] >= 0
    and g["flowers_ped"] > 0 and g["bench_models"] >= 12,
    "12_regimes": lambda g: g["n_points"] == 14 and 0 <= g["n_pending"] <= g["n_points"]
    and g["published_mean"] > 0 and -1 <= g["paper_rho"] <= 1 and g["paper_cells_n"] == 30
    and all(g[f"call_{a}"] in ("holds", "overturned", "undecided", "pending")
            for a in ("classes", "images", "dimension", "quality", "weak_base")),
    "13_choose_a_model": lambda g: g["n_tasks_ranked"] == 2
    and 0 <= g["n_covered"] <= g["n_covered_tied"] <= g["n_tasks_ranked"]
    and g["n_top_right"] <= g["n_top_tied"] and g["mean_tied"] >= 1 and g["regret_mean"] >= 0
    and g["regret_random_mean"] >= 0 and -1 <= g["tau_knn"] <= 1 and 0 < g["ex_p"] <= 1,
    "11_sensitivity": lambda g: g["n_points"] > 0 and -1 <= g["baseline_tau"] <= 1
    and g["ep_low"] <= g["ep_estimate"] <= g["ep_high"] and g["change_min"] <= g["change_max"]
    and 0 <= g["n_above"] <= g["n_settings"] <= g["n_points"]
    and 0 <= g["n_positive"] <= g["n_settings"]
    and g["ref_gap_min"] <= g["ref_gap_max"],
}


WARNING = re.compile(r"\w*Warning:|\bWARNING\b|Traceback \(most recent call last\)")
MACHINE_PATHS = (str(REPO_ROOT), tempfile.gettempdir().rstrip("/") + "/", "site-packages")


def output_problems(notebook: str | object) -> list[str]:
    """Warnings, tracebacks and paths of this machine in the outputs of an executed notebook:
    what a reader of the book must never see."""
    problems = []
    for i, cell in enumerate(json.loads(open(notebook).read())["cells"]):  # noqa: PTH123
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items()
                                                if k.startswith("text/")]  # fmt: skip
            text = "".join("".join(t) if isinstance(t, list) else t for t in texts)
            if output.get("output_type") == "error" or WARNING.search(text):
                problems.append(f"cell {i}: {text.strip()[:120]!r}")
            problems += [f"cell {i}: shows {p!r}" for p in MACHINE_PATHS if p in text]
    return problems


def test_output_problems_finds_warnings_and_paths(tmp_path):
    cell = {"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stderr", "text": ["x.py:21: TqdmWarning: no\n"]},
        {"output_type": "display_data", "data": {"text/plain": f"wrote {tmp_path}/a.npy"}}]}
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [cell, {"cell_type": "markdown"}]}))
    problems = output_problems(nb)
    assert len(problems) == 2 and "TqdmWarning" in problems[0] and "shows" in problems[1]
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "wrote features/a"}]
    nb.write_text(json.dumps({"cells": [cell]}))
    assert output_problems(nb) == []


def test_every_notebook_is_covered():
    assert {p.stem for p in notebook_sources()} == set(FAST) == set(CHECKS)


@pytest.mark.notebook
@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_notebook_executes(source, tmp_path):
    out = execute_notebook(source, tmp_path / f"{source.stem}.ipynb", parameters=FAST[source.stem])
    glued = glued_values(out)
    assert glued, "the notebook glued no values"
    assert CHECKS[source.stem](glued), glued
    assert not output_problems(out), output_problems(out)


def test_a_failing_notebook_raises_and_leaves_its_output_aside(tmp_path):
    import papermill

    source = tmp_path / "broken.md"
    source.write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
        "  name: python3\n  display_name: Python 3\n---\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n\n"
        "```{code-cell} ipython3\nraise RuntimeError(f'boom {x}')\n```\n"
    )
    # a stale success from an earlier run must not survive the failure
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "broken.ipynb").write_text("{}")
    with pytest.raises(papermill.PapermillExecutionError, match="boom 5"):
        execute_notebook(source, tmp_path / "out" / "broken.ipynb", parameters={"x": 5})
    assert not (tmp_path / "out" / "broken.ipynb").exists()
    assert (tmp_path / "out" / "broken.failed.ipynb").exists()
    mode = (tmp_path / "out" / "broken.failed.ipynb").stat().st_mode & 0o777
    assert mode == file_mode()  # 0o666 less the umask, not mkstemp's 0o600
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['y'\]"):
        execute_notebook(source, tmp_path / "out" / "broken.ipynb", parameters={"y": 5})


def test_parameters_cell_is_read():
    params = notebook_parameters(notebook_sources()[0])
    assert params["seed"] == "0"


@pytest.mark.notebook
def test_full_scale_chapter_builds_table1_from_a_features_folder(tmp_path):
    """With features_dir set, the chapter scores every model and evaluates against the published
    accuracies.  Synthetic features whose class separation grows with the published accuracy
    must be ranked well by LogME."""
    from ped import paper as data

    rng = np.random.default_rng(0)
    acc = data.finetune_accuracy()
    folder = tmp_path / "features"
    folder.mkdir()
    for dataset in ("cifar10", "dtd"):
        labels = np.repeat(np.arange(4), 30)
        means = rng.normal(size=(4, 16))
        for model, a in acc.loc[dataset].items():
            spread = 0.2 + 2.0 * (a - acc.loc[dataset].min()) / np.ptp(acc.loc[dataset])
            x = spread * means[labels] + rng.normal(size=(len(labels), 16))
            np.save(folder / f"{model}_{dataset}_feature.npy", x.astype(np.float32))
            np.save(folder / f"{model}_{dataset}_label.npy", labels)
    source = next(p for p in notebook_sources() if p.stem == "07_full_scale")
    out = execute_notebook(source, tmp_path / "07.ipynb", parameters={
        "features_dir": str(folder), "metrics": ["logme", "gbc"], "demo_images": 40})
    glued = glued_values(out)
    assert glued["table1_cells"] == 4 * 3  # (LogME, GBC) x (with, without PED) x (2 + mean)
    assert glued["table1_logme_mean"] > 0.5
