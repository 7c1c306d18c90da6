"""HTTP for voicemail messages: translation only (rules in `custcon_api.voicemail.service`).

Endpoints (roles in `custcon_api.voicemail.ENDPOINT_ROLES`):
- `GET /api/v1/tenants/{tenant}/extensions/{number}/voicemail/messages`: the mailbox's
  messages, oldest first.
- `GET .../messages/{message_id}/audio`: the message as audio/wav (8 kHz mono 16-bit
  PCM); the message becomes heard.
- `DELETE .../messages/{message_id}`: 204.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response, status
from fastapi.responses import FileResponse

from cloudpbx.voicemail import MessageInfo
from custcon_api.auth.schemas import ErrorBody
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep
from custcon_api.voicemail import MESSAGES, service
from custcon_api.voicemail.schemas import VoicemailMessagePublic

__all__ = ["router"]

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "The caller's role or tenant does not allow it"},
    404: {"model": ErrorBody, "description": "No such tenant, extension or message"},
}


def _public(message: MessageInfo) -> VoicemailMessagePublic:
    base = MESSAGES.format(
        tenant=quote(message.tenant_name, safe=""), number=quote(message.extension_number, safe="")
    )
    return VoicemailMessagePublic(
        message_id=message.message_id,
        caller=message.caller,
        received_at=message.received_at,
        duration_seconds=message.duration_seconds,
        heard=message.heard,
        audio_url=f"{base}/{message.message_id}/audio",
    )


@router.get(MESSAGES, tags=["voicemail"], summary="List a mailbox's messages", responses=_ERRORS)
def list_messages(
    tenant: str, number: str, principal: CurrentPrincipal, session: SessionDep
) -> list[VoicemailMessagePublic]:
    return [_public(m) for m in service.list_messages(session, principal, tenant, number)]


@router.get(
    MESSAGES + "/{message_id}/audio",
    tags=["voicemail"],
    summary="Download a message (audio/wav)",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"audio/wav": {}}, "description": "The message"}},
)
def download_message(
    tenant: str,
    number: str,
    message_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
) -> FileResponse:
    path = service.message_audio(session, context, principal, tenant, number, message_id)
    return FileResponse(path, media_type="audio/wav", filename=f"{message_id}.wav")


@router.delete(
    MESSAGES + "/{message_id}",
    tags=["voicemail"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a message",
    responses=_ERRORS,
)
def delete_message(
    tenant: str,
    number: str,
    message_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> Response:
    service.delete_message(session, context, principal, tenant, number, message_id, remote_address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
