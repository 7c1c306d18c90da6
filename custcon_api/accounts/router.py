"""HTTP for a tenant's accounts: translation only (rules in `service`).

Endpoints (authorization in `custcon_api.accounts.service`):
- `GET /api/v1/tenants/{tenant}/accounts`: the tenant's accounts.
- `POST /api/v1/tenants/{tenant}/accounts`: create one; 201 with `Location`.
- `DELETE /api/v1/tenants/{tenant}/accounts/{login}`: delete one; 204.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response, status

from custcon_api.accounts import service
from custcon_api.accounts.schemas import AccountCreate
from custcon_api.auth.schemas import AccountPublic, ErrorBody
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tenants/{tenant}/accounts", tags=["accounts"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "The caller's role or tenant does not allow it"},
    404: {"model": ErrorBody, "description": "No such tenant (operators) or account"},
}


@router.get("", summary="List a tenant's accounts", responses=_ERRORS)
def list_accounts(
    tenant: str, principal: CurrentPrincipal, session: SessionDep
) -> list[AccountPublic]:
    return [
        AccountPublic.of(account) for account in service.list_accounts(session, principal, tenant)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an account in a tenant",
    responses={**_ERRORS, 409: {"model": ErrorBody, "description": "Login name taken"}},
)
def create_account(
    tenant: str,
    body: AccountCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> AccountPublic:
    account = service.create_account(session, context, principal, tenant, body, remote_address)
    response.headers["Location"] = (
        f"/api/v1/tenants/{quote(tenant, safe='')}/accounts/{quote(account.login, safe='@')}"
    )
    return AccountPublic.of(account)


@router.delete(
    "/{login}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an account of a tenant",
    responses={**_ERRORS, 409: {"model": ErrorBody, "description": "The caller's own account"}},
)
def delete_account(
    tenant: str,
    login: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.delete_account(session, context, principal, tenant, login, remote_address)
