"""One announcement stream as a sans-I/O state machine: what to send, when, and to whom.

Rules:
- Time is always an argument (`now`, seconds on the caller's monotonic clock), as in
  aioquic's `QuicConnection`: the adapter asks `get_timer()` for the next deadline, calls
  `datagrams_to_send(now)` when it is reached, and hands every received datagram to
  `receive_datagram(data, source)`. This module never reads a clock or touches a socket.
- Packet `i` is due at `start + i * ptime`, computed from the start each time (absolute
  deadlines: no drift accumulates however late a timer fires). A late adapter gets all the
  packets that became due at once; their timestamps stay correct (RFC 3550 §5.1), so the
  receiver's jitter buffer sorts it out.
- The stream ends `tail` seconds after the last packet's audio has been played out
  (`start + count * ptime + tail`): the B2BUA sends BYE only then, so the caller's jitter
  buffer has emptied and the last word is heard.
- When the negotiated media says not to send (the caller holds, or refused media), the
  stream sends nothing but still lasts the announcement's duration.
- Symmetric RTP (RFC 4961; the "latching" of NAT traversal practice, cf. RFC 7362 §4):
  the first valid RTP packet received fixes the destination to its source address, if
  that differs from the SDP's. A caller behind NAT advertises a private address in SDP;
  the address its packets really come from is the one that reaches it. We latch once and
  only on a packet that parses as RTP version 2 (RTCP and noise are counted, ignored),
  so a stray packet later in the call cannot redirect the stream (the "RTP bleed"
  hijack works on switches that re-latch on any packet).
"""

from __future__ import annotations

import enum

from softswitch.sip.flows import Address

from .rtp import RtpError, RtpPacket, RtpPacketizer, is_rtcp
from .sdp import NegotiatedMedia

__all__ = ["Playout", "PlayoutState"]


class PlayoutState(enum.Enum):
    PLAYING = "playing"
    FINISHED = "finished"


class Playout:
    """The outgoing stream of one announcement.

    Args:
        media: the negotiated codec, payload type, destination and direction.
        payload: the announcement encoded in `media.codec` (one octet per sample).
        start: when packet 0 is due, on the adapter's clock.
        tail: seconds to wait after the last packet's audio before finishing.
        packetizer: injectable for tests; by default a new stream with random SSRC,
            sequence number and timestamp (RFC 3550 §5.1).
    """

    def __init__(
        self,
        media: NegotiatedMedia,
        payload: bytes,
        *,
        start: float,
        tail: float = 0.0,
        packetizer: RtpPacketizer | None = None,
    ) -> None:
        samples_per_packet = media.codec.clock_rate * media.ptime // 1000
        if packetizer is None:
            packetizer = RtpPacketizer(
                media.payload_type,
                samples_per_packet=samples_per_packet,
                silence=media.codec.silence,
            )
        self._packets = packetizer.packetize(payload)
        self._interval = media.ptime / 1000
        self._start = start
        self._end = start + len(self._packets) * self._interval + tail
        self._next = 0
        self._send = media.send
        self.state = PlayoutState.PLAYING
        self.remote: Address = media.remote
        """Where packets go: the SDP's address until latched, then the latched source."""
        self.latched = False
        self.packets_sent = 0
        self.packets_received = 0
        """Valid RTP packets from the caller (counted, then dropped)."""
        self.rtcp_received = 0
        self.invalid_received = 0

    @property
    def packet_count(self) -> int:
        """Packets in the whole announcement (sent or, when not sending, skipped)."""
        return len(self._packets)

    @property
    def end(self) -> float:
        """When the stream finishes, on the adapter's clock."""
        return self._end

    def get_timer(self) -> float | None:
        """The next deadline: the next packet's, or the end; None once finished."""
        if self.state is PlayoutState.FINISHED:
            return None
        if self._send and self._next < len(self._packets):
            return self._start + self._next * self._interval
        return self._end  # all sent, or nothing to send: wake only at the end

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Every packet due at `now`, in order, with its destination.

        Finishes the stream (`state` FINISHED) once `now` has reached `end`.
        """
        if self.state is PlayoutState.FINISHED:
            return []
        due: list[tuple[bytes, Address]] = []
        # A deadline "at" now counts as reached: timers fire at, never before, their time.
        while (
            self._send
            and self._next < len(self._packets)
            and self._start + self._next * self._interval <= now + 1e-9
        ):
            due.append((self._packets[self._next], self.remote))
            self._next += 1
        self.packets_sent += len(due)
        if (self._next == len(self._packets) or not self._send) and now + 1e-9 >= self._end:
            self.state = PlayoutState.FINISHED
        return due

    def receive_datagram(self, data: bytes, source: Address) -> None:
        """Count what the caller sends; latch onto its source once (symmetric RTP)."""
        if is_rtcp(data):
            self.rtcp_received += 1  # RTCP multiplexed on the RTP port (RFC 5761 §4)
            return
        try:
            RtpPacket.parse(data)
        except RtpError:
            self.invalid_received += 1
            return
        self.packets_received += 1
        if not self.latched:
            self.latched = True
            self.remote = source

    def stop(self) -> None:
        """End the stream now (the caller hung up): nothing more is sent."""
        self.state = PlayoutState.FINISHED
