"""Who may reach which mailbox, and what listing, downloading and deleting change.

Rules:
- Authorization first, from the caller's account alone (`custcon_api.pbx.access`): the
  operator reaches every mailbox, a tenant administrator those of their tenant, a user
  only their own extension's; anyone else gets 403 whether or not the mailbox exists.
  Then an unknown tenant, extension or message is 404.
- Downloading marks the message heard (RFC 3842: it no longer counts as new); deleting
  removes the row (audited, like every change) and, after the commit, the WAV file.
  Both publish `cloudpbx.notify.VOICEMAIL` after the commit, so switches recount the
  mailbox and NOTIFY its message-waiting subscribers. A download of a heard message
  changes nothing and publishes nothing.
- The files live under `cloudpbx.voicemail.voicemail_directory` of the store's engine.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cloudpbx import voicemail
from cloudpbx.domain import AccountRole
from cloudpbx.models import Extension
from cloudpbx.notify import VOICEMAIL
from custcon_api import audit
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import NotFound
from custcon_api.pbx.access import authorize_tenant, tenant_by_name

__all__ = ["delete_message", "list_messages", "message_audio"]

_OWNERS = frozenset({AccountRole.OPERATOR, AccountRole.TENANT_ADMIN, AccountRole.USER})


def _mailbox(session: Session, principal: Principal, tenant_name: str, number: str) -> None:
    """403 or 404 unless the caller may reach an existing mailbox (module rules)."""
    authorize_tenant(principal, tenant_name, _OWNERS, extension_number=number)
    tenant = tenant_by_name(session, tenant_name)
    extension = session.scalars(
        select(Extension.id).where(Extension.tenant_id == tenant.id, Extension.number == number)
    ).one_or_none()
    if extension is None:
        raise NotFound("no such extension in this tenant")


def _directory(session: Session) -> Path:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return voicemail.voicemail_directory(engine)


def list_messages(
    session: Session, principal: Principal, tenant_name: str, number: str
) -> list[voicemail.MessageInfo]:
    _mailbox(session, principal, tenant_name, number)
    return voicemail.list_messages(session, tenant_name, number)


def message_audio(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    number: str,
    message_id: str,
) -> Path:
    """The WAV file of a message (marked heard); 404 when the message or file is gone."""
    _mailbox(session, principal, tenant_name, number)
    row = voicemail.find_message(session, tenant_name, number, message_id)
    if row is None:
        raise NotFound("no such message")
    path = _directory(session) / row.file_name
    if not path.is_file():
        raise NotFound("the message's audio is missing")
    if not row.heard:
        row.heard = True
        session.commit()
        context.notifier.publish(VOICEMAIL)
    return path


def delete_message(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    number: str,
    message_id: str,
    remote_address: str | None,
) -> None:
    _mailbox(session, principal, tenant_name, number)
    row = voicemail.find_message(session, tenant_name, number, message_id)
    if row is None:
        raise NotFound("no such message")
    tenant_id = row.extension.tenant_id
    before: dict[str, object] = {
        "message_id": row.message_id,
        "caller": row.caller,
        "received_at": row.received_at,
        "duration_seconds": row.duration_seconds,
    }
    file_name = voicemail.delete_message(session, tenant_name, number, message_id)
    audit.record(
        session,
        at=context.clock(),
        action="voicemail.delete",
        actor=principal.account,
        target=f"{tenant_name}/{number}/voicemail/{message_id}",
        tenant_id=tenant_id,
        before=before,
        after=None,
        remote_address=remote_address,
    )
    session.commit()
    if file_name is not None:
        voicemail.remove_file(_directory(session), file_name)
    context.notifier.publish(VOICEMAIL)
