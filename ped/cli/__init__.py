"""The ``ped`` command line: one entry point, one subcommand per task.

One module of this package per command group (:data:`COMMAND_MODULES`: ``execute``,
``sweep``, ``extract``, ``score`` and ``evaluate``, ``datasets``, ``zoo``, ``verdict``), each
defining ``register_cli(subparsers)``, which adds its subparser and sets ``func`` to its
handler; the handlers call the library (``ped.tools``, ``ped.fullscale``, ``ped.bench``).

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
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence

__all__ = ["COMMAND_MODULES", "CommandError", "build_parser", "main"]

#: Modules that add subcommands through ``register_cli(subparsers)``.  Imported when the parser is
#: built, so ``import ped`` stays light.
COMMAND_MODULES: tuple[str, ...] = (
    "ped.cli.execute",
    "ped.cli.sweep",
    "ped.cli.extract",
    "ped.cli.score",
    "ped.cli.rank",
    "ped.cli.datasets",
    "ped.cli.zoo",
    "ped.cli.verdict",
    "ped.cli.verify",
)


#: Exit status of a command interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit status of bad input or a failed command (argparse uses it for usage errors too).
EXIT_ERROR = 2


class CommandError(Exception):
    """A failure a subcommand reports in one line (exit status 2), e.g. a notebook that fails."""


#: The exceptions :func:`main` reports in one line instead of a traceback.
REPORTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, OSError, EOFError, ImportError, CommandError,
)  # fmt: skip


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


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0 (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ped`` command (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="ped", description="Potential Energy Descent companion: notebooks and tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
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
    if not verbose:
        # a notebook interrupted or failed is reported in one line: papermill's "kernel died"
        # and asyncio's "task exception was never retrieved" would only repeat it, the latter
        # at garbage collection, after this command's handler is gone
        for name in ("papermill", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
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
