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
  requests, responses and CANCEL by Call-ID (the caller's Call-ID, or a token the call
  drew from `new_token` for its uac_leg Call-ID, which `Call` documents), timeouts by
  transaction key (the caller's INVITE, and each client transaction once a response
  named it). A timeout of a client transaction that never saw a response (Timer B/F
  with a silent peer) is offered to the calls in progress: rare by nature.
  `TransactionTerminated` and `MessageDropped` never belong to a call.
- One `CallRecord` per call that started, and one per INVITE that routing refused
  (404, 480): authentication challenges (407) are not calls and leave no record.
- A call's index entries are removed when its `CallEnded` comes out; nothing of a call
  outlives it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.message import Response

from .call import Call, CallEnded
from .caller_auth import CallerAuthenticator
from .routing import CallRejection, ContactLookup, route_call

__all__ = ["CallRecord", "CallService"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, for the one structured log line per call.

    Attributes:
        call_id: the caller's Call-ID.
        caller: the caller's From URI.
        callee: the callee's address-of-record.
        target: the Request-URI we called.
        result: how it ended (`CallResult` value).
        status_code: the final status the caller got.
        duration: seconds from answer to hang-up; 0.0 when unanswered.
    """

    call_id: str
    caller: str
    callee: str
    target: str
    result: str
    status_code: int
    duration: float

    def log_text(self) -> str:
        return (
            f"call ended call_id={self.call_id} from={self.caller} to={self.callee} "
            f"target={self.target} result={self.result} status={self.status_code} "
            f"duration={self.duration:.3f}"
        )


@dataclass(slots=True)
class _Entry:
    """A call and its index entries."""

    call: Call
    caller: str
    callee: str
    target: str
    tokens: list[str] = field(default_factory=list)
    transaction_keys: set[str] = field(default_factory=set)
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
        self._by_call_id: dict[str, _Entry] = {}
        self._by_token: dict[str, _Entry] = {}
        self._by_transaction: dict[str, _Entry] = {}
        self._deadlines: list[tuple[float, int, _Entry]] = []
        self._sequence = itertools.count()
        self._records: deque[CallRecord] = deque()

    # ================================================================ outputs
    @property
    def authenticator_counters(self) -> Counter[str]:
        """The caller authenticator's counters (407s, failures, trunk calls)."""
        return self._authenticator.counters

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self._by_call_id)

    def next_record(self) -> CallRecord | None:
        """The next finished call's record, or None."""
        return self._records.popleft() if self._records else None

    def next_deadline(self) -> float | None:
        """The earliest call deadline (may be one already obsolete: harmless)."""
        while self._deadlines:
            deadline, _, entry = self._deadlines[0]
            if entry.call.next_deadline() == deadline and entry.call.call_id in self._by_call_id:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    # ================================================================ inputs
    def handle_invite(self, event: RequestReceived, now: float) -> Response | None:
        """A new INVITE that passed §8.2: the rejection to send, or None (a call took it)."""
        request = event.request
        self.counters["invites"] += 1
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
        tokens: list[str] = []

        def call_token() -> str:
            token = self._new_token()
            tokens.append(token)
            return token

        call = Call(
            self._endpoint,
            event,
            route.target_uri,
            route.flow,
            self._local_contact,
            call_token,
            route.no_answer_timeout,
        )
        entry = _Entry(call, str(request.from_address.uri), route.callee, route.target_uri, tokens)
        self._by_call_id[call.call_id] = entry
        assert event.transaction_key is not None
        self._index_transaction(entry, event.transaction_key)
        self.counters["calls_started"] += 1
        call.start(now)
        self._after(entry, now)
        return None

    def handle_call_event(self, event: SipEvent, now: float) -> bool:
        """Offer an endpoint event to the calls; True when one took it."""
        if isinstance(event, TransactionTerminated):
            entry = self._by_transaction.pop(event.transaction_key, None)
            if entry is not None:
                entry.transaction_keys.discard(event.transaction_key)
            return False
        if isinstance(event, (RequestReceived, ResponseReceived)):
            message = event.request if isinstance(event, RequestReceived) else event.response
            found = self._by_call_id_or_token(message.call_id)
            if found is None:
                return False
            if isinstance(event, ResponseReceived):
                self._index_transaction(found, event.transaction_key)
            return self._deliver(found, event, now)
        if isinstance(event, CancelReceived):
            found = self._by_call_id.get(event.cancel.call_id)
            return found is not None and self._deliver(found, event, now)
        if isinstance(event, (TransactionTimeout, TransportError)):
            found = self._by_transaction.get(event.transaction_key)
            if found is not None:
                return self._deliver(found, event, now)
            if isinstance(event, TransactionTimeout) and event.is_client:
                # Module rules: a client transaction that never saw a response.
                for entry in list(self._by_call_id.values()):
                    if self._deliver(entry, event, now):
                        return True
            return False
        return False

    def handle_timer(self, now: float) -> None:
        """Run every call deadline that is due."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, entry = heapq.heappop(self._deadlines)
            if entry.call.call_id not in self._by_call_id or entry.call.next_deadline() != deadline:
                continue  # obsolete: the call moved on or ended
            entry.call.handle_timer(now)
            self._after(entry, now)

    # ================================================================ internals
    def _by_call_id_or_token(self, call_id: str) -> _Entry | None:
        entry = self._by_call_id.get(call_id)
        if entry is None:
            entry = self._by_token.get(call_id.partition("@")[0])
        return entry

    def _index_transaction(self, entry: _Entry, key: str) -> None:
        if key not in entry.transaction_keys:
            entry.transaction_keys.add(key)
            self._by_transaction[key] = entry

    def _deliver(self, entry: _Entry, event: SipEvent, now: float) -> bool:
        taken = entry.call.handle_event(event, now)
        self._after(entry, now)
        return taken

    def _after(self, entry: _Entry, now: float) -> None:
        """Index the call's new tokens, schedule its deadline, collect its end."""
        for token in entry.tokens:
            self._by_token.setdefault(token, entry)
        deadline = entry.call.next_deadline()
        if deadline is not None and deadline != entry.scheduled:
            entry.scheduled = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._sequence), entry))
        ended = entry.call.next_event()
        if ended is not None:
            self._finish(entry, ended)

    def _finish(self, entry: _Entry, ended: CallEnded) -> None:
        if self._by_call_id.get(entry.call.call_id) is entry:
            del self._by_call_id[entry.call.call_id]
        for token in entry.tokens:
            if self._by_token.get(token) is entry:
                del self._by_token[token]
        for key in entry.transaction_keys:
            if self._by_transaction.get(key) is entry:
                del self._by_transaction[key]
        entry.transaction_keys.clear()
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
