"""How fast the feature matrix builds: a synthetic repository of N tests
(Java modules with and without files, pytest node ids and xunit2 names,
Jest specs), a commit of 20 changed paths whose hunks name 28 symbols, and
the file-test links a real history leaves (every test that ran is linked to
each path changed before).

    .venv/bin/python benchmarks/features.py [N]

Prints the median wall and CPU times of 30 builds with a cached PathIndex (the
scoring path), of builds without one, of building the index alone and of
extending it by 100 new tests; then the peak memory (tracemalloc) of the
builds and the index, measured in separate runs from the timings (tracing
slows everything down)."""

from __future__ import annotations

import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from scheduler.risk.columns import ChangeColumns, HistoryColumns, LinkColumns
from scheduler.risk.features import FEATURE_NAMES, build_features
from scheduler.risk.paths import PathIndex

AT = datetime(2026, 11, 29, 12, tzinfo=UTC)
LINKED = 15  # changed paths that changed before (the rest are new files)
WORDS = [
    "account",
    "address",
    "admin",
    "alert",
    "api",
    "archive",
    "audit",
    "auth",
    "batch",
    "billing",
    "buffer",
    "cache",
    "catalog",
    "channel",
    "checkout",
    "client",
    "cluster",
    "codec",
    "config",
    "connection",
    "consumer",
    "context",
    "controller",
    "converter",
    "cursor",
    "dispatch",
    "document",
    "encoder",
    "engine",
    "event",
    "export",
    "filter",
    "format",
    "gateway",
    "graph",
    "handler",
    "http",
    "index",
    "inventory",
    "invoice",
    "job",
    "ledger",
    "loader",
    "lock",
    "mapper",
    "message",
    "metric",
    "migration",
    "model",
    "monitor",
    "node",
    "order",
    "parser",
    "payment",
    "pipeline",
    "policy",
    "pool",
    "producer",
    "profile",
    "query",
    "queue",
    "reader",
    "record",
    "registry",
    "report",
    "request",
    "resolver",
    "router",
    "schema",
    "search",
    "session",
    "shard",
    "snapshot",
    "storage",
    "stream",
    "tenant",
    "token",
    "transform",
    "upload",
    "user",
    "validator",
    "view",
    "worker",
    "writer",
]
MODULES = ("core", "api", "web", "storage", "billing", "search", "cli", "common")


def generator(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 (synthetic data, not secrets)


def camel(rng: random.Random, words: int) -> str:
    return "".join(rng.choice(WORDS).capitalize() for _ in range(words))


def snake(rng: random.Random, words: int) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(words))


def java_files(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """(module path, dotted package) of test classes."""
    files = []
    for _ in range(count):
        module = rng.choice(MODULES)
        package = ["org", "acme", module, *(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))]
        cls = camel(rng, rng.randint(1, 3))
        files.append((f"{module}/src/test/java/{'/'.join(package)}/{cls}Test.java", cls))
    return files


def repository(n: int, seed: int = 7) -> tuple[list[str], list[str | None], list[str]]:
    """Test names and files, and the repository's source paths."""
    rng = generator(seed)
    names: list[str] = []
    files: list[str | None] = []
    sources: list[str] = []
    for path, cls in java_files(rng, n * 6 // 100):
        package = path.split("/src/test/java/")[1].rsplit("/", 1)[0].replace("/", ".")
        sources.append(path.replace("/src/test/", "/src/main/").replace("Test.java", ".java"))
        with_file = rng.random() < 0.7  # Surefire's XML has no file attribute
        for _ in range(rng.randint(5, 15)):
            method = f"test{camel(rng, rng.randint(1, 3))}"
            if with_file:
                names.append(f"{path}::{package}.{cls}Test::{method}")
                files.append(path)
            else:
                names.append(f"{package}.{cls}Test::{method}")
                files.append(None)
    while len(names) < n * 9 // 10:
        package = snake(rng, 1)
        path = f"tests/{rng.choice(('unit', 'integration'))}/{package}/test_{snake(rng, 2)}.py"
        sources.append(f"src/acme/{package}/{path.rsplit('test_', 1)[1]}")
        cls = f"Test{camel(rng, 2)}"
        for _ in range(rng.randint(3, 12)):
            param = f"[{rng.randint(0, 9)}-{rng.choice(WORDS)}]" if rng.random() < 0.3 else ""
            names.append(f"{path}::{cls}::test_{snake(rng, 2)}{param}")
            files.append(path if rng.random() < 0.5 else None)
    while len(names) < n:
        component = camel(rng, 2)
        path = f"web/src/components/{component}/{component}.spec.ts"
        sources.append(path.replace(".spec.ts", ".tsx"))
        for _ in range(rng.randint(2, 8)):
            names.append(f"{path}::{component} {' '.join(rng.sample(WORDS, 3))}")
            files.append(path)
    # Random method names can repeat within a class: keep each id once.
    unique = dict(zip(names, files, strict=True))
    while len(unique) < n:
        unique[f"tests/unit/test_extra.py::test_{len(unique)}"] = "tests/unit/test_extra.py"
    return list(unique)[:n], list(unique.values())[:n], sources


def history(names: list[str], files: list[str | None], seed: int = 11) -> HistoryColumns:
    rng = generator(seed)
    runs, failures, recent, since, flips, flaky, duration, first = ([] for _ in range(8))
    for _ in names:
        count = 0 if rng.random() < 0.02 else rng.randint(1, 400)
        letters = "".join(
            rng.choice("FE") if rng.random() < 0.03 else "P" for _ in range(min(count, 64))
        )
        failed = letters.count("F") + letters.count("E")
        runs.append(count)
        failures.append(failed + (rng.randint(0, 5) if count > 64 else 0))
        recent.append(letters)
        since.append(letters.find("F") if "F" in letters else None)
        flips.append(2 * failed)
        flaky.append(rng.randint(0, 2) if failed else 0)
        duration.append(rng.expovariate(2.0) if count else None)
        first.append(AT - timedelta(days=rng.uniform(0, 900)))
    return HistoryColumns.from_sequences(
        names=names,
        files=files,
        runs=runs,
        failures=failures,
        recent=recent,
        builds_since_failure=since,
        flips=flips,
        flaky_runs=flaky,
        duration_mean=duration,
        first_seen=first,
    )


def change_and_links(
    names: list[str], files: list[str | None], sources: list[str], seed: int = 13
) -> tuple[ChangeColumns, LinkColumns]:
    rng = generator(seed)
    test_files = sorted({file for file in files if file})
    paths = rng.sample(sorted(set(sources)), 14) + rng.sample(test_files, 3)
    paths += ["pom.xml", "docs/architecture.md", ".github/workflows/ci.yml"]
    rows = np.random.default_rng(seed)
    n = len(names)
    tests, positions, ran, failed = [], [], [], []
    for position in range(LINKED):
        linked = np.flatnonzero(rows.random(n) < 0.95)  # the tests that ran
        together = rows.integers(1, 60, linked.size)
        tests.append(linked)
        positions.append(np.full(linked.size, position))
        ran.append(together)
        failed.append(rows.binomial(together, 0.02))
    links = LinkColumns.from_sequences(
        test_index=np.concatenate(tests),
        path_index=np.concatenate(positions),
        changed_together=np.concatenate(ran),
        failed_together=np.concatenate(failed),
    )
    # The classes of the changed sources and a method of each, as their
    # hunks name them: 28 changed symbols.
    classes = [path.rpartition("/")[2].partition(".")[0] for path in paths[:14]]
    symbols = [*classes, *(f"{name}.apply" for name in classes)]
    return ChangeColumns.of(paths, changed_lines=640, symbols=symbols), links


def median_ms(call: Callable[[], Any], times: int) -> str:
    """The median wall and CPU times: on a busy machine the CPU time is the
    steadier figure."""
    wall, cpu = [], []
    for _ in range(times):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return (
        f"{statistics.median(wall) * 1000:6.1f} ms wall, "
        f"{statistics.median(cpu) * 1000:6.1f} ms CPU (median of {times})"
    )


def peak_mib(call: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    names, files, sources = repository(n)
    tests = history(names, files)
    change, links = change_and_links(names, files, sources)
    index = PathIndex(names, files)
    columns = dict(
        names=names,
        files=files,
        runs=[int(v) for v in tests.runs],
        failures=[int(v) for v in tests.failures],
        recent=list(tests.recent),
        builds_since_failure=[None if v != v else int(v) for v in tests.builds_since_failure],
        flips=[int(v) for v in tests.flips],
        flaky_runs=[int(v) for v in tests.flaky_runs],
        duration_mean=[None if v != v else float(v) for v in tests.duration_mean],
        first_seen=[AT - timedelta(seconds=AT.timestamp() - v) for v in tests.first_seen],
    )

    def cached() -> object:
        return build_features(tests, change, links, at=AT, index=index)

    def cold() -> object:
        return build_features(tests, change, links, at=AT)

    def indexing() -> object:
        return PathIndex(names, files)

    older = PathIndex(names[:-100], files[:-100])

    def covering() -> object:
        return older.covering(names, files)

    def converting() -> object:
        return HistoryColumns.from_sequences(**columns)  # type: ignore[arg-type]

    matrix = cached()
    print(f"{len(change.paths)} changed paths, {len(links):,} links, index {index.sizes}")
    assert matrix.values.shape == (n, len(FEATURE_NAMES))  # type: ignore[attr-defined]
    print(f"build_features, cached index:   {median_ms(cached, 30)}")
    print(f"build_features, no index:       {median_ms(cold, 10)}")
    print(f"PathIndex alone:                {median_ms(indexing, 10)}")
    print(f"PathIndex.covering 100 new:     {median_ms(covering, 10)}")
    print(f"HistoryColumns.from_sequences:  {median_ms(converting, 10)}")
    print(f"peak memory, cached index:      {peak_mib(cached):7.1f} MiB")
    print(f"peak memory, no index:          {peak_mib(cold):7.1f} MiB")
    print(f"peak memory, PathIndex alone:   {peak_mib(indexing):7.1f} MiB")


if __name__ == "__main__":
    main()
