"""`riskrank status`, `events`, `tests`, `repo show`, `token` and the
`plans` alias, run as users run them: the installed command in a
subprocess, on SQLite and PostgreSQL with the real Redis broker; their
error paths (an unknown repository, event or token, a database or broker
that cannot be reached) with their messages and exit codes. And the
conventions every command keeps, read from the command tree itself."""

from __future__ import annotations

import itertools
import json
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import typer
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import select

from scheduler.backtest.runner import HALVES
from scheduler.cli import common, events
from scheduler.cli.backtest import Half
from scheduler.cli.main import app, unwrap
from scheduler.db import Database
from scheduler.models import (
    ApiToken,
    CiEvent,
    EventStatus,
    KnownTest,
    KnownTestStats,
    ModelStatus,
    Provider,
    Repository,
    RiskModel,
    SuiteRun,
)
from scheduler.planning.policy import BY, MODES
from scheduler.services import plans, tokens
from tests.e2e.conftest import clean_env
from tests.helpers import metric_key, metric_samples, queued_tasks
from tests.services.test_plan_evaluation import TESTS, make_plan, post
from tests.test_cli_outcomes import Ran, one_line, riskrank, run_together, unboxed

SHA = "c1" * 20  # the planned commit
RECEIVED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TRAINED = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
UNKNOWN = "error: repository acme/nope is not registered; run: riskrank repo add acme/nope\n"
DOWN_BROKER = "redis://127.0.0.1:1/0"


def _fill(database: Database) -> dict[str, int]:
    """acme/app with a plan of six tests (make_plan), one of them flaky, a
    failed and a handled event, and an active model; acme/empty with nothing."""
    make_plan(database, sha=SHA)
    with database.session() as session:
        repository = session.scalars(select(Repository).where(Repository.slug == "acme/app")).one()
        empty = Repository(
            provider=Provider.GITLAB, owner="acme", name="empty", slug="acme/empty", settings={}
        )
        session.add(empty)
        test_b = session.scalars(select(KnownTest).where(KnownTest.name.endswith("test_b"))).one()
        session.add(
            KnownTestStats(
                test_id=test_b.id,
                runs=10,
                failures=3,
                flips=4,
                flaky_runs=2,
                recent="",
                last_failure_at=RECEIVED,
            )
        )
        failed = CiEvent(
            provider=Provider.GITHUB,
            delivery_id="d-failed",
            event="push",
            repository_id=repository.id,
            payload={},
            status=EventStatus.FAILED,
            received_at=RECEIVED,
            attempts=10,
            error="malformed payload: no ref",
        )
        handled = CiEvent(
            provider=Provider.GITHUB,
            delivery_id="d-ping",
            event="ping",
            repository_id=repository.id,
            payload={},
            status=EventStatus.IGNORED,
            received_at=RECEIVED.replace(hour=10),
            handled_at=RECEIVED.replace(hour=10),
            attempts=1,
        )
        session.add_all([failed, handled])
        session.add(
            RiskModel(
                repository_id=repository.id,
                version=1,
                status=ModelStatus.ACTIVE,
                model_text="-",
                feature_names=[],
                params={},
                metrics={"candidate": {"mean_apfd": 0.75, "auc": 0.8125, "log_loss": 0.25}},
                created_at=TRAINED,
                promoted_at=TRAINED,
            )
        )
        session.flush()
        return {"failed": failed.id, "ignored": handled.id, "repository": repository.id}


@pytest.fixture
def filled(database: Database) -> dict[str, int]:
    return _fill(database)


def _json(ran: Ran) -> Any:
    assert ran.returncode == 0, ran.explain()
    return json.loads(ran.stdout)


def test_read_commands_as_json_text_and_their_refusals(
    db_url: str, redis_url: str, filled: dict[str, int], tmp_path: Path
) -> None:
    command = partial(
        riskrank,
        env=clean_env(RISKRANK_DATABASE_URL=db_url, RISKRANK_BROKER_URL=redis_url),
        cwd=tmp_path,
    )
    (
        status_json,
        status_text,
        events_all,
        events_failed,
        events_unknown,
        risky_json,
        risky_text,
        risky_unknown_commit,
        risky_bad_commit,
        risky_empty,
        flaky_json,
        flaky_text,
        flaky_unknown,
        show_json,
        show_text,
        show_unknown,
    ) = run_together(
        lambda: command("status", "--json"),
        lambda: command("status"),
        lambda: command("events", "list", "--json"),
        lambda: command("events", "list", "acme/app", "--status", "failed", "--json"),
        lambda: command("events", "list", "acme/nope"),
        lambda: command("tests", "risky", "acme/app", "--limit", "2", "--json"),
        lambda: command("tests", "risky", "acme/app", SHA[:7], "--limit", "3"),
        lambda: command("tests", "risky", "acme/app", "d00d"),
        lambda: command("tests", "risky", "acme/app", "HEAD"),
        lambda: command("tests", "risky", "acme/empty"),
        lambda: command("tests", "flaky", "acme/app", "--json"),
        lambda: command("tests", "flaky", "acme/app"),
        lambda: command("tests", "flaky", "acme/nope"),
        lambda: command("repo", "show", "acme/app", "--json"),
        lambda: command("repo", "show", "acme/app"),
        lambda: command("repo", "show", "acme/nope"),
    )

    status = _json(status_json)
    assert status["database"]["reachable"] is True
    assert status["database"]["revision"] == status["database"]["head"]
    assert status["broker"] == {
        "url": redis_url,
        "reachable": True,
        "error": None,
        "queue": "riskrank",
        "queued": 0,
    }
    assert status["waiting"] == {
        "events": {"pending": 0, "oldest_seconds": None, "failed": 1},
        "runs": {"pending": 0, "oldest_seconds": None, "failed": 0},
    }
    app_row, empty_row = status["repositories"]
    assert app_row["repository"] == "acme/app"
    assert app_row["last_event"] == {
        "received_at": "2026-12-01T10:30:00+00:00",
        "event": "ping",
        "status": "ignored",
    }
    assert app_row["last_results"] is None
    assert app_row["active_model"] == {
        "version": 1,
        "promoted_at": "2026-12-02T08:00:00+00:00",
        "apfd": 0.75,
        "auc": 0.8125,
        "log_loss": 0.25,
    }
    assert app_row["last_training"] == {
        "created_at": "2026-12-02T08:00:00+00:00",
        "version": 1,
        "status": "active",
    }
    assert app_row["counts"] == {
        "events": 2,
        "commits": 1,
        "runs": 0,
        "plans": 1,
        "models": 1,
        "tokens": 0,
        "tests": 6,
        "flaky_tests": 1,
        "builds": 0,
    }
    assert empty_row["repository"] == "acme/empty"
    assert empty_row["active_model"] is None
    assert empty_row["last_training"] is None

    assert status_text.returncode == 0, status_text.explain()
    assert status_text.stderr == ""
    text = " ".join(status_text.stdout.split())
    assert f"broker │ ok │ {redis_url}, 0 messages in queue riskrank" in text
    assert "CI events: 0 waiting for a worker; 1 given up" in text
    assert (
        "acme/app │ 2026-12-01 10:30 ping (ignored) │ - │ v1 │ 0.750 │ 0.812 │ "
        "2026-12-02 08:00 v1 (active)" in text
    )
    assert "acme/empty │ - │ - │ none (heuristic) │ - │ - │ never" in text

    listed = _json(events_all)
    assert [(row["id"], row["status"]) for row in listed] == [
        (filled["ignored"], "ignored"),
        (filled["failed"], "failed"),
    ]
    assert _json(events_failed) == [
        {
            "id": filled["failed"],
            "repository": "acme/app",
            "provider": "github",
            "event": "push",
            "action": None,
            "delivery_id": "d-failed",
            "status": "failed",
            "attempts": 10,
            "received_at": "2026-12-01T09:30:00+00:00",
            "handled_at": None,
            "error": "malformed payload: no ref",
            "summary": None,
        }
    ]

    risky = _json(risky_json)
    assert risky["commit"] == SHA
    assert risky["total"] == 6
    assert risky["model_version"] is None
    assert risky["tests"] == [
        {"rank": 1, "test": "tests/test_app.py::test_a", "probability": 0.5, "reason": "Reason 1"},
        {"rank": 2, "test": "tests/test_app.py::test_b", "probability": 0.25, "reason": "Reason 2"},
    ]
    assert risky_text.returncode == 0, risky_text.explain()
    text = " ".join(risky_text.stdout.split())
    assert "acme/app at c1c1c1c1c1c1: the 3 riskiest of 6 tests" in text
    assert "3 │ tests/test_app.py::test_c │ 0.167 │ Reason 3" in text

    assert _json(flaky_json) == [
        {
            "test": "tests/test_app.py::test_b",
            "flaky_runs": 2,
            "runs": 10,
            "failures": 3,
            "flips": 4,
            "last_failure_at": "2026-12-01T09:30:00+00:00",
        }
    ]
    assert flaky_text.returncode == 0
    assert "tests/test_app.py::test_b │ 2 │ 10 │ 3 │ 4 │ 2026-12-01 09:30" in " ".join(
        flaky_text.stdout.split()
    )

    shown = _json(show_json)
    assert shown == app_row | {"webhook_secret": True, "pulls_results": False, "settings": {}}
    assert show_text.returncode == 0
    text = " ".join(show_text.stdout.split())
    assert "active model │ v1: APFD 0.750, AUC 0.812, log loss 0.250 (on held-out builds)" in text
    assert "flaky tests │ 1" in text

    for refused in (events_unknown, flaky_unknown, show_unknown):
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", UNKNOWN)
    assert risky_unknown_commit.returncode == 1
    assert risky_unknown_commit.stderr.startswith("error: ")
    assert risky_bad_commit.returncode == 2
    assert risky_empty.returncode == 1
    assert risky_empty.stderr == (
        "error: riskrank has planned no commit of acme/empty yet (a worker scores a "
        "commit after its push, the plan API on request)\n"
    )


def test_events_replay_requeues_once_committed_and_says_when_it_cannot(
    db_url: str,
    redis_url: str,
    redis_server: redis.Redis,
    database: Database,
    filled: dict[str, int],
    tmp_path: Path,
) -> None:
    env = clean_env(RISKRANK_DATABASE_URL=db_url, RISKRANK_BROKER_URL=redis_url)
    command = partial(riskrank, env=env, cwd=tmp_path)
    event_id = filled["failed"]

    replayed = command("events", "replay", str(event_id))
    assert (replayed.returncode, replayed.stderr) == (0, ""), replayed.explain()
    assert replayed.stdout == f"event {event_id} queued again (it was failed)\n"
    assert queued_tasks(redis_server) == [("events.process", [event_id])]
    with database.session() as session:
        event = session.get(CiEvent, event_id)
        assert event is not None
        assert (event.status, event.attempts, event.error, event.handled_at) == (
            EventStatus.PENDING,
            0,
            None,
            None,
        )

    again, missing = run_together(
        lambda: command("events", "replay", str(event_id)),
        lambda: command("events", "replay", "999999"),
    )
    # Idempotent: pending again, one more message, which the task handles once.
    assert again.stdout == f"event {event_id} queued again (it was pending)\n"
    assert queued_tasks(redis_server) == [("events.process", [event_id])] * 2
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "error: no CI event 999999 (see `riskrank events list`)\n"
    # The queue's depth and what waits, as `status` reads them.
    status = json.loads(command("status", "--json").stdout)
    assert status["broker"]["queued"] == 2
    assert status["waiting"]["events"]["pending"] == 1
    assert status["waiting"]["events"]["failed"] == 0

    down = riskrank(
        "events",
        "replay",
        str(filled["ignored"]),
        env=env | {"RISKRANK_BROKER_URL": DOWN_BROKER},
        cwd=tmp_path,
    )
    assert down.returncode == common.UNAVAILABLE
    assert down.stderr.endswith(
        f"error: event {filled['ignored']} is pending again but the broker {DOWN_BROKER} "
        "cannot be reached: the sweeper queues it once the broker is back\n"
    )
    with database.session() as session:
        event = session.get(CiEvent, filled["ignored"])
        assert event is not None
        assert event.status is EventStatus.PENDING


def test_services_down_exit_4_saying_which(sqlite_url: str, tmp_path: Path) -> None:
    dead_database = "postgresql+psycopg://riskrank:hunter2@127.0.0.1:1/riskrank"
    shown = "postgresql+psycopg://riskrank:***@127.0.0.1:1/riskrank"
    env = clean_env(RISKRANK_DATABASE_URL=sqlite_url, RISKRANK_BROKER_URL=DOWN_BROKER)
    broker_down, database_down, show_down, events_down, upgrade_down = run_together(
        lambda: riskrank("status", "--json", env=env, cwd=tmp_path),
        lambda: riskrank(
            "status", env=env | {"RISKRANK_DATABASE_URL": dead_database}, cwd=tmp_path
        ),
        lambda: riskrank(
            "repo",
            "show",
            "acme/app",
            env=env | {"RISKRANK_DATABASE_URL": dead_database},
            cwd=tmp_path,
        ),
        lambda: riskrank(
            "events", "list", env=env | {"RISKRANK_DATABASE_URL": dead_database}, cwd=tmp_path
        ),
        lambda: riskrank(
            "db", "upgrade", env=env | {"RISKRANK_DATABASE_URL": dead_database}, cwd=tmp_path
        ),
    )
    refused = "Error 111 connecting to 127.0.0.1:1. Connection refused."
    assert broker_down.returncode == common.UNAVAILABLE
    assert broker_down.stderr == f"error: cannot reach the broker {DOWN_BROKER}: {refused}\n"
    document = json.loads(broker_down.stdout)
    assert document["broker"] == {"url": DOWN_BROKER, "reachable": False, "error": refused}
    assert document["database"]["reachable"] is True

    assert database_down.returncode == common.UNAVAILABLE
    assert database_down.stderr.startswith(f"error: cannot reach the database {shown}: ")
    assert f"; cannot reach the broker {DOWN_BROKER}: {refused}\n" in database_down.stderr
    for ran in (show_down, events_down, upgrade_down):
        assert ran.returncode == common.UNAVAILABLE, ran.explain()
        assert ran.stdout == ""
        assert ran.stderr.startswith(
            f"error: cannot reach the database {shown}: connection failed: "
        )
        assert "hunter2" not in ran.stderr + database_down.stdout + database_down.stderr


def test_tokens_by_owner_name_their_refusals_and_the_former_spellings(
    db_url: str, database: Database, tmp_path: Path
) -> None:
    make_plan(database, sha=SHA)
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path)
    created = command("token", "create", "acme/app", "--scope", "plans:read", "--name", "ci")
    assert created.returncode == 0, created.explain()
    token = created.stdout.split("token: ", 1)[1].strip()
    with database.session() as session:
        (token_id,) = session.scalars(select(ApiToken.id)).all()
    (
        listed,
        listed_before,
        bad_scope,
        unknown_repo,
        no_repo,
        unknown_id,
        not_a_number,
        plans_alias,
        plan_log,
    ) = run_together(
        lambda: command("token", "list", "acme/app", "--json"),
        lambda: command("token", "list", "--repo", "acme/app", "--json"),
        lambda: command("token", "create", "acme/app", "--scope", "admin"),
        lambda: command("token", "create", "acme/nope"),
        lambda: command("token", "list"),
        lambda: command("token", "revoke", "acme/app", "999"),
        lambda: command("token", "revoke", "acme/app", "first"),
        lambda: command("plans", "show", "acme/app", SHA, "--json"),
        lambda: command("plan-log", "show", "acme/app", SHA, "--json"),
    )
    assert _json(listed) == _json(listed_before)
    assert [(row["id"], row["scopes"]) for row in _json(listed)] == [(token_id, ["plans:read"])]
    assert token not in listed.stdout
    assert (bad_scope.returncode, bad_scope.stdout) == (2, "")
    assert "Invalid value for '--scope': 'admin' is not one of" in unboxed(bad_scope.stderr)
    assert (unknown_repo.returncode, unknown_repo.stderr) == (1, UNKNOWN)
    assert (no_repo.returncode, no_repo.stderr) == (2, "error: missing argument OWNER/NAME\n")
    assert (unknown_id.returncode, unknown_id.stderr) == (1, "error: acme/app has no token 999\n")
    assert not_a_number.returncode == 2
    assert not_a_number.stderr == (
        "error: the token's ID must be a number, from `riskrank token list`: first\n"
    )
    assert _json(plans_alias) == _json(plan_log)

    revoked, revoked_before = run_together(
        lambda: command("token", "revoke", "acme/app", str(token_id)),
        lambda: command("token", "revoke", str(token_id), "--repo", "acme/app"),
    )
    assert revoked.stdout == revoked_before.stdout == f"token {token_id} revoked\n"


def test_models_promote_and_rollback_counted_as_an_operators_and_their_refusals(
    db_url: str, database: Database, filled: dict[str, int], tmp_path: Path
) -> None:
    """promote and rollback through the installed command, counted in the
    multiprocess directory they share with the api (`docker compose exec api
    riskrank models rollback`); what they refuse changes and counts nothing."""
    with database.session() as session:
        session.add(
            RiskModel(
                repository_id=filled["repository"],
                version=2,
                status=ModelStatus.CANDIDATE,
                model_text="-",
                feature_names=[],
                params={},
                metrics={},
                created_at=TRAINED.replace(hour=9),
            )
        )
    directory = tmp_path / "metrics"
    env = clean_env(RISKRANK_DATABASE_URL=db_url, PROMETHEUS_MULTIPROC_DIR=str(directory))
    command = partial(riskrank, env=env, cwd=tmp_path)

    def statuses() -> list[tuple[int, ModelStatus]]:
        with database.session() as session:
            rows = session.execute(
                select(RiskModel.version, RiskModel.status)
                .where(RiskModel.repository_id == filled["repository"])
                .order_by(RiskModel.version)
            )
            return [(version, status) for version, status in rows]

    promoted = command("models", "promote", "acme/app", "2")
    assert (promoted.returncode, promoted.stdout) == (0, "model v2 is active\n"), promoted.explain()
    assert statuses() == [(1, ModelStatus.RETIRED), (2, ModelStatus.ACTIVE)]
    rolled_back = command("models", "rollback", "acme/app")
    assert (rolled_back.returncode, rolled_back.stdout) == (0, "model v1 is active again\n")
    assert statuses() == [(1, ModelStatus.ACTIVE), (2, ModelStatus.RETIRED)]

    dead_database = "postgresql+psycopg://riskrank:hunter2@127.0.0.1:1/riskrank"
    (
        first,
        no_version,
        not_a_number,
        unknown_promote,
        unknown_rollback,
        none_active,
        promote_down,
        train_unknown,
        train_nothing,
        show_nothing,
    ) = run_together(
        lambda: command("models", "rollback", "acme/app"),
        lambda: command("models", "promote", "acme/app", "9"),
        lambda: command("models", "promote", "acme/app", "two"),
        lambda: command("models", "promote", "acme/nope", "1"),
        lambda: command("models", "rollback", "acme/nope"),
        lambda: command("models", "rollback", "acme/empty"),
        lambda: riskrank(
            "models",
            "promote",
            "acme/app",
            "2",
            env=env | {"RISKRANK_DATABASE_URL": dead_database},
            cwd=tmp_path,
        ),
        lambda: command("train", "acme/nope"),
        lambda: command("train", "acme/empty", "--json"),
        lambda: command("models", "show", "acme/empty"),
    )
    assert (first.returncode, first.stdout) == (1, "")
    assert first.stderr == "error: v1 is the first model that was active\n"
    assert (no_version.returncode, no_version.stderr) == (
        1,
        "error: there is no model version 9\n",
    )
    assert (not_a_number.returncode, not_a_number.stdout) == (2, "")
    assert "Invalid value for 'VERSION'" in unboxed(not_a_number.stderr)
    for refused in (unknown_promote, unknown_rollback, train_unknown):
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", UNKNOWN)
    assert (none_active.returncode, none_active.stderr) == (
        1,
        "error: no model is active: nothing to roll back\n",
    )
    assert promote_down.returncode == common.UNAVAILABLE, promote_down.explain()
    assert promote_down.stderr.startswith("error: cannot reach the database ")
    assert "hunter2" not in promote_down.stderr
    assert (train_nothing.returncode, train_nothing.stdout) == (1, "")
    assert train_nothing.stderr.endswith(
        "error: no test outcomes yet: import a history or send results first\n"
    )
    assert (show_nothing.returncode, show_nothing.stdout, show_nothing.stderr) == (
        1,
        "",
        "error: no model yet: run `riskrank train`\n",
    )
    assert statuses() == [(1, ModelStatus.ACTIVE), (2, ModelStatus.RETIRED)]

    # What the api's /metrics adds up from the directory: one of each, by an operator.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    samples = metric_samples(generate_latest(registry).decode())
    assert samples[metric_key('riskrank_model_promotions_total{by="operator"}')] == 1
    assert samples[metric_key('riskrank_model_promotions_total{by="training"}')] == 0
    assert samples["riskrank_model_rollbacks_total"] == 1


def test_a_name_registered_for_two_providers_is_told_apart_with_provider(
    db_url: str, database: Database, tmp_path: Path
) -> None:
    make_plan(database, sha=SHA)  # acme/app on GitHub
    with database.session() as session:
        gitlab_app = Repository(
            provider=Provider.GITLAB, owner="acme", name="app", slug="acme/app", settings={}
        )
        session.add(gitlab_app)
        session.flush()
        session.add(  # what tells the two apart: the GitLab one has a model
            RiskModel(
                repository_id=gitlab_app.id,
                version=3,
                status=ModelStatus.ACTIVE,
                model_text="-",
                feature_names=[],
                params={},
                metrics={},
                created_at=TRAINED,
                promoted_at=TRAINED,
            )
        )
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path)
    ambiguous, github, gitlab = run_together(
        lambda: command("repo", "status", "acme/app"),
        lambda: command("repo", "status", "acme/app", "--provider", "github", "--json"),
        lambda: command("repo", "status", "acme/app", "--provider", "gitlab", "--json"),
    )
    assert (ambiguous.returncode, ambiguous.stdout) == (1, ""), ambiguous.explain()
    assert ambiguous.stderr == (
        "error: acme/app exists for several providers; name one with --provider\n"
    )
    assert [
        (_json(ran)["repository"], _json(ran)["model_version"]) for ran in (github, gitlab)
    ] == [
        ("acme/app", None),
        ("acme/app", 3),
    ]


def test_status_and_repo_show_give_the_last_results(
    db_url: str, redis_url: str, database: Database, filled: dict[str, int], tmp_path: Path
) -> None:
    run_id = post(database, None, [(TESTS[0], "passed"), (TESTS[1], "failed")], sha=SHA)
    with database.session() as session:
        received_at = session.get_one(SuiteRun, run_id).received_at
    when = received_at.replace(tzinfo=UTC).isoformat()
    command = partial(
        riskrank,
        env=clean_env(RISKRANK_DATABASE_URL=db_url, RISKRANK_BROKER_URL=redis_url),
        cwd=tmp_path,
    )
    status_json, status_text, show_json, show_text = run_together(
        lambda: command("status", "--json"),
        lambda: command("status"),
        lambda: command("repo", "show", "acme/app", "--json"),
        lambda: command("repo", "show", "acme/app"),
    )
    last = {"received_at": when, "status": "ingested", "tests": 2}
    app_row = _json(status_json)["repositories"][0]
    assert (app_row["repository"], app_row["last_results"]) == ("acme/app", last)
    assert app_row["counts"]["runs"] == 1
    assert _json(show_json)["last_results"] == last
    minute = when[:16].replace("T", " ")
    assert status_text.returncode == show_text.returncode == 0
    assert f"│ {minute} (ingested) │" in " ".join(status_text.stdout.split())
    assert f"last results (UTC) │ {minute} (ingested, 2 tests)" in " ".join(
        show_text.stdout.split()
    )


# --- the conventions, read from the command tree ----------------------------

READ_COMMANDS = {
    "status",
    "plan-log show",
    "models list",
    "models show",
    "events list",
    "tests risky",
    "tests flaky",
    "repo list",
    "repo show",
    "repo status",
    "repo settings",
    "token list",
    "db prune",
    "db current",
    "train",
}


# Typer carries its own copy of Click: its classes are read by what they have.
def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            yield from _commands(command, f"{path} ")
        else:
            yield path, command


def test_every_command_and_option_says_what_it_does() -> None:
    root: Any = typer.main.get_command(app)
    commands = dict(_commands(root))
    assert set(commands) >= READ_COMMANDS
    for path, command in commands.items():
        assert command.help, f"{path}: no help"
        assert command.help == unwrap(command.help), f"{path}: a line break mid-paragraph"
        for parameter in command.params:
            if parameter.name == "help":
                continue
            assert getattr(parameter, "help", None), f"{path}: {parameter.name} has no help"
        # A repository is OWNER/NAME everywhere, with --provider for a name
        # registered for several.
        metavars = {getattr(p, "metavar", None) for p in command.params}
        options = {opt for p in command.params for opt in getattr(p, "opts", ())}
        if "OWNER/NAME" in metavars:
            assert "--provider" in options, f"{path}: OWNER/NAME without --provider"
        json_options = [p for p in command.params if "--json" in getattr(p, "opts", ())]
        if path in READ_COMMANDS:
            assert len(json_options) == 1, f"{path}: no --json"
            (option,) = json_options
            assert option.is_flag, path
    # The former name of plan-log works (test above) but is not listed.
    assert "plans" not in root.commands
    assert root.get_command(typer.Context(root), "plans").name == "plan-log"
    assert "--json-out" in {
        opt for p in commands["backtest"].params for opt in getattr(p, "opts", ())
    }


def test_the_choices_are_the_policys_the_backtests_and_the_registrys() -> None:
    assert tuple(mode.value for mode in common.Mode) == MODES
    assert tuple(by.value for by in common.By) == BY
    assert {half.value for half in Half} == set(HALVES)
    assert [scope.value for scope in common.Scope] == [scope.value for scope in tokens.Scope]
    assert [key.value for key in common.Setting] == list(plans.SETTING_TYPES)
    assert {status.value for status in events.Status} == {status.value for status in EventStatus}
    assert typing.get_args(common.JsonFlag)[0] is bool


def test_the_help_lists_the_choices_of_a_closed_set(tmp_path: Path) -> None:
    command = partial(riskrank, env=clean_env(), cwd=tmp_path, columns="300")
    token_help, settings_help = run_together(
        lambda: command("token", "create", "--help"),
        lambda: command("repo", "settings", "--help"),
    )
    assert token_help.returncode == settings_help.returncode == 0
    assert "--scope <results:write|plans:read>" in one_line(token_help.stdout)
    keys = "|".join(common.Setting)
    # Rich wraps a metavar this long within its column, whatever the width:
    # read the column back, line by line, up to the next option.
    lines = settings_help.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "--unset " in line)
    start, end = lines[first].index("<"), lines[first].index("Back to the default")
    rows = itertools.takewhile(lambda line: "--provider" not in line, lines[first:])
    assert "".join(line[start:end].strip() for line in rows) == f"<{keys}>"


def test_exit_codes_are_documented_where_people_look() -> None:
    root = typer.main.get_command(app)
    epilog = root.epilog or ""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "admin-cli.md").read_text()
    for code, meaning in common.EXIT_CODES.items():
        assert f"{code}  {meaning}" in epilog
        assert f"| {code} |" in docs


def _repository_commands(history: Path) -> dict[str, list[str]]:
    """Each command with an OWNER/NAME argument (read from the command tree,
    so a new one is included), its arguments filled: the repository
    acme/nope, and a commit, a version, a token id or `history`."""
    root: Any = typer.main.get_command(app)
    filler = {"sha": SHA, "version": "1", "second": "1", "file": str(history)}
    argvs = {}
    for path, command in _commands(root):
        positional = [p for p in command.params if not getattr(p, "opts", ["-"])[0].startswith("-")]
        if not any(p.metavar == "OWNER/NAME" for p in positional):
            continue
        values = ["acme/nope" if p.metavar == "OWNER/NAME" else filler[p.name] for p in positional]
        argvs[path] = [*path.split(), *values]
    assert len(argvs) >= 21, sorted(argvs)
    return argvs


def test_every_command_naming_a_repository_refuses_an_unknown_one_alike(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Run with an unregistered name: exit 1, one line naming it and how to
    register it, nothing on stdout. `repo add` registers it: left out."""
    history = tmp_path / "history.jsonl"
    history.write_text("")
    runs = _repository_commands(history)
    del runs["repo add"]
    env = clean_env(RISKRANK_DATABASE_URL=sqlite_url)
    ran = run_together(*(partial(riskrank, *argv, env=env, cwd=tmp_path) for argv in runs.values()))
    for path, result in zip(runs, ran, strict=True):
        assert (result.returncode, result.stdout) == (1, ""), f"{path}: {result.explain()}"
        assert result.stderr.startswith(UNKNOWN.rstrip("\n")), f"{path}: {result.stderr}"


def test_every_database_command_says_the_database_cannot_be_reached_alike(
    tmp_path: Path,
) -> None:
    """The database down (its password hidden): exit 4, one line, nothing on
    stdout, for every command that reads or writes it."""
    dead_database = "postgresql+psycopg://riskrank:hunter2@127.0.0.1:1/riskrank"
    shown = "postgresql+psycopg://riskrank:***@127.0.0.1:1/riskrank"
    history = tmp_path / "history.jsonl"
    history.write_text("")
    runs = _repository_commands(history) | {
        "status": ["status"],
        "events replay": ["events", "replay", "1"],
        "repo list": ["repo", "list"],
        "db current": ["db", "current"],
        "db prune": ["db", "prune"],
        "db upgrade": ["db", "upgrade"],
    }
    env = clean_env(RISKRANK_DATABASE_URL=dead_database, RISKRANK_BROKER_URL=DOWN_BROKER)
    ran = run_together(*(partial(riskrank, *argv, env=env, cwd=tmp_path) for argv in runs.values()))
    for path, result in zip(runs, ran, strict=True):
        assert result.returncode == common.UNAVAILABLE, f"{path}: {result.explain()}"
        assert result.stdout == "" or path == "status", f"{path}: {result.stdout}"
        assert result.stderr.startswith(f"error: cannot reach the database {shown}: "), path
        assert result.stderr.count("\n") == 1 or path == "status", f"{path}: {result.stderr}"
        assert "hunter2" not in result.stdout + result.stderr, path
