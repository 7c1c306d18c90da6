"""Events the SIP core emits; the caller drains them with `SipEndpoint.next_event()`.

Rules:
- Events are frozen value objects; the core never calls back into application code
  (STYLE.md principle 4), so there is no re-entrancy.
- Every received message ends in exactly one event: `RequestReceived`,
  `ResponseReceived`, `CancelReceived`, or `MessageDropped` (malformed, stray or
  absorbed retransmission that a counter should see).
"""

from __future__ import annotations

from dataclasses import dataclass

from .flows import Flow
from .message import Request, Response

__all__ = [
    "SipEvent",
    "RequestReceived",
    "ResponseReceived",
    "CancelReceived",
    "TransactionTimeout",
    "TransportError",
    "TransactionTerminated",
    "MessageDropped",
]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the transaction user (retransmissions are absorbed below).

    Attributes:
        request: the request, already `validate()`d.
        flow: where it came from (answer on this flow, RFC 3261 §18.2.2).
        transaction_key: the server transaction to answer through with
            `send_response`; None for an ACK (ACK has no server transaction of its
            own: ACK for a 2xx goes to the TU, §17.2.1).
    """

    request: Request
    flow: Flow
    transaction_key: str | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response matched to one of our client transactions (§17.1.3).

    Attributes:
        response: the response (2xx retransmissions for INVITE are passed up too,
            RFC 6026 §8.4, so the TU can re-send its ACK).
        transaction_key: the client transaction, as returned by `send_request`.
        flow: where it came from.
    """

    response: Response
    transaction_key: str
    flow: Flow


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched an INVITE server transaction still in PROCEEDING (§9.2).

    The core has already answered the CANCEL with 200; the TU should now answer the
    INVITE (normally 487 Request Terminated).

    Attributes:
        invite_transaction_key: the INVITE's server transaction.
        cancel: the CANCEL request.
    """

    invite_transaction_key: str
    cancel: Request


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B, F (client) or H (server, no ACK) fired (§17.1.1.2, §17.1.2.2, §17.2.1).

    For a client transaction the TU should act as if a 408 had arrived (§8.1.3.1).
    """

    transaction_key: str
    method: str
    is_client: bool


@dataclass(frozen=True, slots=True)
class TransportError:
    """A message of a transaction could not be sent (§17.1.4, §17.2.4)."""

    transaction_key: str
    is_client: bool
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """A transaction reached TERMINATED and was freed; for TU bookkeeping."""

    transaction_key: str
    is_client: bool


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """Something received was not passed up; counted by the adapter.

    Attributes:
        reason: a short machine-friendly reason, used as a metric label
            ("malformed", "stray_response", "no_usable_via", ...).
        detail: human-readable detail for the log.
        status_code: the status answered (400, 505...) or None when nothing could be.
        flow: where it came from.
    """

    reason: str
    detail: str
    status_code: int | None
    flow: Flow


SipEvent = (
    RequestReceived
    | ResponseReceived
    | CancelReceived
    | TransactionTimeout
    | TransportError
    | TransactionTerminated
    | MessageDropped
)
