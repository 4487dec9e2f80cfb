"""Parameter sweeps: run one notebook over a grid of parameters, in parallel on Dask.

:func:`run_sweep` executes a notebook once per grid point with papermill (through
:func:`ped.tools.notebooks.execute_notebook`), stores every executed notebook and a JSON sidecar with
its parameters, status, glued scalars, timing and (on failure) the error, and collects the points
that succeeded into one tidy table that notebooks read back with :func:`load_sweep`.

The points run in parallel on a ``dask.distributed`` cluster: a :class:`~distributed.LocalCluster`
started for the sweep by default, or an existing cluster given by its scheduler address.  Each point
is one ``client.submit`` task, and the worker that executes it writes its notebook and sidecar, so a
sweep killed midway keeps every point that had finished.  A rerun skips the points whose sidecar
says ``"ok"`` and retries the others.

On-disk layout of a sweep folder ``OUT``::

    OUT/sweep.json               the notebook swept, its hash, the latest grid and run summary
    OUT/results.csv              one row per successful point of the latest grid
    OUT/points/<id>.ipynb        the executed notebook of a point
    OUT/points/<id>.json         its sidecar (see :func:`run_point`)
    OUT/points/<id>.failed.ipynb the partially executed notebook of a point that failed

A point's ``<id>`` is :func:`~ped.tools.sweep_points.point_id` of its parameters: the first 12 hex digits of the SHA-256
of their JSON with sorted keys, so it does not depend on the order of the grid.  Every file is
written to a temporary file in the same folder and renamed into place (``os.replace``), so no
reader ever sees a half-written result.  The notebook, the output folder and the ``ped`` package
must be reachable from the workers (same machine, or a shared filesystem for a remote cluster).

*Why one module of over 500 lines:* the sweep and its results table share the folder's
layout, its manifest and its lock (the points' own files are in
:mod:`ped.tools.sweep_points`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import traceback as _traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ped._io import read_json_record, sha256_file, write_text_atomic
from ped.tools.cluster import dask_client, require_distributed

if TYPE_CHECKING:  # pragma: no cover - typing only
    import distributed
    import pandas as pd

import numpy as np
import pandas as pd

from ped._progress import tqdm
from ped.tools.notebooks import notebook_parameters
from ped.tools.sweep_points import (
    ID_COLUMN,
    MANIFEST_FILE,
    POINTS_DIR,
    RESULTS_FILE,
    SECONDS_COLUMN,
    SHA_COLUMN,
    Grid,
    _is_done,
    _now,
    _write_json,
    expand_grid,
    point_id,
    read_sidecar,
    run_point,
)

__all__ = [
    "SweepError",
    "SweepResult",
    "expand_grid",
    "point_id",
    "run_point",
    "run_sweep",
    "collect_results",
    "load_sweep",
    "read_sidecar",
    "verify_sweep",
    "sensitivity_summary",
]


logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)


class SweepError(RuntimeError):
    """Raised by :meth:`SweepResult.raise_for_failures` when some points of a sweep failed."""



# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SweepResult:
    """What :func:`run_sweep` did: the table of successful points and the failures.

    ``records`` holds the sidecar record of every point of the grid, in grid order; ``executed``
    and ``skipped`` the ids executed now and those already done; ``table`` is ``results.csv``.
    """

    out_dir: Path
    notebook: Path
    table: pd.DataFrame
    records: list[dict[str, Any]]
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        """The path of ``results.csv``."""
        return self.out_dir / RESULTS_FILE

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The sidecar records of the points that failed (with parameters and ``error``)."""
        return [r for r in self.records if r.get("status") != "ok"]

    @property
    def ok(self) -> bool:
        """Whether every point of the grid succeeded."""
        return not self.failures

    def summary(self, *, traceback_lines: int = 0) -> str:
        """A human-readable summary; with ``traceback_lines`` > 0, the end of each traceback."""
        n_ok = len(self.records) - len(self.failures)
        lines = [
            f"sweep of {self.notebook.name}: {len(self.records)} point(s), {n_ok} ok "
            f"({len(self.skipped)} already done, {len(self.executed)} executed), "
            f"{len(self.failures)} failed; table: {self.results_path}"
        ]
        for record in self.failures:
            error = record.get("error") or {}
            lines.append(
                f"FAILED {record['id']} {json.dumps(record['parameters'])}: "
                f"{error.get('type', '?')}: {error.get('message', '')}"
            )
            if traceback_lines > 0 and error.get("traceback"):
                tail = error["traceback"].rstrip().splitlines()[-traceback_lines:]
                lines.extend("    " + line for line in tail)
            lines.append(f"    sidecar: {self.out_dir / POINTS_DIR / (record['id'] + '.json')}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`SweepError` (with the summary and tracebacks) if any point failed."""
        if self.failures:
            raise SweepError(self.summary(traceback_lines=20))


def _validate(notebook: Path, points: list[dict[str, Any]]) -> None:
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook {notebook}")
    known = notebook_parameters(notebook)
    used = {name for point in points for name in point}
    unknown = used - set(known)
    if unknown:
        where = (
            f"its parameters cell defines {sorted(known)}"
            if known
            else "it has no cell tagged 'parameters'"
        )
        raise ValueError(f"{notebook.name} has no parameter(s) {sorted(unknown)}; {where}")


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` so two sweeps never write the same folder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    fd = os.open(out_dir, os.O_RDONLY)  # lock the folder itself: no lock file to leave behind
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another sweep is writing {out_dir}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_temporaries(points_dir: Path) -> None:
    """Delete temporary files a killed sweep left behind (hidden files of the points folder)."""
    for path in points_dir.glob(".*"):
        if path.is_file():
            logger.info("removing stale temporary file %s", path)
            path.unlink(missing_ok=True)


def _check_manifest(out_dir: Path, notebook: Path) -> None:
    manifest = out_dir / MANIFEST_FILE
    if not manifest.exists():
        return
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("notebook")
    except (OSError, json.JSONDecodeError, AttributeError):
        return
    if previous and previous != notebook.name:
        raise ValueError(
            f"{out_dir} holds a sweep of {previous}, not {notebook.name}; use another --out folder"
        )


def _submit_all(
    client: distributed.Client,
    todo: list[dict[str, Any]],
    notebook: Path,
    points_dir: Path,
    notebook_sha256: str,
    kernel_name: str,
    timeout: int | None,
    progress_bar: Any,
) -> dict[str, dict[str, Any]]:
    """Run the points of ``todo`` on ``client``; their sidecar records by id."""
    import distributed

    run_token = uuid.uuid4().hex[:8]
    futures = {}
    for parameters in todo:
        pid = point_id(parameters)
        future = client.submit(
            run_point,
            str(notebook),
            str(points_dir),
            parameters,
            notebook_sha256=notebook_sha256,
            kernel_name=kernel_name,
            timeout=timeout,
            key=f"ped-sweep-{pid}-{run_token}",
            pure=False,
            retries=0,
        )
        futures[future] = parameters
    records: dict[str, dict[str, Any]] = {}
    n_failed = 0
    for future in distributed.as_completed(futures):
        parameters = futures[future]
        pid = point_id(parameters)
        try:
            record = future.result()
        except Exception as exc:  # the task itself died (worker lost, ped not importable, ...)
            record = {
                "id": pid,
                "notebook": notebook.name,
                "notebook_sha256": notebook_sha256,
                "parameters": parameters,
                "status": "failed",
                "outputs": {},
                "seconds": None,
                "started": None,
                "finished": _now(),
                "worker": None,
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": "".join(_traceback.format_exception(exc)),
                },
            }
            _write_json(points_dir / f"{pid}.json", record)
        records[pid] = record
        if record["status"] != "ok":
            n_failed += 1
            error = record["error"] or {}
            logger.error(
                "point %s %s failed: %s: %s\n%s",
                pid,
                json.dumps(parameters),
                error.get("type"),
                error.get("message"),
                error.get("traceback", ""),
            )
            progress_bar.set_postfix(failed=n_failed)
        else:
            logger.info(
                "point %s %s done in %.1f s", pid, json.dumps(parameters), record["seconds"]
            )
        progress_bar.update(1)
    return records


def run_sweep(
    notebook: str | os.PathLike[str],
    grid: Grid,
    out_dir: str | os.PathLike[str],
    *,
    scheduler: str | distributed.Client | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    kernel_name: str = "python3",
    timeout: int | None = 1800,
    force: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Execute ``notebook`` once per point of ``grid`` on Dask and collect the results.

    Parameters
    ----------
    notebook
        A jupytext (``.md``) or ``.ipynb`` notebook with a cell tagged ``parameters``.
    grid
        ``name -> list of values`` (Cartesian product) or a list of explicit points; see
        :func:`~ped.tools.sweep_points.expand_grid`.  Every name must be assigned in the parameters cell (checked before
        anything runs: ``ValueError``).
    out_dir
        The sweep folder (created); see the module docstring for its layout.
    scheduler
        ``None`` starts a ``LocalCluster`` of ``n_workers`` processes with ``threads_per_worker``
        threads each (one thread runs one notebook at a time); a ``"tcp://host:8786"`` address
        or a ``distributed.Client`` uses that cluster instead.
    kernel_name, timeout
        The Jupyter kernel and the per-cell timeout in seconds (``None``: no limit).
    force
        Re-execute points that are already done.
    progress
        Show a tqdm progress bar (on stderr).

    Returns
    -------
    SweepResult
        Failing points do not raise: they are in :attr:`SweepResult.failures` with their
        parameters and traceback (and logged as they fail); call
        :meth:`SweepResult.raise_for_failures` to turn them into an exception.
    """
    notebook = Path(notebook).resolve()
    out_dir = Path(out_dir).resolve()
    points = expand_grid(grid)
    _validate(notebook, points)
    if n_workers < 1 or threads_per_worker < 1:
        raise ValueError("n_workers and threads_per_worker must be at least 1")
    require_distributed()  # before anything is written
    points_dir = out_dir / POINTS_DIR
    _check_manifest(out_dir, notebook)
    points_dir.mkdir(parents=True, exist_ok=True)
    sha = sha256_file(notebook)

    with _folder_lock(out_dir):
        _remove_stale_temporaries(points_dir)
        records: dict[str, dict[str, Any]] = {}
        todo: list[dict[str, Any]] = []
        stale = 0
        for parameters in points:
            pid = point_id(parameters)
            done = None if force else _is_done(points_dir, pid, parameters)
            if done is not None and done.get("notebook_sha256") != sha:
                stale += 1  # another version of the notebook (or one not recorded): recompute
                done = None
            if done is None:
                todo.append(parameters)
            else:
                records[pid] = done
        skipped = list(records)
        if stale:
            logger.warning(
                "%d finished point(s) were computed with another version of %s; recomputing "
                "them, so that one results table holds one version",
                stale,
                notebook.name,
            )
        logger.info(
            "sweep of %s: %d point(s), %d already done, %d to execute",
            notebook.name,
            len(points),
            len(skipped),
            len(todo),
        )
        if todo:
            with tqdm(
                total=len(points),
                initial=len(skipped),
                desc=notebook.stem,
                unit="point",
                disable=not progress,
            ) as bar, dask_client(scheduler, n_workers, threads_per_worker) as client:
                records.update(
                    _submit_all(client, todo, notebook, points_dir, sha, kernel_name, timeout, bar)
                )
        ordered = [records[point_id(p)] for p in points]
        table = _table(ordered)
        text = table.to_csv(index=False)
        write_text_atomic(out_dir / RESULTS_FILE, text)
        result = SweepResult(
            out_dir=out_dir,
            notebook=notebook,
            table=table,
            records=ordered,
            executed=[point_id(p) for p in todo],
            skipped=skipped,
        )
        _write_json(
            out_dir / MANIFEST_FILE,
            {
                "notebook": notebook.name,
                "notebook_path": str(notebook),
                "notebook_sha256": sha,
                "updated": _now(),
                "points": [{"id": point_id(p), "parameters": p} for p in points],
                "n_ok": len(ordered) - len(result.failures),
                "failed": [r["id"] for r in result.failures],
                "results_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            },
        )
    if result.failures:
        logger.warning("%d of %d point(s) failed", len(result.failures), len(points))
    return result


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A table cell: scalars as they are, lists and dicts as JSON text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=isinstance(value, dict))
    return value


def _table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The tidy table of the ``"ok"`` records: id, parameters, glued outputs, seconds."""
    ok = [r for r in records if r.get("status") == "ok"]
    param_names: list[str] = []
    output_names: list[str] = []
    for record in ok:
        param_names += [n for n in record["parameters"] if n not in param_names]
        output_names += [n for n in (record.get("outputs") or {}) if n not in output_names]
    reserved = {ID_COLUMN, SECONDS_COLUMN, SHA_COLUMN, *param_names}
    renamed = {n: (f"output_{n}" if n in reserved else n) for n in output_names}
    for name, new in renamed.items():
        if name != new:
            logger.warning("glued value %r clashes with a column name; stored as %r", name, new)
    columns = [ID_COLUMN, *param_names, *sorted(renamed.values()), SECONDS_COLUMN, SHA_COLUMN]
    rows = []
    for record in ok:
        row: dict[str, Any] = {ID_COLUMN: record["id"], SECONDS_COLUMN: record.get("seconds"),
                               SHA_COLUMN: record.get("notebook_sha256")}  # fmt: skip
        row.update({n: _cell(v) for n, v in record["parameters"].items()})
        row.update({renamed[n]: _cell(v) for n, v in (record.get("outputs") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def collect_results(
    out_dir: str | os.PathLike[str], *, write: bool = True
) -> pd.DataFrame:
    """Rebuild the table from every ``"ok"`` sidecar in ``out_dir/points`` (sorted by id).

    Unlike ``results.csv``, which holds the latest grid, this gathers every point ever finished
    in the folder.  With ``write``, the table replaces ``results.csv`` (atomically) and its
    sha256 is recorded in ``sweep.json`` (:func:`verify_sweep`).
    """
    out_dir = Path(out_dir)
    records = [read_sidecar(p) for p in sorted((out_dir / POINTS_DIR).glob("*.json"))]
    table = _table([r for r in records if r is not None])
    if write:
        text = table.to_csv(index=False)
        write_text_atomic(out_dir / RESULTS_FILE, text)
        manifest = out_dir / MANIFEST_FILE
        record = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
        record["results_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        _write_json(manifest, record)
    return table


def _decode_json_column(column: pd.Series) -> pd.Series:
    values = column.dropna()
    if values.empty or not all(isinstance(v, str) and v[:1] in "[{" for v in values):
        return column
    try:
        return column.map(lambda v: json.loads(v) if isinstance(v, str) else v).astype(object)
    except json.JSONDecodeError:
        return column


def verify_sweep(out_dir: str | os.PathLike[str]) -> None:
    """Check a sweep's ``results.csv`` against the sha256 that its ``sweep.json`` recorded when
    it was written; a ``ValueError`` names the file when the manifest or its hash is missing or
    the table does not match (edited, truncated or corrupt)."""
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST_FILE
    if not manifest.is_file():
        raise ValueError(f"{manifest} is missing: the sweep's results cannot be verified")
    expected = read_json_record(manifest, ("results_sha256",),
                                what="a sweep manifest with the results' sha256")["results_sha256"]
    if sha256_file(out_dir / RESULTS_FILE) != expected:
        raise ValueError(f"{out_dir / RESULTS_FILE} does not match its sha256 in {manifest} "
                         "(edited or corrupt)")  # fmt: skip


def load_sweep(out_dir: str | os.PathLike[str], *, decode_json: bool = True) -> pd.DataFrame:
    """Read a sweep's ``results.csv``: one row per successful point.

    Columns: ``id``, the parameters, the glued outputs, ``seconds``.  List- or dict-valued cells
    are stored as JSON text; with ``decode_json`` they come back as Python lists and dicts.
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}; run `ped sweep ... --out {out_dir}`")
    verify_sweep(out_dir)
    table = pd.read_csv(path, dtype={ID_COLUMN: str})
    if decode_json:
        for name in table.columns:
            if table[name].dtype == object or pd.api.types.is_string_dtype(table[name]):
                table[name] = _decode_json_column(table[name])
    return table


def sensitivity_summary(
    table: pd.DataFrame, defaults: Mapping[str, float], value: str = "mean_tau_ped"
) -> pd.DataFrame:
    """Per PED variant of a sweep's results: the best ``value`` and the ``nsigma`` that gives
    it, the worst, and the mean at ``defaults`` (``{"nsigma": ..., "time_step": ...,
    "max_steps": ...}``; the points whose parameters are all close to them)."""
    out = {}
    for variant, group in table.groupby("variant"):
        best = group.loc[group[value].idxmax()]
        at_default = np.ones(len(group), dtype=bool)
        for name, v in defaults.items():
            at_default &= np.isclose(group[name].to_numpy(dtype=float), v)
        out[variant] = {"best": best[value], "best nsigma": best["nsigma"],
                        "worst": group[value].min(),
                        "default": group.loc[at_default, value].mean()}  # fmt: skip
    return pd.DataFrame(out).T
