"""Voicemail messages through the API: who may list, download and delete them.

Every role (operator, the demo tenant's admin, user of 1001, toll-free viewer) against
the mailboxes of demo 1001 (the user's own), demo 1002 (a colleague's) and other 1001
(another tenant's): a refusal is 403 whether or not the message exists and changes
nothing; a download is audio/wav and marks the message heard; a delete is 204, removes
the row and the file and publishes `voicemail`; an unknown message is 404.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx import voicemail
from cloudpbx.notify import VOICEMAIL
from softswitch.media.wav import write_wav

from .conftest import Subscriber, bearer, token_for

ROLES = ("operator", "admin@demo", "user1001@demo", "tf@demo")
MAILBOXES = {"own": ("demo", "1001"), "colleague": ("demo", "1002"), "other": ("other", "1001")}
ALLOWED = {
    "operator": {"own", "colleague", "other"},
    "admin@demo": {"own", "colleague"},
    "user1001@demo": {"own"},
    "tf@demo": set(),
}
BASE = "/api/v1/tenants/{}/extensions/{}/voicemail/messages"
SAMPLES = 8000 * 2  # two seconds


def seed(engine: Engine, sessions: sessionmaker[Session]) -> dict[str, str]:
    """One message in each mailbox; its id by mailbox key."""
    directory = voicemail.voicemail_directory(engine)
    ids: dict[str, str] = {}
    with sessions.begin() as session:
        for key, (tenant, number) in MAILBOXES.items():
            message_id = f"{key}0000000000000000000000000000"[:32]
            file_name = voicemail.message_path(tenant, number, message_id)
            write_wav(directory / file_name, b"\x10\x00" * SAMPLES)
            info = voicemail.MessageInfo(
                message_id=message_id,
                tenant_name=tenant,
                extension_number=number,
                caller="sip:1004@127.0.0.1",
                call_id=f"call-{key}",
                received_at=1_800_000_000.0,
                duration_seconds=2.0,
                heard=False,
                file_name=file_name,
            )
            assert voicemail.add_message(session, info)
            ids[key] = message_id
    return ids


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("login", ROLES)
def test_who_may_list_download_and_delete(
    login: str,
    notifying_client: TestClient,
    subscriber: Subscriber,
    engine: Engine,
    session_factory: sessionmaker[Session],
) -> None:
    ids = seed(engine, session_factory)
    headers = bearer(token_for(notifying_client, login))
    directory = voicemail.voicemail_directory(engine)
    subscriber.received()
    for key, (tenant, number) in MAILBOXES.items():
        base = BASE.format(tenant, number)
        allowed = key in ALLOWED[login]
        listed = notifying_client.get(base, headers=headers)
        assert listed.status_code == (200 if allowed else 403), (login, key, listed.text)
        # A refusal is the same for an existing and an unknown message.
        for message_id in (ids[key], "f" * 32):
            audio = notifying_client.get(f"{base}/{message_id}/audio", headers=headers)
            deleted = notifying_client.delete(f"{base}/{message_id}", headers=headers)
            if not allowed:
                assert (audio.status_code, deleted.status_code) == (403, 403), (login, key)
                continue
            if message_id != ids[key]:
                assert (audio.status_code, deleted.status_code) == (404, 404), (login, key)
                continue
            assert audio.status_code == 200, audio.text
            assert audio.headers["content-type"] == "audio/wav"
            with wave.open(io.BytesIO(audio.content)) as reader:
                assert (reader.getframerate(), reader.getnchannels()) == (8000, 1)
                assert reader.getnframes() == SAMPLES
            assert deleted.status_code == 204, deleted.text
        if allowed:
            (message,) = listed.json()
            assert message["message_id"] == ids[key]
            assert message["duration_seconds"] == 2.0 and message["heard"] is False
            assert message["audio_url"] == f"{base}/{ids[key]}/audio"
            assert notifying_client.get(base, headers=headers).json() == []
            assert not (directory / voicemail.message_path(tenant, number, ids[key])).exists()
    with session_factory() as session:
        remaining = {
            key
            for key, (tenant, number) in MAILBOXES.items()
            if voicemail.list_messages(session, tenant, number)
        }
    assert remaining == set(MAILBOXES) - ALLOWED[login]
    topics = subscriber.received()
    assert set(topics) == ({VOICEMAIL} if ALLOWED[login] else set()), topics


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_download_makes_the_message_old_once(
    notifying_client: TestClient,
    subscriber: Subscriber,
    engine: Engine,
    session_factory: sessionmaker[Session],
) -> None:
    ids = seed(engine, session_factory)
    headers = bearer(token_for(notifying_client, "user1001@demo"))
    base = BASE.format("demo", "1001")
    with session_factory() as session:
        counts = voicemail.mailbox_counts(session, "demo", "1001")
        assert (counts.new, counts.old) == (1, 0)
    subscriber.received()
    assert notifying_client.get(f"{base}/{ids['own']}/audio", headers=headers).status_code == 200
    assert subscriber.received() == [VOICEMAIL]
    assert notifying_client.get(f"{base}/{ids['own']}/audio", headers=headers).status_code == 200
    assert subscriber.received() == []  # already heard: nothing changed
    with session_factory() as session:
        counts = voicemail.mailbox_counts(session, "demo", "1001")
        assert (counts.new, counts.old) == (0, 1)
        all_counts = voicemail.all_mailbox_counts(session)
    assert all_counts[("demo", "1001")] == voicemail.MailboxCounts(0, 1)
    assert all_counts[("other", "1001")] == voicemail.MailboxCounts(1, 0)
    (message,) = notifying_client.get(base, headers=headers).json()
    assert message["heard"] is True


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_missing_file_is_404_and_unknown_mailboxes_are_404(
    notifying_client: TestClient, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    ids = seed(engine, session_factory)
    headers = bearer(token_for(notifying_client, "operator"))
    directory: Path = voicemail.voicemail_directory(engine)
    (directory / voicemail.message_path("demo", "1002", ids["colleague"])).unlink()
    base = BASE.format("demo", "1002")
    audio = notifying_client.get(f"{base}/{ids['colleague']}/audio", headers=headers)
    assert audio.status_code == 404
    assert notifying_client.get(BASE.format("demo", "9999"), headers=headers).status_code == 404
    assert notifying_client.get(BASE.format("nobody", "1001"), headers=headers).status_code == 404
