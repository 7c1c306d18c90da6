"""Login, token expiry and revocation, `/me`, password change and its policy, lockout,
no enumeration of login names, and the audit rows all of these write."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import Account, ApiToken, AuditLog
from custcon_api import CustconSettings
from custcon_api.security import token_digest

from .conftest import PASSWORDS, FakeClock, bearer, log_in, token_for

ME = "/api/v1/me"
PASSWORD = "/api/v1/me/password"
NEW_PASSWORD = "Fresh-Secret-4711"


def _audit(session_factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with session_factory() as session:
        return list(
            session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
        )


# --- login -----------------------------------------------------------------------------


def test_login_returns_a_short_lived_bearer_token(client: TestClient) -> None:
    response = log_in(client, "admin@demo")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert len(body["access_token"]) >= 43  # 256 bits, base64url
    # RFC 6749 §5.1: token responses are not cached.
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("login", "role", "tenant", "extension"),
    [
        ("operator", "operator", None, None),
        ("admin@demo", "tenant_admin", "demo", None),
        ("user1001@demo", "user", "demo", "1001"),
        ("tf@demo", "tollfree_viewer", "demo", None),
    ],
)
def test_each_demo_account_logs_in_and_sees_itself(
    client: TestClient, login: str, role: str, tenant: str | None, extension: str | None
) -> None:
    response = client.get(ME, headers=bearer(token_for(client, login)))
    assert response.status_code == 200
    body = response.json()
    assert (body["login"], body["role"], body["tenant"], body["extension"]) == (
        login,
        role,
        tenant,
        extension,
    )
    assert body["disabled"] is False
    assert not {"password", "password_hash", "failed_login_count", "locked_until"} & set(body)
    assert "argon2" not in response.text


def test_the_store_keeps_only_hashes(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    token = token_for(client, "admin@demo")
    with session_factory() as session:
        account = session.scalars(select(Account).where(Account.login == "admin@demo")).one()
        assert account.password_hash.startswith("$argon2id$")
        assert PASSWORDS["admin@demo"] not in account.password_hash
        stored = session.scalars(select(ApiToken.token_sha256)).all()
    assert token not in stored
    assert token_digest(token) in stored


def test_wrong_password_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = log_in(client, "admin@demo", "Demo-Admin-2025!")
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "wrong login name or password",
    }
    # RFC 9110 §15.5.2: every 401 carries WWW-Authenticate; ours is Bearer (RFC 6750 §3).
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="custcon"'


def test_unknown_user_and_wrong_password_get_byte_identical_responses(
    client: TestClient,
) -> None:
    wrong_password = log_in(client, "admin@demo", "Not-The-Password-1")
    unknown_user = log_in(client, "nobody@demo", "Not-The-Password-1")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.content == unknown_user.content
    assert wrong_password.headers.multi_items() == unknown_user.headers.multi_items()


def test_login_names_are_matched_exactly(client: TestClient) -> None:
    assert log_in(client, "Admin@demo", PASSWORDS["admin@demo"]).status_code == 401
    assert log_in(client, " admin@demo", PASSWORDS["admin@demo"]).status_code == 401


def test_a_missing_form_field_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "admin@demo"})
    assert response.status_code == 422
    assert [detail["loc"] for detail in response.json()["detail"]] == [["body", "password"]]


def test_a_disabled_account_cannot_log_in_and_its_tokens_stop_working(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    token = token_for(client, "tf@demo")
    unknown = log_in(client, "nobody@demo", PASSWORDS["tf@demo"])
    with session_factory() as session:
        session.execute(update(Account).where(Account.login == "tf@demo").values(disabled=True))
        session.commit()
    refused = log_in(client, "tf@demo")
    assert refused.status_code == 401
    assert refused.content == unknown.content  # nothing says the account exists
    assert client.get(ME, headers=bearer(token)).status_code == 401
    assert [row.after for row in _audit(session_factory, "login.failure")][-1] == {
        "reason": "disabled"
    }


# --- tokens ----------------------------------------------------------------------------


def test_no_token_is_401_with_a_challenge_without_error_code(client: TestClient) -> None:
    response = client.get(ME)
    assert response.status_code == 401
    # RFC 6750 §3.1: no error code when the request had no authentication.
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="custcon"'


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-token", "Basic YWRtaW46eA==", "Bearer", "bearer x y"]
)
def test_a_bad_token_is_401(client: TestClient, authorization: str) -> None:
    response = client.get(ME, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="custcon"')


def test_a_token_expires_after_its_lifetime(client: TestClient, clock: FakeClock) -> None:
    token = token_for(client, "user1001@demo")
    clock.advance(899.9)
    assert client.get(ME, headers=bearer(token)).status_code == 200
    clock.advance(0.1)  # now == expires_at: expired
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 401
    # RFC 6750 §3.1: an expired token is `invalid_token`.
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # A new login gives a new token.
    assert client.get(ME, headers=bearer(token_for(client, "user1001@demo"))).status_code == 200


@pytest.mark.parametrize("settings", [CustconSettings(token_lifetime_seconds=60)])
def test_the_lifetime_is_configurable(client: TestClient, clock: FakeClock) -> None:
    response = log_in(client, "operator")
    assert response.json()["expires_in"] == 60
    token = response.json()["access_token"]
    clock.advance(59)
    assert client.get(ME, headers=bearer(token)).status_code == 200
    clock.advance(1)
    assert client.get(ME, headers=bearer(token)).status_code == 401


def test_logout_revokes_the_presented_token_only(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    first = token_for(client, "admin@demo")
    second = token_for(client, "admin@demo")
    response = client.post("/api/v1/auth/logout", headers=bearer(first))
    assert response.status_code == 204
    refused = client.get(ME, headers=bearer(first))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert client.post("/api/v1/auth/logout", headers=bearer(first)).status_code == 401
    assert client.get(ME, headers=bearer(second)).status_code == 200
    [logout] = _audit(session_factory, "auth.logout")
    assert (logout.actor, logout.target) == ("admin@demo", "admin@demo")


# --- password change -------------------------------------------------------------------


def test_password_change_revokes_every_other_token(
    client: TestClient, session_factory: sessionmaker[Session], clock: FakeClock
) -> None:
    other = token_for(client, "user1001@demo")
    current = token_for(client, "user1001@demo")
    clock.advance(10)
    response = client.post(
        PASSWORD,
        headers=bearer(current),
        json={"current_password": PASSWORDS["user1001@demo"], "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204, response.text
    assert client.get(ME, headers=bearer(current)).status_code == 200
    assert client.get(ME, headers=bearer(other)).status_code == 401
    assert log_in(client, "user1001@demo").status_code == 401
    assert log_in(client, "user1001@demo", NEW_PASSWORD).status_code == 200
    assert client.get(ME, headers=bearer(current)).json()["password_changed_at"] == (
        "2027-01-15T08:00:10Z"
    )
    [change] = _audit(session_factory, "account.password_change")
    assert (change.actor, change.target, change.at) == ("user1001@demo", "user1001@demo", clock())
    assert change.after is not None and change.after["other_tokens_revoked"] == 1
    assert change.before is not None
    assert change.before["password_changed_at"] != change.after["password_changed_at"]
    assert NEW_PASSWORD not in str(change.after) and "argon2" not in str(change.after)


@pytest.mark.parametrize(
    ("new_password", "rule"),
    [
        ("Sh0rt-Pass!", "min_length"),  # 11 characters, 4 classes
        ("onlylowercase-but-long", "character_classes"),  # 2 classes
        ("ALLUPPER12345678", "character_classes"),  # 2 classes
        ("My-user1001@demo-Key", "contains_login"),
        ("Xx-USER1001-secret", "contains_login"),  # the part before @, any case
        ("Demo-User-2026!", "reused"),
    ],
)
def test_each_policy_rule_is_a_422_naming_new_password(
    client: TestClient, new_password: str, rule: str
) -> None:
    token = token_for(client, "user1001@demo")
    response = client.post(
        PASSWORD,
        headers=bearer(token),
        json={"current_password": PASSWORDS["user1001@demo"], "new_password": new_password},
    )
    assert response.status_code == 422
    details = response.json()["detail"]
    assert [(detail["loc"], detail["type"]) for detail in details] == [
        (["body", "new_password"], f"password_policy.{rule}")
    ]
    assert new_password not in response.text  # never echoed
    assert log_in(client, "user1001@demo").status_code == 200  # unchanged


def test_every_broken_rule_is_listed(client: TestClient) -> None:
    token = token_for(client, "tf@demo")
    response = client.post(
        PASSWORD,
        headers=bearer(token),
        json={"current_password": PASSWORDS["tf@demo"], "new_password": "tf@demo"},
    )
    assert response.status_code == 422
    assert [detail["type"] for detail in response.json()["detail"]] == [
        "password_policy.min_length",
        "password_policy.character_classes",
        "password_policy.contains_login",
    ]


def test_a_wrong_current_password_is_422_naming_it(client: TestClient) -> None:
    token = token_for(client, "tf@demo")
    response = client.post(
        PASSWORD,
        headers=bearer(token),
        json={"current_password": "Wrong-Password-1", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "current_password"]


@pytest.mark.parametrize(
    "body",
    [
        {"new_password": NEW_PASSWORD},
        {"current_password": PASSWORDS["tf@demo"]},
        {"current_password": PASSWORDS["tf@demo"], "new_password": "A1-" * 400},
        {"current_password": PASSWORDS["tf@demo"], "new_password": 12345678901234},
    ],
)
def test_a_malformed_body_is_422_naming_the_field(
    client: TestClient, body: dict[str, object]
) -> None:
    token = token_for(client, "tf@demo")
    response = client.post(PASSWORD, headers=bearer(token), json=body)
    assert response.status_code == 422
    locs = [detail["loc"][-1] for detail in response.json()["detail"]]
    assert locs and set(locs) <= {"current_password", "new_password"}
    assert all("input" not in detail for detail in response.json()["detail"])


def test_the_password_endpoint_needs_a_token(client: TestClient) -> None:
    response = client.post(PASSWORD, json={"current_password": "x", "new_password": NEW_PASSWORD})
    assert response.status_code == 401


# --- lockout ---------------------------------------------------------------------------


def _fail(client: TestClient, login: str, times: int) -> None:
    for _ in range(times):
        assert log_in(client, login, "Wrong-Password-1").status_code == 401


def test_five_failures_lock_out_for_fifteen_minutes_then_recover(
    client: TestClient, clock: FakeClock, session_factory: sessionmaker[Session]
) -> None:
    _fail(client, "admin@demo", 5)
    locked = log_in(client, "admin@demo")  # the right password, too late
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "900"
    assert locked.json()["error"] == "invalid_grant"
    clock.advance(899.5)
    still = log_in(client, "admin@demo")
    assert (still.status_code, still.headers["Retry-After"]) == (429, "1")
    clock.advance(0.5)
    assert log_in(client, "admin@demo").status_code == 200
    # Attempts while locked out did not extend the lockout nor count: 5 fresh attempts.
    _fail(client, "admin@demo", 4)
    assert log_in(client, "admin@demo").status_code == 200
    [lockout] = _audit(session_factory, "account.lockout")
    assert (lockout.target, lockout.at) == ("admin@demo", clock() - 900)
    reasons = [row.after["reason"] for row in _audit(session_factory, "login.failure") if row.after]
    assert reasons == ["wrong_password"] * 5 + ["locked_out"] * 2 + ["wrong_password"] * 4


def test_failures_further_apart_than_the_window_do_not_lock_out(
    client: TestClient, clock: FakeClock
) -> None:
    _fail(client, "tf@demo", 4)
    clock.advance(901)
    _fail(client, "tf@demo", 4)
    assert log_in(client, "tf@demo").status_code == 200


def test_a_success_clears_the_count(client: TestClient) -> None:
    _fail(client, "tf@demo", 4)
    assert log_in(client, "tf@demo").status_code == 200
    _fail(client, "tf@demo", 4)
    assert log_in(client, "tf@demo").status_code == 200


def test_a_lockout_is_per_account(client: TestClient) -> None:
    _fail(client, "admin@demo", 5)
    assert log_in(client, "admin@demo").status_code == 429
    assert log_in(client, "tf@demo").status_code == 200


def test_unknown_logins_lock_out_exactly_like_accounts(client: TestClient) -> None:
    _fail(client, "admin@demo", 5)
    _fail(client, "ghost@demo", 5)
    real = log_in(client, "admin@demo", "Wrong-Password-1")
    ghost = log_in(client, "ghost@demo", "Wrong-Password-1")
    assert real.status_code == ghost.status_code == 429
    assert real.content == ghost.content
    assert real.headers.multi_items() == ghost.headers.multi_items()


def test_wrong_current_passwords_count_towards_the_lockout(client: TestClient) -> None:
    token = token_for(client, "user1001@demo")
    for _ in range(5):
        response = client.post(
            PASSWORD,
            headers=bearer(token),
            json={"current_password": "Wrong-Password-1", "new_password": NEW_PASSWORD},
        )
        assert response.status_code == 422
    response = client.post(
        PASSWORD,
        headers=bearer(token),
        json={"current_password": PASSWORDS["user1001@demo"], "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 429
    assert log_in(client, "user1001@demo").status_code == 429


# --- audit -----------------------------------------------------------------------------


def test_logins_are_audited(
    client: TestClient, session_factory: sessionmaker[Session], clock: FakeClock
) -> None:
    token_for(client, "admin@demo")
    log_in(client, "admin@demo", "Wrong-Password-1")
    log_in(client, "nobody@demo", "Wrong-Password-1")
    [success] = _audit(session_factory, "login.success")
    assert (success.actor, success.target, success.at) == ("admin@demo", "admin@demo", clock())
    assert success.remote_address == "testclient"
    assert success.tenant_id is not None
    failures = _audit(session_factory, "login.failure")
    assert [(row.actor, row.target, row.after) for row in failures] == [
        (None, "admin@demo", {"reason": "wrong_password"}),
        (None, "nobody@demo", {"reason": "unknown_login"}),
    ]
    with session_factory() as session:
        for row in session.scalars(select(AuditLog)):
            text = f"{row.before} {row.after}"
            assert "argon2" not in text and "Wrong-Password" not in text
