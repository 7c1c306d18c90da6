"""Calls through the B2BUA: caller, switch and callee endpoints on a lossless
in-memory link, the switch driven by `Call`, time jumping from deadline to deadline."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from softswitch.b2bua import Call, CallEnded, CallResult, CallState, Dialog
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
)
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Headers, Request, Response

CALLER: Address = ("192.0.2.1", 5060)
SWITCH: Address = ("192.0.2.10", 5060)
CALLEE: Address = ("192.0.2.2", 5060)
OFFER = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
ANSWER = b"v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
EARLY = b"v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=ringback\r\nt=0 0\r\n"
LATENCY = 0.01


def tokens(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def endpoint(address: Address, prefix: str) -> SipEndpoint:
    return SipEndpoint(EndpointConfig(address[0], address[1]), random_token=tokens(prefix))


class Phone:
    """A scripted UA: calls, rings, answers, hangs up; records what it received."""

    def __init__(self, address: Address, prefix: str, peer: Address) -> None:
        self.address = address
        self.endpoint = endpoint(address, prefix)
        self.peer = Flow(Transport.UDP, peer)
        self.contact = f"sip:{prefix}@{address[0]}:{address[1]}"
        self.events: list[SipEvent] = []
        self.dialog: Dialog | None = None
        self.outgoing: Request | None = None
        self.outgoing_key: str | None = None
        self.incoming: RequestReceived | None = None
        self.tag = f"{prefix}-tag"
        self.on_invite: int | None = None
        """Final status to answer an INVITE with right after 180; None: just ring."""

    def responses(self) -> list[Response]:
        return [e.response for e in self.events if isinstance(e, ResponseReceived)]

    def requests(self, method: str) -> list[Request]:
        return [
            e.request
            for e in self.events
            if isinstance(e, RequestReceived) and e.request.method == method
        ]

    def call(self, now: float, max_forwards: int = 70) -> None:
        headers = Headers()
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", f"Alice <sip:1001@example.com>;tag={self.tag}")
        headers.add("To", "<sip:1002@example.com>")
        headers.add("Call-ID", "call-1@192.0.2.1")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<{self.contact}>")
        headers.add("Content-Type", "application/sdp")
        self.outgoing = Request("INVITE", "sip:1002@example.com", headers, OFFER)
        self.outgoing_key = self.endpoint.send_request(self.outgoing, now, self.peer)

    def answer(self, now: float, status_code: int = 200) -> None:
        assert self.incoming is not None and self.incoming.transaction_key is not None
        invite = self.incoming.request
        response = self.endpoint.create_response(invite, status_code, to_tag=self.tag)
        if status_code < 300:
            response.headers.add("Contact", f"<{self.contact}>")
            response.headers.add("Content-Type", "application/sdp")
            response.body = ANSWER
            self.dialog = Dialog.from_uas_request(invite, self.tag, self.contact)
        self.endpoint.send_response(response, now, self.incoming.transaction_key)

    def hang_up(self, now: float) -> None:
        assert self.dialog is not None
        self.endpoint.send_request(self.dialog.create_request("BYE"), now, self.peer)

    def cancel(self, now: float) -> None:
        assert self.outgoing_key is not None
        self.endpoint.send_cancel(self.outgoing_key, now)

    def on_event(self, event: SipEvent, now: float) -> None:
        self.events.append(event)
        endpoint = self.endpoint
        if isinstance(event, RequestReceived) and event.transaction_key is not None:
            request = event.request
            if request.method == "INVITE":
                self.incoming = event
                ringing = endpoint.create_response(request, 180, to_tag=self.tag)
                ringing.headers.add("Content-Type", "application/sdp")
                ringing.body = EARLY
                endpoint.send_response(ringing, now, event.transaction_key)
                if self.on_invite is not None:
                    self.answer(now, self.on_invite)
            else:
                response = endpoint.create_response(request, 200)
                endpoint.send_response(response, now, event.transaction_key)
        elif isinstance(event, CancelReceived):
            assert self.incoming is not None
            response = endpoint.create_response(self.incoming.request, 487, to_tag=self.tag)
            endpoint.send_response(response, now, event.invite_transaction_key)
        elif isinstance(event, ResponseReceived) and event.transaction_key == self.outgoing_key:
            response = event.response
            if response.is_success:
                assert self.outgoing is not None
                if self.dialog is None:
                    self.dialog = Dialog.from_uac_response(self.outgoing, response, self.contact)
                ack = self.dialog.create_ack(self.outgoing.cseq.number)
                endpoint.send_ack_for_2xx(ack, now, self.peer)


class Switch:
    """The switch's TU: every INVITE becomes a Call to the callee."""

    def __init__(
        self,
        no_answer_timeout: float = 30.0,
        targets: list[tuple[str, Flow]] | None = None,
        follow_dialog_targets: bool = False,
    ) -> None:
        self.targets = targets
        self.follow_dialog_targets = follow_dialog_targets
        self.address = SWITCH
        self.endpoint = endpoint(SWITCH, "sw")
        self.calls: list[Call] = []
        self.ended: list[CallEnded] = []
        self.unhandled: list[SipEvent] = []
        self.no_answer_timeout = no_answer_timeout
        self._token = tokens("b2b")

    def on_event(self, event: SipEvent, now: float) -> None:
        for call in self.calls:
            keys, call_ids = call.transaction_keys, call.call_ids
            if call.handle_event(event, now):
                # What a dispatcher indexes by must have named this event.
                assert _indexed(event, keys, call_ids), event
                self._collect()
                return
        if isinstance(event, RequestReceived) and event.request.method == "INVITE":
            call = Call(
                self.endpoint,
                event,
                "sip:1002@192.0.2.2:5060",
                Flow(Transport.UDP, CALLEE),
                "sip:switch@192.0.2.10:5060",
                self._token,
                self.no_answer_timeout,
                targets=self.targets,
                follow_dialog_targets=self.follow_dialog_targets,
            )
            self.calls.append(call)
            call.start(now)
            self._collect()
        elif isinstance(event, RequestReceived | ResponseReceived | CancelReceived):
            self.unhandled.append(event)

    def next_deadline(self) -> float | None:
        deadlines = [d for call in self.calls if (d := call.next_deadline()) is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for call in list(self.calls):
            call.handle_timer(now)
        self._collect()

    def _collect(self) -> None:
        for call in list(self.calls):
            while (ended := call.next_event()) is not None:
                self.ended.append(ended)
            if call.state is CallState.ENDED:
                self.calls.remove(call)


def _indexed(event: SipEvent, keys: frozenset[str], call_ids: frozenset[str]) -> bool:
    if isinstance(event, RequestReceived):
        return event.transaction_key in keys or event.request.call_id in call_ids
    if isinstance(event, CancelReceived):
        return event.invite_transaction_key in keys
    return getattr(event, "transaction_key", None) in keys


Party = Phone | Switch


class Link:
    """A lossless in-memory UDP link with fixed latency and scheduled actions."""

    def __init__(self, parties: list[Party]) -> None:
        self.parties = {party.address: party for party in parties}
        self.in_flight: list[tuple[float, int, bytes, Address, Address]] = []
        self.actions: list[tuple[float, int, Callable[[float], None]]] = []
        self.sequence = itertools.count()
        self.delivered: list[tuple[Address, Address, bytes]] = []
        """(source, destination, datagram) of everything delivered, in order."""

    def at(self, when: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self.actions, (when, next(self.sequence), action))

    def settle(self, now: float) -> None:
        busy = True
        while busy:
            busy = False
            for party in self.parties.values():
                while (event := party.endpoint.next_event()) is not None:
                    busy = True
                    party.on_event(event, now)
                for data, flow in party.endpoint.data_to_send():
                    busy = True
                    item = (now + LATENCY, next(self.sequence), data, party.address, flow.remote)
                    heapq.heappush(self.in_flight, item)

    def deadlines(self) -> list[float]:
        found = [self.in_flight[0][0]] if self.in_flight else []
        if self.actions:
            found.append(self.actions[0][0])
        for party in self.parties.values():
            if (deadline := party.endpoint.get_timer()) is not None:
                found.append(deadline)
            if isinstance(party, Switch) and (deadline := party.next_deadline()) is not None:
                found.append(deadline)
        return found

    def run(self, until: float = 200.0) -> None:
        now = 0.0
        self.settle(now)
        while (deadlines := self.deadlines()) and min(deadlines) <= until:
            now = max(now, min(deadlines))
            while self.actions and self.actions[0][0] <= now:
                heapq.heappop(self.actions)[2](now)
                self.settle(now)
            while self.in_flight and self.in_flight[0][0] <= now:
                _, _, data, source, destination = heapq.heappop(self.in_flight)
                self.delivered.append((source, destination, data))
                self.parties[destination].endpoint.receive_datagram(data, source, now)
                self.settle(now)
            for party in self.parties.values():
                deadline = party.endpoint.get_timer()
                if deadline is not None and deadline <= now:
                    party.endpoint.handle_timer(now)
                if isinstance(party, Switch):
                    deadline = party.next_deadline()
                    if deadline is not None and deadline <= now:
                        party.handle_timer(now)
            self.settle(now)


def setup(no_answer_timeout: float = 30.0) -> tuple[Phone, Switch, Phone, Link]:
    caller = Phone(CALLER, "alice", SWITCH)
    switch = Switch(no_answer_timeout)
    callee = Phone(CALLEE, "bob", SWITCH)
    return caller, switch, callee, Link([caller, switch, callee])


def statuses(phone: Phone) -> list[int]:
    return [response.status_code for response in phone.responses()]


def assert_all_freed(*parties: Party) -> None:
    for party in parties:
        assert set(party.endpoint.table_sizes().values()) == {0}, party.endpoint.table_sizes()
    for party in parties:
        if isinstance(party, Switch):
            assert party.calls == [] and party.unhandled == []


# ================================================================================ tests


def answered_call(hang_up_by_caller: bool) -> tuple[Phone, Switch, Phone]:
    caller, switch, callee, link = setup()
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    hanging = caller if hang_up_by_caller else callee
    link.at(5.0, lambda now: hanging.hang_up(now))
    link.run()
    return caller, switch, callee


def test_answered_call_hung_up_by_the_caller() -> None:
    caller, switch, callee = answered_call(hang_up_by_caller=True)
    invite = callee.requests("INVITE")[0]
    assert invite.max_forwards == 69
    assert invite.body == OFFER
    assert invite.call_id != "call-1@192.0.2.1"
    responses = caller.responses()
    assert [r.status_code for r in responses] == [100, 180, 200, 200]
    assert responses[1].body == EARLY and responses[2].body == ANSWER
    assert responses[1].to_address.tag == responses[2].to_address.tag
    assert len(caller.requests("BYE")) == 0
    assert len(callee.requests("ACK")) == 1 and len(callee.requests("BYE")) == 1
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.ANSWERED, 4.0, 200)]
    assert_all_freed(caller, switch, callee)


def test_answered_call_hung_up_by_the_callee() -> None:
    caller, switch, callee = answered_call(hang_up_by_caller=False)
    assert len(caller.requests("BYE")) == 1 and len(callee.requests("BYE")) == 0
    bye = caller.requests("BYE")[0]
    assert bye.call_id == "call-1@192.0.2.1" and bye.to_address.tag == "alice-tag"
    assert statuses(callee)[-1] == 200 and statuses(caller)[-1] == 200
    [ended] = switch.ended
    assert ended.result is CallResult.ANSWERED
    assert abs(ended.duration - 4.0) < 0.1
    assert_all_freed(caller, switch, callee)


def test_cancel_while_ringing() -> None:
    caller, switch, callee, link = setup()
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: caller.cancel(now))
    link.run()
    assert statuses(caller) == [100, 180, 200, 487]  # 200 is the CANCEL's
    assert any(isinstance(e, CancelReceived) for e in callee.events)
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.CANCELLED, 0.0, 487)]
    assert_all_freed(caller, switch, callee)


def test_busy_is_relayed() -> None:
    caller, switch, callee, link = setup()
    callee.on_invite = 486
    link.at(0.0, lambda now: caller.call(now))
    link.run()
    assert statuses(caller) == [100, 180, 486]
    assert caller.responses()[-1].reason == "Busy Here"
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.REJECTED, 0.0, 486)]
    assert_all_freed(caller, switch, callee)


def test_no_answer_timeout_answers_480_and_cancels_the_callee() -> None:
    caller, switch, callee, link = setup(no_answer_timeout=10.0)
    link.at(0.0, lambda now: caller.call(now))
    link.run()
    assert statuses(caller) == [100, 180, 480]
    assert any(isinstance(e, CancelReceived) for e in callee.events)
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.NO_ANSWER, 0.0, 480)]
    assert_all_freed(caller, switch, callee)


def test_max_forwards_exhausted_gets_483() -> None:
    caller, switch, callee, link = setup()
    link.at(0.0, lambda now: caller.call(now, max_forwards=0))
    link.run()
    assert statuses(caller) == [100, 483]
    assert callee.events == []
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.FAILED, 0.0, 483)]
    assert_all_freed(caller, switch, callee)


def test_dialog_strict_route_and_cseq() -> None:
    dialog = Dialog.from_uas_request(
        Request("INVITE", "sip:b@h", _invite_headers()), "local", "sip:me@192.0.2.10"
    )
    assert dialog.remote_target == "sip:a@192.0.2.1"
    bye = dialog.create_request("BYE")
    assert bye.uri_text == "sip:strict@192.0.2.5"
    assert bye.headers.get_all("route") == ["<sip:a@192.0.2.1>"]
    assert bye.cseq.number == 1 and dialog.create_request("BYE").cseq.number == 2
    assert bye.to_address.tag == "caller" and bye.from_address.tag == "local"


def _invite_headers() -> Headers:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
    headers.add("Record-Route", "<sip:strict@192.0.2.5>")
    headers.add("From", "<sip:a@example.com>;tag=caller")
    headers.add("To", "<sip:b@example.com>")
    headers.add("Call-ID", "c")
    headers.add("CSeq", "7 INVITE")
    headers.add("Contact", "<sip:a@192.0.2.1>")
    return headers
