"""/metrics after real traffic through real processes: two api processes
(`riskrank serve --workers 2`, one multiprocess directory) and a worker
with two pool processes serving its own port (RISKRANK_WORKER_METRICS_PORT),
on PostgreSQL and Redis, as docker-compose.yml runs them.

The traffic: GitHub webhooks (accepted, redelivered, badly signed), 24
test reports and one sent twice, a plan CI follows with a report of its
outcomes, a bad plan request, and a training by the worker, whose model
the registry keeps as a candidate (known in advance: the heuristic already
orders this history best), promoted by hand then. Every counter must have
moved by exactly that, whichever process answered or did the work; and
every metric the Grafana dashboard queries must then be exported."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from scheduler.config import Settings
from scheduler.db import Database
from scheduler.models import ModelStatus, Plan, Provider, RiskModel, RunStatus, SuiteRun
from scheduler.queue import MODELS_TRAIN, create_celery, send_now
from scheduler.services import repos, tokens, training
from tests.conftest import empty_all_tables
from tests.e2e.conftest import RISKRANK, Process, clean_env
from tests.helpers import (
    METRIC_LABEL,
    SECRET,
    github_headers,
    metric_key,
    metric_samples,
    wait_for,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "riskrank.json"
REPO = "binkkatal/sample_app"
HEAD = "fd489864e7642b48eaad6e3f155c10e46810ec72"  # the pushed head
TESTS = 6
BUILDS = 23  # reports before the plan's own: enough to train and to calibrate the model


def failing(build: int) -> set[int]:
    """The tests that fail in build `build`: test_0, from the second build
    on. The heuristic (the test that failed last first) then gives every
    build after it the best order there is, so a candidate model can at
    best tie with it on the held-out builds: the registry keeps it as a
    candidate, whatever it learnt (tests/services/test_promotion.py,
    `steady`)."""
    return {0} if build > 0 else set()


def report(build: int) -> bytes:
    """Build `build`'s JUnit report: six tests, those of `failing` failed."""
    cases = []
    for number in range(TESTS):
        failed = number in failing(build)
        failure = '<failure message="AssertionError">boom</failure>' if failed else ""
        cases.append(
            f'<testcase classname="tests.test_m" file="tests/test_m.py" name="test_{number}" '
            f'time="{0.5 * (number + 1):.1f}">{failure}</testcase>'
        )
    suite = "".join(cases)
    return f"<testsuites><testsuite name='pytest'>{suite}</testsuite></testsuites>".encode()


def get(url: str, **options: Any) -> requests.Response:
    return requests.get(url, timeout=30, **options)


def post(url: str, **options: Any) -> requests.Response:
    return requests.post(url, timeout=30, **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Traffic:
    before_api: dict[str, float]
    before_worker: dict[str, float]
    api: dict[str, float]
    worker: dict[str, float]
    plan: dict[str, Any]
    plan_report: bytes
    token: str
    database: Database

    def moved(self, where: str, series: str) -> float:
        before = self.before_api if where == "api" else self.before_worker
        after = self.api if where == "api" else self.worker
        return after.get(metric_key(series), 0.0) - before.get(metric_key(series), 0.0)


def _repository(database: Database) -> tuple[int, str]:
    empty_all_tables(database)
    with database.session() as session:
        repository = repos.add_repository(
            session, provider=Provider.GITHUB, full_name=REPO, webhook_secret=SECRET
        )
        token = tokens.create_token(
            session, repository=repository, scopes=tokens.DEFAULT_SCOPES, name="ci"
        ).token
        return repository.id, token


def _wait_until_up(url: str, process: Process) -> None:
    def answers() -> bool:
        assert process.popen.poll() is None, process.output()
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(answers, timeout=60, interval=0.2, what=f"{url}; its log:\n{process.output()}")


def _ingested(database: Database, count: int) -> bool:
    with database.session() as session:
        statuses = list(session.scalars(select(SuiteRun.status)))
    assert RunStatus.FAILED not in statuses
    return statuses.count(RunStatus.INGESTED) == count


def _send(
    api: str, token: str, worker: Process, database: Database, samples: Path
) -> tuple[dict[str, Any], bytes]:
    """The traffic; returns the plan CI followed and the report it sent."""
    push = samples / "push-normal-branch.json"
    body = push.read_bytes()
    headers = github_headers(body, delivery="delivery-1")
    assert post(f"{api}/webhooks/github", data=body, headers=headers).status_code == 202
    assert post(f"{api}/webhooks/github", data=body, headers=headers).status_code == 200
    forged = github_headers(body, secret="not-the-secret-0123456789", delivery="delivery-2")
    assert post(f"{api}/webhooks/github", data=body, headers=forged).status_code == 401

    auth = {"Authorization": f"Bearer {token}"}
    results = f"{api}/api/v1/repos/{REPO}/runs"
    xml = {**auth, "Content-Type": "application/xml"}
    for build in range(BUILDS):
        params = {"commit": f"{build + 1:040x}", "run_key": f"build-{build}"}
        answer = post(results, params=params, data=report(build), headers=xml)
        assert answer.status_code == 202, answer.text
    again = post(results, params=params, data=report(BUILDS - 1), headers=xml)
    assert again.json()["status"] == "duplicate"
    wait_for(lambda: _ingested(database, BUILDS), timeout=60, what=worker.output())

    plans = f"{api}/api/v1/repos/{REPO}/plans/{HEAD}"
    assert get(plans, params={"mode": "sideways"}, headers=auth).status_code == 400
    answer = get(plans, params={"mode": "fraction", "budget": "0.5"}, headers=auth)
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    followed = report(BUILDS + 1)  # a failure: caught or missed, as the plan decided
    params = {"commit": HEAD, "run_key": "planned", "plan_id": str(plan["plan_id"])}
    assert post(results, params=params, data=followed, headers=xml).status_code == 202
    wait_for(lambda: _ingested(database, BUILDS + 1), timeout=60, what=worker.output())
    return plan, followed


@pytest.fixture(scope="module")
def traffic(
    postgres_url: str,
    redis_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
    github_samples: Path,
) -> Iterator[Traffic]:
    redis_server.flushdb()
    redis_url = redis_server.connection_pool.connection_kwargs
    broker = f"redis://{redis_url['host']}:{redis_url['port']}/{redis_url['db']}"
    tmp = tmp_path_factory.mktemp("metrics")
    database = Database.from_url(postgres_url)
    repository_id, token = _repository(database)
    api_port, worker_port = free_port(), free_port()
    common = {
        "RISKRANK_DATABASE_URL": postgres_url,
        "RISKRANK_BROKER_URL": broker,
        # A plan that depends on nothing random: no exploration draw, no full run.
        "RISKRANK_PLAN_EXPLORATION_RATE": "0",
        "RISKRANK_PLAN_FULL_RUN_EVERY": "0",
    }
    api_env = clean_env(**common, PROMETHEUS_MULTIPROC_DIR=str(tmp / "api-metrics"))
    worker_env = clean_env(
        **common,
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "worker-metrics"),
        RISKRANK_WORKER_METRICS_PORT=str(worker_port),
    )
    api = Process(
        [RISKRANK, "serve", "--port", str(api_port), "--workers", "2"],
        env=api_env,
        cwd=tmp,
        log=tmp / "api.log",
    )
    worker = Process(
        [RISKRANK, "worker", "--concurrency", "2"], env=worker_env, cwd=tmp, log=tmp / "worker.log"
    )
    try:
        api_url, worker_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
        _wait_until_up(f"{api_url}/healthz", api)
        _wait_until_up(f"{worker_url}/metrics", worker)
        before_api = metric_samples(get(f"{api_url}/metrics").text)
        before_worker = metric_samples(get(f"{worker_url}/metrics").text)

        plan, followed = _send(api_url, token, worker, database, github_samples)
        celery = create_celery(Settings(database_url=postgres_url, broker_url=broker))
        assert send_now(celery, MODELS_TRAIN, repository_id)
        trained = 'riskrank_task_seconds_count{outcome="success",task="models.train"}'
        wait_for(
            lambda: metric_samples(get(f"{worker_url}/metrics").text).get(trained),
            timeout=60,
            what=f"the training; worker:\n{worker.output()}",
        )
        # The registry kept the candidate (see `failing`); it is promoted
        # by hand, as an operator would (from the CLI's process: no counter
        # of the api or worker moves), so that the active model's figures
        # are exported.
        with database.session() as session:
            assert session.scalars(select(RiskModel.status)).all() == [ModelStatus.CANDIDATE]
            training.promote(session, repository_id=repository_id, version=1)
        active = f'riskrank_model_active_version{{repository="{REPO}"}}'

        def after() -> dict[str, float] | None:
            # Once the database's figures, cached a few seconds, show it.
            scraped = metric_samples(get(f"{api_url}/metrics").text)
            return scraped if scraped.get(active) == 1 else None

        scraped = wait_for(after, timeout=30, interval=0.5, what="the promoted model")
        yield Traffic(
            before_api=before_api,
            before_worker=before_worker,
            api=scraped,
            worker=metric_samples(get(f"{worker_url}/metrics").text),
            plan=plan,
            plan_report=followed,
            token=token,
            database=database,
        )
    finally:
        # Both at once; the worker cold (its pool has nothing left to finish).
        api.popen.send_signal(signal.SIGTERM)
        worker.popen.send_signal(signal.SIGQUIT)
        api.stop()
        worker.stop(signal.SIGQUIT)
        database.dispose()


def test_every_counter_moved_by_exactly_the_traffic(traffic: Traffic) -> None:
    def api(series: str) -> float:
        return traffic.moved("api", series)

    def worker(series: str) -> float:
        return traffic.moved("worker", series)

    repo = f'repository="{REPO}"'
    # The api: three deliveries, BUILDS + 2 reports, two plan requests.
    for result in ("queued", "duplicate", "rejected"):
        assert api(f'riskrank_webhooks_received_total{{provider="github",result="{result}"}}') == 1
    assert api('riskrank_webhook_seconds_count{provider="github"}') == 2
    assert api(f'riskrank_runs_received_total{{{repo},result="queued"}}') == BUILDS + 1
    assert api(f'riskrank_runs_received_total{{{repo},result="duplicate"}}') == 1
    assert api('riskrank_plans_served_total{status="heuristic"}') == 1
    assert api("riskrank_plan_seconds_count") == 1
    plans_route = "/api/v1/repos/{owner:path}/{name}/plans/{sha}"
    assert api(f'riskrank_http_requests_total{{code="400",route="{plans_route}"}}') == 1
    assert api(f'riskrank_http_requests_total{{code="200",route="{plans_route}"}}') == 1
    assert api('riskrank_http_requests_total{code="401",route="/webhooks/github"}') == 1
    assert api('riskrank_model_promotions_total{by="operator"}') == 0

    # The worker: one event, BUILDS + 1 ingestions, one plan evaluated, one training.
    assert worker('riskrank_events_processed_total{result="handled"}') == 1
    task = 'riskrank_task_seconds_count{{outcome="success",task="{}"}}'
    assert worker(task.format("events.process")) == 1
    assert worker(task.format("runs.ingest")) == BUILDS + 1
    assert worker(task.format("models.train")) == 1
    assert worker(f'riskrank_runs_ingested_total{{{repo},result="ingested"}}') == BUILDS + 1
    assert worker(f"riskrank_executions_ingested_total{{{repo}}}") == (BUILDS + 1) * TESTS

    plan = traffic.plan
    selected = [test for test in plan["tests"] if test["selected"]]
    dropped = [test for test in plan["tests"] if not test["selected"]]
    assert selected, plan
    assert dropped, plan
    failed = {f"tests/test_m.py::test_{number}" for number in failing(BUILDS + 1)}
    assert failed  # the plan had a failure to catch or miss
    assert worker(f"riskrank_plans_evaluated_total{{{repo}}}") == 1
    assert worker(f"riskrank_tests_selected_total{{{repo}}}") == len(selected) == plan["selected"]
    assert worker(f"riskrank_tests_dropped_total{{{repo}}}") == len(dropped)
    saved = worker(f"riskrank_ci_seconds_saved_total{{{repo}}}")
    assert saved == pytest.approx(sum(test["duration"] for test in dropped), abs=1e-3)
    assert saved == pytest.approx(plan["duration_dropped"], abs=1e-3)
    caught = sum(test["test"] in failed for test in selected)
    missed = sum(test["test"] in failed for test in dropped)
    assert worker(f"riskrank_failures_caught_total{{{repo}}}") == caught
    assert worker(f"riskrank_failures_missed_total{{{repo}}}") == missed
    assert worker(f"riskrank_failures_missed_estimated_total{{{repo}}}") == 0  # no exploration

    with traffic.database.session() as session:
        models = list(session.scalars(select(RiskModel)))
        evaluation = session.scalar(select(Plan.evaluation).where(Plan.id == plan["plan_id"]))
    assert evaluation is not None
    assert evaluation["failures_caught"] == caught
    assert [model.status for model in models] == [ModelStatus.ACTIVE]
    # One training, whose candidate the registry kept; promoted by hand after.
    assert worker(f'riskrank_trainings_total{{{repo},outcome="kept"}}') == 1
    assert worker(f'riskrank_trainings_total{{{repo},outcome="promoted"}}') == 0
    assert worker(f'riskrank_trainings_total{{{repo},outcome="failed"}}') == 0
    assert worker('riskrank_training_seconds_count{outcome="kept"}') == 1
    assert worker('riskrank_training_seconds_count{outcome="promoted"}') == 0
    assert worker('riskrank_model_promotions_total{by="training"}') == 0

    # The database's figures, on the api only (never summed over workers).
    def figure(series: str) -> float:
        return traffic.api[metric_key(series)]

    assert figure("riskrank_database_figures_up") == 1
    assert figure("riskrank_repositories") == 1
    assert figure("riskrank_events_waiting") == 0
    assert figure("riskrank_runs_waiting") == 0
    assert figure("riskrank_events_oldest_waiting_seconds") == 0
    assert figure(f"riskrank_tests{{{repo}}}") == TESTS
    assert figure(f"riskrank_flaky_tests{{{repo}}}") == 0
    assert figure(f"riskrank_model_active_version{{{repo}}}") == 1
    assert figure(f'riskrank_models{{{repo},status="active"}}') == 1
    assert 0 <= figure(f"riskrank_model_validation_apfd{{{repo}}}") <= 1
    # The promoted model's calibration, learnt on the builds it was not trained on.
    (stored,) = [model.metrics["calibration"]["ece"] for model in models]
    assert figure(f"riskrank_model_calibration_error{{{repo}}}") == pytest.approx(stored)
    assert 0 <= stored <= 1
    trained_at = figure(f"riskrank_model_last_training_timestamp_seconds{{{repo}}}")
    assert time.time() - 120 < trained_at <= time.time()
    assert not any(name.startswith("riskrank_database_figures") for name in traffic.worker)


# --- the dashboard ------------------------------------------------------------------

# Names in a PromQL expression that are not metrics.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


def queried_metrics(expression: str) -> set[str]:
    """The riskrank metrics a PromQL expression reads."""
    names = set(re.findall(r"\b(riskrank_[a-zA-Z0-9_]+)\b", expression))
    return {name for name in names if name not in PROMQL_WORDS}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_every_metric_the_dashboard_queries_is_exported(traffic: Traffic) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = {series.split("{")[0] for series in (*traffic.api, *traffic.worker)}
    queried: dict[str, set[str]] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name in queried_metrics(target["expr"]):
                queried.setdefault(name, set()).add(panel["title"])
    for variable in dashboard["templating"]["list"]:
        for name in queried_metrics(variable["definition"]):
            queried.setdefault(name, set()).add(f"${variable['name']}")
    assert len(queried) >= 20, sorted(queried)
    missing = {name: titles for name, titles in queried.items() if name not in exported}
    assert not missing, f"queried by the dashboard, not exported: {missing}"


def test_no_secret_is_exported(traffic: Traffic) -> None:
    exported = " ".join([*traffic.api, *traffic.worker])
    digest = hashlib.sha256(traffic.token.encode()).hexdigest()
    for secret in (SECRET, traffic.token, digest, traffic.token[:16]):
        assert secret not in exported


# The labels riskrank's metrics carry (scheduler/metrics.py and figures.py),
# a histogram's bucket (le), and the runtime's (python_info, gc: exported
# by a process without a multiprocess directory).
LABELS = {
    "provider",
    "result",
    "route",
    "code",
    "task",
    "outcome",
    "repository",
    "status",
    "by",
    "cause",
    "le",
    "quantile",
    "generation",
    "implementation",
    "major",
    "minor",
    "patchlevel",
    "version",
}


def test_labels_are_few_and_bounded(traffic: Traffic) -> None:
    """Never a commit, a test, a token or a path with an id in it: only the
    label names above, and values from a closed set or a repository."""
    commits = {HEAD, *(f"{build + 1:040x}" for build in range(BUILDS))}
    for series in (*traffic.api, *traffic.worker):
        for name, value in METRIC_LABEL.findall(series.partition("{")[2]):
            assert name in LABELS, series
            assert value not in commits, series
            assert "::" not in value, series
            assert "test_" not in value, series
            assert not re.fullmatch(r"[0-9a-f]{7,64}", value), series
            if name == "route":
                assert "{" in value or value.count("/") <= 2, series  # a template, not a path
            if name == "repository":
                assert value == REPO, series
