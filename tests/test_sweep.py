"""The parameter-sweep runner: a small sweep on a 2-worker LocalCluster, resume, failures, CLI.

Every executed point starts a Jupyter kernel (about 1-2 s here), so the file executes few points
and shares one LocalCluster between its tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ped import cli
from ped._io import write_text_atomic
from ped.tools.sweep import (
    MANIFEST_FILE,
    POINTS_DIR,
    RESULTS_FILE,
    SweepError,
    collect_results,
    expand_grid,
    load_sweep,
    point_id,
    read_sidecar,
    run_sweep,
)
from ped.tools.sweep_points import _clean_output

HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

"""


def write_notebook(path: Path, body: str, parameters: str = "x = 1\nscale = 1") -> Path:
    """A MyST notebook with a parameters cell and one code cell ``body``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [f"```{{code-cell}} ipython3\n:tags: [parameters]\n\n{parameters}\n```\n"]
    cells.append(f"```{{code-cell}} ipython3\n{body}\n```\n")
    path.write_text(HEADER + "\n".join(cells), encoding="utf-8")
    return path


# Appends one line per execution to runs.log beside the notebook (papermill runs it there).
COUNTING_BODY = """\
from myst_nb import glue
with open("runs.log", "a") as log:
    log.write(f"{x},{scale}\\n")
glue("y", float(x * scale * 2), display=False)
glue("label", f"x{x}", display=False)"""

FAILING_BODY = """\
from myst_nb import glue
if x == 3:
    raise RuntimeError(f"boom {x}")
glue("y", float(x * 2), display=False)"""

GRID = {"x": [1, 2], "scale": [1, 10]}


def runs(notebook_dir: Path) -> list[str]:
    path = notebook_dir / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


@pytest.fixture(scope="module")
def scheduler() -> str:
    """The address of one 2-worker LocalCluster shared by the tests of this file."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def base_sweep(tmp_path_factory, scheduler):
    """A finished 4-point sweep of the counting notebook: (notebook, out_dir, result)."""
    root = tmp_path_factory.mktemp("base")
    notebook = write_notebook(root / "nb" / "count.md", COUNTING_BODY)
    result = run_sweep(notebook, GRID, root / "out", scheduler=scheduler, progress=False)
    return notebook, root / "out", result


# --------------------------------------------------------------------------------------------
# sweeps that execute notebooks
# --------------------------------------------------------------------------------------------


def test_small_sweep_collects_a_tidy_table(base_sweep):
    notebook, out, result = base_sweep
    assert result.ok and not result.failures and not result.skipped
    assert sorted(runs(notebook.parent)) == ["1,1", "1,10", "2,1", "2,10"]
    table = result.table
    assert list(table.columns) == ["id", "x", "scale", "label", "y", "seconds", "notebook_sha256"]
    assert set(table.notebook_sha256) == {hashlib.sha256(notebook.read_bytes()).hexdigest()}
    assert list(zip(table.x, table.scale)) == [(1, 1), (1, 10), (2, 1), (2, 10)]
    assert table.y.tolist() == [2.0, 20.0, 4.0, 40.0]
    assert table.label.tolist() == ["x1", "x1", "x2", "x2"]
    assert (table.seconds > 0).all()
    assert table.id.tolist() == [point_id(p) for p in expand_grid(GRID)]
    pd.testing.assert_frame_equal(load_sweep(out), table)
    for pid in table.id:
        sidecar = read_sidecar(out / POINTS_DIR / f"{pid}.json")
        assert sidecar["status"] == "ok" and sidecar["error"] is None
        assert sidecar["outputs"]["y"] == table.set_index("id").loc[pid, "y"]
        assert (out / POINTS_DIR / f"{pid}.ipynb").is_file()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["notebook"] == "count.md" and len(manifest["points"]) == 4
    assert hidden_files(out) == [], "temporary files were left behind"


def test_rerun_of_a_finished_sweep_executes_nothing(base_sweep):
    notebook, out, _ = base_sweep
    before = runs(notebook.parent)
    # The same points listed explicitly, keys in another order: same ids, nothing to do (no
    # cluster is even contacted: the address is unreachable).
    points = [{"scale": p["scale"], "x": p["x"]} for p in expand_grid(GRID)]
    result = run_sweep(notebook, points, out, scheduler="tcp://127.0.0.1:9", progress=False)
    assert result.executed == [] and len(result.skipped) == 4 and result.ok
    assert runs(notebook.parent) == before
    assert sorted(result.table.y) == [2.0, 4.0, 20.0, 40.0]


def test_an_edited_results_table_is_refused_when_loaded(base_sweep, tmp_path):
    import shutil

    from ped.tools.sweep import verify_sweep

    _, out, _ = base_sweep
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    verify_sweep(copy)
    results = copy / "results.csv"
    results.write_text(results.read_text().replace("40.0", "41.0"))
    with pytest.raises(ValueError, match="results.csv does not match its sha256"):
        load_sweep(copy)
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(ValueError, match="cannot be verified"):
        load_sweep(copy)


def test_a_changed_notebook_recomputes_its_finished_points(tmp_path, scheduler):
    """Points computed by another version of the notebook are not mixed into one table: they
    are executed again, and every row carries the version's hash."""
    notebook = write_notebook(tmp_path / "nb" / "count.md", COUNTING_BODY)
    grid = {"x": [1, 2]}
    first = run_sweep(notebook, grid, tmp_path / "out", scheduler=scheduler, progress=False)
    assert len(first.executed) == 2
    notebook.write_text(notebook.read_text() + "\n<!-- another version -->\n")
    again = run_sweep(notebook, grid, tmp_path / "out", scheduler=scheduler, progress=False)
    assert sorted(again.executed) == sorted(first.executed) and again.skipped == []
    assert set(again.table.notebook_sha256) == {hashlib.sha256(notebook.read_bytes()).hexdigest()}


def test_a_killed_sweep_resumes_without_losing_or_redoing_points(base_sweep, tmp_path, scheduler):
    notebook, out, first = base_sweep
    shutil.copytree(notebook.parent, tmp_path / "nb")
    shutil.copytree(out, tmp_path / "out")
    notebook, out = tmp_path / "nb" / notebook.name, tmp_path / "out"
    points = out / POINTS_DIR
    ids = first.table.id.tolist()
    # What a sweep killed midway can leave: a point never finished, a partial sidecar (from a
    # non-atomic writer), and temporary files of writes in flight.
    (points / f"{ids[0]}.json").unlink()
    (points / f"{ids[0]}.ipynb").unlink()
    text = (points / f"{ids[1]}.json").read_text()
    (points / f"{ids[1]}.json").write_text(text[: len(text) // 2])
    assert read_sidecar(points / f"{ids[1]}.json") is None
    (points / f".tmp-{ids[0]}.json.abc").write_text('{"id": ')
    (points / f".{ids[0]}.xyz.ipynb").write_text("{")
    kept = {pid: (points / f"{pid}.json").stat().st_mtime_ns for pid in ids[2:]}
    n_runs = len(runs(notebook.parent))

    result = run_sweep(notebook, GRID, out, scheduler=scheduler, progress=False)

    assert result.ok
    assert sorted(result.executed) == sorted(ids[:2]) and sorted(result.skipped) == sorted(ids[2:])
    assert sorted(runs(notebook.parent)[n_runs:]) == ["1,1", "1,10"]  # only the two lost points
    assert {pid: (points / f"{pid}.json").stat().st_mtime_ns for pid in ids[2:]} == kept
    pd.testing.assert_frame_equal(
        load_sweep(out).drop(columns="seconds"), first.table.drop(columns="seconds")
    )
    assert hidden_files(out) == []


def test_a_failing_point_is_reported_while_the_others_finish(tmp_path, scheduler):
    notebook = write_notebook(tmp_path / "nb" / "fail.md", FAILING_BODY, parameters="x = 1")
    out = tmp_path / "out"
    result = run_sweep(notebook, {"x": [1, 3]}, out, scheduler=scheduler, progress=False)

    assert not result.ok and len(result.failures) == 1
    failure = result.failures[0]
    assert failure["parameters"] == {"x": 3} and failure["status"] == "failed"
    assert failure["error"]["type"] == "RuntimeError" and failure["error"]["message"] == "boom 3"
    assert 'raise RuntimeError(f"boom {x}")' in failure["error"]["traceback"]
    pid = point_id({"x": 3})
    assert read_sidecar(out / POINTS_DIR / f"{pid}.json")["error"]["message"] == "boom 3"
    assert (out / POINTS_DIR / f"{pid}.failed.ipynb").is_file()
    assert not (out / POINTS_DIR / f"{pid}.ipynb").exists()
    assert load_sweep(out).x.tolist() == [1] and load_sweep(out).y.tolist() == [2.0]
    assert '{"x": 3}' in result.summary() and "boom 3" in result.summary()
    with pytest.raises(SweepError, match=r'(?s)\{"x": 3\}.*boom 3'):
        result.raise_for_failures()

    # The same notebook: a rerun retries only the failed point.
    retry = run_sweep(notebook, {"x": [1, 3]}, out, scheduler=scheduler, progress=False)
    assert retry.executed == [pid] and retry.skipped == [point_id({"x": 1})]
    # A fixed notebook is another version: every point runs again, so one table holds one version.
    write_notebook(notebook, FAILING_BODY.replace("raise", "pass  #"), parameters="x = 1")
    again = run_sweep(notebook, {"x": [1, 3]}, out, scheduler=scheduler, progress=False)
    assert again.ok and sorted(again.executed) == sorted([pid, point_id({"x": 1})])
    assert load_sweep(out).y.tolist() == [2.0, 6.0]
    assert not (out / POINTS_DIR / f"{pid}.failed.ipynb").exists()


def test_default_local_cluster(tmp_path):
    notebook = write_notebook(tmp_path / "nb" / "count.md", COUNTING_BODY)
    result = run_sweep(notebook, [{"x": 5}], tmp_path / "out", n_workers=1, progress=False)
    assert result.ok and result.table.y.tolist() == [10.0]


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def test_cli_sweep_reports_failures_and_exits_non_zero(tmp_path, scheduler, capsys):
    notebook = write_notebook(tmp_path / "fail.md", FAILING_BODY, parameters="x = 1")
    out = tmp_path / "out"
    argv = ["sweep", str(notebook), "--out", str(out), "-p", "x=[1, 3]"]
    rc = cli.main([*argv, "--scheduler", scheduler, "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "2 point(s), 1 ok" in printed and "1 failed" in printed
    assert '{"x": 3}' in printed and "RuntimeError: boom 3" in printed
    assert load_sweep(out).x.tolist() == [1]


def test_cli_grid_file_resumes_a_finished_sweep(base_sweep, tmp_path, capsys):
    notebook, out, _ = base_sweep
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("x: [1, 2]\n")
    before = runs(notebook.parent)
    argv = ["sweep", str(notebook), "--out", str(out), "--grid-file", str(grid_file)]
    rc = cli.main([*argv, "-p", "scale=[1, 10]", "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 0
    assert "4 point(s), 4 ok (4 already done, 0 executed), 0 failed" in capsys.readouterr().out
    assert runs(notebook.parent) == before


def test_cli_usage_errors(base_sweep, tmp_path, capsys):
    notebook, _, _ = base_sweep
    out = tmp_path / "out"
    assert cli.main(["sweep", str(notebook), "--out", str(out), "-p", "nope=[1]"]) == 2
    assert "no parameter(s) ['nope']" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["sweep", str(notebook), "--out", str(out), "-p", "x=1", "-p", "x=2"]) == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", str(notebook), "--out", str(out), "-p", "x=[1,"])
    assert exit_.value.code == 2
    for name, text in (("bad.yaml", "x: [1, 2\n  y: ]\n"), ("bad.json", "{\"x\": [1,")):
        grid_file = tmp_path / name
        grid_file.write_text(text)
        capsys.readouterr()
        code = cli.main(["sweep", str(notebook), "--out", str(out), "--grid-file", str(grid_file)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert f"{grid_file} is not valid {name.split('.')[1].upper()}" in lines[0]
        assert not out.exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", "--help"])
    assert exit_.value.code == 0
    helptext = capsys.readouterr().out
    assert "--scheduler" in helptext and "NAME=JSON_LIST" in helptext and "results.csv" in helptext


# --------------------------------------------------------------------------------------------
# validation, ids, files (no execution)
# --------------------------------------------------------------------------------------------


def test_unknown_or_bad_parameters_are_rejected_before_launch(tmp_path):
    notebook = write_notebook(tmp_path / "nb.md", COUNTING_BODY)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['typo'\].*defines \['scale', 'x'\]"):
        run_sweep(notebook, {"x": [1], "typo": [2]}, out, scheduler="tcp://127.0.0.1:9")
    with pytest.raises(TypeError, match="wrap a single value"):
        run_sweep(notebook, {"x": 1}, out)
    with pytest.raises(TypeError, match="JSON values"):
        run_sweep(notebook, {"x": [object()]}, out)
    with pytest.raises(ValueError, match="empty list"):
        run_sweep(notebook, {"x": []}, out)
    with pytest.raises(FileNotFoundError):
        run_sweep(tmp_path / "missing.md", {"x": [1]}, out)
    bare = tmp_path / "bare.md"
    bare.write_text(HEADER + "```{code-cell} ipython3\ny = 1\n```\n")
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        run_sweep(bare, {"x": [1]}, out)
    assert not out.exists(), "nothing may be written before the grid is validated"


def test_expand_grid():
    assert expand_grid({"a": [1, 2], "b": ["u", "v"]}) == [
        {"a": 1, "b": "u"},
        {"a": 1, "b": "v"},
        {"a": 2, "b": "u"},
        {"a": 2, "b": "v"},
    ]
    assert expand_grid({}) == [{}]
    assert expand_grid({"g": [[0.3, 0.6]]}) == [{"g": [0.3, 0.6]}]
    assert expand_grid([{"a": 1}, {"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="no points"):
        expand_grid([])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), json_values))
def test_point_id_is_stable_and_order_free(point):
    reordered = dict(reversed(list(point.items())))
    assert point_id(point) == point_id(reordered)
    assert len(point_id(point)) == 12 and int(point_id(point), 16) >= 0
    assert point_id(json.loads(json.dumps(point))) == point_id(point)


def test_point_id_is_fixed():
    # Ids name files on disk: changing them would orphan every stored sweep.
    assert point_id({"x": 1, "scale": 10}) == point_id({"scale": 10, "x": 1}) == "9f1a1b24597b"
    assert point_id({"x": 1}) != point_id({"x": 1.0})


def test_atomic_write_leaves_old_file_and_no_temporary_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    write_text_atomic(target, "old\n")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_sidecars_are_validated_and_collected(tmp_path):
    points = tmp_path / POINTS_DIR
    points.mkdir()
    good = {"grid": [0.3, 0.6], "seed": 0}
    pid = point_id(good)
    record = {
        "id": pid,
        "parameters": good,
        "status": "ok",
        "outputs": {"shift": 0.5, "seed": 7},
        "seconds": 1.0,
    }
    (points / f"{pid}.json").write_text(json.dumps(record))
    (points / "broken.json").write_text('{"id": "broken", "status": "o')
    (points / "other.json").write_text("[1, 2]")
    (points / "failed.json").write_text(
        json.dumps({"id": "failed", "parameters": {}, "status": "failed"})
    )
    assert read_sidecar(points / "broken.json") is None
    assert read_sidecar(points / "other.json") is None
    assert read_sidecar(points / "missing.json") is None
    table = collect_results(tmp_path)
    assert list(table.columns) == ["id", "grid", "seed", "output_seed", "shift", "seconds",
                                   "notebook_sha256"]
    loaded = load_sweep(tmp_path)
    assert loaded.grid.tolist() == [[0.3, 0.6]] and loaded.id.tolist() == [pid]
    assert loaded.output_seed.tolist() == [7] and loaded["shift"].tolist() == [0.5]
    assert (tmp_path / RESULTS_FILE).is_file()
    with pytest.raises(FileNotFoundError, match="ped sweep"):
        load_sweep(tmp_path / "nowhere")


def test_numpy_scalar_reprs_become_numbers():
    assert _clean_output("np.float64(1.5)") == 1.5
    assert _clean_output("np.int64(3)") == 3
    assert _clean_output("plain") == "plain"
    assert _clean_output((1, 2)) == [1, 2]


def test_sensitivity_summary_finds_best_worst_and_default():
    from ped.tools.sweep import sensitivity_summary

    table = pd.DataFrame({
        "variant": ["official"] * 4 + ["paper"] * 2,
        "nsigma": [0.3, 0.6, 0.6, 0.9, 0.6, 0.9],
        "time_step": [0.1, 0.1, 0.2, 0.1, 0.1, 0.1],
        "max_steps": [6] * 6,
        "mean_tau_ped": [0.1, 0.4, 0.2, 0.5, 0.3, 0.0],
    })  # fmt: skip
    out = sensitivity_summary(table, {"nsigma": 0.6, "time_step": 0.1, "max_steps": 6})
    assert out.loc["official", "best"] == 0.5 and out.loc["official", "best nsigma"] == 0.9
    assert out.loc["official", "worst"] == 0.1 and out.loc["official", "default"] == 0.4
    assert out.loc["paper", "default"] == 0.3 and out.loc["paper", "worst"] == 0.0
