"""Cloud PBX calls (issue 6): routing decisions, trunk recognition, caller identity, in memory.

Every row of issue 6 items 1, 2, 3, 5 and 6 as a pure decision of
`softswitch.b2bua.pbx_routing.route_pbx_call` over a snapshot shaped like the demo, then
the same rows through a `CallService` driving a real `SipEndpoint` (the INVITE the switch
sends: Request-URI, From, P-Asserted-Identity, P-Called-Party-ID; the record's kind), the
refusal announcement as early media followed by 403, and trunks recognised by digest.
"""

from __future__ import annotations

import dataclasses
import itertools
from types import MappingProxyType

from cloudpbx.domain import DigestAlgorithm, ExtensionKind, MobileIdentity, TrunkKind
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DigestCredential,
    ExtensionEntry,
    MobileLineEntry,
    TenantEntry,
    TrunkEntry,
    TrunkSource,
)
from softswitch.b2bua.announcement_call import OpenMedia, PlayAnnouncement, StopMedia
from softswitch.b2bua.caller_auth import AuthenticatedCaller, CallerAuthenticator
from softswitch.b2bua.pbx_routing import (
    CALL_RESTRICTED_ANNOUNCEMENT,
    EMERGENCY_ANNOUNCEMENT,
    asserted_identity,
    carrier_trunk,
    route_pbx_call,
)
from softswitch.b2bua.routing import CallKind, CallRejection, CallRoute
from softswitch.b2bua.service import CallService
from softswitch.registrar.bindings import Binding
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import DigestChallenge, NonceManager, answer_challenge, compute_ha1
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.events import RequestReceived
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.tollfree import ChannelCounter

DOMAIN = "pbx.example.com"
SWITCH = ("192.0.2.10", 5060)
PHONE = Flow(Transport.UDP, ("192.0.2.1", 5062))
PHONE_CONTACT = ("192.0.2.1", 5070)
MOBILE = Flow(Transport.UDP, ("192.0.2.4", 5099))
PSTN = Flow(Transport.UDP, ("192.0.2.3", 5099))
PBX = Flow(Transport.UDP, ("192.0.2.5", 5099))
ABROAD_HEADER = "P-Visited-Network-ID"

LINE_050 = MobileLineEntry("demo", "+819012340001", None, True, "05012340001", False, False, False)
LINE_2IN1 = MobileLineEntry(
    "demo", "+819012340002", "+819012349002", False, None, False, True, False
)
LINE_GATEWAY = MobileLineEntry("demo", "+819012340003", None, False, None, True, False, False)
LINE_ABROAD = MobileLineEntry("demo", "+819012340004", None, False, None, False, False, True)


def fixed(number: str) -> ExtensionEntry:
    credential = DigestCredential(
        number,
        DOMAIN,
        MappingProxyType(
            {DigestAlgorithm.MD5: compute_ha1(number, DOMAIN, f"pass{number}", "MD5")}
        ),
    )
    return ExtensionEntry(
        "demo",
        "Tokyo",
        DOMAIN,
        number,
        ExtensionKind.FIXED_IP_PHONE,
        f"内線{number}",
        (DigestAlgorithm.MD5,),
        25,
        f"sip:{number}@{PHONE_CONTACT[0]}:{PHONE_CONTACT[1]}",
        credential,
    )


def mobile(number: str, line: MobileLineEntry, identity: MobileIdentity) -> ExtensionEntry:
    return ExtensionEntry(
        "demo",
        "Tokyo",
        DOMAIN,
        number,
        ExtensionKind.MOBILE,
        f"携帯{number}",
        None,
        20,
        None,
        None,
        mobile_line=line,
        mobile_identity=identity,
    )


def trunk(
    name: str,
    kind: TrunkKind,
    host: str,
    tenant: str | None = None,
    abroad_header: str | None = None,
) -> TrunkEntry:
    return TrunkEntry(
        name,
        tenant,
        host,
        5060,
        TrunkTransport.UDP,
        (TrunkSource(host, None),),
        kind,
        abroad_header=abroad_header,
    )


PBX_RANGE = ExtensionEntry(
    "demo",
    "Tokyo",
    DOMAIN,
    "3000",
    ExtensionKind.CUSTOMER_PBX,
    "HQ PBX",
    None,
    30,
    None,
    None,
    range_last="3099",
    trunk_name="hq",
)
TRUNKS = [
    trunk("loadgen", TrunkKind.PSTN, "192.0.2.2"),
    trunk("pstn", TrunkKind.PSTN, "192.0.2.3"),
    trunk("mobile", TrunkKind.MOBILE_NETWORK, "192.0.2.4", abroad_header=ABROAD_HEADER),
    trunk("hq", TrunkKind.CUSTOMER_PBX, "192.0.2.5", "demo"),
    trunk("gw", TrunkKind.EXTERNAL_GATEWAY, "192.0.2.6", "demo"),
]


def snapshot(
    lines: tuple[MobileLineEntry, ...] = (LINE_050, LINE_2IN1, LINE_GATEWAY, LINE_ABROAD),
    trunks: list[TrunkEntry] = TRUNKS,
) -> ConfigSnapshot:
    by_number = {line.msisdn: line for line in lines}
    return ConfigSnapshot.build(
        [TenantEntry("demo", "デモ株式会社", DOMAIN, ("Tokyo",))],
        [
            fixed("1001"),
            fixed("1002"),
            mobile("2001", by_number["+819012340001"], MobileIdentity.A),
            mobile("2002", by_number["+819012340002"], MobileIdentity.A),
            mobile("2102", by_number["+819012340002"], MobileIdentity.B),
            mobile("2003", by_number["+819012340003"], MobileIdentity.A),
            mobile("2004", by_number["+819012340004"], MobileIdentity.A),
            PBX_RANGE,
        ],
        trunks,
        lines,
    )


SNAPSHOT = snapshot()


class NoRegistrations:
    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        return []


def invite(
    dialled: str,
    caller: str = "1001",
    caller_host: str = DOMAIN,
    extra: str = "",
    call_id: str = "c1",
    body: str = "",
) -> Request:
    content = "Content-Type: application/sdp\r\n" if body else ""
    text = (
        f"INVITE sip:{dialled}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Caller" <sip:{caller}@{caller_host}>;tag=a\r\n'
        f"To: <sip:{dialled}@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@192.0.2.1:5062>\r\n"
        f"{extra}{content}Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    message.validate()
    return message


PHONE_1001 = AuthenticatedCaller(DOMAIN, "1001")
FROM_MOBILE = AuthenticatedCaller(DOMAIN, None, "mobile")
FROM_PBX = AuthenticatedCaller(DOMAIN, None, "hq")
FROM_PSTN = AuthenticatedCaller(DOMAIN, None, "pstn")


def from_mobile(dialled: str, msisdn: str, extra: str = "") -> Request:
    """An INVITE of the mobile network: the MSISDN asserted, the dialled digits as R-URI."""
    return invite(
        dialled,
        caller=msisdn,
        caller_host="ims.example.net",
        extra=f"P-Asserted-Identity: <sip:{msisdn}@ims.example.net;user=phone>\r\n{extra}",
    )


def route(
    request: Request, caller: AuthenticatedCaller, config: ConfigSnapshot = SNAPSHOT
) -> CallRoute | CallRejection:
    return route_pbx_call(request, caller, config, NoRegistrations(), 0.0)


def routed(
    request: Request, caller: AuthenticatedCaller, config: ConfigSnapshot = SNAPSHOT
) -> CallRoute:
    decision = route(request, caller, config)
    assert isinstance(decision, CallRoute), decision
    return decision


def header(decision: CallRoute, name: str) -> str | None:
    values = [value for key, value in decision.headers if key == name]
    assert len(values) <= 1
    return values[0] if values else None


# --- rule 1: trusted identity --------------------------------------------------------------


def test_p_asserted_identity_is_read_only_from_a_trusted_trunk() -> None:
    request = invite("2001", extra="P-Asserted-Identity: <sip:2002@pbx.example.com>\r\n")
    assert asserted_identity(request, None) is None
    assert asserted_identity(request, TRUNKS[2]) == "<sip:2002@pbx.example.com>"


def test_a_phone_claiming_another_identity_is_shown_as_itself() -> None:
    # RFC 3325 §5: the phone is not trusted; its P-Asserted-Identity is not used or passed on.
    request = invite("2001", extra="P-Asserted-Identity: <sip:2002@pbx.example.com>\r\n")
    decision = routed(request, PHONE_1001)
    assert decision.from_address == f'"内線1001" <sip:1001@{DOMAIN}>'
    assert header(decision, "P-Asserted-Identity") == f"<sip:1001@{DOMAIN}>"


def test_a_mobile_trunk_caller_that_is_no_line_of_ours_is_refused() -> None:
    decision = route(from_mobile("1001", "+819099999999"), FROM_MOBILE)
    assert isinstance(decision, CallRejection) and decision.status_code == 403


def test_a_pbx_caller_outside_its_own_range_is_refused() -> None:
    request = invite("2001", caller="1002", caller_host="192.0.2.5")
    decision = route(request, FROM_PBX)
    assert isinstance(decision, CallRejection) and decision.status_code == 403


# --- rule 4: extension dialing in every direction ------------------------------------------


def test_mobile_to_fixed_shows_the_mobile_extension_never_the_msisdn() -> None:
    decision = routed(from_mobile("1001", "+819012340001"), FROM_MOBILE)
    assert decision.target_uri == f"sip:1001@{PHONE_CONTACT[0]}:{PHONE_CONTACT[1]}"
    assert decision.from_address == f'"携帯2001" <sip:2001@{DOMAIN}>'
    assert header(decision, "P-Asserted-Identity") == f"<sip:2001@{DOMAIN}>"
    assert decision.kind is CallKind.INTERNAL
    assert "+8190" not in (decision.from_address or "") + str(decision.headers)


def test_fixed_to_mobile_goes_to_the_msisdn_on_the_mobile_trunk() -> None:
    decision = routed(invite("2001"), PHONE_1001)
    assert decision.target_uri == "sip:+819012340001@192.0.2.4:5060"
    assert decision.flow == Flow(Transport.UDP, ("192.0.2.4", 5060))
    assert decision.trunk == "mobile" and decision.kind is CallKind.INTERNAL
    assert header(decision, "P-Called-Party-ID") == "<tel:+819012340001>"
    assert decision.from_address == f'"内線1001" <sip:1001@{DOMAIN}>'
    assert decision.no_answer_timeout == 20.0  # the mobile extension's own


def test_mobile_to_mobile_with_a_national_tel_assertion() -> None:
    request = invite(
        "2002",
        caller="09012340001",
        caller_host="ims.example.net",
        extra="P-Asserted-Identity: <tel:090-1234-0001>\r\n",
    )
    decision = routed(request, FROM_MOBILE)
    assert decision.target_uri == "sip:+819012340002@192.0.2.4:5060"
    assert header(decision, "P-Asserted-Identity") == f"<sip:2001@{DOMAIN}>"


def test_without_an_assertion_the_mobile_trunks_from_user_is_the_caller() -> None:
    request = invite("1001", caller="+819012340001", caller_host="ims.example.net")
    decision = routed(request, FROM_MOBILE)
    assert header(decision, "P-Asserted-Identity") == f"<sip:2001@{DOMAIN}>"


def test_fixed_to_fixed_and_the_unregistered_phone_is_480_with_its_extension() -> None:
    decision = routed(invite("1002"), PHONE_1001)
    assert decision.kind is CallKind.INTERNAL and decision.trunk is None
    unregistered = dataclasses.replace(fixed("1002"), static_contact_uri=None)
    config = ConfigSnapshot.build(SNAPSHOT.tenants.values(), [fixed("1001"), unregistered], TRUNKS)
    refused = route(invite("1002"), PHONE_1001, config)
    assert isinstance(refused, CallRejection) and refused.status_code == 480
    assert refused.callee is not None and refused.callee.number == "1002"


def test_to_and_from_the_customer_pbx() -> None:
    to_pbx = routed(invite("3005"), PHONE_1001)
    assert to_pbx.target_uri == "sip:3005@192.0.2.5:5060" and to_pbx.trunk == "hq"
    assert to_pbx.kind is CallKind.INTERNAL
    from_pbx = routed(invite("2001", caller="3001", caller_host="192.0.2.5"), FROM_PBX)
    assert from_pbx.target_uri == "sip:+819012340001@192.0.2.4:5060"
    assert from_pbx.from_address == f"<sip:3001@{DOMAIN}>"
    assert header(from_pbx, "P-Asserted-Identity") == f"<sip:3001@{DOMAIN}>"
    mobile_to_pbx = routed(from_mobile("3099", "+819012340002"), FROM_MOBILE)
    assert mobile_to_pbx.target_uri == "sip:3099@192.0.2.5:5060"
    assert header(mobile_to_pbx, "P-Asserted-Identity") == f"<sip:2002@{DOMAIN}>"
    loop = route(invite("3002", caller="3001", caller_host="192.0.2.5"), FROM_PBX)
    assert isinstance(loop, CallRejection) and loop.status_code == 482


def test_an_outside_caller_reaches_an_extension_as_an_external_call() -> None:
    request = invite(
        "2001",
        caller="0312345678",
        caller_host="192.0.2.3",
        extra="P-Asserted-Identity: <tel:+81312345678>\r\n",
    )
    decision = routed(request, FROM_PSTN)
    assert decision.kind is CallKind.EXTERNAL
    assert decision.from_address is None  # the caller's From, unchanged
    assert header(decision, "P-Asserted-Identity") == "<tel:+81312345678>"


def test_unknown_extension_is_404() -> None:
    decision = route(invite("4444"), PHONE_1001)
    assert decision == CallRejection(404, kind=CallKind.INTERNAL)
    stranger = route(from_mobile("0312345678", "+819099999999"), FROM_MOBILE)
    assert isinstance(stranger, CallRejection) and stranger.status_code == 403
    assert stranger.kind is CallKind.EXTERNAL  # what was dialled, whoever dialled it


# --- rule 5 / item 3: external calls -------------------------------------------------------


def test_full_numbers_are_external_even_our_own_mobile_number() -> None:
    decision = routed(invite("09012340002"), PHONE_1001)
    assert decision.kind is CallKind.EXTERNAL and decision.trunk == "gw"
    assert decision.target_uri == "sip:09012340002@192.0.2.6:5060"
    assert decision.from_address == f'"内線1001" <sip:1001@{DOMAIN}>'
    separated = routed(invite("03-1234-5678"), PHONE_1001)
    assert separated.target_uri == "sip:0312345678@192.0.2.6:5060"
    e164 = routed(invite("+81312345678"), PHONE_1001)
    assert e164.target_uri == "sip:+81312345678@192.0.2.6:5060"


def test_050_option_goes_out_on_the_pstn_showing_the_050_number() -> None:
    decision = routed(from_mobile("0312345678", "+819012340001"), FROM_MOBILE)
    assert decision.trunk == "pstn"  # preferred over the other PSTN trunk, `loadgen`
    assert decision.target_uri == "sip:0312345678@192.0.2.3:5060"
    assert decision.from_address == f"<sip:05012340001@{DOMAIN}>"
    assert header(decision, "P-Asserted-Identity") == "<tel:+815012340001>"
    assert decision.kind is CallKind.EXTERNAL


def test_gateway_option_goes_out_on_the_tenants_gateway_showing_the_extension() -> None:
    decision = routed(from_mobile("0312345678", "+819012340003"), FROM_MOBILE)
    assert decision.trunk == "gw" and decision.target_uri == "sip:0312345678@192.0.2.6:5060"
    assert header(decision, "P-Asserted-Identity") == f"<sip:2003@{DOMAIN}>"


def test_without_an_option_external_dialing_is_refused_with_an_announcement() -> None:
    decision = route(from_mobile("0312345678", "+819012340002"), FROM_MOBILE)
    assert isinstance(decision, CallRejection)
    assert (decision.status_code, decision.announcement) == (
        403,
        f"{CALL_RESTRICTED_ANNOUNCEMENT}_ja",
    )
    assert decision.kind is CallKind.EXTERNAL


def test_fixed_phones_without_a_gateway_and_pbxs_may_not_dial_out() -> None:
    no_gateway = snapshot(trunks=TRUNKS[:4])
    decision = route(invite("0312345678"), PHONE_1001, no_gateway)
    assert isinstance(decision, CallRejection) and decision.status_code == 403
    assert decision.announcement == f"{CALL_RESTRICTED_ANNOUNCEMENT}_ja"
    from_pbx = route(invite("0312345678", caller="3001", caller_host="192.0.2.5"), FROM_PBX)
    assert isinstance(from_pbx, CallRejection) and from_pbx.status_code == 403


def test_an_outside_caller_gets_no_transit() -> None:
    for dialled in ("0312345678", "110"):
        decision = route(invite(dialled, caller="0311112222"), FROM_PSTN)
        assert isinstance(decision, CallRejection) and decision.status_code == 403
        assert decision.announcement is None


def test_carrier_trunk_prefers_the_conventional_name_then_the_first_by_name() -> None:
    pstn = carrier_trunk(SNAPSHOT, TrunkKind.PSTN)
    assert pstn is not None and pstn.name == "pstn"
    config = snapshot(trunks=[TRUNKS[0], *TRUNKS[2:]])
    only = carrier_trunk(config, TrunkKind.PSTN)
    assert only is not None and only.name == "loadgen"
    assert carrier_trunk(snapshot(trunks=TRUNKS[3:]), TrunkKind.MOBILE_NETWORK) is None
    refused = route(invite("2001"), PHONE_1001, snapshot(trunks=TRUNKS[3:]))
    assert isinstance(refused, CallRejection) and refused.status_code == 480


# --- rule 6: emergency numbers -------------------------------------------------------------


def test_emergency_from_a_fixed_phone_or_pbx_is_refused_with_guidance() -> None:
    for request, caller in (
        (invite("110"), PHONE_1001),
        (invite("119", caller="3001", caller_host="192.0.2.5"), FROM_PBX),
    ):
        decision = route(request, caller)
        assert isinstance(decision, CallRejection)
        assert (decision.status_code, decision.announcement) == (
            403,
            f"{EMERGENCY_ANNOUNCEMENT}_ja",
        )
        assert decision.kind is CallKind.EXTERNAL


def test_emergency_from_a_mobile_goes_to_the_pstn_with_its_callback_number() -> None:
    # 2002 has no external option and may even be abroad: never refused.
    for number in ("110", "118", "119"):
        decision = routed(
            from_mobile(number, "+819012340002", f"{ABROAD_HEADER}: visited.example\r\n"),
            FROM_MOBILE,
        )
        assert decision.target_uri == f"sip:{number}@192.0.2.3:5060"
        assert header(decision, "P-Asserted-Identity") == "<tel:+819012340002>"
        assert decision.kind is CallKind.EXTERNAL


# --- item 5: 2in1 ---------------------------------------------------------------------------


def test_a_call_to_the_b_extension_reaches_the_handset_marked_as_b() -> None:
    a_call = routed(invite("2002"), PHONE_1001)
    b_call = routed(invite("2102"), PHONE_1001)
    assert a_call.target_uri == b_call.target_uri == "sip:+819012340002@192.0.2.4:5060"
    assert header(a_call, "P-Called-Party-ID") == "<tel:+819012340002>"
    assert header(b_call, "P-Called-Party-ID") == "<tel:+819012349002>"


def test_calls_made_with_the_b_identity_show_the_b_extension() -> None:
    decision = routed(from_mobile("1001", "+819012349002"), FROM_MOBILE)
    assert decision.from_address == f'"携帯2102" <sip:2102@{DOMAIN}>'
    assert header(decision, "P-Asserted-Identity") == f"<sip:2102@{DOMAIN}>"


# --- item 6: international roaming ----------------------------------------------------------


def test_extension_dialing_from_abroad_is_refused_by_header_or_by_the_api_flag() -> None:
    by_header = route(
        from_mobile("1001", "+819012340002", f"{ABROAD_HEADER}: visited.example\r\n"),
        FROM_MOBILE,
    )
    by_flag = route(from_mobile("1001", "+819012340004"), FROM_MOBILE)
    for decision in (by_header, by_flag):
        assert isinstance(decision, CallRejection)
        assert (decision.status_code, decision.announcement) == (
            403,
            f"{CALL_RESTRICTED_ANNOUNCEMENT}_ja",
        )
        assert decision.kind is CallKind.INTERNAL
    # The header counts only on the mobile trunk's own configuration: another header does
    # not make a line abroad.
    at_home = routed(from_mobile("1001", "+819012340002", "P-Other: x\r\n"), FROM_MOBILE)
    assert at_home.kind is CallKind.INTERNAL


def test_external_dialing_from_abroad_follows_the_options() -> None:
    decision = routed(
        from_mobile("0312345678", "+819012340001", f"{ABROAD_HEADER}: visited.example\r\n"),
        FROM_MOBILE,
    )
    assert decision.trunk == "pstn"


def test_a_mobile_abroad_gets_extension_calls_only_with_the_roaming_option() -> None:
    without_roaming = route(invite("2004"), PHONE_1001)
    assert isinstance(without_roaming, CallRejection) and without_roaming.status_code == 480
    assert without_roaming.callee is not None and without_roaming.callee.number == "2004"
    roaming_line = dataclasses.replace(LINE_2IN1, abroad=True)
    config = snapshot(lines=(LINE_050, roaming_line, LINE_GATEWAY, LINE_ABROAD))
    assert routed(invite("2002"), PHONE_1001, config).trunk == "mobile"
    assert routed(invite("2102"), PHONE_1001, config).trunk == "mobile"


# --- through the call service ---------------------------------------------------------------


def switch_endpoint() -> SipEndpoint:
    numbers = itertools.count(1)
    return SipEndpoint(EndpointConfig(*SWITCH), random_token=lambda: f"sw{next(numbers)}")


def authenticator(endpoint: SipEndpoint, config: ConfigSnapshot = SNAPSHOT) -> CallerAuthenticator:
    directory = SnapshotDirectory(config)
    return CallerAuthenticator(
        config, directory, directory, NonceManager(b"k" * 32, 300.0), endpoint
    )


def service_for(endpoint: SipEndpoint) -> CallService:
    numbers = itertools.count(1)
    return CallService(
        endpoint,
        SNAPSHOT,
        authenticator(endpoint),
        NoRegistrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: f"tok{next(numbers)}",
    )


def sent(endpoint: SipEndpoint) -> list[tuple[Request | Response, Flow]]:
    messages = []
    for data, flow in endpoint.data_to_send():
        message = parse_message(data)
        assert isinstance(message, (Request, Response))
        messages.append((message, flow))
    return messages


def deliver(
    endpoint: SipEndpoint, service: CallService, request: Request, flow: Flow
) -> Response | None:
    endpoint.receive_datagram(bytes(request), flow.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    return service.handle_invite(event, 0.0)


def test_the_switch_sends_the_extension_identity_and_drops_the_callers_assertion() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    # The mobile trunk asserts 2001's MSISDN; the call goes to 2102 (the B extension).
    request = from_mobile("2102", "+819012340001")
    assert deliver(endpoint, service, request, MOBILE) is None
    invites = [(m, f) for m, f in sent(endpoint) if isinstance(m, Request)]
    assert len(invites) == 1
    outgoing, flow = invites[0]
    assert flow.remote == ("192.0.2.4", 5060)
    assert str(outgoing.uri) == "sip:+819012340002@192.0.2.4:5060"
    assert str(outgoing.from_address.uri) == f"sip:2001@{DOMAIN}"
    assert outgoing.from_address.tag  # our own tag
    assert outgoing.headers.get_all("P-Asserted-Identity") == [f"<sip:2001@{DOMAIN}>"]
    assert outgoing.headers.get("P-Called-Party-ID") == "<tel:+819012349002>"
    assert "+819012340001" not in bytes(outgoing).decode()


def test_a_refused_call_leaves_a_record_with_its_kind() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    response = deliver(endpoint, service, from_mobile("0312345678", "+819012340002"), MOBILE)
    assert response is not None and response.status_code == 403  # no media adapter
    record = service.next_record()
    assert record is not None and record.kind == "external" and record.status_code == 403
    assert "kind=external" in record.log_text()
    assert service.counters["calls_by_kind.external"] == 1  # softswitch_calls_by_kind_total


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def start_restricted_call(endpoint: SipEndpoint, service: CallService) -> PlayAnnouncement:
    """A mobile line without external options dials a full number (call `c1`, with an
    offer): the service opens media for the refusal; what it then plays."""
    service.enable_announcements()
    request = invite(
        "0312345678",
        caller="+819012340002",
        caller_host="ims.example.net",
        extra="P-Asserted-Identity: <sip:+819012340002@ims.example.net>\r\n",
        body=OFFER,
    )
    assert deliver(endpoint, service, request, MOBILE) is None
    assert service.next_media_effect() == OpenMedia("c1")
    service.media_opened("c1", ("192.0.2.10", 30000), 0.1)
    play = service.next_media_effect()
    assert isinstance(play, PlayAnnouncement)
    return play


def test_a_refusal_announcement_plays_as_early_media_then_403() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    assert start_restricted_call(endpoint, service).announcement == "call_restricted_ja"
    responses = [m for m, _ in sent(endpoint) if isinstance(m, Response)]
    early = [m for m in responses if m.status_code == 183]
    assert len(early) == 1 and b"m=audio 30000" in early[0].body
    assert not any(m.status_code >= 200 for m in responses)
    service.playback_finished("c1", 5.5)
    finals = [m for m, _ in sent(endpoint) if isinstance(m, Response) and m.status_code >= 200]
    assert [m.status_code for m in finals] == [403]
    assert finals[0].to_address.tag == early[0].to_address.tag
    assert service.next_media_effect() == StopMedia("c1")
    record = service.next_record()
    assert record is not None
    assert (record.result, record.status_code, record.kind) == ("rejected", 403, "external")
    assert len(service) == 0


def test_without_an_offer_the_refusal_is_403_at_once() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    service.enable_announcements()
    # An emergency call from the customer PBX (a phone would be challenged first).
    request = invite("110", caller="3001", caller_host="192.0.2.5", call_id="c2")
    assert deliver(endpoint, service, request, PBX) is None
    assert service.next_media_effect() == OpenMedia("c2")
    service.media_opened("c2", ("192.0.2.10", 30002), 0.1)
    finals = [m for m, _ in sent(endpoint) if isinstance(m, Response) and m.status_code >= 200]
    assert [m.status_code for m in finals] == [403]
    assert service.next_media_effect() == StopMedia("c2")


# --- item 1: trunks recognised by digest -------------------------------------------------------


def digest_trunk(name: str, sources: tuple[TrunkSource, ...]) -> TrunkEntry:
    realm = "trunks.example.com"
    credential = DigestCredential(
        name,
        realm,
        MappingProxyType(
            {
                DigestAlgorithm(algorithm): compute_ha1(name, realm, "trunk-secret", algorithm)
                for algorithm in ("MD5", "SHA-256")
            }
        ),
    )
    return TrunkEntry(
        name,
        "demo",
        "192.0.2.7",
        5060,
        TrunkTransport.UDP,
        sources,
        TrunkKind.CUSTOMER_PBX,
        credential=credential,
    )


def answer(challenge: Response, user: str, password: str, request: Request) -> Request:
    parsed = DigestChallenge.parse(challenge.headers.get_all("Proxy-Authenticate")[0])
    assert parsed.realm is not None and parsed.algorithm is not None
    credentials = answer_challenge(
        parsed,
        username=user,
        ha1=compute_ha1(user, parsed.realm, password, parsed.algorithm),
        method="INVITE",
        uri=str(request.uri),
        cnonce="c0ffee",
    )
    request.headers.add("Proxy-Authorization", str(credentials))
    return request


def test_a_trunk_with_sources_and_a_credential_needs_both() -> None:
    pbx = digest_trunk("pbx-both", (TrunkSource("192.0.2.7", None),))
    config = snapshot(trunks=[*TRUNKS, pbx])
    auth = authenticator(switch_endpoint(), config)
    source = Flow(Transport.UDP, ("192.0.2.7", 5060))
    request = invite("2001", caller="3001", caller_host="192.0.2.7")
    challenge = auth.authenticate(request, source, 10.0)
    assert isinstance(challenge, Response) and challenge.status_code == 407
    assert 'realm="trunks.example.com"' in challenge.headers.get_all("Proxy-Authenticate")[0]
    wrong = auth.authenticate(answer(challenge, "pbx-both", "guess", invite("2001")), source, 11.0)
    assert isinstance(wrong, Response) and wrong.status_code == 407
    right = auth.authenticate(
        answer(challenge, "pbx-both", "trunk-secret", invite("2001")), source, 11.0
    )
    assert right == AuthenticatedCaller(DOMAIN, None, "pbx-both")
    # The right digest from another address is a foreign caller, not the trunk.
    elsewhere = auth.authenticate(
        answer(challenge, "pbx-both", "trunk-secret", invite("2001", caller_host="192.0.2.7")),
        Flow(Transport.UDP, ("192.0.2.8", 5060)),
        12.0,
    )
    assert isinstance(elsewhere, Response) and elsewhere.status_code == 403


def test_a_trunk_with_only_a_credential_is_recognised_by_digest() -> None:
    pbx = digest_trunk("pbx-roaming", ())
    config = snapshot(trunks=[*TRUNKS, pbx])
    auth = authenticator(switch_endpoint(), config)
    source = Flow(Transport.UDP, ("198.51.100.9", 5060))
    request = invite("2001", caller="3001", caller_host="pbx.customer.example")
    challenge = auth.authenticate(request, source, 10.0)
    assert isinstance(challenge, Response) and challenge.status_code == 407
    caller = auth.authenticate(
        answer(
            challenge,
            "pbx-roaming",
            "trunk-secret",
            invite("2001", caller="3001", caller_host="pbx.customer.example"),
        ),
        source,
        11.0,
    )
    assert caller == AuthenticatedCaller(DOMAIN, None, "pbx-roaming")
    # Without digest-only trunks a foreign domain is refused at once (403).
    plain = authenticator(switch_endpoint())
    refused = plain.authenticate(request, source, 10.0)
    assert isinstance(refused, Response) and refused.status_code == 403


def test_a_phone_dialling_a_toll_free_number_makes_an_external_call() -> None:
    # The service sends only trunk callers to toll-free routing; a subscriber's 0120 is
    # a full number like any other (rule 5).
    decision = routed(invite("0120000111"), PHONE_1001)
    assert decision.trunk == "gw" and decision.kind is CallKind.EXTERNAL


def test_a_cancel_during_the_refusal_announcement_gets_487() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    service.enable_announcements()
    request = invite(
        "0312345678",
        caller="+819012340002",
        caller_host="ims.example.net",
        extra="P-Asserted-Identity: <sip:+819012340002@ims.example.net>\r\n",
        body=OFFER,
    )
    assert deliver(endpoint, service, request, MOBILE) is None
    assert service.next_media_effect() == OpenMedia("c1")
    service.media_opened("c1", ("192.0.2.10", 30000), 0.1)
    assert isinstance(service.next_media_effect(), PlayAnnouncement)
    cancel = (
        f"CANCEL {request.uri_text} SIP/2.0\r\n"
        f"Via: {request.headers.get('Via')}\r\nMax-Forwards: 70\r\n"
        f"From: {request.headers.get('From')}\r\nTo: {request.headers.get('To')}\r\n"
        "Call-ID: c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    endpoint.receive_datagram(cancel.encode(), MOBILE.remote, 1.0)
    while (event := endpoint.next_event()) is not None:
        service.handle_call_event(event, 1.0)
    finals = [m for m, _ in sent(endpoint) if isinstance(m, Response) and m.status_code >= 200]
    assert sorted(m.status_code for m in finals) == [200, 487]  # the CANCEL's, the INVITE's
    assert service.next_media_effect() == StopMedia("c1")
    record = service.next_record()
    assert record is not None and (record.result, record.status_code) == ("cancelled", 487)
    service.playback_finished("c1", 2.0)  # the adapter's late report changes nothing
    assert service.next_record() is None and len(service) == 0


# --- trunk capacity ---------------------------------------------------------------------------


def answer_from_callee(request: Request, status_code: int) -> bytes:
    lines = [f"SIP/2.0 {status_code} X"]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        lines.extend(f"{name}: {value}" for value in request.headers.get_all(name))
    lines.append(f"To: {request.headers.get('To')};tag=callee")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def test_a_full_trunk_is_busy_and_every_ending_gives_its_channel_back() -> None:
    trunks = [*TRUNKS[:4], dataclasses.replace(TRUNKS[4], capacity=1)]
    config = snapshot(trunks=trunks)
    endpoint = switch_endpoint()
    numbers = itertools.count(1)
    service = CallService(
        endpoint,
        config,
        authenticator(endpoint, config),
        NoRegistrations(),
        lambda: 0.0,
        f"sip:{SWITCH[0]}:{SWITCH[1]}",
        lambda: f"tok{next(numbers)}",
    )
    # 2003 (gateway option) takes the gateway's one channel.
    first = from_mobile("0312345678", "+819012340003")
    assert deliver(endpoint, service, first, MOBILE) is None
    outgoing = [m for m, _ in sent(endpoint) if isinstance(m, Request)]
    assert service.tollfree.trunk_channels.in_use("gw") == 1
    # A second external call through the gateway: busy.
    second = invite(
        "0312345679",
        caller="+819012340003",
        caller_host="ims.example.net",
        extra="P-Asserted-Identity: <sip:+819012340003@ims.example.net>\r\n",
        call_id="c2",
    )
    refused = deliver(endpoint, service, second, MOBILE)
    assert refused is not None and refused.status_code == 486
    # The first call fails at the gateway: its channel comes back.
    endpoint.receive_datagram(answer_from_callee(outgoing[0], 503), ("192.0.2.6", 5060), 1.0)
    while (event := endpoint.next_event()) is not None:
        service.handle_call_event(event, 1.0)
    assert len(service) == 0
    assert service.tollfree.trunk_channels.in_use("gw") == 0
    third = invite(
        "0312345670",
        caller="+819012340003",
        caller_host="ims.example.net",
        extra="P-Asserted-Identity: <sip:+819012340003@ims.example.net>\r\n",
        call_id="c3",
    )
    assert deliver(endpoint, service, third, MOBILE) is None
    assert service.tollfree.trunk_channels.in_use("gw") == 1


def test_emergency_calls_are_never_refused_for_capacity() -> None:
    full_pstn = [TRUNKS[0], dataclasses.replace(TRUNKS[1], capacity=0), *TRUNKS[2:]]
    config = snapshot(trunks=full_pstn)
    channels = ChannelCounter()
    external = route_pbx_call(
        from_mobile("0312345678", "+819012340001"),
        FROM_MOBILE,
        config,
        NoRegistrations(),
        0.0,
        channels,
    )
    assert isinstance(external, CallRejection) and external.status_code == 486
    emergency = route_pbx_call(
        from_mobile("119", "+819012340001"), FROM_MOBILE, config, NoRegistrations(), 0.0, channels
    )
    assert isinstance(emergency, CallRoute) and emergency.trunk == "pstn"
