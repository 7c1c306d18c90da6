"""Fixtures: the API over a temporary SQLite store, migrated with the project's own
`upgrade()` and provisioned with the demo file plus a second tenant, and a fake clock.

The store is built (migrated, provisioned, argon2 hashes computed) once per session and
copied into each test's directory, so every test starts from the same rows.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import create_engine_for, create_session_factory, upgrade
from cloudpbx.provisioning import provision
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


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("template")
    path = directory / "store.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(store_file_data(), allow_unicode=True), encoding="utf-8")
    engine = create_engine_for(url)
    try:
        with create_session_factory(engine)() as session:
            provision(session, config)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def database_url(template_store: Path, tmp_path: Path) -> str:
    path = tmp_path / "store.sqlite3"
    shutil.copyfile(template_store, path)
    return f"sqlite:///{path}"


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
