"""riskrank serve | worker | beat | up: the long-running processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Annotated

import typer

from scheduler import migrate
from scheduler.cli.common import console, fail, settings
from scheduler.logs import configure_logging
from scheduler.queue import QUEUE_NAME, prepare_embedded_broker

STOP_GRACE_SECONDS = 20.0


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [RISKRANK_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [RISKRANK_PORT].")] = None,
    workers: Annotated[int, typer.Option(min=1, help="HTTP worker processes.")] = 1,
) -> None:
    """Run the HTTP API (webhooks, plans, results, /metrics)."""
    import uvicorn

    config = settings()
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
    config = settings()
    arguments = ["worker", "--queues", QUEUE_NAME, "--loglevel", config.log_level]
    if concurrency:
        arguments += ["--concurrency", str(concurrency)]
    prepare_embedded_broker(config.broker_url)
    _celery(*arguments)


def beat() -> None:
    """Run the scheduler of periodic tasks. Run exactly one."""
    config = settings()
    prepare_embedded_broker(config.broker_url)
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


def up(
    concurrency: Annotated[int, typer.Option(min=1, help="Worker task processes.")] = 2,
) -> None:
    """Run api, worker and beat together on this machine (the embedded default:
    a SQLite database and broker in the working directory). Ctrl-C stops all."""
    config = settings()
    configure_logging(config.log_level)
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
        "api": [*command, "serve"],
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
        console.print(
            f"riskrank is up on http://{config.host}:{config.port} "
            f"(database {config.database_url}, broker {config.broker_url}); Ctrl-C stops it",
            highlight=False,
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
