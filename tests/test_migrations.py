"""The migrations build exactly the models, on both backends, and go back down."""

import pytest
from alembic import command
from sqlalchemy import inspect

from scheduler import migrate
from scheduler.db import create_db_engine
from scheduler.models import Base


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


def test_no_model_class_looks_like_a_test() -> None:
    # pytest would try to collect a class whose name starts with Test.
    for mapper in Base.registry.mappers:
        assert not mapper.class_.__name__.startswith("Test")
