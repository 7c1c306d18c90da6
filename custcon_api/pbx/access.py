"""Who may touch which Cloud PBX settings, and how every change is committed.

Rules:
- Authorization comes first, from the caller's account alone, before the tenant (or
  anything in it) is looked up: a tenant administrator naming another tenant, or a user
  naming an extension that is not theirs, gets 403 whether it exists or not, so a refusal
  tells nothing about other tenants. Then an unknown tenant is 404 (only an operator can
  get that far with a name that is not theirs).
- Roles: `operator` may do everything; `tenant_admin` what the endpoint admits within
  their own tenant; `user` only their own extension; `tollfree_viewer` nothing here.
- `commit_change` ends every write: it adds the audit row (same transaction), commits
  (a unique-constraint race becomes 409, never a 500), then publishes
  `cloudpbx.notify.CONFIG` after the commit so every switch rebuilds its snapshot.
  A request that changes nothing writes no audit row and publishes nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudpbx.domain import AccountRole
from cloudpbx.models import Tenant
from cloudpbx.notify import CONFIG
from custcon_api import audit
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, Forbidden, NotFound

__all__ = [
    "ADMINS",
    "OPERATORS",
    "authorize_tenant",
    "commit_change",
    "require_operator",
    "tenant_by_name",
]

OPERATORS = frozenset({AccountRole.OPERATOR})
ADMINS = frozenset({AccountRole.OPERATOR, AccountRole.TENANT_ADMIN})


def require_operator(principal: Principal, what: str) -> None:
    """403 unless the caller is an operator."""
    if principal.account.role is not AccountRole.OPERATOR:
        raise Forbidden(f"only an operator can {what}")


def authorize_tenant(
    principal: Principal,
    tenant_name: str,
    roles: Collection[AccountRole],
    *,
    extension_number: str | None = None,
) -> None:
    """403 unless the caller's role is in `roles` and (but for operators) the tenant is
    theirs; a `user` also needs `extension_number` to be the extension they own."""
    account = principal.account
    role = account.role
    if role not in roles:
        raise Forbidden("your role cannot do this")
    if role is AccountRole.OPERATOR:
        return
    if account.tenant is None or account.tenant.name != tenant_name:
        raise Forbidden("only your own tenant's settings can be reached")
    if role is AccountRole.USER and (
        extension_number is None
        or account.extension is None
        or account.extension.number != extension_number
    ):
        raise Forbidden("only your own extension can be reached")


def tenant_by_name(session: Session, tenant_name: str) -> Tenant:
    """The tenant named in the path (after `authorize_tenant`), or 404."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one_or_none()
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


def commit_change(
    session: Session,
    context: AppContext,
    principal: Principal,
    *,
    action: str,
    target: str,
    tenant_id: int | None,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
    remote_address: str | None,
) -> None:
    """Audit, commit and publish one change (see the module rules).

    Raises:
        Conflict: a unique constraint refused the change (a concurrent write won).
    """
    audit.record(
        session,
        at=context.clock(),
        action=action,
        actor=principal.account,
        target=target,
        tenant_id=tenant_id,
        before=before,
        after=after,
        remote_address=remote_address,
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("the change conflicts with the stored settings; reload and retry") from None
    # cloudpbx.notify: published after the commit, so a switch rebuilding reads the change.
    context.notifier.publish(CONFIG)
