"""Voicemail's pure cores (issue 6 item 4): recording, RFC 4733 DTMF, RFC 3842 MWI.

Rules:
- Sans-I/O like `softswitch.media` (STYLE.md principles 1, 2): bytes and `now` in,
  decisions out; no sockets, no clock, no files. The asyncio side is
  `softswitch.b2bua.voicemail_media`; the SIP side `softswitch.b2bua.voicemail_call`.
- `recording`: one message's RTP -> linear PCM, ended by hang-up, silence or a maximum
  length. `dtmf`: RFC 4733 telephone-event payloads -> digits, once per event.
  `menu`: the feature-code mailbox menu (keys -> play, mark heard, delete, finish).
  `events_sdp`: telephone-event kept in the SDP answer. `mailbox`: who has a mailbox,
  and the RFC 3842 message-summary body (the RFC 6665 subscriptions are
  `softswitch.b2bua.mwi`, which sends through the SIP endpoint).
"""

from .dtmf import DtmfReceiver, TelephoneEvent, parse_telephone_event
from .mailbox import MESSAGE_SUMMARY_TYPE, Mailbox, mailbox_of, message_summary
from .recording import Recorder, RecordingConfig, RecordingEnd

__all__ = [
    "MESSAGE_SUMMARY_TYPE",
    "DtmfReceiver",
    "Mailbox",
    "Recorder",
    "RecordingConfig",
    "RecordingEnd",
    "TelephoneEvent",
    "mailbox_of",
    "message_summary",
    "parse_telephone_event",
]
