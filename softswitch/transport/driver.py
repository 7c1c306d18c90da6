"""The one class that drives a sans-I/O `SipEndpoint` from asyncio (aioquic's pattern).

Rules:
- Inputs: every socket callback becomes one endpoint call with `now = loop.time()`, and
  is followed by `transmit()`. The endpoint never reads a clock (STYLE.md principle 2).
- `transmit()` is the only output path. It drains, until nothing is left:
  `next_event()` to the application's event handler, `data_to_send()` onto the UDP socket
  or the TCP connection the `Flow` names (a `Flow(TCP, remote, None)` reuses a connection
  to `remote` or opens one), and `connections_to_close()`. Then it re-arms a single
  `loop.call_at` for `get_timer()`. An application that calls the endpoint directly
  calls `transmit()` afterwards; the `send_*` helpers here do it for it.
- A message that cannot be sent (a TCP connection that cannot be opened, a socket
  error, an address that is not an IP literal, which is never resolved here) is
  reported to the endpoint with `transport_error(flow, now, reason)` (RFC 3261 §17.1.4,
  §17.2.4), so its transactions fail at once instead of at Timer B/F.
- `transmit()` is not re-entrant: called from inside an event handler it only asks the
  running pass to go round once more, so events reach the application in order.
- Events wait in the endpoint until an event handler is set, so nothing is lost between
  binding the sockets and starting the application.
- Nothing a peer sends, and no bug in the endpoint or the application, raises into the
  event loop: each input and each handler call is guarded, logged as one warning line
  (type, message and the innermost source line, no traceback) through a rate limiter,
  and counted in `counters["internal_errors"]`.
- `MessageDropped` events are edge effects counted here (`dropped.<reason>`) and logged
  as one warning line each through the same rate limiter (absorbed retransmissions and
  ACKs, which are normal SIP, only at debug level), then passed to the application too.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from softswitch.sip.events import MessageDropped, SipEvent
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Request, Response

from .tcp import TcpTransport
from .udp import UdpTransport

__all__ = [
    "DrivenEndpoint",
    "EventHandler",
    "SipTransportDriver",
    "TransportSettings",
    "WarningLimiter",
    "describe_exception",
]

logger = logging.getLogger("softswitch.transport")

# MessageDropped reasons that happen in healthy traffic (see softswitch.sip.endpoint).
_ORDINARY_DROPS = frozenset(
    {"retransmission_absorbed", "ack_absorbed", "cancel_after_final_response"}
)

EventHandler = Callable[[SipEvent, float], None]
"""The application: called with each event the endpoint emits and the current time."""


class DrivenEndpoint(Protocol):
    """The part of the pinned `SipEndpoint` contract the driver uses."""

    def receive_datagram(self, data: bytes, remote: Address, now: float) -> None: ...

    def connection_opened(self, connection_id: int, remote: Address, now: float) -> None: ...

    def receive_stream_data(self, connection_id: int, data: bytes, now: float) -> None: ...

    def connection_closed(self, connection_id: int, now: float) -> None: ...

    def transport_error(self, flow: Flow, now: float, reason: str) -> None: ...

    def connections_to_close(self) -> list[int]: ...

    def send_request(self, request: Request, now: float, destination: Flow) -> str: ...

    def send_response(
        self, response: Response, now: float, transaction_key: str | None = None
    ) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def data_to_send(self) -> list[tuple[bytes, Flow]]: ...

    def next_event(self) -> SipEvent | None: ...


EndpointT = TypeVar("EndpointT", bound=DrivenEndpoint)


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """Knobs of the socket side (not of SIP: those are in `EndpointConfig`).

    Attributes:
        connect_timeout: seconds an outgoing TCP connect may take before its waiting
            messages are dropped (the transaction's own timer then reports the failure).
        max_write_buffer: octets a TCP connection may hold unwritten before it is aborted.
        bind_attempts: tries at finding a port free for both UDP and TCP when asked for
            port 0.
        warning_burst: warnings per kind logged in one `warning_interval` before the rest
            are only counted and summed up in one line.
        warning_interval: seconds of one rate-limiting window.
        timer_granularity: the endpoint's timers run on ticks this many seconds apart:
            a deadline is served at the first tick at or after it. Thousands of
            transactions end each second (Timers D, J, K, L, M); on a tick they end
            together, in one pass, instead of one loop callback (and one re-arming)
            each. RFC 3261's timers are hundreds of milliseconds or more, and a
            transaction that ends 10 ms late changes nothing on the wire.
    """

    connect_timeout: float = 10.0
    max_write_buffer: int = 4 * 1024 * 1024
    bind_attempts: int = 20
    warning_burst: int = 20
    warning_interval: float = 60.0
    timer_granularity: float = 0.01


def describe_exception(error: BaseException) -> str:
    """`Type: message (file:line)` of the innermost frame: one line, no traceback."""
    location = ""
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        frame = frames[-1]
        location = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
    message = str(error).replace("\n", " ")[:200]
    return f"{type(error).__name__}: {message}{location}"


@functools.lru_cache(maxsize=4096)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class WarningLimiter:
    """Logs at most `burst` warnings per key in each `interval`, then one summary line.

    A flood of garbage must not turn into a flood of log lines; what is not logged is
    still counted by the caller.
    """

    def __init__(self, log: logging.Logger, burst: int, interval: float) -> None:
        self._log = log
        self._burst = burst
        self._interval = interval
        self._windows: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, now: float) -> None:
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self._interval:
            suppressed = count - self._burst
            if suppressed > 0:
                self._log.warning("%d more %r warnings were not logged", suppressed, key)
            start, count = now, 0
        count += 1
        self._windows[key] = (start, count)
        if count <= self._burst:
            self._log.warning("%s", message)
        elif count == self._burst + 1:
            self._log.warning("too many %r warnings: logging only a summary for now", key)


class SipTransportDriver(Generic[EndpointT]):
    """Feeds one endpoint from one UDP socket and one TCP listener on the same address.

    Create it with `await SipTransportDriver.open(...)`, then `set_event_handler()`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: TransportSettings) -> None:
        self._loop = loop
        self._settings = settings
        self._endpoint: EndpointT | None = None
        self._event_handler: EventHandler | None = None
        self._udp: UdpTransport | None = None
        self._tcp = TcpTransport(
            self,
            connect_timeout=settings.connect_timeout,
            max_write_buffer=settings.max_write_buffer,
        )
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmitting = False
        self._transmit_again = False
        self._closed = False
        self.counters: Counter[str] = Counter()
        self._warnings = WarningLimiter(logger, settings.warning_burst, settings.warning_interval)

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        endpoint_factory: Callable[[Address], EndpointT],
        settings: TransportSettings | None = None,
    ) -> SipTransportDriver[EndpointT]:
        """Bind UDP and TCP on `host:port` and build the endpoint for the bound address.

        With port 0 one ephemeral port free for both transports is found.

        Args:
            endpoint_factory: called once with the bound `(host, port)` (the endpoint
                writes it in its Via headers).

        Raises:
            OSError: the address cannot be bound for both transports.
        """
        settings = settings if settings is not None else TransportSettings()
        driver: SipTransportDriver[EndpointT] = cls(asyncio.get_running_loop(), settings)
        attempts = settings.bind_attempts if port == 0 else 1
        for attempt in range(attempts):
            udp = await UdpTransport.bind(host, port, driver)
            bound_port = udp.local_address[1]
            try:
                await driver._tcp.listen(host, bound_port)
            except OSError:
                udp.close()
                if attempt + 1 == attempts:
                    raise
                continue
            driver._udp = udp
            break
        try:
            driver._endpoint = endpoint_factory((host, bound_port))
        except BaseException:
            await driver.close()
            raise
        return driver

    # -- what the application uses ------------------------------------------------------
    @property
    def endpoint(self) -> EndpointT:
        if self._endpoint is None:
            raise RuntimeError("the driver is not open")
        return self._endpoint

    @property
    def local_address(self) -> Address:
        if self._udp is None:
            raise RuntimeError("the driver is not open")
        return self._udp.local_address

    @property
    def udp_socket(self) -> Any:
        """The UDP socket (None before `open`), for read-only gauges (`softswitch.loop_lag`)."""
        return None if self._udp is None else self._udp.bound_socket

    @property
    def tcp(self) -> TcpTransport:
        return self._tcp

    def time(self) -> float:
        """The clock the endpoint runs on."""
        return self._loop.time()

    def set_event_handler(self, handler: EventHandler) -> None:
        """Start delivering events (those already queued are delivered now)."""
        self._event_handler = handler
        self.transmit()

    def send_request(self, request: Request, destination: Flow) -> str:
        """`endpoint.send_request` now, then `transmit()`; returns the transaction key."""
        transaction_key = self.endpoint.send_request(request, self._loop.time(), destination)
        self.transmit()
        return transaction_key

    def send_response(self, response: Response, transaction_key: str | None = None) -> None:
        """`endpoint.send_response` now, then `transmit()`."""
        self.endpoint.send_response(response, self._loop.time(), transaction_key)
        self.transmit()

    async def close(self) -> None:
        """Stop the timer, close the UDP socket and every TCP connection."""
        self._closed = True
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        if self._udp is not None:
            self._udp.close()
        await self._tcp.close()

    # -- the transmit pass --------------------------------------------------------------
    def transmit(self) -> None:
        """Drain events, outgoing data and connection closes; re-arm the timer."""
        if self._endpoint is None or self._closed:
            return
        if self._transmitting:
            self._transmit_again = True
            return
        self._transmitting = True
        try:
            # Each round can only be caused by the application reacting to events; the
            # bound stops a buggy application that answers every event with another.
            for _ in range(10_000):
                self._transmit_again = False
                try:
                    busy = self._dispatch_events(self._endpoint)
                    busy = self._send_data(self._endpoint) or busy
                    busy = self._close_connections(self._endpoint) or busy
                except Exception as error:
                    self._internal_error("transmit", error)
                    break
                if not busy and not self._transmit_again:
                    break
            self._arm_timer(self._endpoint)
        finally:
            self._transmitting = False

    def _dispatch_events(self, endpoint: EndpointT) -> bool:
        handler = self._event_handler
        if handler is None:
            return False
        dispatched = False
        while (event := endpoint.next_event()) is not None:
            dispatched = True
            if isinstance(event, MessageDropped):
                self._count_dropped(event)
            try:
                handler(event, self._loop.time())
            except Exception as error:
                self._internal_error("application", error)
        return dispatched

    def _send_data(self, endpoint: EndpointT) -> bool:
        outgoing = endpoint.data_to_send()
        for data, flow in outgoing:
            try:
                self._send(data, flow)
            except (OSError, ValueError) as error:
                self._send_failed(endpoint, flow, error)
        return bool(outgoing)

    def _send(self, data: bytes, flow: Flow) -> None:
        if not _is_ip_literal(flow.remote[0]):
            # The core promises IP literals (flows.py); a name here (a Via maddr, say)
            # would make the socket layer resolve it. Refused, never looked up.
            raise ValueError(f"{flow.remote[0]!r} is not an IP address")
        if flow.transport is Transport.UDP:
            if self._udp is not None:
                self._udp.send(data, flow.remote)
            self.counters["udp_datagrams_sent"] += 1
        elif flow.connection_id is None:
            self._tcp.send_to_address(data, flow.remote)
            self.counters["tcp_messages_sent"] += 1
        elif self._tcp.send(data, flow.connection_id):
            self.counters["tcp_messages_sent"] += 1
        else:
            # The connection closed since the endpoint chose it; the endpoint has been
            # told (connection_closed), and the transaction recovers per RFC 3261 §17.
            self.counters["tcp_messages_for_closed_connection"] += 1

    def _send_failed(self, endpoint: EndpointT, flow: Flow, error: Exception) -> None:
        """RFC 3261 §17.1.4, §17.2.4: tell the transactions using `flow`."""
        self.counters["send_failures"] += 1
        remote = flow.remote
        reason = f"cannot send to {remote[0]}:{remote[1]}: {describe_exception(error)}"
        self._warnings.warning("send_failure", f"{flow.transport.value} {reason}", self.time())
        try:
            endpoint.transport_error(flow, self._loop.time(), reason)
        except Exception as error_in_endpoint:
            self._internal_error("transport_error", error_in_endpoint)

    def _close_connections(self, endpoint: EndpointT) -> bool:
        connection_ids = endpoint.connections_to_close()
        for connection_id in connection_ids:
            self._tcp.close_connection(connection_id)
        return bool(connection_ids)

    def _arm_timer(self, endpoint: EndpointT) -> None:
        try:
            deadline = endpoint.get_timer()
        except Exception as error:
            self._internal_error("get_timer", error)
            deadline = None
        if deadline is not None:
            # TransportSettings.timer_granularity: serve it at the next tick.
            granularity = self._settings.timer_granularity
            deadline = math.ceil(deadline / granularity) * granularity
        if deadline == self._timer_at and self._timer_handle is not None:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer_handle = self._loop.call_at(deadline, self._handle_timer)

    def _handle_timer(self) -> None:
        self._timer_handle = None
        deadline = self._timer_at if self._timer_at is not None else self._loop.time()
        self._timer_at = None
        # call_at may run up to one clock resolution early: never hand the endpoint a
        # `now` before the deadline it asked for (aioquic does the same).
        now = max(deadline, self._loop.time())
        try:
            self.endpoint.handle_timer(now)
        except Exception as error:
            self._internal_error("handle_timer", error)
        self.transmit()

    # -- DatagramListener ---------------------------------------------------------------
    def datagram_received(self, data: bytes, remote: Address) -> None:
        self.counters["udp_datagrams_received"] += 1
        endpoint = self._endpoint
        if endpoint is None:
            self.counters["received_before_open"] += 1
            return
        try:
            endpoint.receive_datagram(data, remote, self._loop.time())
        except Exception as error:
            self._internal_error("receive_datagram", error)
        self.transmit()

    def datagram_error(self, error: Exception) -> None:
        # RFC 3261 §18.4: ICMP errors may be ignored; transactions time out on their own.
        self.counters["udp_socket_errors"] += 1
        self._warnings.warning("udp_socket_error", f"UDP socket error: {error}", self.time())

    # -- StreamListener -----------------------------------------------------------------
    def connection_opened(self, connection_id: int, remote: Address) -> None:
        self.counters["tcp_connections_opened"] += 1
        endpoint = self._endpoint
        if endpoint is None:
            self._tcp.close_connection(connection_id)
            return
        try:
            endpoint.connection_opened(connection_id, remote, self._loop.time())
        except Exception as error:
            self._internal_error("connection_opened", error)
        self.transmit()

    def stream_data_received(self, connection_id: int, data: bytes) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        try:
            endpoint.receive_stream_data(connection_id, data, self._loop.time())
        except Exception as error:
            self._internal_error("receive_stream_data", error)
        self.transmit()

    def connection_closed(self, connection_id: int) -> None:
        self.counters["tcp_connections_closed"] += 1
        endpoint = self._endpoint
        if endpoint is None or self._closed:
            return
        try:
            endpoint.connection_closed(connection_id, self._loop.time())
        except Exception as error:
            self._internal_error("connection_closed", error)
        self.transmit()

    def connection_failed(self, remote: Address, error: Exception, dropped: int) -> None:
        self.counters["tcp_connect_failures"] += 1
        self.counters["tcp_messages_dropped_unconnected"] += dropped
        reason = f"TCP connect to {remote[0]}:{remote[1]} failed ({describe_exception(error)})"
        self._warnings.warning(
            "tcp_connect_failure", f"{reason}; {dropped} message(s) dropped", self.time()
        )
        endpoint = self._endpoint
        if endpoint is None or self._closed:
            return
        # RFC 3261 §17.1.4, §17.2.4: the transactions sending there learn of it now
        # instead of timing out.
        try:
            endpoint.transport_error(Flow(Transport.TCP, remote), self._loop.time(), reason)
        except Exception as error_in_endpoint:
            self._internal_error("transport_error", error_in_endpoint)
        self.transmit()

    def write_buffer_overflow(self, connection_id: int) -> None:
        self.counters["tcp_write_buffer_overflows"] += 1
        self._warnings.warning(
            "tcp_write_buffer_overflow",
            f"TCP connection {connection_id} stopped reading: aborted",
            self.time(),
        )

    # -- accounting ---------------------------------------------------------------------
    def _count_dropped(self, event: MessageDropped) -> None:
        self.counters[f"dropped.{event.reason}"] += 1
        answered = "" if event.status_code is None else f", answered {event.status_code}"
        remote = event.flow.remote
        message = (
            f"dropped message from {event.flow.transport.value} {remote[0]}:{remote[1]}: "
            f"{event.reason} ({event.detail[:200]}{answered})"
        )
        if event.reason in _ORDINARY_DROPS:
            # Absorbed retransmissions and ACKs, and a CANCEL crossing the final response,
            # are ordinary SIP: counted, not warned about.
            logger.debug("%s", message)
        else:
            self._warnings.warning(f"dropped.{event.reason}", message, self.time())

    def _internal_error(self, where: str, error: Exception) -> None:
        self.counters["internal_errors"] += 1
        self._warnings.warning(
            f"internal.{where}", f"error in {where}: {describe_exception(error)}", self.time()
        )
