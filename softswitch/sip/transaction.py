"""The four RFC 3261 §17 transaction state machines, with RFC 6026's Accepted state.

Theory of operation:
- A transaction is pure: every input is a method call that takes `now` (a request or
  response, a timer expiry, a transport failure), and every output is queued for the
  caller to drain with `take_outputs()`: `Transmit(bytes, flow)` to send and the
  `SipEvent`s of `events.py`. `deadline` is the earliest timer the caller must come
  back for with `handle_timer(now)`. Nothing here reads a clock or touches a socket.
- States are Enums named as in the RFC figures (RFC 3261 Figures 5 to 8; RFC 6026
  Figures 5 and 7 add ACCEPTED). Each class is described by data:
    - `transitions`: the states each state may move to; anything else raises
      `LocalProtocolError` (a bug in the caller, never the peer's fault);
    - `timers_kept` / `timers_started`: on entering a state every running timer not
      kept is cancelled, then the state's own timers start (Table 4 values from
      `TimerValues`; a retransmission timer does not run on a reliable transport, and
      a zero wait, as D, I, J, K over TCP, fires within the same call);
    - `timer_actions`: what a timer does in a state (retransmit and back off, time out,
      terminate); a timer firing in a state without an entry is a bug;
    - a response table (client) or a TU-response table and a request table (server):
      `(state, input) -> (next state, action)`. An input with no row raises
      `LocalProtocolError`: a TU sending a second final response, for instance.
- Every message handed to a transaction ends in exactly one event: passed up
  (`ResponseReceived`, or `RequestReceived` for an ACK of a 2xx) or `MessageDropped`
  (an absorbed retransmission; an ACK that ends a Completed server transaction).
- Client transactions (§17.1): the INVITE's ACK for a non-2xx final response is built
  here (§17.1.1.3) and sent again for every retransmission of that response. A 2xx moves
  the INVITE client transaction to ACCEPTED (RFC 6026 §8.4): it and every later 2xx are
  passed up so the TU can ACK each (§13.2.2.4); the transaction never ACKs a 2xx.
- Server transactions (§17.2): request retransmissions are absorbed and the last
  response is sent again (§17.2.1, §17.2.2). A 2xx moves the INVITE server transaction
  to ACCEPTED (RFC 6026 §8.5); retransmissions of the INVITE are absorbed there and an
  ACK is passed up to the TU.
- 2xx retransmission (design choice, documented here): RFC 3261 §13.3.1.4 gives it to
  the UAS core, which "MUST" retransmit the 2xx at T1 doubling to T2 until the ACK
  arrives, "independent of whatever transport protocols are used". With
  `retransmit_success=True` the INVITE server transaction does this for its TU while in
  ACCEPTED, on Timer G's schedule, and stops when `acknowledge_success()` is called or
  an ACK reaches it. If Timer L fires with no ACK seen it reports `TransactionTimeout`:
  §13.3.1.4 says the session SHOULD then be ended with a BYE. A 2xx the TU sends again
  in ACCEPTED is passed to the transport (RFC 6026 §8.5) either way.
- Deferred 100 Trying (§17.2.1: owed "unless it knows that the TU will generate a
  provisional or final response within 200 ms"): `defer_trying()` starts the TRYING
  timer on a new INVITE server transaction; the 100 is sent when it fires, or at once
  when a retransmission of the INVITE finds no response to send again, unless the TU's
  own response came first. A B2BUA relays the callee's 180 within milliseconds, so
  most calls never need the 100 (one message and one datagram fewer per call).
- Over UDP retransmissions back off as Table 4 says; over a reliable transport there
  are none (§17.1.1.2, §17.1.2.2, §17.2.1), except the 2xx retransmissions above.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .enums import IdentityEnum
from .errors import LocalProtocolError
from .events import (
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from .flows import Flow
from .headers import Via, split_comma_values
from .message import Headers, Request, Response
from .timers import TimerName, TimerValues

__all__ = [
    "Transmit",
    "TransactionOutput",
    "ResponseClass",
    "TimerAction",
    "ClientInviteState",
    "ClientNonInviteState",
    "ServerInviteState",
    "ServerNonInviteState",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ClientTransaction",
    "ServerTransaction",
    "MAGIC_COOKIE",
]

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branches of RFC 3261 elements begin with it."""

_DEFAULT_MAX_FORWARDS = "70"  # RFC 3261 §8.1.1.6


@dataclass(frozen=True, slots=True)
class Transmit:
    """Bytes a transaction asks to send.

    Attributes:
        data: one whole SIP message.
        flow: where to send it.
    """

    data: bytes
    flow: Flow


TransactionOutput = Transmit | SipEvent


class ResponseClass(IdentityEnum):
    """The three response classes the state machines distinguish (RFC 3261 §17)."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    NON_SUCCESS = "300-699"

    @classmethod
    def of(cls, status_code: int) -> ResponseClass:
        if status_code < 200:
            return cls.PROVISIONAL
        if status_code < 300:
            return cls.SUCCESS
        return cls.NON_SUCCESS


class TimerAction(IdentityEnum):
    """What a timer does when it fires in a given state."""

    RETRANSMIT = "retransmit"
    """Send the message again and restart the timer backed off (A, E, G)."""
    RETRANSMIT_AT_T2 = "retransmit at T2"
    """Timer E in Proceeding: send again, restart with T2 (§17.1.2.2)."""
    TIME_OUT = "time out"
    """Report `TransactionTimeout` and terminate (B, F, H)."""
    TIME_OUT_UNLESS_ACKNOWLEDGED = "time out unless acknowledged"
    """Timer L while retransmitting a 2xx: time out if no ACK came (§13.3.1.4)."""
    TERMINATE = "terminate"
    """Terminate quietly (D, I, J, K, L, M)."""


class ClientInviteState(IdentityEnum):
    """RFC 3261 Figure 5, with RFC 6026 Figure 5's Accepted state."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ClientNonInviteState(IdentityEnum):
    """RFC 3261 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ServerInviteState(IdentityEnum):
    """RFC 3261 Figure 7, with RFC 6026 Figure 7's Accepted state."""

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ServerNonInviteState(IdentityEnum):
    """RFC 3261 Figure 8."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


StateT = TypeVar("StateT", bound=enum.Enum)


@dataclass(frozen=True)
class StateMachine(Generic[StateT]):
    """The data that describes one kind of transaction (see the module rules)."""

    initial: StateT
    terminated: StateT
    transitions: Mapping[StateT, frozenset[StateT]]
    timers_kept: Mapping[StateT, frozenset[TimerName]]
    timers_started: Mapping[StateT, tuple[TimerName, ...]]
    timer_actions: Mapping[tuple[StateT, TimerName], TimerAction]
    lean: frozenset[StateT] = frozenset()
    """States that only absorb retransmissions: entering one drops the parsed messages
    (`Transaction.request`, the last response, a built ACK) and keeps only what
    retransmitting and matching need (bytes, keys, the top Via)."""


_NO_STATES: frozenset[Any] = frozenset()
_NO_TIMERS: frozenset[TimerName] = frozenset()


def _copy_request(request: Request) -> Request:
    copied = Request(request.method, request.uri_text, request.headers.copy(), request.body)
    copied._uri = request._uri  # URIs are immutable: the parsed one is shared
    return copied


class Transaction(abc.ABC, Generic[StateT]):
    """What all four transactions share: state, timers and the output queue."""

    __slots__ = (
        "key",
        "_request",
        "top_via",
        "method",
        "reliable",
        "timers",
        "_machine",
        "_state",
        "_deadlines",
        "_intervals",
        "_outputs",
    )

    is_client: bool = False

    def __init__(
        self,
        key: str,
        request: Request,
        reliable: bool,
        timers: TimerValues,
        machine: StateMachine[StateT],
    ) -> None:
        self.key = key
        """The transaction key the endpoint matches messages with."""
        self._request: Request | None = _copy_request(request)
        self.top_via: Via = request.top_via
        """The request's top Via (kept when the request is released)."""
        self.method = request.method
        self.reliable = reliable
        """True over a reliable transport: no retransmissions (§17)."""
        self.timers = timers
        self._machine = machine
        self._state: StateT = machine.initial
        self._deadlines: dict[TimerName, float] = {}
        self._intervals: dict[TimerName, float] = {}
        self._outputs: list[TransactionOutput] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self._state.name}>"

    # -- what the caller reads --------------------------------------------------------
    @property
    def request(self) -> Request:
        """A copy of the request that created the transaction: the TU may reuse or
        change its own object (a B2BUA builds its other leg from it) without affecting
        matching, the ACK or the CANCEL built from this one.

        Raises:
            LocalProtocolError: the transaction is in a lean state (`StateMachine.lean`)
                and let the parsed request go.
        """
        request = self._request
        if request is None:
            raise LocalProtocolError(f"{self.key} released its request in {self._state.name}")
        return request

    @property
    def state(self) -> StateT:
        return self._state

    @property
    def terminated(self) -> bool:
        return self._state is self._machine.terminated

    @property
    def deadline(self) -> float | None:
        """The earliest running timer's absolute deadline, or None."""
        return min(self._deadlines.values(), default=None)

    def running_timers(self) -> dict[TimerName, float]:
        """Running timers and their deadlines (a copy, for tests and diagnostics)."""
        return dict(self._deadlines)

    def take_outputs(self) -> list[TransactionOutput]:
        """Drain what the last calls queued: `Transmit`s and events, in order."""
        outputs = self._outputs
        self._outputs = []
        return outputs

    # -- inputs every transaction takes -------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before `now`, earliest first."""
        self._run_due_timers(now)

    def transport_error(self, reason: str, now: float) -> None:
        """The transport could not send for this transaction (§17.1.4, §17.2.4):
        report `TransportError` and terminate."""
        if self.terminated:
            return
        self._outputs.append(TransportError(self.key, self.is_client, reason))
        self._enter(self._machine.terminated, now)

    # -- machinery ----------------------------------------------------------------------
    def _enter(self, state: StateT, now: float) -> None:
        machine = self._machine
        if state not in machine.transitions.get(self._state, _NO_STATES):
            raise LocalProtocolError(
                f"{type(self).__name__}: no transition from {self._state.name} to {state.name}"
            )
        deadlines = self._deadlines
        if deadlines:
            kept = machine.timers_kept.get(state, _NO_TIMERS)
            for timer in list(deadlines):
                if timer not in kept:
                    self._cancel_timer(timer)
        self._state = state
        for timer in machine.timers_started.get(state, ()):
            self._start_timer(timer, self._timer_duration(timer), now)
        if state in machine.lean:
            # Up to 64*T1 in this state with nothing to do but absorb retransmissions:
            # keeping whole parsed messages that long would cost a switch most of its
            # memory (and the garbage collector's time) at thousands of calls a second.
            self._release()

    def _release(self) -> None:
        """Drop the parsed messages (see `StateMachine.lean`)."""
        self._request = None

    def _timer_duration(self, timer: TimerName) -> float | None:
        return self.timers.duration(timer, reliable=self.reliable)

    def _start_timer(self, timer: TimerName, duration: float | None, now: float) -> None:
        if duration is None:
            return
        self._deadlines[timer] = now + duration
        self._intervals[timer] = duration

    def _cancel_timer(self, timer: TimerName) -> None:
        self._deadlines.pop(timer, None)
        self._intervals.pop(timer, None)

    def _run_due_timers(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines:
            # Usually nothing is due: the earliest deadline alone says so, without a
            # Python key function. When one is due, the timer is the first one in
            # insertion order with that deadline, as min(items, key=...) would pick.
            deadline = min(deadlines.values())
            if deadline > now:
                return
            timer = next(name for name, due in deadlines.items() if due == deadline)
            interval = self._intervals.get(timer, 0.0)
            self._cancel_timer(timer)
            self._fire(timer, interval, now)

    def _fire(self, timer: TimerName, interval: float, now: float) -> None:
        action = self._machine.timer_actions.get((self._state, timer))
        if action is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: Timer {timer.value} fired in {self._state.name}"
            )
        if action is TimerAction.RETRANSMIT:
            # The next interval counts from `now`, not from the missed deadline, so a
            # caller that comes back late never gets a burst of retransmissions.
            self._retransmit()
            self._start_timer(timer, self.timers.next_interval(timer, interval), now)
        elif action is TimerAction.RETRANSMIT_AT_T2:
            self._retransmit()
            self._start_timer(timer, self.timers.t2, now)
        elif action is TimerAction.TIME_OUT:
            self._outputs.append(TransactionTimeout(self.key, self.method, self.is_client))
            self._enter(self._machine.terminated, now)
        elif action is TimerAction.TIME_OUT_UNLESS_ACKNOWLEDGED:
            if not self._acknowledged():
                self._outputs.append(TransactionTimeout(self.key, self.method, self.is_client))
            self._enter(self._machine.terminated, now)
        else:
            self._enter(self._machine.terminated, now)

    @abc.abstractmethod
    def _retransmit(self) -> None:
        """Queue the message this transaction retransmits (request or last response)."""

    def _acknowledged(self) -> bool:
        return True


# ------------------------------------------------------------------ client transactions


class ClientAction(IdentityEnum):
    """What a client transaction does with a response (before any state change)."""

    PASS_UP = "pass up"
    ABSORB = "absorb"
    SEND_ACK_AND_PASS_UP = "send ACK and pass up"
    RESEND_ACK = "send the ACK again and absorb"


ClientResponseTable = Mapping[tuple[StateT, ResponseClass], tuple[StateT, ClientAction]]


class ClientTransaction(Transaction[StateT]):
    """A client transaction: sends `request` on `flow` and matches its responses.

    Created by the endpoint with the request complete (top Via with branch); the
    constructor sends it and starts the initial state's timers.
    """

    __slots__ = ("flow", "_responses", "_request_bytes", "_ack_bytes", "ack", "final_response")

    is_client = True

    def __init__(
        self,
        key: str,
        request: Request,
        flow: Flow,
        timers: TimerValues,
        now: float,
        machine: StateMachine[StateT],
        responses: ClientResponseTable[StateT],
        data: bytes | None = None,
    ) -> None:
        super().__init__(key, request, flow.transport.reliable, timers, machine)
        self.flow = flow
        """Where the request (and the ACK of a non-2xx) goes."""
        self._responses = responses
        self._request_bytes = data if data is not None else request.to_bytes()
        """The request's wire form (`data`, when the caller already serialised it)."""
        self._ack_bytes: bytes | None = None
        self.ack: Request | None = None
        """The ACK this transaction built for a non-2xx final response (§17.1.1.3);
        None again once the transaction is lean (its bytes are kept)."""
        self.final_response: Response | None = None
        """The first final response received, until the transaction is lean."""
        self._outputs.append(Transmit(self._request_bytes, flow))
        for timer in machine.timers_started.get(machine.initial, ()):
            self._start_timer(timer, self._timer_duration(timer), now)

    def receive_response(self, response: Response, flow: Flow, now: float) -> None:
        """A response matched to this transaction (§17.1.3).

        Raises:
            LocalProtocolError: the transaction is terminated.
        """
        row = self._responses.get((self._state, ResponseClass.of(response.status_code)))
        if row is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: response {response.status_code} in {self._state.name}"
            )
        next_state, action = row
        if action is ClientAction.PASS_UP or action is ClientAction.SEND_ACK_AND_PASS_UP:
            if response.status_code >= 200 and self.final_response is None:
                self.final_response = response
            if action is ClientAction.SEND_ACK_AND_PASS_UP:
                self.ack = self.build_ack(response)
                self._ack_bytes = self.ack.to_bytes()
                self._outputs.append(Transmit(self._ack_bytes, self.flow))
            self._outputs.append(ResponseReceived(response, self.key, flow))
        else:
            if action is ClientAction.RESEND_ACK and self._ack_bytes is not None:
                self._outputs.append(Transmit(self._ack_bytes, self.flow))
            self._outputs.append(
                MessageDropped(
                    "retransmission_absorbed",
                    f"{response.status_code} to {self.method} absorbed in {self._state.name}",
                    None,
                    flow,
                )
            )
        if next_state is not self._state:
            self._enter(next_state, now)
        self._run_due_timers(now)

    def build_ack(self, response: Response) -> Request:
        """The ACK for a non-2xx final response to this INVITE (RFC 3261 §17.1.1.3).

        Request-URI, Call-ID, From and the CSeq number are the INVITE's, with method
        ACK; To is the response's (it carries the UAS's tag); the single Via is the
        INVITE's top Via, so the ACK matches the server transaction; the Route headers
        are the INVITE's.
        """
        invite = self.request
        headers = Headers()
        headers.add("Via", split_comma_values(invite.headers.get_all("via")[0])[0])
        for route in invite.headers.get_all("route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", invite.headers.get("max-forwards", _DEFAULT_MAX_FORWARDS) or "")
        headers.add("From", invite.headers.get("from") or "")
        headers.add("To", response.headers.get("to") or "")
        headers.add("Call-ID", invite.headers.get("call-id") or "")
        headers.add("CSeq", f"{invite.cseq.number} ACK")
        return Request("ACK", invite.uri_text, headers)

    def _retransmit(self) -> None:
        self._outputs.append(Transmit(self._request_bytes, self.flow))

    def _release(self) -> None:
        super()._release()
        self.ack = None
        self.final_response = None


_C = ClientInviteState
_CLIENT_INVITE_MACHINE: StateMachine[ClientInviteState] = StateMachine(
    initial=_C.CALLING,
    terminated=_C.TERMINATED,
    transitions={
        _C.CALLING: frozenset({_C.PROCEEDING, _C.COMPLETED, _C.ACCEPTED, _C.TERMINATED}),
        _C.PROCEEDING: frozenset({_C.COMPLETED, _C.ACCEPTED, _C.TERMINATED}),
        _C.COMPLETED: frozenset({_C.TERMINATED}),
        _C.ACCEPTED: frozenset({_C.TERMINATED}),
    },
    # §17.1.1.2: Proceeding stops retransmitting, and Timer B only guards Calling.
    timers_kept={},
    timers_started={
        _C.CALLING: (TimerName.A, TimerName.B),
        _C.COMPLETED: (TimerName.D,),
        _C.ACCEPTED: (TimerName.M,),
    },
    timer_actions={
        (_C.CALLING, TimerName.A): TimerAction.RETRANSMIT,
        (_C.CALLING, TimerName.B): TimerAction.TIME_OUT,
        (_C.COMPLETED, TimerName.D): TimerAction.TERMINATE,
        (_C.ACCEPTED, TimerName.M): TimerAction.TERMINATE,
    },
    lean=frozenset({_C.COMPLETED, _C.ACCEPTED}),
)
_PROVISIONAL, _SUCCESS, _NON_SUCCESS = (
    ResponseClass.PROVISIONAL,
    ResponseClass.SUCCESS,
    ResponseClass.NON_SUCCESS,
)
_CLIENT_INVITE_RESPONSES: ClientResponseTable[ClientInviteState] = {
    # §17.1.1.2 and RFC 6026 §8.4.
    (_C.CALLING, _PROVISIONAL): (_C.PROCEEDING, ClientAction.PASS_UP),
    (_C.CALLING, _SUCCESS): (_C.ACCEPTED, ClientAction.PASS_UP),
    (_C.CALLING, _NON_SUCCESS): (_C.COMPLETED, ClientAction.SEND_ACK_AND_PASS_UP),
    (_C.PROCEEDING, _PROVISIONAL): (_C.PROCEEDING, ClientAction.PASS_UP),
    (_C.PROCEEDING, _SUCCESS): (_C.ACCEPTED, ClientAction.PASS_UP),
    (_C.PROCEEDING, _NON_SUCCESS): (_C.COMPLETED, ClientAction.SEND_ACK_AND_PASS_UP),
    # Completed: a retransmitted final response gets the ACK again, not the TU.
    (_C.COMPLETED, _PROVISIONAL): (_C.COMPLETED, ClientAction.ABSORB),
    (_C.COMPLETED, _NON_SUCCESS): (_C.COMPLETED, ClientAction.RESEND_ACK),
    # A 2xx from another fork after a non-2xx: the TU must ACK and BYE it (§13.2.2.4),
    # so it goes up.
    (_C.COMPLETED, _SUCCESS): (_C.COMPLETED, ClientAction.PASS_UP),
    # Accepted: every 2xx goes up (retransmissions and forks, RFC 6026 §8.4).
    (_C.ACCEPTED, _PROVISIONAL): (_C.ACCEPTED, ClientAction.ABSORB),
    (_C.ACCEPTED, _SUCCESS): (_C.ACCEPTED, ClientAction.PASS_UP),
    (_C.ACCEPTED, _NON_SUCCESS): (_C.ACCEPTED, ClientAction.ABSORB),
}


class ClientInviteTransaction(ClientTransaction[ClientInviteState]):
    """INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §8.4)."""

    __slots__ = ()

    def __init__(
        self,
        key: str,
        request: Request,
        flow: Flow,
        timers: TimerValues,
        now: float,
        data: bytes | None = None,
    ) -> None:
        if request.method != "INVITE":
            raise LocalProtocolError(f"an INVITE client transaction cannot send {request.method}")
        super().__init__(
            key,
            request,
            flow,
            timers,
            now,
            _CLIENT_INVITE_MACHINE,
            _CLIENT_INVITE_RESPONSES,
            data,
        )


_N = ClientNonInviteState
_CLIENT_NON_INVITE_MACHINE: StateMachine[ClientNonInviteState] = StateMachine(
    initial=_N.TRYING,
    terminated=_N.TERMINATED,
    transitions={
        _N.TRYING: frozenset({_N.PROCEEDING, _N.COMPLETED, _N.TERMINATED}),
        _N.PROCEEDING: frozenset({_N.COMPLETED, _N.TERMINATED}),
        _N.COMPLETED: frozenset({_N.TERMINATED}),
    },
    # §17.1.2.2: Timers E and F keep running in Proceeding.
    timers_kept={_N.PROCEEDING: frozenset({TimerName.E, TimerName.F})},
    timers_started={
        _N.TRYING: (TimerName.E, TimerName.F),
        _N.COMPLETED: (TimerName.K,),
    },
    timer_actions={
        (_N.TRYING, TimerName.E): TimerAction.RETRANSMIT,
        (_N.PROCEEDING, TimerName.E): TimerAction.RETRANSMIT_AT_T2,
        (_N.TRYING, TimerName.F): TimerAction.TIME_OUT,
        (_N.PROCEEDING, TimerName.F): TimerAction.TIME_OUT,
        (_N.COMPLETED, TimerName.K): TimerAction.TERMINATE,
    },
    lean=frozenset({_N.COMPLETED}),
)
_CLIENT_NON_INVITE_RESPONSES: ClientResponseTable[ClientNonInviteState] = {
    (_N.TRYING, _PROVISIONAL): (_N.PROCEEDING, ClientAction.PASS_UP),
    (_N.TRYING, _SUCCESS): (_N.COMPLETED, ClientAction.PASS_UP),
    (_N.TRYING, _NON_SUCCESS): (_N.COMPLETED, ClientAction.PASS_UP),
    (_N.PROCEEDING, _PROVISIONAL): (_N.PROCEEDING, ClientAction.PASS_UP),
    (_N.PROCEEDING, _SUCCESS): (_N.COMPLETED, ClientAction.PASS_UP),
    (_N.PROCEEDING, _NON_SUCCESS): (_N.COMPLETED, ClientAction.PASS_UP),
    # Completed buffers response retransmissions (§17.1.2.2).
    (_N.COMPLETED, _PROVISIONAL): (_N.COMPLETED, ClientAction.ABSORB),
    (_N.COMPLETED, _SUCCESS): (_N.COMPLETED, ClientAction.ABSORB),
    (_N.COMPLETED, _NON_SUCCESS): (_N.COMPLETED, ClientAction.ABSORB),
}


class ClientNonInviteTransaction(ClientTransaction[ClientNonInviteState]):
    """Non-INVITE client transaction (RFC 3261 §17.1.2)."""

    __slots__ = ()

    def __init__(
        self,
        key: str,
        request: Request,
        flow: Flow,
        timers: TimerValues,
        now: float,
        data: bytes | None = None,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"non-INVITE client transaction for {request.method}")
        machine, responses = _CLIENT_NON_INVITE_MACHINE, _CLIENT_NON_INVITE_RESPONSES
        super().__init__(key, request, flow, timers, now, machine, responses, data)


# ------------------------------------------------------------------ server transactions


class RequestKind(IdentityEnum):
    """A request matched to an existing server transaction (§17.2.3)."""

    RETRANSMISSION = "retransmission"
    """The same method as the request that created the transaction."""
    ACK = "ACK"
    """An ACK matched to an INVITE server transaction."""


class ServerAction(IdentityEnum):
    """What a server transaction does with a matched request."""

    RESEND_LAST_RESPONSE = "send the last response again and absorb"
    ABSORB = "absorb"
    ABSORB_ACK = "absorb the ACK that ends Completed"
    STRAY_ACK = "drop an ACK that came before any final response"
    PASS_UP_ACK = "pass the ACK of a 2xx up and stop retransmitting the 2xx"


ServerResponseTable = Mapping[tuple[StateT, ResponseClass], StateT]
ServerRequestTable = Mapping[tuple[StateT, RequestKind], tuple[StateT, ServerAction]]


class ServerTransaction(Transaction[StateT]):
    """A server transaction: absorbs retransmissions of `request` and sends the TU's
    responses on `response_flow` (chosen by the endpoint per RFC 3261 §18.2.2)."""

    __slots__ = (
        "response_flow",
        "_responses",
        "_requests",
        "last_response",
        "_last_response_bytes",
        "_last_status",
        "merge_key",
        "local_tag",
    )

    is_client = False

    def __init__(
        self,
        key: str,
        request: Request,
        response_flow: Flow,
        timers: TimerValues,
        machine: StateMachine[StateT],
        responses: ServerResponseTable[StateT],
        requests: ServerRequestTable[StateT],
    ) -> None:
        super().__init__(key, request, response_flow.transport.reliable, timers, machine)
        self.response_flow = response_flow
        """Where responses go; the endpoint moves it if the connection closes."""
        self._responses = responses
        self._requests = requests
        self.last_response: Response | None = None
        """The last response sent, until the transaction is lean."""
        self._last_response_bytes: bytes | None = None
        self._last_status: int | None = None
        request_from_tag = request.from_address.tag or ""
        cseq = request.cseq
        self.merge_key: tuple[str, str, int, str] = (
            request_from_tag,
            request.call_id,
            cseq.number,
            cseq.method,
        )
        """(From tag, Call-ID, CSeq number, CSeq method): §8.2.2.2 merged requests."""
        self.local_tag: str | None = None
        """The To tag of our responses (§8.2.6.2: the same in every response)."""

    def send_response(self, response: Response, now: float) -> None:
        """Send a response from the TU (§17.2.1, §17.2.2).

        Raises:
            LocalProtocolError: the state does not allow this response (a second final
                response, a provisional after the final one, anything once terminated).
        """
        next_state = self._responses.get((self._state, ResponseClass.of(response.status_code)))
        if next_state is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: cannot send {response.status_code} in {self._state.name}"
            )
        tag = response.to_address.tag
        if tag is not None:
            self.local_tag = tag
        self.last_response = response
        self._last_status = response.status_code
        self._last_response_bytes = response.to_bytes()
        self._outputs.append(Transmit(self._last_response_bytes, self.response_flow))
        if next_state is not self._state:
            self._enter(next_state, now)
        self._run_due_timers(now)

    def receive_request(self, request: Request, flow: Flow, now: float) -> None:
        """A request matched to this transaction: a retransmission, or an ACK.

        Raises:
            LocalProtocolError: the transaction is terminated.
        """
        kind = RequestKind.ACK if request.method == "ACK" else RequestKind.RETRANSMISSION
        row = self._requests.get((self._state, kind))
        if row is None:
            raise LocalProtocolError(
                f"{type(self).__name__}: {request.method} in {self._state.name}"
            )
        next_state, action = row
        if action is ServerAction.PASS_UP_ACK:
            self._on_success_acknowledged()
            self._outputs.append(RequestReceived(request, flow, None))
        elif action is ServerAction.STRAY_ACK:
            self._outputs.append(
                MessageDropped("stray_ack", f"ACK before a final response ({self.key})", None, flow)
            )
        elif action is ServerAction.ABSORB_ACK:
            self._outputs.append(
                MessageDropped("ack_absorbed", f"ACK confirms {self.key} (§17.2.1)", None, flow)
            )
        else:
            resent: int | None = None
            if (
                action is ServerAction.RESEND_LAST_RESPONSE
                and self._last_response_bytes is not None
            ):
                self._outputs.append(Transmit(self._last_response_bytes, self.response_flow))
                resent = self._last_status
            self._outputs.append(
                MessageDropped(
                    "retransmission_absorbed",
                    f"{request.method} retransmission absorbed in {self._state.name}",
                    resent,
                    flow,
                )
            )
        if next_state is not self._state:
            self._enter(next_state, now)
        self._run_due_timers(now)

    def _on_success_acknowledged(self) -> None:
        pass

    def _retransmit(self) -> None:
        if self._last_response_bytes is not None:
            self._outputs.append(Transmit(self._last_response_bytes, self.response_flow))

    def _release(self) -> None:
        super()._release()
        self.last_response = None


_S = ServerInviteState
_SERVER_INVITE_MACHINE: StateMachine[ServerInviteState] = StateMachine(
    initial=_S.PROCEEDING,
    terminated=_S.TERMINATED,
    transitions={
        _S.PROCEEDING: frozenset({_S.COMPLETED, _S.ACCEPTED, _S.TERMINATED}),
        _S.COMPLETED: frozenset({_S.CONFIRMED, _S.TERMINATED}),
        _S.CONFIRMED: frozenset({_S.TERMINATED}),
        _S.ACCEPTED: frozenset({_S.TERMINATED}),
    },
    timers_kept={},
    timers_started={
        _S.COMPLETED: (TimerName.G, TimerName.H),
        _S.CONFIRMED: (TimerName.I,),
        # Timer G runs in Accepted only to retransmit the 2xx for the TU (module rules).
        _S.ACCEPTED: (TimerName.G, TimerName.L),
    },
    timer_actions={
        (_S.COMPLETED, TimerName.G): TimerAction.RETRANSMIT,
        (_S.COMPLETED, TimerName.H): TimerAction.TIME_OUT,
        (_S.CONFIRMED, TimerName.I): TimerAction.TERMINATE,
        (_S.ACCEPTED, TimerName.G): TimerAction.RETRANSMIT,
        (_S.ACCEPTED, TimerName.L): TimerAction.TIME_OUT_UNLESS_ACKNOWLEDGED,
    },
    lean=frozenset({_S.COMPLETED, _S.CONFIRMED, _S.ACCEPTED}),
)
_SERVER_INVITE_RESPONSES: ServerResponseTable[ServerInviteState] = {
    (_S.PROCEEDING, _PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _SUCCESS): _S.ACCEPTED,  # RFC 6026 §8.5
    (_S.PROCEEDING, _NON_SUCCESS): _S.COMPLETED,
    # RFC 6026 §8.5: "retransmission of the 2xx response passed from the TU" is sent.
    (_S.ACCEPTED, _SUCCESS): _S.ACCEPTED,
}
_SERVER_INVITE_REQUESTS: ServerRequestTable[ServerInviteState] = {
    (_S.PROCEEDING, RequestKind.RETRANSMISSION): (_S.PROCEEDING, ServerAction.RESEND_LAST_RESPONSE),
    (_S.PROCEEDING, RequestKind.ACK): (_S.PROCEEDING, ServerAction.STRAY_ACK),
    (_S.COMPLETED, RequestKind.RETRANSMISSION): (_S.COMPLETED, ServerAction.RESEND_LAST_RESPONSE),
    (_S.COMPLETED, RequestKind.ACK): (_S.CONFIRMED, ServerAction.ABSORB_ACK),
    # Confirmed exists to absorb ACK retransmissions (§17.2.1).
    (_S.CONFIRMED, RequestKind.RETRANSMISSION): (_S.CONFIRMED, ServerAction.ABSORB),
    (_S.CONFIRMED, RequestKind.ACK): (_S.CONFIRMED, ServerAction.ABSORB),
    # RFC 6026 §8.5: INVITE retransmissions are absorbed, ACKs go to the TU.
    (_S.ACCEPTED, RequestKind.RETRANSMISSION): (_S.ACCEPTED, ServerAction.ABSORB),
    (_S.ACCEPTED, RequestKind.ACK): (_S.ACCEPTED, ServerAction.PASS_UP_ACK),
}


class ServerInviteTransaction(ServerTransaction[ServerInviteState]):
    """INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §8.5).

    Args:
        retransmit_success: retransmit a 2xx for the TU until its ACK arrives
            (RFC 3261 §13.3.1.4; see the module rules).
    """

    __slots__ = ("retransmit_success", "success_acknowledged", "_trying_response")

    def __init__(
        self,
        key: str,
        request: Request,
        response_flow: Flow,
        timers: TimerValues,
        retransmit_success: bool = True,
    ) -> None:
        if request.method != "INVITE":
            raise LocalProtocolError(f"an INVITE server transaction cannot take {request.method}")
        super().__init__(
            key,
            request,
            response_flow,
            timers,
            _SERVER_INVITE_MACHINE,
            _SERVER_INVITE_RESPONSES,
            _SERVER_INVITE_REQUESTS,
        )
        self.retransmit_success = retransmit_success
        self.success_acknowledged = False
        """True once an ACK for our 2xx arrived (only meaningful in ACCEPTED)."""
        self._trying_response: Callable[[Request], Response] | None = None

    def defer_trying(
        self, delay: float, trying_response: Callable[[Request], Response], now: float
    ) -> None:
        """Send 100 Trying only if the TU has sent no response `delay` seconds from
        `now` (RFC 3261 §17.2.1: a 100 is owed unless the TU answers within 200 ms),
        or at once when a retransmission of the INVITE finds nothing to send again.
        `trying_response` builds the 100 from the INVITE (§8.2.6.1)."""
        if self._state is not ServerInviteState.PROCEEDING or self.last_response is not None:
            return
        self._trying_response = trying_response
        self._start_timer(TimerName.TRYING, delay, now)

    def send_response(self, response: Response, now: float) -> None:
        if self._trying_response is not None:
            # The TU answered first: no 100 of our own (leaving Proceeding would
            # cancel the timer anyway; a provisional keeps the state).
            self._trying_response = None
            self._cancel_timer(TimerName.TRYING)
        super().send_response(response, now)

    def receive_request(self, request: Request, flow: Flow, now: float) -> None:
        super().receive_request(request, flow, now)
        if (
            self._trying_response is not None
            and request.method != "ACK"
            and self._state is ServerInviteState.PROCEEDING
        ):
            # A retransmission found nothing to send again: the 100 is due now
            # (§17.2.1, the reason it exists is to stop these retransmissions).
            self._send_trying(now)

    def _send_trying(self, now: float) -> None:
        trying_response = self._trying_response
        if trying_response is not None:
            self.send_response(trying_response(self.request), now)

    def _fire(self, timer: TimerName, interval: float, now: float) -> None:
        if timer is TimerName.TRYING:
            self._send_trying(now)
            return
        super()._fire(timer, interval, now)

    def acknowledge_success(self, now: float) -> None:
        """The ACK of our 2xx arrived (matched by dialog, since it has its own branch,
        §13.2.2.4): stop retransmitting the 2xx. The ACK itself goes to the TU."""
        if self._state is not ServerInviteState.ACCEPTED:
            raise LocalProtocolError(f"no 2xx to acknowledge in {self._state.name}")
        self._on_success_acknowledged()

    def _on_success_acknowledged(self) -> None:
        self.success_acknowledged = True
        self._cancel_timer(TimerName.G)

    def _acknowledged(self) -> bool:
        return self.success_acknowledged or not self.retransmit_success

    def _timer_duration(self, timer: TimerName) -> float | None:
        if timer is TimerName.G and self._state is ServerInviteState.ACCEPTED:
            # §13.3.1.4: T1 doubling to T2 "independent of whatever transport
            # protocols are used", so over TCP too.
            return self.timers.t1 if self.retransmit_success else None
        return super()._timer_duration(timer)


_T = ServerNonInviteState
_SERVER_NON_INVITE_MACHINE: StateMachine[ServerNonInviteState] = StateMachine(
    initial=_T.TRYING,
    terminated=_T.TERMINATED,
    transitions={
        _T.TRYING: frozenset({_T.PROCEEDING, _T.COMPLETED, _T.TERMINATED}),
        _T.PROCEEDING: frozenset({_T.COMPLETED, _T.TERMINATED}),
        _T.COMPLETED: frozenset({_T.TERMINATED}),
    },
    timers_kept={},
    timers_started={_T.COMPLETED: (TimerName.J,)},
    timer_actions={(_T.COMPLETED, TimerName.J): TimerAction.TERMINATE},
    lean=frozenset({_T.COMPLETED}),
)
_SERVER_NON_INVITE_RESPONSES: ServerResponseTable[ServerNonInviteState] = {
    (_T.TRYING, _PROVISIONAL): _T.PROCEEDING,
    (_T.TRYING, _SUCCESS): _T.COMPLETED,
    (_T.TRYING, _NON_SUCCESS): _T.COMPLETED,
    (_T.PROCEEDING, _PROVISIONAL): _T.PROCEEDING,
    (_T.PROCEEDING, _SUCCESS): _T.COMPLETED,
    (_T.PROCEEDING, _NON_SUCCESS): _T.COMPLETED,
}
_SERVER_NON_INVITE_REQUESTS: ServerRequestTable[ServerNonInviteState] = {
    # §17.2.2: in Trying there is nothing to send again yet.
    (_T.TRYING, RequestKind.RETRANSMISSION): (_T.TRYING, ServerAction.ABSORB),
    (_T.PROCEEDING, RequestKind.RETRANSMISSION): (_T.PROCEEDING, ServerAction.RESEND_LAST_RESPONSE),
    (_T.COMPLETED, RequestKind.RETRANSMISSION): (_T.COMPLETED, ServerAction.RESEND_LAST_RESPONSE),
}


class ServerNonInviteTransaction(ServerTransaction[ServerNonInviteState]):
    """Non-INVITE server transaction (RFC 3261 §17.2.2)."""

    __slots__ = ()

    def __init__(
        self, key: str, request: Request, response_flow: Flow, timers: TimerValues
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"non-INVITE server transaction for {request.method}")
        super().__init__(
            key,
            request,
            response_flow,
            timers,
            _SERVER_NON_INVITE_MACHINE,
            _SERVER_NON_INVITE_RESPONSES,
            _SERVER_NON_INVITE_REQUESTS,
        )
