"""Project hygiene: the lock file, pyproject.toml's ranges, environment.yml, Binder and the
workflow agree; the documented commands are the ones CI runs."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ped.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


LOCK = ROOT / "requirements-lock.txt"
#: The Python versions the project supports and the workflow tests.
PYTHONS = ("3.11", "3.12", "3.13")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> list[Requirement]:
    """Every dependency pyproject.toml declares, core and optional (not ped's own extras)."""
    project = _project()
    specs = list(project["dependencies"])
    for items in project["optional-dependencies"].values():
        specs += [s for s in items if not s.startswith("ped[")]
    return [Requirement(s) for s in specs]


def _lock() -> dict[str, list[tuple[Version, Marker | None, int]]]:
    """The lock file: each package's (version, marker, number of hashes) entries."""
    entries: dict[str, list[tuple[Version, Marker | None, int]]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        head = re.match(r"^([A-Za-z0-9_.-]+)==(\S+?)(?:\s*;\s*(.*?))?\s*\\?$", line)
        if head:
            name = canonicalize_name(head[1])
            marker = Marker(head[3]) if head[3] else None
            current = [Version(head[2]), marker, 0]
            entries.setdefault(name, []).append(current)
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current[2] += 1
    return {k: [tuple(e) for e in v] for k, v in entries.items()}


def _locked_for(python: str, lock: dict, environment: dict | None = None) -> dict[str, Version]:
    """The versions the lock installs on Linux x86-64 with ``python`` (3.11 or 3.11.7), or in
    the marker ``environment`` given."""
    full = python if python.count(".") == 2 else f"{python}.0"
    env = environment or {
        "python_version": full.rsplit(".", 1)[0], "python_full_version": full,
        "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "os_name": "posix", "extra": ""}  # fmt: skip
    out: dict[str, Version] = {}
    for name, entries in lock.items():
        chosen = [v for v, marker, _ in entries if marker is None or marker.evaluate(env)]
        assert len(chosen) <= 1, f"{name}: more than one locked version applies on {python}"
        if chosen:
            out[name] = chosen[0]
    return out


def test_every_locked_package_is_hash_pinned():
    lock = _lock()
    assert len(lock) > 50
    unhashed = [name for name, entries in lock.items() for _, _, hashes in entries if hashes == 0]
    assert not unhashed, f"locked without a hash: {unhashed}"
    assert "make lock" in LOCK.read_text().splitlines()[1], "the lock names how it is regenerated"


@pytest.mark.parametrize("python", [f"{v}.{patch}" for v in PYTHONS for patch in (0, 20)])
def test_the_lock_satisfies_every_declared_range(python):
    """On every supported Python, each dependency pyproject.toml declares is locked at exactly
    one version, inside its declared range."""
    locked = _locked_for(python, _lock())
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is declared but not locked for Python {python}"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{name}=={locked[name]} in {LOCK.name} is outside pyproject.toml's {req}")


def test_the_environment_was_installed_from_the_lock():
    """The environment running the tests (make's .venv) has the locked versions: make installs
    the lock, not a fresh resolution of the ranges."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("not make's virtual environment")
    locked = _locked_for("", _lock(), {**default_environment(), "extra": ""})
    wrong = {}
    for name, version in locked.items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = (str(version), "missing")
            continue
        if installed.release != version.release:  # a local label (+cpu) is the TORCH_INDEX build
            wrong[name] = (str(version), str(installed))
    assert not wrong, f"installed versions differ from the lock: {wrong}"


def test_environment_yml_and_binder_install_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip == ["--require-hashes", f"-r {LOCK.name}"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert SpecifierSet(_project()["requires-python"]).contains(python.split("=")[1] + ".0")
    binder = ROOT / ".binder"
    lines = [l for l in (binder / "requirements.txt").read_text().splitlines()
             if l and not l.startswith("#")]  # fmt: skip
    assert lines == ["--require-hashes", f"-r ../{LOCK.name}"]
    assert (binder / "runtime.txt").read_text().strip() == f"python-{PYTHONS[0]}"
    assert "pip install --no-deps -e ." in (binder / "postBuild").read_text()
    assert os.access(binder / "postBuild", os.X_OK)


def test_binder_installs_the_debian_packages_make_installs():
    out = subprocess.run(["make", "--no-print-directory", "-pn", "help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    variables = dict(re.findall(r"^(\w+) :?= (.*)$", out, re.M))

    def expand(value: str) -> list[str]:
        return [w for part in value.split() for w in
                (expand(variables[part[2:-1]]) if part.startswith("$(") else [part])]  # fmt: skip

    apt = (ROOT / ".binder" / "apt.txt").read_text().split()
    assert apt == expand(variables["DEBIAN_PACKAGES"])


def test_python_versions_agree():
    """requires-python's lower bound, the classifiers, the workflow's test matrix and the lock's
    resolution all name the same Python versions."""
    project = _project()
    assert project["requires-python"] == f">={PYTHONS[0]}"
    classifiers = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                   if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}  # fmt: skip
    assert classifiers == set(PYTHONS)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python"] == list(PYTHONS)
    assert f"--python-version {PYTHONS[0]}" in (ROOT / "Makefile").read_text()


def test_the_cpu_torch_option_leaves_out_exactly_the_cuda_stack(tmp_path):
    """make TORCH_INDEX=... installs torch and torchvision from that index and the rest of the
    lock without the CUDA stack: run the Makefile's own commands (make -n) on the lock."""
    for name in (LOCK.name, "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv").mkdir()
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "-f", str(ROOT / "Makefile"), ".venv/.installed",
         "TORCH_INDEX=https://download.pytorch.org/whl/cpu", "PYTHON=" + sys.executable],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout  # fmt: skip
    commands = [l for l in out.splitlines() if l.startswith(("grep ", "awk "))]
    assert len(commands) == 2, out
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    torch = (tmp_path / ".venv" / "torch.txt").read_text().split()
    locked = _locked_for(PYTHONS[0], _lock())
    assert torch == [f"torch=={locked['torch']}", f"torchvision=={locked['torchvision']}"]
    installs = [l for l in out.splitlines() if "pip install" in l]
    assert any("--index-url https://download.pytorch.org/whl/cpu -r .venv/torch.txt" in l
               for l in installs)  # fmt: skip
    assert any("--require-hashes -r .venv/lock-without-cuda.txt" in l for l in installs)
    kept = (tmp_path / ".venv" / "lock-without-cuda.txt").read_text()
    kept_names = {canonicalize_name(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", kept, re.M)}
    cuda = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")
    assert kept_names == {n for n in _lock() if not cuda.match(n)}
    assert {"pytorch-lightning", "numpy", "torchmetrics"} <= kept_names
    assert kept.count("--hash=sha256:") == sum(
        h for n, entries in _lock().items() if not cuda.match(n) for _, _, h in entries)


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


#: The workflow's GitHub actions, which only GitHub runs (checkout, Python, artefacts, Pages).
GITHUB_ONLY_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/upload-artifact",
                       "actions/upload-pages-artifact", "actions/deploy-pages"}  # fmt: skip
NOBODY = 65534


def _workflow_commands() -> list[tuple[str, str, dict[str, str]]]:
    """(job, command, env) of every ``run`` step, one per matrix value; asserts every other
    step is one of :data:`GITHUB_ONLY_ACTIONS`."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    commands = []
    for job_name, job in workflow["jobs"].items():
        matrix = job.get("strategy", {}).get("matrix", {})
        values = [{k: v} for k, vs in matrix.items() for v in vs] or [{}]
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"].split("@")[0] in GITHUB_ONLY_ACTIONS, step["uses"]
                continue
            for value in values:
                command = step["run"]
                for key, v in value.items():
                    command = command.replace("${{ matrix.%s }}" % key, v)
                assert "${{" not in command, f"unexpanded expression in {command!r}"
                env = {k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)}
                commands.append((job_name, command, env))
    return commands


def _as_nobody(command: str, cwd: Path, home: Path, path: str, env: dict[str, str] | None = None):
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i",
         f"HOME={home}", f"PATH={path}", *(f"{k}={v}" for k, v in (env or {}).items()),
         "bash", "-c", command],
        cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="running as another user needs root and setpriv (util-linux)")
def test_the_workflow_runs_as_a_non_root_user_in_a_clean_clone():
    """Each ``run`` step of the workflow, as the unprivileged user ``nobody`` in a clean clone:
    the make target exists and its recipe is what make would run (``make -n``), ``make test``
    needs no browser, and the Debian packages are installed through sudo when missing (a sudo
    that records its arguments stands in for the runner's), or named in one message when there
    is no sudo.  Not run here: the GitHub actions (GITHUB_ONLY_ACTIONS) and whole builds (the
    README's commands, which CI runs as they are)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # pytest's own is not world-readable
        _check_the_workflow_as_nobody(Path(tmp))


def _check_the_workflow_as_nobody(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    clone, home, shim = tmp_path / "clone", tmp_path / "home", tmp_path / "bin"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    home.mkdir()
    shim.mkdir()
    (shim / "sudo").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/sudo.log\n')
    (shim / "sudo").chmod(0o755)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(tmp_path)], check=True)
    system_path = "/usr/local/bin:/usr/bin:/bin"

    commands = _workflow_commands()
    assert {job for job, _, _ in commands} == {"test", "wheel", "book"}
    for _, command, env in commands:
        if not os.access(env.get("PED_CHROMIUM", "/bin/true"), os.X_OK):
            env["PED_CHROMIUM"] = "/bin/true"  # the runner's preinstalled Chrome is not here
        assert command.startswith("make "), f"a workflow step that is not a make target: {command}"
        run = _as_nobody(command.replace("make ", "make -n ", 1), clone, home, system_path, env)
        assert run.returncode == 0, f"{command}: {run.stderr}"
        if command.split()[1] == "test":
            assert "chromium" not in run.stdout

    # the packages are present: nothing is installed, no sudo is needed
    assert _as_nobody("make system-deps", clone, home, system_path).returncode == 0
    # a missing package: installed through sudo, or named when there is none
    missing = "make system-deps DEBIAN_PACKAGES=ped-no-such-package"
    run = _as_nobody(missing, clone, home, f"{shim}:{system_path}")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "sudo.log").read_text().splitlines() == [
        "apt-get update -qq",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ped-no-such-package",
    ]
    if shutil.which("sudo", path=system_path) is None:
        run = _as_nobody(missing, clone, home, system_path)
        assert run.returncode != 0
        assert ("missing Debian packages, and neither root nor sudo: apt-get install "
                "ped-no-such-package") in run.stderr
    # the browser test takes the browser it is given, and refuses one that is not there
    assert _as_nobody("make browser-deps PED_CHROMIUM=/bin/true", clone, home,
                      system_path).returncode == 0  # fmt: skip
    run = _as_nobody("make browser-deps PED_CHROMIUM=/nonexistent", clone, home, system_path)
    assert run.returncode != 0 and "PED_CHROMIUM=/nonexistent is not an executable" in run.stderr
    assert not any(p.name == ".venv" for p in clone.iterdir()), "a dry run created the venv"


def test_the_version_is_the_same_everywhere():
    """pyproject.toml, the installed package, CITATION.cff, the book's "How to cite" entry and the
    changelog's newest entry name one version."""
    import ped

    version = _project()["version"]
    assert ped.__version__ == version
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == version and citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "license"} <= set(citation)
    papers = [r for r in citation.get("references", []) if "Potential Energy" in r["title"]]
    assert papers and papers[0]["year"] == 2023
    assert f"version = {{{version}}}" in (ROOT / "book" / "cite.md").read_text()
    newest = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert newest and newest[1] == version
