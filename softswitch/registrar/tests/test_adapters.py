"""The registrar's I/O shell: snapshot ports, the database store and the service.

The snapshot and the store run over a real migrated store provisioned with
`configs/demo.yaml`, on SQLite and on PostgreSQL (the `sqlite` / `postgresql` ids; see
conftest); the service runs on a real event loop with an in-memory store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import create_engine_for, create_session_factory, upgrade
from cloudpbx.domain import Transport as StoredTransport
from cloudpbx.provisioning import provision
from cloudpbx.repository import RegistrationRecord, load_snapshot
from softswitch.registrar import (
    AddressOfRecord,
    Binding,
    BindingChange,
    ChangeKind,
    Registrar,
    RegistrarConfig,
    RemovalReason,
)
from softswitch.registrar.nonce_secret import NONCE_SECRET_LENGTH, load_or_create_nonce_secret
from softswitch.registrar.service import RegistrarService
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.registrar.store import (
    BindingDetails,
    DatabaseBindingStore,
    binding_from_record,
    details_from_binding,
    record_from_binding,
)
from softswitch.sip.auth import NonceManager, NonceStatus
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.uri import SipUri

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A migrated, empty store on each backend."""
    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    url = database_url
    engine = create_engine_for(url)
    factory = create_session_factory(engine)
    with factory() as session:
        provision(session, DEMO_CONFIG)
    yield factory
    engine.dispose()


def binding(user: str, contact: str, expires_at: float, **changes: object) -> Binding:
    values: dict[str, object] = {
        "address_of_record": AddressOfRecord("127.0.0.1", user),
        "contact_uri": SipUri.parse(contact),
        "q": None,
        "contact_parameters": (),
        "expires_at": expires_at,
        "call_id": "call-1",
        "cseq": 2,
        "flow": Flow(Transport.UDP, ("127.0.0.9", 5070)),
        "registered_at": expires_at - 3600,
        "updated_at": expires_at - 3600,
        "user_agent": "phone/1.0",
    }
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]


# --- SnapshotDirectory ----------------------------------------------------------------------


def test_snapshot_directory_serves_the_demo_extensions(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        directory = SnapshotDirectory(load_snapshot(session))
    sha = directory.lookup("127.0.0.1", "1001")
    assert sha is not None
    assert sha.algorithms == ("SHA-256", "MD5")
    assert sha.realm == "127.0.0.1" and sha.username == "1001"
    assert set(sha.ha1_by_algorithm) == {"SHA-256", "MD5"}
    md5 = directory.lookup("127.0.0.1", "1004")
    assert md5 is not None and md5.algorithms == ("MD5",)
    assert directory.lookup("127.0.0.1", "9999") is None
    assert directory.lookup("example.com", "1001") is None
    assert directory.is_local_domain("127.0.0.1")
    assert not directory.is_local_domain("example.com")


# --- DatabaseBindingStore -------------------------------------------------------------------


def test_record_round_trip_keeps_what_a_row_holds() -> None:
    original = binding(
        "1001",
        "sip:1001@10.0.0.5:5062;transport=tcp",
        2_000_000_000.0,
        contact_parameters=(("+sip.instance", '"<urn:uuid:1>"'), ("reg-id", "1")),
        flow=Flow(Transport.TCP, ("127.0.0.9", 40000), connection_id=7),
        q=0.5,
    )
    record = record_from_binding(original)
    assert record.address_of_record == "sip:1001@127.0.0.1"
    assert record.transport is StoredTransport.TCP
    assert record.instance_id == '"<urn:uuid:1>"'
    # The record alone (a row written before the detail columns): the old defaults.
    legacy = binding_from_record(record, now=1_999_000_000.0)
    assert legacy.q is None
    assert legacy.contact_parameters == (("+sip.instance", '"<urn:uuid:1>"'),)
    assert legacy.registered_at == legacy.updated_at == 1_999_000_000.0
    # With its details: the whole binding, but the TCP connection (it died with the
    # process; the flow means "any connection to that address" now).
    loaded = binding_from_record(record, 1_999_000_000.0, details_from_binding(original))
    assert loaded == dataclasses.replace(
        original, flow=Flow(Transport.TCP, ("127.0.0.9", 40000))
    )


def test_record_that_cannot_be_used_is_refused() -> None:
    record = RegistrationRecord(
        address_of_record="sip:1001@127.0.0.1",
        contact_uri="sips:1001@10.0.0.5",
        expires_at=2_000_000_000.0,
        call_id="c",
        cseq=1,
        received_host="127.0.0.9",
        received_port=5061,
        transport=StoredTransport.TLS,
    )
    with pytest.raises(ValueError):
        binding_from_record(record, 0.0)


def test_database_store_applies_changes_in_order_and_reloads(
    sessions: sessionmaker[Session],
) -> None:
    now = time.time()
    first = binding("1001", "sip:1001@10.0.0.5", now + 600)
    second = binding("1002", "sip:1002@10.0.0.6", now + 600)
    refreshed = binding("1001", "sip:1001@10.0.0.5", now + 1200, cseq=3)
    lapsed = binding("1003", "sip:1003@10.0.0.7", now - 1)

    async def scenario() -> Sequence[Binding]:
        store = DatabaseBindingStore(sessions, time.time)
        try:
            await store.apply_changes(
                [
                    BindingChange(ChangeKind.ADDED, first),
                    BindingChange(ChangeKind.ADDED, second),
                    BindingChange(ChangeKind.ADDED, lapsed),
                    BindingChange(ChangeKind.REFRESHED, refreshed),
                    BindingChange(ChangeKind.REMOVED, second, RemovalReason.UNREGISTERED),
                ]
            )
            return await store.load_bindings()
        finally:
            store.close()

    loaded = asyncio.run(scenario())
    assert [(str(b.address_of_record), b.expires_at, b.cseq) for b in loaded] == [
        ("sip:1001@127.0.0.1", now + 1200, 3)
    ]


def test_database_store_keeps_the_whole_binding(sessions: sessionmaker[Session]) -> None:
    """What the 200 lists (URI, q, parameters in order) and how the phone is reached
    (transport, received address and port) come back from the table unchanged, and so
    does the order `lookup` gives (q, then most recently updated)."""
    now = time.time()
    desk = binding(
        "1001",
        "sip:1001@10.0.0.5:5062;transport=tcp;ob",
        now + 600,
        q=0.7,
        contact_parameters=(
            ("+sip.instance", '"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"'),
            ("reg-id", "1"),
            ("+sip.ice", None),
            ("methods", '"INVITE,ACK,BYE"'),
        ),
        flow=Flow(Transport.TCP, ("198.51.100.7", 40001), connection_id=3),
        registered_at=now - 1000,
        updated_at=now - 10,
        user_agent="Desk/2.0",
    )
    soft = binding(
        "1001",
        "sip:1001@10.0.0.6:5070",
        now + 300,
        q=0.7,
        flow=Flow(Transport.UDP, ("198.51.100.8", 5070)),
        registered_at=now - 20,
        updated_at=now - 5,  # more recent than desk: first among equal q
    )
    mobile = binding("1001", "sip:1001@10.0.0.7", now + 900, q=None)  # ranks as 1.0

    async def scenario() -> Sequence[Binding]:
        store = DatabaseBindingStore(sessions, time.time)
        try:
            await store.apply_changes(
                [BindingChange(ChangeKind.ADDED, item) for item in (desk, soft, mobile)]
            )
            return await store.load_bindings()
        finally:
            store.close()

    loaded = asyncio.run(scenario())
    expected = {
        str(item.contact_uri): dataclasses.replace(
            item, flow=Flow(item.flow.transport, item.flow.remote)
        )
        for item in (desk, soft, mobile)
    }
    assert {str(item.contact_uri): item for item in loaded} == expected

    # The 200 to a REGISTER is a function of the bindings (RFC 3261 §10.3 step 8), so
    # equal bindings give equal Contact values; and the order requests try them in:
    before = make_registrar()
    before.load_bindings([desk, soft, mobile], now)
    after = make_registrar()
    after.load_bindings(loaded, now)
    assert [b.contact_uri for b in after.lookup_contacts("127.0.0.1", "1001", now)] == [
        b.contact_uri for b in before.lookup_contacts("127.0.0.1", "1001", now)
    ] == [mobile.contact_uri, soft.contact_uri, desk.contact_uri]


def test_a_row_from_before_the_detail_columns_loads_with_the_old_defaults(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    upgrade(url, "1dd41227fb59")  # the first schema
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO registration (address_of_record, contact_uri, expires_at,"
                    " call_id, cseq, received_host, received_port, transport, instance_id)"
                    " VALUES ('sip:1001@127.0.0.1', 'sip:1001@10.0.0.5', :expires, 'c', 4,"
                    " '198.51.100.7', 40000, 'udp', '\"<urn:uuid:1>\"')"
                ),
                {"expires": time.time() + 600},
            )
        upgrade(url)

        async def load() -> Sequence[Binding]:
            store = DatabaseBindingStore(create_session_factory(engine), time.time)
            try:
                return await store.load_bindings()
            finally:
                store.close()

        (loaded,) = asyncio.run(load())
    finally:
        engine.dispose()
    assert loaded.q is None and loaded.cseq == 4
    assert loaded.contact_parameters == (("+sip.instance", '"<urn:uuid:1>"'),)
    assert loaded.flow == Flow(Transport.UDP, ("198.51.100.7", 40000))


def test_long_header_values_do_not_lose_the_batch(
    sessions: sessionmaker[Session], backend: str
) -> None:
    """RFC 3261 bounds neither Call-ID nor User-Agent: the columns are TEXT (they were
    VARCHAR(256), which PostgreSQL enforced by refusing the row and rolling back the
    whole batch, other phones' changes too)."""
    now = time.time()
    ordinary = binding("1002", "sip:1002@10.0.0.6", now + 600)
    chatty = binding(
        "1001", "sip:1001@10.0.0.5", now + 600, user_agent="U" * 300, call_id="c" * 300
    )

    async def scenario() -> Sequence[Binding]:
        store = DatabaseBindingStore(sessions, time.time)
        try:
            await store.apply_changes(
                [BindingChange(ChangeKind.ADDED, item) for item in (ordinary, chatty)]
            )
            return await store.load_bindings()
        finally:
            store.close()

    loaded = asyncio.run(scenario())
    assert {str(item.contact_uri) for item in loaded} == {
        "sip:1002@10.0.0.6",
        "sip:1001@10.0.0.5",
    }


def test_unusable_details_are_refused() -> None:
    with pytest.raises(ValueError):
        binding_from_record(
            record_from_binding(binding("1001", "sip:1001@10.0.0.5", 2e9)),
            0.0,
            BindingDetails(q=1.5, contact_parameters=(), registered_at=None, updated_at=None),
        )


# --- The digest nonce key -------------------------------------------------------------------


def test_nonce_secret_is_created_once_and_kept(database_url: str) -> None:
    url = database_url
    first_engine, second_engine = create_engine_for(url), create_engine_for(url)
    try:
        # Two processes on one data directory, one after the other.
        first = load_or_create_nonce_secret(create_session_factory(first_engine))
        second = load_or_create_nonce_secret(
            create_session_factory(second_engine),
            random_bytes=lambda size: pytest.fail("a second key was drawn"),
        )
    finally:
        first_engine.dispose()
        second_engine.dispose()
    assert first == second and len(first) == NONCE_SECRET_LENGTH
    # A nonce issued by the first process is valid for the next one (not stale, ours).
    issued = NonceManager(first, 300.0).issue(1_000.0)
    assert NonceManager(second, 300.0).check(issued, 1_100.0) is NonceStatus.VALID


def test_nonce_secret_race_on_first_start_ends_with_one_key(database_url: str) -> None:
    url = database_url
    engine = create_engine_for(url)
    sessions = create_session_factory(engine)
    winner = os.urandom(32)

    def draw_while_another_process_wins(size: int) -> bytes:
        # Between our read (nothing stored) and our insert, another process stores its key.
        load_or_create_nonce_secret(sessions, random_bytes=lambda _: winner)
        return os.urandom(size)

    try:
        assert load_or_create_nonce_secret(sessions, draw_while_another_process_wins) == winner
        assert load_or_create_nonce_secret(sessions) == winner
    finally:
        engine.dispose()


def test_a_short_stored_nonce_secret_is_refused(database_url: str) -> None:
    url = database_url
    engine = create_engine_for(url)
    try:
        sessions = create_session_factory(engine)
        with pytest.raises(ValueError):
            load_or_create_nonce_secret(sessions, random_bytes=lambda _: b"short")
        with pytest.raises(ValueError):  # stored, and refused on every later start
            load_or_create_nonce_secret(sessions)
    finally:
        engine.dispose()


# --- RegistrarService -----------------------------------------------------------------------


class MemoryStore:
    def __init__(self, persisted: Sequence[Binding], fail: bool = False) -> None:
        self.persisted = list(persisted)
        self.batches: list[list[BindingChange]] = []
        self.fail = fail

    async def load_bindings(self) -> Sequence[Binding]:
        return list(self.persisted)

    async def apply_changes(self, changes: Sequence[BindingChange]) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("disk full")
        self.batches.append(list(changes))


def make_registrar() -> Registrar:
    class NoDirectory:
        def lookup(self, domain: str, user: str) -> None:
            return None

        def is_local_domain(self, domain: str) -> bool:
            return True

    directory = NoDirectory()
    return Registrar(
        RegistrarConfig(),
        directory,
        directory,
        NonceManager(b"0123456789abcdef0123456789abcdef", 300.0),
        SipEndpoint(EndpointConfig(local_host="127.0.0.1", local_port=5060)),
    )


def test_service_loads_expires_on_time_and_flushes_on_close() -> None:
    async def scenario() -> tuple[MemoryStore, RegistrarService]:
        now = time.time()
        soon = binding("1001", "sip:1001@10.0.0.5", now + 0.1)
        later = binding("1002", "sip:1002@10.0.0.6", now + 600)
        gone = binding("1003", "sip:1003@10.0.0.7", now - 5)
        store = MemoryStore([soon, later, gone])
        service = RegistrarService(make_registrar(), store, time.time, asyncio.get_running_loop())
        await service.start()
        await asyncio.sleep(0.3)
        await service.close()
        return store, service

    store, service = asyncio.run(scenario())
    assert service.counters["bindings_loaded"] == 2
    removed = [change for batch in store.batches for change in batch]
    assert [(str(c.binding.address_of_record), c.reason) for c in removed] == [
        ("sip:1003@127.0.0.1", RemovalReason.EXPIRED),
        ("sip:1001@127.0.0.1", RemovalReason.EXPIRED),
    ]
    assert service.registrar.next_expiry() is not None  # 1002 is still bound


def test_service_counts_a_failed_batch_and_keeps_writing() -> None:
    async def scenario() -> RegistrarService:
        now = time.time()
        store = MemoryStore([binding("1003", "sip:1003@10.0.0.7", now - 5)], fail=True)
        service = RegistrarService(make_registrar(), store, time.time, asyncio.get_running_loop())
        await service.start()
        await service.close()
        return service

    service = asyncio.run(scenario())
    assert service.counters["store_batches_failed"] == 1
