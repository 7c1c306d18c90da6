"""The call service: authenticates and routes new INVITEs and runs their `Call`s. No I/O.

Rules:
- Sans-I/O like the rest of `b2bua/` (STYLE.md principles 1, 2, 4): every input takes
  the SIP core's `now`; the registrar's and nonce manager's clock (`wall_clock`, wall
  time in the running switch) is a constructor argument. Deadlines leave through
  `next_deadline()` / `handle_timer(now)`; one `CallRecord` per finished call leaves
  through `next_record()`; the adapter logs it. Calls act through the endpoint directly.
- It is the element's `CallHandler`: `handle_invite()` gets each new INVITE (no To tag)
  that passed the RFC 3261 §8.2 checks; `handle_call_event()` is offered every endpoint
  event first and returns True when a call took it.
- A new INVITE: the caller is authenticated (`caller_auth`: trunk by source address, or
  407 Proxy-Authenticate, RFC 3261 §22.3), then routed (`routing.route_call`); a
  rejection is returned for the element to send. A Call-ID already used by a call in
  progress gets 482 (§8.2.2.2 spirit: the same request reached us twice). Otherwise a
  `Call` starts and the element sends nothing.
- Events reach a call through indexes, never by offering each event to each call:
  requests and responses by Call-ID, CANCEL by the INVITE transaction it names (else
  by Call-ID), timeouts and transport errors by transaction key. The indexes are what
  the call says it owns, `Call.call_ids` and `Call.transaction_keys`, re-read after
  every event and deadline the call handled. A `TransactionTimeout` or `TransportError`
  whose key no call owns is dropped and counted (`dropped_unindexed`), never offered
  around. `TransactionTerminated` and `MessageDropped` never belong to a call.
- A call that raises is ended on the spot: removed from every index, counted
  (`calls_crashed`), and its record (result `crashed`, status 500, the error's text)
  is the one log line it leaves; the exception goes no further, so one broken call
  never takes the switch or other calls down (STYLE.md principle 7). A caller still
  without a final answer gets 500 Server Internal Error (§21.5.1), so the INVITE
  server transaction ends too (§17.2.1: it waits for the TU's final response).
- Draining (`stop_accepting()`, for a graceful shutdown): a new INVITE is answered 503
  Service Unavailable with Retry-After (RFC 3261 §21.5.4: the caller may retry
  elsewhere or later) before any authentication, and leaves no record; calls in
  progress, and their in-dialog requests, are served as before.
- One `CallRecord` per call that started, and one per INVITE that routing refused
  (404, 480): authentication challenges (407) are not calls and leave no record.
- A call's index entries are removed when its `CallEnded` comes out (its `call_ids`
  and `transaction_keys` are empty once ENDED); nothing of a call outlives it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.message import Response

from .call import Call, CallEnded
from .caller_auth import CallerAuthenticator
from .routing import CallRejection, ContactLookup, route_call

__all__ = ["DRAINING_RETRY_AFTER", "CallRecord", "CallService"]

DRAINING_RETRY_AFTER = 30
"""Seconds in the Retry-After of the 503 to new INVITEs while draining (§20.33)."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, for the one structured log line per call.

    Attributes:
        call_id: the caller's Call-ID.
        caller: the caller's From URI.
        callee: the callee's address-of-record.
        target: the Request-URI we called.
        result: how it ended (`CallResult` value, or `crashed`).
        status_code: the final status the caller got.
        duration: seconds from answer to hang-up; 0.0 when unanswered.
        error: for a crashed call, the exception's type and text; else empty.
    """

    call_id: str
    caller: str
    callee: str
    target: str
    result: str
    status_code: int
    duration: float
    error: str = ""

    def log_text(self) -> str:
        text = (
            f"call ended call_id={self.call_id} from={self.caller} to={self.callee} "
            f"target={self.target} result={self.result} status={self.status_code} "
            f"duration={self.duration:.3f}"
        )
        return f"{text} error={self.error!r}" if self.error else text


@dataclass(slots=True)
class _Entry:
    """A call and its index entries."""

    call: Call
    caller: str
    callee: str
    target: str
    call_ids: frozenset[str] = frozenset()
    """The Call-IDs indexed for this call (its `call_ids` when last read)."""
    transaction_keys: frozenset[str] = frozenset()
    """The transaction keys indexed for this call (its `transaction_keys` when last read)."""
    ended: bool = False
    scheduled: float | None = None
    """The deadline last pushed on the heap, so each one is pushed once."""


class CallService:
    """Runs the switch's calls (see the module rules)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        snapshot: ConfigSnapshot,
        authenticator: CallerAuthenticator,
        registrations: ContactLookup,
        wall_clock: Callable[[], float],
        local_contact: str,
        new_token: Callable[[], str],
    ) -> None:
        self.counters: Counter[str] = Counter()
        self._endpoint = endpoint
        self._snapshot = snapshot
        self._authenticator = authenticator
        self._registrations = registrations
        self._wall_clock = wall_clock
        self._local_contact = local_contact
        self._new_token = new_token
        self._calls: dict[str, _Entry] = {}
        """Calls in progress by the caller's Call-ID."""
        self._by_call_id: dict[str, _Entry] = {}
        self._by_transaction: dict[str, _Entry] = {}
        self._deadlines: list[tuple[float, int, _Entry]] = []
        self._sequence = itertools.count()
        self._records: deque[CallRecord] = deque()
        self._accepting = True

    # ================================================================ outputs
    @property
    def authenticator_counters(self) -> Counter[str]:
        """The caller authenticator's counters (407s, failures, trunk calls)."""
        return self._authenticator.counters

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self._calls)

    @property
    def accepting(self) -> bool:
        """False once `stop_accepting()` was called (module rules: draining)."""
        return self._accepting

    def stop_accepting(self) -> None:
        """Answer every new INVITE 503 from now on; calls in progress go on."""
        self._accepting = False

    def index_sizes(self) -> dict[str, int]:
        """How much the service holds: all zero once every call ended and its last
        deadline passed (for leak tests and gauges)."""
        return {
            "calls": len(self._calls),
            "by_call_id": len(self._by_call_id),
            "by_transaction": len(self._by_transaction),
            "deadlines": len(self._deadlines),
        }

    def next_record(self) -> CallRecord | None:
        """The next finished call's record, or None."""
        return self._records.popleft() if self._records else None

    def next_deadline(self) -> float | None:
        """The earliest call deadline (may be one already obsolete: harmless)."""
        while self._deadlines:
            deadline, _, entry = self._deadlines[0]
            if not entry.ended and entry.call.next_deadline() == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def replace_snapshot(self, snapshot: ConfigSnapshot) -> None:
        """Route new INVITEs with `snapshot` from now on; calls in progress are not
        touched (a `Call` gets its route at start and never reads a snapshot)."""
        self._snapshot = snapshot

    # ================================================================ inputs
    def handle_invite(self, event: RequestReceived, now: float) -> Response | None:
        """A new INVITE that passed §8.2: the rejection to send, or None (a call took it)."""
        request = event.request
        self.counters["invites"] += 1
        if not self._accepting:
            # Module rules: draining. RFC 3261 §21.5.4: 503 with Retry-After.
            self.counters["invites_refused_draining"] += 1
            response = self._endpoint.create_response(request, 503)
            response.headers.add("Retry-After", str(DRAINING_RETRY_AFTER))
            return response
        if request.call_id in self._by_call_id:
            self.counters["invites_call_id_in_use"] += 1
            return self._endpoint.create_response(request, 482)
        caller = self._authenticator.authenticate(request, event.flow, self._wall_clock())
        if isinstance(caller, Response):
            return caller
        route = route_call(
            request, caller.domain, self._snapshot, self._registrations, self._wall_clock()
        )
        if isinstance(route, CallRejection):
            # Routing refused the call: still one record (module rules), never answered.
            self.counters[f"rejected.{route.status_code}"] += 1
            callee = request.uri
            self._records.append(
                CallRecord(
                    request.call_id,
                    str(request.from_address.uri),
                    str(callee),
                    "",
                    "rejected",
                    route.status_code,
                    0.0,
                )
            )
            return self._endpoint.create_response(request, route.status_code, route.reason)
        call = Call(
            self._endpoint,
            event,
            route.target_uri,
            route.flow,
            self._local_contact,
            self._new_token,
            route.no_answer_timeout,
            targets=route.targets,
        )
        target = ",".join(uri for uri, _ in route.targets) or route.target_uri
        entry = _Entry(call, str(request.from_address.uri), route.callee, target)
        self._calls[call.call_id] = entry
        self.counters["calls_started"] += 1
        try:
            call.start(now)
            self._after(entry, now)
        except Exception as error:  # module rules: a call that raises
            self._crash(entry, error, now)
        return None

    def handle_call_event(self, event: SipEvent, now: float) -> bool:
        """Offer an endpoint event to the calls; True when one took it."""
        found: _Entry | None
        if isinstance(event, (RequestReceived, ResponseReceived)):
            message = event.request if isinstance(event, RequestReceived) else event.response
            found = self._by_call_id.get(message.call_id)
        elif isinstance(event, CancelReceived):
            # §9.2: the CANCEL matched the caller's INVITE server transaction.
            found = self._by_transaction.get(event.invite_transaction_key)
            if found is None:
                found = self._by_call_id.get(event.cancel.call_id)
        elif isinstance(event, (TransactionTimeout, TransportError)):
            found = self._by_transaction.get(event.transaction_key)
            if found is None:
                # Module rules: never offered to every call.
                self.counters["dropped_unindexed"] += 1
                return False
        else:
            return False  # TransactionTerminated, MessageDropped: never a call's
        return found is not None and self._deliver(found, event, now)

    def handle_timer(self, now: float) -> None:
        """Run every call deadline that is due."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, entry = heapq.heappop(self._deadlines)
            if entry.ended or entry.call.next_deadline() != deadline:
                continue  # obsolete: the call moved on or ended
            try:
                entry.call.handle_timer(now)
                self._after(entry, now)
            except Exception as error:  # module rules: a call that raises
                self._crash(entry, error, now)

    # ================================================================ internals
    def _deliver(self, entry: _Entry, event: SipEvent, now: float) -> bool:
        try:
            taken = entry.call.handle_event(event, now)
            self._after(entry, now)
        except Exception as error:  # module rules: a call that raises
            self._crash(entry, error, now)
            return True  # it was this call's event; nobody else should answer it
        return taken

    def _after(self, entry: _Entry, now: float) -> None:
        """Re-index the call, schedule its deadline, collect its end."""
        self._reindex(entry, entry.call.call_ids, entry.call.transaction_keys)
        deadline = entry.call.next_deadline()
        if deadline is not None and deadline != entry.scheduled:
            entry.scheduled = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._sequence), entry))
        ended = entry.call.next_event()
        if ended is not None:
            self._finish(entry, ended)

    def _reindex(
        self, entry: _Entry, call_ids: frozenset[str], transaction_keys: frozenset[str]
    ) -> None:
        """Make the indexes hold exactly these Call-IDs and keys for `entry`."""
        if call_ids == entry.call_ids and transaction_keys == entry.transaction_keys:
            return  # most events change neither (a provisional, an ACK, a BYE's 200)
        for index, old, new in (
            (self._by_call_id, entry.call_ids, call_ids),
            (self._by_transaction, entry.transaction_keys, transaction_keys),
        ):
            for key in old - new:
                if index.get(key) is entry:
                    del index[key]
            for key in new - old:
                index[key] = entry
        entry.call_ids = call_ids
        entry.transaction_keys = transaction_keys

    def _remove(self, entry: _Entry) -> None:
        entry.ended = True
        self._reindex(entry, frozenset(), frozenset())
        if self._calls.get(entry.call.call_id) is entry:
            del self._calls[entry.call.call_id]

    def _crash(self, entry: _Entry, error: Exception, now: float) -> None:
        """Module rules: a call that raised is ended, counted and recorded once."""
        self._remove(entry)
        self.counters["calls_crashed"] += 1
        call = entry.call
        try:
            self._endpoint.send_response(
                self._endpoint.create_response(call.caller_invite, 500),
                now,
                call.caller_invite_key,
            )
        except LocalProtocolError:
            pass  # the caller already had its final response (§17.2.1)
        self._records.append(
            CallRecord(
                entry.call.call_id,
                entry.caller,
                entry.callee,
                entry.target,
                "crashed",
                500,
                0.0,
                f"{type(error).__name__}: {error}",
            )
        )

    def _finish(self, entry: _Entry, ended: CallEnded) -> None:
        self._remove(entry)
        self.counters[f"calls_ended.{ended.result.value}"] += 1
        self._records.append(
            CallRecord(
                ended.call_id,
                entry.caller,
                entry.callee,
                entry.target,
                ended.result.value,
                ended.status_code,
                ended.duration,
            )
        )
