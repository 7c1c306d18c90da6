"""A B2BUA call: one uas_leg (the caller's INVITE) joined to one uac_leg (our INVITE).

Rules:
- Sans-I/O (STYLE.md principles 1, 2, 4): the call acts only through `SipEndpoint`'s
  send methods, takes `now` on every input, exposes `next_deadline()` and
  `handle_timer(now)`, and queues one `CallEnded` for `next_event()`. It never calls
  back into application code.
- Events come in through `handle_event(event, now)`, which returns True when the event
  belonged to this call (its transaction keys or its two dialogs).
- `start(now)`: Max-Forwards of the caller's INVITE (70 when absent) is decremented on
  the uac_leg; a value of 0 cannot be decremented and the caller gets 483 (§16.3
  item 3). Otherwise a new INVITE goes to the target: new Call-ID and From tag (the
  legs share no dialog identifiers), the caller's From and To URIs, our Contact, the
  caller's body and Content-Type unchanged.
- States (`CallState`), each named after what it means; the allowed moves are the
  `_TRANSITIONS` table, and any other raises `LocalProtocolError`:
  - CALLING: our INVITE is out, no ringing relayed yet.
  - RINGING: a 101-199 was relayed to the caller (body unchanged, our To tag).
  - CANCELLING: the caller already has its final answer (487 after CANCEL, 480 after
    the no-answer deadline); we sent CANCEL on the uac_leg and wait for its final
    response. A 2xx that crosses the CANCEL is ACKed and hung up with BYE.
  - ANSWERED: the callee's 2xx was ACKed on the uac_leg and relayed to the caller; the
    endpoint retransmits it until the caller's ACK comes (§13.3.1.4).
  - DISCONNECTING: a BYE was answered 200 on one leg and forwarded on the other (or,
    without the caller's ACK, sent on both); we wait for the BYE responses.
  - ENDED: done; `CallEnded` is queued.
- Relayed: 180/183 (101-199), the final answer (2xx, or 3xx-6xx status and reason),
  BYE in both directions. Timer B on the uac_leg answers the caller 408. Other
  in-dialog requests are answered 501 in this first slice (re-INVITE, UPDATE and INFO
  relaying come next).
- In-dialog requests towards the caller go to the flow its INVITE came from
  (symmetric signalling, RFC 3581 spirit); towards the callee to the target flow.
- `CallEnded.duration` is the time from the answer (2xx received) to the hang-up (BYE
  received, or sent for a missing ACK); 0 when unanswered.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
)
from softswitch.sip.flows import Flow
from softswitch.sip.message import Headers, Request, Response

from .dialog import Dialog, DialogState

__all__ = ["Call", "CallEnded", "CallResult", "CallState"]

_DEFAULT_MAX_FORWARDS = 70  # RFC 3261 §8.1.1.6
DEFAULT_NO_ANSWER_TIMEOUT = 30.0
"""Seconds of ringing before the caller gets 480 (issue 3: per extension, 30 s)."""


class CallState(enum.Enum):
    CALLING = "Calling"
    RINGING = "Ringing"
    CANCELLING = "Cancelling"
    ANSWERED = "Answered"
    DISCONNECTING = "Disconnecting"
    ENDED = "Ended"


_S = CallState
_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    _S.CALLING: frozenset({_S.RINGING, _S.CANCELLING, _S.ANSWERED, _S.ENDED}),
    _S.RINGING: frozenset({_S.CANCELLING, _S.ANSWERED, _S.ENDED}),
    _S.CANCELLING: frozenset({_S.DISCONNECTING, _S.ENDED}),
    _S.ANSWERED: frozenset({_S.DISCONNECTING}),
    _S.DISCONNECTING: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}


class CallResult(enum.Enum):
    """How a call ended, for the one log line per call."""

    ANSWERED = "answered"
    CANCELLED = "cancelled"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over; emitted once.

    Attributes:
        call_id: the Call-ID of the uas_leg (the caller's).
        result: how it ended.
        duration: seconds from the answer to the end; 0.0 when never answered.
        status_code: the final status the caller got for its INVITE.
    """

    call_id: str
    result: CallResult
    duration: float
    status_code: int


@dataclass(slots=True)
class _Leg:
    """One side of the call: where its requests go and its dialog once it has one."""

    flow: Flow
    dialog: Dialog | None = None


class Call:
    """Two legs joined: the caller's INVITE server transaction and our INVITE.

    Args:
        endpoint: the switch's endpoint; the call sends through it.
        invite: the caller's `RequestReceived` INVITE (with its transaction key).
        target_uri: the Request-URI of the uac_leg.
        target_flow: where the uac_leg's requests go.
        local_contact: our Contact URI on both legs.
        new_token: fresh random tokens for the uac_leg Call-ID and our tags.
        no_answer_timeout: seconds before an unanswered call gets 480.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        invite: RequestReceived,
        target_uri: str,
        target_flow: Flow,
        local_contact: str,
        new_token: Callable[[], str],
        no_answer_timeout: float = DEFAULT_NO_ANSWER_TIMEOUT,
    ) -> None:
        if invite.transaction_key is None or invite.request.method != "INVITE":
            raise LocalProtocolError("a Call starts from an INVITE with a server transaction")
        self._endpoint = endpoint
        self._uas_invite = invite.request
        self._uas_invite_key = invite.transaction_key
        self._target_uri = target_uri
        self._local_contact = local_contact
        self._new_token = new_token
        self._no_answer_timeout = no_answer_timeout
        self.call_id = invite.request.call_id
        self.uas_leg = _Leg(invite.flow)
        self.uac_leg = _Leg(target_flow)
        self._uas_tag = new_token()
        self._uac_invite: Request | None = None
        self._uac_invite_key: str | None = None
        self._uac_ack: Request | None = None
        self._bye_keys: set[str] = set()
        self._cancel_key: str | None = None
        self._deadline: float | None = None
        self._answered_at: float | None = None
        self._hung_up_at: float | None = None
        self._caller_acked = False
        self._result = CallResult.FAILED
        self._status_code = 500
        self._events: deque[CallEnded] = deque()
        self.state = CallState.CALLING

    # ================================================================ outputs
    def next_event(self) -> CallEnded | None:
        """The `CallEnded` of this call once it is over (once), else None."""
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """The no-answer deadline while the callee rings, else None."""
        return self._deadline

    # ================================================================ inputs
    def start(self, now: float) -> None:
        """Send the uac_leg INVITE (or answer 483 when Max-Forwards is exhausted)."""
        invite = self._uas_invite
        max_forwards = invite.max_forwards
        if max_forwards is None:
            max_forwards = _DEFAULT_MAX_FORWARDS
        if max_forwards <= 0:
            self._answer_caller(483, None, now)
            self._end(CallResult.FAILED, now)
            return
        headers = Headers()
        headers.add("Max-Forwards", str(max_forwards - 1))
        headers.add("From", f"{_name_address(invite, 'from')};tag={self._new_token()}")
        headers.add("To", _name_address(invite, "to"))
        headers.add("Call-ID", f"{self._new_token()}@b2bua")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self._local_contact}>")
        content_type = invite.headers.get("content-type")
        if content_type is not None:
            headers.add("Content-Type", content_type)
        request = Request("INVITE", self._target_uri, headers, invite.body)
        self._uac_invite = request
        self._uac_invite_key = self._endpoint.send_request(request, now, self.uac_leg.flow)
        self._deadline = now + self._no_answer_timeout

    def handle_timer(self, now: float) -> None:
        """The no-answer deadline: cancel the uac_leg, answer the caller 480."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state in (CallState.CALLING, CallState.RINGING):
            self._answer_caller(480, None, now)
            self._cancel_callee(CallResult.NO_ANSWER, now)

    def handle_event(self, event: SipEvent, now: float) -> bool:
        """Take one endpoint event; True when it belonged to this call."""
        if isinstance(event, ResponseReceived):
            return self._on_response(event, now)
        if isinstance(event, RequestReceived):
            return self._on_request(event, now)
        if isinstance(event, CancelReceived):
            if event.invite_transaction_key != self._uas_invite_key:
                return False
            if self.state in (CallState.CALLING, CallState.RINGING):
                self._answer_caller(487, None, now)
                self._cancel_callee(CallResult.CANCELLED, now)
            return True
        if isinstance(event, TransactionTimeout):
            return self._on_timeout(event, now)
        return False

    # ================================================================ responses
    def _on_response(self, event: ResponseReceived, now: float) -> bool:
        key = event.transaction_key
        if key in self._bye_keys:
            if event.response.status_code >= 200:
                self._bye_done(key, now)
            return True
        if key == self._cancel_key:
            return True  # the CANCEL's own 200 (or 481): the INVITE's answer decides
        if key != self._uac_invite_key:
            return False
        response = event.response
        if response.is_provisional:
            self._on_provisional(response, now)
        elif response.is_success:
            self._on_success(response, now)
        else:
            self._on_failure(response, now)
        return True

    def _on_provisional(self, response: Response, now: float) -> None:
        if response.status_code == 100 or self.state not in (
            CallState.CALLING,
            CallState.RINGING,
        ):
            return
        invite = self._uac_invite
        assert invite is not None
        if response.to_address.tag is not None:
            self.uac_leg.dialog = Dialog.from_uac_response(invite, response, self._local_contact)
        self._answer_caller(response.status_code, response, now)
        if self.state is CallState.CALLING:
            self._move(CallState.RINGING)

    def _on_success(self, response: Response, now: float) -> None:
        invite = self._uac_invite
        assert invite is not None
        if self._uac_ack is not None:
            # A retransmitted 2xx: the same ACK again (§13.2.2.4).
            self._endpoint.send_ack_for_2xx(self._uac_ack, now, self.uac_leg.flow)
            return
        dialog = Dialog.from_uac_response(invite, response, self._local_contact)
        self.uac_leg.dialog = dialog
        self._uac_ack = dialog.create_ack(invite.cseq.number)
        self._endpoint.send_ack_for_2xx(self._uac_ack, now, self.uac_leg.flow)
        if self.state is CallState.CANCELLING:
            # The 2xx crossed our CANCEL: the caller is answered already; hang up.
            self._send_bye(self.uac_leg, now)
            self._move(CallState.DISCONNECTING)
            return
        self._deadline = None
        self.uas_leg.dialog = Dialog.from_uas_request(
            self._uas_invite, self._uas_tag, self._local_contact
        )
        self._answer_caller(response.status_code, response, now)
        self._answered_at = now
        self._result = CallResult.ANSWERED
        self._move(CallState.ANSWERED)

    def _on_failure(self, response: Response, now: float) -> None:
        if self.state is CallState.CANCELLING:
            self._end(self._result, now)
        elif self.state in (CallState.CALLING, CallState.RINGING):
            self._answer_caller(response.status_code, response, now)
            self._end(CallResult.REJECTED, now)

    def _on_timeout(self, event: TransactionTimeout, now: float) -> bool:
        key = event.transaction_key
        if key in self._bye_keys:
            self._bye_done(key, now)
            return True
        if key == self._cancel_key:
            return True
        if key == self._uac_invite_key:
            # Timer B: act as if a 408 had arrived (§8.1.3.1).
            if self.state in (CallState.CALLING, CallState.RINGING):
                self._answer_caller(408, None, now)
                self._end(CallResult.FAILED, now)
            elif self.state is CallState.CANCELLING:
                self._end(self._result, now)
            return True
        if key == self._uas_invite_key:
            # Timer H or L: the caller never ACKed our 2xx; §13.3.1.4 says hang up.
            if self.state is CallState.ANSWERED and not self._caller_acked:
                self._send_bye(self.uas_leg, now)
                self._send_bye(self.uac_leg, now)
                self._hung_up_at = now
                self._move(CallState.DISCONNECTING)
            return True
        return False

    # ================================================================ requests
    def _on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        leg = self._leg_of(request)
        if leg is None:
            return False
        assert leg.dialog is not None
        if request.method == "ACK":
            if leg is self.uas_leg:
                self._caller_acked = True
            return True
        key = event.transaction_key
        assert key is not None
        if not leg.dialog.receive_request(request):
            self._respond(request, 500, key, now)
            return True
        if request.method != "BYE":
            self._respond(request, 501, key, now)
            return True
        self._respond(request, 200, key, now)
        if self.state is CallState.ANSWERED:
            other = self.uac_leg if leg is self.uas_leg else self.uas_leg
            self._send_bye(other, now)
            self._hung_up_at = now
            self._move(CallState.DISCONNECTING)
        return True

    def _leg_of(self, request: Request) -> _Leg | None:
        for leg in (self.uas_leg, self.uac_leg):
            dialog = leg.dialog
            if (
                dialog is not None
                and dialog.state is DialogState.CONFIRMED
                and dialog.matches_request(request)
            ):
                return leg
        return None

    # ================================================================ actions
    def _answer_caller(self, status_code: int, relayed: Response | None, now: float) -> None:
        """Answer the caller's INVITE, copying a relayed response's reason and body."""
        reason = relayed.reason if relayed is not None else None
        response = self._endpoint.create_response(
            self._uas_invite, status_code, reason, to_tag=self._uas_tag
        )
        if relayed is not None and status_code < 300:
            response.headers.add("Contact", f"<{self._local_contact}>")
            if relayed.body:
                content_type = relayed.headers.get("content-type")
                if content_type is not None:
                    response.headers.add("Content-Type", content_type)
                response.body = relayed.body
        if status_code >= 200:
            self._status_code = status_code
        self._endpoint.send_response(response, now, self._uas_invite_key)

    def _respond(self, request: Request, status_code: int, key: str, now: float) -> None:
        response = self._endpoint.create_response(request, status_code)
        self._endpoint.send_response(response, now, key)

    def _cancel_callee(self, result: CallResult, now: float) -> None:
        assert self._uac_invite_key is not None
        self._deadline = None
        self._result = result
        self._cancel_key = self._endpoint.send_cancel(self._uac_invite_key, now)
        self._move(CallState.CANCELLING)

    def _send_bye(self, leg: _Leg, now: float) -> None:
        assert leg.dialog is not None
        bye = leg.dialog.create_request("BYE")
        self._bye_keys.add(self._endpoint.send_request(bye, now, leg.flow))

    def _bye_done(self, key: str, now: float) -> None:
        self._bye_keys.discard(key)
        if not self._bye_keys and self.state is CallState.DISCONNECTING:
            self._end(self._result, now)

    def _end(self, result: CallResult, now: float) -> None:
        self._deadline = None
        self._move(CallState.ENDED)
        end = now if self._hung_up_at is None else self._hung_up_at
        duration = 0.0 if self._answered_at is None else end - self._answered_at
        self._events.append(CallEnded(self.call_id, result, duration, self._status_code))

    def _move(self, state: CallState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"call {self.call_id}: {self.state.name} -> {state.name}")
        self.state = state


def _name_address(request: Request, key: str) -> str:
    """From or To of `request` without its tag, display name kept."""
    address = (request.from_address if key == "from" else request.to_address).copy()
    address.parameters.pop("tag", None)
    return str(address)
