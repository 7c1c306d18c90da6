"""What the calls the switch answers itself share (announcements, voicemail). No I/O.

`AnnouncementCall` and `VoicemailCall` answer the caller's INVITE with an RTP socket of
the switch's own, bound by an asyncio media adapter (`answered_media`). `AnsweredCall`
is their common part: the INVITE server side, the media-open handshake and its timeout,
the caller's CANCEL and BYE, our BYE, the call's end and its one record. A subclass
names its effect classes, says what the media does once negotiated, and adds its own
inputs (`playback_finished`, `greeting_finished`, ...).

Effects (`next_effect()`, drained by the service; the classes are the subclass's):
- the open effect (`OpenMedia`, `OpenRecorder`) from `start(now)`: bind an RTP socket.
- the media effect (`PlayAnnouncement`, `PlayGreeting`, `StartMailbox`) once media is
  negotiated (module rules: offer/answer).
- the stop effect (`StopMedia`, `StopRecorder`) on each of the call's endings, and for
  a socket reported open after the call left CALLING: stop and close whatever the
  adapter holds for the call (idempotent; the adapter may get it for a call whose media
  never opened).
Inputs (through the service, by the caller's Call-ID):
- `media_opened(address, now)`: the socket is bound at `address` (None: it could not
  be; the caller gets 500, RFC 3261 §21.5.1).

Rules:
- Sans-I/O like `Call` (STYLE.md principles 1, 2, 4): it sends through `SipEndpoint`,
  takes `now` on every input, exposes `next_deadline()`/`handle_timer(now)`, and queues
  one `CallEnded` for `next_event()`; `call_ids`, `transaction_keys`, `caller_invite`,
  `caller_invite_key`, `attempt` (always 0) and `state` as in `Call`, so the
  `CallService` indexes it the same way.
- `start(now)` asks for media and arms a deadline (`MEDIA_OPEN_TIMEOUT`): without a
  socket by then the caller gets 500.
- Offer/answer (RFC 3264): an INVITE with an SDP offer is answered in the 200 OK
  (`answer_offer`), and the media starts at once (RFC 3264 §6: the answerer may send
  once the answer is sent); an offer we cannot answer gets `SdpError.status_code`
  (400, 488). An INVITE without a body gets our offer in the 200 (`build_offer`,
  RFC 3261 §13.2.1 late offer) and the media starts with the ACK's answer
  (`accept_answer`); an ACK without an acceptable answer ends the call with BYE.
  A call that `RECEIVES` (voicemail records the caller) answers a sendrecv offer
  sendrecv (`LocalMedia.answer_sendrecv`), offers sendrecv (RFC 3264 §5.1), and reads
  a sendrecv answer to its offer as "we send too". A subclass may add to the answer's
  SDP (`_answer_body`) or send something else than the 200 (`_answer_call`).
- The 200 and every final response carry our To tag (`to_tag` if given: a diverted
  call keeps the tag of the ringing the caller already got, one dialog, RFC 3261
  §12.1.1; else a fresh one); the 200 creates the dialog (`Dialog.from_uas_request`).
- A CANCEL before the 200 gets 487 (§9.2; the core answered the CANCEL itself); a BYE
  from the caller gets 200 and stops the media (§15.1.2); no ACK for our 200 (Timer H,
  §13.3.1.4) hangs up with BYE. In-dialog requests other than ACK and BYE get 501
  (§21.5.2): the call has no re-negotiation; once we sent BYE they get 481. A BYE we
  send ends the call when answered, timed out or lost.
- `CallEnded.result` is `answered` once the 200 was sent (the caller was connected),
  `cancelled` for a CANCEL, else `failed` (or what the subclass set, e.g. `rejected`);
  `status_code` is the final status the caller got; the duration counts from the 200.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from softswitch.media import (
    Answer,
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
from softswitch.sip.message import Request, Response

from .call import CallEnded, CallResult, CallState
from .dialog import Dialog

__all__ = ["MEDIA_OPEN_TIMEOUT", "AnsweredCall"]

MEDIA_OPEN_TIMEOUT = 5.0
"""Seconds the adapter has to bind the RTP socket before the caller gets 500."""

EffectT = TypeVar("EffectT")


class AnsweredCall(ABC, Generic[EffectT]):
    """A call the switch answers itself (module rules); `EffectT`: its effect classes.

    Subclasses give `_open_effect()`, `_stop_effect()` and `_media_effect(media)`, and
    may set `RECEIVES` and override `_answer_body` and `_answer_call`.

    Args:
        endpoint: the switch's endpoint.
        invite: the caller's INVITE (with its server transaction key).
        local_contact: our Contact URI.
        new_token: our To tag when `to_tag` is None.
        to_tag: the To tag the caller already got (module rules).

    Raises:
        LocalProtocolError: `invite` is not an INVITE with a server transaction.
    """

    RECEIVES: ClassVar[bool] = False
    """The call receives media too (module rules: offer/answer)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        invite: RequestReceived,
        local_contact: str,
        new_token: Callable[[], str],
        to_tag: str | None = None,
    ) -> None:
        if invite.transaction_key is None or invite.request.method != "INVITE":
            raise LocalProtocolError("a call starts from an INVITE with a server transaction")
        self._endpoint = endpoint
        self._invite = invite.request
        self._invite_key = invite.transaction_key
        self._flow = invite.flow
        self._local_contact = local_contact
        self._tag = to_tag if to_tag is not None else new_token()
        self._dialog: Dialog | None = None
        self._local: LocalMedia | None = None
        self._acked = False
        self._media_started = False
        self._bye_key: str | None = None
        self._deadline: float | None = None
        self._answered_at: float | None = None
        self._result = CallResult.FAILED
        self._status_code = 500
        self._events: deque[CallEnded] = deque()
        self._effects: deque[EffectT] = deque()
        self.call_id = invite.request.call_id
        self.state = CallState.CALLING
        self.attempt = 0
        """Always 0 (the `Call` interface the service reads)."""

    # ================================================================ subclass parts
    @abstractmethod
    def _open_effect(self) -> EffectT:
        """The effect that binds the call's RTP socket."""

    @abstractmethod
    def _stop_effect(self) -> EffectT:
        """The effect that stops and closes whatever the adapter holds for the call."""

    @abstractmethod
    def _media_effect(self, media: NegotiatedMedia) -> EffectT:
        """The effect that starts the call's media, negotiated as `media`."""

    def _answer_body(self, offer: bytes, answer: Answer) -> bytes:
        """The SDP answer to send for `offer` (default: `answer`'s own)."""
        return answer.sdp

    def _answer_call(
        self, local: LocalMedia, body: bytes, media: NegotiatedMedia | None, now: float
    ) -> None:
        """Send the 200 OK with `body` and start `media` (None: late offer, the ACK's
        answer starts it). A subclass may answer otherwise (module rules)."""
        self._local = local
        response = self._sdp_response(200, body)
        self._dialog = Dialog.from_uas_request(self._invite, self._tag, self._local_contact)
        self._status_code = 200
        self._result = CallResult.ANSWERED
        self._answered_at = now
        self._endpoint.send_response(response, now, self._invite_key)
        self.state = CallState.ANSWERED
        if media is not None:
            self._play(media)

    # ================================================================ outputs
    def next_event(self) -> CallEnded | None:
        """The `CallEnded` of this call once it is over (once), else None."""
        return self._events.popleft() if self._events else None

    def next_effect(self) -> EffectT | None:
        """The next thing the media adapter must do (module rules: effects)."""
        return self._effects.popleft() if self._effects else None

    def next_deadline(self) -> float | None:
        """The media-open deadline while it runs, else None."""
        return self._deadline

    @property
    def caller_invite(self) -> Request:
        """The caller's INVITE."""
        return self._invite

    @property
    def caller_invite_key(self) -> str:
        """The caller's INVITE server transaction key."""
        return self._invite_key

    @property
    def call_ids(self) -> frozenset[str]:
        """The caller's Call-ID; empty once ENDED."""
        return frozenset() if self.state is CallState.ENDED else frozenset({self.call_id})

    @property
    def transaction_keys(self) -> frozenset[str]:
        """The caller's INVITE and our BYE, if any; empty once ENDED."""
        if self.state is CallState.ENDED:
            return frozenset()
        keys = {self._invite_key}
        if self._bye_key is not None:
            keys.add(self._bye_key)
        return frozenset(keys)

    # ================================================================ inputs
    def start(self, now: float) -> None:
        """Ask the adapter for an RTP socket (module rules)."""
        self._effects.append(self._open_effect())
        self._deadline = now + MEDIA_OPEN_TIMEOUT

    def media_opened(self, address: Address | None, now: float) -> None:
        """The adapter bound the socket at `address` (None: it failed)."""
        if self.state is not CallState.CALLING:
            self._effects.append(self._stop_effect())  # cancelled meanwhile
            return
        self._deadline = None
        if address is None:
            self._fail(500, now)
            return
        local = LocalMedia(address=address[0], port=address[1], answer_sendrecv=self.RECEIVES)
        offer = self._invite.body
        media: NegotiatedMedia | None = None
        if offer:
            try:
                answer = answer_offer(offer, local)
            except SdpError as error:
                self._fail(error.status_code, now)
                return
            body = self._answer_body(offer, answer)
            media = answer.media
        else:
            body = build_offer(local)
            if self.RECEIVES:
                # `build_offer` offers sendonly (announcements only play); this call
                # also receives, so the offer says sendrecv (RFC 3264 §5.1).
                body = body.replace(b"a=sendonly", b"a=sendrecv")
        self._answer_call(local, body, media, now)

    def handle_timer(self, now: float) -> None:
        """The media-open deadline: without a socket the caller gets 500."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is CallState.CALLING:
            self._fail(500, now)  # module rules: no socket in time

    def handle_event(self, event: SipEvent, now: float) -> bool:
        """Take `event` if it belongs to this call (module rules); True if taken."""
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
                self._stop_and_end(now)  # the caller hung up (voicemail: the message ends)
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
        if self.RECEIVES:
            # We offered sendrecv: an answer saying sendrecv means we send too.
            media = NegotiatedMedia(
                codec=media.codec,
                payload_type=media.payload_type,
                remote=media.remote,
                send=media.send,
                direction=Direction.SENDRECV if media.send else Direction.RECVONLY,
                ptime=media.ptime,
                media_index=media.media_index,
            )
        self._play(media)

    def _play(self, media: NegotiatedMedia) -> None:
        self._media_started = True
        self._effects.append(self._media_effect(media))

    def _sdp_response(self, status_code: int, body: bytes) -> Response:
        """A response to the caller's INVITE carrying our SDP `body` (200, or 183)."""
        response = self._endpoint.create_response(self._invite, status_code, to_tag=self._tag)
        response.headers.add("Contact", f"<{self._local_contact}>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
        return response

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
        self._effects.append(self._stop_effect())
        bye = self._dialog.create_request("BYE")
        self._bye_key = self._endpoint.send_request(bye, now, self._flow)
        self.state = CallState.DISCONNECTING

    def _stop_and_end(self, now: float) -> None:
        self._effects.append(self._stop_effect())
        self._end(now)

    def _end(self, now: float) -> None:
        self._deadline = None
        self.state = CallState.ENDED
        duration = 0.0 if self._answered_at is None else now - self._answered_at
        self._events.append(CallEnded(self.call_id, self._result, duration, self._status_code))
