"""Alembic environment: riskrank's own engine (with its SQLite settings) and
models. The URL is the one riskrank is configured with, unless the caller
hands one in `config.attributes["database_url"]`."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from scheduler.config import get_settings
from scheduler.db import create_db_engine
from scheduler.models import Base
from scheduler.models.base import UTCDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url")
    return url if isinstance(url, str) else get_settings().database_url


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    # Migrations must not import riskrank's types: they stay valid when the
    # code moves on. UTCDateTime is a timezone-aware DateTime in the schema.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _set_sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    cursor.close()


def run_migrations_online() -> None:
    engine = create_db_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode copies and drops tables; with foreign keys on,
                # dropping one would cascade into the rows that refer to it.
                # The pragma only works outside a transaction: set it on the
                # raw connection before SQLAlchemy begins one.
                _set_sqlite_foreign_keys(connection, on=False)
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things: batch mode copies the table.
                render_as_batch=connection.dialect.name == "sqlite",
                render_item=_render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if problems:
                        raise RuntimeError(f"migration broke foreign keys: {problems[:5]}")
            if sqlite:
                _set_sqlite_foreign_keys(connection, on=True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
