"""A call the switch answers itself to play an announcement (issue 5 step 5). No I/O.

Used for toll-free calls after hours (時間外案内) and for callers refused by the area
designation when the number's `refusal_action` is `announcement`. The RTP side runs in
the asyncio adapter (`announcement_media.AnnouncementMedia`); this call only decides,
through a small effect/event interface:

Effects (`next_effect()`, drained by the service into `CallService.next_media_effect()`):
- `OpenMedia(call_id)`: bind an RTP socket for the call (AnnouncementPlayer.open).
- `PlayAnnouncement(call_id, media, announcement)`: start playing (the answer is sent).
- `StopMedia(call_id)`: stop and close whatever the adapter holds for the call
  (idempotent; the adapter may get it for a call whose media never opened).
Inputs (through the service, by the caller's Call-ID):
- `media_opened(address, now)`: the socket is bound at `address` (None: it could not
  be; the caller gets 500, RFC 3261 §21.5.1).
- `playback_finished(now)`: the announcement was played to its end: we send BYE.

Rules:
- Sans-I/O like `Call` (STYLE.md principles 1, 2, 4): it sends through `SipEndpoint`,
  takes `now` on every input, exposes `next_deadline()`/`handle_timer(now)`, and queues
  one `CallEnded` for `next_event()`; `call_ids`, `transaction_keys` and `state` as in
  `Call`, so the `CallService` indexes it the same way.
- `start(now)` asks for media and arms a deadline (`MEDIA_OPEN_TIMEOUT`): without a
  socket by then the caller gets 500.
- Offer/answer (RFC 3264): an INVITE with an SDP offer is answered in the 200 OK
  (`answer_offer`), and playback starts at once (RFC 3264 §6: the answerer may send
  once the answer is sent); an offer we cannot answer gets `SdpError.status_code`
  (400, 488). An INVITE without a body gets our offer in the 200 (`build_offer`,
  RFC 3261 §13.2.1 late offer) and playback starts with the ACK's answer
  (`accept_answer`); an ACK without an acceptable answer ends the call with BYE.
- A CANCEL before the 200 gets 487 (§9.2); a BYE from the caller gets 200 and stops the
  playback (§15.1.2); no ACK for our 200 (Timer H, §13.3.1.4) hangs up with BYE.
  In-dialog requests other than ACK and BYE get 501 (§21.5.2): an announcement has no
  re-negotiation. A BYE we send ends the call when answered, timed out or lost.
- Early media with a final refusal (`final_status`, issue 6: cloud PBX refusals, "403
  and an announcement"): the switch never answers. An INVITE with an SDP offer gets
  183 Session Progress carrying the SDP answer (RFC 3960 §3, the gateway model: early
  media in an unreliable provisional response) and the announcement plays; when it has
  been played, the caller gets `final_status` (403) and the call ends, result
  `rejected`. A CANCEL meanwhile gets 487 as before. An INVITE without an offer (no
  early media possible without reliable provisional responses, RFC 3262) gets
  `final_status` at once.
- `CallEnded.result` is `answered` once the 200 was sent (the caller was connected to
  the announcement), `cancelled` for a CANCEL, else `failed`; `status_code` is the final
  status the caller got.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from softswitch.media import (
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

from .call import CallEnded, CallResult, CallState
from .dialog import Dialog

__all__ = [
    "MEDIA_OPEN_TIMEOUT",
    "AnnouncementCall",
    "MediaEffect",
    "OpenMedia",
    "PlayAnnouncement",
    "StopMedia",
]

MEDIA_OPEN_TIMEOUT = 5.0
"""Seconds the adapter has to bind the RTP socket before the caller gets 500."""


@dataclass(frozen=True, slots=True)
class OpenMedia:
    """Bind an RTP socket for the call; answer with `CallService.media_opened`."""

    call_id: str


@dataclass(frozen=True, slots=True)
class PlayAnnouncement:
    """Play `announcement` (a library name, `after_hours_ja`) as `media` negotiated;
    report its end with `CallService.playback_finished`."""

    call_id: str
    media: NegotiatedMedia
    announcement: str


@dataclass(frozen=True, slots=True)
class StopMedia:
    """Stop the call's playback and close its socket (idempotent)."""

    call_id: str


MediaEffect = OpenMedia | PlayAnnouncement | StopMedia


class AnnouncementCall:
    """The switch answers the caller's INVITE and plays an announcement (module rules).

    Args:
        endpoint: the switch's endpoint.
        invite: the caller's INVITE (with its server transaction key).
        announcement: the announcement's name, carried in `PlayAnnouncement`.
        local_contact: our Contact URI.
        new_token: our To tag.
        final_status: play as early media, then refuse with this status (module rules);
            None: answer 200 and hang up after the announcement.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        invite: RequestReceived,
        announcement: str,
        local_contact: str,
        new_token: Callable[[], str],
        final_status: int | None = None,
    ) -> None:
        if invite.transaction_key is None or invite.request.method != "INVITE":
            raise LocalProtocolError("a call starts from an INVITE with a server transaction")
        self._final_status = final_status
        self._endpoint = endpoint
        self._invite = invite.request
        self._invite_key = invite.transaction_key
        self._flow = invite.flow
        self._announcement = announcement
        self._local_contact = local_contact
        self._tag = new_token()
        self._dialog: Dialog | None = None
        self._local: LocalMedia | None = None
        self._acked = False
        self._playing = False
        self._bye_key: str | None = None
        self._deadline: float | None = None
        self._answered_at: float | None = None
        self._result = CallResult.FAILED
        self._status_code = 500
        self._events: deque[CallEnded] = deque()
        self._effects: deque[MediaEffect] = deque()
        self.call_id = invite.request.call_id
        self.state = CallState.CALLING
        self.attempt = 0
        """Always 0 (the `Call` interface the service reads)."""

    # ================================================================ outputs
    def next_event(self) -> CallEnded | None:
        return self._events.popleft() if self._events else None

    def next_effect(self) -> MediaEffect | None:
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
        """Ask the adapter for an RTP socket (module rules)."""
        self._effects.append(OpenMedia(self.call_id))
        self._deadline = now + MEDIA_OPEN_TIMEOUT

    def media_opened(self, address: Address | None, now: float) -> None:
        """The adapter bound the socket at `address` (None: it failed)."""
        if self.state is not CallState.CALLING:
            self._effects.append(StopMedia(self.call_id))  # cancelled meanwhile
            return
        self._deadline = None
        if address is None:
            self._fail(500, now)
            return
        local = LocalMedia(address=address[0], port=address[1])
        offer = self._invite.body
        media: NegotiatedMedia | None = None
        if offer:
            try:
                answer = answer_offer(offer, local)
            except SdpError as error:
                self._fail(error.status_code, now)
                return
            body, media = answer.sdp, answer.media
        else:
            body = build_offer(local)
        if self._final_status is not None:
            self._early_media(body, media, now)
            return
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
        self._move(CallState.ANSWERED)
        if media is not None:
            self._play(media)

    def _early_media(self, body: bytes, media: NegotiatedMedia | None, now: float) -> None:
        """Module rules: the announcement in a 183, or the final status at once."""
        assert self._final_status is not None
        if media is None:
            self._refuse(now)  # no offer: no early media without RFC 3262
            return
        response = self._endpoint.create_response(self._invite, 183, to_tag=self._tag)
        response.headers.add("Contact", f"<{self._local_contact}>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
        self._endpoint.send_response(response, now, self._invite_key)
        self._play(media)

    def _refuse(self, now: float) -> None:
        assert self._final_status is not None
        self._respond_invite(self._final_status, now)
        self._result = CallResult.REJECTED
        self._stop_and_end(now)

    def playback_finished(self, now: float) -> None:
        """The announcement was played to its end: hang up (or refuse, after early media)."""
        self._playing = False
        if self._final_status is not None:
            if self.state is CallState.CALLING:
                self._refuse(now)
            return
        if self.state is CallState.ANSWERED:
            self._hang_up(now)

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.state is CallState.CALLING:
            self._fail(500, now)  # module rules: no socket in time

    def handle_event(self, event: SipEvent, now: float) -> bool:
        if self.state is CallState.ENDED:
            return False
        if isinstance(event, CancelReceived):
            if event.invite_transaction_key != self._invite_key:
                return False
            if self.state is CallState.CALLING:
                # §9.2: 487 for the INVITE; the CANCEL itself was answered by the core.
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
                    self._hang_up(now)  # Timer H: §13.3.1.4 says hang up
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
                self._stop_and_end(now)  # the caller hung up mid-way
            return True
        status = 481 if self.state is not CallState.ANSWERED else 501
        self._endpoint.send_response(self._endpoint.create_response(request, status), now, key)
        return True

    def _on_first_ack(self, ack: Request, now: float) -> None:
        if self._playing or self.state is not CallState.ANSWERED or self._invite.body:
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
        self._play(media)

    def _play(self, media: NegotiatedMedia) -> None:
        self._playing = True
        self._effects.append(PlayAnnouncement(self.call_id, media, self._announcement))

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
        self._effects.append(StopMedia(self.call_id))
        self._playing = False
        bye = self._dialog.create_request("BYE")
        self._bye_key = self._endpoint.send_request(bye, now, self._flow)
        self._move(CallState.DISCONNECTING)

    def _stop_and_end(self, now: float) -> None:
        self._effects.append(StopMedia(self.call_id))
        self._playing = False
        self._end(now)

    def _end(self, now: float) -> None:
        self._deadline = None
        self.state = CallState.ENDED
        duration = 0.0 if self._answered_at is None else now - self._answered_at
        self._events.append(CallEnded(self.call_id, self._result, duration, self._status_code))

    def _move(self, state: CallState) -> None:
        self.state = state
