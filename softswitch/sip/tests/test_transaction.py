"""The four RFC 3261 §17 state machines, driven directly with explicit `now` values.

Each timer test reads the next deadline from the transaction and jumps to it, as
aioquic's tests do with `get_timer()`: no sleeping, no sockets. T1 = 0.5 s, T2 = 4 s,
T4 = 5 s (the RFC defaults), so 64*T1 = 32 s.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import pytest

from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.events import (
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.timers import DeadlineHeap, TimerName, TimerValues
from softswitch.sip.transaction import (
    ClientInviteState,
    ClientInviteTransaction,
    ClientNonInviteState,
    ClientNonInviteTransaction,
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteState,
    ServerNonInviteTransaction,
    Transaction,
    TransactionOutput,
    Transmit,
)

TIMERS = TimerValues()
UDP = Flow(Transport.UDP, ("192.0.2.2", 5060))
TCP = Flow(Transport.TCP, ("192.0.2.2", 5060), 7)
BRANCH = "z9hG4bKa1b2c3"


def make_request(method: str, *, cseq_method: str | None = None, routes: bool = False) -> Request:
    route_lines = (
        "Route: <sip:proxy1.example.net;lr>\r\n"
        "Route: <sip:proxy2.example.net;lr>, <sip:proxy3.example.net;lr>\r\n"
        if routes
        else ""
    )
    text = (
        f"{method} sip:bob@example.net SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={BRANCH};rport\r\n"
        f"{route_lines}"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@example.com>;tag=alice-tag\r\n"
        "To: Bob <sip:bob@example.net>\r\n"
        "Call-ID: transaction-test@192.0.2.1\r\n"
        f"CSeq: 314 {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    message.validate()
    return message


def make_response(request: Request, status_code: int, to_tag: str | None = "bob-tag") -> Response:
    lines = [f"SIP/2.0 {status_code} Whatever"]
    lines += [f"Via: {value}" for value in request.headers.get_all("via")]
    lines.append(f"From: {request.headers.get('from')}")
    to_value = request.headers.get("to")
    lines.append(f"To: {to_value}" + (f";tag={to_tag}" if to_tag and status_code > 100 else ""))
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {request.cseq.number} {request.cseq.method}")
    lines.append("Content-Length: 0")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    message.validate()
    return message


StateT = TypeVar("StateT", bound=enum.Enum)


def state_of(transaction: Transaction[StateT]) -> StateT:
    """The state, read through a call so that mypy does not narrow it across inputs."""
    return transaction.state


def transmitted(outputs: list[TransactionOutput]) -> list[bytes]:
    return [output.data for output in outputs if isinstance(output, Transmit)]


def events(outputs: list[TransactionOutput]) -> list[SipEvent]:
    return [output for output in outputs if not isinstance(output, Transmit)]


def step_timers(
    transaction: Transaction[StateT], until: float = 1000.0
) -> list[tuple[float, list[TransactionOutput]]]:
    """Jump from deadline to deadline, collecting what each firing produced."""
    steps: list[tuple[float, list[TransactionOutput]]] = []
    while (deadline := transaction.deadline) is not None and deadline <= until:
        transaction.handle_timer(deadline)
        steps.append((deadline, transaction.take_outputs()))
    return steps


def retransmission_times(steps: list[tuple[float, list[TransactionOutput]]]) -> list[float]:
    return [now for now, outputs in steps if transmitted(outputs)]


# ------------------------------------------------------------------------- timer values


def test_timer_values_follow_table_4() -> None:
    table_4 = [timer for timer in TimerName if timer is not TimerName.TRYING]
    unreliable = {timer: TIMERS.duration(timer, reliable=False) for timer in table_4}
    reliable = {timer: TIMERS.duration(timer, reliable=True) for timer in table_4}
    # The deferred 100 Trying's wait is the endpoint's setting, not a Table 4 value.
    assert TIMERS.duration(TimerName.TRYING, reliable=False) is None
    assert unreliable == {
        TimerName.A: 0.5,
        TimerName.B: 32.0,
        TimerName.C: 180.0,
        TimerName.D: 32.0,
        TimerName.E: 0.5,
        TimerName.F: 32.0,
        TimerName.G: 0.5,
        TimerName.H: 32.0,
        TimerName.I: 5.0,
        TimerName.J: 32.0,
        TimerName.K: 5.0,
        TimerName.L: 32.0,
        TimerName.M: 32.0,
    }
    # Reliable transports: no retransmission timers, zero waits.
    assert reliable == {
        TimerName.A: None,
        TimerName.B: 32.0,
        TimerName.C: 180.0,
        TimerName.D: 0.0,
        TimerName.E: None,
        TimerName.F: 32.0,
        TimerName.G: None,
        TimerName.H: 32.0,
        TimerName.I: 0.0,
        TimerName.J: 0.0,
        TimerName.K: 0.0,
        TimerName.L: 32.0,
        TimerName.M: 32.0,
    }


def test_timer_back_off() -> None:
    # Timer A doubles with no cap; E and G double up to T2.
    assert [TIMERS.next_interval(TimerName.A, 2.0**n) for n in range(5)] == [2, 4, 8, 16, 32]
    assert [TIMERS.next_interval(TimerName.E, 2.0**n) for n in range(-1, 4)] == [1, 2, 4, 4, 4]
    assert TIMERS.next_interval(TimerName.G, 4.0) == 4.0
    with pytest.raises(ValueError):
        TIMERS.next_interval(TimerName.B, 1.0)


def test_timer_values_scale_with_t1() -> None:
    slow = TimerValues(t1=1.0, t2=8.0, t4=10.0)
    assert slow.duration(TimerName.B, reliable=False) == 64.0
    assert slow.duration(TimerName.D, reliable=False) == 64.0  # never below 32 s
    assert TimerValues(t1=0.1).duration(TimerName.D, reliable=False) == 32.0
    assert slow.duration(TimerName.K, reliable=False) == 10.0


def test_deadline_heap_keeps_one_deadline_per_key() -> None:
    heap = DeadlineHeap()
    assert heap.earliest() is None
    heap.set("a", 5.0)
    heap.set("b", 3.0)
    heap.set("c", 3.0)
    heap.set("b", 7.0)  # replaced: the old 3.0 entry is stale
    assert heap.earliest() == 3.0
    assert heap.pop_due(4.0) == ["c"]
    assert heap.earliest() == 5.0
    heap.set("a", None)
    assert heap.pop_due(100.0) == ["b"]
    assert len(heap) == 0 and heap.earliest() is None


def test_deadline_heap_compacts_stale_entries() -> None:
    heap = DeadlineHeap()
    for round_number in range(20_000):
        for key in ("x", "y"):
            heap.set(key, float(round_number))
    bound = DeadlineHeap.COMPACT_FACTOR * len(heap) + DeadlineHeap.COMPACT_SLACK + 1
    assert heap.entries <= bound
    assert heap.pop_due(19_998.0) == []
    assert heap.pop_due(19_999.0) == ["x", "y"]


def test_deadline_heap_orders_equal_deadlines_by_when_they_were_set_across_compactions() -> None:
    heap = DeadlineHeap()
    heap.set("first", 5.0)
    heap.set("second", 5.0)
    for round_number in range(10_000):  # enough stale entries to force compactions
        heap.set("churn", 100.0 + round_number)
        heap.set("first", 5.0 + (round_number % 2))
    heap.set("first", 5.0)
    assert heap.pop_due(5.0) == ["second", "first"]


# --------------------------------------------------------------- client INVITE (§17.1.1)


def test_client_invite_timer_a_doubles_and_timer_b_times_out_at_32_seconds() -> None:
    invite = make_request("INVITE")
    transaction = ClientInviteTransaction("key", invite, UDP, TIMERS, 0.0)
    assert transmitted(transaction.take_outputs()) == [invite.to_bytes()]
    assert state_of(transaction) is ClientInviteState.CALLING

    steps = step_timers(transaction)

    assert retransmission_times(steps) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(transmitted(outputs) == [invite.to_bytes()] for _, outputs in steps[:-1])
    final_time, final_outputs = steps[-1]
    assert final_time == 32.0
    assert events(final_outputs) == [TransactionTimeout("key", "INVITE", True)]
    assert state_of(transaction) is ClientInviteState.TERMINATED
    assert transaction.deadline is None


def test_client_invite_over_tcp_does_not_retransmit() -> None:
    transaction = ClientInviteTransaction("key", make_request("INVITE"), TCP, TIMERS, 0.0)
    transaction.take_outputs()
    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [32.0]
    assert transmitted(steps[0][1]) == []
    assert events(steps[0][1]) == [TransactionTimeout("key", "INVITE", True)]


def test_client_invite_provisional_stops_retransmissions_and_timer_b() -> None:
    invite = make_request("INVITE")
    transaction = ClientInviteTransaction("key", invite, UDP, TIMERS, 0.0)
    step_timers(transaction, until=1.5)  # two retransmissions
    ringing = make_response(invite, 180)
    transaction.receive_response(ringing, UDP, 2.0)
    assert state_of(transaction) is ClientInviteState.PROCEEDING
    assert events(transaction.take_outputs()) == [ResponseReceived(ringing, "key", UDP)]
    # §17.1.1.2: no more retransmissions, and Timer B only guards Calling.
    assert transaction.deadline is None


def test_client_invite_non_2xx_builds_ack_and_waits_timer_d() -> None:
    invite = make_request("INVITE", routes=True)
    transaction = ClientInviteTransaction("key", invite, UDP, TIMERS, 0.0)
    transaction.take_outputs()
    busy = make_response(invite, 486)
    transaction.receive_response(busy, UDP, 1.0)

    outputs = transaction.take_outputs()
    assert events(outputs) == [ResponseReceived(busy, "key", UDP)]
    (ack_bytes,) = transmitted(outputs)
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request)
    ack.validate()
    # RFC 3261 §17.1.1.3.
    assert ack.method == "ACK"
    assert ack.uri_text == invite.uri_text
    assert ack.call_id == invite.call_id
    assert ack.headers.get("from") == invite.headers.get("from")
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
    assert ack.to_address.tag == "bob-tag"
    assert ack.headers.get("to") == busy.headers.get("to")
    assert [str(via) for via in ack.vias] == [str(invite.top_via)]
    assert ack.headers.get_all("route") == invite.headers.get_all("route")
    assert ack.body == b""
    # Completed is lean (StateMachine.lean): the ACK object is gone, its bytes are kept.
    assert transaction.ack is None

    assert state_of(transaction) is ClientInviteState.COMPLETED
    assert transaction.running_timers() == {TimerName.D: 33.0}  # Timer A and B stopped

    # A retransmitted 486 gets the same ACK again and is not passed up.
    transaction.receive_response(busy, UDP, 2.0)
    outputs = transaction.take_outputs()
    assert transmitted(outputs) == [ack_bytes]
    assert [type(event) for event in events(outputs)] == [MessageDropped]

    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [33.0]
    assert state_of(transaction) is ClientInviteState.TERMINATED
    assert events(steps[0][1]) == []


def test_client_invite_timer_d_is_zero_over_tcp() -> None:
    invite = make_request("INVITE")
    transaction = ClientInviteTransaction("key", invite, TCP, TIMERS, 0.0)
    transaction.take_outputs()
    transaction.receive_response(make_response(invite, 603), TCP, 1.0)
    outputs = transaction.take_outputs()
    assert len(transmitted(outputs)) == 1  # the ACK
    assert state_of(transaction) is ClientInviteState.TERMINATED
    assert transaction.deadline is None


def test_client_invite_2xx_goes_to_accepted_and_every_2xx_is_passed_up() -> None:
    invite = make_request("INVITE")
    transaction = ClientInviteTransaction("key", invite, UDP, TIMERS, 0.0)
    transaction.take_outputs()
    transaction.receive_response(make_response(invite, 100), UDP, 0.1)
    transaction.take_outputs()
    ok = make_response(invite, 200)
    transaction.receive_response(ok, UDP, 2.0)
    assert state_of(transaction) is ClientInviteState.ACCEPTED
    assert transaction.running_timers() == {TimerName.M: 34.0}
    outputs = transaction.take_outputs()
    # RFC 6026 §8.4: no ACK from the transaction for a 2xx; the TU sends it.
    assert transmitted(outputs) == [] and events(outputs) == [ResponseReceived(ok, "key", UDP)]

    transaction.receive_response(ok, UDP, 2.5)
    assert events(transaction.take_outputs()) == [ResponseReceived(ok, "key", UDP)]
    late_ringing = make_response(invite, 180)
    transaction.receive_response(late_ringing, UDP, 2.6)
    assert [type(event) for event in events(transaction.take_outputs())] == [MessageDropped]

    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [34.0]
    assert state_of(transaction) is ClientInviteState.TERMINATED


def test_client_invite_refuses_input_once_terminated() -> None:
    invite = make_request("INVITE")
    transaction = ClientInviteTransaction("key", invite, TCP, TIMERS, 0.0)
    step_timers(transaction)
    with pytest.raises(LocalProtocolError):
        transaction.receive_response(make_response(invite, 200), TCP, 40.0)


def test_client_invite_transport_error_terminates() -> None:
    transaction = ClientInviteTransaction("key", make_request("INVITE"), UDP, TIMERS, 0.0)
    transaction.take_outputs()
    transaction.transport_error("connection refused", 0.1)
    assert events(transaction.take_outputs()) == [
        TransportError("key", True, "connection refused")
    ]
    assert state_of(transaction) is ClientInviteState.TERMINATED and transaction.deadline is None


def test_transactions_refuse_the_wrong_method() -> None:
    with pytest.raises(LocalProtocolError):
        ClientInviteTransaction("key", make_request("OPTIONS"), UDP, TIMERS, 0.0)
    with pytest.raises(LocalProtocolError):
        ClientNonInviteTransaction("key", make_request("INVITE"), UDP, TIMERS, 0.0)
    with pytest.raises(LocalProtocolError):
        ServerNonInviteTransaction("key", make_request("ACK", cseq_method="ACK"), UDP, TIMERS)


# ----------------------------------------------------------- client non-INVITE (§17.1.2)


def test_client_non_invite_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    options = make_request("OPTIONS")
    transaction = ClientNonInviteTransaction("key", options, UDP, TIMERS, 0.0)
    transaction.take_outputs()
    steps = step_timers(transaction)
    assert retransmission_times(steps) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]
    assert steps[-1][0] == 32.0
    assert events(steps[-1][1]) == [TransactionTimeout("key", "OPTIONS", True)]
    assert state_of(transaction) is ClientNonInviteState.TERMINATED


def test_client_non_invite_retransmits_at_t2_after_a_provisional() -> None:
    options = make_request("OPTIONS")
    transaction = ClientNonInviteTransaction("key", options, UDP, TIMERS, 0.0)
    transaction.take_outputs()
    step_timers(transaction, until=1.5)  # 0.5 and 1.5; Timer E next at 3.5
    trying = make_response(options, 100)
    transaction.receive_response(trying, UDP, 1.6)
    assert state_of(transaction) is ClientNonInviteState.PROCEEDING
    assert events(transaction.take_outputs()) == [ResponseReceived(trying, "key", UDP)]
    steps = step_timers(transaction)
    # §17.1.2.2: E fires as scheduled, then every T2; F still ends it at 64*T1.
    assert retransmission_times(steps) == [3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert steps[-1][0] == 32.0
    assert events(steps[-1][1]) == [TransactionTimeout("key", "OPTIONS", True)]


def test_client_non_invite_provisional_before_first_retransmission_goes_to_t2() -> None:
    options = make_request("OPTIONS")
    transaction = ClientNonInviteTransaction("key", options, UDP, TIMERS, 0.0)
    transaction.receive_response(make_response(options, 100), UDP, 0.2)
    steps = step_timers(transaction)
    assert retransmission_times(steps) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]


def test_client_non_invite_final_response_and_timer_k() -> None:
    options = make_request("OPTIONS")
    transaction = ClientNonInviteTransaction("key", options, UDP, TIMERS, 0.0)
    transaction.take_outputs()
    ok = make_response(options, 200)
    transaction.receive_response(ok, UDP, 1.0)
    assert state_of(transaction) is ClientNonInviteState.COMPLETED
    assert events(transaction.take_outputs()) == [ResponseReceived(ok, "key", UDP)]
    assert transaction.running_timers() == {TimerName.K: 6.0}  # T4, E and F stopped
    transaction.receive_response(ok, UDP, 2.0)  # a retransmission: absorbed
    outputs = transaction.take_outputs()
    assert [type(event) for event in events(outputs)] == [MessageDropped]
    assert transmitted(outputs) == []
    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [6.0]
    assert state_of(transaction) is ClientNonInviteState.TERMINATED


def test_client_non_invite_over_tcp() -> None:
    options = make_request("OPTIONS")
    transaction = ClientNonInviteTransaction("key", options, TCP, TIMERS, 0.0)
    transaction.take_outputs()
    assert transaction.running_timers() == {TimerName.F: 32.0}  # no Timer E
    transaction.receive_response(make_response(options, 404), TCP, 1.0)
    # Timer K is zero on a reliable transport.
    assert state_of(transaction) is ClientNonInviteState.TERMINATED
    assert transaction.deadline is None


# --------------------------------------------------------------- server INVITE (§17.2.1)


def server_invite(flow: Flow = UDP, retransmit_success: bool = True) -> ServerInviteTransaction:
    return ServerInviteTransaction(
        "server-key", make_request("INVITE"), flow, TIMERS, retransmit_success
    )


def test_server_invite_timer_g_resends_final_response_and_timer_h_times_out() -> None:
    transaction = server_invite()
    busy = make_response(transaction.request, 486)
    transaction.send_response(busy, 1.0)
    assert transmitted(transaction.take_outputs()) == [busy.to_bytes()]
    assert state_of(transaction) is ServerInviteState.COMPLETED

    steps = step_timers(transaction)
    assert retransmission_times(steps) == [
        1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5
    ]
    assert all(transmitted(outputs) == [busy.to_bytes()] for _, outputs in steps[:-1])
    assert steps[-1][0] == 33.0
    assert events(steps[-1][1]) == [TransactionTimeout("server-key", "INVITE", False)]
    assert state_of(transaction) is ServerInviteState.TERMINATED


def test_server_invite_ack_confirms_and_timer_i_terminates() -> None:
    transaction = server_invite()
    request = transaction.request
    transaction.send_response(make_response(request, 404), 0.0)
    step_timers(transaction, until=1.5)
    ack = make_request("ACK", cseq_method="ACK")
    transaction.receive_request(ack, UDP, 2.0)
    assert state_of(transaction) is ServerInviteState.CONFIRMED
    outputs = transaction.take_outputs()
    assert transmitted(outputs) == []
    (dropped,) = events(outputs)
    assert isinstance(dropped, MessageDropped) and dropped.reason == "ack_absorbed"
    assert transaction.running_timers() == {TimerName.I: 7.0}  # G and H stopped

    # Confirmed absorbs ACK and INVITE retransmissions without answering.
    transaction.receive_request(ack, UDP, 3.0)
    transaction.receive_request(request, UDP, 3.1)
    outputs = transaction.take_outputs()
    assert transmitted(outputs) == []
    assert [event.reason for event in events(outputs) if isinstance(event, MessageDropped)] == [
        "retransmission_absorbed",
        "retransmission_absorbed",
    ]
    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [7.0]
    assert state_of(transaction) is ServerInviteState.TERMINATED


def test_server_invite_over_tcp_no_timer_g_and_timer_i_zero() -> None:
    transaction = server_invite(TCP)
    transaction.send_response(make_response(transaction.request, 486), 0.0)
    assert transaction.running_timers() == {TimerName.H: 32.0}
    transaction.receive_request(make_request("ACK", cseq_method="ACK"), TCP, 1.0)
    assert state_of(transaction) is ServerInviteState.TERMINATED
    assert transaction.deadline is None


def test_server_invite_absorbs_retransmissions_and_resends_last_response() -> None:
    transaction = server_invite()
    request = transaction.request
    transaction.receive_request(request, UDP, 0.1)  # nothing sent yet: just absorbed
    assert transmitted(transaction.take_outputs()) == []
    trying = make_response(request, 100)
    transaction.send_response(trying, 0.1)
    ringing = make_response(request, 180)
    transaction.send_response(ringing, 0.2)
    transaction.take_outputs()
    transaction.receive_request(request, UDP, 0.5)
    outputs = transaction.take_outputs()
    assert transmitted(outputs) == [ringing.to_bytes()]
    (dropped,) = events(outputs)
    assert isinstance(dropped, MessageDropped)
    assert (dropped.reason, dropped.status_code) == ("retransmission_absorbed", 180)
    assert transaction.local_tag == "bob-tag"

    busy = make_response(request, 486)
    transaction.send_response(busy, 0.6)
    transaction.take_outputs()
    transaction.receive_request(request, UDP, 0.7)
    assert transmitted(transaction.take_outputs()) == [busy.to_bytes()]


def test_server_invite_2xx_is_retransmitted_until_acknowledged() -> None:
    transaction = server_invite()
    invite = transaction.request
    ok = make_response(invite, 200)
    transaction.send_response(ok, 0.0)
    assert state_of(transaction) is ServerInviteState.ACCEPTED
    with pytest.raises(LocalProtocolError):
        transaction.request  # noqa: B018  (lean in Accepted: the parsed INVITE is gone)
    transaction.take_outputs()
    steps = step_timers(transaction, until=8.0)
    # RFC 3261 §13.3.1.4: T1 doubling to T2, like Timer G.
    assert retransmission_times(steps) == [0.5, 1.5, 3.5, 7.5]
    assert all(transmitted(outputs) == [ok.to_bytes()] for _, outputs in steps)

    # An INVITE retransmission in Accepted is absorbed, not passed up (RFC 6026 §8.5).
    transaction.receive_request(invite, UDP, 8.5)
    assert [type(event) for event in events(transaction.take_outputs())] == [MessageDropped]

    transaction.acknowledge_success(9.0)
    assert transaction.running_timers() == {TimerName.L: 32.0}
    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [32.0]
    assert events(steps[0][1]) == []  # acknowledged: no timeout
    assert state_of(transaction) is ServerInviteState.TERMINATED


def test_server_invite_ack_with_the_invite_branch_in_accepted_goes_up() -> None:
    transaction = server_invite()
    transaction.send_response(make_response(transaction.request, 200), 0.0)
    transaction.take_outputs()
    ack = make_request("ACK", cseq_method="ACK")
    transaction.receive_request(ack, UDP, 0.2)
    assert events(transaction.take_outputs()) == [RequestReceived(ack, UDP, None)]
    assert transaction.success_acknowledged
    assert TimerName.G not in transaction.running_timers()


def test_server_invite_2xx_without_ack_times_out_at_timer_l() -> None:
    transaction = server_invite(TCP)
    transaction.send_response(make_response(transaction.request, 200), 0.0)
    transaction.take_outputs()
    steps = step_timers(transaction)
    # Over TCP too (§13.3.1.4: "independent of whatever transport protocols are used").
    assert retransmission_times(steps) == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5
    ]
    assert steps[-1][0] == 32.0
    assert events(steps[-1][1]) == [TransactionTimeout("server-key", "INVITE", False)]


def test_server_invite_without_2xx_retransmission_leaves_it_to_the_tu() -> None:
    transaction = server_invite(retransmit_success=False)
    ok = make_response(transaction.request, 200)
    transaction.send_response(ok, 0.0)
    transaction.take_outputs()
    assert transaction.running_timers() == {TimerName.L: 32.0}
    transaction.send_response(ok, 0.5)  # the TU's own retransmission (RFC 6026 §8.5)
    assert transmitted(transaction.take_outputs()) == [ok.to_bytes()]
    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [32.0] and events(steps[0][1]) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [(486, 200), (486, 486), (200, 180), (200, 486), (486, 180)],
)
def test_server_invite_refuses_illegal_responses(first: int, second: int) -> None:
    transaction = server_invite()
    transaction.send_response(make_response(transaction.request, first), 0.0)
    with pytest.raises(LocalProtocolError):
        transaction.send_response(make_response(transaction.request, second), 0.1)


def test_server_invite_ack_before_final_response_is_stray() -> None:
    transaction = server_invite()
    transaction.receive_request(make_request("ACK", cseq_method="ACK"), UDP, 0.1)
    (dropped,) = events(transaction.take_outputs())
    assert isinstance(dropped, MessageDropped) and dropped.reason == "stray_ack"
    assert state_of(transaction) is ServerInviteState.PROCEEDING


# ----------------------------------------------------------- server non-INVITE (§17.2.2)


def test_server_non_invite_trying_proceeding_completed_and_timer_j() -> None:
    request = make_request("OPTIONS")
    transaction = ServerNonInviteTransaction("key", request, UDP, TIMERS)
    assert state_of(transaction) is ServerNonInviteState.TRYING
    transaction.receive_request(request, UDP, 0.1)
    assert transmitted(transaction.take_outputs()) == []  # nothing to resend in Trying

    trying = make_response(request, 100)
    transaction.send_response(trying, 0.2)
    assert state_of(transaction) is ServerNonInviteState.PROCEEDING
    transaction.take_outputs()
    transaction.receive_request(request, UDP, 0.3)
    assert transmitted(transaction.take_outputs()) == [trying.to_bytes()]

    ok = make_response(request, 200)
    transaction.send_response(ok, 1.0)
    assert state_of(transaction) is ServerNonInviteState.COMPLETED
    assert transaction.running_timers() == {TimerName.J: 33.0}
    transaction.take_outputs()
    transaction.receive_request(request, UDP, 2.0)
    assert transmitted(transaction.take_outputs()) == [ok.to_bytes()]
    with pytest.raises(LocalProtocolError):
        transaction.send_response(make_response(request, 500), 2.5)

    steps = step_timers(transaction)
    assert [now for now, _ in steps] == [33.0]
    assert transmitted(steps[0][1]) == []  # the server never retransmits on its own
    assert state_of(transaction) is ServerNonInviteState.TERMINATED


def test_server_non_invite_timer_j_is_zero_over_tcp() -> None:
    request = make_request("REGISTER")
    transaction = ServerNonInviteTransaction("key", request, TCP, TIMERS)
    transaction.send_response(make_response(request, 200), 0.0)
    assert state_of(transaction) is ServerNonInviteState.TERMINATED
    assert transaction.deadline is None
