"""riskrank serve | worker | beat | up: the long-running processes."""

from __future__ import annotations

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
    configure_logging(config.log_level)
    uvicorn.run(
        "scheduler.api.app:create_app",
        factory=True,
        host=host or config.host,
        port=port or config.port,
        workers=workers,
        log_config=None,
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
    """Run a Celery worker (events, scoring, ingestion, training)."""
    from scheduler.queue import QUEUE_NAME, prepare_embedded_broker

    config = settings()
    existing_database(config)
    arguments = ["worker", "--queues", QUEUE_NAME, "--loglevel", config.log_level]
    if concurrency:
        arguments += ["--concurrency", str(concurrency)]
    prepare_embedded_broker(config.broker_url)
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


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def up(
    host: HostOption = None,
    port: PortOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker task processes.")] = 2,
) -> None:
    """Run api, worker and beat together on this machine (the embedded default:
    a SQLite database and broker in the data directory, RISKRANK_DATA_DIR,
    created if missing). Ctrl-C stops all."""
    from scheduler import migrate
    from scheduler.db import shown_url
    from scheduler.queue import prepare_embedded_broker

    config = settings()
    configure_logging(config.log_level)
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
    children: dict[str, subprocess.Popen[bytes]] = {}
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for name, argv in commands.items():
            # A session of its own: a terminal's Ctrl-C reaches only us, and
            # we stop each child once, in order.
            children[name] = subprocess.Popen(argv, env=env, start_new_session=True)  # noqa: S603
        database = sqlite_file(config.database_url) or shown_url(config.database_url)
        console.print(
            f"data directory: {config.data_dir}\n"
            f"database:       {database}\n"
            f"broker:         {shown_url(config.broker_url)}\n"
            f"riskrank is up on {_url(host, port)}; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    console.print(f"[red]{name} exited with code {child.returncode}[/]")
                    code = 1
                    raise _Stop
            time.sleep(0.2)
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(children)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    console.print("riskrank stopped")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    for command in (serve, worker, beat, up):
        app.command()(command)


__all__ = ["register"]
