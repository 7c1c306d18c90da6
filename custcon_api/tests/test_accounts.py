"""The accounts endpoints: the authorization matrix (every role x own / other tenant x
list / create / delete), tenant isolation, input validation and the audit rows."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import Account, AuditLog

from .conftest import PASSWORDS, bearer, log_in, token_for

ROLES = {
    "operator": "operator",
    "tenant_admin": "admin@demo",
    "user": "user1001@demo",
    "tollfree_viewer": "tf@demo",
}
"""One demo account per role; all but the operator belong to tenant `demo`."""

TARGETS = {"own": "demo", "other": "other"}
"""`own` is the caller's tenant (for the operator, simply one tenant; it has none)."""

ALLOWED = {("operator", "own"), ("operator", "other"), ("tenant_admin", "own")}


def _accounts_url(tenant: str) -> str:
    return f"/api/v1/tenants/{tenant}/accounts"


def _logins(session_factory: sessionmaker[Session]) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(Account.login)))


def _other_tenant_logins(target: str) -> list[str]:
    return [login for login in PASSWORDS if login.endswith(f"@{target}")]


MATRIX = [(role, target) for role in ROLES for target in TARGETS]


@pytest.mark.parametrize(("role", "target"), MATRIX)
def test_list_matrix(client: TestClient, role: str, target: str) -> None:
    tenant = TARGETS[target]
    response = client.get(_accounts_url(tenant), headers=bearer(token_for(client, ROLES[role])))
    if (role, target) in ALLOWED:
        assert response.status_code == 200
        listed = response.json()
        assert {account["login"] for account in listed} == set(_other_tenant_logins(tenant))
        assert {account["tenant"] for account in listed} == {tenant}
        assert all("password_hash" not in account for account in listed)
    else:
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        # Nothing of the tenant is readable from a refusal.
        for login in _other_tenant_logins(tenant):
            if login != ROLES[role]:
                assert login not in response.text


@pytest.mark.parametrize(("role", "target"), MATRIX)
def test_create_matrix(
    client: TestClient, session_factory: sessionmaker[Session], role: str, target: str
) -> None:
    tenant = TARGETS[target]
    login = f"new-{role.replace('_', '-')}@{tenant}"
    response = client.post(
        _accounts_url(tenant),
        headers=bearer(token_for(client, ROLES[role])),
        json={"login": login, "role": "tollfree_viewer", "password": "Brand-New-Pass-1"},
    )
    if (role, target) in ALLOWED:
        assert response.status_code == 201, response.text
        assert response.headers["Location"] == f"{_accounts_url(tenant)}/{login}"
        assert response.json()["tenant"] == tenant
        assert login in _logins(session_factory)
        assert log_in(client, login, "Brand-New-Pass-1").status_code == 200
    else:
        assert response.status_code == 403
        assert login not in _logins(session_factory)


@pytest.mark.parametrize(("role", "target"), MATRIX)
def test_delete_matrix(
    client: TestClient, session_factory: sessionmaker[Session], role: str, target: str
) -> None:
    tenant = TARGETS[target]
    victim = f"tf@{tenant}"
    if victim == ROLES[role]:
        victim = f"user1001@{tenant}"  # the viewer's own account: try its neighbour
    response = client.delete(
        f"{_accounts_url(tenant)}/{victim}", headers=bearer(token_for(client, ROLES[role]))
    )
    if (role, target) in ALLOWED:
        assert response.status_code == 204
        assert victim not in _logins(session_factory)
    else:
        assert response.status_code == 403
        assert victim in _logins(session_factory)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_every_accounts_endpoint_needs_a_token(client: TestClient, method: str) -> None:
    url = _accounts_url("demo") + ("/tf@demo" if method == "DELETE" else "")
    response = client.request(method, url, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="custcon"'


def test_a_tenant_admin_cannot_tell_whether_another_tenant_exists(client: TestClient) -> None:
    token = token_for(client, "admin@demo")
    existing = client.get(_accounts_url("other"), headers=bearer(token))
    missing = client.get(_accounts_url("no-such-tenant"), headers=bearer(token))
    assert existing.status_code == missing.status_code == 403
    assert existing.content == missing.content


def test_an_operator_naming_no_tenant_gets_404(client: TestClient) -> None:
    response = client.get(
        _accounts_url("no-such-tenant"), headers=bearer(token_for(client, "operator"))
    )
    assert response.status_code == 404


@pytest.mark.parametrize("caller", ["admin@demo", "operator"])
def test_an_account_of_another_tenant_is_not_found_under_this_one(
    client: TestClient, session_factory: sessionmaker[Session], caller: str
) -> None:
    token = token_for(client, caller)
    for login in ("admin@other", "operator"):
        response = client.delete(f"{_accounts_url('demo')}/{login}", headers=bearer(token))
        assert response.status_code == 404
        assert login in _logins(session_factory)


def test_nobody_deletes_their_own_account(client: TestClient) -> None:
    token = token_for(client, "admin@demo")
    response = client.delete(f"{_accounts_url('demo')}/admin@demo", headers=bearer(token))
    assert response.status_code == 409
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_a_deleted_accounts_tokens_stop_working(client: TestClient) -> None:
    victim = token_for(client, "tf@demo")
    admin = token_for(client, "admin@demo")
    assert (
        client.delete(f"{_accounts_url('demo')}/tf@demo", headers=bearer(admin)).status_code == 204
    )
    assert client.get("/api/v1/me", headers=bearer(victim)).status_code == 401
    assert log_in(client, "tf@demo").status_code == 401


def test_a_created_user_owns_its_extension(client: TestClient) -> None:
    admin = token_for(client, "admin@demo")
    response = client.post(
        _accounts_url("demo"),
        headers=bearer(admin),
        json={
            "login": "user1002@demo",
            "role": "user",
            "password": "Phone-Owner-1002",
            "extension": "1002",
        },
    )
    assert response.status_code == 201, response.text
    me = client.get("/api/v1/me", headers=bearer(token_for_new(client)))
    assert (me.json()["role"], me.json()["extension"]) == ("user", "1002")


def token_for_new(client: TestClient) -> str:
    response = log_in(client, "user1002@demo", "Phone-Owner-1002")
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"role": "operator"}, "role", "literal_error"),
        ({"role": "superuser"}, "role", "literal_error"),
        ({"login": "newbie@other"}, "login", "login_name"),
        ({"login": "newbie"}, "login", "login_name"),
        ({"login": "New.Bie@demo"}, "login", "login_name"),
        ({"login": ""}, "login", "string_too_short"),
        ({"password": "Sh0rt-Pass!"}, "password", "password_policy.min_length"),
        ({"password": "My-newbie-Secret-1"}, "password", "password_policy.contains_login"),
        ({"role": "user"}, "extension", "missing"),
        ({"role": "user", "extension": "9999"}, "extension", "unknown_extension"),
        ({"extension": "1001"}, "extension", "not_allowed"),
        ({"extension": "10x1"}, "extension", "string_pattern_mismatch"),
        ({"unexpected": 1}, "unexpected", "extra_forbidden"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    client: TestClient,
    session_factory: sessionmaker[Session],
    body: dict[str, object],
    field: str,
    kind: str,
) -> None:
    request: dict[str, object] = {
        "login": "newbie@demo",
        "role": "tollfree_viewer",
        "password": "Brand-New-Pass-1",
    }
    request.update(body)
    admin = token_for(client, "admin@demo")
    before = _logins(session_factory)
    response = client.post(_accounts_url("demo"), headers=bearer(admin), json=request)
    assert response.status_code == 422
    assert [(detail["loc"], detail["type"]) for detail in response.json()["detail"]] == [
        (["body", field], kind)
    ]
    assert "Brand-New-Pass-1" not in response.text
    assert _logins(session_factory) == before


def test_a_taken_login_is_409(client: TestClient) -> None:
    admin = token_for(client, "admin@demo")
    response = client.post(
        _accounts_url("demo"),
        headers=bearer(admin),
        json={"login": "tf@demo", "role": "tollfree_viewer", "password": "Brand-New-Pass-1"},
    )
    assert response.status_code == 409


def test_changes_are_audited(client: TestClient, session_factory: sessionmaker[Session]) -> None:
    admin = token_for(client, "admin@demo")
    created = client.post(
        _accounts_url("demo"),
        headers=bearer(admin),
        json={"login": "audited@demo", "role": "tollfree_viewer", "password": "Brand-New-Pass-1"},
    )
    assert created.status_code == 201
    assert (
        client.delete(f"{_accounts_url('demo')}/audited@demo", headers=bearer(admin)).status_code
        == 204
    )
    with session_factory() as session:
        rows = session.scalars(
            select(AuditLog)
            .where(AuditLog.action.in_(["account.create", "account.delete"]))
            .where(AuditLog.actor != "(provisioning)")
            .order_by(AuditLog.id)
        ).all()
        demo_admin = session.scalars(select(Account).where(Account.login == "admin@demo")).one()
        assert [(row.action, row.actor, row.actor_account_id, row.target) for row in rows] == [
            ("account.create", "admin@demo", demo_admin.id, "audited@demo"),
            ("account.delete", "admin@demo", demo_admin.id, "audited@demo"),
        ]
        create, delete = rows
        assert create.before is None and delete.after is None
        assert create.after == delete.before
        assert create.after is not None
        assert create.after["role"] == "tollfree_viewer" and create.after["tenant"] == "demo"
        assert create.tenant_id == demo_admin.tenant_id
        assert "argon2" not in str(create.after)
