"""Project hygiene: pins agree between pyproject.toml and environment.yml, and the documented
commands are the ones CI runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from ped.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for group, items in project["optional-dependencies"].items():
        specs += [s for s in items if not s.startswith("ped[")]
    pins = {}
    for spec in specs:
        name, sep, version = spec.partition("==")
        assert sep, f"{spec!r} in pyproject.toml is not pinned with =="
        pins[name.lower()] = version
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {}
    for spec in pip:
        if spec.startswith("-e"):
            continue
        name, sep, version = spec.partition("==")
        assert sep, f"{spec!r} in environment.yml is not pinned with =="
        pins[name.lower()] = version
    return pins


def test_environment_yml_and_pyproject_pin_the_same_versions():
    assert _environment_pins() == _pyproject_pins()


def test_python_versions_agree():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python.split("=")[1] in requires


def test_readme_shows_the_two_commands_and_ci_runs_them():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make book$", readme, re.M) and re.search(r"^make test$", readme, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make book" in ci


def test_cli_parses_parameters_as_json():
    args = build_parser().parse_args(
        ["execute", "--out", "x", "-p", "seed=3", "-p", "grid=[0.1, 0.2]", "-p", "name=abc"]
    )
    assert dict(args.parameter) == {"seed": 3, "grid": [0.1, 0.2], "name": "abc"}


def test_cli_rejects_malformed_parameters(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["execute", "--out", "x", "-p", "novalue"])
    assert exc.value.code == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["execute", str(tmp_path / "missing.md"), "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ped execute: error:" in err and "missing.md" in err and "Traceback" not in err


def test_notebooks_use_colour_blind_safe_colours():
    """Every chapter that plots sets the book's colour-blind-safe style (ped.plot) and avoids
    rainbow colour maps."""
    for source in sorted((ROOT / "notebooks").glob("*.md")):
        text = source.read_text()
        if "matplotlib" not in text:
            continue
        assert "use_book_style()" in text and "plt.style.use" not in text, source.name
        bad = re.findall(r"""["'](jet|rainbow|hsv|gist_rainbow|nipy_spectral|tab10|tab20)["']""", text)
        assert not bad, f"{source.name} uses colour maps {bad}"
