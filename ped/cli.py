"""The ``ped`` command line: one entry point, one subcommand per task.

``ped execute`` runs notebooks with papermill (the book build uses it).  Other subcommands live
beside the code they drive: each module named in :data:`COMMAND_MODULES` defines
``register_cli(subparsers)``, which adds its subparser and sets ``func`` to its handler.

Errors are handled once, in :func:`main`: bad input and failures of the outside world
(``ValueError``, ``KeyError``, ``OSError`` such as a missing file, a permission denied or a
read-only file system, ``EOFError``, and :class:`CommandError`, e.g. a failing notebook) end in
one line ``ped <command>: error: <message>`` on stderr and exit status 2; Ctrl-C ends in
``ped <command>: interrupted`` and exit status 130.  No traceback is shown unless ``-v``.  Logs
go to stderr at level WARNING (INFO with ``-v``), the logs of libraries (Dask, papermill)
included.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ["COMMAND_MODULES", "CommandError", "build_parser", "main"]

#: Modules that add subcommands through ``register_cli(subparsers)``.  Imported when the parser is
#: built, so ``import ped`` stays light.
COMMAND_MODULES: tuple[str, ...] = (
    "ped.tools.sweep",
    "ped.fullscale.extraction",
    "ped.fullscale.scoring",
    "ped.bench.tasks",
    "ped.bench.zoo.cli",
    "ped.bench.verdict",
)


#: Exit status of a command interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit status of bad input or a failed command (argparse uses it for usage errors too).
EXIT_ERROR = 2


class CommandError(Exception):
    """A failure a subcommand reports in one line (exit status 2), e.g. a notebook that fails."""


#: The exceptions :func:`main` reports in one line instead of a traceback.
REPORTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, OSError, EOFError, CommandError,
)  # fmt: skip


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
    from ped._progress import tqdm

    from ped._io import check_output_path
    from ped.tools.notebooks import execute_notebook, failed_path, notebook_parameters, notebook_sources

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
    for target in targets:
        check_output_path(target, what="executed notebook")
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


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``; ``why`` (e.g. " (reason)") ends the
    usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}{why}, got {value}")
        return value

    return parse


_positive_int = int_at_least(1)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ped`` command (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="ped", description="Potential Energy Descent companion: notebooks and tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

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
        "--timeout", type=_positive_int, default=1800, help="per-cell timeout in seconds"
    )
    ex.add_argument("--no-progress", action="store_true", help="no progress bars")
    ex.set_defaults(func=_cmd_execute)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def _describe(exc: BaseException) -> str:
    """``exc`` as one line of text (an ``OSError`` as its reason and the path it concerns)."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        for name in (exc.filename, exc.filename2):
            if name is not None and str(name) not in text:
                text += f": {name}"
    else:
        text = str(exc) or {EOFError: "unexpected end of file"}.get(type(exc), "")
        text = text or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _stderr_logging(verbose: bool) -> Iterator[None]:
    """Log to stderr for the duration of a command: WARNING and above, INFO with ``verbose``.

    The level is set on the handler, so the INFO records of libraries that set their own
    loggers' levels (``distributed`` sets INFO) are filtered too.
    """
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if verbose and root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ped`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the command's exit status; bad input or a failure (see the module docstring) raises
    ``SystemExit(2)`` after one line on stderr, Ctrl-C ``SystemExit(130)``.
    """
    command = "ped"
    verbose = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = f"ped {args.command}"
        verbose = bool(args.verbose)
        with _stderr_logging(verbose):
            return int(args.func(args))
    except KeyboardInterrupt:
        if verbose:
            raise
        sys.stderr.write(f"\n{command}: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except REPORTED_ERRORS as exc:
        if verbose:
            raise
        # bad input (a wrong path, an unknown name, an unwritable output): one line, exit 2
        sys.stderr.write(f"{command}: error: {_describe(exc)}\n")
        raise SystemExit(EXIT_ERROR) from None


if __name__ == "__main__":
    # `python -m ped.cli`: run the imported module's main, so that the exception classes the
    # subcommands import from ped.cli are the ones main() handles
    from ped.cli import main as _main

    sys.exit(_main())
