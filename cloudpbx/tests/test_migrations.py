"""The migrations build exactly the schema the models describe, on a fresh SQLite file and
on a fresh PostgreSQL database (the `sqlite` / `postgresql` ids, see conftest)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from cloudpbx.db import alembic_config, create_engine_for, upgrade
from cloudpbx.models import Base

from .conftest import REPOSITORY_ROOT

TABLES = {
    "tenant",
    "site",
    "extension",
    "sip_credential",
    "trunk",
    "trunk_source_address",
    "registration",
    "switch_secret",
    "account",
    "api_token",
    "audit_log",
}


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_the_store_is_on_the_backend_its_id_names(engine: Engine, backend: str) -> None:
    # Guards the parametrisation: a `postgresql` test never quietly runs on SQLite.
    assert engine.dialect.name == backend
    if backend == "postgresql":
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.scalar(text("SHOW server_encoding")) == "UTF8"


def test_upgrade_creates_every_table(engine: Engine) -> None:
    assert TABLES <= set(inspect(engine).get_table_names())


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _differences(engine) == []


def test_comparison_notices_a_missing_table(engine: Engine) -> None:
    # Guards the test above: the comparison does see differences.
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE registration"))
    assert _differences(engine) != []


def test_constraints_are_named_by_the_convention(engine: Engine) -> None:
    inspector = inspect(engine)
    unique_names = {
        constraint["name"] for constraint in inspector.get_unique_constraints("extension")
    }
    assert "uq_extension_tenant_id_number" in unique_names
    foreign_names = {key["name"] for key in inspector.get_foreign_keys("extension")}
    assert "fk_extension_tenant_id_tenant" in foreign_names


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    # On SQLite only because `create_engine_for` turns `PRAGMA foreign_keys` on.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("INSERT INTO site (tenant_id, name) VALUES (999, 'x')"))


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    url = empty_database_url
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = create_engine_for(url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(url)
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)


def test_alembic_command_line_from_the_repository(empty_database_url: str) -> None:
    url = empty_database_url
    environment = {**os.environ, "SOFTSWITCH_DATABASE_URL": url}
    completed = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    engine = create_engine_for(url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()
