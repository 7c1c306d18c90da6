"""Every committed change is published (`cloudpbx.notify`), and nothing else is; the
operator's manual reload (`POST /api/v1/operator/reload`) publishes `config`, is audited,
and is refused to every other role."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import AuditLog
from cloudpbx.notify import ACCOUNTS, CONFIG

from .conftest import PASSWORDS, Subscriber, bearer, log_in, token_for

RELOAD = "/api/v1/operator/reload"


def test_account_changes_are_published_after_commit(
    notifying_client: TestClient, subscriber: Subscriber
) -> None:
    client = notifying_client
    admin = bearer(token_for(client, "admin@demo"))
    assert subscriber.received() == []  # a login changes no account
    created = client.post(
        "/api/v1/tenants/demo/accounts",
        headers=admin,
        json={"login": "clerk@demo", "role": "tenant_admin", "password": "Brand-New-Pass-42"},
    )
    assert created.status_code == 201, created.text
    assert subscriber.received() == [ACCOUNTS]
    refused = client.post(
        "/api/v1/tenants/other/accounts",
        headers=admin,
        json={"login": "x@other", "role": "tenant_admin", "password": "Brand-New-Pass-42"},
    )
    assert refused.status_code == 403
    assert subscriber.received() == []  # nothing committed, nothing published
    deleted = client.delete("/api/v1/tenants/demo/accounts/clerk@demo", headers=admin)
    assert deleted.status_code == 204
    assert subscriber.received() == [ACCOUNTS]
    changed = client.post(
        "/api/v1/me/password",
        headers=admin,
        json={"current_password": PASSWORDS["admin@demo"], "new_password": "Another-Pass-4242"},
    )
    assert changed.status_code == 204
    assert subscriber.received() == [ACCOUNTS]
    assert log_in(client, "admin@demo", "wrong").status_code == 401
    assert subscriber.received() == []  # a failed login is no account change


def test_the_operator_reload_publishes_config_and_is_audited(
    notifying_client: TestClient,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    client = notifying_client
    response = client.post(RELOAD, headers=bearer(token_for(client, "operator")))
    assert response.status_code == 202 and response.content == b""
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        row = session.scalars(select(AuditLog).where(AuditLog.action == "config.reload")).one()
        assert (row.actor, row.target) == ("operator", CONFIG)


@pytest.mark.parametrize("login", ["admin@demo", "user1001@demo", "tf@demo"])
def test_only_an_operator_may_reload(
    notifying_client: TestClient, subscriber: Subscriber, login: str
) -> None:
    client = notifying_client
    response = client.post(RELOAD, headers=bearer(token_for(client, login)))
    assert response.status_code == 403
    assert subscriber.received() == []


def test_reload_needs_a_token(notifying_client: TestClient, subscriber: Subscriber) -> None:
    assert notifying_client.post(RELOAD).status_code == 401
    assert subscriber.received() == []
