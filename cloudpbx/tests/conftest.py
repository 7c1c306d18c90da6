"""Fixtures: a migrated SQLite store in a temporary directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import (
    create_engine_for,
    create_session_factory,
    database_url_for_directory,
    upgrade,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = REPOSITORY_ROOT / "configs" / "demo.yaml"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = database_url_for_directory(tmp_path / "data")
    upgrade(url)
    return url


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
