"""Pytest fixtures that run a test on each database backend the product supports.

A conftest registers them by importing them (each is declared under its `name=`, so the
imported function names never shadow the fixture arguments):

    from cloudpbx.testing.fixtures import (  # noqa: F401  (fixtures, registered by import)
        backend_fixture,
        empty_database_url_fixture,
        postgres_server_fixture,
    )

- `backend`: "sqlite" or "postgresql"; the test ids carry it. Every test that reaches a
  database through `empty_database_url` (or a fixture built on it) runs on both.
- `empty_database_url`: an empty store (no tables) on that backend: a SQLite file in the
  test's temporary directory, or a new database on the run's throwaway server, dropped
  (WITH FORCE) after the test.
- `postgres_server`: the run's `PostgresServer` (session scope; started on first use).
  Without one the `postgresql` half of the suite FAILS with the reason, never skips.
- `mosquitto_broker`: a started throwaway MQTT broker of the test's own
  (`cloudpbx.testing.mosquitto`; function scope, so a test may stop and restart it),
  stopped by its PID afterwards. Without `mosquitto` the test FAILS, never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudpbx.db import database_url_for_directory

from .mosquitto import MosquittoBroker, running_broker
from .postgres import PostgresServer, shared_server

__all__ = [
    "BACKENDS",
    "backend_fixture",
    "empty_database_url_fixture",
    "mosquitto_broker_fixture",
    "postgres_server_fixture",
]

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(name="postgres_server", scope="session")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    with shared_server() as server:
        yield server


@pytest.fixture(name="backend", params=BACKENDS)
def backend_fixture(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(name="empty_database_url")
def empty_database_url_fixture(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    if backend == "sqlite":
        yield database_url_for_directory(tmp_path / "data")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.temporary_database() as url:
        yield url


@pytest.fixture(name="mosquitto_broker")
def mosquitto_broker_fixture() -> Iterator[MosquittoBroker]:
    with running_broker() as broker:
        yield broker
