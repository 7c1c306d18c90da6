"""A call the switch answers itself to play an announcement (issue 5 step 5). No I/O.

Used for toll-free calls after hours (時間外案内) and for callers refused by the area
designation when the number's `refusal_action` is `announcement`. The RTP side runs in
the asyncio adapter (`announcement_media.AnnouncementMedia`); this call only decides,
through a small effect/event interface. What it shares with `VoicemailCall` (answering
the INVITE, the media-open handshake, CANCEL and BYE, the record) is
`answered_call.AnsweredCall`'s, whose rules hold here too.

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
- The `answered_call` rules (sans-I/O, media-open timeout, offer/answer, CANCEL, BYE,
  Timer H, 501 in dialog); we only play: an offer is answered sendonly, and every call
  draws a fresh To tag.
- Early media with a final refusal (`final_status`, issue 6: cloud PBX refusals, "403
  and an announcement"): the switch never answers. An INVITE with an SDP offer gets
  183 Session Progress carrying the SDP answer (RFC 3960 §3, the gateway model: early
  media in an unreliable provisional response) and the announcement plays; when it has
  been played, the caller gets `final_status` (403) and the call ends, result
  `rejected`. A CANCEL meanwhile gets 487 as before. An INVITE without an offer (no
  early media possible without reliable provisional responses, RFC 3262) gets
  `final_status` at once.
- `CallEnded.result` is `answered` once the 200 was sent (the caller was connected to
  the announcement), `cancelled` for a CANCEL, `rejected` after early media, else
  `failed`; `status_code` is the final status the caller got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from softswitch.media import LocalMedia, NegotiatedMedia
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import RequestReceived

from .answered_call import MEDIA_OPEN_TIMEOUT, AnsweredCall
from .call import CallResult, CallState

__all__ = [
    "MEDIA_OPEN_TIMEOUT",
    "AnnouncementCall",
    "MediaEffect",
    "OpenMedia",
    "PlayAnnouncement",
    "StopMedia",
]


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


class AnnouncementCall(AnsweredCall[MediaEffect]):
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
        super().__init__(endpoint, invite, local_contact, new_token)
        self._final_status = final_status
        self._announcement = announcement

    # ================================================================ inputs
    def playback_finished(self, now: float) -> None:
        """The announcement was played to its end: hang up (or refuse, after early media)."""
        if self._final_status is not None:
            if self.state is CallState.CALLING:
                self._refuse(now)
            return
        if self.state is CallState.ANSWERED:
            self._hang_up(now)

    # ================================================================ internals
    def _open_effect(self) -> MediaEffect:
        return OpenMedia(self.call_id)

    def _stop_effect(self) -> MediaEffect:
        return StopMedia(self.call_id)

    def _media_effect(self, media: NegotiatedMedia) -> MediaEffect:
        return PlayAnnouncement(self.call_id, media, self._announcement)

    def _answer_call(
        self, local: LocalMedia, body: bytes, media: NegotiatedMedia | None, now: float
    ) -> None:
        """Module rules: the 200 OK, or with `final_status` the announcement in a 183
        (or the final status at once)."""
        if self._final_status is None:
            super()._answer_call(local, body, media, now)
        elif media is None:
            self._refuse(now)  # no offer: no early media without RFC 3262
        else:
            self._endpoint.send_response(self._sdp_response(183, body), now, self._invite_key)
            self._play(media)

    def _refuse(self, now: float) -> None:
        assert self._final_status is not None
        self._respond_invite(self._final_status, now)
        self._result = CallResult.REJECTED
        self._stop_and_end(now)
