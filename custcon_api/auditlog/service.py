"""Who may read which audit rows.

Rules:
- An operator reads every row, optionally narrowed to one tenant (404 for an unknown
  tenant name).
- A tenant administrator reads the rows of their own tenant only (`tenant_id`); naming
  another tenant is 403, before any lookup, so nothing is told about other tenants.
  Rows without a tenant (operators' own actions, failed logins of unknown names) are
  operators' only.
- Any other role gets 403: users and toll-free viewers change only their own settings
  and see them in the settings themselves.
- Rows come newest first; `before_id` pages backwards (rows with a smaller id), `limit`
  bounds a page (1-500). Reading writes nothing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.domain import AccountRole
from cloudpbx.models import AuditLog, Tenant
from custcon_api.deps import Principal
from custcon_api.errors import Forbidden, NotFound

__all__ = ["list_entries"]


def list_entries(
    session: Session,
    principal: Principal,
    tenant_name: str | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[AuditLog, str | None]]:
    """Audit rows the caller may read, newest first, with their tenant's name."""
    account = principal.account
    if account.role is AccountRole.OPERATOR:
        tenant_id: int | None = None
        if tenant_name is not None:
            tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one_or_none()
            if tenant is None:
                raise NotFound("no such tenant")
            tenant_id = tenant.id
    elif account.role is AccountRole.TENANT_ADMIN and account.tenant is not None:
        if tenant_name is not None and tenant_name != account.tenant.name:
            raise Forbidden("only your own tenant's audit log can be read")
        tenant_id = account.tenant.id
    else:
        raise Forbidden("your role cannot read the audit log")
    query = select(AuditLog, Tenant.name).outerjoin(Tenant, AuditLog.tenant_id == Tenant.id)
    if tenant_id is not None:
        query = query.where(AuditLog.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    rows = session.execute(query.order_by(AuditLog.id.desc()).limit(limit)).all()
    return [(row[0], row[1]) for row in rows]
