"""The migrations build exactly the models, on both backends, and go back down."""

import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect, text

from scheduler import migrate
from scheduler.db import Database, create_db_engine
from scheduler.ingest.payload import secret_matches
from scheduler.models import Base
from scheduler.planning.records import DecisionRecord
from tests.conftest import empty_all_tables


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    # alembic check: a model change without its migration fails here.
    migrate.check(db_url)
    assert migrate.current(db_url) == migrate.head()


def test_every_model_table_exists(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert {
        "repositories",
        "api_tokens",
        "ci_events",
        "commits",
        "changed_files",
        "known_tests",
        "test_runs",
        "executions",
        "test_stats",
        "file_test_links",
        "risk_models",
        "plans",
        "plan_items",
    } <= tables


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_downgrade_to_nothing_and_up_again(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('down') / 'down.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    config = migrate.alembic_config(url)
    command.downgrade(config, "base")
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    migrate.check(url)


# Rows every revision's schema takes, written as plain SQL.
A_REPOSITORY_AND_COMMIT = (
    "INSERT INTO repositories (id, provider, owner, name, slug, settings, created_at)"
    " VALUES (1, 'github', 'o', 'r', 'o/r', '{}', '2024-01-01T00:00:00+00:00')",
    "INSERT INTO commits (id, repository_id, sha, created_at)"
    " VALUES (1, 1, 'abc', '2024-01-01T00:00:00+00:00')",
)


def test_no_model_class_looks_like_a_test() -> None:
    # pytest would try to collect a class whose name starts with Test.
    for mapper in Base.registry.mappers:
        assert not mapper.class_.__name__.startswith("Test")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_keeps_rows_of_tables_it_alters(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SQLite rebuilds an altered table; with foreign keys on, dropping the old
    copy would cascade into the rows that refer to it."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('keep') / 'keep.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        command.downgrade(migrate.alembic_config(url), "base")
    migrate.upgrade(url, "68084708487a")  # the first revision
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            for statement in (
                *A_REPOSITORY_AND_COMMIT,
                "INSERT INTO test_runs (id, repository_id, commit_id, source, status, received_at)"
                " VALUES (1, 1, 1, 'junit', 'pending', '2024-01-01T00:00:00+00:00')",
                "INSERT INTO known_tests (id, repository_id, name, first_seen_at, last_seen_at,"
                " is_active) VALUES (1, 1, 't', '2024-01-01T00:00:00+00:00',"
                " '2024-01-01T00:00:00+00:00', true)",
                "INSERT INTO executions (run_id, test_id, outcome, attempt, flaky)"
                " VALUES (1, 1, 'passed', 1, false)",
                "INSERT INTO test_stats (test_id, runs, failures, recent, flips, updated_at)"
                " VALUES (1, 1, 0, 'P', 0, '2024-01-01T00:00:00+00:00')",
            ):
                connection.exec_driver_sql(statement)
        migrate.upgrade(url)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM executions").scalar() == 1
            assert connection.exec_driver_sql(
                "SELECT flaky_runs, duration_count FROM test_stats"
            ).one() == (0, 0)
            assert connection.exec_driver_sql("SELECT attempts FROM test_runs").scalar() == 0
    finally:
        engine.dispose()
    migrate.check(url)
    if backend == "postgresql":
        # Leave the shared test database as the other tests expect it: empty.
        database = Database.from_url(url)
        empty_all_tables(database)
        database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_plan_decisions_move_between_items_and_record_both_ways(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Before e3b9f0c4a711 each plan item held its selection; after, the
    plan holds one record. Downgrading writes the record back on the items,
    upgrading reads them into a record again."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('records') / 'records.db'}"
        migrate.upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    decision = DecisionRecord.of(
        3,
        rows=np.array([0, 2, 1]),
        selected=np.array([True, False, True]),
        propensity=np.array([1.0, 0.05, 0.05]),
        rules=["model", "budget", "exploration"],
        ranks=np.array([1, 3, 2]),
    )
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            for statement in (
                *A_REPOSITORY_AND_COMMIT,
                *(
                    "INSERT INTO known_tests (id, repository_id, name, first_seen_at,"
                    f" last_seen_at, is_active) VALUES ({i}, 1, 't{i}',"
                    " '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00', true)"
                    for i in (1, 2, 3)
                ),
                "INSERT INTO plans (id, repository_id, commit_id, status, created_at,"
                " feature_names, policy) VALUES (1, 1, 1, 'ready', '2024-01-01T00:00:00+00:00',"
                " '[]', '{\"mode\": \"fraction\"}')",
                *(
                    "INSERT INTO plan_items (plan_id, test_id, probability, rank, features)"
                    f" VALUES (1, {i}, {1 / i}, {i}, X'00')".replace(
                        "X'00'", "'\\x00'::bytea" if backend == "postgresql" else "X'00'"
                    )
                    for i in (1, 2, 3)
                ),
            ):
                connection.exec_driver_sql(statement)
            connection.execute(
                text("UPDATE plans SET decision = :decision WHERE id = 1"),
                {"decision": decision.encode()},
            )
        command.downgrade(migrate.alembic_config(url), "d8a5c1e7f203")
        with engine.connect() as connection:
            items = connection.exec_driver_sql(
                "SELECT rank, selected, propensity, rule FROM plan_items ORDER BY rank"
            ).all()
        assert [tuple(item) for item in items] == [
            (1, True, 1.0, "model"),
            (2, True, 0.05, "exploration"),
            (3, False, 0.05, "budget"),
        ]
        migrate.upgrade(url)
        with engine.connect() as connection:
            blob = connection.exec_driver_sql("SELECT decision FROM plans").scalar_one()
        back = DecisionRecord.decode(bytes(blob))
        assert [back.selected_at(row) for row in range(3)] == [True, True, False]
        assert back.rule == ["model", "exploration", "budget"]
        assert [back.propensity_at(row) for row in range(3)] == [1.0, 0.05, 0.05]
    finally:
        engine.dispose()
    migrate.check(url)
    if backend == "postgresql":
        database = Database.from_url(url)
        empty_all_tables(database)
        database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_gitlab_secrets_become_hashes(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """8e2f6a4b1c57 keeps a GitLab repository's secret as a hash only (the
    token it checks still verifies); GitHub's stays in clear for the HMAC."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hash') / 'hash.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        command.downgrade(migrate.alembic_config(url), "base")
    migrate.upgrade(url, "5a1d7c3e9b20")
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            for number, provider in ((1, "github"), (2, "gitlab"), (3, "generic")):
                connection.exec_driver_sql(
                    "INSERT INTO repositories (id, provider, owner, name, slug, webhook_secret,"
                    f" settings, created_at) VALUES ({number}, '{provider}', 'o', 'r', 'o/r',"
                    f" 'secret-of-{provider}-0123456789', '{{}}', '2024-01-01T00:00:00+00:00')"
                )
        migrate.upgrade(url)
        with engine.connect() as connection:
            rows = {
                provider: (secret, hashed)
                for provider, secret, hashed in connection.exec_driver_sql(
                    "SELECT provider, webhook_secret, webhook_secret_hash FROM repositories"
                )
            }
        assert rows["github"] == ("secret-of-github-0123456789", None)
        assert rows["generic"] == ("secret-of-generic-0123456789", None)
        secret, hashed = rows["gitlab"]
        assert secret is None
        assert "secret-of-gitlab" not in hashed
        assert secret_matches("secret-of-gitlab-0123456789", hashed)
        assert not secret_matches("secret-of-gitlab-012345678", hashed)
        command.downgrade(migrate.alembic_config(url), "5a1d7c3e9b20")
        with engine.connect() as connection:
            kept = connection.exec_driver_sql(
                "SELECT webhook_secret FROM repositories ORDER BY id"
            ).scalars()
            assert list(kept) == [
                "secret-of-github-0123456789",
                None,
                "secret-of-generic-0123456789",
            ]
        migrate.upgrade(url)
    finally:
        engine.dispose()
    migrate.check(url)
    if backend == "postgresql":
        database = Database.from_url(url)
        empty_all_tables(database)
        database.dispose()
