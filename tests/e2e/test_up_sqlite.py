"""`riskrank up` on the embedded default (SQLite database, SQLite broker in
the data directory): the whole flow with nothing installed, on the address
given, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RISKRANK, Process, clean_env
from tests.helpers import SECRET, free_port, github_headers, sample, wait_for

pytestmark = pytest.mark.slow

Start = Callable[..., Process]


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is `directory`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "cwd").resolve() == directory.resolve():
                status = (proc / "status").read_text()
                if "\nState:\tZ" not in status:
                    pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def commits(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as connection:
        return connection.execute(
            "SELECT c.sha, f.path FROM commits c JOIN changed_files f ON f.commit_id = c.id "
            "ORDER BY f.path"
        ).fetchall()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_runs_the_whole_flow_on_sqlite_and_stops_cleanly(
    tmp_path: Path, start: Start, github_samples: Path, stop_signal: int
) -> None:
    if not Path("/proc/self/cwd").exists():
        pytest.skip("needs /proc to see the child processes")
    workdir = tmp_path / "riskrank-home"
    workdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data_dir = tmp_path / "data" / "riskrank"  # made by `up`
    port = free_port()
    env = clean_env(RISKRANK_DATA_DIR=str(data_dir), RISKRANK_SWEEP_INTERVAL_SECONDS="2")
    url = f"http://127.0.0.1:{port}"

    up = start("up", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=workdir)
    wait_for(lambda: healthy(url), timeout=60, what=f"riskrank up to be ready:\n{up.output()}")
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    assert f"data directory: {data_dir}\n" in up.output()
    assert f"database:       {data_dir / 'riskrank.db'}\n" in up.output()
    assert f"broker:         sqla+sqlite:///{data_dir / 'riskrank-broker.db'}\n" in up.output()
    assert f"riskrank is up on {url}; Ctrl-C stops it" in up.output()
    assert (data_dir / "riskrank.db").exists()
    assert (data_dir / "riskrank-broker.db").exists()

    # From another directory: the same database.
    added = subprocess.run(
        [RISKRANK, "repo", "add", "binkkatal/sample_app", "--secret", SECRET],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr

    body = sample(github_samples, "push-normal-branch.json")
    response = requests.post(
        f"{url}/webhooks/github", data=body, headers=github_headers(body), timeout=10
    )
    assert response.status_code == 202, response.text

    rows = wait_for(
        lambda: commits(data_dir / "riskrank.db"),
        timeout=60,
        what=f"the commit to be stored; riskrank up said:\n{up.output()}",
    )
    assert rows == [
        ("fd489864e7642b48eaad6e3f155c10e46810ec72", ".razorops.yaml"),
        ("fd489864e7642b48eaad6e3f155c10e46810ec72", "app/controllers/application_controller.rb"),
    ]
    listed = subprocess.run(
        [RISKRANK, "repo", "list", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [listed_repo] = json.loads(listed.stdout)
    assert listed_repo["repository"] == "binkkatal/sample_app"
    assert (listed_repo["events"], listed_repo["commits"]) == (1, 1)

    children = [pid for pid in processes_in(workdir) if pid != up.popen.pid]
    assert len(children) >= 3, up.output()  # api, worker (and its pool), beat
    assert up.stop(stop_signal) == 0, up.output()
    assert "riskrank stopped" in up.output()
    wait_for(lambda: not processes_in(workdir), timeout=10, what="every child to exit")
    # Beat's schedule too went to the data directory: the working directories are clean.
    assert [*workdir.iterdir(), *elsewhere.iterdir()] == []
    assert any(path.name.startswith("riskrank-beat-schedule") for path in data_dir.iterdir())


def children_of(pid: int) -> dict[int, str]:
    """Live child processes of `pid`: their command lines."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            # The fields after the command's name, which is in parentheses.
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found[int(proc.name)] = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, ValueError):
            continue
    return found


def child(up: Process, role: str) -> int | None:
    """The pid of `up`'s `worker` or `beat` (celery's own command line, as it
    execs itself), or None."""
    for pid, command in children_of(up.popen.pid).items():
        if f"workers.app {role}" in command:
            return pid
    return None


def test_up_restarts_a_killed_worker_and_beat_and_keeps_serving(
    tmp_path: Path, start: Start, github_samples: Path
) -> None:
    """A SIGKILL of the worker (and then of beat) under `riskrank up`: the
    API answers all along, the killed process is restarted (logged), and
    the new worker handles a push; SIGTERM then stops everything, exit 0."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to see the child processes")
    data_dir = tmp_path / "data"
    port = free_port()
    env = clean_env(RISKRANK_DATA_DIR=str(data_dir), RISKRANK_SWEEP_INTERVAL_SECONDS="2")
    url = f"http://127.0.0.1:{port}"
    up = start("up", "--host", "127.0.0.1", "--port", str(port), "--concurrency", "1", env=env)
    wait_for(lambda: healthy(url), timeout=60, what=f"riskrank up to be ready:\n{up.output()}")

    for role in ("worker", "beat"):
        old = wait_for(lambda role=role: child(up, role), timeout=30, what=f"the {role}")
        os.kill(old, signal.SIGKILL)
        # The API keeps answering while the killed one is down and restarted.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert requests.get(f"{url}/healthz", timeout=2).status_code == 200, up.output()
            time.sleep(0.2)
        wait_for(
            lambda role=role: f"{role} exited with code -9; restarting it in 1 s" in up.output(),
            timeout=10,
            what=f"the {role}'s exit to be logged:\n{up.output()}",
        )
        new = wait_for(
            lambda role=role, old=old: (pid := child(up, role)) and pid != old and pid,
            timeout=30,
            what=f"a new {role}:\n{up.output()}",
        )
        assert f"{role} restarted" in up.output()
        assert new != old
        assert up.popen.poll() is None, up.output()

    # The new worker does the work.
    added = subprocess.run(
        [RISKRANK, "repo", "add", "binkkatal/sample_app", "--secret", SECRET],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    body = sample(github_samples, "push-normal-branch.json")
    response = requests.post(
        f"{url}/webhooks/github", data=body, headers=github_headers(body), timeout=10
    )
    assert response.status_code == 202, response.text
    wait_for(
        lambda: commits(data_dir / "riskrank.db"),
        timeout=60,
        what=f"the restarted worker to store the commit:\n{up.output()}",
    )

    children = set(children_of(up.popen.pid))
    assert up.stop(signal.SIGTERM) == 0, up.output()
    assert "riskrank stopped" in up.output()
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
        timeout=10,
        what="every child to exit",
    )
