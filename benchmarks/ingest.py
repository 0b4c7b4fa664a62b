"""How fast a large first report is ingested, and how long it blocks
everything else meanwhile (targets: 100,000 new tests in under 60 s on
SQLite and on PostgreSQL, no other write waiting much more than a second);
and how many push events the embedded worker drains per second (target 20).

    .venv/bin/python benchmarks/ingest.py [--tests N] [--backends sqlite,postgresql]
        [--postgres URL] [--redis URL] [--pushes N]

For each backend a fresh database (a temporary SQLite file; a temporary
database on the PostgreSQL server), migrated, and the real processes:
`riskrank serve` and `riskrank worker --concurrency 2`, on the embedded
SQLite broker for SQLite (as `riskrank up` runs them) and on Redis for
PostgreSQL. A JUnit XML report of `--tests` new tests, made here, is
uploaded through the API; the worker ingests it. Meanwhile a probe posts
a small write through the API every 100 ms, alternately a signed push to
another repository (one without tests: its scoring is no load) and a
five-test report on the same repository (its ingestion waits for the large
one's), and records how long each took: the longest is how long ingestion
blocked the API.

Printed per backend: the upload (parse, check, store), the ingestion (the
run's received to ingested times, as the worker recorded them) and the
whole, the probe's median, 99th percentile and longest answer. Then, on
SQLite under the same processes, `--pushes` signed pushes (one commit,
three files each, to a repository without tests) are posted by four
clients and the time until the worker has handled every one is taken:
events per second drained."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx2 as httpx
from pgtemp import temporary_database
from sqlalchemy import func, select
from stack import SECRET, Stack, junit_report, push, running

from scheduler import migrate
from scheduler.db import Database
from scheduler.models import CiEvent, EventStatus, Execution, Provider, RunStatus, SuiteRun
from scheduler.services import repos, tokens

FULL_NAME = "bench/app"
OTHER = "bench/other"
SHA = "a" * 40


@dataclass
class Probe:
    """Small writes through the API every `interval` seconds, timed."""

    base: str
    token: str
    interval: float = 0.1
    latencies: list[float] = field(default_factory=list)
    # (seconds since the probe started, what, seconds it took)
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        small = junit_report(5, offset=10_000_000)
        with httpx.Client(base_url=self.base, timeout=120) as client:
            begun = time.perf_counter()
            number = 0
            while not self._stop.is_set():
                number += 1
                started = time.perf_counter()
                if number % 2:
                    body, headers = push(OTHER, number)
                    response = client.post("/webhooks/github", content=body, headers=headers)
                else:
                    response = client.post(
                        f"/api/v1/repos/{FULL_NAME}/runs",
                        params={"commit": f"{number:040x}"},
                        content=small,
                        headers={
                            "Authorization": f"Bearer {self.token}",
                            "Content-Type": "application/xml",
                        },
                    )
                elapsed = time.perf_counter() - started
                self.latencies.append(elapsed)
                what = "push" if number % 2 else "report"
                self.timeline.append((started - begun, what, elapsed))
                if response.status_code >= 300:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                self._stop.wait(max(0.0, self.interval - elapsed))


def prepare(url: str, full_name: str = FULL_NAME) -> tuple[int, str]:
    """The repository (with its webhook secret) and a token for results."""
    migrate.upgrade(url)
    database = Database.from_url(url)
    try:
        with database.session() as session:
            repository = repos.add_repository(
                session, provider=Provider.GITHUB, full_name=full_name, webhook_secret=SECRET
            )
            token = tokens.create_token(
                session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="bench"
            ).token
            return repository.id, token
    finally:
        database.dispose()


def wait_ingested(database: Database, run_id: int, timeout: float) -> SuiteRun:
    deadline = time.monotonic() + timeout
    while True:
        with database.session() as session:
            run = session.get_one(SuiteRun, run_id)
            if run.status is not RunStatus.PENDING:
                return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} not ingested after {timeout:.0f} s")
        time.sleep(0.2)


def ingest_once(stack: Stack, url: str, token: str, tests: int) -> None:
    report = junit_report(tests)
    probe = Probe(stack.url, token)
    database = Database.from_url(url)
    try:
        probe.start()
        time.sleep(1)  # the probe's quiet baseline first
        started = time.perf_counter()
        response = httpx.post(
            f"{stack.url}/api/v1/repos/{FULL_NAME}/runs",
            params={"commit": SHA},
            content=report,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
            timeout=600,
        )
        uploaded = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
        run = wait_ingested(database, response.json()["run_id"], timeout=1800)
        whole = time.perf_counter() - started
        time.sleep(1)
        probe.stop()
        wait_idle(database)
        if run.status is not RunStatus.INGESTED:
            raise RuntimeError(f"run ended {run.status}: {run.error}")
        assert run.ingested_at is not None
        ingestion = (run.ingested_at - run.received_at).total_seconds()
        with database.session() as session:
            executions = session.scalar(
                select(func.count()).select_from(Execution).where(Execution.run_id == run.id)
            )
        if executions != tests:
            raise RuntimeError(f"{executions} executions stored for {tests} tests")
    finally:
        probe.stop()
        database.dispose()
    latencies = sorted(probe.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(
        f"  {tests:,} tests ({len(report) / 1e6:.1f} MB): upload {uploaded:.1f} s, "
        f"ingestion {ingestion:.1f} s, whole {whole:.1f} s"
    )
    print(
        f"  probe, {len(latencies)} small writes: median {statistics.median(latencies) * 1000:.0f}"
        f" ms, p99 {p99 * 1000:.0f} ms, longest {latencies[-1] * 1000:.0f} ms,"
        f" {len(probe.failures)} failed" + (f" ({probe.failures[0]})" if probe.failures else "")
    )
    slowest = sorted(probe.timeline, key=lambda entry: -entry[2])[:3]
    print(
        "  slowest: "
        + ", ".join(f"{what} at {at:.1f} s took {took:.1f} s" for at, what, took in slowest)
        + f" (the upload began at 1.0 s, the run was ingested at {1 + whole:.1f} s)"
    )


def wait_idle(database: Database, timeout: float = 1800) -> None:
    """Until no event or report waits for the worker (the probe's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.session() as session:
            events = session.scalar(
                select(func.count())
                .select_from(CiEvent)
                .where(CiEvent.status == EventStatus.PENDING)
            )
            reports = session.scalar(
                select(func.count())
                .select_from(SuiteRun)
                .where(SuiteRun.status == RunStatus.PENDING)
            )
        if not events and not reports:
            return
        time.sleep(0.5)
    raise RuntimeError("the worker did not drain the probe's writes")


def drain_rate(stack: Stack, url: str, pushes: int, clients: int = 4) -> None:
    """Pushes to a repository of no tests, posted by `clients` at once;
    events handled per second, from the first post to the last handled."""
    full_name = "bench/drain"
    repository_id, _token = prepare(url, full_name)
    bodies = [push(full_name, number) for number in range(1, pushes + 1)]
    database = Database.from_url(url)
    try:
        wait_idle(database)
        with httpx.Client(base_url=stack.url, timeout=60) as client:

            def post(item: tuple[bytes, dict[str, str]]) -> int:
                return client.post("/webhooks/github", content=item[0], headers=item[1]).status_code

            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(pool.map(post, bodies))
            posted = time.perf_counter() - started
        accepted = sum(code == 202 for code in codes)
        deadline = time.monotonic() + 1800
        while True:
            with database.session() as session:
                handled = session.scalar(
                    select(func.count())
                    .select_from(CiEvent)
                    .where(
                        CiEvent.repository_id == repository_id,
                        CiEvent.status != EventStatus.PENDING,
                    )
                )
            if (handled or 0) >= accepted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        drained = time.perf_counter() - started
    finally:
        database.dispose()
    print(
        f"  {accepted} of {pushes} pushes accepted in {posted:.1f} s ({accepted / posted:.0f}/s);"
        f" {handled} handled after {drained:.1f} s: {(handled or 0) / drained:.1f} events/s drained"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pushes", type=int, default=600, help="0: no drain measurement")
    args = parser.parse_args()

    for backend in args.backends.split(","):
        print(f"{backend}:")
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/riskrank.db"
                _repository, token = prepare(url)
                prepare(url, OTHER)
                with running(url) as stack:
                    ingest_once(stack, url, token, args.tests)
                    if args.pushes:
                        print("  embedded worker (SQLite broker, concurrency 2):")
                        drain_rate(stack, url, args.pushes)
        else:
            with temporary_database(args.postgres) as database:
                _repository, token = prepare(database.url)
                prepare(database.url, OTHER)
                with running(database.url, args.redis) as stack:
                    ingest_once(stack, database.url, token, args.tests)


if __name__ == "__main__":
    main()
