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
- A binding is persisted whole, so that after a restart the 200 to a REGISTER lists the
  same Contact values (URI, q, every other parameter in its order; RFC 3261 §10.3 step
  8) in the same order (q, then most recently updated), and requests reach the phone
  on the same transport, address and port (its NAT binding, the flow of the REGISTER).
  `cloudpbx.repository.RegistrationRecord` carries the row's first columns; the rest
  (q, Contact parameters, registered_at, updated_at: `BindingDetails`) is written and
  read here, in the same transaction, by the row's key.
- Only the TCP connection cannot survive: it died with the old process, so a reloaded
  TCP flow has no connection id ("any connection to that address", see `Flow`; the
  phone's own connection if it reconnected, else a new one).
- A row written before the detail columns existed loads as it used to: q absent
  (ranks as 1.0), only `+sip.instance` (RFC 5626 §4.1, kept as `instance_id`) as
  parameter, `registered_at` and `updated_at` = the load time.
- Path (RFC 3327) is not stored because the registrar does not support it (no
  `Supported: path`, nothing recorded), so there is nothing to lose.
- A row that does not parse back (a URI we no longer accept, a transport we do not
  speak) is skipped with one warning line, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.domain import Transport as StoredTransport
from cloudpbx.models import Registration
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

__all__ = [
    "BindingDetails",
    "DatabaseBindingStore",
    "binding_from_record",
    "details_from_binding",
    "record_from_binding",
]

logger = logging.getLogger("softswitch.registrar.store")

T = TypeVar("T")

_INSTANCE_PARAMETER = "+sip.instance"


ContactParameters = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class BindingDetails:
    """The part of a binding a `RegistrationRecord` does not carry (see the rules).

    Attributes:
        q: the Contact's q (RFC 3261 §20.10), None when it had none.
        contact_parameters: the other Contact parameters in order; None for a row
            written before they were stored.
        registered_at: when the binding was first added; None for such an old row.
        updated_at: when it was last written; None for such an old row.
    """

    q: float | None
    contact_parameters: ContactParameters | None
    registered_at: float | None
    updated_at: float | None


def details_from_binding(binding: Binding) -> BindingDetails:
    """What `record_from_binding` leaves out of `binding`."""
    return BindingDetails(
        q=binding.q,
        contact_parameters=binding.contact_parameters,
        registered_at=binding.registered_at,
        updated_at=binding.updated_at,
    )


def _parameters_to_json(parameters: ContactParameters) -> list[list[str | None]]:
    return [[name, value] for name, value in parameters]


def _parameters_from_json(value: object) -> ContactParameters | None:
    """The stored JSON back as parameters; None for NULL.

    Raises:
        ValueError: not a list of [name, value-or-null] pairs.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("contact_parameters is not a list")
    parameters: list[tuple[str, str | None]] = []
    for item in value:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and (item[1] is None or isinstance(item[1], str))
        ):
            raise ValueError("contact_parameters holds something other than [name, value]")
        parameters.append((item[0], item[1]))
    return tuple(parameters)


def record_from_binding(binding: Binding) -> RegistrationRecord:
    """The row's first columns for `binding` (`details_from_binding` has the rest)."""
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


def binding_from_record(
    record: RegistrationRecord, now: float, details: BindingDetails | None = None
) -> Binding:
    """The binding a persisted row stands for, loaded at `now`.

    Args:
        details: the row's detail columns; None (or None fields) for an old row, which
            loads with the defaults of the module rules.

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
    if details is None:
        details = BindingDetails(None, None, None, None)
    parameters = details.contact_parameters
    if parameters is None:
        parameters = ()
        if record.instance_id is not None:
            parameters = ((_INSTANCE_PARAMETER, record.instance_id),)
    if details.q is not None and not 0.0 <= details.q <= 1.0:
        raise ValueError(f"q {details.q!r} is outside 0..1")  # RFC 3261 §20.10
    return Binding(
        address_of_record=AddressOfRecord(aor_uri.host.lower(), aor_uri.user),
        contact_uri=contact_uri,
        q=details.q,
        contact_parameters=parameters,
        expires_at=record.expires_at,
        call_id=record.call_id,
        cseq=record.cseq,
        flow=Flow(transport, (record.received_host, record.received_port)),
        registered_at=now if details.registered_at is None else details.registered_at,
        updated_at=now if details.updated_at is None else details.updated_at,
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
            rows = session.execute(
                select(
                    Registration.address_of_record,
                    Registration.contact_uri,
                    Registration.q,
                    Registration.contact_parameters,
                    Registration.registered_at,
                    Registration.updated_at,
                ).where(Registration.expires_at > now)
            ).all()
        details_by_key = {
            (row.address_of_record, row.contact_uri): row for row in rows
        }
        bindings: list[Binding] = []
        for record in records:
            try:
                row = details_by_key.get((record.address_of_record, record.contact_uri))
                details = None
                if row is not None:
                    details = BindingDetails(
                        q=row.q,
                        contact_parameters=_parameters_from_json(row.contact_parameters),
                        registered_at=row.registered_at,
                        updated_at=row.updated_at,
                    )
                bindings.append(binding_from_record(record, now, details))
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
                    record = record_from_binding(binding)
                    store_registration(session, record)
                    details = details_from_binding(binding)
                    session.execute(
                        update(Registration)
                        .where(
                            Registration.address_of_record == record.address_of_record,
                            Registration.contact_uri == record.contact_uri,
                        )
                        .values(
                            q=details.q,
                            contact_parameters=_parameters_to_json(
                                binding.contact_parameters
                            ),
                            registered_at=details.registered_at,
                            updated_at=details.updated_at,
                        )
                    )
