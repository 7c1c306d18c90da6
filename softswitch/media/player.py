"""The asyncio adapter that plays an announcement over RTP: one UDP socket per call.

Rules:
- Thin: every decision (packets, deadlines, latching, when it ends) is `Playout`'s; this
  module binds a socket, arms one loop timer at a time with `loop.call_at` on the
  absolute deadline `Playout.get_timer()` gives (paced on the loop's clock, no drift),
  sends what `datagrams_to_send(now)` returns, and hands received datagrams back.
- Lifecycle, for the B2BUA:
    `player = await AnnouncementPlayer.open(host, ports)`   before the 200 OK: its port
        goes in the SDP (`LocalMedia(address=host, port=player.local_address[1])`);
    `player.play(media, announcement)`   once the ACK arrived (or at once: RFC 3264 lets
        the answerer send as soon as the answer is sent);
    `result = await player.wait()`   resolves when the announcement is over: send BYE;
    `player.stop()`   the caller hung up (BYE/CANCEL) or the call failed: the timer is
        cancelled, the socket closed, `wait()` resolves with STOPPED. Idempotent, never
        raises, safe before `play` and after the end.
  The socket is closed whenever the playback ends, however it ends.
- Ports: even ports from an `RtpPortAllocator` range (RFC 3550 §11: RTP on an even port,
  RTCP on the next odd one). We neither send nor read RTCP (RFC 3550 §6 makes it a
  SHOULD; an announcement lasts seconds), but the odd port is never given to another call,
  so it stays free. Ports are handed out round-robin from a random start so that a port
  just released is not reused at once (late packets of the previous call).
- Symmetric RTP: see `softswitch.media.playout` (latch once onto the source of the
  caller's first valid RTP packet). It only helps when the caller sends: answer sendrecv
  (`LocalMedia.answer_sendrecv`) to have compliant NAT'd callers do so.
- Sending never raises: ICMP errors (`error_received`, e.g. port unreachable after the
  caller's phone closed its socket) are counted, and playback goes on until its end or
  `stop()`; the SIP side decides when the call is over.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from softswitch.sip.flows import Address
from softswitch.transport.udp import address_from_socket

from .announcement import Announcement
from .playout import Playout, PlayoutState
from .rtp import RtpPacketizer
from .sdp import NegotiatedMedia

__all__ = [
    "DEFAULT_TAIL",
    "AnnouncementPlayer",
    "PlaybackOutcome",
    "PlaybackResult",
    "RtpPortAllocator",
    "RtpPortsExhausted",
    "bind_rtp_endpoint",
]

ProtocolT = TypeVar("ProtocolT", bound=asyncio.DatagramProtocol)

DEFAULT_TAIL = 0.2
"""Seconds between the last packet's audio and the end of playback (then BYE): covers the
caller's jitter buffer (typically 40-120 ms) so the last word is heard."""


class RtpPortsExhausted(OSError):
    """Every even port of the range is in use."""


async def bind_rtp_endpoint(
    factory: Callable[[], ProtocolT], host: str, ports: RtpPortAllocator | None
) -> ProtocolT:
    """A datagram endpoint made by `factory`, bound on `host` at an even port of `ports`
    (None: an ephemeral port, tests). A port in use (or refused) is skipped for the next
    candidate; every media adapter binds its RTP sockets this way.

    Raises:
        RtpPortsExhausted: every port of the range is in use.
        OSError: `host` cannot be bound (not a local address).
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in ports.candidates() if ports is not None else [0]:
        try:
            _, protocol = await loop.create_datagram_endpoint(
                factory, local_addr=(host, port), family=family
            )
        except OSError as error:
            if ports is not None and error.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        if ports is not None:
            ports.taken(port)
        return protocol
    assert ports is not None
    raise RtpPortsExhausted(
        errno.EADDRINUSE, f"no free RTP port in {ports.first}-{ports.last} on {host}"
    )


class RtpPortAllocator:
    """Hands out even RTP ports from `first..last` (inclusive), round robin.

    One allocator per media address, shared by all calls. It does not track ports in use:
    the operating system does (a bound port fails with EADDRINUSE and the next is tried),
    so ports used by anything else on the machine are skipped too.
    """

    def __init__(self, first: int = 16384, last: int = 32767, *, start: int | None = None):
        first += first % 2  # RTP on even ports (RFC 3550 §11)
        if not 0 < first <= last <= 65535:
            raise ValueError(f"invalid RTP port range {first}-{last}")
        self.first = first
        self.last = last
        self._count = (last - first) // 2 + 1
        self._cursor = secrets.randbelow(self._count) if start is None else start % self._count

    @property
    def size(self) -> int:
        """How many ports the range holds."""
        return self._count

    def candidates(self) -> list[int]:
        """Every port of the range once, starting at the cursor."""
        return [
            self.first + 2 * ((self._cursor + step) % self._count) for step in range(self._count)
        ]

    def taken(self, port: int) -> None:
        """`port` was bound: the next search starts after it."""
        self._cursor = ((port - self.first) // 2 + 1) % self._count


class PlaybackOutcome(enum.Enum):
    COMPLETED = "completed"
    """The whole announcement was played: send BYE."""
    STOPPED = "stopped"
    """`stop()` was called (the caller hung up, or the call ended otherwise)."""
    FAILED = "failed"
    """The socket was lost (an operating system error); the call should end."""


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """How a playback ended, with its counters (for logs and metrics)."""

    outcome: PlaybackOutcome
    packets_sent: int
    packets_received: int
    latched_remote: Address | None
    """The caller's RTP source address when we latched onto it, else None."""
    send_errors: int


class AnnouncementPlayer(asyncio.DatagramProtocol):
    """One call's RTP socket; create it with `await AnnouncementPlayer.open(...)`."""

    def __init__(self, *, tail: float = DEFAULT_TAIL) -> None:
        self._loop = asyncio.get_running_loop()
        self._tail = tail
        self._transport: asyncio.DatagramTransport | None = None
        self._playout: Playout | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._send_errors = 0
        self.done: asyncio.Future[PlaybackResult] = self._loop.create_future()
        """Resolves (never fails) with the `PlaybackResult` when the playback ends."""

    @classmethod
    async def open(
        cls,
        host: str,
        ports: RtpPortAllocator | None = None,
        *,
        tail: float = DEFAULT_TAIL,
    ) -> AnnouncementPlayer:
        """Bind a UDP socket on `host` (the switch's media address, an IP literal).

        Args:
            host: where to bind; also what goes in the SDP.
            ports: the range to take an even port from; None binds an ephemeral port
                (tests).
            tail: see `DEFAULT_TAIL`.

        Raises:
            RtpPortsExhausted: every port of the range is in use.
            OSError: `host` cannot be bound (not a local address).
        """
        return await bind_rtp_endpoint(lambda: cls(tail=tail), host, ports)

    # -- the B2BUA's interface ---------------------------------------------------------
    @property
    def local_address(self) -> Address:
        """The bound `(host, port)`: the port goes in the SDP's m= line."""
        if self._transport is None:
            raise RuntimeError("RTP socket is closed")
        return address_from_socket(self._transport.get_extra_info("sockname"))

    @property
    def playing(self) -> bool:
        return self._playout is not None and not self.done.done()

    def play(
        self,
        media: NegotiatedMedia,
        announcement: Announcement | bytes,
        *,
        packetizer: RtpPacketizer | None = None,
    ) -> None:
        """Start sending `announcement` as negotiated; the first packet leaves now.

        Args:
            media: from `answer_offer(...).media` or `accept_answer(...)`.
            announcement: an `Announcement` (encoded in `media.codec` here), or a payload
                already encoded in `media.codec`.
            packetizer: injectable for tests (fixed SSRC/sequence/timestamp).

        Does nothing once the player was stopped (the caller hung up before the ACK).

        Raises:
            RuntimeError: `play` was already called.
        """
        if self.done.done():
            return
        if self._playout is not None:
            raise RuntimeError("play() was already called on this player")
        payload = (
            announcement.payload(media.codec)
            if isinstance(announcement, Announcement)
            else announcement
        )
        self._playout = Playout(
            media, payload, start=self._loop.time(), tail=self._tail, packetizer=packetizer
        )
        self._on_timer()

    async def wait(self) -> PlaybackResult:
        """Wait for the end of playback (cancelling the waiter does not stop playback)."""
        return await asyncio.shield(self.done)

    def stop(self) -> None:
        """End playback now and close the socket; `done` resolves with STOPPED."""
        self._finish(PlaybackOutcome.STOPPED)

    # -- pacing ------------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._timer = None
        playout = self._playout
        if playout is None or self.done.done():
            return
        transport = self._transport
        for data, remote in playout.datagrams_to_send(self._loop.time()):
            if transport is not None:
                transport.sendto(data, remote)
        deadline = playout.get_timer()
        if deadline is None or playout.state is PlayoutState.FINISHED:
            self._finish(PlaybackOutcome.COMPLETED)
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _finish(self, outcome: PlaybackOutcome) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        playout = self._playout
        if playout is not None:
            playout.stop()
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
        if not self.done.done():
            self.done.set_result(
                PlaybackResult(
                    outcome=outcome,
                    packets_sent=playout.packets_sent if playout else 0,
                    packets_received=playout.packets_received if playout else 0,
                    latched_remote=playout.remote if playout and playout.latched else None,
                    send_errors=self._send_errors,
                )
            )

    # -- asyncio.DatagramProtocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # Before `play` there is no stream to count for or latch: dropped.
        if self._playout is not None:
            self._playout.receive_datagram(data, address_from_socket(addr))

    def error_received(self, exc: Exception) -> None:
        self._send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if exc is not None:
            self._finish(PlaybackOutcome.FAILED)
        elif not self.done.done():
            self._finish(PlaybackOutcome.STOPPED)
