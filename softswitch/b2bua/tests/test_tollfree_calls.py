"""Toll-free calls through the call service (issue 5), in memory.

The switch is a real `SipEndpoint` driven by a `CallService`; the carrier trunk and the
destinations are only flows: their requests and answers are datagrams built here. The
wall clock (schedules, record times) is a list the test moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
from collections import Counter
from collections.abc import Iterable

import pytest

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.domain import RefusalAction, ScheduleAction
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DestinationEntry,
    DestinationSetEntry,
    TenantEntry,
    TollFreeEntry,
    TrunkEntry,
    TrunkSource,
)
from softswitch.b2bua.announcement_call import (
    MEDIA_OPEN_TIMEOUT,
    MediaEffect,
    OpenMedia,
    PlayAnnouncement,
    StopMedia,
)
from softswitch.b2bua.announcement_media import AnnouncementMedia
from softswitch.b2bua.caller_auth import CallerAuthenticator
from softswitch.b2bua.service import CallService
from softswitch.b2bua.tollfree_routing import (
    DEFAULT_ATTEMPT_TIMEOUT,
    TollFreeRefusal,
    TollFreeRouter,
    tollfree_number_of,
)
from softswitch.media import Announcement, AnnouncementKind, AnnouncementLibrary, Language
from softswitch.media.wav import PcmAudio
from softswitch.registrar.bindings import Binding
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import NonceManager
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint, client_transaction_key
from softswitch.sip.events import (
    RequestReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.tollfree.schedule import TOKYO
from softswitch.tollfree.tests.factories import schedule, tollfree, weekly

DOMAIN = "tf.example.com"
SWITCH: Address = ("192.0.2.10", 5060)
CARRIER: Address = ("192.0.2.99", 5060)
"""The trusted carrier trunk's source."""
STRANGER: Address = ("198.51.100.9", 5060)
TOKYO_GW: Address = ("192.0.2.31", 5060)
OSAKA_GW: Address = ("192.0.2.32", 5070)
NUMBER = "0120000111"
MONDAY_10 = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=TOKYO).timestamp()
TUESDAY_10 = MONDAY_10 + 86400.0


def trunk(name: str, address: Address, capacity: int | None = None) -> TrunkEntry:
    return TrunkEntry(
        name,
        None,
        address[0],
        address[1],
        TrunkTransport.UDP,
        (TrunkSource(address[0], None),),
        capacity=capacity,
    )


TRUNKS = (trunk("carrier", CARRIER), trunk("tokyo", TOKYO_GW), trunk("osaka", OSAKA_GW))
ROUTE_OF = {"tokyo": TOKYO_GW, "osaka": OSAKA_GW}


def destinations(*items: tuple[str, int, str], name: str = "default") -> DestinationSetEntry:
    return DestinationSetEntry(
        name, tuple(DestinationEntry(number, weight, trunk) for number, weight, trunk in items)
    )


TOKYO_OSAKA = destinations(("0312340001", 3, "tokyo"), ("0612340001", 1, "osaka"))


def snapshot_of(
    entries: Iterable[TollFreeEntry], trunks: Iterable[TrunkEntry] = TRUNKS
) -> ConfigSnapshot:
    return ConfigSnapshot.build(
        [TenantEntry("demo", "Demo", DOMAIN, ("s",))], [], list(trunks), tollfree_numbers=entries
    )


class NoContacts:
    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        return []


class ListSink:
    def __init__(self) -> None:
        self.records: list[TollFreeCallRecord] = []

    def record(self, call_record: TollFreeCallRecord) -> None:
        self.records.append(call_record)


class Switch:
    """The call service with a trunk caller and destination gateways around it."""

    def __init__(self, *entries: TollFreeEntry, trunks: Iterable[TrunkEntry] = TRUNKS) -> None:
        numbers = itertools.count(1)
        self.endpoint = SipEndpoint(
            EndpointConfig(*SWITCH), random_token=lambda: f"sw{next(numbers)}"
        )
        self.snapshot = snapshot_of(entries, trunks)
        directory = SnapshotDirectory(self.snapshot)
        authenticator = CallerAuthenticator(
            self.snapshot, directory, directory, NonceManager(b"k" * 32, 300.0), self.endpoint
        )
        self.wall = MONDAY_10
        self.sink = ListSink()
        self.service = CallService(
            self.endpoint,
            self.snapshot,
            authenticator,
            NoContacts(),
            lambda: self.wall,
            f"sip:{SWITCH[0]}:{SWITCH[1]}",
            lambda: f"tok{next(numbers)}",
            call_record_sink=self.sink,
        )
        self.now = 0.0
        self.to_caller: list[Response] = []
        self.to_destinations: list[tuple[Request, Flow]] = []
        self.to_destination_responses: list[Response] = []
        self.to_caller_requests: list[Request] = []
        self.invites: dict[str, Request] = {}
        """The caller's INVITEs by Call-ID."""

    @property
    def router(self) -> TollFreeRouter:
        return self.service.tollfree

    # ------------------------------------------------------------------ plumbing
    def collect(self) -> None:
        for data, flow in self.endpoint.data_to_send():
            message = parse_message(data)
            if isinstance(message, Response):
                if flow.remote == CARRIER or flow.remote == STRANGER:
                    self.to_caller.append(message)
                else:
                    self.to_destination_responses.append(message)
            else:
                assert isinstance(message, Request)
                if flow.remote == CARRIER:
                    self.to_caller_requests.append(message)
                else:
                    self.to_destinations.append((message, flow))

    def deliver(self, data: bytes, source: Address) -> list[SipEvent]:
        self.endpoint.receive_datagram(data, source, self.now)
        left: list[SipEvent] = []
        while (event := self.endpoint.next_event()) is not None:
            if (
                isinstance(event, RequestReceived)
                and event.request.method == "INVITE"
                and not (event.request.to_address.tag)
            ):
                response = self.service.handle_invite(event, self.now)
                if response is not None:
                    assert event.transaction_key is not None
                    self.endpoint.send_response(response, self.now, event.transaction_key)
            elif not self.service.handle_call_event(event, self.now) and not isinstance(
                event, TransactionTerminated
            ):
                left.append(event)
        self.collect()
        return left

    # ------------------------------------------------------------------ the caller
    def call(
        self,
        call_id: str,
        number: str = NUMBER,
        caller: str = "0312345678",
        extra: str = "",
        source: Address = CARRIER,
    ) -> None:
        text = (
            f"INVITE sip:{number}@{SWITCH[0]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK-{call_id}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{caller}@carrier.example>;tag=a-{call_id}\r\n"
            f"To: <sip:{number}@{SWITCH[0]}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@{source[0]}:{source[1]}>\r\n"
            f"{extra}Content-Length: 0\r\n\r\n"
        )
        message = parse_message(text.encode())
        assert isinstance(message, Request)
        self.invites[call_id] = message
        assert self.deliver(text.encode(), source) == []

    def caller_final(self, call_id: str) -> Response | None:
        finals = [
            r
            for r in self.to_caller
            if r.call_id == call_id and r.status_code >= 200 and r.cseq.method == "INVITE"
        ]
        assert len(finals) <= 1 or all(f.status_code == finals[0].status_code for f in finals)
        return finals[0] if finals else None

    def caller_in_dialog(self, call_id: str, method: str, cseq: int) -> None:
        final = self.caller_final(call_id)
        assert final is not None and final.status_code == 200
        text = (
            f"{method} sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bK-{call_id}-{method}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {final.headers.get('From')}\r\nTo: {final.headers.get('To')}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.deliver(text.encode(), CARRIER) == []

    def cancel(self, call_id: str) -> None:
        invite = self.invites[call_id]
        text = (
            f"CANCEL {invite.uri_text} SIP/2.0\r\n"
            f"Via: {invite.headers.get('Via')}\r\nMax-Forwards: 70\r\n"
            f"From: {invite.headers.get('From')}\r\nTo: {invite.headers.get('To')}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.deliver(text.encode(), CARRIER) == []

    # ------------------------------------------------------------------ destinations
    def pending_invite(self) -> tuple[Request, Flow]:
        """The latest INVITE the switch sent to a destination."""
        invites = [(r, f) for r, f in self.to_destinations if r.method == "INVITE"]
        return invites[-1]

    def answer(self, request: Request, flow: Flow, status_code: int) -> None:
        lines = [f"SIP/2.0 {status_code} X"]
        for name in ("Via", "From", "Call-ID", "CSeq"):
            lines.extend(f"{name}: {value}" for value in request.headers.get_all(name))
        to = request.headers.get("To") or ""
        lines.append(f"To: {to}" if ";tag=" in to else f"To: {to};tag=dest")
        lines.append(f"Contact: <sip:dest@{flow.remote[0]}:{flow.remote[1]}>")
        lines += ["Content-Length: 0", "", ""]
        assert self.deliver("\r\n".join(lines).encode(), flow.remote) == []

    def destination_bye(self, request: Request, flow: Flow) -> None:
        text = (
            f"BYE sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {flow.remote[0]}:{flow.remote[1]};branch=z9hG4bK-dest-bye\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {request.headers.get('To')};tag=dest\r\nTo: {request.headers.get('From')}\r\n"
            f"Call-ID: {request.call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.deliver(text.encode(), flow.remote) == []

    def answer_requests(self, method: str, requests: Iterable[tuple[Request, Flow]]) -> None:
        """200 to every request of `method` the switch sent (BYEs of a hang-up)."""
        for request, flow in list(requests):
            if request.method == method:
                self.answer(request, flow, 200)

    def held(self) -> tuple[int, int]:
        """(channels of NUMBER, trunk channels) in use."""
        return self.router.number_channels.in_use(NUMBER), self.router.trunk_channels.total()

    def categories(self) -> list[str]:
        return [record.category.value for record in self.sink.records]


def answered_call(switch: Switch, call_id: str) -> tuple[Request, Flow]:
    switch.call(call_id)
    request, flow = switch.pending_invite()
    switch.answer(request, flow, 180)
    switch.answer(request, flow, 200)
    final = switch.caller_final(call_id)
    assert final is not None and final.status_code == 200
    switch.caller_in_dialog(call_id, "ACK", 1)
    return request, flow


# ======================================================================= routing basics


def test_the_request_uri_user_selects_toll_free_routing_in_both_forms() -> None:
    def request(user: str) -> Request:
        text = (
            f"INVITE sip:{user}@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n"
            "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        message = parse_message(text.encode())
        assert isinstance(message, Request)
        return message

    assert tollfree_number_of(request("0120000111")) == NUMBER
    assert tollfree_number_of(request("+81120000111")) == NUMBER
    assert tollfree_number_of(request("+818001234567")) == "08001234567"
    assert tollfree_number_of(request("1001")) is None
    assert tollfree_number_of(request("012000011")) is None  # too short


def test_an_answered_call_goes_to_the_destination_over_its_trunk_and_is_connected() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.wall = MONDAY_10
    request, flow = answered_call(switch, "c1")
    assert str(request.uri) == f"sip:0312340001@{TOKYO_GW[0]}:{TOKYO_GW[1]}"
    assert flow == Flow(Transport.UDP, TOKYO_GW)
    assert switch.held() == (1, 1)
    switch.wall = MONDAY_10 + 60
    switch.caller_in_dialog("c1", "BYE", 2)
    switch.answer_requests("BYE", switch.to_destinations)
    assert switch.held() == (0, 0)
    assert len(switch.service) == 0
    (record,) = switch.sink.records
    assert record == TollFreeCallRecord(
        "c1",
        NUMBER,
        "demo",
        "0312345678",
        "0312340001",
        TollFreeCategory.CONNECTED,
        200,
        MONDAY_10,
        MONDAY_10,
        MONDAY_10 + 60,
    )


def test_e164_request_uri_and_a_stranger_and_an_unknown_number() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1", number="+81120000111")
    assert switch.pending_invite()[0].uri.user == "0312340001"  # type: ignore[union-attr]
    # An unknown toll-free number from the trunk: 404, no toll-free record.
    switch.call("c2", number="0120999999")
    final = switch.caller_final("c2")
    assert final is not None and final.status_code == 404
    assert switch.sink.records == []
    # Not from a trusted trunk: 403 (only trunks reach toll-free routing).
    refusal = switch.router.admit(switch.invites["c2"], NUMBER, None, switch.snapshot, MONDAY_10)
    assert isinstance(refusal, TollFreeRefusal) and refusal.status_code == 403
    assert refusal.record is None


# ======================================================================= distribution


def test_400_calls_at_3_to_1_split_exactly_300_and_100() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    counts: Counter[str] = Counter()
    for index in range(400):
        switch.call(f"c{index}")
        request, flow = switch.pending_invite()
        counts[str(request.uri.user)] += 1  # type: ignore[union-attr]
        switch.answer(request, flow, 404)  # ended at once: the next call is a new one
    assert counts == {"0312340001": 300, "0612340001": 100}
    assert switch.held() == (0, 0)
    assert switch.categories() == ["other"] * 400


def test_the_rotation_survives_snapshot_swaps() -> None:
    entry = tollfree(sets=[TOKYO_OSAKA])
    switch = Switch(entry)
    chosen = []
    for index in range(4):
        if index == 2:
            switch.service.replace_snapshot(snapshot_of([entry]))  # a new, equal snapshot
        switch.call(f"c{index}")
        request, flow = switch.pending_invite()
        chosen.append(str(request.uri.user)[:2])  # type: ignore[union-attr]
        switch.answer(request, flow, 404)
    assert chosen == ["03", "03", "06", "03"]  # nginx smooth weighted round-robin, 3:1


def test_failover_is_sequential_in_the_rotation_order_and_503_becomes_500() -> None:
    three = destinations(
        ("0312340001", 3, "tokyo"), ("0612340001", 2, "osaka"), ("0312340002", 1, "tokyo")
    )
    switch = Switch(tollfree(sets=[three]))
    switch.call("c1")
    tried: list[str] = []
    for _ in range(3):
        invites = [r for r, _ in switch.to_destinations if r.method == "INVITE"]
        assert len(invites) == len(tried) + 1  # one at a time, never in parallel
        request, flow = switch.pending_invite()
        tried.append(str(request.uri.user))  # type: ignore[union-attr]
        switch.answer(request, flow, 503)
    assert tried == ["0312340001", "0612340001", "0312340002"]
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 500  # §16.7 step 6
    assert switch.held() == (0, 0)
    (record,) = switch.sink.records
    assert (record.category, record.destination) == (TollFreeCategory.OTHER, "0312340002")


def test_503_then_success_is_connected_and_holds_one_trunk_channel() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    request, flow = switch.pending_invite()
    assert flow.remote == TOKYO_GW
    switch.answer(request, flow, 180)
    switch.answer(request, flow, 503)
    request, flow = switch.pending_invite()
    assert flow.remote == OSAKA_GW
    assert switch.router.trunk_channels.in_use("tokyo") == 0
    assert switch.router.trunk_channels.in_use("osaka") == 1
    switch.answer(request, flow, 200)
    switch.caller_in_dialog("c1", "ACK", 1)
    # The destination hangs up this time.
    switch.destination_bye(request, flow)
    switch.answer_requests(
        "BYE", [(r, Flow(Transport.UDP, CARRIER)) for r in switch.to_caller_requests]
    )
    assert switch.held() == (0, 0)
    (record,) = switch.sink.records
    assert (record.category, record.destination) == (TollFreeCategory.CONNECTED, "0612340001")


def test_a_silent_destination_is_given_up_after_the_attempt_timeout() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    silent, silent_flow = switch.pending_invite()
    assert switch.service.next_deadline() == DEFAULT_ATTEMPT_TIMEOUT
    switch.now = DEFAULT_ATTEMPT_TIMEOUT
    switch.service.handle_timer(switch.now)
    switch.collect()
    request, flow = switch.pending_invite()
    assert flow.remote == OSAKA_GW
    assert switch.held() == (1, 1)
    switch.answer(request, flow, 180)
    assert switch.service.next_deadline() == DEFAULT_ATTEMPT_TIMEOUT + 30.0
    # The given-up destination wakes up and answers: too late, ACKed and hung up (§15).
    switch.answer(silent, silent_flow, 200)
    byes = [(r, f) for r, f in switch.to_destinations if r.method == "BYE"]
    assert [f.remote for _, f in byes] == [TOKYO_GW]
    switch.answer_requests("BYE", byes)
    switch.answer(request, flow, 200)
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 200
    switch.caller_in_dialog("c1", "ACK", 1)
    switch.caller_in_dialog("c1", "BYE", 2)
    switch.answer_requests("BYE", [(r, f) for r, f in switch.to_destinations if f == flow])
    assert switch.held() == (0, 0)
    (record,) = switch.sink.records
    assert (record.category, record.destination) == (TollFreeCategory.CONNECTED, "0612340001")


def test_strict_distribution_never_fails_over() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], strict=True))
    switch.call("c1")
    request, flow = switch.pending_invite()
    switch.answer(request, flow, 503)
    assert len([r for r, _ in switch.to_destinations if r.method == "INVITE"]) == 1
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 500
    assert switch.categories() == ["other"]
    assert switch.held() == (0, 0)


@pytest.mark.parametrize("failure", ["transport error", "Timer B"])
def test_a_transport_error_or_timer_b_fails_over(failure: str) -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    request, _ = switch.pending_invite()
    key = client_transaction_key(request.top_via.branch, "INVITE")
    event: SipEvent = (
        TransportError(key, True, "refused")
        if failure == "transport error"
        else TransactionTimeout(key, "INVITE", True)
    )
    assert switch.service.handle_call_event(event, switch.now)
    switch.collect()
    request, flow = switch.pending_invite()
    assert flow.remote == OSAKA_GW
    switch.answer(request, flow, 486)
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 486
    assert switch.categories() == ["busy"]
    assert switch.held() == (0, 0)


@pytest.mark.parametrize(
    ("status_code", "caller_status", "category"),
    [(486, 486, "busy"), (600, 486, "busy"), (404, 404, "other"), (603, 603, "other")],
)
def test_destination_refusals_are_relayed_without_failover(
    status_code: int, caller_status: int, category: str
) -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    request, flow = switch.pending_invite()
    switch.answer(request, flow, status_code)
    assert len([r for r, _ in switch.to_destinations if r.method == "INVITE"]) == 1
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == caller_status
    assert switch.categories() == [category]
    assert switch.held() == (0, 0)


# ======================================================================= channels


def test_the_call_over_the_channel_limit_is_busy_and_a_freed_channel_is_reused() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], channel_setting=2))
    switch.call("c1")
    switch.call("c2")
    assert switch.held() == (2, 2)
    switch.call("c3")
    final = switch.caller_final("c3")
    assert final is not None and final.status_code == 486
    assert switch.sink.records[-1].category is TollFreeCategory.BUSY
    assert switch.sink.records[-1].destination is None
    switch.cancel("c1")
    switch.answer_requests("CANCEL", switch.to_destinations)
    invite_c1 = next(r for r, f in switch.to_destinations if r.method == "INVITE")
    switch.answer(invite_c1, Flow(Transport.UDP, TOKYO_GW), 487)
    assert switch.held() == (1, 1)
    switch.call("c4")
    assert switch.caller_final("c4") is None  # admitted: ringing
    assert switch.held() == (2, 2)


def test_a_saturated_trunk_is_skipped_and_all_saturated_is_busy() -> None:
    trunks = (trunk("carrier", CARRIER), trunk("tokyo", TOKYO_GW, 1), trunk("osaka", OSAKA_GW, 1))
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]), trunks=trunks)
    switch.call("c1")
    switch.call("c2")
    assert [f.remote for _, f in switch.to_destinations] == [TOKYO_GW, OSAKA_GW]
    switch.call("c3")
    final = switch.caller_final("c3")
    assert final is not None and final.status_code == 486
    assert switch.categories() == ["busy"]


def test_cancel_while_ringing_is_abandoned_and_releases() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    request, flow = switch.pending_invite()
    switch.answer(request, flow, 180)
    switch.cancel("c1")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 487
    switch.answer_requests("CANCEL", switch.to_destinations)
    switch.answer(request, flow, 487)
    assert switch.held() == (0, 0)
    assert switch.categories() == ["abandoned"]
    assert switch.service.index_sizes()["calls"] == 0


def test_no_answer_timeout_is_480_other_and_releases() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.call("c1")
    request, flow = switch.pending_invite()
    switch.answer(request, flow, 180)
    deadline = switch.service.next_deadline()
    assert deadline == 30.0  # the default toll-free no-answer timeout
    switch.now = deadline
    switch.service.handle_timer(deadline)
    switch.collect()
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 480
    switch.answer_requests("CANCEL", switch.to_destinations)
    switch.answer(request, flow, 487)
    assert switch.held() == (0, 0)
    assert switch.categories() == ["other"]


class ExplodingSink(ListSink):
    def record(self, call_record: TollFreeCallRecord) -> None:
        super().record(call_record)
        raise RuntimeError("sink down")


def test_a_crashing_call_releases_and_leaves_one_record_and_a_broken_sink_is_counted() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA]))
    switch.sink = ExplodingSink()
    switch.service._call_record_sink = switch.sink
    switch.call("c1")
    request, flow = switch.pending_invite()

    def explode(event: SipEvent, now: float) -> bool:
        raise RuntimeError("bug")

    entry = switch.service._calls["c1"]
    entry.call.handle_event = explode  # type: ignore[method-assign]
    switch.answer(request, flow, 180)
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 500
    assert switch.held() == (0, 0)
    (record,) = switch.sink.records
    assert (record.category, record.final_status) == (TollFreeCategory.OTHER, 500)
    assert switch.service.counters["tollfree_record_sink_errors"] == 1


# ======================================================================= area and schedules


def test_a_caller_outside_the_designated_areas_gets_403_out_of_area() -> None:
    entry = tollfree(sets=[TOKYO_OSAKA], whole_country=False, prefectures=["27"])  # Osaka
    switch = Switch(entry)
    switch.call("c1", caller="0312345678")  # Tokyo
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 403
    # P-Asserted-Identity (RFC 3325) wins over From for a trusted trunk.
    switch.call("c2", caller="0312345678", extra="P-Asserted-Identity: <sip:0661234567@c>\r\n")
    assert switch.caller_final("c2") is None  # admitted
    switch.call("c3", caller="0661234567", extra="P-Asserted-Identity: <sip:0312345678@c>\r\n")
    final = switch.caller_final("c3")
    assert final is not None and final.status_code == 403
    assert switch.categories() == ["out_of_area", "out_of_area"]
    assert switch.sink.records[0].destination is None
    assert switch.held() == (1, 1)


def test_privacy_id_withholds_the_caller() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], allow_withheld=False))
    switch.call("c1", extra="Privacy: id\r\n")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 403
    assert [(r.category.value, r.caller) for r in switch.sink.records] == [
        ("out_of_area", "0312345678")
    ]


def test_a_destination_change_schedule_follows_the_injected_wall_clock() -> None:
    night = destinations(("0612340009", 1, "osaka"), name="monday")
    change = schedule(
        "mondays",
        ScheduleAction.DESTINATION_CHANGE,
        [weekly(0, "09:00", "18:00")],
        destination_set_name="monday",
    )
    switch = Switch(tollfree(sets=[TOKYO_OSAKA, night], schedules=[change]))
    switch.wall = MONDAY_10
    switch.call("c1")
    assert switch.pending_invite()[0].uri.user == "0612340009"  # type: ignore[union-attr]
    switch.wall = TUESDAY_10
    switch.call("c2")
    assert switch.pending_invite()[0].uri.user == "0312340001"  # type: ignore[union-attr]
    switch.wall = MONDAY_10 + 8 * 3600  # 18:00 JST: the range has ended
    switch.call("c3")
    assert switch.pending_invite()[0].uri.user == "0312340001"  # type: ignore[union-attr]


def test_after_hours_is_refused_for_now_and_counted_after_hours() -> None:
    closed = schedule("closed", ScheduleAction.AFTER_HOURS, [weekly(0, "00:00", "24:00")])
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], schedules=[closed]))
    switch.call("c1")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 480
    assert switch.categories() == ["after_hours"]
    assert switch.to_destinations == []
    assert switch.held() == (0, 0)


# ======================================================================= option contracts


def test_features_without_their_option_contract_are_not_in_force() -> None:
    """`softswitch.tollfree.options`: the settings are stored, the contract decides."""
    night = destinations(("0612340009", 1, "osaka"), name="monday")
    change = schedule(
        "mondays",
        ScheduleAction.DESTINATION_CHANGE,
        [weekly(0, "09:00", "18:00")],
        destination_set_name="monday",
    )
    closed = schedule("closed", ScheduleAction.AFTER_HOURS, [weekly(0, "09:00", "10:30")])
    entry = tollfree(
        sets=[TOKYO_OSAKA, night],
        schedules=[closed, change],
        whole_country=False,
        prefectures=["27"],  # Osaka only
        options=(),
    )
    switch = Switch(entry)
    for call_id in ("c1", "c2", "c3", "c4"):
        switch.call(call_id, caller="0312345678")  # a Tokyo caller, Monday 10:00, after hours
        assert switch.caller_final(call_id) is None  # admitted: no designation, no schedules
    # No distribution: every call goes to the first destination with a weight.
    invites = [r for r, _ in switch.to_destinations if r.method == "INVITE"]
    assert [r.uri.user for r in invites] == ["0312340001"] * 4  # type: ignore[union-attr]
    # 050 callers never connect, whatever the contract (check_area rule 1).
    switch.call("c5", caller="05012345678")
    final = switch.caller_final("c5")
    assert final is not None and final.status_code == 403


def test_the_same_settings_with_their_options_are_in_force() -> None:
    closed = schedule("closed", ScheduleAction.AFTER_HOURS, [weekly(0, "09:00", "10:30")])
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], schedules=[closed], options=["after_hours"]))
    switch.call("c1")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 480
    assert switch.categories() == ["after_hours"]


# ======================================================================= trunk-asserted area

AREA_HEADER = "X-Caller-Area"


def test_a_trunk_asserted_caller_area_wins_over_the_number() -> None:
    carrier = dataclasses.replace(TRUNKS[0], caller_area_header=AREA_HEADER)
    entry = tollfree(sets=[TOKYO_OSAKA], whole_country=False, prefectures=["13"])  # Tokyo
    switch = Switch(entry, trunks=(carrier, *TRUNKS[1:]))
    # A mobile caller has no area of its own; the network says Osaka (06): refused.
    switch.call("c1", caller="09012345678", extra=f"{AREA_HEADER}: 06\r\n")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 403
    # The network says Tokyo (03) for an Osaka fixed number: the assertion wins.
    switch.call("c2", caller="0661234567", extra=f"{AREA_HEADER}: 03;source=hlr\r\n")
    assert switch.caller_final("c2") is None
    # A value that is no area code is ignored and counted: the number's area decides.
    switch.call("c3", caller="0661234567", extra=f"{AREA_HEADER}: tokyo\r\n")
    final = switch.caller_final("c3")
    assert final is not None and final.status_code == 403
    assert switch.router.counters["tollfree_caller_area_invalid"] == 1
    assert switch.categories() == ["out_of_area", "out_of_area"]


def test_only_the_configured_trunk_header_is_read() -> None:
    entry = tollfree(sets=[TOKYO_OSAKA], whole_country=False, prefectures=["13"])
    switch = Switch(entry)  # the carrier trunk configures no area header
    switch.call("c1", caller="0661234567", extra=f"{AREA_HEADER}: 03\r\n")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 403


def test_the_no_answer_timeout_is_the_numbers_setting() -> None:
    switch = Switch(tollfree(sets=[TOKYO_OSAKA], no_answer_timeout_seconds=12))
    switch.call("c1")
    request, flow = switch.pending_invite()
    switch.answer(request, flow, 180)
    assert switch.service.next_deadline() == 12.0


# ======================================================================= announcements

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)
G729_ONLY = OFFER.replace("0 8", "18").replace(
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000"
)
MEDIA: Address = (SWITCH[0], 20000)
CLOSED = schedule("closed", ScheduleAction.AFTER_HOURS, [weekly(0, "00:00", "24:00")])


def with_offer(sdp: str = OFFER) -> str:
    return f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"


def offer_call(switch: Switch, call_id: str, caller: str = "0312345678", sdp: str = OFFER) -> None:
    """`Switch.call` with an SDP offer in the INVITE."""
    text = (
        f"INVITE sip:{NUMBER}@{SWITCH[0]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bK-{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@carrier.example>;tag=a-{call_id}\r\n"
        f"To: <sip:{NUMBER}@{SWITCH[0]}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:{caller}@{CARRIER[0]}:{CARRIER[1]}>\r\n"
    ) + (with_offer(sdp) if sdp else "Content-Length: 0\r\n\r\n")
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    switch.invites[call_id] = message
    assert switch.deliver(text.encode(), CARRIER) == []


def effects(switch: Switch) -> list[MediaEffect]:
    found = []
    while (effect := switch.service.next_media_effect()) is not None:
        found.append(effect)
    return found


def announcing_switch(*entries: TollFreeEntry) -> Switch:
    switch = Switch(*entries)
    switch.service.enable_announcements()
    return switch


def test_after_hours_is_answered_by_the_switch_which_plays_then_hangs_up() -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1")
    assert effects(switch) == [OpenMedia("c1")]
    assert switch.caller_final("c1") is None
    switch.wall = MONDAY_10 + 0.5
    switch.service.media_opened("c1", MEDIA, switch.now)
    switch.collect()
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 200
    assert final.headers.get("Content-Type") == "application/sdp"
    assert b"m=audio 20000 RTP/AVP 0" in final.body
    (play,) = effects(switch)
    assert isinstance(play, PlayAnnouncement)
    assert (play.call_id, play.announcement) == ("c1", "after_hours_ja")
    assert play.media.remote == ("192.0.2.99", 40000)
    switch.caller_in_dialog("c1", "ACK", 1)
    assert switch.to_destinations == []
    switch.wall = MONDAY_10 + 11
    switch.service.playback_finished("c1", switch.now)
    switch.collect()
    assert effects(switch) == [StopMedia("c1")]
    (bye,) = switch.to_caller_requests
    assert bye.method == "BYE"
    switch.answer_requests("BYE", [(bye, Flow(Transport.UDP, CARRIER))])
    assert len(switch.service) == 0
    (record,) = switch.sink.records
    assert record == TollFreeCallRecord(
        "c1", NUMBER, "demo", "0312345678", None, TollFreeCategory.AFTER_HOURS, 200,
        MONDAY_10, MONDAY_10 + 0.5, MONDAY_10 + 11,
    )  # fmt: skip
    assert switch.held() == (0, 0)


def test_a_caller_bye_stops_the_announcement() -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1")
    switch.service.media_opened("c1", MEDIA, switch.now)
    switch.collect()
    effects(switch)
    switch.caller_in_dialog("c1", "ACK", 1)
    switch.caller_in_dialog("c1", "BYE", 2)
    assert effects(switch) == [StopMedia("c1")]
    byes = [r for r in switch.to_caller if r.cseq.method == "BYE"]
    assert [r.status_code for r in byes] == [200]
    assert len(switch.service) == 0
    assert switch.categories() == ["after_hours"]
    # The adapter's late report of a call that is gone changes nothing.
    switch.service.playback_finished("c1", switch.now)
    assert switch.to_caller_requests == []


def test_cancel_before_the_media_is_ready_and_the_late_socket_is_closed() -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1")
    assert effects(switch) == [OpenMedia("c1")]
    switch.cancel("c1")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 487
    assert effects(switch) == [StopMedia("c1")]
    switch.service.media_opened("c1", MEDIA, switch.now)
    assert effects(switch) == [StopMedia("c1")]
    assert [(r.category.value, r.final_status) for r in switch.sink.records] == [
        ("after_hours", 487)
    ]


def test_an_out_of_area_caller_hears_the_refusal_announcement() -> None:
    entry = tollfree(sets=[TOKYO_OSAKA], whole_country=False, prefectures=["27"])
    switch = announcing_switch(entry)
    offer_call(switch, "c1")
    assert effects(switch) == [OpenMedia("c1")]
    switch.service.media_opened("c1", MEDIA, switch.now)
    switch.collect()
    (play,) = effects(switch)
    assert isinstance(play, PlayAnnouncement) and play.announcement == "out_of_area_ja"
    switch.caller_in_dialog("c1", "ACK", 1)
    switch.caller_in_dialog("c1", "BYE", 2)
    assert switch.categories() == ["out_of_area"]


def test_refusal_action_reject_is_403_even_with_announcements() -> None:
    entry = dataclasses.replace(
        tollfree(sets=[TOKYO_OSAKA], whole_country=False, prefectures=["27"]),
        refusal_action=RefusalAction.REJECT,
    )
    switch = announcing_switch(entry)
    offer_call(switch, "c1")
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 403
    assert effects(switch) == []


@pytest.mark.parametrize(
    ("sdp", "address", "status_code"),
    [
        (G729_ONLY, MEDIA, 488),
        (OFFER, None, 500),
    ],
)  # fmt: skip
def test_an_unanswerable_offer_or_no_socket_fails_the_call(
    sdp: str, address: Address | None, status_code: int
) -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1", sdp=sdp)
    switch.service.media_opened("c1", address, switch.now)
    switch.collect()
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == status_code
    assert effects(switch) == [OpenMedia("c1"), StopMedia("c1")]
    assert [(r.category.value, r.final_status) for r in switch.sink.records] == [
        ("after_hours", status_code)
    ]


def test_no_socket_in_time_is_500() -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1")
    deadline = switch.service.next_deadline()
    assert deadline == MEDIA_OPEN_TIMEOUT
    switch.service.handle_timer(deadline)
    switch.collect()
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 500
    assert len(switch.service) == 0


def test_a_late_offer_gets_our_offer_and_plays_on_the_acks_answer() -> None:
    switch = announcing_switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
    offer_call(switch, "c1", sdp="")
    switch.service.media_opened("c1", MEDIA, switch.now)
    switch.collect()
    final = switch.caller_final("c1")
    assert final is not None and final.status_code == 200 and b"m=audio 20000" in final.body
    assert effects(switch) == [OpenMedia("c1")]
    answer = OFFER.replace(" 0 8\r\n", " 0\r\n").replace("a=rtpmap:8 PCMA/8000\r\n", "")
    text = (
        f"ACK sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bK-c1-ack\r\n"
        f"Max-Forwards: 70\r\nFrom: {final.headers.get('From')}\r\n"
        f"To: {final.headers.get('To')}\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\n" + with_offer(answer)
    )
    assert switch.deliver(text.encode(), CARRIER) == []
    (play,) = effects(switch)
    assert isinstance(play, PlayAnnouncement) and play.media.codec.name == "PCMU"


# ======================================================================= the asyncio adapter


def test_the_media_adapter_plays_to_the_callers_rtp_port_and_closes_every_socket() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        receiver, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        rtp_port = receiver.get_extra_info("sockname")[1]
        sdp = OFFER.replace("192.0.2.99", "127.0.0.1").replace("40000", str(rtp_port))
        audio = PcmAudio(b"\x00\x00" * 800)  # 0.1 s of silence
        library = AnnouncementLibrary(
            {
                (AnnouncementKind.AFTER_HOURS, Language.JA): Announcement.from_audio(
                    "after_hours_ja", audio
                )
            }
        )
        switch = Switch(tollfree(sets=[TOKYO_OSAKA], schedules=[CLOSED]))
        reports: list[int] = []
        media = AnnouncementMedia(
            loop, switch.service, library, "127.0.0.1", None, lambda: reports.append(1)
        )
        # A call cancelled while its socket is being bound: the socket is closed.
        offer_call(switch, "c1", sdp=sdp)
        media.pump()
        switch.cancel("c1")
        media.pump()
        # A call played to its end: the switch hangs up.
        offer_call(switch, "c2", sdp=sdp)
        media.pump()
        for _ in range(100):
            await asyncio.sleep(0.01)
            switch.collect()
            if switch.to_caller_requests:
                break
        (bye,) = switch.to_caller_requests
        assert bye.method == "BYE" and bye.call_id == "c2"
        assert len(media) == 0
        assert reports  # the shell ran after each report
        receiver.close()

    asyncio.run(scenario())
