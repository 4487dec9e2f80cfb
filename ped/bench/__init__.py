r"""The embedded benchmark: the paper's experiment at a size a 2-core CPU runs.

The package is split by purpose; this module only re-exports the names the chapters use.

- :mod:`ped.bench.tasks`: the downstream tasks and the unlabelled pretraining pool (32 px images
  built offline from Debian packages and scikit-learn's bundled data).
- :mod:`ped.bench.zoo`: the self-supervised encoders, their pretraining and their fine-tuning
  ground truth.
- :mod:`ped.bench.benchmarks`: the benchmark's versions (:func:`~ped.bench.benchmarks.get_benchmark`).
- :mod:`ped.bench.ground_truth`: reading and checking the ground truth, one accuracy per model
  and task (:func:`~ped.bench.ground_truth.model_accuracy`), the noise ceiling and the acceptance checks.
- :mod:`ped.bench.scoring`: a zoo's features (:func:`~ped.bench.scoring.zoo_features`), scored with every metric
  with or without PED (:func:`~ped.bench.scoring.score_zoo`, the tidy table of the Table 1 chapter) or in arms over
  image replicates (:func:`ped.bench.scoring.score_replicates`, the verdict's and the regime chapter's
  form); :func:`~ped.bench.scoring.tau_table` and :func:`~ped.bench.scoring.seed_bootstrap_tau`.
- :mod:`ped.bench.describe`: what the benchmark is made of (zoo, tasks, cost, timings).
- :mod:`ped.bench.table1`, :mod:`ped.bench.verdict`, :mod:`ped.bench.replication`,
  :mod:`ped.bench.dose` and :mod:`ped.bench.regime_axes`: the paper's Table 1 on the benchmark,
  the verdict on PED, its replication inference, its dose–response and its regimes.
"""

from __future__ import annotations

from ped.bench.benchmarks import BENCHMARKS, DEFAULT_BENCHMARK, Benchmark, get_benchmark
from ped.bench.describe import (
    compute_cost,
    effective_rank,
    method_timings,
    task_table,
    zoo_records,
    zoo_table,
)
from ped.bench.ground_truth import (
    CHECK_THRESHOLDS,
    as_rebuilt_table,
    complete_cells,
    ground_truth_checks,
    ground_truth_path,
    ground_truth_summary,
    load_ground_truth,
    model_accuracy,
    noise_ceiling,
    seeds_needed,
    selected_runs,
    split_half_ceiling,
    spread_vs_noise,
)
from ped.bench.scoring import (
    score_zoo,
    seed_bootstrap_tau,
    synthetic_task,
    tau_table,
    zoo_features,
)

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "DEFAULT_BENCHMARK",
    "get_benchmark",
    "ground_truth_path",
    "load_ground_truth",
    "selected_runs",
    "model_accuracy",
    "spread_vs_noise",
    "noise_ceiling",
    "zoo_features",
    "score_zoo",
    "tau_table",
    "seed_bootstrap_tau",
    "synthetic_task",
    "zoo_records",
    "zoo_table",
    "task_table",
    "ground_truth_summary",
    "compute_cost",
    "method_timings",
    "CHECK_THRESHOLDS",
    "complete_cells",
    "as_rebuilt_table",
    "split_half_ceiling",
    "ground_truth_checks",
    "seeds_needed",
    "effective_rank",
]
