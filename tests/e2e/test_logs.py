"""The logs of a real `riskrank serve` and `riskrank worker` (PostgreSQL,
Redis), written to a file as a service manager would: one JSON object a
line, one line per HTTP request and per task with its duration and outcome,
and never the webhook secret, its signature, an API token or its hash, even
at DEBUG."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from scheduler.db import Database
from scheduler.models import CiEvent, EventStatus, Provider, RunStatus, SuiteRun
from scheduler.services import repos, tokens
from tests.conftest import empty_all_tables
from tests.e2e.conftest import Process, clean_env
from tests.helpers import SECRET, free_port, github_headers, sample, wait_for

pytestmark = pytest.mark.slow

Start = Callable[..., Process]
REPO = "binkkatal/sample_app"
WRONG_TOKEN = "rr_not-a-token-0123456789abcdefghijklmnop"
REPORT = (
    b"<testsuites><testsuite name='pytest'>"
    b"<testcase classname='tests.test_m' file='tests/test_m.py' name='test_ok' time='0.5'/>"
    b"<testcase classname='tests.test_m' file='tests/test_m.py' name='test_bad' time='0.5'>"
    b"<failure message='AssertionError'>boom</failure></testcase>"
    b"</testsuite></testsuites>"
)


def _done(database: Database) -> bool:
    with database.session() as session:
        events = list(session.scalars(select(CiEvent.status)))
        runs = list(session.scalars(select(SuiteRun.status)))
    return events == [EventStatus.HANDLED] and runs == [RunStatus.INGESTED]


def _json_lines(output: str) -> list[dict[str, Any]]:
    # The worker's banner is printed, not logged: every logged line is JSON.
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_one_line_per_request_and_task_and_never_a_secret(
    postgres_url: str,
    redis_url: str,
    start: Start,
    github_samples: Path,
) -> None:
    database = Database.from_url(postgres_url)
    empty_all_tables(database)
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=Provider.GITHUB, full_name=REPO, webhook_secret=SECRET
        )
        token = tokens.create_token(
            session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
    port = free_port()
    env = clean_env(
        RISKRANK_DATABASE_URL=postgres_url,
        RISKRANK_BROKER_URL=redis_url,
        RISKRANK_LOG_LEVEL="DEBUG",
    )
    api = start("serve", "--port", str(port), env=env)
    worker = start("worker", "--concurrency", "1", env=env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert api.popen.poll() is None, api.output()
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=60, interval=0.2, what=f"the api; its log:\n{api.output()}")
    body = sample(github_samples, "push-normal-branch.json")
    headers = github_headers(body)
    pushed = requests.post(f"{url}/webhooks/github", data=body, headers=headers, timeout=30)
    assert pushed.status_code == 202, pushed.text
    results = f"{url}/api/v1/repos/{REPO}/runs"
    uploaded = requests.post(
        results,
        params={"commit": "ab" * 20, "run_key": "build-1"},
        data=REPORT,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
        timeout=30,
    )
    assert uploaded.status_code == 202, uploaded.text
    refused = requests.post(
        results,
        # A token in the query string too: it is not read, and not logged.
        params={"commit": "ab" * 20, "run_key": "build-2", "token": WRONG_TOKEN},
        data=REPORT,
        headers={"Authorization": f"Bearer {WRONG_TOKEN}", "Content-Type": "application/xml"},
        timeout=30,
    )
    assert refused.status_code == 401
    wait_for(lambda: _done(database), timeout=60, what=f"the worker; its log:\n{worker.output()}")
    # The pushed head is scored after its event: its task line too.
    wait_for(
        lambda: '"task": "plans.score"' in worker.output(),
        timeout=60,
        what=f"the scoring; the worker's log:\n{worker.output()}",
    )
    api.stop()
    worker.stop(signal.SIGQUIT)
    database.dispose()

    requests_logged = [
        (line["method"], line["route"], line["status"])
        for line in _json_lines(api.output())
        if line["logger"] == "riskrank.request"
    ]
    runs_route = "/api/v1/repos/{owner:path}/{name}/runs"
    assert requests_logged.count(("POST", "/webhooks/github", 202)) == 1
    assert requests_logged.count(("POST", runs_route, 202)) == 1
    assert requests_logged.count(("POST", runs_route, 401)) == 1
    for line in _json_lines(api.output()):
        if line["logger"] == "riskrank.request":
            assert isinstance(line["duration_ms"], float)
            assert line["path"] in ("/healthz", "/webhooks/github", f"/api/v1/repos/{REPO}/runs")

    tasks_logged = [
        (line["task"], line["outcome"], line["level"])
        for line in _json_lines(worker.output())
        if line["logger"] == "riskrank.task"
    ]
    assert tasks_logged.count(("events.process", "success", "INFO")) == 1
    assert tasks_logged.count(("runs.ingest", "success", "INFO")) == 1
    assert tasks_logged.count(("plans.score", "success", "INFO")) == 1
    # The one line per task is riskrank's: Celery's own are turned down.
    assert " succeeded in " not in worker.output()

    logged = api.output() + worker.output()
    for secret in (
        SECRET,
        headers["X-Hub-Signature-256"],
        headers["X-Hub-Signature-256"].removeprefix("sha256="),
        token,
        tokens.hash_token(token),
        WRONG_TOKEN,
    ):
        assert secret not in logged
