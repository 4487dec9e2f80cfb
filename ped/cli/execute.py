"""The ``ped execute`` command: notebooks executed with papermill (:mod:`ped.tools.notebooks`)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ped._io import check_output_path
from ped._progress import tqdm
from ped.cli import CommandError, int_at_least
from ped.tools.notebooks import execute_notebook, failed_path, notebook_parameters, notebook_sources


def _parse_parameter(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"parameters are NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    return name, value


def _is_notebook_failure(exc: BaseException) -> bool:
    """An error of the notebook machinery (papermill, nbclient, jupyter_client, nbformat,
    jupytext): the notebook failed or could not run, not ``ped``."""
    return type(exc).__module__.split(".")[0] in {
        "papermill", "nbclient", "jupyter_client", "nbformat", "jupytext",
    }  # fmt: skip


def _notebook_failure(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is not None:
        count = getattr(exc, "exec_count", None)
        where = f"cell [{count}]" if count is not None else "a cell"
        return f"{where} raised {ename}: {evalue}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _cmd_execute(args: argparse.Namespace) -> int:
    sources = [Path(p) for p in args.notebooks] or notebook_sources()
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"notebook source(s) not found: {', '.join(missing)}")
    parameters = dict(args.parameter or [])
    out = Path(args.out)
    targets = [out / f"{source.stem}.ipynb" for source in sources]
    # everything that can be checked is checked before the first notebook runs
    for source in sources:
        unknown = set(parameters) - set(notebook_parameters(source))
        if unknown:
            raise ValueError(f"{source.name} has no parameter(s) {sorted(unknown)}")
    clash = [t.name for t in set(targets) if targets.count(t) > 1]
    if clash:
        raise ValueError(f"two sources would write the same executed notebook(s) {sorted(clash)}"
                         f" in {out}: execute them into different folders")  # fmt: skip
    for target in targets:
        check_output_path(target, what="executed notebook", inputs=sources)
    log = logging.getLogger("ped")
    with tqdm(total=len(sources), desc="execute", unit="notebook",
              disable=args.no_progress) as bar:  # fmt: skip
        for done, (source, target) in enumerate(zip(sources, targets)):
            bar.set_postfix_str(source.stem)
            log.info("executing %s", source)
            earlier = target.exists()
            try:
                execute_notebook(source, target, parameters=parameters, timeout=args.timeout,
                                 progress_bar=not args.no_progress)  # fmt: skip
            except Exception as exc:
                if not _is_notebook_failure(exc):
                    raise
                removed = f"; the earlier {target.name} was removed" if earlier else ""
                raise CommandError(
                    f"{source.name} failed: {_notebook_failure(exc)}; partial notebook: "
                    f"{failed_path(target)}{removed}; {done} notebook(s) executed before it, "
                    f"{len(sources) - done - 1} not run"
                ) from exc
            bar.update(1)
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped execute`` to the ``ped`` command line."""
    sub = subparsers
    ex = sub.add_parser(
        "execute",
        help="execute jupytext notebooks with papermill",
        description="Execute notebooks (default: every notebooks/*.md) into OUT/<name>.ipynb.",
    )
    ex.add_argument("notebooks", nargs="*", help="notebook sources (.md); default: all")
    ex.add_argument("--out", required=True, help="folder for the executed .ipynb files")
    ex.add_argument(
        "-p",
        "--parameter",
        action="append",
        type=_parse_parameter,
        metavar="NAME=VALUE",
        help="override a parameter (VALUE parsed as JSON, else a string); repeatable",
    )
    ex.add_argument(
        "--timeout", type=int_at_least(1), default=1800, help="per-cell timeout in seconds"
    )
    ex.add_argument("--no-progress", action="store_true", help="no progress bars")
    ex.set_defaults(func=_cmd_execute)
