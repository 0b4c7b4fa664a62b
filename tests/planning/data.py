"""A small repository history for the plan service and API tests."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select, update

from scheduler.db import Database
from scheduler.ingest.history import FileChange, HistoryReport
from scheduler.ingest.results import CaseResult
from scheduler.models import (
    ChangedFile,
    FileStatus,
    KnownTest,
    ModelStatus,
    Outcome,
    Provider,
    Repository,
    RiskModel,
)
from scheduler.risk.features import FEATURE_NAMES
from scheduler.risk.training import train_model
from scheduler.services import history, plan_evaluation, repos, runs, tokens

T0 = datetime(2024, 3, 1, tzinfo=UTC)
# name -> duration (seconds)
TESTS = {
    "tests/test_io.py::test_read": 1.0,
    "tests/test_io.py::test_write": 2.0,
    "tests/test_net.py::test_get": 4.0,
    "tests/test_net.py::test_post": 0.5,
    "tests/test_ui.py::test_click": 8.0,
    "tests/test_ui.py::test_scroll": 3.0,
    "tests/test_db.py::test_query": 0.2,
    "tests/test_db.py::test_migrate": 6.0,
}
NAMES = list(TESTS)
FLAKY = "tests/test_net.py::test_get"  # fails in builds 2 and 3
SHA = "ab" * 20


def report(
    build: int,
    failing: set[str],
    *,
    changed: tuple[str, ...] = (),
    tests: Mapping[str, float] = TESTS,
) -> HistoryReport:
    """Build `build` of `tests` (name -> duration): `failing` fail, the rest pass."""
    return HistoryReport(
        build=str(build),
        commit=f"{build:040x}",
        time=T0 + timedelta(hours=build),
        branch="main",
        changed_files=tuple(FileChange(path, FileStatus.MODIFIED) for path in changed),
        results=tuple(
            CaseResult(
                test=name,
                outcome=Outcome.FAILED if name in failing else Outcome.PASSED,
                duration=duration,
                file=name.split("::")[0],
            )
            for name, duration in tests.items()
        ),
    )


def make_repository(database: Database, *, settings: dict[str, object] | None = None) -> int:
    """acme/app with three builds of history (builds 2 and 3 fail FLAKY)."""
    with database.session() as session:
        repository = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        repository.default_branch = "main"
        repository.settings = dict(settings or {})
        repository_id = repository.id
    reports = [
        report(1, set()),
        report(2, {FLAKY}),
        report(3, {FLAKY}, changed=("src/net.py",)),
        *(report(build, set()) for build in range(4, 7)),
    ]
    history.import_history(database, repository_id=repository_id, reports=reports)
    return repository_id


def make_tokens(database: Database) -> dict[str, str]:
    with database.session() as session:
        app = repos.find_repository(session, provider=Provider.GITHUB, full_name="acme/app")
        assert app is not None
        other = repos.add_repository(session, provider=Provider.GITHUB, full_name="acme/other")
        return {
            "plans": tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.PLANS_READ,), name="ci"
            ).token,
            "results-only": tokens.create_token(
                session, repository=app, scopes=(tokens.Scope.RESULTS_WRITE,), name="up"
            ).token,
            "other": tokens.create_token(
                session, repository=other, scopes=tokens.DEFAULT_SCOPES, name="ci"
            ).token,
        }


def add_commit(
    database: Database, repository_id: int, sha: str = SHA, *paths: str, branch: str = "main"
) -> int:
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        commit_id = runs.ensure_commit(session, repository=repository, sha=sha, branch=branch)
        for path in paths:
            session.add(ChangedFile(commit_id=commit_id, path=path, status=FileStatus.MODIFIED))
        return commit_id


@functools.cache
def synthetic_model() -> str:
    """A model trained on synthetic rows (as tests/services/test_scoring.py
    does): failures follow last_failed. Trained once per test session."""
    rng = np.random.default_rng(3)
    rows = 4000
    features = rng.random((rows, len(FEATURE_NAMES))).astype(np.float32)
    last_failed = FEATURE_NAMES.index("last_failed")
    features[:, last_failed] = rng.random(rows) < 0.1
    labels = (features[:, last_failed] > 0) & (rng.random(rows) < 0.7)
    builds = np.repeat(np.arange(rows // 20), 20)
    return train_model(features, labels, builds, FEATURE_NAMES).model_text


def add_model(database: Database, repository_id: int, *, text: str | None = None) -> int:
    """A new active model (the previous active one retired), as the registry
    promotes one; its id."""
    with database.session() as session:
        version = 1 + (
            session.scalar(
                select(func.max(RiskModel.version)).where(RiskModel.repository_id == repository_id)
            )
            or 0
        )
        session.execute(
            update(RiskModel)
            .where(RiskModel.repository_id == repository_id, RiskModel.status == ModelStatus.ACTIVE)
            .values(status=ModelStatus.RETIRED)
        )
        model = RiskModel(
            repository_id=repository_id,
            version=version,
            status=ModelStatus.ACTIVE,
            model_text=synthetic_model() if text is None else text,
            feature_names=list(FEATURE_NAMES),
            params={},
        )
        session.add(model)
        session.flush()
        return model.id


def recorded(
    database: Database, plan_id: int
) -> dict[str, tuple[bool | None, float | None, str | None]]:
    """What the decision recorded on a plan says of each of its tests, by
    name: (selected, propensity, rule), all None for one not collected or
    before any policy was applied."""
    with database.session() as session:
        names = dict(session.execute(select(KnownTest.id, KnownTest.name)).all())
        return {
            names[test.test_id]: (test.selected, test.propensity, test.rule)
            for test in plan_evaluation.planned_tests(session, plan_id)
        }
