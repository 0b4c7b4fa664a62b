"""How fast the risk model trains and predicts: synthetic CI history of ROWS
rows (one per build and test) in BUILDS builds, 25 features, about 1% of rows
failing, a learnable signal in a few features and noise in the rest.

    .venv/bin/python benchmarks/training.py [ROWS [BUILDS]]

Prints the wall time of `train_model` (time split, early stopping, refit on
every row), the peak RSS of the process before and after training, the model
it found, and the median wall time of 30 predictions (and contributions) of
10,000 rows."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FeatureMatrix
from scheduler.risk.model import THREADS
from scheduler.risk.serving import load_model
from scheduler.risk.training import train_model

FEATURES = 25
PREDICT_ROWS = 10_000
REPEATS = 30


def synthetic(
    rows: int, builds: int, seed: int = 7
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int64], list[str]]:
    """Rows of equal-sized builds in time order, float32 as the features module
    builds them; NaN where a value is unknown (new tests)."""
    rng = np.random.default_rng(seed)
    build = np.repeat(np.arange(builds, dtype=np.int64), -(-rows // builds))[:rows]
    matrix = np.empty((rows, FEATURES), dtype=np.float32)
    rate = rng.beta(0.3, 30.0, size=rows)
    new = rng.random(rows) < 0.01
    own_changed = rng.random(rows) < 0.02
    last_failed = rng.random(rows) < rate * 3
    cofail = rng.beta(0.2, 8.0, size=rows)
    change = rng.lognormal(1.0, 1.0, size=builds)[build]  # a build's changed files
    matrix[:, 0] = np.where(new, np.nan, rate)
    matrix[:, 1] = np.where(new, np.nan, np.clip(rate + rng.normal(0, 0.02, rows), 0, 1))
    matrix[:, 2] = np.where(new, np.nan, last_failed)
    matrix[:, 3] = own_changed
    matrix[:, 4] = cofail
    matrix[:, 5] = change
    matrix[:, 6] = new
    matrix[:, 7] = rng.exponential(3.0, size=rows)  # duration
    for column in range(8, FEATURES):
        matrix[:, column] = rng.normal(size=rows)
    logit = (
        -6.6
        + 35.0 * rate
        + 2.5 * own_changed
        + 1.2 * last_failed
        + 4.0 * cofail
        + 0.25 * np.log(change)
        + 1.5 * new
    )
    failed = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    names = [
        "fail_rate",
        "fail_rate_recent",
        "last_failed",
        "own_file_changed",
        "cofail_max",
        "changed_files",
        "is_new",
        "duration_mean",
        *(f"noise_{column}" for column in range(8, FEATURES)),
    ]
    return matrix, failed, build, names


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    builds = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    # Figures depend on what else runs: OpenMP threads wait for a busy core.
    print(f"{load()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    start = time.perf_counter()
    features, failed, build, names = synthetic(rows, builds)
    print(
        f"data: {rows:,} rows x {FEATURES} features, {builds:,} builds, "
        f"{failed.mean():.2%} failing, made in {time.perf_counter() - start:.1f} s; "
        f"peak RSS {peak_rss_mib():,.0f} MiB"
    )

    start = time.perf_counter()
    trained = train_model(features, failed, build, names)
    elapsed = time.perf_counter() - start
    found = trained.metrics
    print(
        f"train_model ({THREADS} threads): {elapsed:.1f} s wall, "
        f"{rows / elapsed:,.0f} rows/s; peak RSS {peak_rss_mib():,.0f} MiB"
    )
    print(
        f"  {trained.best_iteration} rounds, refit on every row; validation builds "
        f"{trained.validation.first_build}-{trained.validation.last_build} "
        f"({found.failing_builds} failing): AUC {found.auc:.3f}, log loss {found.log_loss:.4f}, "
        f"mean APFD {found.mean_apfd:.3f}, recall at 20% {found.mean_recall_at_20:.3f}, "
        f"at 33% {found.mean_recall_at_33:.3f}; model text {len(trained.model_text) >> 10:,} KiB"
    )

    loaded = load_model(trained.model_text)
    # Scoring hands the model every feature; it reads its own (not the duration).
    batch = loaded.inputs(
        FeatureMatrix(
            tests=("",) * PREDICT_ROWS, values=features[:PREDICT_ROWS], names=tuple(names)
        )
    )
    for label, method in (("predict", loaded.predict), ("contributions", loaded.contributions)):
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            method(batch)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(
            f"{label} {PREDICT_ROWS:,} rows: median {median * 1000:.1f} ms of {REPEATS} "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
        )
    print(load())


if __name__ == "__main__":
    main()
