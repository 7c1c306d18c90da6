"""HTTP for the audit log: translation only (rules in `service`).

Endpoints:
- `GET /api/v1/audit-log?tenant=&before_id=&limit=`: audit rows, newest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from custcon_api.auditlog import service
from custcon_api.auth.schemas import ErrorBody, unix_to_datetime
from custcon_api.deps import CurrentPrincipal, SessionDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/audit-log", tags=["audit log"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "The caller's role or tenant does not allow it"},
    404: {"model": ErrorBody, "description": "No such tenant (operators)"},
}


class AuditEntry(BaseModel):
    """One audited event."""

    id: int
    at: datetime
    actor: str | None
    """Login name of who acted; `(provisioning)` for a provisioning file; null for a
    failed login."""
    action: str
    """What was done, e.g. `extension.update`, `tollfree.weights`, `login.failure`."""
    target: str | None
    tenant: str | None
    before: dict[str, Any] | None
    """The target before the change (null when it did not exist); never a secret."""
    after: dict[str, Any] | None
    """The target after the change (null when it no longer exists)."""
    remote_address: str | None


@router.get("", summary="Read the audit log", responses=_ERRORS)
def list_audit_entries(
    principal: CurrentPrincipal,
    session: SessionDep,
    tenant: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntry]:
    return [
        AuditEntry(
            id=row.id,
            at=unix_to_datetime(row.at),
            actor=row.actor,
            action=row.action,
            target=row.target,
            tenant=tenant_name,
            before=row.before,
            after=row.after,
            remote_address=row.remote_address,
        )
        for row, tenant_name in service.list_entries(session, principal, tenant, before_id, limit)
    ]
