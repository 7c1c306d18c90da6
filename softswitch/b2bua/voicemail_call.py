"""A call the switch answers itself to record a voicemail message (issue 6 item 4). No I/O.

Modelled on `AnnouncementCall`: the caller's INVITE (a new one routed to an unregistered
voicemail extension, or one a `Call` diverted on no answer or busy) is answered by the
switch, which plays the mailbox greeting and then records what the caller says. What it
shares with `AnnouncementCall` (answering the INVITE, the media-open handshake, CANCEL
and BYE, the record) is `answered_call.AnsweredCall`'s, whose rules hold here too. The
RTP side runs in `voicemail_media.VoicemailMedia`; this call decides through effects and
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
- The `answered_call` rules (sans-I/O like `Call` and `AnnouncementCall`, STYLE.md
  principles 1, 2, 4; media-open timeout, offer/answer, CANCEL, BYE, Timer H, 501 in
  dialog, `CallEnded.result`).
- Offer/answer (RFC 3264): the call `RECEIVES` (we receive the message): an offer is
  answered sendrecv in the 200 OK (`LocalMedia.answer_sendrecv`), our offer to an
  INVITE without a body says sendrecv too, and the greeting starts with the ACK's
  answer. An offered `telephone-event/8000` is kept in the answer (RFC 4733 §7.1.1,
  `softswitch.voicemail.events_sdp`): the mailbox menu is driven by those events.
- `to_tag`: a diverted call answers with the To tag of the ringing the caller already
  got (one dialog, RFC 3261 §12.1.1); a new one draws a fresh tag.
- The caller's BYE ends the message (HANG_UP: the recording so far is the message).
- The greeting is in the language of the mailbox owner's tenant (`greeting_name`:
  `voicemail_greeting_<language>`, the tenant's `announcement_language`,
  `softswitch.b2bua.pbx_routing` rule 8): the callee's tenant, whose extension the
  message is for, not the caller's (a caller may be an outside one with no tenant). The
  service picks it when the call starts; a snapshot swap does not change a call's
  greeting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.media import Answer, NegotiatedMedia
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import RequestReceived
from softswitch.voicemail.events_sdp import with_telephone_event
from softswitch.voicemail.mailbox import Mailbox

from .answered_call import MEDIA_OPEN_TIMEOUT, AnsweredCall
from .call import CallState
from .pbx_routing import announcement_name, tenant_language

__all__ = [
    "MEDIA_OPEN_TIMEOUT",
    "OpenRecorder",
    "PlayGreeting",
    "StartMailbox",
    "StartRecording",
    "StopRecorder",
    "VoicemailCall",
    "VoicemailEffect",
    "greeting_name",
]

GREETING = "voicemail_greeting"
"""The greeting's announcement kind; `greeting_name` adds the language."""


def greeting_name(snapshot: ConfigSnapshot, mailbox: Mailbox, kind: str = GREETING) -> str:
    """The greeting of `mailbox` in its tenant's language (module rules), e.g.
    `voicemail_greeting_en`; Japanese for a tenant the snapshot does not hold."""
    return announcement_name(kind, tenant_language(snapshot, mailbox.tenant_name))


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


class VoicemailCall(AnsweredCall[VoicemailEffect]):
    """The switch answers the caller and records a message (see the module rules).

    Args:
        endpoint: the switch's endpoint.
        invite: the caller's INVITE (with its server transaction key).
        mailbox: whose message it is.
        greeting: the greeting's announcement name (`greeting_name`,
            `voicemail_greeting_ja`).
        local_contact: our Contact URI.
        new_token: our To tag when `to_tag` is None.
        to_tag: the To tag of a diverted call's ringing (module rules).
        listen: listening mode (module rules: `StartMailbox`).
    """

    RECEIVES = True

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
        super().__init__(endpoint, invite, local_contact, new_token, to_tag)
        self.mailbox = mailbox
        self._greeting = greeting
        self._listen = listen
        self._event_payload_type: int | None = None
        self.caller = str(invite.request.from_address.uri)

    # ================================================================ inputs
    def greeting_finished(self, now: float) -> None:
        """The greeting was played to its end: record the message."""
        if self.state is CallState.ANSWERED:
            self._effects.append(StartRecording(self.call_id, self.mailbox, self.caller))

    def recording_finished(self, now: float) -> None:
        """Silence or the maximum length ended the message: hang up."""
        if self.state is CallState.ANSWERED:
            self._hang_up(now)

    # ================================================================ internals
    def _open_effect(self) -> VoicemailEffect:
        return OpenRecorder(self.call_id)

    def _stop_effect(self) -> VoicemailEffect:
        return StopRecorder(self.call_id)

    def _media_effect(self, media: NegotiatedMedia) -> VoicemailEffect:
        if self._listen:
            return StartMailbox(self.call_id, self.mailbox, media, self._event_payload_type)
        return PlayGreeting(self.call_id, media, self._greeting)

    def _answer_body(self, offer: bytes, answer: Answer) -> bytes:
        """The answer keeps an offered telephone-event (module rules)."""
        body, self._event_payload_type = with_telephone_event(offer, answer)
        return body
