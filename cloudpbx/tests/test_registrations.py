"""Registrations persist across sessions (a restarted switch still reaches its phones)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.domain import Transport
from cloudpbx.repository import (
    RegistrationRecord,
    delete_expired_registrations,
    delete_registration,
    load_registrations,
    store_registration,
)


def _record(contact: str, expires_at: float, cseq: int = 1) -> RegistrationRecord:
    return RegistrationRecord(
        address_of_record="sip:1001@127.0.0.1",
        contact_uri=contact,
        expires_at=expires_at,
        call_id="a84b4c76e66710",
        cseq=cseq,
        received_host="127.0.0.1",
        received_port=40000,
        transport=Transport.UDP,
        instance_id="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>",
        user_agent="baresip",
    )


def test_store_reload_replace_and_delete(session_factory: sessionmaker[Session]) -> None:
    first = _record("sip:1001@127.0.0.1:40000", expires_at=1000.0)
    second = _record("sip:1001@127.0.0.1:40002", expires_at=2000.0)
    with session_factory() as session:
        store_registration(session, first)
        store_registration(session, second)
        session.commit()
    with session_factory() as session:  # a new session, as after a restart
        assert load_registrations(session, now=500.0) == (first, second)
        assert load_registrations(session, now=1500.0) == (second,)
        refreshed = _record("sip:1001@127.0.0.1:40000", expires_at=3000.0, cseq=2)
        store_registration(session, refreshed)
        session.commit()
        assert load_registrations(session, now=500.0) == (refreshed, second)
        delete_registration(session, second.address_of_record, second.contact_uri)
        session.commit()
        assert load_registrations(session, now=500.0) == (refreshed,)


def test_delete_expired(session: Session) -> None:
    store_registration(session, _record("sip:a@192.0.2.1", expires_at=100.0))
    store_registration(session, _record("sip:b@192.0.2.2", expires_at=200.0))
    assert delete_expired_registrations(session, now=150.0) == 1
    session.commit()
    assert [record.contact_uri for record in load_registrations(session, now=0.0)] == [
        "sip:b@192.0.2.2"
    ]
