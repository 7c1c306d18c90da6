"""The TCP socket adapter: one listening socket plus inbound and outgoing connections.

Rules:
- Every connection, accepted or opened by us, gets a connection id from one counter and
  is announced to the listener with its remote `(host, port)`; bytes read are handed on
  unframed (the endpoint's `StreamFramer` cuts messages, RFC 3261 §18.3).
- Connections are kept by id and by remote address, so that a message for
  `Flow(TCP, remote, None)` reuses a connection to that address whoever opened it
  (RFC 3261 §18.1.1 and §18.2.2: send on an existing connection when there is one).
  Only when there is none does `send_to_address` open one; messages for an address that
  is still connecting wait in order and are written once it is up.
- A connection that cannot be opened within `connect_timeout` is reported to the
  listener (`connection_failed`) with the number of messages dropped.
- A connection is closed when the endpoint asks (`close_connection`), when the peer
  closes it, or when the peer stops reading and more than `max_write_buffer` octets wait
  to be written (a slow reader must not make us buffer without end).
- No protocol decision here: no framing, no idle timeout, no choice of flow.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from typing import Protocol, cast

from softswitch.sip.flows import Address

from .udp import address_from_socket

__all__ = ["StreamListener", "TcpConnection", "TcpTransport"]


class StreamListener(Protocol):
    """Who receives what a `TcpTransport` reads (the driver). Must not raise."""

    def connection_opened(self, connection_id: int, remote: Address) -> None: ...

    def stream_data_received(self, connection_id: int, data: bytes) -> None: ...

    def connection_closed(self, connection_id: int) -> None: ...

    def connection_failed(self, remote: Address, error: Exception, dropped: int) -> None: ...

    def write_buffer_overflow(self, connection_id: int) -> None: ...


class TcpConnection(asyncio.Protocol):
    """One TCP connection; created by the event loop for `TcpTransport`."""

    def __init__(self, owner: TcpTransport, target: Address | None) -> None:
        self._owner = owner
        # For a connection we open, the address we were asked for, so that the
        # connection is found again under exactly that key.
        self._target = target
        self.connection_id = 0
        self.remote: Address = ("", 0)
        self.transport: asyncio.Transport | None = None

    @property
    def outgoing(self) -> bool:
        return self._target is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._target is not None:
            self.remote = self._target
        else:
            self.remote = address_from_socket(transport.get_extra_info("peername"))
        self._owner._connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._owner._listener.stream_data_received(self.connection_id, data)

    def eof_received(self) -> bool:
        # The peer closed its side: SIP has no use for a half-open connection.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._owner._connection_lost(self)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self._owner.max_write_buffer:
            self._owner._listener.write_buffer_overflow(self.connection_id)
            transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpTransport:
    """The TCP side of one SIP address: a server socket and every connection."""

    def __init__(
        self,
        listener: StreamListener,
        *,
        connect_timeout: float = 10.0,
        max_write_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        self._listener = listener
        self.connect_timeout = connect_timeout
        self.max_write_buffer = max_write_buffer
        self._server: asyncio.Server | None = None
        self._connection_ids = itertools.count(1)
        self._connections: dict[int, TcpConnection] = {}
        self._by_remote: dict[Address, list[int]] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int) -> None:
        """Listen on `host:port`.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = await loop.create_server(
            lambda: TcpConnection(self, None), host, port, family=family, reuse_address=True
        )

    @property
    def local_address(self) -> Address:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("TCP transport is not listening")
        return address_from_socket(self._server.sockets[0].getsockname())

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def connection_ids(self) -> Iterator[int]:
        return iter(list(self._connections))

    def connection_for(self, remote: Address) -> int | None:
        """The newest open connection to `remote`, if any."""
        ids = self._by_remote.get(remote)
        return ids[-1] if ids else None

    def remote_of(self, connection_id: int) -> Address | None:
        connection = self._connections.get(connection_id)
        return None if connection is None else connection.remote

    # -- output ------------------------------------------------------------------------
    def send(self, data: bytes, connection_id: int) -> bool:
        """Write on one connection; False when that connection no longer exists."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.write(data)
        return True

    def send_to_address(self, data: bytes, remote: Address) -> None:
        """Write to `remote` on a connection to it, opening one when there is none."""
        connection_id = self.connection_for(remote)
        if connection_id is not None:
            self._connections[connection_id].write(data)
            return
        waiting = self._connecting.get(remote)
        if waiting is not None:
            waiting.append(data)
            return
        self._connecting[remote] = [data]
        task = asyncio.get_running_loop().create_task(self._open(remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close_connection(self, connection_id: int) -> None:
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.close()

    async def close(self) -> None:
        """Stop listening, abort every connection and pending connect."""
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- connection bookkeeping (called by TcpConnection) -------------------------------
    async def _open(self, remote: Address) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: TcpConnection(self, remote), remote[0], remote[1], family=family
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            dropped = self._connecting.pop(remote, [])
            self._listener.connection_failed(remote, error, len(dropped))
        except asyncio.CancelledError:
            self._connecting.pop(remote, None)
            raise

    def _connection_made(self, connection: TcpConnection) -> None:
        connection_id = next(self._connection_ids)
        connection.connection_id = connection_id
        self._connections[connection_id] = connection
        self._by_remote.setdefault(connection.remote, []).append(connection_id)
        if connection.outgoing:
            # Written before the listener hears of the connection, so that whatever it
            # sends in reaction goes after the messages that were waiting.
            for data in self._connecting.pop(connection.remote, []):
                connection.write(data)
        self._listener.connection_opened(connection_id, connection.remote)

    def _connection_lost(self, connection: TcpConnection) -> None:
        connection_id = connection.connection_id
        if self._connections.pop(connection_id, None) is None:
            return
        ids = self._by_remote.get(connection.remote)
        if ids is not None:
            ids.remove(connection_id)
            if not ids:
                del self._by_remote[connection.remote]
        self._listener.connection_closed(connection_id)
