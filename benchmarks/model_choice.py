"""How long a repository's model choice takes: every candidate of
scheduler.risk.choice trained on the older builds and scored on the newer
ones, then the chosen one trained on every build as the training service
does (early stopping, the comparison slice, the refit), on a synthetic
history of ROWS rows in BUILDS builds with riskrank's feature vector.

    .venv/bin/python benchmarks/model_choice.py [ROWS [BUILDS]]

Target: 1,000,000 rows within 5 minutes on 2 cores. Prints the tie's
choice and each candidate's time and APFD, the total and the peak RSS."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import numpy.typing as npt

from scheduler.risk.features import FEATURE_NAMES
from scheduler.risk.training import train_model
from scheduler.services.training import COMPARISON_SHARE, choose_scorer, choose_tie

TARGET_SECONDS = 300.0


def synthetic(
    rows: int, builds: int, seed: int = 7
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Rows of equal-sized builds in time order, one column per feature name:
    a failure rate, recency and a changed own file that matter, about 1% of
    rows failing, noise elsewhere; NaN where riskrank leaves a value unknown."""
    rng = np.random.default_rng(seed)
    build = np.repeat(np.arange(builds, dtype=np.int64), -(-rows // builds))[:rows]
    column = {name: index for index, name in enumerate(FEATURE_NAMES)}
    matrix = rng.normal(size=(rows, len(FEATURE_NAMES))).astype(np.float32)
    new = rng.random(rows) < 0.01
    rate = rng.beta(0.3, 30.0, size=rows)
    since = np.where(rng.random(rows) < rate * 20, rng.geometric(0.05, size=rows), np.nan)
    own = rng.random(rows) < 0.02
    known = ~new
    matrix[:, column["fail_rate_all"]] = np.where(known, rate, np.nan)
    matrix[:, column["fail_rate_5"]] = np.where(
        known, np.clip(rate * 5 * rng.random(rows), 0, 1), np.nan
    )
    matrix[:, column["builds_since_failure"]] = np.where(known, since, np.nan)
    matrix[:, column["last_failed"]] = np.where(known, since == 0, np.nan)
    matrix[:, column["is_new"]] = new
    recent = 0.5 / (1.5 + since - 0.5 * rate)
    matrix[:, column["new_or_recent"]] = np.where(new, 1.0, np.where(np.isnan(since), 0.0, recent))
    matrix[:, column["own_file_changed"]] = own
    matrix[:, column["changed_lines"]] = np.nan  # as a provider that does not say
    logit = -5.3 + 30.0 * rate + 2.5 * own + 1.5 * np.nan_to_num(since == 0) + 1.0 * new
    failed = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return matrix, failed, build


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    builds = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    matrix, failed, build = synthetic(rows, builds)
    print(
        f"{rows:,} rows in {builds:,} builds, {failed.mean():.2%} failing; "
        f"peak {peak_mib():.0f} MiB"
    )

    started = time.perf_counter()
    # How plans break ties, then the training service's own choice (it
    # never sees the held-out builds).
    tie = choose_tie(matrix, failed, build)
    tied = time.perf_counter() - started
    print(f"  ties: {'younger first' if tie.younger_first else 'first seen first'} ({tied:.1f} s)")
    picked = choose_scorer(matrix, failed, build, younger_first=tie.younger_first)
    chose = time.perf_counter() - started
    for trial in picked.trials:
        apfd = "-" if trial.mean_apfd is None else f"{trial.mean_apfd:.4f}"
        print(f"  {trial.name:<34} APFD {apfd}  {trial.seconds:6.1f} s  {trial.error or ''}")
    for name in picked.skipped:
        print(f"  {name:<34} not tried: the budget was spent")
    assert picked.chosen is not None
    trained = train_model(
        matrix,
        failed,
        build,
        FEATURE_NAMES,
        comparison_share=COMPARISON_SHARE,
        params=picked.chosen.training_params(),
        exclude=picked.chosen.excluded(FEATURE_NAMES),
        ranking=picked.chosen.ranking,
    )
    total = time.perf_counter() - started
    print(
        f"chosen: {picked.chosen.name} ({chose:.1f} s); trained on every build: "
        f"{trained.best_iteration} rounds ({total - chose:.1f} s)"
    )
    verdict = "within" if total <= TARGET_SECONDS else "OVER"
    print(
        f"whole model choice: {total:.1f} s ({verdict} the {TARGET_SECONDS:.0f} s target); "
        f"peak RSS {peak_mib():.0f} MiB"
    )


if __name__ == "__main__":
    main()
