"""RTP packets (RFC 3550): parse, serialise, and cut a G.711 payload into 20 ms packets.

Rules:
- Sans-I/O: bytes in, bytes out; no sockets, no clock. Randomness only for the initial
  sequence number, timestamp and SSRC, and injectable for tests.
- `RtpPacket.parse` accepts exactly what RFC 3550 §5.1 allows (version 2, padding, CSRC
  list, header extension §5.3.1) and raises `RtpError` (a `ValueError`) with a precise
  message for anything else; nothing else escapes it for any input bytes.
- `RtpPacketizer` keeps one stream's state (RFC 3550 §5.1): the SSRC and the initial
  sequence number and timestamp are random (§5.1: "SHOULD be random (unpredictable)");
  each packet adds 1 to the sequence number (mod 2^16) and its sample count to the
  timestamp (mod 2^32): 160 for 20 ms of 8 kHz G.711. The marker bit is set on the first
  packet of each talkspurt (RFC 3551 §4.1), so on the first packet of an announcement.
- The last packet of a talkspurt is padded with the codec's silence to a full packet, so
  every packet carries the same duration and timestamps stay a multiple of 160 apart.
- RTCP on the same port (RFC 5761 §4: second octet 200..204 after masking the marker,
  i.e. "payload types" 72..76) is recognised by `is_rtcp` and never parsed as RTP.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "RTP_VERSION",
    "RTP_HEADER_SIZE",
    "RtpError",
    "RtpPacket",
    "RtpPacketizer",
    "is_rtcp",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
"""The fixed header (RFC 3550 §5.1), without CSRCs or extension."""

_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """Bytes that are not a valid RTP packet (RFC 3550 §5.1), or invalid packet fields."""


def is_rtcp(data: bytes) -> bool:
    """True when a datagram multiplexed on the RTP port is RTCP (RFC 5761 §4).

    RTCP packet types 192..223 fall in the second octet's range that RTP payload types
    64..95 would occupy with the marker set; RFC 5761 §4 reserves that range for this test.
    """
    return len(data) >= 2 and (data[0] >> 6) == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    Attributes:
        payload_type: 7 bits (0 PCMU, 8 PCMA; RFC 3551 §6).
        sequence_number: 16 bits, +1 per packet.
        timestamp: 32 bits, the sampling instant of the first octet, in clock-rate units.
        ssrc: 32 bits, the synchronisation source.
        marker: the M bit; for audio, the first packet of a talkspurt (RFC 3551 §4.1).
        payload: the codec's octets (without padding).
        csrcs: contributing sources (at most 15).
        extension: `(profile, data)` of a header extension (RFC 3550 §5.3.1), data a
            multiple of 4 octets; None without one.
        padding: octets of padding after the payload in the parsed packet (the last one
            included), 0 when the P bit is clear. `serialize` writes none.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram.

        Raises:
            RtpError: not RTP version 2, or truncated/inconsistent (the message says how).
        """
        if len(data) < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet length is less than {RTP_HEADER_SIZE} bytes")
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP packet has invalid version {version}")
        if is_rtcp(data):
            raise RtpError("datagram is RTCP (RFC 5761 §4), not RTP")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        offset = RTP_HEADER_SIZE + 4 * csrc_count
        if len(data) < offset:
            raise RtpError("RTP packet has truncated CSRC")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE)
        extension: tuple[int, bytes] | None = None
        if has_extension:
            if len(data) < offset + 4:
                raise RtpError("RTP packet has truncated extension profile / length")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if len(data) < offset + 4 * words:
                raise RtpError("RTP packet has truncated extension value")
            extension = (profile, bytes(data[offset : offset + 4 * words]))
            offset += 4 * words
        end = len(data)
        padding = 0
        if has_padding:
            padding = data[-1]
            # RFC 3550 §5.1: the last octet counts the padding, itself included.
            if padding == 0 or end - padding < offset:
                raise RtpError("RTP packet padding length is invalid")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            payload=bytes(data[offset:end]),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """The packet on the wire (RFC 3550 §5.1), without padding.

        Raises:
            RtpError: a field is out of range.
        """
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} is not 7 bits")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise RtpError(f"sequence number {self.sequence_number} is not 16 bits")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise RtpError("timestamp and SSRC are 32 bits")
        if len(self.csrcs) > 15:
            raise RtpError("at most 15 CSRCs")
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrcs)}I", *self.csrcs),
        ]
        if self.extension is not None:
            profile, value = self.extension
            if len(value) % 4 or len(value) > 4 * 0xFFFF:
                raise RtpError("extension data must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", profile, len(value) // 4))
            parts.append(value)
        parts.append(self.payload)
        return b"".join(parts)


def _random_bits(bits: int) -> int:
    return secrets.randbits(bits)


class RtpPacketizer:
    """One outgoing RTP stream: cuts payloads into fixed-duration packets.

    Args:
        payload_type: 0 (PCMU) or 8 (PCMA) for our announcements.
        samples_per_packet: octets (= samples, for G.711) per packet; 160 is 20 ms at 8 kHz.
        silence: the octet that pads a short last packet (the codec's zero sample).
        ssrc, sequence_number, timestamp: initial values; random when None (RFC 3550 §5.1,
            §8: the SSRC is chosen randomly).
        random_bits: the source of randomness, `secrets.randbits` by default.
    """

    def __init__(
        self,
        payload_type: int,
        *,
        samples_per_packet: int = 160,
        silence: int = 0xFF,
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
        random_bits: Callable[[int], int] = _random_bits,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise RtpError(f"payload type {payload_type} is not 7 bits")
        if samples_per_packet <= 0:
            raise RtpError("samples_per_packet must be positive")
        self.payload_type = payload_type
        self.samples_per_packet = samples_per_packet
        self.silence = silence
        self.ssrc = random_bits(32) if ssrc is None else ssrc
        self.sequence_number = random_bits(16) if sequence_number is None else sequence_number
        self.timestamp = random_bits(32) if timestamp is None else timestamp

    def talkspurt(self, payload: bytes) -> Iterator[RtpPacket]:
        """Packets for one talkspurt; the first carries the marker bit (RFC 3551 §4.1).

        After the generator is exhausted, `sequence_number` and `timestamp` are the next
        packet's, so a later talkspurt continues the stream.
        """
        size = self.samples_per_packet
        for start in range(0, len(payload), size):
            chunk = payload[start : start + size]
            if len(chunk) < size:
                chunk += bytes([self.silence]) * (size - len(chunk))
            yield RtpPacket(
                payload_type=self.payload_type,
                sequence_number=self.sequence_number,
                timestamp=self.timestamp,
                ssrc=self.ssrc,
                marker=start == 0,
                payload=chunk,
            )
            # RFC 3550 §5.1: the sequence number increments by one per packet; the
            # timestamp by the sampling instants the packet covers. Both wrap.
            self.sequence_number = (self.sequence_number + 1) & 0xFFFF
            self.timestamp = (self.timestamp + size) & 0xFFFFFFFF

    def packetize(self, payload: bytes) -> list[bytes]:
        """`talkspurt(payload)` serialised: the datagrams to send, in order."""
        return [packet.serialize() for packet in self.talkspurt(payload)]
