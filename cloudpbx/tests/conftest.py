"""Fixtures: a migrated store per test, on each backend the product supports.

Every test that uses a database fixture runs twice, with the ids `sqlite` (a file in the
test's temporary directory) and `postgresql` (a new database on the run's throwaway
server, dropped after the test; `cloudpbx.testing.fixtures`). Both are migrated with the
project's own `upgrade()`. Without a PostgreSQL server the `postgresql` half fails with
the reason; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import create_engine_for, create_session_factory, upgrade
from cloudpbx.testing.fixtures import (  # noqa: F401  (fixtures, registered by import)
    backend_fixture,
    empty_database_url_fixture,
    mosquitto_broker_fixture,
    postgres_server_fixture,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = REPOSITORY_ROOT / "configs" / "demo.yaml"


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session
