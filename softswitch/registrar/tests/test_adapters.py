"""The registrar's I/O shell: snapshot ports, the database store and the service.

The snapshot and the store run over a real migrated SQLite file provisioned with
`configs/demo.yaml`; the service runs on a real event loop with an in-memory store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.db import (
    create_engine_for,
    create_session_factory,
    database_url_for_directory,
    upgrade,
)
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
from softswitch.registrar.service import RegistrarService
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.registrar.store import (
    DatabaseBindingStore,
    binding_from_record,
    record_from_binding,
)
from softswitch.sip.auth import NonceManager
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.uri import SipUri

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = database_url_for_directory(tmp_path)
    upgrade(url)
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
    loaded = binding_from_record(record, now=1_999_000_000.0)
    assert loaded.address_of_record == original.address_of_record
    assert loaded.contact_uri == original.contact_uri
    assert loaded.expires_at == original.expires_at
    assert (loaded.call_id, loaded.cseq) == ("call-1", 2)
    # The TCP connection died with the process; q and other parameters are not kept.
    assert loaded.flow == Flow(Transport.TCP, ("127.0.0.9", 40000))
    assert loaded.q is None
    assert loaded.contact_parameters == (("+sip.instance", '"<urn:uuid:1>"'),)


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
