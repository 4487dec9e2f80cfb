"""The ``ped`` command line: one entry point, one subcommand per task.

``ped execute`` runs notebooks with papermill (the book build uses it).  Other subcommands live
beside the code they drive: each module named in :data:`COMMAND_MODULES` defines
``register_cli(subparsers)``, which adds its subparser and sets ``func`` to its handler.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules that add subcommands through ``register_cli(subparsers)``.  Imported when the parser is
#: built, so ``import ped`` stays light.
COMMAND_MODULES: tuple[str, ...] = (
    "ped.sweep",
    "ped.extraction",
    "ped.scoring",
    "ped.datasets",
    "ped.zoo.cli",
    "ped.verdict",
)


def _parse_parameter(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"parameters are NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string
    return name, value


def _cmd_execute(args: argparse.Namespace) -> int:
    from ped.notebooks import execute_notebook, notebook_sources

    sources = [Path(p) for p in args.notebooks] or notebook_sources()
    parameters = dict(args.parameter or [])
    out = Path(args.out)
    for source in sources:
        target = out / f"{source.stem}.ipynb"
        logging.getLogger("ped").info("executing %s", source)
        execute_notebook(source, target, parameters=parameters, timeout=args.timeout)
    return 0


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
    ex.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    ex.set_defaults(func=_cmd_execute)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ped`` command line with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        if args.verbose:
            raise
        # bad input (a wrong path, an unknown name): one clear line, exit status 2
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        parser.exit(2, f"ped {args.command}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
