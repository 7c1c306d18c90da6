"""The UDP socket adapter (RFC 3261 §18: one datagram is one message).

Rules:
- One `UdpTransport` owns one bound datagram socket. Each received datagram is handed,
  whole and unparsed, to the listener with the sender's `(host, port)`; datagram
  boundaries are kept (the sans-I/O guide's datagram case).
- `send(data, remote)` writes one datagram. Sending never raises: the operating system's
  errors (ICMP port unreachable, a full buffer) arrive later through `error_received` and
  are handed to the listener, which counts them. RFC 3261 §18.4 lets the core ignore them:
  a lost request is retransmitted by its transaction, a lost response by the peer's.
- No protocol decision here: not which address a response goes to, not whether a message
  is too big for UDP (RFC 3261 §18.1.1 is the endpoint's rule).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol, cast

from softswitch.sip.flows import Address

__all__ = ["DatagramListener", "UdpTransport", "address_from_socket"]


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
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(listener), local_addr=(host, port), family=family
        )
        return protocol

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise RuntimeError("UDP transport is not bound")
        return address_from_socket(self._transport.get_extra_info("sockname"))

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
