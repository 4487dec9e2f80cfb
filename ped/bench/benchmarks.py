"""The versions of the embedded benchmark (:class:`Benchmark`, :data:`BENCHMARKS`): where each
one's zoo, ground truth and verdict scores live, and which tasks it has."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ped.bench.ground_truth import complete_cells, load_ground_truth
from ped.bench.tasks import REBUILT_TASK_NAMES, TASKS
from ped.bench.zoo.finetune import verify_ground_truth
from ped.bench.zoo.train import read_manifest
from ped.paper import data_dir

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "DEFAULT_BENCHMARK",
    "get_benchmark",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    """One version of the embedded benchmark: where its artefacts live and which tasks it has.

    Paths are relative to :func:`ped.paper.data_dir`; ``rebuilt`` tells the rebuilt protocol
    (selection seeds apart from evaluation seeds, :mod:`ped.bench.zoo.finetune`) from the
    first one.
    """

    name: str
    label: str
    zoo: str
    ground_truth: str
    verdict: str
    tasks: tuple[str, ...]
    rebuilt: bool

    def _path(self, relative: str) -> Path:
        return data_dir() / relative

    def zoo_dir(self) -> Path:
        """The zoo folder (checkpoints, records, manifest)."""
        return self._path(self.zoo)

    def ground_truth_csv(self) -> Path:
        """The ground-truth table."""
        return self._path(self.ground_truth)

    def verdict_dir(self) -> Path:
        """The folder of the verdict's stored scores (``make verdict``)."""
        return self._path(self.verdict)

    def load(
        self, ground_truth: str | os.PathLike[str] | None = None
    ) -> tuple[pd.DataFrame, list[str]]:
        """``(ground truth, models)``: the checked table (:func:`~ped.bench.ground_truth.load_ground_truth`; of
        ``ground_truth`` when given, else :meth:`ground_truth_csv`) of this benchmark's tasks,
        complete cells only for the rebuilt protocol (:func:`~ped.bench.ground_truth.complete_cells`), and the models
        of the zoo with a ground truth on every task, in the zoo's order.  A task with no
        ground truth at all is a ``ValueError``.  The rebuilt benchmark's committed table is
        first checked against its sha256 manifest
        (:func:`ped.bench.zoo.protocol.verify_ground_truth`): an edited, truncated or stale
        file is a ``ValueError`` naming it."""
        if self.rebuilt and not ground_truth:
            verify_ground_truth(self.ground_truth_csv().parent)
        gt = load_ground_truth(ground_truth if ground_truth else self.ground_truth_csv())
        gt = gt[gt["task"].isin(self.tasks)]
        if self.rebuilt:
            gt = complete_cells(gt)
        missing = [t for t in self.tasks if t not in set(gt["task"])]
        if missing:
            raise ValueError(f"benchmark {self.name}: no ground truth for task(s) {missing}")
        per_task = [set(gt.loc[gt["task"] == t, "model"]) for t in self.tasks]
        common = set.intersection(*per_task)
        models = [m for m in read_manifest(self.zoo_dir())["encoders"] if m in common]
        return gt.reset_index(drop=True), models


def _benchmarks() -> dict[str, Benchmark]:
    return {
        "v1": Benchmark("v1", "the first benchmark", "zoo", "ground_truth/ground_truth.csv",
                        "verdict/v1", tuple(TASKS), rebuilt=False),
        "v2": Benchmark("v2", "the rebuilt benchmark", "zoo_v2",
                        "ground_truth_v2/ground_truth.csv", "verdict/v2", REBUILT_TASK_NAMES,
                        rebuilt=True),
    }  # fmt: skip


#: The versions of the embedded benchmark, by name: ``v1`` (the first, whose ground truth cannot
#: rank its zoo) and ``v2`` (the rebuilt one, issue 11), which the book reads by default.
BENCHMARKS: dict[str, Benchmark] = _benchmarks()


#: The benchmark the book and the command line use unless told otherwise.
DEFAULT_BENCHMARK = "v2"


def get_benchmark(name: str | None = None) -> Benchmark:
    """The :class:`Benchmark` named ``name`` (default :data:`DEFAULT_BENCHMARK`)."""
    name = DEFAULT_BENCHMARK if name in (None, "") else name
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
