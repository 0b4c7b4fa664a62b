"""riskrank serve | worker | beat | up: the long-running processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from scheduler.cli.common import (
    console,
    existing_database,
    fail,
    make_database_directory,
    settings,
    sqlite_file,
)
from scheduler.logs import configure_logging

STOP_GRACE_SECONDS = 20.0

# `serve` and `up` take the same two options, defaulting to the settings.
HostOption = Annotated[
    str | None,
    typer.Option(
        help="Bind address [RISKRANK_HOST, default 127.0.0.1: this machine only]; "
        "0.0.0.0 listens on every interface."
    ),
]
PortOption = Annotated[
    int | None, typer.Option(min=1, max=65535, help="Port [RISKRANK_PORT, default 8000].")
]


def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[int, typer.Option(min=1, help="HTTP worker processes.")] = 1,
) -> None:
    """Run the HTTP API (webhooks, plans, results, /metrics)."""
    import uvicorn

    config = settings()
    existing_database(config)
    configure_logging(config.log_level, config.log_format)
    uvicorn.run(
        "scheduler.api.app:create_served_app",
        factory=True,
        host=host or config.host,
        port=port or config.port,
        workers=workers,
        log_config=None,
        # scheduler.api.app logs each request once, with its duration and
        # without the query string; uvicorn's access line would be a second.
        access_log=False,
        proxy_headers=True,
    )


def _celery(*arguments: str) -> None:
    # Replace this process: Celery then gets the signals directly.
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", *arguments]
    os.execv(sys.executable, argv)  # noqa: S606  (argv is ours, no shell)


def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Task processes (default: one per CPU).")
    ] = None,
) -> None:
    """Run a Celery worker (events, scoring, ingestion, training). With
    RISKRANK_WORKER_METRICS_PORT it serves its metrics on that port."""
    from scheduler.queue import QUEUE_NAME, prepare_embedded_broker

    config = settings()
    existing_database(config)
    arguments = ["worker", "--queues", QUEUE_NAME, "--loglevel", config.log_level]
    if concurrency:
        arguments += ["--concurrency", str(concurrency)]
    prepare_embedded_broker(config.broker_url)
    if config.worker_metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # The pool processes' samples meet in a directory the worker serves.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="riskrank-metrics-")
    _celery(*arguments)


def beat() -> None:
    """Run the scheduler of periodic tasks. Run exactly one."""
    from scheduler.queue import prepare_embedded_broker

    config = settings()
    prepare_embedded_broker(config.broker_url)
    Path(config.beat_schedule_file).parent.mkdir(parents=True, exist_ok=True)
    _celery("beat", "--schedule", config.beat_schedule_file, "--loglevel", config.log_level)


class _Stop(Exception):
    pass


def _raise_stop(_signum: int, _frame: object) -> None:
    raise _Stop


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{name} did not stop in time; killing it[/]")
            child.kill()
            child.wait()


# `up` restarts a worker or beat that exits (a crash, an out-of-memory kill)
# after a delay that doubles with each quick exit, up to a minute; one that
# ran a minute before it exited starts again at the first delay.
RESTART_FIRST_DELAY_SECONDS = 1.0
RESTART_MAX_DELAY_SECONDS = 60.0
RESTART_STABLE_SECONDS = 60.0


class _Supervised:
    """A child of `up`: its command, the running process, when to restart."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.delay = RESTART_FIRST_DELAY_SECONDS
        self.restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.started_at = time.monotonic()
        # A session of its own: a terminal's Ctrl-C reaches only `up`, which
        # stops each child once, in order; and the group is the child's to
        # clean when it dies (a worker's pool processes).
        return subprocess.Popen(self.argv, env=self.env, start_new_session=True)  # noqa: S603

    def exited(self, now: float) -> None:
        """Note its exit, clean what it left, and plan its restart."""
        # Its pool processes, orphaned by a SIGKILL of the worker.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if now - self.started_at >= RESTART_STABLE_SECONDS:
            self.delay = RESTART_FIRST_DELAY_SECONDS
        console.print(
            f"[yellow]{self.name} exited with code {self.process.returncode}; "
            f"restarting it in {self.delay:g} s[/]",
            highlight=False,
        )
        self.restart_at = now + self.delay
        self.delay = min(self.delay * 2, RESTART_MAX_DELAY_SECONDS)

    def restart_if_due(self, now: float) -> None:
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            self.process = self._start()
            console.print(f"{self.name} restarted", highlight=False)


def _supervise(supervised: list[_Supervised], api: subprocess.Popen[bytes]) -> None:
    """Until a signal (or the API's exit, which raises _Stop): restart a
    worker or beat that exits, the API serving all along."""
    while True:
        if api.poll() is not None:
            console.print(f"[red]api exited with code {api.returncode}[/]")
            raise _Stop
        now = time.monotonic()
        for child in supervised:
            if child.restart_at is None and child.process.poll() is not None:
                child.exited(now)
            child.restart_if_due(now)
        time.sleep(0.2)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def up(
    host: HostOption = None,
    port: PortOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker task processes.")] = 2,
) -> None:
    """Run api, worker and beat together on this machine (the embedded default:
    a SQLite database and broker in the data directory, RISKRANK_DATA_DIR,
    created if missing). A worker or beat that exits is restarted (after 1 s,
    doubling up to a minute while it keeps failing); Ctrl-C stops all."""
    from scheduler import migrate
    from scheduler.db import shown_url
    from scheduler.queue import prepare_embedded_broker

    config = settings()
    configure_logging(config.log_level, config.log_format)
    host = host or config.host
    port = port or config.port
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create the data directory {config.data_dir}: {error.strerror or error}")
    make_database_directory(config)
    try:
        migrate.upgrade(config.database_url)
    except Exception as error:
        fail(f"cannot prepare the database {config.database_url}: {error}")
    prepare_embedded_broker(config.broker_url)

    env = dict(os.environ)
    metrics_dir: str | None = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="riskrank-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    command = [sys.executable, "-m", "scheduler.cli"]
    commands = {
        "api": [*command, "serve", "--host", host, "--port", str(port)],
        "worker": [*command, "worker", "--concurrency", str(concurrency)],
        "beat": [*command, "beat"],
    }
    api: subprocess.Popen[bytes] | None = None
    supervised: list[_Supervised] = []
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        api = subprocess.Popen(commands.pop("api"), env=env, start_new_session=True)  # noqa: S603
        for name, argv in commands.items():
            supervised.append(_Supervised(name, argv, env))
        database = sqlite_file(config.database_url) or shown_url(config.database_url)
        console.print(
            f"data directory: {config.data_dir}\n"
            f"database:       {database}\n"
            f"broker:         {shown_url(config.broker_url)}\n"
            f"riskrank is up on {_url(host, port)}; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        _supervise(supervised, api)
    except _Stop:
        # The API's exit (a port taken, a crash) stops everything: without it
        # riskrank serves nobody. A signal is a clean stop.
        code = 1 if api is not None and api.poll() is not None else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        children = {"api": api} if api is not None else {}
        children.update({child.name: child.process for child in supervised})
        _stop_all(children)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    console.print("riskrank stopped")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    for command in (serve, worker, beat, up):
        app.command()(command)


__all__ = ["register"]
