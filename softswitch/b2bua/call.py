"""A B2BUA call: one uas_leg (the caller's INVITE) joined to one uac_leg (our INVITE).

Rules:
- Sans-I/O (STYLE.md principles 1, 2, 4): the call acts only through `SipEndpoint`'s
  send methods, takes `now` on every input, exposes `next_deadline()` and
  `handle_timer(now)`, and queues one `CallEnded` for `next_event()`. It never calls
  back into application code.
- Events come in through `handle_event(event, now)`, which returns True when the event
  belonged to this call. `call_ids` and `transaction_keys` list what the call owns at
  the moment, so a dispatcher can index events instead of offering each to every call.
- `start(now)`: Max-Forwards of the caller's INVITE (70 when absent) is decremented on
  the uac_leg; a value of 0 cannot be decremented and the caller gets 483 (§16.3
  item 3). Otherwise a new INVITE goes to every target at once (parallel forking, one
  branch per contact): each branch has its own Call-ID and From tag (the legs share no
  dialog identifiers, and two contacts of one device do not see a merged request,
  §8.2.2.2), the caller's From and To URIs, our Contact, the caller's body and
  Content-Type unchanged.
- Caller identity (issue 6, decided by `pbx_routing`): with `from_address` our INVITEs
  carry that From (name-addr; our own tag added) instead of the caller's, and
  `extra_headers` (P-Asserted-Identity, P-Called-Party-ID) are added to every branch
  INVITE. Nothing else of the caller's INVITE is copied: a P-Asserted-Identity the caller
  sent never passes through unless routing puts it in `extra_headers` (RFC 3325 §5: only
  what a trusted element asserts goes on).
- States (`CallState`), each named after what it means; the allowed moves are the
  `_TRANSITIONS` table, and any other raises `LocalProtocolError`:
  - CALLING: our INVITEs are out, no ringing relayed yet.
  - RINGING: a 101-199 from some branch was relayed to the caller (body unchanged, our
    one To tag whatever branch it came from).
  - CANCELLING: the caller already has its final answer (487 after CANCEL, 480 after
    the no-answer deadline); we sent CANCEL on every pending branch and wait for their
    final responses. A 2xx that crosses the CANCEL is ACKed and hung up with BYE.
  - ANSWERED: the first 2xx of any branch was ACKed and relayed to the caller; that
    branch became the uac_leg and the other pending branches were CANCELled. The
    endpoint retransmits our 2xx until the caller's ACK comes (§13.3.1.4).
  - DISCONNECTING: a BYE was answered 200 on one leg and forwarded on the other (or,
    without an ACK, sent on both); we wait for the BYE responses.
  - ENDED: done; `CallEnded` is queued. A call leaves CANCELLING and DISCONNECTING
    only once every branch has its final response and every BYE and relayed request
    its answer, so no event of the call reaches the dispatcher after `CallEnded`.
- Forking (RFC 3261 §16.7 applied by a B2BUA): the first 2xx wins. A 2xx from another
  branch, or a second dialog from the same branch, is ACKed and then ended with BYE
  (§13.2.2.4). When every branch failed, the caller gets the best final response
  (§16.7 step 6): a 6xx if any; else the lowest class; in 4xx those that help a retry
  (401, 407, 415, 420, 484), then 486, then the others, then 480 and 408 last; a
  503 becomes 500 (§16.7 step 6: a 503 speaks for the element that sends it). Timer B
  on a branch counts as a 408 (§8.1.3.1); if that is the best, the result is FAILED.
- In-dialog relaying once ANSWERED (the call is a UA on each leg, §12.2): re-INVITE,
  UPDATE (RFC 3311) and INFO (RFC 6086) from one leg become the same method on the
  other leg's dialog, with the body, Content-Type and the session-timer (RFC 4028
  Session-Expires, Min-SE), Supported, Require, Info-Package and Recv-Info headers
  unchanged; the final response is relayed back on the first leg's server transaction
  with the same status, reason, body and those headers (so 491 glare answers reach
  the side that must retry, §14.1). A relayed 2xx to INVITE or UPDATE carries our
  Contact (§12.2.2, RFC 3311 §5.2). Provisional responses to in-dialog requests are
  not relayed.
- ACK of a relayed re-INVITE (§13.2.2.4, §14.1): when the re-INVITE carried an offer,
  the callee side's 2xx is ACKed at once; when it had no body (offer in the 2xx), the
  ACK waits for the originating side's ACK and carries its body (the answer). The ACK
  of a leg's latest INVITE is resent for 2xx retransmissions.
- Glare on one leg (§14.1, §14.2): a re-INVITE arriving on a leg where our own
  relayed INVITE is still pending gets 491; one arriving while that leg's previous
  re-INVITE is still unanswered gets 500 with Retry-After. An UPDATE with an offer
  while our offer on that leg is pending gets 491 (RFC 3311 §5.2).
- Timer B/F on a relayed request answers the originating side 408 (§8.1.3.1); it then
  may end the dialog (§12.2.1.2). A 2xx to a relayed re-INVITE that is never ACKed
  hangs up both legs (§14.2, §13.3.1.4), like the first 2xx.
- OPTIONS inside a dialog is answered by the call itself, 200 with Allow (§11.2), as
  the element answers OPTIONS outside one: it is never relayed. Other methods get 501.
- A BYE ends the call: the pending requests the BYE's sender had relayed are answered
  487 (§15.1.2); other in-dialog requests arriving after it get 481.
- Next hop of in-dialog requests: the leg's flow (the caller's from where its INVITE
  came, RFC 3581 symmetric signalling; the callee's the branch's target flow), which
  suits phones behind NAT. With `follow_dialog_targets=True` it is the dialog's first
  Route, else its remote target (§12.2.1.1, §8.1.2), when that URI has a numeric host
  (RFC 3263 §4.2 needs no DNS for it); otherwise still the leg's flow. The ACK of the
  first 2xx always goes back to the branch's flow.
- Sequential hunting (`sequential=True`, issue 5 toll-free distribution): the targets
  are tried one at a time, in order, never in parallel. When the current target's
  INVITE fails with a status `fails_over` accepts (408 and Timer B, 5xx, a transport
  error), the next target gets a new INVITE (new Call-ID and From tag, §8.2.2.2) and
  the no-answer deadline restarts for it; any other final status, or no target left,
  answers the caller as when every parallel branch failed. `attempt` is the index of
  the target being tried, so the owner can account per-target resources. With
  `attempt_timeout`, a target that sent no response at all (not even 100 Trying) within
  that many seconds counts as a 408 (its CANCEL waits for a provisional response,
  §9.1): Timer B (32 s over UDP, §17.1.1.2) would come after the no-answer deadline.
  A 2xx from a target given up so arrives too late: it is ACKed and ended with BYE.
- A `TransportError` on a branch INVITE is a 503 from that branch (§8.1.3.1: "treated
  as a 503"); on any other request of the call it is handled as that request's Timer
  B/F timeout.
- `status_translation` maps the final status the caller would get when every target
  failed to another one, sent without the failed branch's reason or body (issue 5: a
  600 Busy Everywhere from a destination becomes 486 for the toll-free caller).
- Diversion (`divert`, issue 6 item 4: voicemail): when the caller would get a final
  status that `divert(status)` accepts (480 at the no-answer deadline; the best status
  when every target failed, such as 486 busy), the call sends it NOT: it queues one
  `CallDiverted` for `next_diversion()` and lets go of the caller's side at once (its
  Call-ID and INVITE server transaction leave `call_ids` and `transaction_keys`), so
  the owner hands the INVITE, still without a final response, to another call (the
  `VoicemailCall`), which answers it with the same To tag as the ringing relayed so far.
  The callee side ends as usual (CANCEL of pending branches); `CallEnded` then carries
  the diverted status and the owner should not log it as the caller's answer.
- `CallEnded.duration` is the time from the answer (2xx received) to the hang-up (BYE
  received, or sent for a missing ACK); 0 when unanswered.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.enums import IdentityEnum
from softswitch.sip.errors import LocalProtocolError, RemoteProtocolError
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.headers import parse_name_address
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.uri import SipUri, Uri, parse_uri

from .dialog import Dialog, DialogState

__all__ = ["Call", "CallDiverted", "CallEnded", "CallResult", "CallState"]

_DEFAULT_MAX_FORWARDS = 70  # RFC 3261 §8.1.1.6
DEFAULT_NO_ANSWER_TIMEOUT = 30.0
"""Seconds of ringing before the caller gets 480 (issue 3: per extension, 30 s)."""

_RELAYED_METHODS = frozenset({"INVITE", "UPDATE", "INFO"})
_OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
_DIALOG_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE")
"""The Allow of our 200 to an in-dialog OPTIONS: what a call takes inside a dialog."""
_PASSED_HEADERS = (
    "Session-Expires",  # RFC 4028 §4
    "Min-SE",  # RFC 4028 §5
    "Supported",
    "Require",
    "Info-Package",  # RFC 6086 §7
    "Recv-Info",  # RFC 6086 §5.2.3
)
"""Headers copied unchanged onto relayed in-dialog requests and their responses."""
_PASSED_RESPONSE_HEADERS = (*_PASSED_HEADERS, "Retry-After", "Unsupported", "Warning")
_RESUBMISSION_HINTS = frozenset({401, 407, 415, 420, 484})  # §16.7 step 6
_GLARE_RETRY_AFTER = "1"  # §14.2: 500 with a Retry-After between 0 and 10 seconds


class CallState(IdentityEnum):
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
    _S.CANCELLING: frozenset({_S.ENDED}),
    _S.ANSWERED: frozenset({_S.DISCONNECTING}),
    _S.DISCONNECTING: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}


class CallResult(IdentityEnum):
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


@dataclass(frozen=True, slots=True)
class CallDiverted:
    """The caller's INVITE handed over without a final response (module rules: diversion).

    Attributes:
        invite: the caller's INVITE as received (request, flow, server transaction key).
        to_tag: our To tag, already in the provisional responses the caller got.
        status_code: the final status the caller would have got (480, 486, ...).
    """

    invite: RequestReceived
    to_tag: str
    status_code: int


@dataclass(slots=True)
class _Leg:
    """One side of the call: where its requests go and its dialog once it has one.

    `invite_key`, `invite_cseq` and `ack` are those of the latest INVITE we sent on the
    leg (the ACK is resent for 2xx retransmissions, §13.2.2.4); `ack_for` is the other
    leg whose ACK waits for this leg's ACK (offerless re-INVITE) with that CSeq;
    `server_invite_key` is this leg's re-INVITE we answered 2xx and await the ACK of.
    """

    flow: Flow
    dialog: Dialog | None = None
    invite_key: str | None = None
    invite_cseq: int = 0
    ack: Request | None = None
    ack_for: tuple[int, _Leg] | None = None
    server_invite_key: str | None = None
    server_invite_cseq: int = 0


@dataclass(slots=True)
class _Branch:
    """Our INVITE to one target (one contact of the callee).

    `final_status` is None while no final response came (408 for Timer B); `dialog`
    and `ack` are set by its first 2xx; `extra_acks` ACK further 2xx dialogs by To tag.
    """

    uri: str
    flow: Flow
    invite: Request
    invite_key: str
    call_id: str
    final_status: int | None = None
    final_response: Response | None = None
    dialog: Dialog | None = None
    ack: Request | None = None
    cancel_key: str | None = None
    extra_acks: dict[str, Request] = field(default_factory=dict)


@dataclass(slots=True)
class _Relay:
    """An in-dialog request received on `from_leg` and sent on `to_leg`."""

    server_key: str
    server_request: Request
    from_leg: _Leg
    to_leg: _Leg
    client_request: Request
    answered: bool = False
    """The originating server transaction has its final response."""


class Call:
    """Two legs joined: the caller's INVITE server transaction and our INVITE(s).

    Args:
        endpoint: the switch's endpoint; the call sends through it.
        invite: the caller's `RequestReceived` INVITE (with its transaction key).
        target_uri: the Request-URI of the uac_leg (ignored when `targets` is given).
        target_flow: where the uac_leg's requests go (ignored when `targets` is given).
        local_contact: our Contact URI on both legs.
        new_token: fresh random tokens for the uac_leg Call-IDs and our tags.
        no_answer_timeout: seconds before an unanswered call gets 480.
        targets: (Request-URI, flow) of every contact to fork to in parallel; when
            given (and not empty) it replaces `target_uri` and `target_flow`.
        follow_dialog_targets: send in-dialog requests to the dialog's route set or
            remote target when numeric, instead of the legs' flows (module rules).
        sequential: try `targets` one at a time (module rules: sequential hunting).
        fails_over: with `sequential`, whether a target's final status (None: no
            answer at all) moves on to the next target; default: never.
        status_translation: final statuses to replace when every target failed.
        attempt_timeout: with `sequential`, seconds a target may stay silent (module
            rules); None: until Timer B.
        divert: which final statuses of the caller are diverted instead of sent
            (module rules: diversion); None: never.
        from_address: the From of our INVITEs (name-addr without tag); None: the
            caller's (module rules: caller identity).
        extra_headers: (name, value) headers added to every branch INVITE.

    Raises:
        LocalProtocolError: `invite` is not an INVITE with a server transaction.
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
        *,
        targets: Sequence[tuple[Uri | str, Flow]] | None = None,
        follow_dialog_targets: bool = False,
        sequential: bool = False,
        fails_over: Callable[[int | None], bool] | None = None,
        status_translation: Mapping[int, int] | None = None,
        attempt_timeout: float | None = None,
        divert: Callable[[int], bool] | None = None,
        from_address: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if invite.transaction_key is None or invite.request.method != "INVITE":
            raise LocalProtocolError("a Call starts from an INVITE with a server transaction")
        self._endpoint = endpoint
        self._uas_invite = invite.request
        self._uas_invite_key = invite.transaction_key
        self._targets: list[tuple[str, Flow]] = (
            [(str(uri), flow) for uri, flow in targets] if targets else [(target_uri, target_flow)]
        )
        self._local_contact = local_contact
        self._new_token = new_token
        self._no_answer_timeout = no_answer_timeout
        self._follow_dialog_targets = follow_dialog_targets
        self._sequential = sequential
        self._fails_over = fails_over
        self._status_translation: Mapping[int, int] = status_translation or {}
        self._attempt = 0
        self._attempt_timeout = attempt_timeout if sequential else None
        self._attempt_deadline: float | None = None
        self.call_id = invite.request.call_id
        self.uas_leg = _Leg(invite.flow)
        self.uac_leg = _Leg(self._targets[0][1])
        self._uas_tag = new_token()
        self._branches: dict[str, _Branch] = {}
        self._winner: _Branch | None = None
        self._relays: dict[str, _Relay] = {}
        self._bye_keys: set[str] = set()
        self._deadline: float | None = None
        self._answered_at: float | None = None
        self._hung_up_at: float | None = None
        self._caller_acked = False
        self._result = CallResult.FAILED
        self._status_code = 500
        self._max_forwards = _DEFAULT_MAX_FORWARDS - 1
        self._events: deque[CallEnded] = deque()
        self._divert = divert
        self._from_address = from_address
        self._extra_headers = tuple(extra_headers)
        self._diversions: deque[CallDiverted] = deque()
        self._diverted = False
        self.state = CallState.CALLING

    # ================================================================ outputs
    def next_event(self) -> CallEnded | None:
        """The `CallEnded` of this call once it is over (once), else None."""
        return self._events.popleft() if self._events else None

    def next_diversion(self) -> CallDiverted | None:
        """The caller's INVITE handed over (module rules: diversion), once, else None."""
        return self._diversions.popleft() if self._diversions else None

    def next_deadline(self) -> float | None:
        """The no-answer deadline while the callee rings (or a silent target's
        deadline, when earlier), else None."""
        if self._attempt_deadline is None:
            return self._deadline
        if self._deadline is None:
            return self._attempt_deadline
        return min(self._deadline, self._attempt_deadline)

    @property
    def attempt(self) -> int:
        """The index in the targets of the target tried now (always 0 unless
        `sequential`); once answered, the target that answered."""
        return self._attempt

    @property
    def caller_invite(self) -> Request:
        """The caller's INVITE (its essentials only, once the call is answered)."""
        return self._uas_invite

    @property
    def caller_invite_key(self) -> str:
        """The caller's INVITE server transaction key."""
        return self._uas_invite_key

    @property
    def call_ids(self) -> frozenset[str]:
        """Every Call-ID the call owns now: the caller's and one per branch (the
        winner's is the uac_leg's). Empty once ENDED."""
        if self.state is CallState.ENDED:
            return frozenset()
        branch_ids = frozenset(b.call_id for b in self._branches.values())
        return branch_ids if self._diverted else branch_ids | {self.call_id}

    @property
    def transaction_keys(self) -> frozenset[str]:
        """Every transaction key whose events the call takes now: the caller's INVITE
        (and its CANCEL's `invite_transaction_key`), the branches' INVITEs and
        CANCELs, BYEs, relayed requests on both sides, re-INVITEs awaiting ACK.
        Empty once ENDED."""
        if self.state is CallState.ENDED:
            return frozenset()
        keys = {self._uas_invite_key, *self._branches, *self._bye_keys, *self._relays}
        keys.update(b.cancel_key for b in self._branches.values() if b.cancel_key)
        if self._diverted:
            keys.discard(self._uas_invite_key)  # module rules: diversion
        keys.update(relay.server_key for relay in self._relays.values())
        for leg in (self.uas_leg, self.uac_leg):
            if leg.invite_key is not None:
                keys.add(leg.invite_key)
            if leg.server_invite_key is not None:
                keys.add(leg.server_invite_key)
        return frozenset(keys)

    # ================================================================ inputs
    def start(self, now: float) -> None:
        """Send the INVITE of every branch (or answer 483 when Max-Forwards is
        exhausted). Call `next_event()` afterwards: a 483 ends the call at once."""
        invite = self._uas_invite
        max_forwards = invite.max_forwards
        if max_forwards is None:
            max_forwards = _DEFAULT_MAX_FORWARDS
        if max_forwards <= 0:
            self._answer_caller(483, None, now)
            self._end(CallResult.FAILED, now)
            return
        self._max_forwards = max_forwards - 1
        targets = self._targets[:1] if self._sequential else self._targets
        for uri, flow in targets:
            self._send_invite(uri, flow, now)
        self._deadline = now + self._no_answer_timeout
        if self._attempt_timeout is not None:
            self._attempt_deadline = now + self._attempt_timeout

    def _send_invite(self, uri: str, flow: Flow, now: float) -> None:
        """One branch: a new INVITE to `uri` over `flow` (module rules: `start`)."""
        invite = self._uas_invite
        headers = Headers()
        headers.add("Max-Forwards", str(self._max_forwards))
        from_address = self._from_address or _name_address(invite, "from")
        headers.add("From", f"{from_address};tag={self._new_token()}")
        headers.add("To", _name_address(invite, "to"))
        headers.add("Call-ID", f"{self._new_token()}@b2bua")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self._local_contact}>")
        for name, value in self._extra_headers:
            headers.add(name, value)
        content_type = invite.headers.get("content-type")
        if content_type is not None:
            headers.add("Content-Type", content_type)
        request = Request("INVITE", uri, headers, invite.body)
        key = self._endpoint.send_request(request, now, flow)
        self._branches[key] = _Branch(uri, flow, request, key, request.call_id)

    def handle_timer(self, now: float) -> None:
        """The no-answer deadline: cancel every pending branch, answer the caller 480.
        A silent target's deadline: give it up as a 408 (module rules)."""
        if self._attempt_deadline is not None and now >= self._attempt_deadline:
            self._attempt_deadline = None
            self._give_up_silent_target(now)
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        self._attempt_deadline = None
        if self.state in (CallState.CALLING, CallState.RINGING):
            if not self._divert_caller(480, now):
                self._answer_caller(480, None, now)
            self._cancel_callee(CallResult.NO_ANSWER, now)

    def handle_event(self, event: SipEvent, now: float) -> bool:
        """Take one endpoint event; True when it belonged to this call. Call
        `next_event()` and `next_deadline()` afterwards."""
        if self.state is CallState.ENDED:
            return False
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
            return self._on_timeout(event.transaction_key, now, 408)
        if isinstance(event, TransportError):
            # §8.1.3.1: a transport failure counts as a 503 from that branch.
            return self._on_timeout(event.transaction_key, now, 503)
        return False

    # ================================================================ responses
    def _on_response(self, event: ResponseReceived, now: float) -> bool:
        key = event.transaction_key
        response = event.response
        if key in self._bye_keys:
            if response.status_code >= 200:
                self._bye_keys.discard(key)
                self._maybe_end(now)
            return True
        relay = self._relays.get(key)
        if relay is not None:
            self._on_relay_response(key, relay, response, now)
            return True
        for leg in (self.uas_leg, self.uac_leg):
            if key == leg.invite_key and key not in self._branches:
                # A retransmitted 2xx to a relayed re-INVITE: the same ACK (§13.2.2.4).
                if response.is_success and leg.ack is not None:
                    self._endpoint.send_ack_for_2xx(leg.ack, now, self._next_hop(leg))
                return True
        branch = self._branches.get(key)
        if branch is None:
            return any(key == b.cancel_key for b in self._branches.values())
        if branch.final_status is None:
            self._attempt_deadline = None  # the target is alive (module rules)
        if response.is_provisional:
            self._on_provisional(response, now)
        elif response.is_success:
            self._on_success(branch, response, now)
        else:
            self._on_failure(branch, response.status_code, response, now)
        return True

    def _on_provisional(self, response: Response, now: float) -> None:
        if response.status_code == 100 or self.state not in (
            CallState.CALLING,
            CallState.RINGING,
        ):
            return
        # Whatever branch rings, the caller sees our one To tag (one early dialog).
        self._answer_caller(response.status_code, response, now)
        if self.state is CallState.CALLING:
            self._move(CallState.RINGING)

    def _on_success(self, branch: _Branch, response: Response, now: float) -> None:
        to_tag = response.to_address.tag or ""
        if branch.dialog is not None and branch.dialog.remote_tag == to_tag:
            # A retransmitted 2xx: the same ACK again (§13.2.2.4).
            assert branch.ack is not None
            self._endpoint.send_ack_for_2xx(branch.ack, now, branch.flow)
            return
        if to_tag in branch.extra_acks:
            self._endpoint.send_ack_for_2xx(branch.extra_acks[to_tag], now, branch.flow)
            return
        given_up = branch.final_status is not None  # a silent target we gave up on
        branch.final_status = response.status_code
        dialog = Dialog.from_uac_response(branch.invite, response, self._local_contact)
        ack = dialog.create_ack(branch.invite.cseq.number)
        self._endpoint.send_ack_for_2xx(ack, now, branch.flow)
        if given_up or self.state not in (CallState.CALLING, CallState.RINGING):
            # §13.2.2.4: a 2xx after another won, or that crossed our CANCEL, creates
            # a dialog we do not want: ACK it, then end it with BYE.
            if branch.dialog is None:
                branch.dialog, branch.ack = dialog, ack
            else:
                branch.extra_acks[to_tag] = ack
            bye = dialog.create_request("BYE")
            self._bye_keys.add(self._endpoint.send_request(bye, now, branch.flow))
            return
        branch.dialog, branch.ack = dialog, ack
        self._winner = branch
        self.uac_leg.flow = branch.flow
        self.uac_leg.dialog = dialog
        self.uac_leg.invite_key = branch.invite_key
        self.uac_leg.invite_cseq = branch.invite.cseq.number
        self.uac_leg.ack = ack
        self._deadline = None
        self._attempt_deadline = None
        self._cancel_branches(now)
        self.uas_leg.dialog = Dialog.from_uas_request(
            self._uas_invite, self._uas_tag, self._local_contact
        )
        self._answer_caller(response.status_code, response, now)
        self._answered_at = now
        self._result = CallResult.ANSWERED
        self._move(CallState.ANSWERED)
        # Answered calls are held for minutes, thousands at once: keep of the INVITEs
        # only what a late 2xx of another branch (§13.2.2.4) or an error answer needs.
        self._uas_invite = _essentials(self._uas_invite)
        for other in self._branches.values():
            other.invite = _essentials(other.invite)
            other.final_response = None

    def _on_failure(
        self, branch: _Branch, status_code: int, response: Response | None, now: float
    ) -> None:
        if branch.final_status is not None:
            return
        branch.final_status = status_code
        branch.final_response = response
        if self.state in (CallState.CALLING, CallState.RINGING):
            if all(b.final_status is not None for b in self._branches.values()):
                if self._hunt_next(status_code, now):
                    return
                self._reject_caller(now)
        else:
            self._maybe_end(now)

    def _give_up_silent_target(self, now: float) -> None:
        """Sequential hunting: the current target never answered; a 408 (module rules)."""
        if self.state not in (CallState.CALLING, CallState.RINGING):
            return
        silent = [b for b in self._branches.values() if b.final_status is None]
        for branch in silent:  # one: the current target (a failure may add the next)
            if branch.cancel_key is None:
                branch.cancel_key = self._endpoint.send_cancel(branch.invite_key, now)
            self._on_failure(branch, 408, None, now)

    def _hunt_next(self, status_code: int, now: float) -> bool:
        """Sequential hunting (module rules): INVITE the next target when the current
        one failed with a failover status; False when the call cannot go on."""
        if not self._sequential or self._fails_over is None:
            return False
        if self._attempt + 1 >= len(self._targets) or not self._fails_over(status_code):
            return False
        self._attempt += 1
        uri, flow = self._targets[self._attempt]
        self.uac_leg.flow = flow
        self._send_invite(uri, flow, now)
        self._deadline = now + self._no_answer_timeout
        if self._attempt_timeout is not None:
            self._attempt_deadline = now + self._attempt_timeout
        return True

    def _reject_caller(self, now: float) -> None:
        """Every branch failed: relay the best final response (§16.7 step 6)."""
        best = min(
            self._branches.values(),
            key=lambda b: _preference(b.final_status or 500),
        )
        status_code = best.final_status or 500
        response = best.final_response
        if status_code == 503:
            # §16.7 step 6: a 503 would say this switch is unavailable; send 500.
            status_code, response = 500, None
        translated = self._status_translation.get(status_code)
        if translated is not None:
            status_code, response = translated, None
        if self._divert_caller(status_code, now):
            self._end(CallResult.REJECTED, now)
            return
        self._answer_caller(status_code, response, now)
        self._end(CallResult.FAILED if response is None else CallResult.REJECTED, now)

    def _on_timeout(self, key: str, now: float, branch_status: int) -> bool:
        """Timer B/F (or a transport error, `branch_status` 503 for a branch INVITE)."""
        if key in self._bye_keys:
            self._bye_keys.discard(key)
            self._maybe_end(now)
            return True
        relay = self._relays.pop(key, None)
        if relay is not None:
            # Timer B or F on a relayed request: a 408 for the originating side (§8.1.3.1).
            if not relay.answered:
                relay.answered = True
                self._respond(relay.server_request, 408, relay.server_key, now)
            self._maybe_end(now)
            return True
        branch = self._branches.get(key)
        if branch is not None:
            # Timer B: act as if a 408 had arrived (§8.1.3.1); a transport error: 503.
            self._on_failure(branch, branch_status, None, now)
            return True
        if any(key == b.cancel_key for b in self._branches.values()):
            return True
        for leg in (self.uas_leg, self.uac_leg):
            if key == leg.invite_key:
                return True
            if key == leg.server_invite_key:
                # Timer H or L on a re-INVITE's 2xx: no ACK came; §14.2 says hang up.
                leg.server_invite_key = None
                self._hang_up_both(now)
                return True
        if key == self._uas_invite_key:
            # Timer H or L: the caller never ACKed our 2xx; §13.3.1.4 says hang up.
            if not self._caller_acked:
                self._hang_up_both(now)
            return True
        return False

    # ================================================================ requests
    def _on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        leg = self._leg_of(request)
        if leg is None:
            return self._on_branch_request(event, now)
        assert leg.dialog is not None
        if request.method == "ACK":
            self._on_ack(leg, request, now)
            return True
        key = event.transaction_key
        assert key is not None
        if not leg.dialog.receive_request(request):
            self._respond(request, 500, key, now)
            return True
        if request.method == "BYE":
            self._on_bye(leg, request, key, now)
        elif self.state is not CallState.ANSWERED:
            # §15.1.2: the dialog is being torn down.
            self._respond(request, 481, key, now)
        elif request.method == "OPTIONS":
            # §11.2: we are the UA of this dialog; OPTIONS is consumed, never relayed.
            response = self._endpoint.create_response(request, 200)
            response.headers.add("Allow", ", ".join(_DIALOG_METHODS))
            self._endpoint.send_response(response, now, key)
        elif request.method not in _RELAYED_METHODS:
            self._respond(request, 501, key, now)
        elif (status := self._glare(leg, request)) is not None:
            response = self._endpoint.create_response(request, status)
            if status == 500:
                response.headers.add("Retry-After", _GLARE_RETRY_AFTER)
            self._endpoint.send_response(response, now, key)
        else:
            self._relay_request(leg, request, key, now)
        return True

    def _on_ack(self, leg: _Leg, ack: Request, now: float) -> None:
        if leg is self.uas_leg:
            self._caller_acked = True
        if leg.server_invite_key is not None and ack.cseq.number == leg.server_invite_cseq:
            leg.server_invite_key = None
        waiting = leg.ack_for
        if waiting is not None and waiting[0] == ack.cseq.number:
            # The answer of an offerless re-INVITE: it completes the other leg's ACK.
            leg.ack_for = None
            other = waiting[1]
            assert other.dialog is not None
            content_type = ack.headers.get("content-type")
            other.ack = other.dialog.create_ack(other.invite_cseq, ack.body, content_type)
            self._endpoint.send_ack_for_2xx(other.ack, now, self._next_hop(other))

    def _on_bye(self, leg: _Leg, request: Request, key: str, now: float) -> None:
        self._respond(request, 200, key, now)
        for relay in self._relays.values():
            if relay.from_leg is leg and not relay.answered:
                # §15.1.2: requests pending on a dialog its peer ended get 487.
                relay.answered = True
                self._respond(relay.server_request, 487, relay.server_key, now)
        if self.state is CallState.ANSWERED:
            self._send_bye(self._other(leg), now)
            self._hung_up_at = now
            self._move(CallState.DISCONNECTING)
        self._maybe_end(now)

    def _glare(self, leg: _Leg, request: Request) -> int | None:
        """§14.2 / RFC 3311 §5.2: the status that refuses `request`, or None."""
        for relay in self._relays.values():
            pending = relay.client_request
            if request.method == "INVITE":
                if relay.to_leg is leg and pending.method == "INVITE":
                    return 491  # our own re-INVITE on this dialog is pending
                if relay.from_leg is leg and pending.method == "INVITE" and not relay.answered:
                    return 500  # this side's previous re-INVITE is unanswered
            elif (
                request.body
                and relay.to_leg is leg
                and pending.method in _OFFER_METHODS
                and pending.body
            ):
                return 491  # an UPDATE offer crossing our pending offer
        return None

    def _relay_request(self, leg: _Leg, request: Request, key: str, now: float) -> None:
        other = self._other(leg)
        assert other.dialog is not None
        outgoing = other.dialog.create_request(
            request.method, request.body, request.headers.get("content-type")
        )
        _copy_headers(request, outgoing, _PASSED_HEADERS)
        client_key = self._endpoint.send_request(outgoing, now, self._next_hop(other))
        self._relays[client_key] = _Relay(key, request, leg, other, outgoing)
        if request.method == "INVITE":
            other.invite_key = client_key
            other.invite_cseq = outgoing.cseq.number
            other.ack = None

    def _on_relay_response(self, key: str, relay: _Relay, response: Response, now: float) -> None:
        if response.is_provisional:
            return
        method = relay.client_request.method
        to_leg, from_leg = relay.to_leg, relay.from_leg
        assert to_leg.dialog is not None
        to_leg.dialog.receive_response(method, response)
        if method == "INVITE" and response.is_success:
            if relay.client_request.body or not response.body or relay.answered:
                # §13.2.2.4: ACK the 2xx now; the offer was in the re-INVITE.
                to_leg.ack = to_leg.dialog.create_ack(to_leg.invite_cseq)
                self._endpoint.send_ack_for_2xx(to_leg.ack, now, self._next_hop(to_leg))
            else:
                # The 2xx carries the offer: the ACK carries the other side's answer.
                from_leg.ack_for = (relay.server_request.cseq.number, to_leg)
        del self._relays[key]
        if not relay.answered:
            relay.answered = True
            self._relay_response(relay, response, now)
        self._maybe_end(now)

    def _relay_response(self, relay: _Relay, relayed: Response, now: float) -> None:
        request = relay.server_request
        response = self._endpoint.create_response(request, relayed.status_code, relayed.reason)
        _copy_headers(relayed, response, _PASSED_RESPONSE_HEADERS)
        if relayed.is_success and request.method in _OFFER_METHODS:
            response.headers.add("Contact", f"<{self._local_contact}>")
        if relayed.body:
            content_type = relayed.headers.get("content-type")
            if content_type is not None:
                response.headers.add("Content-Type", content_type)
            response.body = relayed.body
        if relayed.is_success and request.method == "INVITE":
            relay.from_leg.server_invite_key = relay.server_key
            relay.from_leg.server_invite_cseq = request.cseq.number
        self._endpoint.send_response(response, now, relay.server_key)

    def _on_branch_request(self, event: RequestReceived, now: float) -> bool:
        """A request inside the dialog of a branch that lost (or a 2xx we hung up)."""
        request = event.request
        for branch in self._branches.values():
            dialog = branch.dialog
            if branch is self._winner or dialog is None or not dialog.matches_request(request):
                continue
            if request.method != "ACK":
                assert event.transaction_key is not None
                # Its BYE crossing ours is fine (200); anything else: we ended it.
                status = 200 if request.method == "BYE" else 481
                self._respond(request, status, event.transaction_key, now)
            return True
        return False

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

    def _other(self, leg: _Leg) -> _Leg:
        return self.uac_leg if leg is self.uas_leg else self.uas_leg

    # ================================================================ actions
    def _answer_caller(self, status_code: int, relayed: Response | None, now: float) -> None:
        """Answer the caller's INVITE, copying a relayed response's reason and body."""
        reason = relayed.reason if relayed is not None else None
        response = self._endpoint.create_response(
            self._uas_invite, status_code, reason, to_tag=self._uas_tag
        )
        if relayed is not None and status_code < 300:
            response.headers.add("Contact", f"<{self._local_contact}>")
            _copy_headers(relayed, response, _PASSED_HEADERS)
            if relayed.body:
                content_type = relayed.headers.get("content-type")
                if content_type is not None:
                    response.headers.add("Content-Type", content_type)
                response.body = relayed.body
        if status_code >= 200:
            self._status_code = status_code
        self._endpoint.send_response(response, now, self._uas_invite_key)

    def _divert_caller(self, status_code: int, now: float) -> bool:
        """Hand the caller's INVITE over instead of answering `status_code` (module
        rules: diversion); False when this status is not diverted."""
        if self._divert is None or self._diverted or not self._divert(status_code):
            return False
        self._diverted = True
        self._status_code = status_code
        invite = RequestReceived(self._uas_invite, self.uas_leg.flow, self._uas_invite_key)
        self._diversions.append(CallDiverted(invite, self._uas_tag, status_code))
        return True

    def _respond(self, request: Request, status_code: int, key: str, now: float) -> None:
        response = self._endpoint.create_response(request, status_code)
        self._endpoint.send_response(response, now, key)

    def _cancel_callee(self, result: CallResult, now: float) -> None:
        self._deadline = None
        self._attempt_deadline = None
        self._result = result
        self._cancel_branches(now)
        self._move(CallState.CANCELLING)

    def _cancel_branches(self, now: float) -> None:
        """CANCEL every branch without a final response (§9.1); the endpoint holds a
        CANCEL until the branch's first provisional response."""
        for branch in self._branches.values():
            if branch.final_status is None and branch.cancel_key is None:
                branch.cancel_key = self._endpoint.send_cancel(branch.invite_key, now)

    def _send_bye(self, leg: _Leg, now: float) -> None:
        assert leg.dialog is not None
        bye = leg.dialog.create_request("BYE")
        self._bye_keys.add(self._endpoint.send_request(bye, now, self._next_hop(leg)))

    def _hang_up_both(self, now: float) -> None:
        if self.state is not CallState.ANSWERED:
            return
        self._send_bye(self.uas_leg, now)
        self._send_bye(self.uac_leg, now)
        self._hung_up_at = now
        self._move(CallState.DISCONNECTING)

    def _next_hop(self, leg: _Leg) -> Flow:
        """Where an in-dialog request of `leg` goes (module rules)."""
        dialog = leg.dialog
        if not self._follow_dialog_targets or dialog is None:
            return leg.flow
        try:
            if dialog.route_set:
                uri = parse_name_address(dialog.route_set[0]).uri
            else:
                uri = parse_uri(dialog.remote_target)
        except RemoteProtocolError:
            return leg.flow
        if not isinstance(uri, SipUri) or uri.scheme != "sip":
            return leg.flow
        try:
            ipaddress.ip_address(uri.host)
        except ValueError:
            return leg.flow  # a host name needs RFC 3263 resolution: not here
        transport = Transport.TCP if uri.transport == "tcp" else Transport.UDP
        return Flow(transport, (uri.host, uri.port or 5060))

    def _maybe_end(self, now: float) -> None:
        """End a call whose caller is answered once nothing it sent is pending."""
        if self.state not in (CallState.CANCELLING, CallState.DISCONNECTING):
            return
        if self._bye_keys or self._relays:
            return
        if any(branch.final_status is None for branch in self._branches.values()):
            return
        self._end(self._result, now)

    def _end(self, result: CallResult, now: float) -> None:
        self._deadline = None
        self._attempt_deadline = None
        self._move(CallState.ENDED)
        end = now if self._hung_up_at is None else self._hung_up_at
        duration = 0.0 if self._answered_at is None else end - self._answered_at
        self._events.append(CallEnded(self.call_id, result, duration, self._status_code))

    def _move(self, state: CallState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"call {self.call_id}: {self.state.name} -> {state.name}")
        self.state = state


_ESSENTIAL_KEYS = frozenset(
    {"via", "from", "to", "call-id", "cseq", "contact", "record-route", "route"}
)
"""What §12.1 (dialog creation) and §8.2.6 (responses) read of an INVITE."""


def _essentials(request: Request) -> Request:
    """A copy of `request` with only the `_ESSENTIAL_KEYS` headers and no body; the
    values parsed so far are shared."""
    headers = request.headers
    slim = Headers([field for field in headers._fields if field[0] in _ESSENTIAL_KEYS])
    slim._typed = {key: value for key, value in headers._typed.items() if key in _ESSENTIAL_KEYS}
    copied = Request(request.method, request.uri_text, slim)
    copied._uri = request._uri
    return copied


def _name_address(request: Request, key: str) -> str:
    """From or To of `request` without its tag, display name kept."""
    address = (request.from_address if key == "from" else request.to_address).copy()
    address.parameters.pop("tag", None)
    return str(address)


def _copy_headers(
    source: Request | Response, target: Request | Response, names: Sequence[str]
) -> None:
    for name in names:
        for value in source.headers.get_all(name.lower()):
            target.headers.add(name, value)


def _preference(status_code: int) -> tuple[int, int, int]:
    """§16.7 step 6 sort key of a branch's final response: the smallest wins."""
    response_class = status_code // 100
    if response_class == 6:
        return (0, 0, status_code)
    rank = 0
    if response_class == 4:
        if status_code in _RESUBMISSION_HINTS:
            rank = 0
        elif status_code == 486:
            rank = 1
        elif status_code == 480:
            rank = 3
        elif status_code == 408:
            rank = 4
        else:
            rank = 2
    elif status_code == 503:
        rank = 1
    return (response_class, rank, status_code)
