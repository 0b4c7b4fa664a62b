"""`riskrank up` on the embedded default (SQLite database, SQLite broker in
the data directory): the whole flow with nothing installed, on the address
given, and a clean stop."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
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
