"""Writing the audit log (`cloudpbx.models.AuditLog`).

Rules:
- A row is added to the caller's session and committed with the change it records, in
  the same transaction: a change without its audit row (or the reverse) cannot be stored.
- `before` / `after` are `Account.audit_view()` values: never a password or hash.
- Actions written by the API: `login.success`, `login.failure` (with `after.reason`),
  `account.lockout`, `auth.logout`, `account.password_change`, `account.create`,
  `account.delete`, `config.reload` (the operator's manual reload).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from cloudpbx.models import Account, AuditLog

__all__ = ["record"]

_TARGET_LENGTH = 256


def record(
    session: Session,
    *,
    at: float,
    action: str,
    actor: Account | None,
    target: str | None,
    tenant_id: int | None = None,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
    remote_address: str | None = None,
) -> None:
    """Add one audit row to `session` (the caller commits)."""
    session.add(
        AuditLog(
            at=at,
            actor=None if actor is None else actor.login,
            actor_account_id=None if actor is None else actor.id,
            tenant_id=tenant_id,
            action=action,
            # A failed login's target is whatever was typed: bounded, never an error.
            target=None if target is None else target[:_TARGET_LENGTH],
            before=before,
            after=after,
            remote_address=remote_address,
        )
    )
