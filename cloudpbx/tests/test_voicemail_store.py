"""Voicemail messages in the store (`cloudpbx.voicemail`), on SQLite and PostgreSQL:
rows by mailbox, new/old counts, heard, delete (file after the commit), cascades."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cloudpbx import voicemail
from cloudpbx.models import Extension, VoicemailMessage
from cloudpbx.provisioning import provision

from .conftest import DEMO_FILE


def info(message_id: str, number: str = "1001", at: float = 1.0) -> voicemail.MessageInfo:
    return voicemail.MessageInfo(
        message_id, "demo", number, "sip:0312345678@127.0.0.1", f"call-{message_id}",
        at, 2.5, False, voicemail.message_path("demo", number, message_id),
    )  # fmt: skip


def test_messages_counts_heard_delete_and_cascade(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    session.commit()
    assert voicemail.add_message(session, info("b", at=2.0))
    assert voicemail.add_message(session, info("a", at=1.0))
    assert voicemail.add_message(session, info("c", number="1002"))
    assert not voicemail.add_message(session, info("d", number="9999"))  # no such mailbox
    session.commit()
    assert [m.message_id for m in voicemail.list_messages(session, "demo", "1001")] == ["a", "b"]
    assert voicemail.mailbox_counts(session, "demo", "1001") == voicemail.MailboxCounts(2, 0)
    assert voicemail.mark_heard(session, "demo", "1001", "a")
    assert not voicemail.mark_heard(session, "demo", "1001", "c")  # another mailbox's
    session.commit()
    assert voicemail.all_mailbox_counts(session) == {
        ("demo", "1001"): voicemail.MailboxCounts(1, 1),
        ("demo", "1002"): voicemail.MailboxCounts(1, 0),
    }
    directory = tmp_path / "voicemail"
    file_name = voicemail.delete_message(session, "demo", "1001", "b")
    assert file_name == "demo/1001/b.wav"
    session.commit()
    (directory / file_name).parent.mkdir(parents=True)
    (directory / file_name).write_bytes(b"RIFF")
    voicemail.remove_file(directory, file_name)
    assert not (directory / file_name).exists()
    voicemail.remove_file(directory, "../outside.wav")  # never outside the directory
    assert voicemail.delete_message(session, "demo", "1001", "b") is None
    # Deleting the extension deletes its messages' rows (ON DELETE CASCADE).
    extension = session.scalars(select(Extension).where(Extension.number == "1002")).one()
    session.delete(extension)
    session.commit()
    assert session.scalars(select(VoicemailMessage.message_id)).all() == ["a"]


def test_the_voicemail_directory_is_next_to_a_sqlite_store(engine: Engine) -> None:
    directory = voicemail.voicemail_directory(engine)
    assert directory.name == "voicemail"
    if engine.dialect.name == "sqlite":
        assert directory.parent == Path(str(engine.url.database)).resolve().parent
