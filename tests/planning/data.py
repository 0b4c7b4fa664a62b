"""A small repository history for the plan service and API tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.db import Database
from scheduler.ingest.history import FileChange, HistoryReport
from scheduler.ingest.results import CaseResult
from scheduler.models import ChangedFile, FileStatus, Outcome, Provider, Repository
from scheduler.services import history, repos, runs, tokens

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


def report(build: int, failing: set[str], *, changed: tuple[str, ...] = ()) -> HistoryReport:
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
            for name, duration in TESTS.items()
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
