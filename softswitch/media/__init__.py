"""Media for the switch's own announcements (issue 5): SDP offer/answer, G.711, RTP.

Rules:
- Sans-I/O cores, standard library only: `sdp` (RFC 4566 parsing, RFC 3264 offer/answer),
  `g711` (ITU-T G.711 µ-law/A-law tables), `rtp` (RFC 3550 packets and packetizer),
  `playout` (one stream's pacing and symmetric-RTP latching, time as an argument).
- `wav` and `announcement` read the announcement files at start-up (the only file I/O).
- `player` is the thin asyncio adapter: one UDP socket per call, timers on the loop.
- The B2BUA uses it in this order: `AnnouncementLibrary.load()` at start;
  per call `AnnouncementPlayer.open` -> `answer_offer` (or `build_offer` then
  `accept_answer` for a late offer) -> `play` -> `await wait()` -> BYE, or `stop()`
  when the caller hangs up. `SdpError.status_code` is the final response to an INVITE
  whose offer cannot be answered (400 malformed, 488 nothing acceptable).
"""

from .announcement import (
    Announcement,
    AnnouncementKind,
    AnnouncementLibrary,
    Language,
    load_announcement,
)
from .g711 import Codec
from .player import (
    AnnouncementPlayer,
    PlaybackOutcome,
    PlaybackResult,
    RtpPortAllocator,
    RtpPortsExhausted,
)
from .sdp import (
    Answer,
    Direction,
    LocalMedia,
    NegotiatedMedia,
    SdpError,
    SdpNotAcceptable,
    SdpParseError,
    accept_answer,
    answer_offer,
    build_offer,
)
from .wav import WavFormatError

__all__ = [
    "Announcement",
    "AnnouncementKind",
    "AnnouncementLibrary",
    "AnnouncementPlayer",
    "Answer",
    "Codec",
    "Direction",
    "Language",
    "LocalMedia",
    "NegotiatedMedia",
    "PlaybackOutcome",
    "PlaybackResult",
    "RtpPortAllocator",
    "RtpPortsExhausted",
    "SdpError",
    "SdpNotAcceptable",
    "SdpParseError",
    "WavFormatError",
    "accept_answer",
    "answer_offer",
    "build_offer",
    "load_announcement",
]
