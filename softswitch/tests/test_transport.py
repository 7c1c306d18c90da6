"""The asyncio adapters on real loopback sockets (STYLE.md test layer (d)).

Two groups:
- the driver's mechanics, against `ScriptedEndpoint`, a stand-in that follows the pinned
  endpoint contract and whose outputs the test chooses: one port for UDP and TCP,
  connection reuse and opening, closing on request, the timer, and that no exception
  from the endpoint or the application reaches the event loop;
- the whole element (real `SipEndpoint` + `Element`): OPTIONS over UDP and TCP, two
  requests on one connection, our request reusing an inbound connection, a large
  request going over TCP, and responses routed by received/rport (RFC 3261 §18.2.2,
  RFC 3581).

Every test runs on a fresh uvloop loop under a time limit; all traffic is on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import pytest
import uvloop

from softswitch.element import Element
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.events import MessageDropped, SipEvent, TransportError
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Headers, Request, Response, parse_message
from softswitch.transport.driver import SipTransportDriver, TransportSettings

T = TypeVar("T")
TIME_LIMIT = 10.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one test coroutine on a new uvloop event loop, under a time limit."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coroutine, TIME_LIMIT))


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class UdpPeer(asyncio.DatagramProtocol):
    """A test's UDP socket: what it receives waits in a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(cls, host: str = "127.0.0.1", port: int = 0) -> UdpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, data: bytes, remote: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, remote)

    async def receive(self, timeout: float = 3.0) -> tuple[bytes, Address]:
        return await asyncio.wait_for(self.received.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def read_message(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """One SIP message from a stream: headers, then Content-Length octets."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            length = int(value.strip())
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return head + body


# -- the driver's mechanics, against a scripted endpoint -----------------------------------


class ScriptedEndpoint:
    """Follows the pinned endpoint contract; the test decides what it outputs.

    It echoes what it receives (`ECHO ...`) back on the flow it came from, raises on
    `BOOM`, and otherwise records its inputs.
    """

    def __init__(self, address: Address) -> None:
        self.address = address
        self.inputs: list[tuple[Any, ...]] = []
        self.outgoing: list[tuple[bytes, Flow]] = []
        self.events: deque[SipEvent] = deque()
        self.to_close: list[int] = []
        self.timer: float | None = None
        self.timer_calls: list[float] = []
        self.counters: dict[str, int] = {}

    def _react(self, data: bytes, flow: Flow) -> None:
        if data.startswith(b"BOOM"):
            raise ValueError("scripted failure\nwith a second line")
        if data.startswith(b"ECHO"):
            self.outgoing.append((data, flow))

    def receive_datagram(self, data: bytes, remote: Address, now: float) -> None:
        self.inputs.append(("datagram", data, remote, now))
        self._react(data, Flow(Transport.UDP, remote))

    def connection_opened(self, connection_id: int, remote: Address, now: float) -> None:
        self.inputs.append(("opened", connection_id, remote))

    def receive_stream_data(self, connection_id: int, data: bytes, now: float) -> None:
        self.inputs.append(("stream", connection_id, data))
        remote = next(item[2] for item in self.inputs if item[:2] == ("opened", connection_id))
        self._react(data, Flow(Transport.TCP, remote, connection_id))

    def connection_closed(self, connection_id: int, now: float) -> None:
        self.inputs.append(("closed", connection_id))

    def transport_error(self, flow: Flow, now: float, reason: str) -> None:
        self.inputs.append(("transport_error", flow, reason))

    def connections_to_close(self) -> list[int]:
        closing, self.to_close = self.to_close, []
        return closing

    def send_request(self, request: Request, now: float, destination: Flow) -> str:
        self.outgoing.append((request.to_bytes(), destination))
        return "client-1"

    def send_response(
        self, response: Response, now: float, transaction_key: str | None = None
    ) -> None:
        raise AssertionError("the driver never sends responses on its own")

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        self.timer = None

    def get_timer(self) -> float | None:
        return self.timer

    def data_to_send(self) -> list[tuple[bytes, Flow]]:
        outgoing, self.outgoing = self.outgoing, []
        return outgoing

    def next_event(self) -> SipEvent | None:
        return self.events.popleft() if self.events else None

    def opened(self) -> list[tuple[int, Address]]:
        return [(item[1], item[2]) for item in self.inputs if item[0] == "opened"]


async def open_scripted(
    handler: Callable[[SipEvent, float], None] | None = None,
    host: str = "127.0.0.1",
) -> SipTransportDriver[ScriptedEndpoint]:
    driver = await SipTransportDriver.open(host, 0, ScriptedEndpoint)
    driver.set_event_handler(handler or (lambda event, now: None))
    return driver


def test_udp_and_tcp_listen_on_one_address() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            host, port = driver.local_address
            assert host == "127.0.0.1" and port > 0
            assert driver.endpoint.address == (host, port)
            assert driver.tcp.local_address == (host, port)
            peer = await UdpPeer.bind()
            peer.send(b"ECHO over udp", (host, port))
            data, source = await peer.receive()
            assert (data, source) == (b"ECHO over udp", (host, port))
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"ECHO over tcp")
            assert await asyncio.wait_for(reader.readexactly(13), 3) == b"ECHO over tcp"
            writer.close()
            peer.close()
        finally:
            await driver.close()

    run(scenario())


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine's loopback has no ::1 (IPv6 disabled)"
)
def test_ipv6_loopback() -> None:

    async def scenario() -> None:
        driver = await open_scripted(host="::1")
        try:
            assert driver.local_address[0] == "::1"
            peer = await UdpPeer.bind("::1")
            peer.send(b"ECHO v6", driver.local_address)
            data, _ = await peer.receive()
            assert data == b"ECHO v6"
            peer.close()
        finally:
            await driver.close()

    run(scenario())


def test_datagram_input_carries_the_source_and_the_loop_time() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            peer = await UdpPeer.bind()
            before = driver.time()
            peer.send(b"hello", driver.local_address)
            await eventually(lambda: bool(driver.endpoint.inputs))
            kind, data, remote, now = driver.endpoint.inputs[0]
            assert (kind, data, remote) == ("datagram", b"hello", peer.address)
            assert before <= now <= driver.time()
            assert driver.counters["udp_datagrams_received"] == 1
            peer.close()
        finally:
            await driver.close()

    run(scenario())


def test_flow_without_connection_opens_one_connection_and_reuses_it() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.put_nowait((reader, writer))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        remote = server.sockets[0].getsockname()[:2]
        try:
            endpoint = driver.endpoint
            for number in range(3):  # three messages before the connection is up
                endpoint.outgoing.append((b"first-%d;" % number, Flow(Transport.TCP, remote)))
            driver.transmit()
            reader, writer = await asyncio.wait_for(accepted.get(), 3)
            assert await asyncio.wait_for(reader.readexactly(24), 3) == (
                b"first-0;first-1;first-2;"
            )
            ((connection_id, opened_remote),) = endpoint.opened()
            assert opened_remote == remote
            endpoint.outgoing.append((b"second", Flow(Transport.TCP, remote)))
            driver.transmit()
            assert await asyncio.wait_for(reader.readexactly(6), 3) == b"second"
            endpoint.outgoing.append((b"third", Flow(Transport.TCP, remote, connection_id)))
            driver.transmit()
            assert await asyncio.wait_for(reader.readexactly(5), 3) == b"third"
            assert accepted.empty() and driver.counters["tcp_connections_opened"] == 1
            writer.close()
            await eventually(lambda: ("closed", connection_id) in endpoint.inputs)
        finally:
            server.close()
            await driver.close()

    run(scenario())


def test_flow_without_connection_reuses_an_inbound_connection() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            client = writer.get_extra_info("sockname")[:2]
            await eventually(lambda: bool(driver.endpoint.opened()))
            ((_, remote),) = driver.endpoint.opened()
            assert remote == client
            driver.endpoint.outgoing.append((b"to you", Flow(Transport.TCP, remote)))
            driver.transmit()
            assert await asyncio.wait_for(reader.readexactly(6), 3) == b"to you"
            assert driver.counters["tcp_connections_opened"] == 1
            writer.close()
        finally:
            await driver.close()

    run(scenario())


def test_connections_the_endpoint_closes_are_closed() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            await eventually(lambda: bool(driver.endpoint.opened()))
            ((connection_id, _),) = driver.endpoint.opened()
            driver.endpoint.to_close.append(connection_id)
            driver.transmit()
            assert await asyncio.wait_for(reader.read(), 3) == b""
            await eventually(lambda: ("closed", connection_id) in driver.endpoint.inputs)
            writer.close()
        finally:
            await driver.close()

    run(scenario())


def test_failed_connect_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        closed_port = listener.getsockname()[1]
        listener.close()  # nothing listens there now
        driver = await open_scripted()
        try:
            remote = ("127.0.0.1", closed_port)
            driver.endpoint.outgoing.append((b"lost", Flow(Transport.TCP, remote)))
            driver.transmit()
            await eventually(lambda: driver.counters["tcp_connect_failures"] == 1)
            assert driver.counters["tcp_messages_dropped_unconnected"] == 1
            ((kind, flow, reason),) = [
                item for item in driver.endpoint.inputs if item[0] == "transport_error"
            ]
            assert flow == Flow(Transport.TCP, remote) and "ConnectionRefused" in reason
        finally:
            await driver.close()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert sum("TCP connect to" in record.getMessage() for record in caplog.records) == 1


def test_a_name_is_never_resolved_and_the_rest_of_the_batch_still_goes() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            peer = await UdpPeer.bind()
            named = Flow(Transport.UDP, ("proxy.example.com", 5060))
            endpoint = driver.endpoint
            endpoint.outgoing.append((b"to a name", named))
            endpoint.outgoing.append((b"to a name", Flow(Transport.TCP, named.remote)))
            endpoint.outgoing.append((b"to the peer", Flow(Transport.UDP, peer.address)))
            driver.transmit()
            assert (await peer.receive())[0] == b"to the peer"
            failures = [item for item in endpoint.inputs if item[0] == "transport_error"]
            assert [item[1] for item in failures] == [named, Flow(Transport.TCP, named.remote)]
            assert driver.counters["send_failures"] == 2
            assert driver.counters["tcp_connections_opened"] == 0
            peer.close()
        finally:
            await driver.close()

    run(scenario())


def test_exceptions_never_reach_the_loop_and_are_logged_on_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop_errors: list[dict[str, Any]] = []

    def failing_handler(event: SipEvent, now: float) -> None:
        raise RuntimeError("application bug")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: loop_errors.append(context)
        )
        driver = await open_scripted(failing_handler)
        try:
            peer = await UdpPeer.bind()
            for _ in range(3):
                peer.send(b"BOOM", driver.local_address)
            reader, writer = await asyncio.open_connection(*driver.local_address)
            writer.write(b"BOOM")
            await eventually(lambda: driver.counters["internal_errors"] == 4)
            # Still serving on both transports.
            peer.send(b"ECHO alive", driver.local_address)
            assert (await peer.receive())[0] == b"ECHO alive"
            writer.write(b"ECHO alive")
            assert await asyncio.wait_for(reader.readexactly(10), 3) == b"ECHO alive"
            # An application error is counted too, and the next event still arrives.
            flow = Flow(Transport.UDP, peer.address)
            driver.endpoint.events.append(MessageDropped("malformed", "x", 400, flow))
            driver.endpoint.events.append(MessageDropped("malformed", "y", 400, flow))
            driver.transmit()
            assert driver.counters["internal_errors"] == 6
            assert driver.counters["dropped.malformed"] == 2
            writer.close()
            peer.close()
        finally:
            await driver.close()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert loop_errors == []
    messages = [record.getMessage() for record in caplog.records]
    assert all("\n" not in message and "Traceback" not in message for message in messages)
    assert all(record.exc_info is None for record in caplog.records)
    assert any("ValueError: scripted failure with a second line" in m for m in messages)
    assert any("RuntimeError: application bug" in m for m in messages)


def test_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        settings = TransportSettings(warning_burst=3)
        driver = await SipTransportDriver.open("127.0.0.1", 0, ScriptedEndpoint, settings)
        driver.set_event_handler(lambda event, now: None)
        try:
            peer = await UdpPeer.bind()
            for _ in range(50):
                peer.send(b"BOOM", driver.local_address)
            await eventually(lambda: driver.counters["internal_errors"] == 50)
            peer.close()
        finally:
            await driver.close()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert len(caplog.records) == 4  # three warnings, then one "too many" line


def test_timer_is_armed_once_and_fires_at_its_deadline() -> None:
    async def scenario() -> None:
        driver = await open_scripted()
        try:
            deadline = driver.time() + 0.05
            driver.endpoint.timer = deadline
            driver.transmit()
            driver.transmit()  # re-arming with the same deadline changes nothing
            await eventually(lambda: bool(driver.endpoint.timer_calls))
            await asyncio.sleep(0.05)
            (now,) = driver.endpoint.timer_calls
            assert now >= deadline
            # A later deadline replaces an earlier one.
            driver.endpoint.timer = driver.time() + 0.02
            driver.transmit()
            driver.endpoint.timer = driver.time() + 0.04
            later = driver.endpoint.timer
            driver.transmit()
            await eventually(lambda: len(driver.endpoint.timer_calls) == 2)
            assert driver.endpoint.timer_calls[1] >= later
        finally:
            await driver.close()

    run(scenario())


def test_events_wait_until_the_application_is_set() -> None:
    async def scenario() -> None:
        driver = await SipTransportDriver.open("127.0.0.1", 0, ScriptedEndpoint)
        try:
            flow = Flow(Transport.UDP, ("127.0.0.1", 9))
            driver.endpoint.events.append(MessageDropped("malformed", "early", 400, flow))
            driver.transmit()
            seen: list[SipEvent] = []
            driver.set_event_handler(lambda event, now: seen.append(event))
            assert len(seen) == 1
        finally:
            await driver.close()

    run(scenario())


# -- the whole element: real SipEndpoint + Element ------------------------------------------

async def open_element(host: str = "127.0.0.1") -> tuple[SipTransportDriver[Any], Element]:
    def build(address: Address) -> SipEndpoint:
        return SipEndpoint(EndpointConfig(local_host=address[0], local_port=address[1]))

    driver = await SipTransportDriver.open(host, 0, build)
    element = Element(driver.endpoint)
    driver.set_event_handler(element.handle_event)
    return driver, element


def options_request(
    sent_by: str, transport: str = "UDP", branch: str | None = None, via_parameters: str = ""
) -> bytes:
    branch = branch or f"z9hG4bK-{random.getrandbits(48):x}"
    call_id = f"{random.getrandbits(64):x}@test"
    return (
        f"OPTIONS sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}{via_parameters}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:tester@example.com>;tag=t-{random.getrandbits(32):x}\r\n"
        f"To: <sip:service@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def parse_response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response), data[:80]
    return message


def outgoing_options(remote: Address, padding: int = 0, transport: str = "UDP") -> Request:
    """A request of ours; the endpoint adds its own Via."""
    headers = Headers()
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:softswitch@127.0.0.1>;tag=ours-1")
    headers.add("To", f"<sip:peer@{remote[0]}:{remote[1]}>")
    headers.add("Call-ID", f"{random.getrandbits(64):x}@softswitch")
    headers.add("CSeq", "1 OPTIONS")
    if padding:
        headers.add("X-Padding", "p" * padding)
    uri = f"sip:peer@{remote[0]}:{remote[1]};transport={transport.lower()}"
    return Request("OPTIONS", uri, headers)


def test_options_over_udp_is_answered() -> None:
    async def scenario() -> None:
        driver, element = await open_element()
        try:
            peer = await UdpPeer.bind()
            peer.send(options_request(f"127.0.0.1:{peer.address[1]}"), driver.local_address)
            data, source = await peer.receive()
            response = parse_response(data)
            assert response.status_code == 200
            assert source == driver.local_address
            assert "INVITE" in response.allow and response.to_address.tag
            assert element.counters["responses.200"] == 1
            peer.close()
        finally:
            await driver.close()

    run(scenario())


def test_options_over_tcp_twice_on_one_connection() -> None:
    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            client = writer.get_extra_info("sockname")[:2]
            for _ in range(2):
                writer.write(options_request(f"127.0.0.1:{client[1]}", "TCP"))
                response = parse_response(await read_message(reader))
                assert response.status_code == 200
            assert driver.counters["tcp_connections_opened"] == 1
            writer.close()
        finally:
            await driver.close()

    run(scenario())


def test_our_request_reuses_the_inbound_connection() -> None:
    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            client = writer.get_extra_info("sockname")[:2]
            writer.write(options_request(f"127.0.0.1:{client[1]}", "TCP"))
            assert parse_response(await read_message(reader)).status_code == 200
            driver.send_request(
                outgoing_options(client, transport="TCP"), Flow(Transport.TCP, client)
            )
            request = parse_message(await read_message(reader))
            assert isinstance(request, Request) and request.method == "OPTIONS"
            assert request.top_via.transport == "TCP"
            assert driver.counters["tcp_connections_opened"] == 1
            writer.close()
        finally:
            await driver.close()

    run(scenario())


def test_large_request_goes_over_tcp() -> None:
    """RFC 3261 §18.1.1: a request within 200 octets of the MTU (1300) uses TCP."""

    async def scenario() -> None:
        driver, _ = await open_element()
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            received.put_nowait(await read_message(reader))
            writer.close()

        peer = await UdpPeer.bind()  # UDP and TCP on the same port, like a SIP element
        server = await asyncio.start_server(accept, "127.0.0.1", peer.address[1])
        try:
            request = outgoing_options(peer.address, padding=1400)
            assert len(request.to_bytes()) > 1300
            driver.send_request(request, Flow(Transport.UDP, peer.address))
            message = parse_message(await asyncio.wait_for(received.get(), 3))
            assert isinstance(message, Request) and message.top_via.transport == "TCP"
            assert peer.received.empty()
            small = outgoing_options(peer.address)
            driver.send_request(small, Flow(Transport.UDP, peer.address))
            data, _ = await peer.receive()
            assert parse_message(data).call_id == small.call_id
        finally:
            server.close()
            peer.close()
            await driver.close()

    run(scenario())


async def bind_other_loopback(port: int = 0) -> UdpPeer:
    """A UDP socket on a random 127.x.y.z other than 127.0.0.1."""
    for _ in range(50):
        host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        try:
            return await UdpPeer.bind(host, port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no free loopback address")


def test_response_goes_to_the_source_port_with_rport() -> None:
    """RFC 3581 §4: with rport, answer the source address and port; RFC 3261 §18.2.1:
    received records the source address when sent-by differs."""

    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            client = await bind_other_loopback()
            client.send(
                options_request("192.0.2.1:5999", via_parameters=";rport"), driver.local_address
            )
            data, _ = await client.receive()
            via = parse_response(data).top_via
            assert via.received == client.address[0]
            assert via.rport == client.address[1]
            client.close()
        finally:
            await driver.close()

    run(scenario())


def test_response_goes_to_the_via_port_at_the_received_address() -> None:
    """RFC 3261 §18.2.2: without rport, answer the received address at the sent-by port."""

    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            listening = await bind_other_loopback()
            sending = await UdpPeer.bind(listening.address[0], 0)
            sending.send(
                options_request(f"client.invalid:{listening.address[1]}"), driver.local_address
            )
            data, _ = await listening.receive()
            via = parse_response(data).top_via
            assert via.received == listening.address[0]
            assert sending.received.empty()
            listening.close()
            sending.close()
        finally:
            await driver.close()

    run(scenario())



def test_unreachable_tcp_peer_fails_the_transaction_at_once() -> None:
    """RFC 3261 §17.1.4: a transport failure is reported to the TU without waiting for
    Timer F."""

    async def scenario() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        closed = listener.getsockname()[:2]
        listener.close()
        driver, element = await open_element()
        seen: list[SipEvent] = []

        def handler(event: SipEvent, now: float) -> None:
            seen.append(event)
            element.handle_event(event, now)

        driver.set_event_handler(handler)
        try:
            key = driver.send_request(
                outgoing_options(closed, transport="TCP"), Flow(Transport.TCP, closed)
            )
            await eventually(lambda: any(isinstance(event, TransportError) for event in seen))
            (error,) = [event for event in seen if isinstance(event, TransportError)]
            assert error.transaction_key == key and error.is_client
            assert driver.counters["tcp_connect_failures"] == 1
        finally:
            await driver.close()

    run(scenario())


def test_keepalive_ping_on_a_connection_gets_its_pong() -> None:
    """RFC 5626 §4.4.1: a double CRLF over TCP is answered with one CRLF."""

    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), 3) == b"\r\n"
            writer.close()
        finally:
            await driver.close()

    run(scenario())


def test_unframable_stream_closes_the_connection() -> None:
    """RFC 3261 §18.3: a stream whose Content-Length cannot be read is closed."""

    async def scenario() -> None:
        driver, _ = await open_element()
        try:
            reader, writer = await asyncio.open_connection(*driver.local_address)
            writer.write(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), 3) == b""
            await eventually(lambda: driver.counters["tcp_connections_closed"] == 1)
            assert driver.counters["dropped.unframable_stream"] == 1
            writer.close()
        finally:
            await driver.close()

    run(scenario())
