"""Load on loopback against the real processes on PostgreSQL and Redis:
signed GitHub webhooks per second (target: 300 per second accepted by four
API processes, p99 under 150 ms, every one handled), plans per second for a
10,000-test repository, and results ingested per second.

    .venv/bin/python benchmarks/load.py [--clients N] [--webhooks N] [--warmup N]
        [--api-workers 1,4] [--plans N] [--reports N] [--postgres URL] [--redis URL]

Each part gets a temporary database on the PostgreSQL server and its own
`riskrank serve --workers K` and `riskrank worker --concurrency 2`. Every
part is bounded by a count, not open-ended:

- webhooks: `--webhooks` signed pushes (one commit, three files each) sent
  by `--clients` concurrent clients, once per API process count in
  `--api-workers`; accepted per second with the median and 99th percentile
  of the answer's time and the API's CPU time per request, then the wait
  until the worker has handled every accepted event (each is counted in
  the database: none may stay pending or fail). The figures start once
  every process has settled (a 4-process API answers /healthz while three
  of them are still importing) and `--warmup` webhooks more went first
  (each process's first ones open its connections); those are handled and
  counted with the others;
- plans: `--plans` plan requests (fraction 0.3, shards 1/4 to 4/4, over 40
  commits scored beforehand) by `--clients` clients, one API process;
- results: `--reports` JUnit reports of 100 tests each (new commits of the
  plans' repository, its tests) posted at once, then the wait until every
  one is ingested: results ingested per second.

The clients run in this process (asyncio, one connection each) on the same
machine as the server processes: on a 2-core machine they take a share of
the CPU the server would have. The webhooks' clients are therefore as cheap
as can be (each request's bytes made beforehand, written on a kept-alive
socket, the answer's status line and body read back; about a tenth of the
CPU an httpx client spends), and the CPU time the API processes and the
clients spent per request is printed beside the rate: on a shared machine
it says more than the rate does."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx2 as httpx
from ingest import prepare
from pgtemp import temporary_database
from plan_api import fill, scored_commits
from sqlalchemy import func, select
from stack import junit_report, push, running

from scheduler.db import Database
from scheduler.models import CiEvent, EventStatus, Repository, RunStatus, SuiteRun
from scheduler.services import tokens

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def hammer(
    base: str, send: Send, count: int, clients: int
) -> tuple[float, list[float], dict[int, int]]:
    """`count` requests by `clients` concurrent clients: seconds, each
    request's seconds, answers by status code."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    next_number = iter(range(count))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for number in next_number:
            started = time.perf_counter()
            try:
                response = await send(client, number)
                code = response.status_code
            except httpx.TransportError:
                code = 0
            latencies.append(time.perf_counter() - started)
            codes[code] = codes.get(code, 0) + 1

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        return time.perf_counter() - started, latencies, codes


class RawClient:
    """HTTP/1.1 on one kept-alive connection, for requests made beforehand:
    the least a client can cost, so that the server gets the CPU."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base: str) -> RawClient:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> int:
        """Write a whole request; its answer's status code (its body read and dropped)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.writer.close()


def raw_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def hammer_raw(
    base: str, requests: list[bytes], clients: int
) -> tuple[float, list[float], dict[int, int]]:
    """`hammer` for requests made beforehand, on RawClients."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    pending = iter(requests)

    async def client_loop(client: RawClient) -> None:
        for request in pending:
            started = time.perf_counter()
            try:
                code = await client.send(request)
            except (OSError, asyncio.IncompleteReadError):
                code = 0
                client.close()
                client = await RawClient.open(base)
            latencies.append(time.perf_counter() - started)
            codes[code] = codes.get(code, 0) + 1
        client.close()

    connections = [await RawClient.open(base) for _ in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(client_loop(client) for client in connections))
    return time.perf_counter() - started, latencies, codes


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process and its living children."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            pids += [int(child) for child in children.read().split()]
    except OSError:
        pass
    for one in pids:
        try:
            with open(f"/proc/{one}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def settle(pids: list[int], *, most: float = 0.05, quiet: int = 3, timeout: float = 120) -> float:
    """Wait until the processes (and their children) spent under `most` of
    a core in each of `quiet` seconds in a row: `/healthz` answers as soon
    as one API process is up, while the others (and the worker's slots) are
    still importing, and that CPU would be counted per request (on a loaded
    machine one quiet second can be a process waiting for a core). Seconds
    waited."""
    started = time.monotonic()
    in_a_row = 0
    while in_a_row < quiet and time.monotonic() - started < timeout:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(1)
        busy = sum(cpu_seconds(pid) for pid in pids) - before >= most
        in_a_row = 0 if busy else in_a_row + 1
    return time.monotonic() - started


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def summary(what: str, seconds: float, latencies: list[float], codes: dict[int, int]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (
        f"{what}: {len(ordered)} in {seconds:.1f} s = {len(ordered) / seconds:.0f}/s, "
        f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"answers {dict(sorted(codes.items()))}"
    )


def count_events(database: Database) -> dict[str, int]:
    with database.session() as session:
        return {
            status.value: count
            for status, count in session.execute(
                select(CiEvent.status, func.count()).group_by(CiEvent.status)
            )
        }


def webhooks(args: argparse.Namespace, api_workers: int) -> None:
    with temporary_database(args.postgres) as temp:
        prepare(temp.url, "bench/app")
        bodies = [push("bench/app", number) for number in range(1, args.warmup + args.webhooks + 1)]
        database = Database.from_url(temp.url)
        try:
            with running(temp.url, args.redis, api_workers=api_workers) as stack:
                host = urlsplit(stack.url).netloc
                requests = [
                    raw_request(host, "/webhooks/github", body, headers) for body, headers in bodies
                ]
                processes = [stack.pid] + ([stack.worker_pid] if stack.worker_pid else [])
                waited = settle(processes)
                # Each process's first requests connect its pool and its
                # broker producer: not what a webhook costs afterwards.
                _, _, warm_codes = asyncio.run(
                    hammer_raw(stack.url, requests[: args.warmup], args.clients)
                )
                requests = requests[args.warmup :]
                waited += settle(processes)
                print(
                    f"  {args.warmup} webhooks first (not in the figures); processes settled"
                    f" {waited:.0f} s; load average before: {load_average()}"
                )
                server_before = cpu_seconds(stack.pid)
                client_before = own_cpu_seconds()
                seconds, latencies, codes = asyncio.run(
                    hammer_raw(stack.url, requests, args.clients)
                )
                server_cpu = cpu_seconds(stack.pid) - server_before
                client_cpu = own_cpu_seconds() - client_before
                print(
                    "  "
                    + summary(
                        f"webhooks, {api_workers} API process(es), {args.clients} clients",
                        seconds,
                        latencies,
                        codes,
                    )
                )
                print(
                    f"  CPU per request: API processes {server_cpu / len(latencies) * 1000:.2f} ms,"
                    f" clients {client_cpu / len(latencies) * 1000:.2f} ms;"
                    f" load average after: {load_average()}"
                )
                accepted = codes.get(202, 0) + warm_codes.get(202, 0)
                started = time.perf_counter()
                deadline = time.monotonic() + args.drain_timeout
                while True:
                    counts = count_events(database)
                    if counts.get("pending", 0) == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                drained = time.perf_counter() - started
                handled = counts.get(EventStatus.HANDLED.value, 0)
                print(
                    f"  events: {accepted} accepted, {handled} handled, "
                    f"{counts.get('pending', 0)} pending, {counts.get('failed', 0)} failed"
                    f" (drained {drained:.1f} s after the last answer; "
                    f"{handled / (seconds + drained):.0f} handled/s over the whole)"
                )
        finally:
            database.dispose()


def plans_and_results(args: argparse.Namespace) -> None:
    with temporary_database(args.postgres) as temp:
        _token, names = fill(temp.url, temp.dsn, 10_000)
        shas = scored_commits(temp.url, temp.dsn, 40)
        database = Database.from_url(temp.url)
        with database.session() as session:
            repository = session.scalar(select(Repository).where(Repository.name == "app"))
            assert repository is not None
            token = tokens.create_token(
                session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="load"
            ).token
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with running(temp.url, args.redis) as stack:

                async def plan(client: httpx.AsyncClient, number: int) -> httpx.Response:
                    sha = shas[(number // 4) % len(shas)]
                    return await client.get(
                        f"/api/v1/repos/bench/app/plans/{sha}",
                        params={"mode": "fraction", "budget": 0.3, "shard": f"{number % 4 + 1}/4"},
                        headers=headers,
                    )

                seconds, latencies, codes = asyncio.run(
                    hammer(stack.url, plan, args.plans, args.clients)
                )
                print(
                    "  "
                    + summary(
                        f"plans, 10,000 tests, 1 API process, {args.clients} clients",
                        seconds,
                        latencies,
                        codes,
                    )
                )

                reports = [
                    junit_report(100, offset=(number * 100) % (len(names) - 100))
                    for number in range(args.reports)
                ]

                async def upload(client: httpx.AsyncClient, number: int) -> httpx.Response:
                    return await client.post(
                        "/api/v1/repos/bench/app/runs",
                        params={"commit": f"{number + 1:040x}"},
                        content=reports[number],
                        headers={**headers, "Content-Type": "application/xml"},
                    )

                seconds, latencies, codes = asyncio.run(
                    hammer(stack.url, upload, args.reports, args.clients)
                )
                print("  " + summary("reports of 100 tests posted", seconds, latencies, codes))
                started = time.perf_counter() - seconds
                deadline = time.monotonic() + args.drain_timeout
                while True:
                    with database.session() as session:
                        pending = session.scalar(
                            select(func.count())
                            .select_from(SuiteRun)
                            .where(SuiteRun.status == RunStatus.PENDING)
                        )
                        ingested = session.scalar(
                            select(func.count())
                            .select_from(SuiteRun)
                            .where(SuiteRun.status == RunStatus.INGESTED)
                        )
                    if not pending or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                whole = time.perf_counter() - started
                print(
                    f"  results: {ingested} reports ingested ({pending} pending) in {whole:.1f} s"
                    f" from the first post: {(ingested or 0) * 100 / whole:.0f} results/s"
                )
        finally:
            database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--webhooks", type=int, default=6000)
    parser.add_argument("--api-workers", default="1,4")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--plans", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--drain-timeout", type=float, default=900)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--parts", default="webhooks,plans")
    args = parser.parse_args()

    parts = args.parts.split(",")
    if "webhooks" in parts:
        for api_workers in (int(value) for value in args.api_workers.split(",")):
            print(f"webhooks, {api_workers} API process(es):")
            webhooks(args, api_workers)
    if "plans" in parts:
        print("plans and results:")
        plans_and_results(args)


if __name__ == "__main__":
    main()
