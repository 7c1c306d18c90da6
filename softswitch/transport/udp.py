"""The UDP socket adapter (RFC 3261 §18: one datagram is one message).

Rules:
- One `UdpTransport` owns one bound datagram socket. Each received datagram is handed,
  whole and unparsed, to the listener with the sender's `(host, port)`; datagram
  boundaries are kept (the sans-I/O guide's datagram case).
- `send(data, remote)` writes one datagram. Sending never raises: the operating system's
  errors (ICMP port unreachable, a full buffer) arrive later through `error_received` and
  are handed to the listener, which counts them. RFC 3261 §18.4 lets the core ignore them:
  a lost request is retransmitted by its transaction, a lost response by the peer's.
- The socket asks for large buffers (`SOCKET_BUFFER_SIZE`): bursts wait in the kernel
  instead of being dropped.
- No protocol decision here: not which address a response goes to, not whether a message
  is too big for UDP (RFC 3261 §18.1.1 is the endpoint's rule).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol, cast

from softswitch.sip.flows import Address

__all__ = ["SOCKET_BUFFER_SIZE", "DatagramListener", "UdpTransport", "address_from_socket"]

SOCKET_BUFFER_SIZE = 2 * 1024 * 1024
"""Octets asked for the socket's receive and send buffers (Linux caps them at
net.core.rmem_max / wmem_max and counts its own overhead in them). One UDP socket takes
every peer's traffic: the default (about 200 KiB, some 200 datagrams once the kernel's
overhead is counted) overflows in a pause of a few milliseconds at 1,000 calls/s (7,000
datagrams a second in), and each datagram lost costs a retransmission (T1 = 500 ms) or a
failed call. Much larger is worse under overload: a datagram that waited in a 4 MiB
buffer for a second is answered after the peer already retransmitted it (measured: at
900 calls/s, 14,000 retransmissions and p50 setup 1 s with 4 MiB, before the overload
gate). 2 MiB holds some 200 ms of traffic at 1,000 calls/s: with the overload gate
answering its 503s statelessly, a flood's bursts wait there instead of being dropped
(measured with the flood benchmark at 3,000 INVITEs/s against a switch clean at 1,100:
with 1 MiB the kernel dropped 1,197 datagrams, SIPp fell behind retransmitting and the
switch admitted 390 calls/s; with 2 MiB 53 drops, 16 retransmissions and 731 calls/s
admitted, OPTIONS p99 274 ms; with 4 MiB 746 calls/s but 2,519 retransmissions and
OPTIONS p99 512 ms)."""


def address_from_socket(socket_address: Any) -> Address:
    """`(host, port)` from what the socket layer reports.

    IPv6 socket addresses are `(host, port, flowinfo, scope_id)`; the core's `Address` is
    always the pair.
    """
    return (str(socket_address[0]), int(socket_address[1]))


class DatagramListener(Protocol):
    """Who receives what a `UdpTransport` reads (the driver). Must not raise."""

    def datagram_received(self, data: bytes, remote: Address) -> None: ...

    def datagram_error(self, error: Exception) -> None: ...


class UdpTransport(asyncio.DatagramProtocol):
    """One bound UDP socket; create it with `await UdpTransport.bind(...)`."""

    def __init__(self, listener: DatagramListener) -> None:
        self._listener = listener
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(cls, host: str, port: int, listener: DatagramListener) -> UdpTransport:
        """Bind a UDP socket to `host:port` (port 0: an ephemeral port).

        Raises:
            OSError: the address cannot be bound (in use, not a local address).
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(listener), local_addr=(host, port), family=family
        )
        bound = transport.get_extra_info("socket")
        if bound is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    bound.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_SIZE)
                except OSError:
                    pass  # the default buffer then; the kernel caps it anyway
        return protocol

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise RuntimeError("UDP transport is not bound")
        return address_from_socket(self._transport.get_extra_info("sockname"))

    @property
    def bound_socket(self) -> Any:
        """The bound socket (uvloop's pseudo-socket: `getsockopt` works) or None before
        binding; read-only uses only, such as the overload sampler's receive-queue
        gauge (`softswitch.loop_lag`)."""
        return None if self._transport is None else self._transport.get_extra_info("socket")

    # -- asyncio.DatagramProtocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._listener.datagram_received(data, address_from_socket(addr))

    def error_received(self, exc: Exception) -> None:
        self._listener.datagram_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # -- output ------------------------------------------------------------------------
    def send(self, data: bytes, remote: Address) -> None:
        """Write one datagram to `remote`; dropped silently once the socket is closed."""
        transport = self._transport
        if transport is not None:
            transport.sendto(data, remote)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
