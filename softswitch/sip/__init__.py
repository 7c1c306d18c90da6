"""The sans-I/O SIP core: messages, URIs, transactions and digest helpers.

Standard library only: no sockets, no asyncio, no clock. Adapters in
`softswitch.transport` feed it bytes and the current time.
"""

from .errors import LocalProtocolError, RemoteProtocolError, SipError
from .headers import CSeq, MediaType, NameAddress, Via
from .message import Headers, Message, ParserLimits, Request, Response, parse_message
from .uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "Message",
    "NameAddress",
    "ParserLimits",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipError",
    "SipUri",
    "TelUri",
    "Uri",
    "Via",
    "parse_message",
    "parse_uri",
]
