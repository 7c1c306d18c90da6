"""One error hierarchy for the SIP core, each error carrying the status it calls for.

Rules:
- Everything the parser or a state machine raises is a `SipError`; nothing else escapes
  the core for any input bytes (a property test enforces this).
- `RemoteProtocolError` means the peer broke the protocol: its `status_code` is the final
  response RFC 3261 (and RFC 4475) asks for, e.g. 400 for bad syntax, 505 for an unknown
  SIP version, 513 for a message over our size limits. The element answers with it when
  the message was a request it can answer, and otherwise drops and counts it.
- `LocalProtocolError` means our own code tried something the protocol forbids (an
  illegal transaction transition, a response to an ACK): a bug to fix, never the peer's.
"""

from __future__ import annotations

__all__ = ["SipError", "RemoteProtocolError", "LocalProtocolError"]


class SipError(Exception):
    """Base of every error the SIP core raises."""


class RemoteProtocolError(SipError):
    """The peer sent something the protocol does not allow.

    Attributes:
        status_code: the final response status RFC 3261 calls for (400, 505, 513, ...).
        reason: a short human-readable reason; used as the response's reason phrase
            after the standard phrase, so a peer's engineer sees what was wrong.
    """

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.reason!r}, status_code={self.status_code})"


class LocalProtocolError(SipError):
    """Our own code asked the core for something the protocol forbids."""
