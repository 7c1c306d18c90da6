"""Cutting SIP messages out of a byte stream (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alive).

Rules:
- Over TCP the Content-Length header frames the body; a message without one has an
  empty body (RFC 3261 §18.3 makes it mandatory on streams, so a sender that omits it
  sends no body).
- CRLFs between messages are ignored (RFC 3261 §7.5), except that a double CRLF is a
  keep-alive "ping" and must be answered with a single CRLF "pong" (RFC 5626 §4.4.1):
  the framer reports it as `KEEPALIVE_PING` and the endpoint answers `PONG`.
- A stream that cannot be framed (no end of headers within the size limit, a
  malformed or repeated Content-Length) raises `RemoteProtocolError`; the connection
  cannot be resynchronised and must be closed.
"""

from __future__ import annotations

import enum
import re

from .errors import RemoteProtocolError
from .message import DEFAULT_LIMITS, ParserLimits

__all__ = ["StreamFramer", "KeepAlive", "KEEPALIVE_PING", "PONG"]


class KeepAlive(enum.Enum):
    """A framed item that is not a message."""

    PING = "ping"


KEEPALIVE_PING = KeepAlive.PING
PONG = b"\r\n"

_CONTENT_LENGTH_RE = re.compile(
    rb"\n(?:[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Ll][Ee][Nn][Gg][Tt][Hh]|[Ll])[ \t]*:[ \t]*([^\r\n]*)"
)


class StreamFramer:
    """Accumulates stream bytes and yields whole messages and keep-alive pings."""

    __slots__ = ("_buffer", "_limits")

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add received bytes; return every complete item now available, in order.

        Raises:
            RemoteProtocolError: the stream cannot be framed; close the connection.
        """
        buffer = self._buffer
        buffer += data
        items: list[bytes | KeepAlive] = []
        while buffer:
            if buffer[0] == 0x0D:
                if buffer[:4] == b"\r\n\r\n":
                    items.append(KEEPALIVE_PING)
                    del buffer[:4]
                    continue
                if len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
                    break  # the rest of a ping may still be in flight
                if buffer[:2] == b"\r\n":
                    del buffer[:2]  # a pong, or a stray CRLF before a start line
                    continue
            header_end = buffer.find(b"\r\n\r\n")
            if header_end < 0:
                if len(buffer) > self._limits.max_message_size:
                    raise RemoteProtocolError("no end of headers within the size limit", 513)
                break
            head = bytes(buffer[:header_end])
            lengths = _CONTENT_LENGTH_RE.findall(head)
            if len(lengths) > 1:
                raise RemoteProtocolError("Content-Length appears more than once")
            length = 0
            if lengths:
                text = lengths[0].strip(b" \t")
                if not text.isdigit() or len(text) > 9:
                    raise RemoteProtocolError("malformed Content-Length")
                length = int(text)
            total = header_end + 4 + length
            if total > self._limits.max_message_size:
                raise RemoteProtocolError("message too large", 513)
            if len(buffer) < total:
                break
            items.append(bytes(buffer[:total]))
            del buffer[:total]
        return items
