"""Every notebook executes with papermill, and the numbers its prose quotes are sane."""

from __future__ import annotations

import pytest

from ped.notebooks import execute_notebook, glued_values, notebook_parameters, notebook_sources

# Small parameters keep the suite fast; the book build runs the notebooks at their defaults.
FAST = {
    "01_gradient_and_energy": {"toy_steps": 5},
    "02_ped_step_by_step": {"n_per_class": 30, "nsigma_grid": [0.3, 0.6]},
}

# Bounds on glued values that the chapters' prose relies on.
CHECKS = {
    "01_gradient_and_energy": lambda g: g["gap_force"] < 1e-10 and g["gap_step"] < 1e-10
    and g["toy_u1"] < g["toy_u0"] and 0 < g["n_overlapping"] <= g["n_pairs"],
    "02_ped_step_by_step": lambda g: g["gap_official"] < 1e-5 and g["literal_omega"] < 1e-12
    < g["frobenius_omega"] and g["steps_official"] >= 1 and g["shift_03"] <= g["shift_06"],
}


def test_every_notebook_is_covered():
    assert {p.stem for p in notebook_sources()} == set(FAST) == set(CHECKS)


@pytest.mark.notebook
@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_notebook_executes(source, tmp_path):
    out = execute_notebook(source, tmp_path / f"{source.stem}.ipynb", parameters=FAST[source.stem])
    glued = glued_values(out)
    assert glued, "the notebook glued no values"
    assert CHECKS[source.stem](glued), glued


def test_a_failing_notebook_raises_and_leaves_its_output_aside(tmp_path):
    import papermill

    source = tmp_path / "broken.md"
    source.write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
        "  name: python3\n  display_name: Python 3\n---\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n\n"
        "```{code-cell} ipython3\nraise RuntimeError(f'boom {x}')\n```\n"
    )
    with pytest.raises(papermill.PapermillExecutionError, match="boom 5"):
        execute_notebook(source, tmp_path / "out" / "broken.ipynb", parameters={"x": 5})
    assert not (tmp_path / "out" / "broken.ipynb").exists()
    assert (tmp_path / "out" / "broken.failed.ipynb").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['y'\]"):
        execute_notebook(source, tmp_path / "out" / "broken.ipynb", parameters={"y": 5})


def test_parameters_cell_is_read():
    params = notebook_parameters(notebook_sources()[0])
    assert params["seed"] == "0"
