"""Smoke test of an installed ``ped`` wheel, run by ``make wheel-check`` in a clean environment
that has the core dependencies only (no torch, no dask, no book tools).

It checks that the installed package, not a checkout, is imported; runs PED and every metric of
``ped.metrics.METRICS`` on arrays; runs ``ped score`` (with PED) on a tiny features folder through
the installed console script; and checks that a command needing an optional group (``ped score
--workers``, which needs ``ped[sweep]``) says so in one line with exit status 2.  Exits non-zero
with a message on the first failure.
"""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"wheel smoke test failed: {message}")


def main() -> None:
    import ped
    from ped.metrics import METRICS

    where = Path(ped.__file__).resolve()
    check("site-packages" in where.parts, f"ped was imported from {where}, not the installed wheel")
    for optional in ("torch", "dask", "distributed", "matplotlib"):
        check(optional not in sys.modules, f"import ped loaded {optional}")

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    features = rng.normal(size=(labels.size, 12)) + 2.0 * np.eye(4, 12)[labels]
    result = ped.potential_energy_descent(features, labels)
    check(result.features.shape == features.shape, "PED changed the features' shape")
    check(bool(np.isfinite(result.features).all()), "PED returned non-finite features")
    for name, metric in sorted(METRICS.items()):
        value = float(metric(features, labels))
        check(math.isfinite(value), f"{name} returned {value}")
    print(f"PED and {len(METRICS)} metrics on arrays: ok ({where.parent})")

    exe = shutil.which("ped")
    check(exe is not None, "the ped console script is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "features"
        folder.mkdir()
        for model, shift in (("alpha", 2.0), ("beta", 0.5)):
            x = rng.normal(size=(labels.size, 12)) + shift * np.eye(4, 12)[labels]
            np.save(folder / f"{model}_tiny_feature.npy", x.astype(np.float32))
            np.save(folder / f"{model}_tiny_label.npy", labels)
        out = Path(tmp) / "scores.csv"
        run = subprocess.run([exe, "score", "--features", str(folder), "--metric", "logme",
                              "--metric", "knn", "--ped", "--out", str(out), "--no-progress"],
                             capture_output=True, text=True)  # fmt: skip
        check(run.returncode == 0, f"ped score failed: {run.stderr.strip()}")
        with out.open() as f:
            rows = list(csv.DictReader(f))
        check(len(rows) == 2 * 2 * 2, f"ped score wrote {len(rows)} rows, expected 8")
        check(all(math.isfinite(float(r["score"])) for r in rows), "ped score wrote a bad score")
        print(f"ped score on a tiny folder: ok ({len(rows)} rows)")

        run = subprocess.run([exe, "score", "--features", str(folder), "--metric", "logme",
                              "--out", str(Path(tmp) / "dask.csv"), "--workers", "1"],
                             capture_output=True, text=True)  # fmt: skip
        lines = run.stderr.strip().splitlines()
        check(run.returncode == 2 and len(lines) == 1 and "ped[sweep]" in lines[0],
              f"ped score --workers without dask: exit {run.returncode}, stderr {run.stderr!r}")
        check(not (Path(tmp) / "dask.csv").exists(), "a refused command left its output")
        print("ped score --workers without ped[sweep]: one-line error, exit 2: ok")


if __name__ == "__main__":
    main()
