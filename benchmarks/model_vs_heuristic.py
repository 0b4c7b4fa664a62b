"""Does the learnt model order a real history's tests better than the best
heuristic? Issue 4's claim, measured on dune-total by default.

    .venv/bin/python benchmarks/model_vs_heuristic.py [FILE] [--warmup 0.7] [--until 1.0]

The history is replayed build by build in memory (`replay.builds_from_reports`,
the same point-in-time features as scoring and training). The model is
trained by `train_model`, exactly as `riskrank train` would, on the rows of
the first ``--warmup`` share of the builds only: its early stopping and its
validation use the newest builds of that warm-up part, never the evaluated
ones. Every build after the warm-up is then ordered by the model and by each
heuristic, from the same features (the statistics keep up with every build,
the model's trees stay as trained). Ties are broken as plans break them: the
more recent failure first, then the test id.

The model's choices (which features it reads, how it stops) were made with
``--warmup 0.56 --until 0.7``: trained on the first 56% of dune-total's
builds, compared on the next 14%, inside the 70% warm-up of the claim.

Printed, per ordering, over the evaluated builds with at least one failing
test: mean APFD, mean recall at 20% and 33% of the tests, and mean APFDc
(duration-aware); then the same over status changes only (failures of tests
that passed in their previous run, or that are new), where persistent
failures no longer inflate the figures. The best heuristic per column is
marked, and the model's margin over it is printed."""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from scheduler.evaluation import metrics
from scheduler.ingest.history import read_history
from scheduler.risk import replay
from scheduler.risk.features import FEATURE_NAMES, FeatureMatrix
from scheduler.risk.heuristic import HEURISTICS, NEVER
from scheduler.risk.serving import load_model
from scheduler.risk.training import train_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"

Scores = npt.NDArray[np.float64]


def recency(matrix: FeatureMatrix) -> Scores:
    """The tie-break of plans: builds since the last failure, never last."""
    since = matrix.column("builds_since_failure").astype(np.float64)
    result: Scores = np.where(np.isnan(since), NEVER, since)
    return result


COLUMNS = ("APFD", "recall@20%", "recall@33%", "APFDc")


def figures(
    builds: list[replay.BuildRows], scores: list[Scores], changes_only: bool
) -> tuple[list[float], int]:
    """Mean APFD, recall at 20% and 33%, APFDc over the builds with a failure."""
    sums = [0.0] * len(COLUMNS)
    counted = 0
    for rows, score in zip(builds, scores, strict=True):
        failed = rows.failed
        if changes_only:
            # A status change: it fails now and did not fail in its last run
            # (or never ran before).
            last = rows.matrix.column("last_failed").astype(np.float64)
            failed = failed & ~(last == 1.0)
        if not failed.any():
            continue
        order = metrics.order_by_scores(score, tie_break=recency(rows.matrix))
        ranked, durations = failed[order], rows.durations[order]
        values = (
            metrics.apfd(ranked),
            metrics.recall_at_tests(ranked, 0.2),
            metrics.recall_at_tests(ranked, 0.33),
            metrics.apfdc(ranked, durations),
        )
        for column, value in enumerate(values):
            sums[column] += value or 0.0
        counted += 1
    return [total / counted if counted else math.nan for total in sums], counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--format", default="auto", choices=("auto", "jsonl", "retecs"))
    parser.add_argument("--warmup", type=float, default=0.7, help="share of builds to train on")
    parser.add_argument(
        "--until", type=float, default=1.0, help="evaluate the builds up to this share"
    )
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()

    started = time.perf_counter()
    history = replay.builds_from_reports(read_history(arguments.file, arguments.format))
    replayed = list(replay.replay(history))
    cut = round(arguments.warmup * len(history))
    end = round(arguments.until * len(history))
    warmup = [rows for rows in replayed if rows.index < cut]
    evaluated = [rows for rows in replayed if cut <= rows.index < end]
    print(
        f"{arguments.file.name}: {len(history)} builds replayed in "
        f"{time.perf_counter() - started:.1f} s; training on builds 1-{cut}, "
        f"evaluating builds {cut + 1}-{end}"
    )

    started = time.perf_counter()
    trained = train_model(
        np.vstack([rows.matrix.values for rows in warmup]),
        np.concatenate([rows.failed for rows in warmup]),
        np.concatenate([np.full(len(rows.tests), rows.index) for rows in warmup]),
        FEATURE_NAMES,
        seed=arguments.seed,
    )
    print(
        f"model: {trained.rows:,} rows, {trained.failures:,} failing, "
        f"{trained.best_iteration} rounds, trained in {time.perf_counter() - started:.1f} s; "
        f"reads {len(trained.feature_names)} of {len(FEATURE_NAMES)} features"
    )
    model = load_model(trained.model_text)
    orderings: dict[str, list[Scores]] = {
        "riskrank model": [model.predict(model.inputs(rows.matrix)) for rows in evaluated]
    }
    for name, heuristic in HEURISTICS.items():
        orderings[name] = [heuristic(rows.matrix) for rows in evaluated]

    for changes_only in (False, True):
        results = {
            name: figures(evaluated, scores, changes_only) for name, scores in orderings.items()
        }
        builds = next(iter(results.values()))[1]
        title = "status changes only" if changes_only else "all failures"
        print(f"\n{title}: means over {builds} evaluated builds with a failure")
        print(f"{'ordering':<24}" + "".join(f"{column:>12}" for column in COLUMNS))
        best = [
            max(values[column] for name, (values, _) in results.items() if name in HEURISTICS)
            for column in range(len(COLUMNS))
        ]
        for name, (values, _) in results.items():
            cells = "".join(
                f"{value:>11.4f}{'*' if name in HEURISTICS and value == best[c] else ' '}"
                for c, value in enumerate(values)
            )
            print(f"{name:<24}{cells}")
        mine = results["riskrank model"][0]
        margin = "".join(f"{mine[c] - best[c]:>+11.4f} " for c in range(len(COLUMNS)))
        print(f"{'model - best heuristic':<24}{margin}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(* the best heuristic per column; peak RSS {peak:.0f} MiB)")


if __name__ == "__main__":
    main()
