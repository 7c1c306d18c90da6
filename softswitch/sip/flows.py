"""Where a message comes from and goes to, as the core sees it (no sockets here).

Rules:
- A `Flow` names a transport, the remote address and, for connection-oriented
  transports, which connection. The adapters own the sockets; the core only says
  "send these bytes on this flow".
- `connection_id=None` on a TCP flow means "any connection to that address": the
  adapter reuses one it has or opens a new one (RFC 3261 §18.1.1, §18.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .enums import IdentityEnum

__all__ = ["Transport", "Address", "Flow"]

Address = tuple[str, int]
"""(host, port): an IP address literal, never a name to resolve, in the core."""


class Transport(IdentityEnum):
    UDP = "UDP"
    TCP = "TCP"

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: reliable transports carry no retransmissions."""
        return self is not Transport.UDP


@dataclass(frozen=True, slots=True)
class Flow:
    """One path to a peer.

    Attributes:
        transport: UDP or TCP.
        remote: the peer's (host, port).
        connection_id: the adapter's number for a TCP connection; None for UDP, or for
            "any connection to `remote`, opening one if needed".
    """

    transport: Transport
    remote: Address
    connection_id: int | None = None
