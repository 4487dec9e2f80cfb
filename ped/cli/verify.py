"""The ``ped verify`` command: every committed artefact against its manifest
(:mod:`ped.bench.artefacts`)."""

from __future__ import annotations

import argparse
from typing import Any

from ped.bench.artefacts import verify_artefacts
from ped.cli import CommandError


def _cmd_verify(args: argparse.Namespace) -> int:
    checks = verify_artefacts(args.data)
    if not checks:
        raise CommandError(f"no artefact with a manifest under {args.data or 'the data folder'}")
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.kind:<15} {c.path}: {c.message}")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise CommandError(f"{len(failed)} of {len(checks)} artefact(s) do not match their "
                           f"manifest, first {failed[0].path}: {failed[0].message}")  # fmt: skip
    print(f"all {len(checks)} artefact(s) match their manifests")
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped verify``."""
    p = subparsers.add_parser(
        "verify", help="check every committed artefact against its sha256 manifest",
        description="Check the zoos, the ground truths, the stored verdict scores and the "
        "simulations of the data folder against their sha256 manifests; one line per "
        "artefact, exit status 2 naming the first that does not match.",
    )  # fmt: skip
    p.add_argument("--data", default=None, help="the data folder (default: the repository's "
                   "data/, or $PED_DATA_DIR)")  # fmt: skip
    p.set_defaults(func=_cmd_verify)
