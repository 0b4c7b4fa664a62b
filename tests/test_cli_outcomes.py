"""`riskrank token`, `import` and `export`, run as users run them: the
installed command in a subprocess, against a migrated database. (Uploads are
the light client's: clients/riskrank-client/tests.)

Every command start costs over a second of imports, so commands that do not
depend on each other run side by side (`run_together`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.models import (
    ApiToken,
    ChangedFile,
    Commit,
    Execution,
    FileStatus,
    FileTestLink,
    KnownTest,
    KnownTestStats,
    Outcome,
    Provider,
    Repository,
    RunSource,
    RunStatus,
    SuiteRun,
)
from scheduler.risk.links import HALF_LIFE_BUILDS
from scheduler.services import repos, tokens
from tests.conftest import empty_all_tables, stored_links
from tests.e2e.conftest import RISKRANK, clean_env

# --- running the command ------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    ended: float  # time.monotonic() when it exited

    def explain(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def riskrank(*arguments: str, env: dict[str, str], cwd: Path, columns: str | None = "200") -> Ran:
    """One `riskrank` command; `columns=None` leaves the width to the command
    (80 columns for Rich when the output is not a terminal, as in CI)."""
    env = {key: value for key, value in env.items() if key != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    started = time.monotonic()
    done = subprocess.run(
        [RISKRANK, *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    ended = time.monotonic()
    return Ran(done.returncode, done.stdout, done.stderr, ended - started, ended)


def run_together(*commands: Callable[[], Ran]) -> list[Ran]:
    """Independent commands side by side (each one is mostly import time)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda command: command(), commands))


def one_line(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


def unboxed(output: str) -> str:
    """A usage error as Typer prints it, in Rich's box: its rules taken out,
    its wrapping undone."""
    return one_line(re.sub(r"[\u2500-\u257f]", " ", output))


# --- reading the database -----------------------------------------------------


def repository_id(session: Session, full_name: str) -> int:
    found = session.scalar(select(Repository.id).where(Repository.slug == full_name.lower()))
    assert found is not None, f"{full_name} is not registered"
    return found


def count(session: Session, model: Any, repository: int) -> int:
    """Rows of `model` that belong to one repository."""
    query = select(func.count()).select_from(model)
    if model is Execution:
        query = query.join(SuiteRun, SuiteRun.id == Execution.run_id).where(
            SuiteRun.repository_id == repository
        )
    elif model is ChangedFile:
        query = query.join(Commit, Commit.id == ChangedFile.commit_id).where(
            Commit.repository_id == repository
        )
    elif model is KnownTestStats:
        query = query.join(KnownTest, KnownTest.id == KnownTestStats.test_id).where(
            KnownTest.repository_id == repository
        )
    else:
        query = query.where(model.repository_id == repository)
    return int(session.scalar(query) or 0)


def counts(session: Session, repository: int) -> dict[str, int]:
    return {
        "commits": count(session, Commit, repository),
        "changed_files": count(session, ChangedFile, repository),
        "test_runs": count(session, SuiteRun, repository),
        "executions": count(session, Execution, repository),
        "known_tests": count(session, KnownTest, repository),
        "test_stats": count(session, KnownTestStats, repository),
        "file_test_links": count(session, FileTestLink, repository),
    }


# Every test_stats column but the key and updated_at (read from the table, so
# a column added later is compared too).
STATS_COLUMNS = [
    column.name
    for column in KnownTestStats.__table__.columns
    if column.name not in ("test_id", "updated_at")
]


def stats_by_test(session: Session, repository: int) -> dict[str, dict[str, Any]]:
    """Each test's statistics by test name. `last_build` holds the database id
    of the commit ("<commit id>/<run key>"), which differs from one
    repository (or database) to another: it is shown with the commit's sha."""
    shas = {
        str(commit_id): sha
        for commit_id, sha in session.execute(
            select(Commit.id, Commit.sha).where(Commit.repository_id == repository)
        )
    }
    table = KnownTestStats.__table__
    rows = session.execute(
        select(KnownTest.name, *(table.c[name] for name in STATS_COLUMNS))
        .join(KnownTest, KnownTest.id == table.c.test_id)
        .where(KnownTest.repository_id == repository)
    ).all()
    stats = {}
    for name, *values in rows:
        row = dict(zip(STATS_COLUMNS, values, strict=True))
        if row["last_build"] is not None:
            commit_id, _, key = row["last_build"].partition("/")
            row["last_build"] = f"{shas[commit_id]}/{key}"
        stats[name] = row
    return stats


def rows(session: Session, query: Any) -> set[tuple[Any, ...]]:
    return {tuple(row) for row in session.execute(query)}


def file_test_links(session: Session, repository: int) -> set[tuple[Any, ...]]:
    return {(*key, *values) for key, values in stored_links(session, repository).items()}


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the history tables, in key order."""
    tables = [
        Repository,
        Commit,
        ChangedFile,
        SuiteRun,
        Execution,
        KnownTest,
        KnownTestStats,
        FileTestLink,
    ]
    with database.session() as session:
        return {
            model.__tablename__: [
                tuple(row)
                for row in session.execute(
                    select(model.__table__).order_by(*model.__table__.primary_key)
                )
            ]
            for model in tables
        }


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment).astimezone(UTC)


# --- 1. riskrank token ----------------------------------------------------------

TOKEN_LINE = re.compile(r"^token: (rr_[A-Za-z0-9_-]{43})$", re.MULTILINE)


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """The SQLite database alone, emptied, for what runs once: on the
    embedded default. (Import, whose SQL differs by dialect, runs on both.)"""
    database = Database.from_url(sqlite_url)
    empty_all_tables(database)
    yield database
    database.dispose()


def test_token_is_shown_once_stored_as_a_hash_listed_and_revoked(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    database = sqlite_database
    with database.session() as session:
        widgets = repos.add_repository(session, provider=Provider.GITHUB, full_name="Octo/Widgets")
        repos.add_repository(session, provider=Provider.GITHUB, full_name="octo/other")
        other = tokens.create_token(
            session, repository=widgets, scopes=tokens.DEFAULT_SCOPES, name="other"
        ).record.id
        widgets_id = widgets.id
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=sqlite_url), cwd=tmp_path)

    created, repeated, bad_scope, unknown_repo, wrong_repo = run_together(
        partial(
            command,
            "token",
            "create",
            "--repo",
            "octo/widgets",
            "--scope",
            "results:write",
            "--name",
            "ci-main",
        ),
        partial(
            command,
            "token",
            "create",
            "--repo",
            "octo/widgets",
            "--scope",
            "plans:read",
            "--scope",
            "results:write,plans:read",
        ),
        partial(command, "token", "create", "--repo", "octo/widgets", "--scope", "admin"),
        partial(command, "token", "create", "--repo", "octo/nowhere"),
        partial(command, "token", "revoke", str(other), "--repo", "octo/other"),
    )
    assert created.returncode == 0, created.explain()
    found = TOKEN_LINE.search(created.stdout)
    assert found, created.explain()
    token = found[1]
    assert created.stdout.count(token) == 1  # printed once
    assert "token for Octo/Widgets (results:write)" in one_line(created.stdout)
    assert "plans:read" not in created.stdout
    assert token not in created.stderr

    assert repeated.returncode == 0, repeated.explain()
    assert "token for Octo/Widgets (plans:read, results:write)" in one_line(repeated.stdout)

    assert bad_scope.returncode == 2  # a usage error: --scope is a choice
    assert (
        "Invalid value for '--scope': 'admin' is not one of 'results:write', 'plans:read'."
    ) in unboxed(bad_scope.stderr)
    assert unknown_repo.returncode == 1
    assert (
        "error: repository octo/nowhere is not registered; run: riskrank repo add octo/nowhere"
        in one_line(unknown_repo.stderr)
    )
    # A token is revoked through its own repository only.
    assert wrong_repo.returncode == 1
    assert f"error: octo/other has no token {other}" in one_line(wrong_repo.stderr)
    for refused in (bad_scope, unknown_repo, wrong_repo):
        assert "token:" not in refused.stdout
        assert "revoked" not in refused.stdout
        assert "Traceback" not in refused.stderr

    with database.session() as session:
        [record] = session.scalars(select(ApiToken).where(ApiToken.name == "ci-main")).all()
        assert record.repository_id == widgets_id
        assert record.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert record.prefix == token[:10]
        assert record.scopes == ["results:write"]
        assert record.revoked_at is None
        # The secret part of the token is nowhere in the table, in any column.
        stored = session.execute(text("SELECT * FROM api_tokens")).all()
        assert len(stored) == 3  # nothing made by the refused commands
        for row in stored:
            for value in row:
                assert token[10:] not in str(value)
        assert tokens.authenticate(session, authorization=f"Bearer {token}").id == record.id
        assert session.get_one(ApiToken, other).revoked_at is None
        token_id = record.id

    # Listing never shows the token, whether or not it is being revoked.
    revoked, listed = run_together(
        partial(command, "token", "revoke", str(token_id), "--repo", "Octo/Widgets"),
        partial(command, "token", "list", "--repo", "octo/widgets", "--json"),
    )
    assert revoked.returncode == 0, revoked.explain()
    assert f"token {token_id} revoked" in revoked.stdout
    with database.session() as session:
        assert session.get_one(ApiToken, token_id).revoked_at is not None
        with pytest.raises(tokens.NotAuthenticated, match="unknown or revoked"):
            tokens.authenticate(session, authorization=f"Bearer {token}")
        assert session.get_one(ApiToken, other).revoked_at is None

    assert listed.returncode == 0, listed.explain()
    assert token[10:] not in listed.stdout
    by_name = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(by_name) == {"other", "ci-main", "ci"}
    row = by_name["ci-main"]
    assert row["id"] == token_id
    assert row["prefix"] == token[:10]
    assert row["scopes"] == ["results:write"]
    assert row["revoked"] in (False, True)
    assert row["last_used_at"] is None
    assert datetime.fromisoformat(row["created_at"])
    assert by_name["other"]["revoked"] is False
    assert by_name["other"]["scopes"] == ["results:write", "plans:read"]


# --- 2. riskrank import | export --------------------------------------------------

SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40
A_PY, B_PY, C_PY, D_PY = (
    "tests/test_a.py::test_a",
    "tests/test_b.py::test_b",
    "tests/test_c.py::test_c",
    "tests/test_d.py::test_d",
)

# Four builds: changed files (one renamed), a failure, a rerun within a build
# (the same test's attempts 1 and 2: failed, then passed), a skip, an error, a build
# without commit or branch, and a time with an offset.
HISTORY: list[dict[str, Any]] = [
    {
        "build": "1",
        "commit": SHA_A,
        "time": "2024-03-01T10:00:00Z",
        "branch": "main",
        "changed_files": [
            {"path": "src/a.py", "status": "modified"},
            {"path": "./src/b.py", "status": "added"},
        ],
        "results": [
            {"test": A_PY, "outcome": "passed", "duration": 1.0},
            {"test": B_PY, "outcome": "passed", "duration": 2.0},
            {"test": C_PY, "outcome": "passed", "duration": 0.5},
        ],
    },
    {
        "build": "2",
        "commit": SHA_B,
        "time": "2024-03-01T10:10:00+00:00",
        "branch": "main",
        "changed_files": [{"path": "src/a.py"}],
        "results": [
            {"test": A_PY, "outcome": "failed", "duration": 1.5, "message": "assert 1 == 2"},
            {"test": B_PY, "outcome": "passed", "duration": 2.0},
            {"test": C_PY, "outcome": "skipped", "duration": 0.0},
        ],
    },
    {
        "build": 3,
        "commit": SHA_C,
        "time": "2024-03-01T10:20:00Z",
        "branch": "main",
        "changed_files": [{"path": "src/b.py", "status": "renamed", "old_path": "src/old_b.py"}],
        "results": [
            {"test": A_PY, "outcome": "failed", "duration": 1.0, "attempt": 1},
            {"test": A_PY, "outcome": "passed", "duration": 1.0, "attempt": 2},
            {"test": B_PY, "outcome": "passed", "duration": 4.0},
            {"test": C_PY, "outcome": "PASSED", "duration": 0.5},
        ],
    },
    {
        "build": "4",
        "time": "2024-03-01T12:30:00+02:00",
        "results": [
            {"test": A_PY, "outcome": "passed", "duration": 1.0},
            {"test": B_PY, "outcome": "error", "duration": 2.0},
            {"test": D_PY, "file": "tests/test_d.py", "outcome": "passed"},
        ],
    },
]


def stats(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "runs": 0,
        "failures": 0,
        "last_outcome": None,
        "builds_since_failure": None,
        "recent": "",
        "flips": 0,
        "flaky_runs": 0,
        "duration_mean": None,
        "duration_count": 0,
        "last_build": None,
        "last_run_at": None,
        "last_failure_at": None,
    }
    assert set(values) <= set(row)
    row.update(values)
    assert set(row) == set(STATS_COLUMNS)
    return row


HISTORY_STATS = {
    A_PY: stats(
        runs=4,
        failures=1,
        last_outcome=Outcome.PASSED,
        builds_since_failure=2,
        recent="PPFP",
        flips=2,  # P→F in build 2, F→P in build 3 (the rerun's final attempt)
        flaky_runs=1,
        duration_mean=pytest.approx((1.0 + 1.5 + 1.0 + 1.0) / 4),
        duration_count=4,
        last_build="build-4/import:4",
        last_run_at=at("2024-03-01T10:30:00+00:00"),
        last_failure_at=at("2024-03-01T10:10:00+00:00"),
    ),
    B_PY: stats(
        runs=4,
        failures=1,
        last_outcome=Outcome.ERROR,
        builds_since_failure=0,
        recent="EPPP",
        flips=1,
        duration_mean=pytest.approx(2.5),
        duration_count=4,
        last_build="build-4/import:4",
        last_run_at=at("2024-03-01T10:30:00+00:00"),
        last_failure_at=at("2024-03-01T10:30:00+00:00"),
    ),
    C_PY: stats(  # the skip in build 2 counts for nothing, not even its duration
        runs=2,
        last_outcome=Outcome.PASSED,
        recent="PP",
        duration_mean=pytest.approx(0.5),
        duration_count=2,
        last_build=f"{SHA_C}/import:3",
        last_run_at=at("2024-03-01T10:20:00+00:00"),
    ),
    D_PY: stats(
        runs=1,
        last_outcome=Outcome.PASSED,
        recent="P",
        last_build="build-4/import:4",
        last_run_at=at("2024-03-01T10:30:00+00:00"),
    ),
}

# A RETECS/COLEMAN CSV: build 10 comes first in the file but is the newest;
# TestAlpha is listed twice in build 2 (failed, then passed): one failed
# result of 1.3 s, as the backtest's evaluation counts it; an empty Duration.
RETECS = """\
Id;Name;BuildId;Duration;CalcPrio;LastRun;Verdict;Cycle;LastResults
1;TestGamma;10;2.0;0;2020-01-10 09:00:00;0;10;[]
2;TestBeta;10;;0;2020-01-10 09:00:00;1;10;[0, 1]
3;TestAlpha;1;0.5;0;2020-01-01 09:00:00;0;1;[]
4;TestBeta;1;1.0;0;2020-01-01 09:00:00;1;1;[]
5;TestAlpha;2;0.7;0;2020-01-02 09:00:00;1;2;[0]
6;TestAlpha;2;0.6;0;2020-01-02 09:05:00;0;2;[1, 0]
7;TestBeta;2;1.0;0;2020-01-02 09:00:00;0;2;[1]
"""

RETECS_STATS = {
    "TestAlpha": stats(
        runs=2,
        failures=1,
        last_outcome=Outcome.FAILED,
        builds_since_failure=0,
        recent="FP",
        flips=1,
        duration_mean=pytest.approx((0.5 + 1.3) / 2),
        duration_count=2,
        last_build="build-2/import:2",
        last_run_at=at("2020-01-02T09:05:00+00:00"),
        last_failure_at=at("2020-01-02T09:05:00+00:00"),
    ),
    "TestBeta": stats(
        runs=3,
        failures=2,
        last_outcome=Outcome.FAILED,
        builds_since_failure=0,
        recent="FPF",
        flips=2,
        duration_mean=pytest.approx(1.0),
        duration_count=2,
        last_build="build-10/import:10",
        last_run_at=at("2020-01-10T09:00:00+00:00"),
        last_failure_at=at("2020-01-10T09:00:00+00:00"),
    ),
    "TestGamma": stats(
        runs=1,
        last_outcome=Outcome.PASSED,
        recent="P",
        duration_mean=pytest.approx(2.0),
        duration_count=1,
        last_build="build-10/import:10",
        last_run_at=at("2020-01-10T09:00:00+00:00"),
    ),
}


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n\n" for line in lines), encoding="utf-8")
    return path


def summary(
    reports: int, executions: int, full_name: str, skipped: int, read: int
) -> re.Pattern[str]:
    """The line `riskrank import` ends with."""
    return re.compile(
        rf"imported {reports} reports \({executions:,} executions\) into {re.escape(full_name)} "
        rf"in [0-9.]+ s, [0-9,]+ rows/s; {skipped} reports were already there "
        rf"\({read:,} rows read\)"
    )


def test_import_stores_exact_history_and_again_changes_nothing(
    db_url: str, database: Database, tmp_path: Path
) -> None:
    jsonl = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    csv_gz = tmp_path / "retecs.csv.gz"
    csv_gz.write_bytes(gzip.compress(RETECS.encode()))
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=db_url), cwd=tmp_path)

    first_jsonl, first_csv = run_together(
        partial(command, "import", "acme/widgets", str(jsonl), "--create"),
        partial(command, "import", "acme/retecs", str(csv_gz), "--create", "--batch", "2"),
    )
    assert first_jsonl.returncode == 0, first_jsonl.explain()
    assert first_csv.returncode == 0, first_csv.explain()
    assert f"reading {jsonl}" in first_jsonl.stdout
    # No bar in a pipe, not even its last drawing (tests/test_cli_progress.py).
    assert not re.search(r"^importing", first_jsonl.stdout + first_jsonl.stderr, re.MULTILINE)
    assert summary(4, 13, "acme/widgets", 0, 13).search(first_jsonl.stdout), first_jsonl.stdout
    assert not re.search(r"^importing", first_csv.stdout + first_csv.stderr, re.MULTILINE)
    assert summary(3, 6, "acme/retecs", 0, 6).search(first_csv.stdout), first_csv.stdout

    with database.session() as session:
        widgets = session.scalars(select(Repository).where(Repository.slug == "acme/widgets")).one()
        assert (widgets.provider, widgets.full_name) == (Provider.GENERIC, "acme/widgets")
        assert counts(session, widgets.id) == {
            "commits": 4,
            "changed_files": 4,
            "test_runs": 4,
            "executions": 13,
            "known_tests": 4,
            "test_stats": 4,
            "file_test_links": 6,
        }
        assert set(
            session.execute(
                select(Commit.sha, Commit.branch, Commit.author_time).where(
                    Commit.repository_id == widgets.id
                )
            ).all()
        ) == {
            (SHA_A, "main", at("2024-03-01T10:00:00+00:00")),
            (SHA_B, "main", at("2024-03-01T10:10:00+00:00")),
            (SHA_C, "main", at("2024-03-01T10:20:00+00:00")),
            ("build-4", None, at("2024-03-01T10:30:00+00:00")),
        }
        assert set(
            session.execute(
                select(Commit.sha, ChangedFile.path, ChangedFile.status, ChangedFile.old_path)
                .join(Commit, Commit.id == ChangedFile.commit_id)
                .where(Commit.repository_id == widgets.id)
            ).all()
        ) == {
            (SHA_A, "src/a.py", FileStatus.MODIFIED, None),
            (SHA_A, "src/b.py", FileStatus.ADDED, None),
            (SHA_B, "src/a.py", FileStatus.MODIFIED, None),
            (SHA_C, "src/b.py", FileStatus.RENAMED, "src/old_b.py"),
        }
        runs = session.execute(
            select(SuiteRun.run_key, SuiteRun.source, SuiteRun.status, SuiteRun.received_at)
            .where(SuiteRun.repository_id == widgets.id)
            .order_by(SuiteRun.id)
        ).all()
        assert [tuple(run) for run in runs] == [
            (f"import:{n}", RunSource.IMPORT, RunStatus.INGESTED, at(moment))
            for n, moment in [
                (1, "2024-03-01T10:00:00+00:00"),
                (2, "2024-03-01T10:10:00+00:00"),
                (3, "2024-03-01T10:20:00+00:00"),
                (4, "2024-03-01T10:30:00+00:00"),
            ]
        ]
        executions = session.execute(
            select(
                SuiteRun.run_key,
                KnownTest.name,
                Execution.attempt,
                Execution.outcome,
                Execution.duration,
                Execution.flaky,
            )
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .join(KnownTest, KnownTest.id == Execution.test_id)
            .where(SuiteRun.repository_id == widgets.id)
        ).all()
        assert sorted(executions, key=repr) == sorted(
            [
                ("import:1", A_PY, 1, Outcome.PASSED, 1.0, False),
                ("import:1", B_PY, 1, Outcome.PASSED, 2.0, False),
                ("import:1", C_PY, 1, Outcome.PASSED, 0.5, False),
                ("import:2", A_PY, 1, Outcome.FAILED, 1.5, False),
                ("import:2", B_PY, 1, Outcome.PASSED, 2.0, False),
                ("import:2", C_PY, 1, Outcome.SKIPPED, 0.0, False),
                # The rerun: attempts 1 and 2 of one test, flaky.
                ("import:3", A_PY, 1, Outcome.FAILED, 1.0, True),
                ("import:3", A_PY, 2, Outcome.PASSED, 1.0, True),
                ("import:3", B_PY, 1, Outcome.PASSED, 4.0, False),
                ("import:3", C_PY, 1, Outcome.PASSED, 0.5, False),
                ("import:4", A_PY, 1, Outcome.PASSED, 1.0, False),
                ("import:4", B_PY, 1, Outcome.ERROR, 2.0, False),
                ("import:4", D_PY, 1, Outcome.PASSED, None, False),
            ],
            key=repr,
        )
        assert dict(
            session.execute(
                select(KnownTest.name, KnownTest.file).where(KnownTest.repository_id == widgets.id)
            ).all()
        ) == {A_PY: None, B_PY: None, C_PY: None, D_PY: "tests/test_d.py"}
        assert stats_by_test(session, widgets.id) == HISTORY_STATS
        # (ran together, started failing together, valued at build n), a
        # build weighing 0.5 ** (1 / HALF_LIFE_BUILDS) less every build after.
        one, two = (0.5 ** (builds / HALF_LIFE_BUILDS) for builds in (1, 2))
        assert file_test_links(session, widgets.id) == {
            ("src/a.py", A_PY, one + 1, 1, 2),  # with it in builds 1 and 2, broke in 2
            ("src/a.py", B_PY, one + 1, 0, 2),
            ("src/a.py", C_PY, 1, 0, 1),  # skipped in build 2
            ("src/b.py", A_PY, two + 1, 0, 3),  # builds 1 and 3
            ("src/b.py", B_PY, two + 1, 0, 3),
            ("src/b.py", C_PY, two + 1, 0, 3),
        }
        assert widgets.build_count == 4
        assert widgets.last_build is not None
        assert widgets.last_build.endswith("/import:4")

        retecs = repository_id(session, "acme/retecs")
        assert counts(session, retecs) == {
            "commits": 3,
            "changed_files": 0,
            "test_runs": 3,
            "executions": 6,
            "known_tests": 3,
            "test_stats": 3,
            "file_test_links": 0,
        }
        assert set(session.scalars(select(Commit.sha).where(Commit.repository_id == retecs))) == {
            "build-1",
            "build-2",
            "build-10",
        }
        assert set(
            session.execute(
                select(KnownTest.name, Execution.attempt, Execution.outcome, Execution.flaky)
                .join(KnownTest, KnownTest.id == Execution.test_id)
                .where(KnownTest.repository_id == retecs, KnownTest.name == "TestAlpha")
            ).all()
        ) == {
            ("TestAlpha", 1, Outcome.PASSED, False),
            ("TestAlpha", 1, Outcome.FAILED, False),
        }
        assert stats_by_test(session, retecs) == RETECS_STATS

    before = snapshot(database)
    again = command("import", "ACME/Widgets", str(jsonl), "--format", "jsonl")
    assert again.returncode == 0, again.explain()
    assert summary(0, 0, "ACME/Widgets", 4, 13).search(again.stdout), again.stdout
    assert snapshot(database) == before


@dataclass(frozen=True)
class Refusals:
    database: Database
    files: dict[str, Path]
    results: dict[str, Ran]


@pytest.fixture(scope="module")
def refusals(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refusals]:
    """Imports and an export that must be refused, run side by side once."""
    tmp_path = tmp_path_factory.mktemp("refusals")
    database = Database.from_url(sqlite_url)
    empty_all_tables(database)
    with database.session() as session:
        repos.add_repository(session, provider=Provider.GENERIC, full_name="acme/widgets")
    jsonl = write_jsonl(tmp_path / "history.jsonl", HISTORY)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        "".join(
            line + "\n"
            for line in (
                json.dumps(HISTORY[0]),
                json.dumps(HISTORY[1]),
                '{"build": "3", "results": [{"test": "t", "outcome": "exploded"}]}',
                json.dumps(HISTORY[3]),
            )
        )
    )
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(RETECS.replace(";2.0;0;2020-01-10 09:00:00;0;", ";2.0;0;x;maybe;"))
    # An interrupted download; a CSV saved by a Windows tool in Latin-1.
    truncated = tmp_path / "truncated.csv.gz"
    packed = gzip.compress(RETECS.encode())
    truncated.write_bytes(packed[: len(packed) // 2])
    latin = tmp_path / "latin-1.csv"
    latin.write_bytes(RETECS.replace("TestGamma", "TestCafé").encode("latin-1"))
    missing_directory = tmp_path / "no-such-directory" / "history.jsonl"
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=sqlite_url), cwd=tmp_path)
    calls = {
        "wrong_format": ("import", "acme/widgets", str(jsonl), "--format", "retecs"),
        "bad_line": ("import", "acme/widgets", str(broken)),
        "bad_verdict": ("import", "acme/widgets", str(bad_csv)),
        "unregistered": ("import", "acme/nowhere", str(jsonl)),
        "truncated": ("import", "acme/widgets", str(truncated)),
        "latin": ("import", "acme/widgets", str(latin)),
        "export_missing_directory": ("export", "acme/widgets", str(missing_directory)),
    }
    results = run_together(*(partial(command, *arguments) for arguments in calls.values()))
    yield Refusals(
        database=database,
        files={
            "jsonl": jsonl,
            "broken": broken,
            "bad_csv": bad_csv,
            "truncated": truncated,
            "latin": latin,
        },
        results=dict(zip(calls, results, strict=True)),
    )
    database.dispose()


def test_import_refuses_bad_files_and_unknown_repositories(refusals: Refusals) -> None:
    results, files = refusals.results, refusals.files
    wrong_format = results["wrong_format"]
    assert wrong_format.returncode == 1
    assert (
        f"error: {files['jsonl']}: not a RETECS/COLEMAN CSV, missing Name, Duration, Verdict, "
        "Cycle" in one_line(wrong_format.stderr)
    )
    bad_line = results["bad_line"]
    assert bad_line.returncode == 1
    assert f"error: {files['broken']}:3: not a history line" in one_line(bad_line.stderr)
    assert "outcome" in bad_line.stderr
    bad_verdict = results["bad_verdict"]
    assert bad_verdict.returncode == 1
    assert f"error: {files['bad_csv']}:2: Verdict must be 0 or 1, not 'maybe'" in one_line(
        bad_verdict.stderr
    )
    unregistered = results["unregistered"]
    assert unregistered.returncode == 1
    assert (
        "error: repository acme/nowhere is not registered; "
        "run: riskrank repo add acme/nowhere" in one_line(unregistered.stderr)
    )
    for refused in (wrong_format, bad_line, bad_verdict, unregistered):
        assert "Traceback" not in refused.stderr
        assert "imported" not in refused.stdout
    with refusals.database.session() as session:
        # A file is read whole before anything is written: builds 1 and 2
        # of the broken file are not imported either.
        assert counts(session, repository_id(session, "acme/widgets"))["test_runs"] == 0
        assert set(session.scalars(select(Repository.slug))) == {"acme/widgets"}


def test_export_to_a_missing_directory_is_explained(refusals: Refusals) -> None:
    result = refusals.results["export_missing_directory"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error:")


def test_import_of_a_truncated_gzip_is_explained(refusals: Refusals) -> None:
    result = refusals.results["truncated"]
    assert result.returncode == 1
    assert f"error: {refusals.files['truncated']}" in one_line(result.stderr), result.stderr


def test_import_of_a_file_that_is_not_utf8_is_explained(refusals: Refusals) -> None:
    result = refusals.results["latin"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: {refusals.files['latin']}" in one_line(result.stderr), result.stderr


@pytest.mark.slow
def test_export_imports_back_to_the_same_statistics(
    sqlite_url: str, sqlite_database: Database, shared_dir: Path, tmp_path: Path
) -> None:
    source = shared_dir / "datasets" / "apache-commons" / "commons-codec.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as stream:
        lines = [json.loads(line) for line in stream if line.strip()]
    reports, executions = len(lines), sum(len(line["results"]) for line in lines)
    database = sqlite_database
    exported = tmp_path / "export" / "codec.jsonl.gz"
    exported.parent.mkdir()
    command = partial(riskrank, env=clean_env(RISKRANK_DATABASE_URL=sqlite_url), cwd=tmp_path)
    imported_a = command("import", "apache/codec-a", str(source), "--create")
    assert imported_a.returncode == 0, imported_a.explain()
    assert summary(reports, executions, "apache/codec-a", 0, executions).search(
        imported_a.stdout
    ), imported_a.stdout

    written = command("export", "apache/codec-a", str(exported))
    assert written.returncode == 0, written.explain()
    assert f"wrote {reports} reports to {exported}" in one_line(written.stdout)
    with gzip.open(exported, "rt", encoding="utf-8") as stream:
        back = [json.loads(line) for line in stream]
    assert len(back) == reports
    assert sum(len(line["results"]) for line in back) == executions
    assert [line["commit"] for line in back] == [line["commit"] for line in lines]

    imported_b = command("import", "apache/codec-b", str(exported), "--create")
    assert imported_b.returncode == 0, imported_b.explain()
    assert summary(reports, executions, "apache/codec-b", 0, executions).search(
        imported_b.stdout
    ), imported_b.stdout

    with database.session() as session:
        a = repository_id(session, "apache/codec-a")
        b = repository_id(session, "apache/codec-b")
        assert counts(session, a) == counts(session, b)
        assert counts(session, a)["test_runs"] == reports
        assert counts(session, a)["executions"] == executions
        stats_a, stats_b = stats_by_test(session, a), stats_by_test(session, b)
        assert len(stats_a) > 50
        assert sum(row["failures"] for row in stats_a.values()) > 0
        assert stats_a == stats_b
        links_a = file_test_links(session, a)
        assert len(links_a) > 1000
        assert links_a == file_test_links(session, b)
        known = select(
            KnownTest.name, KnownTest.file, KnownTest.first_seen_at, KnownTest.last_seen_at
        )
        assert set(session.execute(known.where(KnownTest.repository_id == a)).all()) == set(
            session.execute(known.where(KnownTest.repository_id == b)).all()
        )
        assert executions_of(session, a) == executions_of(session, b)


def executions_of(session: Session, repository: int) -> list[tuple[Any, ...]]:
    """Every execution with its commit, build, test and flags, in order."""
    return [
        tuple(row)
        for row in session.execute(
            select(
                Commit.sha,
                SuiteRun.run_key,
                SuiteRun.received_at,
                KnownTest.name,
                Execution.attempt,
                Execution.outcome,
                Execution.duration,
                Execution.flaky,
            )
            .join(SuiteRun, SuiteRun.id == Execution.run_id)
            .join(Commit, Commit.id == SuiteRun.commit_id)
            .join(KnownTest, KnownTest.id == Execution.test_id)
            .where(SuiteRun.repository_id == repository)
            .order_by(Execution.id)
        )
    ]
