"""Every committed artefact of the embedded benchmark, checked against its manifest.

The loaders check what they read (:func:`ped.bench.zoo.protocol.verify_ground_truth`,
:func:`ped.bench.verdict_store.verify_scores`, :func:`ped.bench.replication.load_simulations`, the
zoo's checkpoints when loaded); :func:`verify_artefacts` runs every such check over a data
folder at once, for ``ped verify`` and CI, and reports each artefact's result instead of
stopping at the first failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ped._io import sha256_file
from ped.bench.replication import load_simulations
from ped.bench.verdict import verify_scores
from ped.bench.zoo.finetune import verify_ground_truth
from ped.bench.zoo.train import read_manifest
from ped.paper import data_dir as default_data_dir
from ped.tools.sweep import verify_sweep

__all__ = ["ArtefactCheck", "verify_artefacts"]


@dataclass(frozen=True)
class ArtefactCheck:
    """One artefact's check: what (``kind``, ``path``), whether it passed, and why not."""

    kind: str
    path: Path
    ok: bool
    message: str = ""


def _zoo(folder: Path) -> str:
    encoders = read_manifest(folder)["encoders"]
    if not encoders:
        raise ValueError(f"{folder / 'manifest.json'} lists no encoder")
    for name, record in encoders.items():
        for key, sha in (("checkpoint", "sha256"), ("stats", "stats_sha256")):
            if key not in record:
                continue
            path = folder / record[key]
            if not path.is_file():
                raise ValueError(f"{path} ({name}'s {key}) is listed in the manifest but missing")
            if sha256_file(path) != record[sha]:
                raise ValueError(f"{path} ({name}'s {key}) does not match its sha256 (edited or "
                                 "corrupt)")  # fmt: skip
    return f"{len(encoders)} encoder(s)"


def _ground_truth(folder: Path) -> str:
    # runs still being written (a resumable job in progress) are not in the manifest yet: they
    # are never read, so they are counted here rather than refused
    table = verify_ground_truth(folder, allow_unlisted=True)
    listed = len(table)
    on_disk = sum(1 for _ in (folder / "runs").rglob("*.json"))
    pending = f", {on_disk - listed} run(s) not yet in the manifest" if on_disk > listed else ""
    return f"{listed} run(s){pending}"


def _scores(folder: Path) -> str:
    files = sorted(folder.glob("*.npz"))
    for path in files:
        verify_scores(path)
    return f"{len(files)} score file(s)"


def _simulations(folder: Path) -> str:
    _, tables = load_simulations(folder)
    return f"{len(tables)} simulation unit(s)"


def _sweep(folder: Path) -> str:
    verify_sweep(folder)
    return "results.csv"


def verify_artefacts(data_dir: str | os.PathLike[str] | None = None) -> list[ArtefactCheck]:
    """Check every artefact found under ``data_dir`` (default :func:`ped.paper.data_dir`): the
    zoos (checkpoints and statistics against the manifest), the rebuilt ground truth, the
    selection reruns and the regime chapter's runs (table, runs and features against their
    manifest), every folder of stored verdict and regime scores, the replication simulations and
    the sweeps' results.  Returns one :class:`ArtefactCheck` each."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    checks: list[tuple[str, Path, object]] = []
    for name in ("zoo", "zoo_v2"):
        if (root / name / "manifest.json").is_file():
            checks.append(("zoo", root / name, _zoo))
    for name in ("ground_truth_v2", "selection_noise", "regime"):
        if (root / name / "manifest.json").is_file():
            checks.append(("ground truth", root / name, _ground_truth))
    for folder in sorted({p.parent for p in (root / "verdict").rglob("*.npz")}):
        checks.append(("verdict scores", folder, _scores))
    for folder in sorted({p.parent for p in (root / "regime" / "scores").rglob("*.npz")}):
        checks.append(("regime scores", folder, _scores))
    for manifest in sorted((root / "verdict").rglob("simulations/manifest.json")):
        checks.append(("simulations", manifest.parent, _simulations))
    for results in sorted((root / "sweeps").glob("*/results.csv")):
        checks.append(("sweep", results.parent, _sweep))
    out = []
    for kind, path, check in checks:
        try:
            message = check(path)  # type: ignore[operator]
        except (ValueError, OSError) as exc:
            out.append(ArtefactCheck(kind, path, False, str(exc)))
        else:
            out.append(ArtefactCheck(kind, path, True, message))
    return out
