"""Voicemail messages in the store: rows in `voicemail_message`, audio in WAV files.

Rules:
- A message is a `VoicemailMessage` row plus one WAV file (8 kHz mono 16-bit PCM) under
  the voicemail directory: `<directory of the SQLite store>/voicemail/` (the switch and
  the API find it from the same database URL), `data/voicemail/` for another database.
  The row names the file relative to that directory (`<tenant>/<number>/<id>.wav`), so
  the store can move with its directory.
- The switch writes the file first, then the row (`add_message`), on a worker thread:
  a crash between the two leaves an orphan file, never a row without audio.
- Deleting removes the row in the caller's transaction; the caller removes the file
  after the commit (`remove_file`): a failed commit keeps both.
- Mailboxes are named by (tenant name, extension number); functions return values
  (`MessageInfo`), never ORM objects, except `find_message` for the API's service.
- `cloudpbx` imports neither `softswitch` nor `custcon_api` (STYLE.md import rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cloudpbx.db import DEFAULT_DATA_DIRECTORY
from cloudpbx.models import Extension, Tenant, VoicemailMessage

__all__ = [
    "VOICEMAIL_DIRECTORY_NAME",
    "MailboxCounts",
    "MessageInfo",
    "add_message",
    "all_mailbox_counts",
    "delete_message",
    "find_message",
    "list_messages",
    "mailbox_counts",
    "mark_heard",
    "message_path",
    "remove_file",
    "voicemail_directory",
]

VOICEMAIL_DIRECTORY_NAME = "voicemail"

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as the switch and the API show it."""

    message_id: str
    tenant_name: str
    extension_number: str
    caller: str
    call_id: str
    received_at: float
    duration_seconds: float
    heard: bool
    file_name: str


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    """RFC 3842 §5.2 Voice-Message counts: new (not heard) and old (heard)."""

    new: int
    old: int


def voicemail_directory(engine: Engine) -> Path:
    """Where the WAV files live for the store behind `engine` (module rules)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        return Path(str(database)).resolve().parent / VOICEMAIL_DIRECTORY_NAME
    return DEFAULT_DATA_DIRECTORY.resolve() / VOICEMAIL_DIRECTORY_NAME


def message_path(tenant_name: str, number: str, message_id: str) -> str:
    """The file name of a new message, relative to the voicemail directory."""
    return f"{_SAFE.sub('_', tenant_name)}/{_SAFE.sub('_', number)}/{message_id}.wav"


def _extension(session: Session, tenant_name: str, number: str) -> Extension | None:
    return session.scalars(
        select(Extension)
        .join(Tenant, Extension.tenant_id == Tenant.id)
        .where(Tenant.name == tenant_name, Extension.number == number)
    ).one_or_none()


def _info(row: VoicemailMessage, tenant_name: str, number: str) -> MessageInfo:
    return MessageInfo(
        message_id=row.message_id,
        tenant_name=tenant_name,
        extension_number=number,
        caller=row.caller,
        call_id=row.call_id,
        received_at=row.received_at,
        duration_seconds=row.duration_seconds,
        heard=row.heard,
        file_name=row.file_name,
    )


def add_message(session: Session, info: MessageInfo) -> bool:
    """Insert `info` (its file already written); False when the mailbox is gone."""
    extension = _extension(session, info.tenant_name, info.extension_number)
    if extension is None:
        return False
    session.add(
        VoicemailMessage(
            message_id=info.message_id,
            extension_id=extension.id,
            call_id=info.call_id,
            caller=info.caller,
            received_at=info.received_at,
            duration_seconds=info.duration_seconds,
            file_name=info.file_name,
            heard=info.heard,
        )
    )
    return True


def list_messages(session: Session, tenant_name: str, number: str) -> list[MessageInfo]:
    """The mailbox's messages, oldest first (empty for an unknown mailbox)."""
    extension = _extension(session, tenant_name, number)
    if extension is None:
        return []
    rows = session.scalars(
        select(VoicemailMessage)
        .where(VoicemailMessage.extension_id == extension.id)
        .order_by(VoicemailMessage.received_at, VoicemailMessage.id)
    )
    return [_info(row, tenant_name, number) for row in rows]


def find_message(
    session: Session, tenant_name: str, number: str, message_id: str
) -> VoicemailMessage | None:
    """The row of one message of the mailbox, or None."""
    extension = _extension(session, tenant_name, number)
    if extension is None:
        return None
    return session.scalars(
        select(VoicemailMessage).where(
            VoicemailMessage.extension_id == extension.id,
            VoicemailMessage.message_id == message_id,
        )
    ).one_or_none()


def mark_heard(session: Session, tenant_name: str, number: str, message_id: str) -> bool:
    """Make a message old (RFC 3842: it no longer counts as new); False when unknown."""
    row = find_message(session, tenant_name, number, message_id)
    if row is None:
        return False
    row.heard = True
    return True


def delete_message(
    session: Session, tenant_name: str, number: str, message_id: str
) -> str | None:
    """Delete the row; the file name to remove after the commit, None when unknown."""
    row = find_message(session, tenant_name, number, message_id)
    if row is None:
        return None
    file_name = row.file_name
    session.delete(row)
    return file_name


def remove_file(directory: Path, file_name: str) -> None:
    """Remove a message's file (module rules: after the commit); missing is fine."""
    path = (directory / file_name).resolve()
    if directory.resolve() not in path.parents:
        return  # never outside the voicemail directory
    path.unlink(missing_ok=True)


def mailbox_counts(session: Session, tenant_name: str, number: str) -> MailboxCounts:
    """New and old message counts of a mailbox (RFC 3842 §5.2)."""
    extension = _extension(session, tenant_name, number)
    if extension is None:
        return MailboxCounts(0, 0)
    rows = session.execute(
        select(VoicemailMessage.heard, func.count())
        .where(VoicemailMessage.extension_id == extension.id)
        .group_by(VoicemailMessage.heard)
    ).all()
    counts = {bool(heard): int(count) for heard, count in rows}
    return MailboxCounts(new=counts.get(False, 0), old=counts.get(True, 0))


def all_mailbox_counts(session: Session) -> dict[tuple[str, str], MailboxCounts]:
    """New and old counts of every mailbox holding messages, by (tenant, number)."""
    rows = session.execute(
        select(Tenant.name, Extension.number, VoicemailMessage.heard, func.count())
        .join(Extension, VoicemailMessage.extension_id == Extension.id)
        .join(Tenant, Extension.tenant_id == Tenant.id)
        .group_by(Tenant.name, Extension.number, VoicemailMessage.heard)
    ).all()
    found: dict[tuple[str, str], dict[bool, int]] = {}
    for tenant_name, number, heard, count in rows:
        found.setdefault((tenant_name, number), {})[bool(heard)] = int(count)
    return {
        key: MailboxCounts(new=counts.get(False, 0), old=counts.get(True, 0))
        for key, counts in found.items()
    }
