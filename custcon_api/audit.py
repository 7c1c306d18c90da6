"""Writing the audit log (`cloudpbx.models.AuditLog`).

Rules:
- A row is added to the caller's session and committed with the change it records, in
  the same transaction: a change without its audit row (or the reverse) cannot be stored.
- `before` / `after` are the views of `cloudpbx.audit_views` (configuration) and
  `Account.audit_view()` (accounts), shared with provisioning: never a password, hash
  or HA1. `before` is null for a creation, `after` for a deletion.
- Actions written by the API:
  - accounts and sessions: `login.success`, `login.failure` (with `after.reason`),
    `account.lockout`, `auth.logout`, `account.password_change`, `account.create`,
    `account.delete`, `config.reload` (the operator's manual reload);
  - Cloud PBX settings (`custcon_api.pbx`): `tenant.create`, `tenant.update`,
    `tenant.delete`, `site.create`, `site.delete`, `mobile_line.create`,
    `mobile_line.update`, `mobile_line.delete`, `extension.create`, `extension.update`,
    `extension.delete`, `trunk.create`, `trunk.update`, `trunk.delete`;
  - toll-free numbers (`custcon_api.tollfree.service`): `tollfree.create`,
    `tollfree.delete`, `tollfree.contract`, `tollfree.channels`,
    `tollfree.destination_set.update`, `tollfree.weights`, `tollfree.schedule.update`,
    `tollfree.schedule.delete`, `tollfree.after_hours`, `tollfree.designated_areas`,
    `tollfree.account.grant`, `tollfree.account.revoke`.
- Actions written by provisioning files (`cloudpbx.provisioning`, actor
  `(provisioning)`, no remote address): `tenant.create`, `tenant.update`, `site.create`,
  `mobile_line.create`, `mobile_line.update`, `extension.create`, `extension.update`,
  `trunk.create`, `trunk.update`, `account.create`, `account.update`,
  `tollfree.create` and `tollfree.update` (the whole number's view, its destination
  sets, schedules, designated areas and grants included), with the API's views.
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
