"""The points of a parameter sweep (:mod:`ped.tools.sweep`): the grid, a point's id, its files,
and :func:`run_point`, which runs on a Dask worker.

A point's ``<id>`` is :func:`point_id` of its parameters; the folder layout is in
:mod:`ped.tools.sweep`'s docstring.  Every file is written to a temporary file in the same
folder and renamed into place, so no reader ever sees a half-written result.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import time
import traceback as _traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ped._io import write_json_atomic
from ped.tools.notebooks import execute_notebook, glued_values

__all__ = [
    "POINTS_DIR", "RESULTS_FILE", "MANIFEST_FILE", "ID_COLUMN", "SECONDS_COLUMN", "SHA_COLUMN",
    "Grid", "point_id", "expand_grid", "read_sidecar", "run_point",
]  # fmt: skip


logger = logging.getLogger("ped.tools.sweep")  # one logger for the sweep, as the CLI configures

#: File names inside a sweep folder.
POINTS_DIR = "points"
RESULTS_FILE = "results.csv"
MANIFEST_FILE = "sweep.json"

#: Columns of the results table that are not parameters or glued outputs.
ID_COLUMN = "id"
SECONDS_COLUMN = "seconds"
#: The column of results.csv with the sha256 of the notebook version that computed the point.
SHA_COLUMN = "notebook_sha256"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NUMPY_SCALAR = re.compile(r"^np\.(?:float|int|uint|bool_?)\w*\((.*)\)$")

Grid = Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]


# --------------------------------------------------------------------------------------------
# grids and point ids
# --------------------------------------------------------------------------------------------


def _canonical_json(parameters: Mapping[str, Any]) -> str:
    try:
        return json.dumps(
            dict(parameters), sort_keys=True, separators=(",", ":"), allow_nan=True
        )
    except TypeError as exc:
        raise TypeError(
            f"sweep parameters must be JSON values (numbers, strings, booleans, None, lists, "
            f"dicts); got {dict(parameters)!r}: {exc}"
        ) from None


def point_id(parameters: Mapping[str, Any]) -> str:
    """The stable id of a grid point: 12 hex digits of the SHA-256 of its sorted-key JSON.

    The id depends on the names and JSON values only, not on their order (``1`` and ``1.0`` are
    different points, as papermill would inject them differently).
    """
    return hashlib.sha256(_canonical_json(parameters).encode("utf-8")).hexdigest()[:12]


def expand_grid(grid: Grid) -> list[dict[str, Any]]:
    """The points of ``grid``, in order, without duplicates.

    ``grid`` is either a mapping ``name -> list of values`` (the Cartesian product, the last name
    varying fastest; a list-valued parameter is swept as ``[[...], [...]]``) or an iterable of
    mappings, each one explicit point.  An empty mapping is one point: the notebook's defaults.
    Values must be JSON values (``TypeError`` otherwise); duplicate points are dropped.
    """
    if isinstance(grid, Mapping):
        names = list(grid)
        value_lists = []
        for name in names:
            values = grid[name]
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise TypeError(
                    f"grid values are lists of values to sweep; parameter {name!r} has "
                    f"{values!r} (wrap a single value in a list)"
                )
            if len(values) == 0:
                raise ValueError(f"parameter {name!r} has an empty list of values")
            value_lists.append(list(values))
        points = [dict(zip(names, combo)) for combo in itertools.product(*value_lists)]
    elif isinstance(grid, (str, bytes)):
        raise TypeError(f"a grid is a mapping or a list of mappings, not {grid!r}")
    else:
        points = []
        for i, point in enumerate(grid):
            if not isinstance(point, Mapping):
                raise TypeError(f"grid point {i} is not a mapping: {point!r}")
            points.append(dict(point))
        if not points:
            raise ValueError("the grid has no points")
    unique: dict[str, dict[str, Any]] = {}
    for point in points:
        for name in point:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"parameter names are Python identifiers, got {name!r}")
        pid = point_id(point)
        if pid in unique:
            logger.warning("dropping duplicate grid point %s", point)
            continue
        unique[pid] = point
    return list(unique.values())


# --------------------------------------------------------------------------------------------
# atomic files and sidecars
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` with tuples/sets as lists and anything JSON cannot hold as its ``repr``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _clean_output(value: Any) -> Any:
    """A glued value as a JSON value; ``"np.float64(1.5)"`` (numpy 2's repr) becomes ``1.5``."""
    if isinstance(value, str):
        match = _NUMPY_SCALAR.match(value.strip())
        if match:
            with contextlib.suppress(ValueError, SyntaxError):
                return _jsonable(ast.literal_eval(match.group(1)))
    return _jsonable(value)


def _write_json(path: Path, record: Mapping[str, Any]) -> None:
    write_json_atomic(path, record, sort_keys=False, end="\n")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar record at ``path``, or ``None`` when it is missing, partial or not a record."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("ignoring unreadable sidecar %s (%s)", path, exc)
        return None
    if (
        not isinstance(record, dict)
        or not {"id", "parameters", "status"} <= set(record)
        or not isinstance(record["parameters"], dict)
        or not isinstance(record.get("outputs") or {}, dict)
    ):
        logger.warning("ignoring malformed sidecar %s", path)
        return None
    return record


def _is_done(points_dir: Path, pid: str, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sidecar of point ``pid`` if it finished ``"ok"`` (and its notebook is there)."""
    record = read_sidecar(points_dir / f"{pid}.json")
    if record is None or record["status"] != "ok" or record["id"] != pid:
        return None
    if _canonical_json(record["parameters"]) != _canonical_json(parameters):
        logger.warning("sidecar %s.json holds other parameters; re-executing the point", pid)
        return None
    if not (points_dir / f"{pid}.ipynb").is_file():
        logger.warning("point %s has a sidecar but no notebook; re-executing it", pid)
        return None
    return record


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# one point (runs on a Dask worker)
# --------------------------------------------------------------------------------------------


def _error_record(exc: BaseException) -> dict[str, str]:
    """Type, message and traceback of ``exc``; the kernel's traceback for a failing cell."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        lines = [_ANSI.sub("", line) for line in (exc.traceback or [])]
        return {
            "type": str(exc.ename),
            "message": str(exc.evalue),
            "traceback": "\n".join(lines),
            "cell": str(exc.exec_count),
        }
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(_traceback.format_exception(exc)),
    }


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return socket.gethostname()


def run_point(
    notebook: str | os.PathLike[str],
    points_dir: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    *,
    notebook_sha256: str | None = None,
    kernel_name: str = "python3",
    timeout: int | None = 1800,
) -> dict[str, Any]:
    """Execute ``notebook`` with ``parameters`` and write ``<id>.ipynb`` and ``<id>.json``.

    This is the task each Dask worker runs; it never raises for a failing notebook.  The sidecar
    record it writes and returns holds ``id``, ``notebook``, ``notebook_sha256``, ``parameters``,
    ``status`` (``"ok"`` or ``"failed"``), ``outputs`` (the glued scalars, ``{}`` on failure),
    ``seconds``, ``started``, ``finished``, ``worker`` and ``error`` (``None``, or ``type``,
    ``message`` and ``traceback``).
    """
    notebook = Path(notebook)
    points_dir = Path(points_dir)
    pid = point_id(parameters)
    output = points_dir / f"{pid}.ipynb"
    record: dict[str, Any] = {
        "id": pid,
        "notebook": notebook.name,
        "notebook_sha256": notebook_sha256,
        "parameters": dict(parameters),
        "status": "failed",
        "outputs": {},
        "seconds": None,
        "started": _now(),
        "finished": None,
        "worker": _worker_name(),
        "error": None,
    }
    start = time.perf_counter()
    try:
        execute_notebook(
            notebook,
            output,
            parameters=parameters,
            kernel_name=kernel_name,
            timeout=timeout,
            progress_bar=False,
        )
        record["outputs"] = {k: _clean_output(v) for k, v in glued_values(output).items()}
        record["status"] = "ok"
    except Exception as exc:  # a failing point is data, not a crash of the sweep
        record["error"] = _error_record(exc)
        # A stale notebook from an earlier success would contradict the failed sidecar.
        with contextlib.suppress(FileNotFoundError):
            output.unlink()
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["finished"] = _now()
    _write_json(points_dir / f"{pid}.json", record)
    return record


