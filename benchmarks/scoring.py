"""How fast a commit is scored: a repository of 10,000 tests with 1,000,000
historical executions on PostgreSQL (targets: feature matrix plus prediction
under 100 ms; with the database reads and the plan's write under 300 ms).

    .venv/bin/python benchmarks/scoring.py [--postgres URL] [--tests N] [--executions N]

A temporary database is made on the server, migrated and filled with
synthetic but realistic rows (tests, their statistics, executions, file-test
links for the changed files and the symbols their hunks name, an active
model), then the scoring steps are timed separately, median of repeated runs,
and the peak RSS is printed."""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from pgtemp import copy_rows, temporary_database

from scheduler.db import Database
from scheduler.models import ChangedFile, FileStatus, ModelStatus, Provider, RiskModel
from scheduler.risk.features import FEATURE_NAMES, build_features
from scheduler.risk.training import train_model
from scheduler.services import feature_inputs, repos, runs, scoring
from scheduler.services.ingestion import STATS_COLUMNS

RNG = np.random.default_rng(11)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def fill(url: str, dsn: str, n_tests: int, n_executions: int) -> tuple[int, int]:
    database = Database.from_url(url)
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="bench/app")
        repository_id = repository.id
        commit_id = runs.ensure_commit(session, repository=repository, sha="e" * 40)
        old_commit = runs.ensure_commit(session, repository=repository, sha="d" * 40)
    modules = [f"src/pkg{m % 40}/module{m}" for m in range(n_tests // 10)]
    tests = [
        (
            repository_id,
            f"tests/{modules[i // 10].removeprefix('src/')}_test.py::test_case_{i}",
            f"tests/{modules[i // 10].removeprefix('src/')}_test.py",
            NOW - timedelta(days=int(RNG.integers(1, 900))),
            NOW,
            True,
        )
        for i in range(n_tests)
    ]
    copy_rows(
        dsn,
        "known_tests",
        ["repository_id", "name", "file", "first_seen_at", "last_seen_at", "is_active"],
        tests,
    )
    with psycopg.connect(dsn) as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM known_tests ORDER BY id")]
    failing = RNG.random(n_tests) < 0.05
    stats = []
    for test_id, fails in zip(ids, failing, strict=True):
        runs_ = n_executions // n_tests
        recent = "".join(
            "F" if fails and RNG.random() < 0.3 else "P" for _ in range(min(runs_, 64))
        )
        failures = recent.count("F") + (int(RNG.integers(0, 5)) if fails else 0)
        stats.append(
            (
                test_id,
                runs_,
                failures,
                "failed" if recent[0] == "F" else "passed",
                recent.find("F") if "F" in recent else None,
                recent,
                recent.count("FP") * 2,
                0,
                float(RNG.gamma(2.0, 0.5)),
                runs_,
                f"{old_commit}/x",
                NOW,
                None,
                NOW,
            )
        )
    copy_rows(
        dsn,
        "test_stats",
        ["test_id", *STATS_COLUMNS, "updated_at"],
        stats,
    )
    # The executions behind the statistics (scoring does not read them, but a
    # real database has them, with their indexes and their size).
    copy_rows(
        dsn,
        "test_runs",
        ["repository_id", "commit_id", "source", "status", "received_at", "attempts"],
        [(repository_id, old_commit, "import", "ingested", NOW, 1)] * 100,
    )
    with psycopg.connect(dsn) as connection:
        run_ids = [row[0] for row in connection.execute("SELECT id FROM test_runs")]
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY executions (run_id, test_id, outcome, duration, attempt, flaky) FROM STDIN"
            ) as copy,
        ):
            buffer = io.StringIO()
            per_run = n_executions // len(run_ids)
            for run_index, run_id in enumerate(run_ids):
                for k in range(per_run):
                    test_id = ids[(run_index * per_run + k) % n_tests]
                    attempt = run_index * per_run // n_tests + 1
                    buffer.write(f"{run_id}\t{test_id}\tpassed\t0.5\t{attempt}\tf\n")
                copy.write(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
    changed = [f"{module}.py" for module in RNG.choice(modules, 20, replace=False)]
    # Three hunks per changed file, each naming a symbol: one a test is
    # named after (test_case_N), two that none is (60 changed symbols). A
    # generator of their own, so the rest of the data is as before.
    named = np.random.default_rng(12).choice(n_tests, len(changed), replace=False)
    with database.session() as session:
        for path, case in zip(changed, named.tolist(), strict=True):
            symbols = [f"case_{case}", f"helper_{case}", f"Reader{case}.read_all"]
            hunks = [
                {"old_start": 10 * k, "old_lines": 1, "new_start": 10 * k, "new_lines": 2,
                 "symbol": symbol}
                for k, symbol in enumerate(symbols, start=1)
            ]  # fmt: skip
            session.add(
                ChangedFile(commit_id=commit_id, path=path, status=FileStatus.MODIFIED, hunks=hunks)
            )
    links = [
        (repository_id, path, test_id, int(RNG.integers(1, 30)), int(RNG.integers(0, 3)), NOW)
        for path in changed
        for test_id in RNG.choice(ids, min(2500, n_tests // 4), replace=False).tolist()
    ]
    copy_rows(
        dsn,
        "file_test_links",
        ["repository_id", "path", "test_id", "changed_together", "failed_together", "updated_at"],
        links,
    )
    features = RNG.random((50_000, len(FEATURE_NAMES))).astype(np.float32)
    labels = RNG.random(50_000) < features[:, FEATURE_NAMES.index("last_failed")] * 0.1
    trained = train_model(features, labels, np.repeat(np.arange(500), 100), FEATURE_NAMES)
    with database.session() as session:
        session.add(
            RiskModel(
                repository_id=repository_id,
                version=1,
                status=ModelStatus.ACTIVE,
                model_text=trained.model_text,
                feature_names=list(FEATURE_NAMES),
                params={},
            )
        )
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    database.dispose()
    return repository_id, commit_id


def median_ms(step: Callable[[], object], runs_: int) -> float:
    times = []
    for _ in range(runs_):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", action="store_true", help="Profile one whole scoring.")
    args = parser.parse_args()

    with temporary_database(args.postgres) as temp:
        url, dsn = temp.url, temp.dsn
        started = time.perf_counter()
        repository_id, commit_id = fill(url, dsn, args.tests, args.executions)
        print(
            f"filled {args.tests:,} tests, {args.executions:,} executions in "
            f"{time.perf_counter() - started:.0f} s"
        )
        database = Database.from_url(url)
        cache = scoring.ModelCache()
        with database.session() as session:
            test_ids, history = feature_inputs.load_history(session, repository_id=repository_id)
            change = feature_inputs.load_change(session, commit_id=commit_id)
            links = feature_inputs.load_links(
                session, repository_id=repository_id, test_ids=test_ids, change=change
            )
            _, model = cache.model(session, repository_id)
            assert model is not None
            index = cache.index(repository_id, history.names, history.files)

            def read() -> None:
                ids, _ = feature_inputs.load_history(session, repository_id=repository_id)
                feature_inputs.load_links(
                    session,
                    repository_id=repository_id,
                    test_ids=ids,
                    change=feature_inputs.load_change(session, commit_id=commit_id),
                )

            # The columns the model reads (it may leave some features out).
            columns = [FEATURE_NAMES.index(name) for name in model.feature_names]

            def matrix_and_predict() -> None:
                matrix = build_features(history, change, links, at=NOW, index=index)
                model.predict(matrix.values[:, columns])

            matrix = build_features(history, change, links, at=NOW, index=index)
            print(f"links for the change: {len(links):,}")
            print(f"changed symbols: {len(change.symbols):,}")
            print(f"database reads:              {median_ms(read, args.runs):7.1f} ms")
            print(
                "feature matrix + prediction: "
                f"{median_ms(matrix_and_predict, args.runs):7.1f} ms   (target < 100 ms)"
            )
            explain_ms = median_ms(
                lambda: model.top_contributions(matrix.values[:200, columns]), args.runs
            )
            print(f"contributions, riskiest 200: {explain_ms:7.1f} ms")

        def whole() -> None:
            with database.session() as session:
                commit = session.get_one(runs.Commit, commit_id)
                scores = scoring.score_tests(
                    session,
                    repository_id=repository_id,
                    commit_id=commit_id,
                    at=NOW,
                    cache=cache,
                )
                scoring.store_plan(session, commit=commit, scores=scores, stats_version=0)

        with database.session() as session:
            scores = scoring.score_tests(
                session, repository_id=repository_id, commit_id=commit_id, at=NOW, cache=cache
            )

        def write() -> None:
            with database.session() as session:
                commit = session.get_one(runs.Commit, commit_id)
                scoring.store_plan(session, commit=commit, scores=scores, stats_version=0)

        print(f"plan write, {len(scores.test_ids):,} items: {median_ms(write, args.runs):7.1f} ms")
        print(
            "whole scoring, with the plan's write: "
            f"{median_ms(whole, args.runs):7.1f} ms   (target < 300 ms)"
        )
        tracemalloc.start()
        whole()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"peak memory of one scoring (tracemalloc): {traced:.0f} MiB")
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(whole)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the process, filling included: {peak:.0f} MiB")
        database.dispose()


if __name__ == "__main__":
    main()
