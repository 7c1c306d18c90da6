"""Customer Control accounts in the store: the password policy and login-name rules,
argon2 hashes, idempotent provisioning of the accounts section, its audit rows, and bad
accounts sections refused with key paths."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudpbx.domain import (
    PRODUCTION_PASSWORD_HASHER,
    AccountRole,
    account_login_problem,
    password_policy_violations,
    use_password_hasher,
    verify_account_password,
)
from cloudpbx.models import Account, ApiToken, AuditLog
from cloudpbx.provisioning import (
    PROVISIONING_ACTOR,
    ProvisioningError,
    load_provisioning_file,
    provision,
)

from .conftest import DEMO_FILE

DEMO_ACCOUNTS = {
    "operator": ("operator", "Demo-Operator-2026!", None, None),
    "admin@demo": ("tenant_admin", "Demo-Admin-2026!", "demo", None),
    "user1001@demo": ("user", "Demo-User-2026!", "demo", "1001"),
    "tf@demo": ("tollfree_viewer", "Demo-Tollfree-2026!", "demo", None),
}


def _demo() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _accounts(session: Session) -> list[tuple[object, ...]]:
    session.expire_all()
    columns = [column.key for column in Account.__table__.columns]
    rows = session.scalars(select(Account).order_by(Account.id)).all()
    return [tuple(getattr(row, name) for name in columns) for row in rows]


# --- the rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "login", "current", "rules"),
    [
        ("Fresh-Secret-4711", "user1001@demo", None, []),
        ("Fresh-Secr3t", None, None, []),  # exactly 12
        ("Fresh-Secr3", None, None, ["min_length"]),
        ("fresh-secret-4711", None, None, []),  # lower, digit, symbol
        ("freshsecretabcd", None, None, ["character_classes"]),
        ("Fresh Secret abc", None, None, []),  # a space is a symbol
        ("ÄÖÜäöü-1234567", None, None, []),  # non-ASCII letters have case
        ("Xx-ADMIN@DEMO-9", "admin@demo", None, ["contains_login"]),
        ("Xx-Admin-2027-9", "admin@demo", None, ["contains_login"]),  # the part before @
        ("Tf-Long-Secret-9", "tf@demo", None, []),  # a 2-letter local part is not checked
        ("Same-Secret-4711", None, "Same-Secret-4711", ["reused"]),
    ],
)
def test_password_policy(
    password: str, login: str | None, current: str | None, rules: list[str]
) -> None:
    violations = password_policy_violations(password, login, current)
    assert [violation.rule for violation in violations] == rules


def test_the_demo_passwords_meet_the_strength_rules() -> None:
    for _role, password, _tenant, _extension in DEMO_ACCOUNTS.values():
        assert password_policy_violations(password) == []


@pytest.mark.parametrize(
    ("login", "role", "tenant", "ok"),
    [
        ("operator", AccountRole.OPERATOR, None, True),
        ("ops@demo", AccountRole.OPERATOR, None, False),
        ("operator", AccountRole.OPERATOR, "demo", False),
        ("admin@demo", AccountRole.TENANT_ADMIN, "demo", True),
        ("admin@other", AccountRole.TENANT_ADMIN, "demo", False),
        ("admin", AccountRole.USER, "demo", False),
        ("Admin@demo", AccountRole.USER, "demo", False),
        ("-admin@demo", AccountRole.USER, "demo", False),
        ("a.b+c_d-e@demo", AccountRole.TOLLFREE_VIEWER, "demo", True),
        ("admin@demo", AccountRole.USER, None, False),
    ],
)
def test_login_names(login: str, role: AccountRole, tenant: str | None, ok: bool) -> None:
    assert (account_login_problem(login, role, tenant) is None) is ok


# --- provisioning ----------------------------------------------------------------------


@pytest.fixture
def production_password_hashes() -> Iterator[None]:
    """The production argon2id parameters, whatever another suite of this run chose
    (custcon_api's tests use the cheapest ones for speed)."""
    previous = use_password_hasher(PRODUCTION_PASSWORD_HASHER)
    yield
    use_password_hasher(previous)


@pytest.mark.usefixtures("production_password_hashes")
def test_demo_accounts_are_provisioned_with_argon2_hashes(session: Session) -> None:
    result = provision(session, DEMO_FILE, clock=lambda: 1_700_000_000.0)
    assert result.accounts.created == 4
    accounts = {account.login: account for account in session.scalars(select(Account))}
    assert set(accounts) == set(DEMO_ACCOUNTS)
    for login, (role, password, tenant, extension) in DEMO_ACCOUNTS.items():
        account = accounts[login]
        assert account.role is AccountRole(role)
        assert (account.tenant.name if account.tenant else None) == tenant
        assert (account.extension.number if account.extension else None) == extension
        assert account.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert password not in account.password_hash
        assert verify_account_password(account.password_hash, password)
        assert not verify_account_password(account.password_hash, password + "x")
        assert (account.created_at, account.password_changed_at) == (1_700_000_000.0,) * 2
        assert (account.failed_login_count, account.locked_until, account.disabled) == (
            0,
            None,
            False,
        )
    # Provisioning audits the file's other entries too (test_provisioning_audit.py).
    audit = session.scalars(
        select(AuditLog).where(AuditLog.action.startswith("account.")).order_by(AuditLog.id)
    ).all()
    assert [(row.action, row.actor, row.target) for row in audit] == [
        ("account.create", PROVISIONING_ACTOR, login) for login in DEMO_ACCOUNTS
    ]
    assert audit[2].after == {
        "login": "user1001@demo",
        "role": "user",
        "tenant": "demo",
        "extension": "1001",
        "disabled": False,
        "password_changed_at": 1_700_000_000.0,
    }
    assert audit[0].before is None and audit[0].tenant_id is None
    assert audit[1].tenant_id == accounts["admin@demo"].tenant_id


def test_reprovisioning_neither_rehashes_nor_changes_anything(session: Session) -> None:
    provision(session, DEMO_FILE, clock=lambda: 1_700_000_000.0)
    before = _accounts(session)
    audit_rows = len(session.scalars(select(AuditLog)).all())
    result = provision(session, DEMO_FILE, clock=lambda: 1_700_000_999.0)
    assert not result.changed
    assert result.accounts.unchanged == 4
    assert _accounts(session) == before
    assert len(session.scalars(select(AuditLog)).all()) == audit_rows


def test_a_changed_password_is_rehashed_and_ends_the_accounts_sessions(
    session: Session, tmp_path: Path
) -> None:
    provision(session, DEMO_FILE, clock=lambda: 1_700_000_000.0)
    admin = session.scalars(select(Account).where(Account.login == "admin@demo")).one()
    session.add(ApiToken(token_sha256="0" * 64, account=admin, issued_at=1.0, expires_at=9e9))
    session.commit()
    old_hash = admin.password_hash
    data = _demo()
    data["accounts"][1]["password"] = "Changed-Admin-2027!"
    data["accounts"][3]["disabled"] = True
    result = provision(session, _write(tmp_path, data), clock=lambda: 1_700_000_500.0)
    assert (result.accounts.updated, result.accounts.unchanged) == (2, 2)
    session.expire_all()
    admin = session.scalars(select(Account).where(Account.login == "admin@demo")).one()
    assert admin.password_hash != old_hash
    assert verify_account_password(admin.password_hash, "Changed-Admin-2027!")
    assert admin.password_changed_at == 1_700_000_500.0
    assert session.scalars(select(ApiToken.revoked_at)).one() == 1_700_000_500.0
    updates = session.scalars(
        select(AuditLog).where(AuditLog.action == "account.update").order_by(AuditLog.id)
    ).all()
    assert [row.target for row in updates] == ["admin@demo", "tf@demo"]
    assert updates[0].before is not None and updates[0].after is not None
    assert updates[0].before["password_changed_at"] == 1_700_000_000.0
    assert updates[0].after["password_changed_at"] == 1_700_000_500.0
    assert (updates[1].before, updates[1].after) != (None, None)
    assert updates[1].after is not None and updates[1].after["disabled"] is True


def test_a_role_change_is_applied_whole(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    data = _demo()
    data["accounts"][2] = {
        "login": "user1001@demo",
        "role": "tenant_admin",
        "tenant": "demo",
        "password": "Demo-User-2026!",
    }
    result = provision(session, _write(tmp_path, data))
    assert result.accounts.updated == 1
    account = session.scalars(select(Account).where(Account.login == "user1001@demo")).one()
    assert (account.role, account.extension) == (AccountRole.TENANT_ADMIN, None)


def test_the_store_refuses_an_operator_with_a_tenant(session: Session) -> None:
    provision(session, DEMO_FILE)
    operator = session.scalars(select(Account).where(Account.login == "operator")).one()
    admin = session.scalars(select(Account).where(Account.login == "admin@demo")).one()
    operator.tenant_id = admin.tenant_id
    with pytest.raises(IntegrityError):
        session.commit()


@pytest.mark.parametrize(
    ("change", "key_path", "reason"),
    [
        ({"tenant": "demo"}, "accounts[0].tenant", "an operator belongs to no tenant"),
        ({"login": "op@x"}, "accounts[0].login", "without @"),
        ({"role": "root"}, "accounts[0].role", "Input should be"),
        ({"password": "short"}, "accounts[0].password", "at least 12 characters"),
        ({"password": 12345678901234}, "accounts[0].password", "valid string"),
        ({"extension": "1001"}, "accounts[0].extension", "only a user account"),
        ({"unknown": 1}, "accounts[0].unknown", "Extra inputs"),
        ({"disabled": "no"}, "accounts[0].disabled", "valid boolean"),
    ],
)
def test_a_bad_operator_entry_is_refused(
    tmp_path: Path, change: dict[str, object], key_path: str, reason: str
) -> None:
    data = _demo()
    data["accounts"][0].update(change)
    _assert_refused(tmp_path, data, key_path, reason)


@pytest.mark.parametrize(
    ("index", "change", "key_path", "reason"),
    [
        (1, {"tenant": None}, "accounts[1].tenant", "is required for role tenant_admin"),
        (1, {"tenant": "nowhere"}, "accounts[1].tenant", "names no tenant in this file"),
        (1, {"login": "admin@other"}, "accounts[1].login", "must end with @demo"),
        (2, {"extension": None}, "accounts[2].extension", "is required for role user"),
        (2, {"extension": "9999"}, "accounts[2].extension", "names no extension"),
        (2, {"extension": 1001}, "accounts[2].extension", "quote it"),
        (3, {"login": "admin@demo"}, "accounts[3].login", "duplicate login name"),
        (3, {"password": "tollfreetollfree"}, "accounts[3].password", "3 of the 4 classes"),
    ],
)
def test_a_bad_tenant_account_is_refused(
    tmp_path: Path, index: int, change: dict[str, object], key_path: str, reason: str
) -> None:
    data = _demo()
    data["accounts"][index].update(change)
    _assert_refused(tmp_path, data, key_path, reason)


def _assert_refused(tmp_path: Path, data: dict[str, Any], key_path: str, reason: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    assert caught.value.path == path
    issues = [(issue.key_path, issue.reason) for issue in caught.value.issues]
    assert any(path == key_path and reason in text for path, text in issues), issues
    # Never a password in the message.
    for account in data["accounts"]:
        assert str(account.get("password")) not in str(caught.value)


def test_a_refused_accounts_section_writes_nothing(session: Session, tmp_path: Path) -> None:
    data = _demo()
    data["accounts"][2]["extension"] = "9999"
    with pytest.raises(ProvisioningError):
        provision(session, _write(tmp_path, data))
    assert session.scalars(select(Account)).all() == []
