"""The ``ped sweep`` command: a notebook over a parameter grid on Dask (:mod:`ped.tools.sweep`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ped.tools.sweep import Grid, expand_grid, run_sweep


def _parse_sweep_parameter(text: str) -> tuple[str, list[Any]]:
    """``NAME=JSON``: a JSON list is the values to sweep, any other value a single value."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"sweep parameters are NAME=JSON_LIST, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{name!r} is not a parameter name")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        if raw.lstrip()[:1] in "[{":
            raise argparse.ArgumentTypeError(f"{name}: {raw!r} is not valid JSON ({exc})") from None
        value = raw  # a bare string
    return name, value if isinstance(value, list) else [value]


def _read_grid_file(path: Path) -> Grid:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError:  # pragma: no cover - pyyaml is in the book extra
            raise ValueError("reading a YAML grid file needs pyyaml (pip install pyyaml)") from None
        try:
            grid = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(f"{path} is not valid YAML ({reason})") from None
    else:
        try:
            grid = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if isinstance(grid, Mapping):
        return {name: v if isinstance(v, list) else [v] for name, v in grid.items()}
    if isinstance(grid, list):
        return grid
    raise ValueError(f"{path}: a grid file holds a mapping name -> values or a list of points")


def _combine_grids(file_grid: Grid | None, cli_grid: Mapping[str, list[Any]]) -> Grid:
    """The product of the grid file's points with the ``-p`` values (names must not overlap)."""
    if file_grid is None:
        return dict(cli_grid)
    file_points = expand_grid(file_grid)
    clash = {n for p in file_points for n in p} & set(cli_grid)
    if clash:
        raise ValueError(f"parameter(s) {sorted(clash)} given both in the grid file and by -p")
    cli_points = expand_grid(cli_grid)
    return [{**a, **b} for a in file_points for b in cli_points]


def _cmd_sweep(args: argparse.Namespace) -> int:
    cli_grid: dict[str, list[Any]] = {}
    for name, values in args.parameter or []:
        if name in cli_grid:
            sys.stderr.write(f"ped sweep: error: -p {name} given twice\n")
            return 2
        cli_grid[name] = values
    try:
        file_grid = _read_grid_file(Path(args.grid_file)) if args.grid_file else None
        grid = _combine_grids(file_grid, cli_grid)
        result = run_sweep(
            args.notebook,
            grid,
            args.out,
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            kernel_name=args.kernel,
            timeout=args.timeout if args.timeout > 0 else None,
            force=args.force,
            progress=not args.no_progress,
        )
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        sys.stderr.write(f"ped sweep: error: {exc}\n")
        return 2
    print(result.summary(traceback_lines=15))
    return 0 if result.ok else 1


_EPILOG = """\
Each -p value is JSON: a list is the values to sweep, any other value a single value
(sweep a list-valued parameter as a list of lists: -p nsigma_grid='[[0.3, 0.6]]').
A grid file (JSON, or YAML with pyyaml) holds either a mapping name -> list of values or a
list of explicit points; -p values multiply its points.

Output folder OUT:
  OUT/results.csv          one row per successful point: id, parameters, glued values, seconds
  OUT/points/<id>.ipynb    the executed notebook of each point
  OUT/points/<id>.json     its parameters, status, glued values, timing and error, if any
  OUT/sweep.json           the notebook, its hash and the latest grid
Points whose sidecar says "ok" are skipped when the command is run again; failed ones are
retried.  Exit status: 0 when every point succeeded, 1 when some failed, 2 on a usage error.
Read the table in a notebook with ped.tools.sweep.load_sweep(OUT).

example:
  ped sweep notebooks/02_ped_step_by_step.md --out sweeps/nsigma \\
      -p n_classes='[8, 12]' -p seed='[0, 1]'
"""


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``ped sweep`` subcommand to ``subparsers`` (see :mod:`ped.cli`)."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a notebook over a parameter grid on Dask",
        description=(
            "Execute NOTEBOOK once per point of a parameter grid with papermill, in parallel on "
            "a Dask cluster, and collect the glued scalars of every point into OUT/results.csv."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebook", help="the notebook source (.md) or .ipynb to sweep")
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        type=_parse_sweep_parameter,
        metavar="NAME=JSON_LIST",
        help="values of a parameter to sweep (Cartesian product over -p); repeatable",
    )
    parser.add_argument(
        "--grid-file", metavar="FILE", help="a grid in JSON or YAML (mapping or list of points)"
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of an existing Dask scheduler (tcp://host:8786); default: a LocalCluster",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="LocalCluster worker processes (default: 2)"
    )
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        help="notebooks run at once per LocalCluster worker (default: 1)",
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="per-cell timeout in seconds (0: none)"
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--force", action="store_true", help="re-execute points already done")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=_cmd_sweep)
    return parser
