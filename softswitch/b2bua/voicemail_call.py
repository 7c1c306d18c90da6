"""A call the switch answers itself to record a voicemail message (issue 6 item 4). No I/O.

Modelled on `AnnouncementCall`: the caller's INVITE (a new one routed to an unregistered
voicemail extension, or one a `Call` diverted on no answer or busy) is answered by the
switch, which plays the mailbox greeting and then records what the caller says. The RTP
side runs in `voicemail_media.VoicemailMedia`; this call decides through effects and
inputs:

Effects (`next_effect()`, drained by the service into `CallService.next_voicemail_effect()`):
- `OpenRecorder(call_id)`: bind an RTP socket for the call.
- `PlayGreeting(call_id, media, greeting)`: play the greeting (the answer is sent).
- `StartRecording(call_id, mailbox, caller)`: the greeting ended: record the caller.
- `StopRecorder(call_id)`: stop; a recording in progress is saved as a message (if it
  holds voice). Idempotent; the adapter may get it for a call whose media never opened.
- `StartMailbox(call_id, mailbox, media, event_payload_type)`: listening mode (the
  owner dialled the feature code): play the mailbox's messages under the DTMF menu
  (`softswitch.voicemail.menu`) instead of greeting and recording.
Inputs (through the service, by the caller's Call-ID):
- `media_opened(address, now)`: the socket is bound (None: failed; the caller gets 500).
- `greeting_finished(now)`: the greeting was played: recording starts.
- `recording_finished(now)`: silence or the maximum length ended the message, or the
  mailbox menu finished (listening mode): BYE.

Rules:
- Sans-I/O like `Call` and `AnnouncementCall` (STYLE.md principles 1, 2, 4).
- Offer/answer (RFC 3264): an INVITE with an offer is answered in the 200 OK sendrecv
  (we receive the message; `LocalMedia.answer_sendrecv`); an INVITE without a body gets
  our offer in the 200 (RFC 3261 §13.2.1), sendrecv too, and the greeting starts with
  the ACK's answer. An offer we cannot answer gets `SdpError.status_code` (400, 488).
  An offered `telephone-event/8000` is kept in the answer (RFC 4733 §7.1.1,
  `softswitch.voicemail.events_sdp`): the mailbox menu is driven by those events.
- `to_tag`: a diverted call answers with the To tag of the ringing the caller already
  got (one dialog, RFC 3261 §12.1.1); a new one draws a fresh tag.
- The caller's BYE gets 200 and ends the message (HANG_UP: the recording so far is
  the message); a CANCEL before the 200 gets 487; no ACK (Timer H) hangs up with BYE.
  In-dialog requests other than ACK and BYE get 501 (§21.5.2).
- `CallEnded.result` is `answered` once the 200 was sent, `cancelled` for a CANCEL,
  else `failed`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from softswitch.media import (
    Direction,
    LocalMedia,
    NegotiatedMedia,
    SdpError,
    accept_answer,
    answer_offer,
    build_offer,
)
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
from softswitch.sip.flows import Address
from softswitch.sip.message import Request
from softswitch.voicemail.events_sdp import with_telephone_event
from softswitch.voicemail.mailbox import Mailbox

from .call import CallEnded, CallResult, CallState
from .dialog import Dialog

__all__ = [
    "MEDIA_OPEN_TIMEOUT",
    "OpenRecorder",
    "PlayGreeting",
    "StartMailbox",
    "StartRecording",
    "StopRecorder",
    "VoicemailCall",
    "VoicemailEffect",
]

MEDIA_OPEN_TIMEOUT = 5.0
"""Seconds the adapter has to bind the RTP socket before the caller gets 500."""


@dataclass(frozen=True, slots=True)
class OpenRecorder:
    """Bind an RTP socket for the call; answer with `CallService.voicemail_media_opened`."""

    call_id: str


@dataclass(frozen=True, slots=True)
class PlayGreeting:
    """Play the greeting `greeting` (an announcement name) as `media` negotiated;
    report its end with `CallService.greeting_finished`."""

    call_id: str
    media: NegotiatedMedia
    greeting: str


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the caller's RTP as a message for `mailbox`; report an end by silence or
    maximum length with `CallService.recording_finished`."""

    call_id: str
    mailbox: Mailbox
    caller: str
    """The caller's From URI, kept with the message."""


@dataclass(frozen=True, slots=True)
class StopRecorder:
    """Stop the call's media (idempotent); a recording in progress becomes a message."""

    call_id: str


@dataclass(frozen=True, slots=True)
class StartMailbox:
    """Listening mode: play `mailbox`'s messages as `media` negotiated, driven by RFC 4733
    events of `event_payload_type` (None: none negotiated, messages play in turn);
    report the end with `CallService.recording_finished`."""

    call_id: str
    mailbox: Mailbox
    media: NegotiatedMedia
    event_payload_type: int | None


VoicemailEffect = OpenRecorder | PlayGreeting | StartRecording | StopRecorder | StartMailbox


class VoicemailCall:
    """The switch answers the caller and records a message (see the module rules).

    Args:
        endpoint: the switch's endpoint.
        invite: the caller's INVITE (with its server transaction key).
        mailbox: whose message it is.
        greeting: the greeting's announcement name (`voicemail_greeting_ja`).
        local_contact: our Contact URI.
        new_token: our To tag when `to_tag` is None.
        to_tag: the To tag of a diverted call's ringing (module rules).
        listen: listening mode (module rules: `StartMailbox`).
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        invite: RequestReceived,
        mailbox: Mailbox,
        greeting: str,
        local_contact: str,
        new_token: Callable[[], str],
        to_tag: str | None = None,
        listen: bool = False,
    ) -> None:
        if invite.transaction_key is None or invite.request.method != "INVITE":
            raise LocalProtocolError("a call starts from an INVITE with a server transaction")
        self._endpoint = endpoint
        self._invite = invite.request
        self._invite_key = invite.transaction_key
        self._flow = invite.flow
        self.mailbox = mailbox
        self._greeting = greeting
        self._local_contact = local_contact
        self._tag = to_tag if to_tag is not None else new_token()
        self._dialog: Dialog | None = None
        self._local: LocalMedia | None = None
        self._acked = False
        self._media_started = False
        self._listen = listen
        self._event_payload_type: int | None = None
        self._bye_key: str | None = None
        self._deadline: float | None = None
        self._answered_at: float | None = None
        self._result = CallResult.FAILED
        self._status_code = 500
        self._events: deque[CallEnded] = deque()
        self._effects: deque[VoicemailEffect] = deque()
        self.call_id = invite.request.call_id
        self.caller = str(invite.request.from_address.uri)
        self.state = CallState.CALLING
        self.attempt = 0
        """Always 0 (the `Call` interface the service reads)."""

    # ================================================================ outputs
    def next_event(self) -> CallEnded | None:
        return self._events.popleft() if self._events else None

    def next_effect(self) -> VoicemailEffect | None:
        """The next thing the media adapter must do (module rules: effects)."""
        return self._effects.popleft() if self._effects else None

    def next_deadline(self) -> float | None:
        return self._deadline

    @property
    def caller_invite(self) -> Request:
        return self._invite

    @property
    def caller_invite_key(self) -> str:
        return self._invite_key

    @property
    def call_ids(self) -> frozenset[str]:
        return frozenset() if self.state is CallState.ENDED else frozenset({self.call_id})

    @property
    def transaction_keys(self) -> frozenset[str]:
        if self.state is CallState.ENDED:
            return frozenset()
        keys = {self._invite_key}
        if self._bye_key is not None:
            keys.add(self._bye_key)
        return frozenset(keys)

    # ================================================================ inputs
    def start(self, now: float) -> None:
        """Ask the adapter for an RTP socket."""
        self._effects.append(OpenRecorder(self.call_id))
        self._deadline = now + MEDIA_OPEN_TIMEOUT

    def media_opened(self, address: Address | None, now: float) -> None:
        """The adapter bound the socket at `address` (None: it failed)."""
        if self.state is not CallState.CALLING:
            self._effects.append(StopRecorder(self.call_id))  # cancelled meanwhile
            return
        self._deadline = None
        if address is None:
            self._fail(500, now)
            return
        local = LocalMedia(address=address[0], port=address[1], answer_sendrecv=True)
        offer = self._invite.body
        media: NegotiatedMedia | None = None
        if offer:
            try:
                answer = answer_offer(offer, local)
            except SdpError as error:
                self._fail(error.status_code, now)
                return
            body, self._event_payload_type = with_telephone_event(offer, answer)
            media = answer.media
        else:
            # `build_offer` offers sendonly (announcements only play); we also receive
            # the message, so the offer says sendrecv (RFC 3264 §5.1).
            body = build_offer(local).replace(b"a=sendonly", b"a=sendrecv")
        self._local = local
        response = self._endpoint.create_response(self._invite, 200, to_tag=self._tag)
        response.headers.add("Contact", f"<{self._local_contact}>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
        self._dialog = Dialog.from_uas_request(self._invite, self._tag, self._local_contact)
        self._status_code = 200
        self._result = CallResult.ANSWERED
        self._answered_at = now
        self._endpoint.send_response(response, now, self._invite_key)
        self.state = CallState.ANSWERED
        if media is not None:
            self._play(media)

    def greeting_finished(self, now: float) -> None:
        """The greeting was played to its end: record the message."""
        if self.state is CallState.ANSWERED:
            self._effects.append(StartRecording(self.call_id, self.mailbox, self.caller))

    def recording_finished(self, now: float) -> None:
        """Silence or the maximum length ended the message: hang up."""
        if self.state is CallState.ANSWERED:
            self._hang_up(now)

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is CallState.CALLING:
            self._fail(500, now)  # no socket in time

    def handle_event(self, event: SipEvent, now: float) -> bool:
        if self.state is CallState.ENDED:
            return False
        if isinstance(event, CancelReceived):
            if event.invite_transaction_key != self._invite_key:
                return False
            if self.state is CallState.CALLING:
                # RFC 3261 §9.2: 487 for the INVITE; the core answered the CANCEL.
                self._respond_invite(487, now)
                self._result = CallResult.CANCELLED
                self._stop_and_end(now)
            return True
        if isinstance(event, RequestReceived):
            return self._on_request(event, now)
        if isinstance(event, ResponseReceived):
            if event.transaction_key != self._bye_key:
                return False
            if event.response.status_code >= 200:
                self._bye_key = None
                self._end(now)
            return True
        if isinstance(event, (TransactionTimeout, TransportError)):
            key = event.transaction_key
            if key == self._bye_key:
                self._bye_key = None
                self._end(now)
                return True
            if key == self._invite_key:
                if self.state is CallState.ANSWERED and not self._acked:
                    self._hang_up(now)  # Timer H: RFC 3261 §13.3.1.4 says hang up
                return True
        return False

    # ================================================================ internals
    def _on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        dialog = self._dialog
        if dialog is None or not dialog.matches_request(request):
            return False
        if request.method == "ACK":
            if not self._acked:
                self._acked = True
                self._on_first_ack(request, now)
            return True
        key = event.transaction_key
        assert key is not None
        if request.method == "BYE":
            self._endpoint.send_response(self._endpoint.create_response(request, 200), now, key)
            if self.state is CallState.ANSWERED:
                self._stop_and_end(now)  # the caller hung up: the message ends here
            return True
        status = 481 if self.state is not CallState.ANSWERED else 501
        self._endpoint.send_response(self._endpoint.create_response(request, status), now, key)
        return True

    def _on_first_ack(self, ack: Request, now: float) -> None:
        if self._media_started or self.state is not CallState.ANSWERED or self._invite.body:
            return
        # Late offer: the ACK carries the answer (RFC 3264 §5, RFC 3261 §13.2.1).
        assert self._local is not None
        try:
            media = accept_answer(ack.body, self._local) if ack.body else None
        except SdpError:
            media = None
        if media is None:
            self._hang_up(now)
            return
        # We offered sendrecv: an answer saying sendrecv means we send too.
        self._play(NegotiatedMedia(
            codec=media.codec,
            payload_type=media.payload_type,
            remote=media.remote,
            send=media.send,
            direction=Direction.SENDRECV if media.send else Direction.RECVONLY,
            ptime=media.ptime,
            media_index=media.media_index,
        ))

    def _play(self, media: NegotiatedMedia) -> None:
        self._media_started = True
        if self._listen:
            self._effects.append(
                StartMailbox(self.call_id, self.mailbox, media, self._event_payload_type)
            )
        else:
            self._effects.append(PlayGreeting(self.call_id, media, self._greeting))

    def _respond_invite(self, status_code: int, now: float) -> None:
        response = self._endpoint.create_response(self._invite, status_code, to_tag=self._tag)
        self._status_code = status_code
        self._endpoint.send_response(response, now, self._invite_key)

    def _fail(self, status_code: int, now: float) -> None:
        self._respond_invite(status_code, now)
        self._result = CallResult.FAILED
        self._stop_and_end(now)

    def _hang_up(self, now: float) -> None:
        assert self._dialog is not None
        self._effects.append(StopRecorder(self.call_id))
        bye = self._dialog.create_request("BYE")
        self._bye_key = self._endpoint.send_request(bye, now, self._flow)
        self.state = CallState.DISCONNECTING

    def _stop_and_end(self, now: float) -> None:
        self._effects.append(StopRecorder(self.call_id))
        self._end(now)

    def _end(self, now: float) -> None:
        self._deadline = None
        self.state = CallState.ENDED
        duration = 0.0 if self._answered_at is None else now - self._answered_at
        self._events.append(CallEnded(self.call_id, self._result, duration, self._status_code))
