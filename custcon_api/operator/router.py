"""HTTP for operator maintenance: translation only (rules in `service`).

Endpoints:
- `POST /api/v1/operator/reload`: the operator's manual reload of the switches' config
  snapshot (until MQTT carries change notifications between processes); 202 Accepted,
  no body. 403 for any role but operator.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from custcon_api.auth.schemas import ErrorBody
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep
from custcon_api.operator import service

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/operator", tags=["operator"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "Only operators may do this"},
}


@router.post(
    "/reload",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Reload the switches' configuration from the store",
    description=(
        "Publishes a configuration-change notification: every switch running in this "
        "process rebuilds its configuration snapshot from the store and swaps it in. "
        "The operator's manual reload after writing the store by other means "
        "(`softswitch provision`), until notifications travel between processes."
    ),
    response_class=Response,
    responses=_ERRORS,
)
def reload_configuration(
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> Response:
    service.request_reload(session, context, principal, remote_address)
    return Response(status_code=status.HTTP_202_ACCEPTED)
