"""Login, logout and password change: the rules, and the transaction of each.

Rules:
- `login` (RFC 6749 §4.3 resource owner password credentials): the login name is matched
  exactly. An unknown name costs the same argon2 verification as a known one (against a
  fixed dummy hash) and gets the same `InvalidCredentials`, as do a wrong password and a
  disabled account: nothing tells them apart (`custcon_api.errors`).
- Failed logins follow `custcon_api.auth.lockout`; while locked out, `LockedOut` (429)
  whatever the password. Every attempt writes an audit row: `login.success`,
  `login.failure` (reason `unknown_login`, `wrong_password`, `disabled`, `locked_out`),
  and `account.lockout` when a lockout starts. Unknown names are audited under the name
  as typed (the reason says it names no account).
- The account row is read `FOR UPDATE` (PostgreSQL; SQLite serialises writers anyway), so
  concurrent failures cannot lose a count.
- A token is issued with `issued_at = now` and `expires_at = now + lifetime`; it is valid
  while `now < expires_at` and not revoked.
- `logout` revokes the presented token only (RFC 7009's effect, through our own endpoint).
- `change_password`: the current password must verify (a wrong one counts as a failed
  login towards the lockout, so a stolen token cannot guess the password, and is a 422 on
  `current_password`); the new one must meet the policy (422 on `new_password`, one entry
  per broken rule). On success the hash and `password_changed_at` change and every other
  unrevoked token of the account is revoked; the presented one stays valid. After that
  commit the change is published (`cloudpbx.notify.ACCOUNTS`); failed logins and
  lockout counts are not account changes and publish nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from cloudpbx.domain import (
    hash_account_password,
    password_policy_violations,
    verify_account_password,
)
from cloudpbx.models import Account, ApiToken
from cloudpbx.notify import ACCOUNTS
from custcon_api import audit
from custcon_api.auth.lockout import FailureState, after_failure, retry_after
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import FieldProblem, InvalidCredentials, InvalidFields, LockedOut
from custcon_api.security import new_token, token_digest

__all__ = ["IssuedToken", "change_password", "login", "logout"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


@functools.cache
def _dummy_hash() -> str:
    """A hash no password is known for, verified for unknown logins (equal work)."""
    return hash_account_password(new_token())


def _state_of(account: Account) -> FailureState:
    return FailureState(
        account.failed_login_count, account.failed_login_window_start, account.locked_until
    )


def _store_state(account: Account, state: FailureState) -> None:
    account.failed_login_count = state.count
    account.failed_login_window_start = state.window_start
    account.locked_until = state.locked_until


def _failure(
    session: Session,
    context: AppContext,
    account: Account,
    now: float,
    reason: str,
    remote_address: str | None,
) -> None:
    """Count one failed password check of `account` and audit it (the caller commits)."""
    state, locked = after_failure(_state_of(account), now, context.settings)
    _store_state(account, state)
    audit.record(
        session,
        at=now,
        action="login.failure",
        actor=None,
        target=account.login,
        tenant_id=account.tenant_id,
        after={"reason": reason},
        remote_address=remote_address,
    )
    if locked:
        audit.record(
            session,
            at=now,
            action="account.lockout",
            actor=None,
            target=account.login,
            tenant_id=account.tenant_id,
            after={"locked_until": state.locked_until},
            remote_address=remote_address,
        )


def _unknown_login(
    session: Session,
    context: AppContext,
    login_name: str,
    password: str,
    now: float,
    remote_address: str | None,
) -> NoReturn:
    """The failed path for a name that is no account: same work, same answers."""
    state = context.unknown_logins.get(login_name)
    wait = retry_after(state, now)
    reason = "locked_out" if wait is not None else "unknown_login"
    if wait is None:
        verify_account_password(_dummy_hash(), password)
        state, _locked = after_failure(state, now, context.settings)
        context.unknown_logins.put(login_name, state)
    audit.record(
        session,
        at=now,
        action="login.failure",
        actor=None,
        target=login_name,
        after={"reason": reason},
        remote_address=remote_address,
    )
    session.commit()
    if wait is not None:
        raise LockedOut(wait)
    raise InvalidCredentials()


def login(
    session: Session,
    context: AppContext,
    login_name: str,
    password: str,
    remote_address: str | None,
) -> IssuedToken:
    """Check the credentials and issue a token.

    Raises:
        InvalidCredentials: unknown login, wrong password or disabled account (401).
        LockedOut: too many failures (429).
    """
    now = context.clock()
    account = session.scalars(
        select(Account).where(Account.login == login_name).with_for_update()
    ).one_or_none()
    if account is None:
        _unknown_login(session, context, login_name, password, now, remote_address)
    wait = retry_after(_state_of(account), now)
    if wait is not None:
        audit.record(
            session,
            at=now,
            action="login.failure",
            actor=None,
            target=account.login,
            tenant_id=account.tenant_id,
            after={"reason": "locked_out"},
            remote_address=remote_address,
        )
        session.commit()
        raise LockedOut(wait)
    matches = verify_account_password(account.password_hash, password)
    if not matches or account.disabled:
        reason = "wrong_password" if not matches else "disabled"
        _failure(session, context, account, now, reason, remote_address)
        session.commit()
        raise InvalidCredentials()
    _store_state(account, FailureState())
    token = new_token()
    lifetime = context.settings.token_lifetime_seconds
    session.add(
        ApiToken(
            token_sha256=token_digest(token),
            account=account,
            issued_at=now,
            expires_at=now + lifetime,
        )
    )
    audit.record(
        session,
        at=now,
        action="login.success",
        actor=account,
        target=account.login,
        tenant_id=account.tenant_id,
        remote_address=remote_address,
    )
    session.commit()
    return IssuedToken(access_token=token, expires_in=lifetime)


def logout(
    session: Session, context: AppContext, principal: Principal, remote_address: str | None
) -> None:
    """Revoke the token the request was authenticated with."""
    now = context.clock()
    principal.token.revoked_at = now
    audit.record(
        session,
        at=now,
        action="auth.logout",
        actor=principal.account,
        target=principal.account.login,
        tenant_id=principal.account.tenant_id,
        remote_address=remote_address,
    )
    session.commit()


def change_password(
    session: Session,
    context: AppContext,
    principal: Principal,
    current_password: str,
    new_password: str,
    remote_address: str | None,
) -> None:
    """Replace the caller's password (see the module rules).

    Raises:
        LockedOut: the account is locked out (429).
        InvalidFields: wrong `current_password`, or `new_password` breaks the policy (422).
    """
    now = context.clock()
    account = principal.account
    session.refresh(account, with_for_update=True)
    wait = retry_after(_state_of(account), now)
    if wait is not None:
        raise LockedOut(wait)
    if not verify_account_password(account.password_hash, current_password):
        _failure(session, context, account, now, "wrong_current_password", remote_address)
        session.commit()
        raise InvalidFields(
            [FieldProblem("current_password", "wrong_password", "is not the account's password")]
        )
    violations = password_policy_violations(new_password, account.login, current_password)
    if violations:
        raise InvalidFields(
            [
                FieldProblem("new_password", f"password_policy.{violation.rule}", violation.message)
                for violation in violations
            ]
        )
    before = account.audit_view()
    account.password_hash = hash_account_password(new_password)
    account.password_changed_at = now
    revoked = cast(
        CursorResult[Any],
        session.execute(
            update(ApiToken)
            .where(
                ApiToken.account_id == account.id,
                ApiToken.id != principal.token.id,
                ApiToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    after = account.audit_view()
    after["other_tokens_revoked"] = revoked.rowcount
    audit.record(
        session,
        at=now,
        action="account.password_change",
        actor=account,
        target=account.login,
        tenant_id=account.tenant_id,
        before=before,
        after=after,
        remote_address=remote_address,
    )
    session.commit()
    # cloudpbx.notify: published after the commit, so a subscriber reads the change.
    context.notifier.publish(ACCOUNTS)
