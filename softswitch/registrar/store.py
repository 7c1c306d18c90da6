"""The database `BindingStore` adapter: registrar bindings <-> `cloudpbx` registration rows.

Rules:
- All SQL runs on ONE dedicated worker thread (a single-thread executor), never on the
  event loop: the loop only awaits the result. One thread also means writes are applied
  in the order they were handed over, and a SQLite connection never changes thread.
- `apply_changes` writes a batch in one transaction: ADDED / REFRESHED upsert the row
  of (AOR, contact URI), REMOVED deletes it (RFC 3261 §10.3 step 7 keys bindings so).
  A failed batch is rolled back and the error propagates to the caller, which logs it:
  a lost write costs at most one registration interval (the phone re-registers).
- Times are wall-clock seconds since the epoch (bindings outlive the process).
- What a row cannot hold is rebuilt on load: `q` is not persisted (a reloaded binding
  ranks as q absent, i.e. 1.0, until the phone refreshes it); `+sip.instance`
  (RFC 5626 §4.1) is kept as `instance_id`; the flow keeps transport and received
  address but not the TCP connection, which died with the old process (a TCP flow
  without connection means "any connection to that address", see `Flow`);
  `registered_at` and `updated_at` become the load time.
- A row that does not parse back (a URI we no longer accept, a transport we do not
  speak) is skipped with one warning line, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.domain import Transport as StoredTransport
from cloudpbx.repository import (
    RegistrationRecord,
    delete_registration,
    load_registrations,
    store_registration,
)
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.uri import SipUri, parse_uri

from .bindings import AddressOfRecord, Binding, BindingChange, ChangeKind

__all__ = ["DatabaseBindingStore", "binding_from_record", "record_from_binding"]

logger = logging.getLogger("softswitch.registrar.store")

T = TypeVar("T")

_INSTANCE_PARAMETER = "+sip.instance"


def record_from_binding(binding: Binding) -> RegistrationRecord:
    """The row for `binding` (see the module rules for what is not kept)."""
    parameters = dict(binding.contact_parameters)
    return RegistrationRecord(
        address_of_record=str(binding.address_of_record),
        contact_uri=str(binding.contact_uri),
        expires_at=binding.expires_at,
        call_id=binding.call_id,
        cseq=binding.cseq,
        received_host=binding.flow.remote[0],
        received_port=binding.flow.remote[1],
        transport=StoredTransport(binding.flow.transport.value.lower()),
        instance_id=parameters.get(_INSTANCE_PARAMETER),
        user_agent=binding.user_agent,
    )


def binding_from_record(record: RegistrationRecord, now: float) -> Binding:
    """The binding a persisted row stands for, loaded at `now`.

    Raises:
        ValueError: the row's AOR, contact URI or transport cannot be used.
    """
    try:
        aor_uri = parse_uri(record.address_of_record)
        contact_uri = parse_uri(record.contact_uri)
    except RemoteProtocolError as error:
        raise ValueError(str(error)) from error
    if not isinstance(aor_uri, SipUri) or aor_uri.user is None:
        raise ValueError(f"address-of-record {record.address_of_record!r} is not sip:user@host")
    transport = Transport(record.transport.value.upper())  # TLS is not served: ValueError
    parameters: tuple[tuple[str, str | None], ...] = ()
    if record.instance_id is not None:
        parameters = ((_INSTANCE_PARAMETER, record.instance_id),)
    return Binding(
        address_of_record=AddressOfRecord(aor_uri.host.lower(), aor_uri.user),
        contact_uri=contact_uri,
        q=None,
        contact_parameters=parameters,
        expires_at=record.expires_at,
        call_id=record.call_id,
        cseq=record.cseq,
        flow=Flow(transport, (record.received_host, record.received_port)),
        registered_at=now,
        updated_at=now,
        user_agent=record.user_agent,
    )


class DatabaseBindingStore:
    """`BindingStore` over the config store's `registration` table (see the rules).

    Call `close()` when done: it waits for the worker thread to finish.
    """

    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], float]
    ) -> None:
        """
        Args:
            sessions: session factory of the config store.
            clock: wall clock (`time.time`), for loading: rows expired by then are left
                out.
        """
        self._sessions = sessions
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="binding-store")

    async def _run(self, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function)

    async def load_bindings(self) -> Sequence[Binding]:
        """Every binding still live in the store (`BindingStore`)."""
        return await self._run(self._load)

    async def apply_changes(self, changes: Sequence[BindingChange]) -> None:
        """Persist `changes` in order, in one transaction (`BindingStore`)."""
        batch = tuple(changes)
        if batch:
            await self._run(lambda: self._write(batch))

    def close(self) -> None:
        """Finish queued work and stop the worker thread."""
        self._executor.shutdown(wait=True)

    # --- on the worker thread -----------------------------------------------------------
    def _load(self) -> list[Binding]:
        now = self._clock()
        with self._sessions() as session:
            records = load_registrations(session, now)
        bindings: list[Binding] = []
        for record in records:
            try:
                bindings.append(binding_from_record(record, now))
            except ValueError as error:
                logger.warning(
                    "skipping stored binding %s -> %s: %s",
                    record.address_of_record, record.contact_uri, error,
                )
        return bindings

    def _write(self, changes: Sequence[BindingChange]) -> None:
        with self._sessions() as session, session.begin():
            for change in changes:
                binding = change.binding
                if change.kind is ChangeKind.REMOVED:
                    delete_registration(
                        session, str(binding.address_of_record), str(binding.contact_uri)
                    )
                else:
                    store_registration(session, record_from_binding(binding))
