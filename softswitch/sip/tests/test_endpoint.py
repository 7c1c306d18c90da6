"""SipEndpoint through its public API only: bytes in, bytes and events out, time given.

Timer tests read each `now` from `get_timer()` and jump to it (aioquic's style). The
pair tests join two endpoints by an in-memory network that loses, duplicates and
reorders datagrams with a seeded `random.Random`, like h11's ConnectionPair and
aioquic's `roundtrip`/`drop` helpers.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.events import (
    CancelReceived,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.headers import clear_parse_caches, parse_via
from softswitch.sip.message import Headers, Request, Response, parse_message
from softswitch.sip.tests.corpus import CORPUS
from softswitch.sip.transaction import (
    ClientInviteState,
    ServerInviteState,
    ServerNonInviteState,
)

MANIFEST = {
    row["name"]: row
    for row in csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
}

ALICE: Address = ("192.0.2.1", 5060)
BOB: Address = ("192.0.2.2", 5060)
ALICE_UDP = Flow(Transport.UDP, ALICE)
BOB_UDP = Flow(Transport.UDP, BOB)
EMPTY_TABLES = {
    "client_transactions": 0,
    "server_transactions": 0,
    "merge_index": 0,
    "success_ack_index": 0,
    "pending_cancels": 0,
    "timers": 0,
    "connections": 0,
}


# ------------------------------------------------------------------------------ helpers


def tokens(prefix: str) -> Callable[[], str]:
    """Deterministic branch and tag material: prefix1, prefix2, ..."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def make_endpoint(
    address: Address = BOB, prefix: str = "bob", udp_size_threshold: int = 1300
) -> SipEndpoint:
    config = EndpointConfig(address[0], address[1], udp_size_threshold=udp_size_threshold)
    return SipEndpoint(config, random_token=tokens(prefix))


def drain_events(endpoint: SipEndpoint) -> list[SipEvent]:
    events: list[SipEvent] = []
    while (event := endpoint.next_event()) is not None:
        events.append(event)
    return events


def parse(data: bytes) -> Request | Response:
    message = parse_message(data)
    message.validate()
    return message


def parse_response(data: bytes) -> Response:
    message = parse(data)
    assert isinstance(message, Response)
    return message


def parse_request(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def request_bytes(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKalice1",
    via: str = "SIP/2.0/UDP 192.0.2.1:5060",
    rport: bool = True,
    call_id: str = "call-1@192.0.2.1",
    from_tag: str = "alice-tag",
    to_tag: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    uri: str = "sip:bob@192.0.2.2",
    extra: str = "",
    body: bytes = b"",
) -> bytes:
    parameters = (f";branch={branch}" if branch else "") + (";rport" if rport else "")
    to_suffix = f";tag={to_tag}" if to_tag else ""
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}{parameters}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Alice <sip:alice@example.com>;tag={from_tag}\r\n"
        f"To: Bob <sip:bob@example.net>{to_suffix}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def new_request(
    method: str = "INVITE",
    *,
    call_id: str = "call-1@192.0.2.1",
    cseq: int = 1,
    uri: str = "sip:bob@192.0.2.2",
    to_tag: str | None = None,
    body: bytes = b"",
) -> Request:
    """A request as a TU builds it: no Via, no Max-Forwards (the endpoint adds them)."""
    headers = Headers()
    headers.add("From", "Alice <sip:alice@example.com>;tag=alice-tag")
    headers.add("To", "Bob <sip:bob@example.net>" + (f";tag={to_tag}" if to_tag else ""))
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} {method}")
    headers.add("Contact", "<sip:alice@192.0.2.1:5060>")
    if body:
        headers.add("Content-Type", "application/sdp")
    return Request(method, uri, headers, body)


def ack_for_success(invite: Request, response: Response) -> Request:
    """The TU's ACK of a 2xx (§13.2.2.4): to the Contact, with the response's To."""
    headers = Headers()
    headers.add("From", invite.headers.get("from") or "")
    headers.add("To", response.headers.get("to") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    uri = str(response.contacts[0].uri) if response.contacts else invite.uri_text
    return Request("ACK", uri, headers)


Step = tuple[float, list[tuple[bytes, Flow]], list[SipEvent]]


def step_timers(endpoint: SipEndpoint, until: float = 1000.0) -> list[Step]:
    """Jump from `get_timer()` to `get_timer()`, collecting what each firing produced."""
    steps: list[Step] = []
    while (deadline := endpoint.get_timer()) is not None and deadline <= until:
        endpoint.handle_timer(deadline)
        steps.append((deadline, endpoint.data_to_send(), drain_events(endpoint)))
    return steps


def sending_times(steps: list[Step]) -> list[float]:
    return [now for now, outbound, _ in steps if outbound]


EventT = TypeVar("EventT", bound=SipEvent)


def only(items: list[SipEvent], kind: type[EventT]) -> list[EventT]:
    return [item for item in items if isinstance(item, kind)]


def dropped_reasons(events: list[SipEvent]) -> list[str]:
    return [event.reason for event in events if isinstance(event, MessageDropped)]


# ============================================== timer stepping through the endpoint


def test_client_invite_over_udp_retransmits_then_timer_b_fires() -> None:
    alice = make_endpoint(ALICE, "alice")
    invite = new_request()
    key = alice.send_request(invite, 0.0, BOB_UDP)
    (first,) = alice.data_to_send()
    assert first == (invite.to_bytes(), BOB_UDP)

    steps = step_timers(alice)
    assert sending_times(steps) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(outbound == [first] for _, outbound, _ in steps[:-1])
    assert steps[-1][0] == 32.0
    assert steps[-1][2] == [
        TransactionTimeout(key, "INVITE", True),
        TransactionTerminated(key, True),
    ]
    assert alice.get_timer() is None
    assert alice.table_sizes() == EMPTY_TABLES


def test_client_invite_over_tcp_only_timer_b() -> None:
    alice = make_endpoint(ALICE, "alice")
    destination = Flow(Transport.TCP, BOB)
    alice.send_request(new_request(), 0.0, destination)
    ((data, flow),) = alice.data_to_send()
    assert flow == destination
    assert parse_request(data).top_via.transport == "TCP"
    steps = step_timers(alice)
    assert [now for now, _, _ in steps] == [32.0]
    assert sending_times(steps) == []


def test_client_non_invite_over_udp_timer_e_capped_at_t2_then_timer_f() -> None:
    alice = make_endpoint(ALICE, "alice")
    key = alice.send_request(new_request("OPTIONS"), 0.0, BOB_UDP)
    alice.data_to_send()
    steps = step_timers(alice)
    assert sending_times(steps) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert steps[-1][0] == 32.0
    assert steps[-1][2][0] == TransactionTimeout(key, "OPTIONS", True)


def test_client_non_invite_after_provisional_retransmits_every_t2() -> None:
    alice = make_endpoint(ALICE, "alice")
    bob = make_endpoint(BOB, "bob")
    alice.send_request(new_request("OPTIONS"), 0.0, BOB_UDP)
    ((data, _),) = alice.data_to_send()
    bob.receive_datagram(data, ALICE, 0.1)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    bob.send_response(bob.create_response(received.request, 100), 0.1, received.transaction_key)
    ((trying, flow),) = bob.data_to_send()
    assert flow == ALICE_UDP
    alice.receive_datagram(trying, BOB, 0.2)
    assert [type(event) for event in drain_events(alice)] == [ResponseReceived]
    steps = step_timers(alice)
    assert sending_times(steps) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]


def receive_invite(bob: SipEndpoint, data: bytes | None = None, now: float = 0.0) -> str:
    bob.receive_datagram(data or request_bytes(), ALICE, now)
    events = drain_events(bob)
    (received,) = only(events, RequestReceived)
    assert isinstance(received, RequestReceived) and received.transaction_key is not None
    return received.transaction_key


def test_server_invite_timer_g_and_timer_h() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    ((trying, flow),) = bob.data_to_send()
    assert parse_response(trying).status_code == 100 and flow == ALICE_UDP

    invite = parse_request(request_bytes())
    busy = bob.create_response(invite, 486)
    bob.send_response(busy, 0.0, key)
    ((sent, _),) = bob.data_to_send()
    steps = step_timers(bob)
    assert sending_times(steps) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(outbound == [(sent, ALICE_UDP)] for _, outbound, _ in steps[:-1])
    assert steps[-1][0] == 32.0
    assert steps[-1][2] == [
        TransactionTimeout(key, "INVITE", False),
        TransactionTerminated(key, False),
    ]
    assert bob.table_sizes() == EMPTY_TABLES


def test_server_invite_ack_then_timer_i() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    invite = parse_request(request_bytes())
    busy = bob.create_response(invite, 486)
    bob.send_response(busy, 0.0, key)
    bob.data_to_send()
    step_timers(bob, until=1.5)
    ack = request_bytes("ACK", to_tag=busy.to_address.tag)
    bob.receive_datagram(ack, ALICE, 2.0)
    assert dropped_reasons(drain_events(bob)) == ["ack_absorbed"]
    assert bob.transaction_state(key) is ServerInviteState.CONFIRMED
    bob.receive_datagram(ack, ALICE, 2.5)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    assert bob.data_to_send() == []
    steps = step_timers(bob)
    assert [now for now, _, _ in steps] == [7.0]  # Timer I = T4
    assert steps[0][2] == [TransactionTerminated(key, False)]


def test_server_non_invite_timer_j_and_response_resent() -> None:
    bob = make_endpoint()
    data = request_bytes("OPTIONS")
    bob.receive_datagram(data, ALICE, 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived) and received.transaction_key is not None
    assert bob.data_to_send() == []  # no 100 Trying for non-INVITE
    response = bob.create_response(received.request, 200)
    bob.send_response(response, 1.0, received.transaction_key)
    assert bob.data_to_send() == [(response.to_bytes(), ALICE_UDP)]
    bob.receive_datagram(data, ALICE, 3.0)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    assert bob.data_to_send() == [(response.to_bytes(), ALICE_UDP)]
    steps = step_timers(bob)
    assert [now for now, _, _ in steps] == [33.0]
    assert steps[0][2] == [TransactionTerminated(received.transaction_key, False)]


def test_reliable_transport_zero_timers() -> None:
    bob = make_endpoint()
    bob.connection_opened(3, ALICE, 0.0)
    bob.receive_stream_data(3, request_bytes("OPTIONS", via="SIP/2.0/TCP 192.0.2.1:5060"), 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived) and received.transaction_key is not None
    bob.send_response(bob.create_response(received.request, 200), 0.5, received.transaction_key)
    # Timer J is zero over TCP: the transaction is gone at once.
    assert drain_events(bob) == [TransactionTerminated(received.transaction_key, False)]
    assert bob.get_timer() is None


def test_client_invite_timer_d_32_seconds_over_udp_zero_over_tcp() -> None:
    for destination, expected_timer in ((BOB_UDP, 33.0), (Flow(Transport.TCP, BOB), None)):
        alice = make_endpoint(ALICE, "alice")
        bob = make_endpoint()
        key = alice.send_request(new_request(), 0.0, destination)
        ((data, _),) = alice.data_to_send()
        bob.receive_datagram(data, ALICE, 0.5)
        (received,) = only(drain_events(bob), RequestReceived)
        assert isinstance(received, RequestReceived)
        busy = bob.create_response(received.request, 486)
        alice.receive_datagram(busy.to_bytes(), BOB, 1.0)
        events = drain_events(alice)
        assert [type(event) for event in events][0] is ResponseReceived
        (ack, _), = alice.data_to_send()
        assert parse_request(ack).method == "ACK"
        assert alice.get_timer() == expected_timer
        if expected_timer is None:
            assert events[-1] == TransactionTerminated(key, True)


# ======================================================= retransmissions and matching


def test_request_retransmission_is_absorbed_and_last_response_resent() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    ((trying, _),) = bob.data_to_send()
    bob.receive_datagram(request_bytes(), ALICE, 0.3)
    events = drain_events(bob)
    assert events == [
        MessageDropped(
            "retransmission_absorbed", "INVITE retransmission absorbed in PROCEEDING", 100,
            ALICE_UDP,
        )
    ]
    assert bob.data_to_send() == [(trying, ALICE_UDP)]
    invite = parse_request(request_bytes())
    ringing = bob.create_response(invite, 180)
    bob.send_response(ringing, 0.4, key)
    bob.data_to_send()
    bob.receive_datagram(request_bytes(), ALICE, 0.6)
    assert bob.data_to_send() == [(ringing.to_bytes(), ALICE_UDP)]
    assert bob.counters["retransmission_absorbed"] == 2


def test_100_trying_copies_timestamp_and_has_no_to_tag() -> None:
    bob = make_endpoint()
    receive_invite(bob, request_bytes(extra="Timestamp: 54.2\r\n"))
    ((trying, _),) = bob.data_to_send()
    response = parse_response(trying)
    assert response.headers.get("timestamp") == "54.2"
    assert response.to_address.tag is None


def deferring_endpoint(delay: float = 0.2) -> SipEndpoint:
    config = EndpointConfig(BOB[0], BOB[1], trying_delay=delay)
    return SipEndpoint(config, random_token=tokens("bob"))


def statuses(endpoint: SipEndpoint) -> list[int]:
    return [parse_response(data).status_code for data, _ in endpoint.data_to_send()]


def test_a_deferred_100_trying_is_not_sent_when_the_tu_answers_within_the_delay() -> None:
    """§17.2.1: the 100 is owed unless the TU answers within 200 ms."""
    bob = deferring_endpoint()
    key = receive_invite(bob, now=10.0)
    assert bob.data_to_send() == []
    assert bob.get_timer() == pytest.approx(10.2)
    invite = parse_request(request_bytes())
    bob.send_response(bob.create_response(invite, 180), 10.05, key)
    assert statuses(bob) == [180]
    bob.handle_timer(10.3)
    assert bob.data_to_send() == []
    # A final response first: no 100 either; the INVITE's own timers run as before.
    carol = deferring_endpoint()
    key = receive_invite(carol, now=0.0)
    carol.send_response(carol.create_response(invite, 486), 0.01, key)
    assert statuses(carol) == [486]
    assert {status for _, status in step_until_quiet(carol)} == {486}  # Timer G only


def step_until_quiet(endpoint: SipEndpoint) -> list[tuple[float, int]]:
    """(time, status) of every response the endpoint's timers send, in order."""
    sent: list[tuple[float, int]] = []
    while (deadline := endpoint.get_timer()) is not None and deadline < 1000.0:
        endpoint.handle_timer(deadline)
        sent.extend((deadline, status) for status in statuses(endpoint))
    return sent


def test_a_deferred_100_trying_goes_when_the_delay_runs_out() -> None:
    bob = deferring_endpoint()
    receive_invite(bob, request_bytes(extra="Timestamp: 54.2\r\n"), now=5.0)
    bob.handle_timer(5.1)
    assert bob.data_to_send() == []
    bob.handle_timer(5.2)
    ((trying, flow),) = bob.data_to_send()
    response = parse_response(trying)
    assert (response.status_code, flow) == (100, ALICE_UDP)
    assert response.headers.get("timestamp") == "54.2"  # §8.2.6.1
    assert response.to_address.tag is None
    assert bob.get_timer() is None  # nothing more until the TU answers


def test_a_retransmitted_invite_gets_the_deferred_100_at_once_and_only_once() -> None:
    bob = deferring_endpoint()
    key = receive_invite(bob, now=0.0)
    bob.receive_datagram(request_bytes(), ALICE, 0.1)
    assert statuses(bob) == [100]
    bob.handle_timer(0.2)
    assert bob.data_to_send() == []
    bob.receive_datagram(request_bytes(), ALICE, 0.6)  # the 100 is resent, as always
    assert statuses(bob) == [100]
    invite = parse_request(request_bytes())
    bob.send_response(bob.create_response(invite, 200), 0.7, key)
    assert statuses(bob) == [200]


def test_create_response_copies_headers_and_keeps_one_to_tag_per_transaction() -> None:
    bob = make_endpoint()
    data = request_bytes(
        via="SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/UDP 192.0.2.9;branch=x",
        branch=None,
        rport=False,
        extra="Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa9\r\n",
    )
    bob.receive_datagram(data, ("192.0.2.7", 5060), 0.0)
    (received,) = only(drain_events(bob), RequestReceived)
    assert isinstance(received, RequestReceived)
    request = received.request
    ringing = bob.create_response(request, 180)
    ok = bob.create_response(request, 200)
    assert ringing.to_address.tag == ok.to_address.tag == "bob1"
    assert [str(via) for via in ok.vias] == [str(via) for via in request.vias]
    assert len(ok.vias) == 3 and ok.top_via.received == "192.0.2.7"
    assert ok.headers.get("from") == request.headers.get("from")
    assert ok.call_id == request.call_id and str(ok.cseq) == "1 INVITE"
    assert bob.create_response(request, 404, "Nobody Here", to_tag="mine").reason == "Nobody Here"
    with pytest.raises(LocalProtocolError):
        bob.create_response(parse_request(request_bytes("ACK")), 200)


def test_received_and_rport_on_the_top_via() -> None:
    bob = make_endpoint()
    # Sent-by is a name and asks for rport: both filled in (RFC 3581 §4).
    bob.receive_datagram(
        request_bytes("OPTIONS", via="SIP/2.0/UDP alice.example.com:5070"), ("198.51.100.9", 40001),
        0.0,
    )
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    via = received.request.top_via
    assert via.received == "198.51.100.9" and via.rport == 40001
    assert received.request.headers.get_all("via")[0].startswith("SIP/2.0/UDP alice.example.com")
    # Sent-by equal to the source and no rport: the Via is left alone (§18.2.1).
    bob.receive_datagram(request_bytes("OPTIONS", branch="z9hG4bKx2", rport=False), ALICE, 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    assert received.request.top_via.received is None
    assert received.request.top_via.rport is None


@pytest.mark.parametrize(
    ("via", "rport", "source", "expected"),
    [
        # rport: back to the source address and port (RFC 3581 §4).
        ("SIP/2.0/UDP alice.example.com:5070", True, ("198.51.100.9", 40001),
         Flow(Transport.UDP, ("198.51.100.9", 40001))),
        # no rport: `received` and the sent-by port.
        ("SIP/2.0/UDP alice.example.com:5070", False, ("198.51.100.9", 40001),
         Flow(Transport.UDP, ("198.51.100.9", 5070))),
        # no port in sent-by: 5060.
        ("SIP/2.0/UDP 198.51.100.9", False, ("198.51.100.9", 40001),
         Flow(Transport.UDP, ("198.51.100.9", 5060))),
        # maddr wins (§18.2.2).
        ("SIP/2.0/UDP alice.example.com:5070;maddr=239.255.255.1", False,
         ("198.51.100.9", 40001), Flow(Transport.UDP, ("239.255.255.1", 5070))),
        # The Via says TCP but the request came over UDP: answer over UDP.
        ("SIP/2.0/TCP alice.example.com:5070", True, ("198.51.100.9", 40001),
         Flow(Transport.UDP, ("198.51.100.9", 40001))),
    ],
)
def test_response_routing_over_udp(
    via: str, rport: bool, source: Address, expected: Flow
) -> None:
    bob = make_endpoint()
    bob.receive_datagram(request_bytes("OPTIONS", via=via, rport=rport), source, 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    bob.send_response(bob.create_response(received.request, 200), 0.0, received.transaction_key)
    ((_, flow),) = bob.data_to_send()
    assert flow == expected


def test_response_routing_over_tcp_uses_the_connection_then_reconnects() -> None:
    bob = make_endpoint()
    bob.connection_opened(9, ("198.51.100.9", 40001), 0.0)
    bob.receive_stream_data(
        9, request_bytes(via="SIP/2.0/TCP alice.example.com:5070", rport=True), 0.0
    )
    (received,) = only(drain_events(bob), RequestReceived)
    assert isinstance(received, RequestReceived) and received.transaction_key is not None
    assert received.flow == Flow(Transport.TCP, ("198.51.100.9", 40001), 9)
    ((_, flow),) = bob.data_to_send()  # 100 Trying on the same connection
    assert flow == Flow(Transport.TCP, ("198.51.100.9", 40001), 9)
    bob.connection_closed(9, 0.1)
    bob.send_response(bob.create_response(received.request, 486), 0.2, received.transaction_key)
    # §18.2.2: a new connection to `received` and the sent-by port.
    ((_, flow),) = bob.data_to_send()
    assert flow == Flow(Transport.TCP, ("198.51.100.9", 5070), None)


def test_stateless_response_routing_from_the_via() -> None:
    bob = make_endpoint()
    request = parse_request(
        request_bytes("OPTIONS", via="SIP/2.0/UDP 198.51.100.9:5070;received=203.0.113.5")
    )
    bob.send_response(bob.create_response(request, 403), 0.0)
    ((_, flow),) = bob.data_to_send()
    assert flow == Flow(Transport.UDP, ("203.0.113.5", 5070))
    tcp_request = parse_request(request_bytes("OPTIONS", via="SIP/2.0/TCP 198.51.100.9:5070"))
    bob.send_response(bob.create_response(tcp_request, 403), 0.0)
    ((_, flow),) = bob.data_to_send()
    assert flow == Flow(Transport.TCP, ("198.51.100.9", 5070), None)
    with pytest.raises(LocalProtocolError):
        bob.send_response(bob.create_response(request, 200), 0.0, "no such transaction")


def test_ack_matches_invite_transaction_and_other_acks_go_up() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    # An ACK with another branch (the ACK of a 2xx, §13.2.2.4) matches no transaction.
    stray_ack = request_bytes("ACK", branch="z9hG4bKother", to_tag="someone")
    bob.receive_datagram(stray_ack, ALICE, 0.1)
    (event,) = drain_events(bob)
    assert isinstance(event, RequestReceived) and event.transaction_key is None
    # The same branch before a final response: dropped, the transaction unchanged.
    bob.receive_datagram(request_bytes("ACK"), ALICE, 0.2)
    assert dropped_reasons(drain_events(bob)) == ["stray_ack"]
    assert bob.transaction_state(key) is ServerInviteState.PROCEEDING


def test_response_matching_stray_and_via_mismatch() -> None:
    alice = make_endpoint(ALICE, "alice")
    key = alice.send_request(new_request("OPTIONS"), 0.0, BOB_UDP)
    ((data, _),) = alice.data_to_send()
    request = parse_request(data)
    assert request.top_via.branch == "z9hG4bKalice1"
    assert key == "client|z9hg4bkalice1|OPTIONS"
    bob = make_endpoint()
    ok = bob.create_response(request, 200)

    # Same branch, other method: another transaction (§17.1.3), so stray.
    other = bob.create_response(request, 200)
    other.headers.set("CSeq", "1 INFO")
    alice.receive_datagram(other.to_bytes(), BOB, 0.1)
    assert dropped_reasons(drain_events(alice)) == ["stray_response"]

    # A top Via that is not ours (§18.1.2).
    foreign = bob.create_response(request, 200)
    foreign.headers.set("Via", "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKalice1")
    alice.receive_datagram(foreign.to_bytes(), BOB, 0.1)
    assert dropped_reasons(drain_events(alice)) == ["via_mismatch"]

    alice.receive_datagram(ok.to_bytes(), BOB, 0.2)
    (event,) = drain_events(alice)
    assert isinstance(event, ResponseReceived) and event.transaction_key == key
    alice.receive_datagram(ok.to_bytes(), BOB, 0.3)
    assert dropped_reasons(drain_events(alice)) == ["retransmission_absorbed"]
    assert alice.counters == {
        "stray_response": 1, "via_mismatch": 1, "retransmission_absorbed": 1
    }


def test_rfc2543_request_creates_transaction_and_retransmission_is_absorbed() -> None:
    data = (CORPUS / "inv2543.dat").read_bytes()
    assert b"branch" not in data
    bob = make_endpoint()
    source = ("192.0.2.77", 5060)
    bob.receive_datagram(data, source, 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived) and received.transaction_key is not None
    key = received.transaction_key
    ((trying, flow),) = bob.data_to_send()
    assert parse_response(trying).status_code == 100
    assert flow == Flow(Transport.UDP, ("192.0.2.77", 5060))  # `received`, port 5060

    bob.receive_datagram(data, source, 0.4)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    assert bob.data_to_send() == [(trying, flow)]

    # The RFC 2543 ACK: same Request-URI, From, Call-ID, CSeq number and Via; the To
    # tag of our final response (§17.2.3).
    busy = bob.create_response(received.request, 486)
    bob.send_response(busy, 0.5, key)
    bob.data_to_send()
    ack = (
        b"ACK sip:UserB@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP iftgw.example.com\r\n"
        b"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
        b"To: " + (busy.headers.get("to") or "").encode() + b"\r\n"
        b"Call-ID: inv2543.1717@ift.client.example.com\r\n"
        b"CSeq: 56 ACK\r\n\r\n"
    )
    bob.receive_datagram(ack.replace(b"tag=", b"tag=x"), source, 0.6)  # wrong tag
    (other,) = drain_events(bob)
    assert isinstance(other, RequestReceived) and other.transaction_key is None
    bob.receive_datagram(ack, source, 0.7)
    assert dropped_reasons(drain_events(bob)) == ["ack_absorbed"]
    assert bob.transaction_state(key) is ServerInviteState.CONFIRMED


def test_rfc2543_cancel_matches_its_invite() -> None:
    data = (CORPUS / "inv2543.dat").read_bytes()
    bob = make_endpoint()
    source = ("192.0.2.77", 5060)
    bob.receive_datagram(data, source, 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    bob.data_to_send()  # the 100 Trying
    cancel = data.split(b"\r\n\r\n")[0].replace(b"INVITE sip:", b"CANCEL sip:")
    cancel = cancel.replace(b"56 INVITE", b"56 CANCEL") + b"\r\nContent-Length: 0\r\n\r\n"
    bob.receive_datagram(cancel, source, 0.1)
    (event,) = drain_events(bob)
    assert isinstance(event, CancelReceived)
    assert event.invite_transaction_key == received.transaction_key
    ((data, _),) = bob.data_to_send()
    assert parse_response(data).status_code == 200


def test_badbranch_bare_cookie_uses_rfc2543_matching() -> None:
    data = (CORPUS / "badbranch.dat").read_bytes()
    bob = make_endpoint()
    bob.receive_datagram(data, ("192.0.2.1", 5060), 0.0)
    (received,) = drain_events(bob)
    assert isinstance(received, RequestReceived)
    assert (received.transaction_key or "").startswith("server-2543|")
    bob.receive_datagram(data, ("192.0.2.1", 5060), 0.1)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]


# ================================================================================ CANCEL


def test_cancel_is_answered_and_matched_to_its_invite() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    bob.data_to_send()
    cancel = request_bytes("CANCEL")
    bob.receive_datagram(cancel, ALICE, 1.0)
    (event,) = drain_events(bob)
    assert isinstance(event, CancelReceived) and event.invite_transaction_key == key
    ((data, flow),) = bob.data_to_send()
    cancel_ok = parse_response(data)
    assert (cancel_ok.status_code, cancel_ok.cseq.method, flow) == (200, "CANCEL", ALICE_UDP)

    # The CANCEL's own retransmission gets the 200 again, nothing goes up.
    bob.receive_datagram(cancel, ALICE, 1.2)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    assert bob.data_to_send() == [(data, ALICE_UDP)]

    # The TU ends the INVITE with 487; §9.2: the same To tag as the 200 to the CANCEL.
    invite = parse_request(request_bytes())
    terminated = bob.create_response(invite, 487)
    assert terminated.to_address.tag == cancel_ok.to_address.tag
    bob.send_response(terminated, 1.3, key)
    assert bob.transaction_state(key) is ServerInviteState.COMPLETED

    # A late retransmission of the CANCEL only gets its 200 again.
    bob.receive_datagram(cancel, ALICE, 1.4)
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    assert [parse_response(data).status_code for data, _ in bob.data_to_send()] == [487, 200]


def test_cancel_after_final_response_and_unmatched_cancel() -> None:
    bob = make_endpoint()
    key = receive_invite(bob)
    invite = parse_request(request_bytes())
    bob.send_response(bob.create_response(invite, 486), 0.1, key)
    bob.data_to_send()
    bob.receive_datagram(request_bytes("CANCEL"), ALICE, 0.2)
    (event,) = drain_events(bob)
    assert isinstance(event, MessageDropped)
    assert (event.reason, event.status_code) == ("cancel_after_final_response", 200)
    bob.data_to_send()

    bob.receive_datagram(request_bytes("CANCEL", branch="z9hG4bKnothing"), ALICE, 0.3)
    (event,) = drain_events(bob)
    assert isinstance(event, MessageDropped)
    assert (event.reason, event.status_code) == ("cancel_unmatched", 481)
    ((data, _),) = bob.data_to_send()
    assert parse_response(data).status_code == 481


def test_send_cancel_waits_for_a_provisional_response() -> None:
    alice = make_endpoint(ALICE, "alice")
    invite = new_request()
    invite.headers.add("Route", "<sip:proxy.example.net;lr>")
    invite_key = alice.send_request(invite, 0.0, BOB_UDP)
    alice.data_to_send()
    cancel_key = alice.send_cancel(invite_key, 0.1)
    assert alice.send_cancel(invite_key, 0.15) == cancel_key  # idempotent
    assert alice.data_to_send() == []  # §9.1: not before a provisional
    assert alice.table_sizes()["pending_cancels"] == 1

    bob = make_endpoint()
    trying = bob.create_response(invite, 100)
    alice.receive_datagram(trying.to_bytes(), BOB, 0.2)
    ((data, flow),) = alice.data_to_send()
    assert flow == BOB_UDP
    cancel = parse_request(data)
    # §9.1: the INVITE's Request-URI, Call-ID, To, From, CSeq number, Via and Route.
    assert cancel.method == "CANCEL" and cancel.uri_text == invite.uri_text
    assert cancel.call_id == invite.call_id
    assert cancel.headers.get("to") == invite.headers.get("to")
    assert cancel.headers.get("from") == invite.headers.get("from")
    assert str(cancel.cseq) == f"{invite.cseq.number} CANCEL"
    assert [str(via) for via in cancel.vias] == [str(invite.top_via)]
    assert cancel.headers.get_all("route") == ["<sip:proxy.example.net;lr>"]
    assert alice.transaction_state(cancel_key) is not None
    assert cancel_key == f"client|{(invite.top_via.branch or '').lower()}|CANCEL"

    # The CANCEL's own 200 and the INVITE's 487 are told apart by CSeq method.
    cancel_ok = bob.create_response(cancel, 200)
    alice.receive_datagram(cancel_ok.to_bytes(), BOB, 0.3)
    terminated = bob.create_response(invite, 487)
    alice.receive_datagram(terminated.to_bytes(), BOB, 0.35)
    events = only(drain_events(alice), ResponseReceived)
    assert [(event.transaction_key, event.response.status_code) for event in events
            ] == [(invite_key, 100), (cancel_key, 200), (invite_key, 487)]
    with pytest.raises(LocalProtocolError):
        alice.send_cancel(invite_key, 0.4)  # a final response arrived: §9.1


def test_held_cancel_is_dropped_when_the_invite_ends_first() -> None:
    alice = make_endpoint(ALICE, "alice")
    invite_key = alice.send_request(new_request(), 0.0, BOB_UDP)
    ((data, _),) = alice.data_to_send()
    cancel_key = alice.send_cancel(invite_key, 0.1)
    busy = make_endpoint().create_response(parse_request(data), 486)
    alice.receive_datagram(busy.to_bytes(), BOB, 0.2)
    assert TransactionTerminated(cancel_key, True) in drain_events(alice)
    outbound = alice.data_to_send()
    assert [parse_request(data).method for data, _ in outbound] == ["ACK"]
    assert alice.table_sizes()["pending_cancels"] == 0
    with pytest.raises(LocalProtocolError):
        alice.send_cancel("client|unknown|INVITE", 0.3)


# ======================================================================= sending


@pytest.mark.parametrize(
    ("host", "transport"),
    [("192.0.2.1", Transport.UDP), ("192.0.2.1", Transport.TCP), ("::1", Transport.UDP),
     ("[2001:db8::1]", Transport.UDP), ("switch.example.com", Transport.UDP)],
)
def test_inserted_via_typed_value_is_what_parsing_gives(host: str, transport: Transport) -> None:
    """The endpoint keeps the parsed form of the Via it inserts instead of parsing the
    text it wrote: it must be exactly what parsing that text gives."""
    endpoint = SipEndpoint(EndpointConfig(host, 5062), random_token=tokens("t"))
    request = new_request("OPTIONS")
    endpoint.send_request(request, 0.0, Flow(transport, BOB))
    (text,) = request.headers.get_all("via")
    remembered = parse_via(text)  # from the Via cache, where the endpoint put it
    clear_parse_caches()
    (parsed,) = parse_message(request.to_bytes()).vias
    assert parsed is not remembered
    assert request.vias == [parsed] == [remembered]
    assert str(request.top_via) == text


def test_send_request_inserts_via_and_max_forwards() -> None:
    alice = make_endpoint(ALICE, "alice")
    request = new_request("OPTIONS")
    key = alice.send_request(request, 0.0, BOB_UDP)
    assert request.headers.get_all("via") == [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKalice1;rport"
    ]
    assert request.headers.get("max-forwards") == "70"
    assert key == "client|z9hg4bkalice1|OPTIONS"
    assert alice.transaction_state(key) is not None
    # A TU-chosen Via with a branch is kept.
    own = new_request("OPTIONS", cseq=2)
    own.headers.insert_first("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmine")
    assert alice.send_request(own, 0.0, BOB_UDP) == "client|z9hg4bkmine|OPTIONS"
    with pytest.raises(LocalProtocolError):
        alice.send_request(own, 0.0, BOB_UDP)  # the branch is in use
    with pytest.raises(LocalProtocolError):
        alice.send_request(new_request("ACK"), 0.0, BOB_UDP)
    broken = new_request("OPTIONS")
    broken.headers.remove("call-id")
    with pytest.raises(LocalProtocolError):
        alice.send_request(broken, 0.0, BOB_UDP)


def test_large_udp_request_goes_over_tcp() -> None:
    alice = make_endpoint(ALICE, "alice")
    small = new_request("MESSAGE", body=b"x" * 100)
    alice.send_request(small, 0.0, BOB_UDP)
    ((_, flow),) = alice.data_to_send()
    assert flow == BOB_UDP

    alice = make_endpoint(ALICE, "alice")
    large = new_request("MESSAGE", body=b"x" * 1400)
    key = alice.send_request(large, 0.0, BOB_UDP)
    ((data, flow),) = alice.data_to_send()
    # §18.1.1: over 1300 bytes (path MTU unknown), and the top Via says TCP now.
    assert len(data) > 1300
    assert flow == Flow(Transport.TCP, BOB, None)
    via = parse_request(data).top_via
    assert via.transport == "TCP" and via.branch == "z9hG4bKalice1"
    assert key == "client|z9hg4bkalice1|MESSAGE"
    # Reliable now: no Timer E, only Timer F.
    steps = step_timers(alice)
    assert [(when, outbound) for when, outbound, _ in steps] == [(32.0, [])]
    assert steps[0][2][0] == TransactionTimeout(key, "MESSAGE", True)


def test_udp_size_threshold_is_configurable() -> None:
    alice = make_endpoint(ALICE, "alice", udp_size_threshold=200)
    alice.send_request(new_request("OPTIONS"), 0.0, BOB_UDP)
    ((_, flow),) = alice.data_to_send()
    assert flow.transport is Transport.TCP


def test_send_ack_for_2xx_is_stateless_with_a_new_branch() -> None:
    alice = make_endpoint(ALICE, "alice")
    invite = new_request()
    alice.send_request(invite, 0.0, BOB_UDP)
    alice.data_to_send()
    ok = make_endpoint().create_response(invite, 200)
    ack = ack_for_success(invite, ok)
    alice.send_ack_for_2xx(ack, 0.1, BOB_UDP)
    ((data, flow),) = alice.data_to_send()
    sent = parse_request(data)
    assert flow == BOB_UDP and sent.method == "ACK"
    assert sent.top_via.branch == "z9hG4bKalice2" != invite.top_via.branch
    assert alice.table_sizes()["client_transactions"] == 1  # only the INVITE
    # Resending the same ACK object for a retransmitted 2xx keeps its branch.
    alice.send_ack_for_2xx(ack, 0.2, BOB_UDP)
    assert alice.data_to_send() == [(data, BOB_UDP)]
    with pytest.raises(LocalProtocolError):
        alice.send_ack_for_2xx(new_request("BYE"), 0.3, BOB_UDP)


def test_responses_to_ack_are_refused() -> None:
    bob = make_endpoint()
    ack = parse_request(request_bytes("ACK"))
    response = Response(200, None, Headers())
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        response.headers.add(name, ack.headers.get(name) or "")
    with pytest.raises(LocalProtocolError):
        bob.send_response(response, 0.0)


def test_transport_error_ends_the_transactions_on_the_flow() -> None:
    alice = make_endpoint(ALICE, "alice")
    key = alice.send_request(new_request(), 0.0, BOB_UDP)
    elsewhere = Flow(Transport.UDP, ("192.0.2.9", 5060))
    other = alice.send_request(new_request("OPTIONS"), 0.0, elsewhere)
    alice.transport_error(BOB_UDP, 0.1, "ICMP port unreachable")
    events = drain_events(alice)
    assert TransportError(key, True, "ICMP port unreachable") in events
    assert alice.transaction_state(key) is None
    assert alice.transaction_state(other) is not None


# ======================================================================= merged requests


def test_merged_request_detection() -> None:
    bob = make_endpoint()
    bob.receive_datagram(request_bytes(branch="z9hG4bKpath1"), ALICE, 0.0)
    (first,) = only(drain_events(bob), RequestReceived)
    assert isinstance(first, RequestReceived)
    assert not bob.is_merged_request(first.request)
    # The same request forked back to us by another path (§8.2.2.2).
    bob.receive_datagram(request_bytes(branch="z9hG4bKpath2"), ("192.0.2.5", 5060), 0.1)
    (second,) = only(drain_events(bob), RequestReceived)
    assert isinstance(second, RequestReceived)
    assert bob.is_merged_request(second.request)
    # A request with a To tag is mid-dialog: never merged.
    bob.receive_datagram(request_bytes("BYE", branch="z9hG4bKbye", to_tag="t"), ALICE, 0.2)
    (bye,) = only(drain_events(bob), RequestReceived)
    assert isinstance(bye, RequestReceived)
    assert not bob.is_merged_request(bye.request)


# ====================================================================== malformed input


def test_malformed_request_answered_statelessly_with_detail() -> None:
    bob = make_endpoint()
    data = request_bytes("OPTIONS", cseq_method="INVITE", via="SIP/2.0/UDP client.example.com")
    bob.receive_datagram(data, ("198.51.100.3", 5999), 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, MessageDropped)
    assert (event.reason, event.status_code) == ("malformed", 400)
    ((response_data, flow),) = bob.data_to_send()
    response = parse_response(response_data)
    assert response.status_code == 400
    assert response.reason == "Bad Request (CSeq method INVITE does not match OPTIONS)"
    assert response.to_address.tag == "bob1"
    assert response.top_via.received == "198.51.100.3" and response.top_via.rport == 5999
    assert flow == Flow(Transport.UDP, ("198.51.100.3", 5999))
    assert bob.counters["malformed"] == 1
    assert bob.table_sizes() == EMPTY_TABLES  # stateless


def test_malformed_ack_and_response_are_never_answered() -> None:
    bob = make_endpoint()
    bob.receive_datagram(request_bytes("ACK", cseq_method="INVITE"), ALICE, 0.0)
    bob.receive_datagram(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.2\r\n\r\n", ALICE, 0.0)
    assert dropped_reasons(drain_events(bob)) == ["malformed", "malformed"]
    assert bob.data_to_send() == []


def test_unanswerable_requests_are_dropped() -> None:
    bob = make_endpoint()
    bob.receive_datagram(b"OPTIONS sip:x@y SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n", ALICE, 0.0)
    bob.receive_datagram(b"\x00\x01garbage", ALICE, 0.0)
    bob.receive_datagram(b"\r\n\r\n", ALICE, 0.0)  # a keep-alive: not a message at all
    assert dropped_reasons(drain_events(bob)) == ["no_usable_via", "no_usable_via"]
    assert bob.data_to_send() == []
    assert bob.counters["no_usable_via"] == 2 and bob.counters["keepalive_pings"] == 1


EXPECTED_ANSWERS = {
    # Requests whose Via, From, To, Call-ID and CSeq can be read: answered.
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "quotbal": 400,
    "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400,
    "baddate": 400, "regbadct": 400, "badaspec": 400, "baddn": 400, "badvers": 505,
    "mismatch01": 400, "mismatch02": 400, "multi01": 400, "mcl01": 400,
    "insuf": 400,  # no Call-ID, From or To, but a Via and a CSeq: RFC 4475 §3.3.1
}
UNANSWERED = {
    "scalarlg": "malformed",  # a response
    "bigcode": "malformed",  # a response
    "test": "no_usable_via",
}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_rfc4475_message_ends_in_exactly_one_event(name: str) -> None:
    data = (CORPUS / f"{name}.dat").read_bytes()
    bob = make_endpoint()
    source = ("198.51.100.20", 5062)
    bob.receive_datagram(data, source, 0.0)
    events = drain_events(bob)
    outbound = bob.data_to_send()
    message_events = [event for event in events if not isinstance(event, TransactionTerminated)]
    assert len(message_events) == 1, events
    (event,) = message_events
    if MANIFEST[name]["expected"] == "invalid":
        assert isinstance(event, MessageDropped)
        if name in UNANSWERED:
            assert (event.reason, event.status_code) == (UNANSWERED[name], None)
            assert outbound == []
        else:
            assert (event.reason, event.status_code) == ("malformed", EXPECTED_ANSWERS[name])
            ((response_data, flow),) = outbound
            response = parse_message(response_data)  # well-formed enough to parse
            assert isinstance(response, Response)
            assert response.status_code == EXPECTED_ANSWERS[name]
            assert response.reason.startswith(
                ("Bad Request (", "Version Not Supported (")
            )
            assert flow.remote[0] == source[0]
    elif data.startswith(b"SIP/2.0"):
        # Valid responses for someone else: their sent-by is not ours (§18.1.2).
        assert isinstance(event, MessageDropped) and event.reason == "via_mismatch"
    else:
        assert isinstance(event, RequestReceived), event
        assert event.transaction_key is not None
        if event.request.method == "INVITE":
            assert [parse_response(data).status_code for data, _ in outbound] == [100]


def test_insufficient_headers_are_answered_with_what_there_is() -> None:
    """RFC 4475 §3.3.1: no Call-ID, From or To; the Via and CSeq are enough for the
    client to match a 400."""
    bob = make_endpoint()
    bob.receive_datagram((CORPUS / "insuf.dat").read_bytes(), ("192.0.2.95", 5060), 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, MessageDropped)
    assert (event.reason, event.status_code) == ("malformed", 400)
    ((data, flow),) = bob.data_to_send()
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 400
    assert response.top_via.branch == "z9hG4bKkdj.insuf"
    assert str(response.cseq) == "193942 INVITE"
    assert [name for name, _ in response.headers] == ["Via", "CSeq", "Content-Length"]
    assert flow == Flow(Transport.UDP, ("192.0.2.95", 5060))
    # Without a CSeq nothing could match an answer: dropped.
    bob.receive_datagram(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.95\r\n\r\n",
                         ("192.0.2.95", 5060), 0.0)
    assert dropped_reasons(drain_events(bob)) == ["malformed"]
    assert bob.data_to_send() == []


def test_answered_malformed_request_keeps_its_protocol_version_in_via() -> None:
    bob = make_endpoint()
    bob.receive_datagram((CORPUS / "badvers.dat").read_bytes(), ("198.51.100.20", 5062), 0.0)
    ((data, flow),) = bob.data_to_send()
    assert data.startswith(b"SIP/2.0 505 Version Not Supported (SIP version SIP/7.0")
    assert b"Via: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw;received=198.51.100.20" in data
    assert flow == Flow(Transport.UDP, ("198.51.100.20", 5060))


# ============================================================================= TCP


def test_tcp_stream_framing_keepalive_and_unframable_stream() -> None:
    bob = make_endpoint()
    remote = ("198.51.100.30", 40404)
    bob.connection_opened(5, remote, 0.0)
    data = request_bytes("OPTIONS", via="SIP/2.0/TCP 198.51.100.30:5060", body=b"hello")
    flow = Flow(Transport.TCP, remote, 5)
    # A message in three pieces, then a ping, then two messages in one read.
    bob.receive_stream_data(5, data[:10], 0.0)
    bob.receive_stream_data(5, data[10:-3], 0.0)
    assert drain_events(bob) == []
    bob.receive_stream_data(5, data[-3:] + b"\r\n\r\n", 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, RequestReceived) and event.flow == flow
    assert event.request.body == b"hello"
    assert bob.data_to_send() == [(b"\r\n", flow)]  # RFC 5626 §4.4.1 pong
    second = request_bytes("OPTIONS", branch="z9hG4bKs2", via="SIP/2.0/TCP 198.51.100.30:5060")
    third = request_bytes("OPTIONS", branch="z9hG4bKs3", via="SIP/2.0/TCP 198.51.100.30:5060")
    bob.receive_stream_data(5, second + third, 0.1)
    assert [type(event) for event in drain_events(bob)] == [RequestReceived, RequestReceived]

    # A stream that cannot be framed: reported, and the adapter is asked to close it.
    bob.receive_stream_data(5, b"OPTIONS sip:x SIP/2.0\r\nContent-Length: banana\r\n\r\n", 0.2)
    (event,) = drain_events(bob)
    assert isinstance(event, MessageDropped) and event.reason == "unframable_stream"
    assert bob.connections_to_close() == [5]
    assert bob.connections_to_close() == []
    bob.receive_stream_data(5, data, 0.3)  # the rest of that stream is ignored
    assert drain_events(bob) == []
    bob.connection_closed(5, 0.4)
    assert bob.table_sizes()["connections"] == 0
    with pytest.raises(LocalProtocolError):
        bob.receive_stream_data(5, data, 0.5)


def test_tcp_malformed_request_is_answered_on_the_connection() -> None:
    bob = make_endpoint()
    remote = ("198.51.100.30", 40404)
    bob.connection_opened(8, remote, 0.0)
    data = request_bytes("OPTIONS", cseq_method="BYE", via="SIP/2.0/TCP 198.51.100.30:5060")
    bob.receive_stream_data(8, data, 0.0)
    ((response, flow),) = bob.data_to_send()
    assert parse_response(response).status_code == 400
    assert flow == Flow(Transport.TCP, remote, 8)


# ================================================== two endpoints over a lossy network


@dataclass
class Peer:
    """An endpoint and a scripted TU."""

    name: str
    address: Address
    endpoint: SipEndpoint
    events: list[tuple[float, SipEvent]] = field(default_factory=list)
    behaviour: Callable[[Peer, SipEvent, float], None] | None = None


@dataclass(frozen=True)
class LinkQuality:
    """How badly the in-memory network behaves.

    Attributes:
        loss: probability that a datagram is lost.
        duplication: probability that a datagram arrives twice.
        jitter: each copy is delayed by up to this much on top of the latency, so
            datagrams overtake each other.
        latency: the smallest delay.
    """

    loss: float = 0.0
    duplication: float = 0.0
    jitter: float = 0.0
    latency: float = 0.01


PERFECT = LinkQuality()
LOSSY = LinkQuality(loss=0.25, duplication=0.2, jitter=0.3)


class Network:
    """Datagrams between peers. Each datagram may be lost or duplicated, and each copy
    is delayed by a random amount (which reorders them), all from a seeded Random.
    `drop(data)` returning True loses a chosen datagram."""

    def __init__(
        self,
        peers: list[Peer],
        rng: random.Random | None = None,
        quality: LinkQuality = PERFECT,
        drop: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.peers = {peer.address: peer for peer in peers}
        self.rng = rng or random.Random(0)
        self.quality = quality
        self.drop = drop
        self.in_flight: list[tuple[float, int, bytes, Address, Address]] = []
        self.sequence = itertools.count()
        self.sent = 0
        self.lost = 0
        self.duplicated = 0

    def settle(self, now: float) -> None:
        """Hand events to the TUs and put what they send on the wire, until quiet."""
        busy = True
        while busy:
            busy = False
            for peer in self.peers.values():
                while (event := peer.endpoint.next_event()) is not None:
                    busy = True
                    peer.events.append((now, event))
                    if peer.behaviour is not None:
                        peer.behaviour(peer, event, now)
                for data, flow in peer.endpoint.data_to_send():
                    busy = True
                    assert flow.transport is Transport.UDP
                    self._transmit(data, peer.address, flow.remote, now)

    def _transmit(self, data: bytes, source: Address, destination: Address, now: float) -> None:
        self.sent += 1
        quality = self.quality
        if self.rng.random() < quality.loss or (self.drop is not None and self.drop(data)):
            self.lost += 1
            return
        copies = 1
        if self.rng.random() < quality.duplication:
            self.duplicated += 1
            copies = 2
        for _ in range(copies):
            arrival = now + quality.latency + self.rng.uniform(0, quality.jitter)
            heapq.heappush(
                self.in_flight, (arrival, next(self.sequence), data, source, destination)
            )

    def run(self, until: float) -> float:
        now = 0.0
        self.settle(now)
        while True:
            deadlines = [peer.endpoint.get_timer() for peer in self.peers.values()]
            candidates = [deadline for deadline in deadlines if deadline is not None]
            if self.in_flight:
                candidates.append(self.in_flight[0][0])
            if not candidates or min(candidates) > until:
                return now
            now = max(now, min(candidates))
            while self.in_flight and self.in_flight[0][0] <= now:
                _, _, data, source, destination = heapq.heappop(self.in_flight)
                self.peers[destination].endpoint.receive_datagram(data, source, now)
                self.settle(now)
            for peer in self.peers.values():
                deadline = peer.endpoint.get_timer()
                if deadline is not None and deadline <= now:
                    peer.endpoint.handle_timer(now)
            self.settle(now)


def answering_uas(status_code: int) -> Callable[[Peer, SipEvent, float], None]:
    """A UAS that rings, then answers each new INVITE with `status_code` and each
    OPTIONS with 200."""

    def behaviour(peer: Peer, event: SipEvent, now: float) -> None:
        endpoint = peer.endpoint
        if not isinstance(event, RequestReceived) or event.transaction_key is None:
            return
        request = event.request
        if request.method == "INVITE":
            endpoint.send_response(
                endpoint.create_response(request, 180), now, event.transaction_key
            )
            final = endpoint.create_response(request, status_code)
            final.headers.add("Contact", f"<sip:bob@{peer.address[0]}:{peer.address[1]}>")
            endpoint.send_response(final, now, event.transaction_key)
        else:
            ok = endpoint.create_response(request, 200)
            endpoint.send_response(ok, now, event.transaction_key)

    return behaviour


def acknowledging_uac(invite: Request) -> Callable[[Peer, SipEvent, float], None]:
    """A UAC that ACKs every 2xx of its INVITE (§13.2.2.4), resending the same ACK."""
    acks: dict[str, Request] = {}

    def behaviour(peer: Peer, event: SipEvent, now: float) -> None:
        if (
            isinstance(event, ResponseReceived)
            and event.response.is_success
            and event.response.cseq.method == "INVITE"
        ):
            tag = event.response.to_address.tag or ""
            ack = acks.setdefault(tag, ack_for_success(invite, event.response))
            peer.endpoint.send_ack_for_2xx(ack, now, Flow(Transport.UDP, BOB))

    return behaviour


def make_pair(
    seed: int,
    uas_status: int,
    invite: Request | None = None,
    quality: LinkQuality = PERFECT,
    drop: Callable[[bytes], bool] | None = None,
) -> tuple[Peer, Peer, Network]:
    alice = Peer("alice", ALICE, make_endpoint(ALICE, f"a{seed}-"))
    if invite is not None:
        alice.behaviour = acknowledging_uac(invite)
    bob = Peer("bob", BOB, make_endpoint(BOB, f"b{seed}-"), behaviour=answering_uas(uas_status))
    return alice, bob, Network([alice, bob], random.Random(seed), quality, drop)


def received(peer: Peer, kind: type[EventT]) -> list[EventT]:
    return [event for _, event in peer.events if isinstance(event, kind)]


def requests_received(peer: Peer, method: str) -> list[RequestReceived]:
    return [event for event in received(peer, RequestReceived) if event.request.method == method]


def statuses_received(peer: Peer) -> list[tuple[str, str, int]]:
    """(transaction key, CSeq method, status) of each response passed up."""
    return [
        (event.transaction_key, event.response.cseq.method, event.response.status_code)
        for event in received(peer, ResponseReceived)
    ]


SEEDS = range(30)


@pytest.mark.parametrize("seed", SEEDS)
def test_invite_200_ack_completes_over_a_lossy_network(seed: int) -> None:
    invite = new_request(body=b"v=0\r\n")
    alice, bob, network = make_pair(seed, 200, invite, LOSSY)
    invite_key = alice.endpoint.send_request(invite, 0.0, BOB_UDP)
    network.run(until=200.0)

    # Bob's TU saw the INVITE once: duplicates and retransmissions were absorbed.
    assert len(requests_received(bob, "INVITE")) == 1
    # Alice's TU got the 200 (perhaps several times: RFC 6026 passes each 2xx up).
    finals = [status for status in statuses_received(alice) if status[2] >= 200]
    assert finals and set(finals) == {(invite_key, "INVITE", 200)}
    # Bob got an ACK, so his 2xx retransmissions stopped without a timeout.
    acks = requests_received(bob, "ACK")
    assert acks and all(event.transaction_key is None for event in acks)
    assert received(bob, TransactionTimeout) == [] and received(alice, TransactionTimeout) == []
    assert alice.endpoint.table_sizes() == EMPTY_TABLES
    assert bob.endpoint.table_sizes() == EMPTY_TABLES


@pytest.mark.parametrize("seed", SEEDS)
def test_invite_486_ack_completes_over_a_lossy_network(seed: int) -> None:
    invite = new_request()
    alice, bob, network = make_pair(seed, 486, invite, LOSSY)
    invite_key = alice.endpoint.send_request(invite, 0.0, BOB_UDP)
    network.run(until=200.0)

    assert len(requests_received(bob, "INVITE")) == 1
    # A non-2xx goes up exactly once; its retransmissions only get the ACK again.
    finals = [status for status in statuses_received(alice) if status[2] >= 200]
    assert finals == [(invite_key, "INVITE", 486)]
    # The ACK reached Bob's transaction (absorbed there, not passed up) before Timer H.
    assert received(bob, TransactionTimeout) == []
    assert requests_received(bob, "ACK") == []
    assert "ack_absorbed" in dropped_reasons([event for _, event in bob.events])
    assert alice.endpoint.table_sizes() == EMPTY_TABLES
    assert bob.endpoint.table_sizes() == EMPTY_TABLES


@pytest.mark.parametrize("seed", SEEDS)
def test_non_invite_completes_over_a_lossy_network(seed: int) -> None:
    alice, bob, network = make_pair(seed, 200, quality=LOSSY)
    key = alice.endpoint.send_request(new_request("OPTIONS"), 0.0, BOB_UDP)
    network.run(until=200.0)
    assert len(received(bob, RequestReceived)) == 1
    # The final response goes up exactly once, whatever the network did.
    assert statuses_received(alice) == [(key, "OPTIONS", 200)]
    assert received(alice, TransactionTimeout) == []
    assert alice.endpoint.table_sizes() == EMPTY_TABLES
    assert bob.endpoint.table_sizes() == EMPTY_TABLES


def test_the_lossy_network_really_loses_and_duplicates() -> None:
    """The pair tests above are only worth something if the link misbehaves."""
    absorbed = lost = duplicated = 0
    for seed in SEEDS:
        invite = new_request()
        alice, bob, network = make_pair(seed, 486, invite, LOSSY)
        alice.endpoint.send_request(invite, 0.0, BOB_UDP)
        network.run(until=200.0)
        absorbed += bob.endpoint.counters["retransmission_absorbed"]
        absorbed += alice.endpoint.counters["retransmission_absorbed"]
        lost += network.lost
        duplicated += network.duplicated
    assert lost > 20 and duplicated > 20 and absorbed > 20


def test_duplicated_datagrams_are_absorbed() -> None:
    invite = new_request()
    alice, bob, network = make_pair(0, 200, invite, LinkQuality(duplication=1.0))
    invite_key = alice.endpoint.send_request(invite, 0.0, BOB_UDP)
    network.run(until=200.0)
    assert len(requests_received(bob, "INVITE")) == 1
    assert bob.endpoint.counters["retransmission_absorbed"] >= 1
    # Alice's TU sees each copy of a provisional (§17.1.1.2) and of the 2xx (RFC 6026
    # §8.4), and answers every 2xx with the same ACK.
    assert statuses_received(alice).count((invite_key, "INVITE", 200)) >= 2
    assert len({event.request.top_via.branch for event in requests_received(bob, "ACK")}) == 1


def test_lost_ack_is_recovered_by_2xx_retransmission() -> None:
    invite = new_request()
    acks_dropped: list[bytes] = []

    def drop_first_ack(data: bytes) -> bool:
        if data.startswith(b"ACK ") and not acks_dropped:
            acks_dropped.append(data)
            return True
        return False

    alice, bob, network = make_pair(0, 200, invite, drop=drop_first_ack)
    alice.endpoint.send_request(invite, 0.0, BOB_UDP)
    network.run(until=200.0)
    assert acks_dropped
    # The original 200 and its retransmission at T1, each ACKed; one ACK arrives.
    assert [status for _, _, status in statuses_received(alice)] == [100, 180, 200, 200]
    assert len(requests_received(bob, "ACK")) == 1
    assert received(bob, TransactionTimeout) == []


def test_unacknowledged_2xx_times_out_for_the_tu() -> None:
    alice, bob, network = make_pair(0, 200)  # Alice's TU never ACKs
    alice.endpoint.send_request(new_request(), 0.0, BOB_UDP)
    network.run(until=200.0)
    (timeout,) = received(bob, TransactionTimeout)
    assert (timeout.method, timeout.is_client) == ("INVITE", False)
    # T1 doubling to T2 for 64*T1: the 2xx and 10 retransmissions, each passed up.
    assert [status for _, _, status in statuses_received(alice)].count(200) == 11
    assert bob.endpoint.table_sizes() == EMPTY_TABLES


def test_cancel_across_the_pair() -> None:
    """Alice cancels at once; §9.1 holds the CANCEL until Bob's 180; Bob's TU answers
    the INVITE with 487 when the CANCEL arrives."""
    invites: dict[str, Request] = {}

    def ringing_uas(peer: Peer, event: SipEvent, now: float) -> None:
        endpoint = peer.endpoint
        if isinstance(event, RequestReceived) and event.request.method == "INVITE":
            assert event.transaction_key is not None
            invites[event.transaction_key] = event.request
            ringing = endpoint.create_response(event.request, 180)
            endpoint.send_response(ringing, now, event.transaction_key)
        elif isinstance(event, CancelReceived):
            invite = invites[event.invite_transaction_key]
            terminated = endpoint.create_response(invite, 487)
            endpoint.send_response(terminated, now, event.invite_transaction_key)

    alice = Peer("alice", ALICE, make_endpoint(ALICE, "a"))
    bob = Peer("bob", BOB, make_endpoint(BOB, "b"), behaviour=ringing_uas)
    network = Network([alice, bob])
    invite_key = alice.endpoint.send_request(new_request(), 0.0, BOB_UDP)
    cancel_key = alice.endpoint.send_cancel(invite_key, 0.0)
    network.run(until=200.0)
    assert statuses_received(alice) == [
        (invite_key, "INVITE", 100),
        (invite_key, "INVITE", 180),
        (cancel_key, "CANCEL", 200),
        (invite_key, "INVITE", 487),
    ]
    assert len(received(bob, CancelReceived)) == 1
    assert alice.endpoint.table_sizes() == EMPTY_TABLES
    assert bob.endpoint.table_sizes() == EMPTY_TABLES


def test_no_leaks_after_many_transactions() -> None:
    alice = Peer("alice", ALICE, make_endpoint(ALICE, "a"))
    bob = Peer("bob", BOB, make_endpoint(BOB, "b"), behaviour=answering_uas(200))
    invites = []
    for number in range(60):
        invite = new_request(call_id=f"call-{number}")
        invites.append(invite)
        alice.endpoint.send_request(invite, 0.0, BOB_UDP)
    for number in range(60):
        alice.endpoint.send_request(new_request("OPTIONS", call_id=f"o-{number}"), 0.0, BOB_UDP)
    by_call_id = {invite.call_id: invite for invite in invites}

    def ack_all(peer: Peer, event: SipEvent, now: float) -> None:
        if isinstance(event, ResponseReceived) and event.response.is_success:
            response = event.response
            if response.cseq.method == "INVITE":
                ack = ack_for_success(by_call_id[response.call_id], response)
                peer.endpoint.send_ack_for_2xx(ack, now, BOB_UDP)

    alice.behaviour = ack_all
    quality = LinkQuality(loss=0.1, duplication=0.1, jitter=0.05)
    network = Network([alice, bob], random.Random(7), quality)
    network.run(until=500.0)
    assert len(received(bob, RequestReceived)) >= 180  # 60 INVITE, 60 OPTIONS, 60+ ACK
    assert len(received(alice, TransactionTerminated)) == 120
    assert len(received(bob, TransactionTerminated)) == 120
    assert alice.endpoint.table_sizes() == EMPTY_TABLES
    assert bob.endpoint.table_sizes() == EMPTY_TABLES
    assert alice.endpoint.get_timer() is None and bob.endpoint.get_timer() is None


def test_transaction_states_visible_for_the_tu() -> None:
    alice = make_endpoint(ALICE, "alice")
    key = alice.send_request(new_request(), 0.0, BOB_UDP)
    assert alice.transaction_state(key) is ClientInviteState.CALLING
    bob = make_endpoint()
    bob.receive_datagram(request_bytes("OPTIONS"), ALICE, 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, RequestReceived) and event.transaction_key is not None
    assert bob.transaction_state(event.transaction_key) is ServerNonInviteState.TRYING


# ==================================================== the TU's objects are its own


def test_tu_changing_a_received_request_does_not_confuse_the_endpoint() -> None:
    """A B2BUA builds its other leg from the request it received; the server
    transaction keeps its own copy, so matching and clean-up are unaffected."""
    bob = make_endpoint()
    data = request_bytes("OPTIONS")
    bob.receive_datagram(data, ALICE, 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, RequestReceived) and event.transaction_key is not None
    response = bob.create_response(event.request, 200)
    event.request.headers.set("Call-ID", "reused-for-the-other-leg")
    event.request.headers.remove("via")
    bob.send_response(response, 0.1, event.transaction_key)
    bob.receive_datagram(data, ALICE, 0.2)  # still recognised as a retransmission
    assert dropped_reasons(drain_events(bob)) == ["retransmission_absorbed"]
    step_timers(bob)
    assert bob.table_sizes() == EMPTY_TABLES


def test_tu_changing_a_sent_invite_does_not_change_its_ack() -> None:
    alice = make_endpoint(ALICE, "alice")
    invite = new_request()
    alice.send_request(invite, 0.0, BOB_UDP)
    ((data, _),) = alice.data_to_send()
    original = parse_request(data)
    invite.headers.remove("via")  # reused by the TU for something else
    invite.headers.set("CSeq", "2 INVITE")
    busy = make_endpoint().create_response(original, 486)
    alice.receive_datagram(busy.to_bytes(), BOB, 0.1)
    ((ack_data, _),) = alice.data_to_send()
    ack = parse_request(ack_data)
    assert str(ack.cseq) == "1 ACK" and ack.top_via.branch == original.top_via.branch


def test_invalid_responses_from_the_tu_are_local_errors() -> None:
    bob = make_endpoint()
    bob.receive_datagram(request_bytes("OPTIONS"), ALICE, 0.0)
    (event,) = drain_events(bob)
    assert isinstance(event, RequestReceived)
    response = bob.create_response(event.request, 200)
    response.headers.remove("cseq")
    with pytest.raises(LocalProtocolError):
        bob.send_response(response, 0.0, event.transaction_key)
    wrong_method = bob.create_response(parse_request(request_bytes("INFO")), 200)
    with pytest.raises(LocalProtocolError):
        bob.send_response(wrong_method, 0.0, event.transaction_key)
    bob.send_response(bob.create_response(event.request, 200), 0.0, event.transaction_key)
    with pytest.raises(LocalProtocolError):  # a second final response
        bob.send_response(bob.create_response(event.request, 500), 0.0, event.transaction_key)


# ============================================================= nothing remote raises

SAMPLES = [path.read_bytes() for path in sorted(CORPUS.glob("*.dat"))] + [
    request_bytes(),
    request_bytes("ACK", to_tag="x"),
    request_bytes("CANCEL"),
    request_bytes("OPTIONS", via="SIP/2.0/TCP 192.0.2.1:5060", body=b"body"),
]
METACHARACTERS = [b"\r\n", b" ", b":", b";", b",", b"<", b">", b'"', b"=", b"\x00", b"\xff",
                  b"\r\n\r\n", b"z9hG4bK", b"rport", b"Via: ", b"CSeq: 1 ACK\r\n", b"SIP/2.0"]


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if operation == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif operation == "cut":
            del data[position : position + draw(st.integers(1, 20))]
        elif operation == "insert":
            data[position:position] = draw(st.sampled_from(METACHARACTERS))
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(mutated_samples(), min_size=1, max_size=4))
def test_no_datagram_makes_the_endpoint_raise(datagrams: list[bytes]) -> None:
    bob = make_endpoint()
    for number, data in enumerate(datagrams):
        bob.receive_datagram(data, ("198.51.100.40", 5060 + number), float(number))
        message_events = [
            event for event in drain_events(bob) if not isinstance(event, TransactionTerminated)
        ]
        # One event per message; none for a keep-alive.
        assert len(message_events) == (0 if not data.strip(b"\r\n \t\x00") else 1)
        for payload, flow in bob.data_to_send():
            assert flow.transport is Transport.UDP
            parse_message(payload)  # whatever we send parses
    step_timers(bob)
    assert bob.get_timer() is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_samples(), cuts=st.lists(st.integers(0, 4000), max_size=5))
def test_no_stream_makes_the_endpoint_raise(data: bytes, cuts: list[int]) -> None:
    bob = make_endpoint()
    bob.connection_opened(1, ("198.51.100.40", 40000), 0.0)
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    for start, end in itertools.pairwise(points):
        bob.receive_stream_data(1, data[start:end], 0.0)
    drain_events(bob)
    for _, flow in bob.data_to_send():
        assert flow.connection_id == 1
    step_timers(bob)
    bob.connection_closed(1, 100.0)
