"""Alembic environment for the config store.

Rules:
- The database URL comes from `config.attributes["database_url"]` (`cloudpbx.db.upgrade`
  sets it), else from `sqlalchemy.url` in an alembic.ini if one is used; the `alembic`
  command line, configured by `[tool.alembic]` in `pyproject.toml`, falls back to
  `$SOFTSWITCH_DATABASE_URL`, then to the default SQLite file under `data/`.
- The target metadata is `cloudpbx.models.Base.metadata`, so `alembic revision
  --autogenerate` diffs against the models.
- SQLite runs in batch mode (`render_as_batch`), since it cannot ALTER most constraints.
- Logging is left to the caller: this file configures no handlers.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from cloudpbx.db import create_engine_for, database_url_for_directory
from cloudpbx.models import Base

target_metadata = Base.metadata


def _database_url() -> str:
    config = context.config
    configured = config.attributes.get("database_url")
    if isinstance(configured, str) and configured:
        return configured
    # An alembic.ini is optional: without one there is no main section to ask.
    if config.file_config.has_section(config.config_ini_section):
        configured = config.get_main_option("sqlalchemy.url")
        if configured:
            return configured
    return os.environ.get("SOFTSWITCH_DATABASE_URL") or database_url_for_directory()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through a live connection."""
    engine = create_engine_for(_database_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
