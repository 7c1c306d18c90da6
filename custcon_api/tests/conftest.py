"""Fixtures: the API over a temporary store, migrated with the project's own `upgrade()`
and provisioned with the demo file plus a second tenant, and a fake clock.

Every test that reaches the store runs on both backends, with the ids `sqlite` and
`postgresql` (`backend`, from `cloudpbx.testing.fixtures`). The store is built (migrated,
provisioned, argon2 hashes computed) once per session and backend and copied for each
test: the SQLite file into the test's directory, the PostgreSQL database with
`CREATE DATABASE ... TEMPLATE` (dropped after the test). So every test starts from the
same rows. Without a PostgreSQL server the `postgresql` half fails; it is never skipped.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import create_engine_for, create_session_factory, upgrade
from cloudpbx.domain import use_password_hasher
from cloudpbx.notify import ChangeNotifier
from cloudpbx.provisioning import provision
from cloudpbx.testing.fixtures import (  # noqa: F401  (fixtures, registered by import)
    backend_fixture,
    postgres_server_fixture,
)
from cloudpbx.testing.postgres import PostgresServer
from custcon_api import CustconSettings, create_app

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = REPOSITORY_ROOT / "configs" / "demo.yaml"
START = 1_800_000_000.0
"""The fake clock's start (2027-01-15), after the store was provisioned."""

PASSWORDS = {
    "operator": "Demo-Operator-2026!",
    "admin@demo": "Demo-Admin-2026!",
    "user1001@demo": "Demo-User-2026!",
    "tf@demo": "Demo-Tollfree-2026!",
    "admin@other": "Other-Admin-2026!",
    "user1001@other": "Other-User-2026!",
    "tf@other": "Other-Tollfree-2026!",
}
"""Every provisioned login and its password (the demo ones are issue 4's)."""


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """argon2id at its lowest cost for this suite: its templates and tests hash and verify
    hundreds of passwords, each 0.1 s of CPU at the production cost. The production
    parameters are tested where provisioning is (`cloudpbx/tests/test_accounts.py`)."""
    previous = use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_password_hasher(previous)


def store_file_data() -> dict[str, Any]:
    """The demo file plus a tenant `other` with its own extension 1001 and accounts."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8")))
    data["tenants"].append(
        {
            "name": "other",
            "contract_holder_name": "他社株式会社",
            "sip_domain": "127.0.0.9",
            "sites": [{"name": "本社"}],
            "extensions": [{"number": "1001", "site": "本社", "password": "otherpass1001"}],
        }
    )
    data["accounts"] += [
        {"login": "admin@other", "role": "tenant_admin", "tenant": "other"},
        {"login": "user1001@other", "role": "user", "tenant": "other", "extension": "1001"},
        {"login": "tf@other", "role": "tollfree_viewer", "tenant": "other"},
    ]
    for account in data["accounts"]:
        account["password"] = PASSWORDS[account["login"]]
    return data


def build_store(url: str, directory: Path) -> None:
    """Migrate the empty store at `url` and provision `store_file_data()` into it."""
    upgrade(url)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(store_file_data(), allow_unicode=True), encoding="utf-8")
    engine = create_engine_for(url)
    try:
        with create_session_factory(engine)() as session:
            provision(session, config)
    finally:
        engine.dispose()  # a PostgreSQL template must have no connection left


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite template: a file."""
    directory = tmp_path_factory.mktemp("template")
    path = directory / "store.sqlite3"
    build_store(f"sqlite:///{path}", directory)
    return path


@pytest.fixture(scope="session")
def postgres_template_database(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The PostgreSQL template: the name of a database on the run's server."""
    name = postgres_server.new_database_name("custcon_template")
    build_store(postgres_server.create_database(name), tmp_path_factory.mktemp("pg-template"))
    return name


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("template_store")
        path = tmp_path / "store.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template_name: str = request.getfixturevalue("postgres_template_database")
    with server.temporary_database(template=template_name) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> CustconSettings:
    return CustconSettings()


@pytest.fixture
def client(
    session_factory: sessionmaker[Session], clock: FakeClock, settings: CustconSettings
) -> Iterator[TestClient]:
    with TestClient(create_app(session_factory, clock=clock, settings=settings)) as client:
        yield client


def log_in(client: TestClient, username: str, password: str | None = None) -> httpx.Response:
    """POST the OAuth2 password form (RFC 6749 §4.3.2)."""
    response: httpx.Response = client.post(
        "/api/v1/auth/token",
        data={
            "username": username,
            "password": PASSWORDS[username] if password is None else password,
        },
    )
    return response


def token_for(client: TestClient, username: str) -> str:
    response = log_in(client, username)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Subscriber:
    """A notifier subscriber on a loop of its own that the test runs when it looks."""

    def __init__(self, notifier: ChangeNotifier) -> None:
        self.loop = asyncio.new_event_loop()
        self.topics: list[str] = []
        notifier.subscribe(self.topics.append, self.loop)

    def received(self) -> list[str]:
        """Topics delivered since the last look (runs the callbacks queued on the loop)."""
        self.loop.run_until_complete(asyncio.sleep(0))
        topics, self.topics[:] = list(self.topics), []
        return topics


@pytest.fixture
def notifier() -> ChangeNotifier:
    return ChangeNotifier()


@pytest.fixture
def subscriber(notifier: ChangeNotifier) -> Iterator[Subscriber]:
    subscriber = Subscriber(notifier)
    yield subscriber
    subscriber.loop.close()


@pytest.fixture
def notifying_client(
    session_factory: sessionmaker[Session], clock: FakeClock, notifier: ChangeNotifier
) -> Iterator[TestClient]:
    """The app publishing on `notifier` (which `subscriber` listens to)."""
    with TestClient(create_app(session_factory, clock=clock, notifier=notifier)) as client:
        yield client


@pytest.fixture
def api(notifying_client: TestClient) -> TestClient:
    """The app most API tests drive: `notifying_client` (a module may define its own)."""
    return notifying_client


@pytest.fixture
def operator(api: TestClient) -> dict[str, str]:
    """The operator's Authorization header on `api`."""
    return bearer(token_for(api, "operator"))


@pytest.fixture
def admin(api: TestClient) -> dict[str, str]:
    """The demo tenant administrator's Authorization header on `api`."""
    return bearer(token_for(api, "admin@demo"))
