"""Thin asyncio adapters between sockets and the sans-I/O SIP core.

Rules:
- `udp.py` and `tcp.py` own sockets and nothing else: they turn socket callbacks into
  calls on a listener and write the bytes they are given. They make no protocol decision
  (STYLE.md principle 6): which flow a message goes to, when a connection is closed and
  what a timer means are the endpoint's decisions.
- `driver.py` holds the one class that feeds the endpoint with `loop.time()`, drains its
  output onto the right socket, hands its events to the application and re-arms one
  `loop.call_at` for its next timer (aioquic's `transmit()` pattern).
- Nothing a peer sends can raise out of these modules into the event loop: every
  receive path is guarded, logged on one line without a traceback, and counted.
"""

from .driver import DrivenEndpoint, EventHandler, SipTransportDriver, TransportSettings
from .tcp import TcpTransport
from .udp import UdpTransport

__all__ = [
    "DrivenEndpoint",
    "EventHandler",
    "SipTransportDriver",
    "TcpTransport",
    "TransportSettings",
    "UdpTransport",
]
