"""One voicemail message: the caller's RTP (PCMU/PCMA) to linear PCM, and when to stop.

Rules:
- Sans-I/O: `receive_datagram(data, now)`, `get_timer()`, `handle_timer(now)`,
  `stop(now)`; the adapter owns the socket and the loop timer (STYLE.md principle 6).
- Only RTP of the negotiated payload type is recorded (RFC 3551 §6: 0 PCMU, 8 PCMA,
  or the number the offer mapped); RTCP (RFC 5761 §4), other payload types (comfort
  noise, telephone-event) and malformed datagrams are counted and dropped. The first
  recorded packet fixes the SSRC (RFC 3550 §8.2: another SSRC is another source;
  ignored) and the base timestamp.
- Samples are placed by RTP timestamp (RFC 3550 §5.1, 8000 Hz for G.711, RFC 3551
  §4.5.14), not by arrival: a lost packet leaves silence of its length, a late packet
  fills its place, a duplicate overwrites itself. A timestamp more than half the
  32-bit space behind the base is older than the message: dropped.
- The recording ends, once, with a `RecordingEnd`:
  HANG_UP by `stop(now)` (the caller's BYE or CANCEL, or the call failing);
  MAX_LENGTH when `max_length` seconds of audio are held (or of wall time passed since
  the start, whichever first: a caller who sends nothing is not recorded forever);
  SILENCE when no voiced packet came for `silence_timeout` seconds (since the start,
  or since the last voiced packet). A packet is voiced when the mean absolute value of
  its decoded samples reaches `voice_level` (about -36 dBFS by default).
- `pcm()` is the message: little-endian 16-bit mono at 8000 Hz, at most `max_length`
  seconds; after SILENCE the trailing silence is cut, keeping `silence_tail` seconds
  after the last voiced packet. `has_voice` is False when no packet was ever voiced:
  such a message is not worth keeping (the adapter discards it).
"""

from __future__ import annotations

import enum
import sys
from array import array
from collections import Counter
from dataclasses import dataclass

from softswitch.media.g711 import Codec
from softswitch.media.rtp import RtpError, RtpPacket, is_rtcp

__all__ = ["SAMPLE_RATE", "Recorder", "RecordingConfig", "RecordingEnd"]

SAMPLE_RATE = 8000
"""G.711's RTP clock rate (RFC 3551 §4.5.14)."""


class RecordingEnd(enum.Enum):
    HANG_UP = "hang_up"
    SILENCE = "silence"
    MAX_LENGTH = "max_length"


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """When a recording ends (module rules)."""

    max_length: float = 120.0
    """Seconds of audio at most."""
    silence_timeout: float = 5.0
    """Seconds without a voiced packet that end the message."""
    voice_level: int = 500
    """Mean absolute 16-bit sample value from which a packet is voiced (~ -36 dBFS)."""
    silence_tail: float = 0.5
    """Seconds kept after the last voiced packet when silence ended the message."""


class Recorder:
    """One message being recorded (see the module rules).

    Args:
        codec: the negotiated G.711 law.
        payload_type: the negotiated RTP payload type of that codec.
        start: `now` when recording starts (after the greeting).
        config: when to stop.
    """

    def __init__(
        self,
        codec: Codec,
        payload_type: int,
        start: float,
        config: RecordingConfig | None = None,
    ) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.config = config if config is not None else RecordingConfig()
        self.start = start
        self.counters: Counter[str] = Counter()
        self.ended: RecordingEnd | None = None
        self._pcm = bytearray()
        self._max_octets = 2 * int(self.config.max_length * SAMPLE_RATE)
        self._ssrc: int | None = None
        self._base: int = 0
        self._last_voice_time = start
        self._last_voice_end = 0
        """Octet offset in `_pcm` where the last voiced packet ends."""
        self._voiced = False

    # ------------------------------------------------------------------ outputs
    @property
    def has_voice(self) -> bool:
        return self._voiced

    @property
    def duration(self) -> float:
        """Seconds of audio `pcm()` returns now."""
        return len(self.pcm()) / 2 / SAMPLE_RATE

    def pcm(self) -> bytes:
        """The message's samples (module rules: trailing silence cut after SILENCE)."""
        if self.ended is RecordingEnd.SILENCE:
            keep = self._last_voice_end + 2 * int(self.config.silence_tail * SAMPLE_RATE)
            return bytes(self._pcm[: min(keep, len(self._pcm))])
        return bytes(self._pcm)

    def get_timer(self) -> float | None:
        """The next time `handle_timer` must run, None once ended."""
        if self.ended is not None:
            return None
        return min(
            self.start + self.config.max_length,
            self._last_voice_time + self.config.silence_timeout,
        )

    # ------------------------------------------------------------------ inputs
    def stop(self, now: float) -> None:
        """The call ended (BYE, CANCEL, failure): HANG_UP unless already ended."""
        if self.ended is None:
            self.ended = RecordingEnd.HANG_UP

    def handle_timer(self, now: float) -> None:
        """End by MAX_LENGTH or SILENCE when their time has come."""
        if self.ended is not None:
            return
        if now >= self.start + self.config.max_length:
            self.ended = RecordingEnd.MAX_LENGTH
        elif now >= self._last_voice_time + self.config.silence_timeout:
            self.ended = RecordingEnd.SILENCE

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One datagram from the caller's RTP port."""
        if self.ended is not None:
            self.counters["after_end"] += 1
            return
        if is_rtcp(data):
            self.counters["rtcp"] += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.counters["malformed"] += 1
            return
        if packet.payload_type != self.payload_type:
            self.counters["other_payload_type"] += 1
            return
        self.receive_packet(packet, now)

    def receive_packet(self, packet: RtpPacket, now: float) -> None:
        """One RTP packet of the negotiated payload type (already parsed)."""
        if self.ended is not None:
            return
        if self._ssrc is None:
            self._ssrc, self._base = packet.ssrc, packet.timestamp
        elif packet.ssrc != self._ssrc:
            self.counters["other_ssrc"] += 1
            return
        offset_samples = (packet.timestamp - self._base) % 2**32
        if offset_samples >= 2**31:
            self.counters["too_old"] += 1  # module rules: before the first packet
            return
        offset = 2 * offset_samples
        if offset >= self._max_octets:
            self.counters["beyond_max_length"] += 1
            self.ended = RecordingEnd.MAX_LENGTH
            return
        samples = self.codec.decode(packet.payload)[: self._max_octets - offset]
        if offset > len(self._pcm):
            self._pcm.extend(bytes(offset - len(self._pcm)))  # a gap: silence
        self._pcm[offset : offset + len(samples)] = samples
        self.counters["packets"] += 1
        if _mean_level(samples) >= self.config.voice_level:
            self._voiced = True
            self._last_voice_time = now
            self._last_voice_end = max(self._last_voice_end, offset + len(samples))
        if len(self._pcm) >= self._max_octets:
            self.ended = RecordingEnd.MAX_LENGTH


def _mean_level(pcm: bytes) -> float:
    """Mean absolute sample value of little-endian 16-bit PCM."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return sum(abs(sample) for sample in samples) / len(samples)
