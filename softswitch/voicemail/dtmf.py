"""RFC 4733 telephone-event payloads (DTMF in RTP) to digits, each event once.

Rules:
- The payload (RFC 4733 §2.3) is 4 octets: event (0-15 are the DTMF keys 0-9, *, #,
  A-D, §3.2), the E (end) bit, a reserved bit, a 6-bit volume and a 16-bit duration.
  Anything shorter raises `ValueError` with the reason.
- One key press is sent as several packets that share one RTP timestamp (§2.5.1.2:
  the event's start), the last three usually retransmitted with E set (§2.5.1.4).
  `DtmfReceiver` reports a digit once per (SSRC, timestamp), on its first packet
  (start or end): later packets of the same event and the end retransmissions are
  swallowed. Events above 15 (tones, §3.2 lists only DTMF as mandatory) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from softswitch.media.rtp import RtpPacket

__all__ = ["DTMF_KEYS", "DtmfReceiver", "TelephoneEvent", "parse_telephone_event"]

DTMF_KEYS = "0123456789*#ABCD"
"""RFC 4733 §3.2 table 7: event codes 0-15."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 payload."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def key(self) -> str | None:
        """The DTMF key, or None for a non-DTMF event."""
        return DTMF_KEYS[self.event] if self.event < len(DTMF_KEYS) else None


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse a telephone-event payload (RFC 4733 §2.3).

    Raises:
        ValueError: shorter than 4 octets.
    """
    if len(payload) < 4:
        raise ValueError(f"telephone-event payload has {len(payload)} octets, needs 4")
    return TelephoneEvent(
        event=payload[0],
        end=bool(payload[1] & 0x80),
        volume=payload[1] & 0x3F,
        duration=int.from_bytes(payload[2:4], "big"),
    )


class DtmfReceiver:
    """Digits from a stream's telephone-event packets (module rules)."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._last: tuple[int, int] | None = None

    def receive(self, packet: RtpPacket) -> str | None:
        """The key this packet starts, or None (another payload type, a repeat, a
        malformed payload or a non-DTMF event)."""
        if packet.payload_type != self.payload_type:
            return None
        try:
            event = parse_telephone_event(packet.payload)
        except ValueError:
            return None
        identity = (packet.ssrc, packet.timestamp)
        if identity == self._last:
            return None
        self._last = identity
        return event.key
