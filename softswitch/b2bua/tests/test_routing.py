"""Caller authentication, routing decisions and the call service's dispatch, in memory.

The call service test drives a real `SipEndpoint` for the switch with datagrams built
here; the callee is only a flow (nothing listens): its answers are injected as bytes.
"""

from __future__ import annotations

import itertools
from types import MappingProxyType

import pytest

from cloudpbx.domain import DigestAlgorithm, ExtensionKind
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DigestCredential,
    ExtensionEntry,
    TenantEntry,
    TrunkEntry,
    TrunkSource,
)
from softswitch.b2bua.caller_auth import AuthenticatedCaller, CallerAuthenticator
from softswitch.b2bua.routing import CallRejection, CallRoute, route_call, static_contact_flow
from softswitch.b2bua.service import CallService
from softswitch.registrar.bindings import AddressOfRecord, Binding
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import DigestChallenge, NonceManager, answer_challenge, compute_ha1
from softswitch.sip.endpoint import STATELESS_TAG_PREFIX, EndpointConfig, SipEndpoint
from softswitch.sip.events import RequestReceived, SipEvent, TransactionTimeout
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.uri import parse_uri

DOMAIN = "pbx.example.com"
SWITCH = ("192.0.2.10", 5060)
PHONE = Flow(Transport.UDP, ("192.0.2.1", 5062))
TRUNK = Flow(Transport.UDP, ("192.0.2.99", 5060))
CALLEE = ("192.0.2.2", 5070)


def extension(
    number: str, static_contact: str | None = None, algorithms: tuple[str, ...] = ("MD5",)
) -> ExtensionEntry:
    password = f"pass{number}"
    credential = DigestCredential(
        number,
        DOMAIN,
        MappingProxyType(
            {
                DigestAlgorithm(name): compute_ha1(number, DOMAIN, password, name)
                for name in ("MD5", "SHA-256")
            }
        ),
    )
    return ExtensionEntry(
        "t",
        "s",
        DOMAIN,
        number,
        ExtensionKind.FIXED_IP_PHONE,
        "",
        tuple(DigestAlgorithm(name) for name in algorithms),
        25,
        static_contact,
        credential,
    )


SNAPSHOT = ConfigSnapshot.build(
    [TenantEntry("t", "T", DOMAIN, ("s",))],
    [
        extension("1001", algorithms=("SHA-256", "MD5")),
        extension("1002"),
        extension("2001", static_contact=f"sip:2001@{CALLEE[0]}:{CALLEE[1]}"),
        extension("2002", static_contact="sip:2002@phone.example.com"),
    ],
    [
        TrunkEntry(
            "gw", "t", "192.0.2.99", 5060, TrunkTransport.UDP, (TrunkSource("192.0.2.99", None),)
        )
    ],
)


class Registrations:
    def __init__(self) -> None:
        self.bindings: dict[tuple[str, str], list[Binding]] = {}

    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        return self.bindings.get((domain, user), [])


def binding(user: str, contact: str, flow: Flow) -> Binding:
    return Binding(
        AddressOfRecord(DOMAIN, user), parse_uri(contact), None, (), 1e12, "c", 1, flow, 0, 0
    )


def invite(callee: str, caller: str = "1001", extra: str = "", call_id: str = "c1") -> Request:
    text = (
        f"INVITE sip:{callee}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@{DOMAIN}>;tag=a\r\n"
        f"To: <sip:{callee}@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:1001@192.0.2.1:5062>\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    message.validate()
    return message


def switch_endpoint() -> SipEndpoint:
    numbers = itertools.count(1)
    return SipEndpoint(EndpointConfig(*SWITCH), random_token=lambda: f"sw{next(numbers)}")


def authenticator(endpoint: SipEndpoint) -> CallerAuthenticator:
    directory = SnapshotDirectory(SNAPSHOT)
    return CallerAuthenticator(
        SNAPSHOT, directory, directory, NonceManager(b"k" * 32, 300.0), endpoint
    )


# --- routing ----------------------------------------------------------------------------------


def test_unknown_extension_is_404_and_unreachable_is_480() -> None:
    registrations = Registrations()
    assert route_call(invite("3999"), DOMAIN, SNAPSHOT, registrations, 0) == CallRejection(404)
    assert route_call(invite("1002"), DOMAIN, SNAPSHOT, registrations, 0) == CallRejection(480)
    # A static contact whose host is a name: the core never resolves, so 480.
    rejection = route_call(invite("2002"), DOMAIN, SNAPSHOT, registrations, 0)
    assert isinstance(rejection, CallRejection) and rejection.status_code == 480


def test_registered_contact_wins_over_static_and_uses_the_binding_flow() -> None:
    registrations = Registrations()
    nat_flow = Flow(Transport.UDP, ("198.51.100.7", 40000))
    registrations.bindings[(DOMAIN, "2001")] = [binding("2001", "sip:2001@10.0.0.5:5060", nat_flow)]
    route = route_call(invite("2001"), DOMAIN, SNAPSHOT, registrations, 0)
    target = ("sip:2001@10.0.0.5:5060", nat_flow)
    assert route == CallRoute(f"sip:2001@{DOMAIN}", *target, 25.0, True, (target,))
    del registrations.bindings[(DOMAIN, "2001")]
    route = route_call(invite("2001"), DOMAIN, SNAPSHOT, registrations, 0)
    assert isinstance(route, CallRoute) and not route.registered
    assert route.flow == Flow(Transport.UDP, CALLEE)


def test_static_contact_flow() -> None:
    assert static_contact_flow("sip:a@192.0.2.5") == Flow(Transport.UDP, ("192.0.2.5", 5060))
    assert static_contact_flow("sip:a@[2001:db8::1]:5080;transport=tcp") == Flow(
        Transport.TCP, ("2001:db8::1", 5080)
    )
    assert static_contact_flow("sip:a@host.example") is None
    assert static_contact_flow("sip:a@192.0.2.5;transport=sctp") is None


# --- caller authentication ---------------------------------------------------------------------


def credentials_for(challenge_response: Response, user: str, password: str, index: int = 0) -> str:
    challenge = DigestChallenge.parse(
        challenge_response.headers.get_all("Proxy-Authenticate")[index]
    )
    assert challenge.realm is not None and challenge.algorithm is not None
    ha1 = compute_ha1(user, challenge.realm, password, challenge.algorithm)
    answer = answer_challenge(
        challenge,
        username=user,
        ha1=ha1,
        method="INVITE",
        uri=f"sip:2001@{DOMAIN}",
        cnonce="c0ffee",
    )
    return str(answer)


def test_407_offers_the_callers_algorithms_and_accepts_its_answer() -> None:
    endpoint = switch_endpoint()
    auth = authenticator(endpoint)
    challenge = auth.authenticate(invite("2001"), PHONE, 100.0)
    assert isinstance(challenge, Response) and challenge.status_code == 407
    algorithms = [
        DigestChallenge.parse(value).algorithm
        for value in challenge.headers.get_all("Proxy-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]  # RFC 8760 §2.3, 1001's own order
    answer = credentials_for(challenge, "1001", "pass1001")
    caller = auth.authenticate(
        invite("2001", extra=f"Proxy-Authorization: {answer}\r\n"), PHONE, 101.0
    )
    assert caller == AuthenticatedCaller(DOMAIN, "1001")


def test_wrong_password_unknown_user_and_spoofed_from_are_refused() -> None:
    endpoint = switch_endpoint()
    auth = authenticator(endpoint)
    challenge = auth.authenticate(invite("2001"), PHONE, 100.0)
    assert isinstance(challenge, Response)
    wrong = credentials_for(challenge, "1001", "guess")
    again = auth.authenticate(
        invite("2001", extra=f"Proxy-Authorization: {wrong}\r\n"), PHONE, 101.0
    )
    assert isinstance(again, Response) and again.status_code == 407
    unknown = credentials_for(challenge, "7777", "pass7777")
    again = auth.authenticate(
        invite("2001", caller="7777", extra=f"Proxy-Authorization: {unknown}\r\n"),
        PHONE,
        101.0,
    )
    assert isinstance(again, Response) and again.status_code == 407
    # 1002's valid credentials on an INVITE whose From is 1001.
    spoof = credentials_for(challenge, "1002", "pass1002", index=1)
    forbidden = auth.authenticate(
        invite("2001", extra=f"Proxy-Authorization: {spoof}\r\n"), PHONE, 101.0
    )
    assert isinstance(forbidden, Response) and forbidden.status_code == 403


def test_trusted_trunk_is_not_challenged() -> None:
    auth = authenticator(switch_endpoint())
    caller = auth.authenticate(invite("2001", caller="0312345678"), TRUNK, 0.0)
    assert caller == AuthenticatedCaller(DOMAIN, None, "gw")


# --- the call service -------------------------------------------------------------------------


def drain(endpoint: SipEndpoint, service: CallService, now: float) -> list[SipEvent]:
    left = []
    while (event := endpoint.next_event()) is not None:
        if not service.handle_call_event(event, now):
            left.append(event)
    return left


def sent(endpoint: SipEndpoint) -> list[tuple[Request | Response, Flow]]:
    messages = []
    for data, flow in endpoint.data_to_send():
        message = parse_message(data)
        assert isinstance(message, (Request, Response))
        messages.append((message, flow))
    return messages


def answer_from_callee(request: Request, status_code: int) -> bytes:
    lines = [f"SIP/2.0 {status_code} X"]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        lines.extend(f"{name}: {value}" for value in request.headers.get_all(name))
    lines.append(f"To: {request.headers.get('To')};tag=callee")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize("status_code", [486, 603])
def test_service_routes_a_trunk_call_and_dispatches_the_answer_by_index(
    status_code: int,
) -> None:
    endpoint = switch_endpoint()
    numbers = itertools.count(1)
    service = CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        Registrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: f"tok{next(numbers)}",
    )
    endpoint.receive_datagram(bytes(invite("2001", caller="0312345678")), TRUNK.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert not service.handle_call_event(event, 0.0)
    assert service.handle_invite(event, 0.0) is None
    assert len(service) == 1
    outgoing = [(m, f) for m, f in sent(endpoint) if isinstance(m, Request)]
    assert len(outgoing) == 1
    uac_invite, flow = outgoing[0]
    assert flow.remote == CALLEE and str(uac_invite.uri) == f"sip:2001@{CALLEE[0]}:{CALLEE[1]}"
    assert service.next_deadline() == 25.0  # the extension's no-answer timeout

    endpoint.receive_datagram(answer_from_callee(uac_invite, status_code), CALLEE, 0.5)
    assert drain(endpoint, service, 0.5) == []
    assert len(service) == 0 and service.next_deadline() is None
    record = service.next_record()
    assert record is not None
    assert (record.call_id, record.result, record.status_code) == ("c1", "rejected", status_code)
    assert record.callee == f"sip:2001@{DOMAIN}"
    relayed = [m for m, _ in sent(endpoint) if isinstance(m, Response) and m.status_code >= 200]
    assert [m.status_code for m in relayed] == [status_code]


def test_service_rejections_leave_a_record_and_challenges_do_not() -> None:
    endpoint = switch_endpoint()
    service = CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        Registrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: "tok",
    )
    endpoint.receive_datagram(bytes(invite("1002")), PHONE.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    challenge = service.handle_invite(event, 0.0)
    assert challenge is not None and challenge.status_code == 407
    assert service.next_record() is None
    endpoint.receive_datagram(
        bytes(invite("3999", caller="0312345678", call_id="c2")), TRUNK.remote, 0.0
    )
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    rejection = service.handle_invite(event, 0.0)
    assert rejection is not None and rejection.status_code == 404
    record = service.next_record()
    assert record is not None and (record.result, record.status_code) == ("rejected", 404)


def test_every_registered_contact_is_a_target_best_first() -> None:
    registrations = Registrations()
    desk = ("sip:1002@10.0.0.5:5060", Flow(Transport.UDP, ("198.51.100.7", 40000)))
    soft = ("sip:1002@10.0.0.6:5062", Flow(Transport.TCP, ("198.51.100.8", 40001)))
    registrations.bindings[(DOMAIN, "1002")] = [
        binding("1002", uri, flow) for uri, flow in (desk, soft, desk)
    ]
    route = route_call(invite("1002"), DOMAIN, SNAPSHOT, registrations, 0)
    assert isinstance(route, CallRoute)
    # A duplicate binding (same contact and flow) is one target, not a second ring.
    assert route.targets == (desk, soft)
    assert (route.target_uri, route.flow) == desk


def test_service_forks_to_every_registered_contact_and_the_first_2xx_wins() -> None:
    endpoint = switch_endpoint()
    numbers = itertools.count(1)
    registrations = Registrations()
    desk = Flow(Transport.UDP, ("198.51.100.7", 40000))
    soft = Flow(Transport.UDP, ("198.51.100.8", 40001))
    registrations.bindings[(DOMAIN, "1002")] = [
        binding("1002", "sip:1002@10.0.0.5:5060", desk),
        binding("1002", "sip:1002@10.0.0.6:5062", soft),
    ]
    service = CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        registrations,
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: f"tok{next(numbers)}",
    )
    endpoint.receive_datagram(bytes(invite("1002", caller="0312345678")), TRUNK.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert service.handle_invite(event, 0.0) is None
    invites = {f: m for m, f in sent(endpoint) if isinstance(m, Request)}
    assert set(invites) == {desk, soft}
    assert invites[desk].call_id != invites[soft].call_id  # one branch per contact

    # The desk phone rings; the softphone answers (RFC 3261 §16.7: the first 2xx wins).
    endpoint.receive_datagram(answer_from_callee(invites[desk], 180), desk.remote, 0.5)
    assert drain(endpoint, service, 0.5) == []
    ringing = [m.status_code for m, _ in sent(endpoint) if isinstance(m, Response)]
    assert ringing == [180]
    answer = answer_from_callee(invites[soft], 200).replace(
        b"Content-Length", b"Contact: <sip:1002@10.0.0.6:5062>\r\nContent-Length"
    )
    endpoint.receive_datagram(answer, soft.remote, 1.0)
    assert drain(endpoint, service, 1.0) == []
    out = sent(endpoint)
    # §9.1: the losing branch had a provisional response, so it is CANCELled now.
    requests = sorted((m.method, f.remote) for m, f in out if isinstance(m, Request))
    assert requests == [("ACK", soft.remote), ("CANCEL", desk.remote)]
    finals = [m.status_code for m, _ in out if isinstance(m, Response) and m.status_code >= 200]
    assert finals == [200]
    assert len(service) == 1

    # A timeout of a transaction no call owns is dropped and counted, never offered.
    assert not service.handle_call_event(TransactionTimeout("no-such-key", "INVITE", True), 2.0)
    assert service.counters["dropped_unindexed"] == 1


def test_a_draining_service_answers_new_invites_503_with_retry_after() -> None:
    endpoint = switch_endpoint()
    service = CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        Registrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: "tok",
    )
    service.stop_accepting()
    request = invite("2001", caller="0312345678")
    endpoint.receive_datagram(bytes(request), TRUNK.remote, 0.0)
    # Stateless (RFC 3261 §8.2.7): the 503 alone, no 100 Trying, no transaction, no
    # event for the element.
    assert endpoint.next_event() is None
    [(refusal, flow)] = sent(endpoint)
    assert isinstance(refusal, Response) and refusal.status_code == 503
    assert flow.remote == (TRUNK.remote[0], 5062)  # §18.2.2: received, Via port
    assert refusal.headers.get("Retry-After") == "30"
    tag = refusal.to_address.tag
    assert tag is not None and tag.startswith(STATELESS_TAG_PREFIX)
    assert endpoint.table_sizes()["server_transactions"] == 0
    assert service.next_record() is None and len(service) == 0
    assert service.counters["invites"] == service.counters["invites_refused_draining"] == 1

    # A retransmission gets the same To tag (§8.2.7); the ACK is absorbed (§8.2.7);
    # a CANCEL finds no INVITE transaction: 481 (§9.2).
    endpoint.receive_datagram(bytes(request), TRUNK.remote, 0.5)
    [(again, _)] = sent(endpoint)
    assert isinstance(again, Response) and again.to_address.tag == tag
    branch = "z9hG4bK-c1"
    ack = (
        f"ACK sip:2001@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5062;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:0312345678@{DOMAIN}>;tag=a\r\n"
        f"To: <sip:2001@{DOMAIN}>;tag={tag}\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    endpoint.receive_datagram(ack.encode(), TRUNK.remote, 0.6)
    assert endpoint.next_event() is None and sent(endpoint) == []
    assert endpoint.counters["stateless_acks_absorbed"] == 1
    cancel = ack.replace("ACK sip", "CANCEL sip").replace(";tag=" + tag, "").replace(
        "1 ACK", "1 CANCEL"
    )
    endpoint.receive_datagram(cancel.encode(), TRUNK.remote, 0.7)
    [(cancel_answer, _)] = sent(endpoint)
    assert isinstance(cancel_answer, Response) and cancel_answer.status_code == 481
    assert endpoint.counters["stateless_responses"] == 2


class FailingEndpoint(SipEndpoint):
    """An endpoint whose sends fail once `broken` is set: a stand-in for a bug."""

    broken = False

    def send_request(self, request: Request, now: float, destination: Flow) -> str:
        if self.broken:
            raise RuntimeError("send failed")
        return super().send_request(request, now, destination)


def test_a_call_that_raises_is_ended_recorded_once_and_leaves_no_index() -> None:
    numbers = itertools.count(1)
    endpoint = FailingEndpoint(EndpointConfig(*SWITCH), random_token=lambda: f"sw{next(numbers)}")
    service = CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        Registrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: f"tok{next(numbers)}",
    )
    endpoint.broken = True
    endpoint.receive_datagram(bytes(invite("2001", caller="0312345678")), TRUNK.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert service.handle_invite(event, 0.0) is None
    assert len(service) == 0 and service.next_deadline() is None
    assert service.counters["calls_crashed"] == 1
    record = service.next_record()
    assert record is not None and (record.result, record.status_code) == ("crashed", 500)
    assert record.error == "RuntimeError: send failed"
    assert "error='RuntimeError: send failed'" in record.log_text()
    assert service.next_record() is None
    finals = [m.status_code for m, _ in sent(endpoint) if isinstance(m, Response)]
    assert finals[-1] == 500  # §17.2.1: the caller's INVITE transaction gets its answer
    # Nothing of it is left: its INVITE's timeout is dropped, its Call-ID is free again.
    assert event.transaction_key is not None
    timeout = TransactionTimeout(event.transaction_key, "INVITE", False)
    assert not service.handle_call_event(timeout, 1.0)
    assert service.counters["dropped_unindexed"] == 1
    endpoint.broken = False
    endpoint.receive_datagram(
        bytes(invite("2001", caller="0312345678", call_id="c2")), TRUNK.remote, 2.0
    )
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert service.handle_invite(event, 2.0) is None
    assert len(service) == 1
