"""Cloud PBX caller-ID withholding and announcement language (`pbx_routing` rules 7, 8).

Pure routing decisions over the demo-shaped snapshot of `test_pbx_routing` (From,
P-Asserted-Identity and Privacy per destination kind; 184/186 read and stripped;
emergency calls never withheld; the refusal announcement in the caller's tenant's
language), then the same through a `CallService` with a real `SipEndpoint` (the INVITE
the switch sends), and the voicemail greeting in the mailbox owner's tenant's language.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from cloudpbx.domain import AnnouncementLanguage
from cloudpbx.snapshot import ConfigSnapshot, TenantEntry
from softswitch.b2bua.pbx_routing import (
    announcement_name,
    identity_trusted,
    route_pbx_call,
    tenant_language,
)
from softswitch.b2bua.privacy import ANONYMOUS_FROM, privacy_values
from softswitch.b2bua.routing import CallKind, CallRejection, CallRoute
from softswitch.b2bua.tollfree_routing import caller_identity
from softswitch.b2bua.voicemail_call import PlayGreeting, greeting_name
from softswitch.sip.message import Request, Response
from softswitch.tollfree import CallerKind, split_presentation_prefix
from softswitch.voicemail import Mailbox

from . import test_voicemail_calls as voicemail
from .test_pbx_routing import (
    DOMAIN,
    FROM_MOBILE,
    FROM_PBX,
    FROM_PSTN,
    MOBILE,
    PHONE_1001,
    SNAPSHOT,
    TRUNKS,
    NoRegistrations,
    deliver,
    from_mobile,
    header,
    invite,
    route,
    routed,
    sent,
    service_for,
    start_restricted_call,
    switch_endpoint,
)

ANONYMOUS = ANONYMOUS_FROM
WITHHOLD = "Privacy: id\r\n"


def in_language(config: ConfigSnapshot, language: AnnouncementLanguage) -> ConfigSnapshot:
    """`config` with every tenant speaking `language`."""
    tenants = {
        name: dataclasses.replace(tenant, announcement_language=language)
        for name, tenant in config.tenants.items()
    }
    return dataclasses.replace(config, tenants=MappingProxyType(tenants))


ENGLISH = in_language(SNAPSHOT, AnnouncementLanguage.EN)


def with_english_other_tenant() -> ConfigSnapshot:
    """The demo snapshot plus a tenant `other` speaking English."""
    other = TenantEntry(
        "other",
        "他社",
        "other.example.com",
        ("Osaka",),
        announcement_language=AnnouncementLanguage.EN,
    )
    return dataclasses.replace(
        SNAPSHOT, tenants=MappingProxyType({**SNAPSHOT.tenants, "other": other})
    )


def pai(decision: CallRoute) -> str | None:
    return header(decision, "P-Asserted-Identity")


# --- shared parsing helpers ------------------------------------------------------------------


def test_the_184_186_prefix_helper_is_shared_with_the_tollfree_caller_parser() -> None:
    assert split_presentation_prefix("1840312345678") == (True, "0312345678")
    assert split_presentation_prefix("186+81312345678") == (False, "+81312345678")
    assert split_presentation_prefix("0312345678") == (None, "0312345678")
    # The toll-free caller parser still reads the same prefixes through it.
    withheld = caller_identity(invite("0120000111", caller="1840312345678"))
    assert withheld.withheld and withheld.national_number == "0312345678"
    shown = caller_identity(invite("0120000111", caller="1860312345678"))
    assert not shown.withheld and shown.kind is CallerKind.FIXED


def test_privacy_values_read_semicolons_commas_and_several_headers() -> None:
    request = invite("1002", extra="Privacy: ID; header\r\nPrivacy: user, critical\r\n")
    assert privacy_values(request) == {"id", "header", "user", "critical"}
    assert privacy_values(invite("1002")) == frozenset()
    # The toll-free area check keeps its own rule: id or user withholds the number.
    toll = caller_identity(invite("0120000111", caller="0312345678", extra="Privacy: id\r\n"))
    assert toll.withheld
    header_only = invite("0120000111", caller="0312345678", extra="Privacy: header\r\n")
    assert not caller_identity(header_only).withheld


def test_only_carrier_trunks_are_trusted_with_a_withheld_identity() -> None:
    by_name = {trunk.name: trunk for trunk in TRUNKS}
    assert identity_trusted(by_name["pstn"]) and identity_trusted(by_name["mobile"])
    assert not identity_trusted(by_name["hq"]) and not identity_trusted(by_name["gw"])
    assert not identity_trusted(None)  # a phone


# --- rule 7: 184 / 186 and Privacy on external calls ------------------------------------------


def test_184_withholds_an_external_call_on_the_trusted_pstn_trunk() -> None:
    decision = routed(from_mobile("1840312345678", "+819012340001"), FROM_MOBILE)
    # The prefix is stripped from the Request-URI sent out.
    assert decision.target_uri == "sip:0312345678@192.0.2.3:5060"
    assert decision.callee == "tel:0312345678" and decision.kind is CallKind.EXTERNAL
    assert decision.from_address == ANONYMOUS
    # The network still gets the identity, asked to withhold it (RFC 3325 §9.3).
    assert pai(decision) == "<tel:+815012340001>"
    assert header(decision, "Privacy") == "id"


def test_186_shows_the_number_even_when_the_invite_asks_for_privacy() -> None:
    decision = routed(from_mobile("1860312345678", "+819012340001", WITHHOLD), FROM_MOBILE)
    assert decision.target_uri == "sip:0312345678@192.0.2.3:5060"
    assert decision.from_address == f"<sip:05012340001@{DOMAIN}>"
    assert pai(decision) == "<tel:+815012340001>"
    assert header(decision, "Privacy") is None


@pytest.mark.parametrize("value", ["id", "header", "user", "user;id", "none;id"])
def test_a_privacy_header_withholds_like_184(value: str) -> None:
    request = from_mobile("0312345678", "+819012340001", f"Privacy: {value}\r\n")
    decision = routed(request, FROM_MOBILE)
    assert decision.target_uri == "sip:0312345678@192.0.2.3:5060"
    assert decision.from_address == ANONYMOUS
    assert pai(decision) == "<tel:+815012340001>" and header(decision, "Privacy") == "id"


def test_privacy_none_or_session_withholds_nothing() -> None:
    for value in ("none", "session"):
        decision = routed(
            from_mobile("0312345678", "+819012340001", f"Privacy: {value}\r\n"), FROM_MOBILE
        )
        assert decision.from_address == f"<sip:05012340001@{DOMAIN}>"
        assert header(decision, "Privacy") is None


def test_toward_an_untrusted_gateway_the_identity_is_removed() -> None:
    # The tenant's external-line gateway is the customer's equipment: no PAI, no Privacy.
    by_line = routed(from_mobile("1840612345678", "+819012340003"), FROM_MOBILE)
    assert by_line.trunk == "gw" and by_line.target_uri == "sip:0612345678@192.0.2.6:5060"
    assert by_line.from_address == ANONYMOUS
    assert pai(by_line) is None and header(by_line, "Privacy") is None
    by_phone = routed(invite("184-03-1234-5678"), PHONE_1001)
    assert by_phone.target_uri == "sip:0312345678@192.0.2.6:5060"
    assert by_phone.from_address == ANONYMOUS and pai(by_phone) is None
    assert "1001" not in str(by_phone.headers)


def test_a_phone_may_withhold_with_its_privacy_header_too() -> None:
    decision = routed(invite("+81312345678", extra=WITHHOLD), PHONE_1001)
    assert decision.target_uri == "sip:+81312345678@192.0.2.6:5060"
    assert decision.from_address == ANONYMOUS and pai(decision) is None


def test_a_phone_writing_an_anonymous_from_withholds_without_a_privacy_header() -> None:
    request = invite("0312345678", caller="anonymous", caller_host="anonymous.invalid")
    decision = routed(request, PHONE_1001)
    assert decision.from_address == ANONYMOUS and pai(decision) is None
    # 186 still shows the extension.
    shown = routed(
        invite("1860312345678", caller="anonymous", caller_host="anonymous.invalid"),
        PHONE_1001,
    )
    assert shown.from_address == f'"内線1001" <sip:1001@{DOMAIN}>'


def test_184_in_front_of_anything_but_a_full_number_is_dialled_as_is() -> None:
    # No extension 1841: an unknown extension, not a withheld call to 1.
    refused = route(invite("1841"), PHONE_1001)
    assert isinstance(refused, CallRejection) and refused.status_code == 404
    assert refused.kind is CallKind.INTERNAL


def test_a_refused_184_call_is_refused_as_the_number_behind_it() -> None:
    # 2002's line has no external option: the same refusal as without 184.
    decision = route(from_mobile("1840312345678", "+819012340002"), FROM_MOBILE)
    assert isinstance(decision, CallRejection) and decision.status_code == 403
    assert decision.kind is CallKind.EXTERNAL


# --- rule 7: extension calls inside the tenant ---------------------------------------------


def test_an_extension_call_with_privacy_reaches_the_phone_anonymous() -> None:
    plain = routed(from_mobile("1001", "+819012340001"), FROM_MOBILE)
    assert plain.from_address == f'"携帯2001" <sip:2001@{DOMAIN}>'  # shown by default
    withheld = routed(from_mobile("1001", "+819012340001", WITHHOLD), FROM_MOBILE)
    assert withheld.target_uri == plain.target_uri
    assert withheld.from_address == ANONYMOUS
    assert pai(withheld) is None and header(withheld, "Privacy") is None
    assert "2001" not in str(withheld.headers)


def test_an_extension_call_to_a_mobile_keeps_the_assertion_for_the_network() -> None:
    decision = routed(invite("2002", extra=WITHHOLD), PHONE_1001)
    assert decision.trunk == "mobile"
    assert decision.from_address == ANONYMOUS
    assert pai(decision) == f"<sip:1001@{DOMAIN}>" and header(decision, "Privacy") == "id"
    assert header(decision, "P-Called-Party-ID") == "<tel:+819012340002>"


def test_an_extension_call_to_the_customer_pbx_removes_the_assertion() -> None:
    decision = routed(invite("3005", extra=WITHHOLD), PHONE_1001)
    assert decision.trunk == "hq" and decision.from_address == ANONYMOUS
    assert pai(decision) is None and header(decision, "Privacy") is None
    from_pbx = routed(
        invite("2001", caller="3001", caller_host="192.0.2.5", extra=WITHHOLD), FROM_PBX
    )
    assert from_pbx.from_address == ANONYMOUS and header(from_pbx, "Privacy") == "id"


def test_an_outside_callers_privacy_is_honoured_toward_a_phone() -> None:
    request = invite(
        "1001",
        caller="0312345678",
        caller_host="192.0.2.3",
        extra=f"P-Asserted-Identity: <tel:+81312345678>\r\n{WITHHOLD}",
    )
    decision = routed(request, FROM_PSTN)
    assert decision.kind is CallKind.EXTERNAL
    assert decision.from_address == ANONYMOUS and pai(decision) is None
    to_mobile = routed(
        invite(
            "2001",
            caller="0312345678",
            caller_host="192.0.2.3",
            extra=f"P-Asserted-Identity: <tel:+81312345678>\r\n{WITHHOLD}",
        ),
        FROM_PSTN,
    )
    assert to_mobile.from_address == ANONYMOUS
    assert pai(to_mobile) == "<tel:+81312345678>" and header(to_mobile, "Privacy") == "id"


# --- rule 6 with rule 7: emergency calls are never withheld ----------------------------------


@pytest.mark.parametrize(
    ("dialled", "extra"), [("184110", ""), ("119", WITHHOLD), ("184118", WITHHOLD)]
)
def test_emergency_calls_ignore_withholding(dialled: str, extra: str) -> None:
    decision = routed(from_mobile(dialled, "+819012340002", extra), FROM_MOBILE)
    number = dialled.removeprefix("184")
    assert decision.target_uri == f"sip:{number}@192.0.2.3:5060"
    assert decision.from_address == f"<sip:+819012340002@{DOMAIN}>"
    assert pai(decision) == "<tel:+819012340002>"
    assert header(decision, "Privacy") is None


def test_a_184_emergency_call_from_a_phone_is_still_the_emergency_refusal() -> None:
    decision = route(invite("184110"), PHONE_1001)
    assert isinstance(decision, CallRejection)
    assert (decision.status_code, decision.announcement) == (403, "emergency_unavailable_ja")


# --- rule 8: the announcement language ---------------------------------------------------------


def test_refusals_play_in_the_callers_tenants_language() -> None:
    cases = [
        (from_mobile("0312345678", "+819012340002"), FROM_MOBILE, "call_restricted"),
        (from_mobile("1001", "+819012340004"), FROM_MOBILE, "call_restricted"),  # abroad
        (invite("110"), PHONE_1001, "emergency_unavailable"),
        (invite("119", caller="3001", caller_host="192.0.2.5"), FROM_PBX, "emergency_unavailable"),
    ]
    for request, caller, kind in cases:
        for config, language in ((SNAPSHOT, "ja"), (ENGLISH, "en")):
            decision = route_pbx_call(request, caller, config, NoRegistrations(), 0.0)
            assert isinstance(decision, CallRejection) and decision.status_code == 403
            assert decision.announcement == f"{kind}_{language}", (kind, language)


def test_only_the_callers_tenant_decides_the_language() -> None:
    # Another tenant in English changes nothing for the demo tenant's callers.
    config = with_english_other_tenant()
    decision = route(from_mobile("0312345678", "+819012340002"), FROM_MOBILE, config)
    assert isinstance(decision, CallRejection) and decision.announcement == "call_restricted_ja"
    assert tenant_language(config, "other") is AnnouncementLanguage.EN
    assert tenant_language(config, "nobody") is AnnouncementLanguage.JA
    assert tenant_language(config, None) is AnnouncementLanguage.JA
    assert announcement_name("call_restricted", AnnouncementLanguage.EN) == "call_restricted_en"


def test_the_voicemail_greeting_is_in_the_mailbox_owners_language() -> None:
    config = with_english_other_tenant()
    assert greeting_name(config, Mailbox("demo", "1001", DOMAIN)) == "voicemail_greeting_ja"
    assert greeting_name(config, Mailbox("other", "1001", "other.example.com")) == (
        "voicemail_greeting_en"
    )
    assert greeting_name(config, Mailbox("gone", "1001", DOMAIN)) == "voicemail_greeting_ja"


# --- through the call service ------------------------------------------------------------------


def outgoing_invite(
    response: Response | None, messages: list[tuple[Request | Response, object]]
) -> Request:
    assert response is None
    invites = [m for m, _ in messages if isinstance(m, Request) and m.method == "INVITE"]
    assert len(invites) == 1
    return invites[0]


def test_the_switch_sends_a_184_call_out_anonymous_with_pai_and_privacy() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    response = deliver(endpoint, service, from_mobile("1840312345678", "+819012340001"), MOBILE)
    outgoing = outgoing_invite(response, list(sent(endpoint)))
    assert str(outgoing.uri) == "sip:0312345678@192.0.2.3:5060"
    assert (outgoing.headers.get("From") or "").startswith(ANONYMOUS + ";tag=")
    assert outgoing.headers.get_all("P-Asserted-Identity") == ["<tel:+815012340001>"]
    assert outgoing.headers.get_all("Privacy") == ["id"]
    assert "05012340001@" not in bytes(outgoing).decode()


def test_the_switch_plays_an_english_tenants_refusal_in_english() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    service.replace_snapshot(ENGLISH)
    assert start_restricted_call(endpoint, service).announcement == "call_restricted_en"


def test_the_service_greets_in_the_mailbox_tenants_language() -> None:
    switch = voicemail.Switch()
    english = in_language(voicemail.SNAPSHOT, AnnouncementLanguage.EN)
    switch.service.replace_snapshot(english)
    switch.call("1001")
    (opened,) = switch.effects()
    switch.service.voicemail_media_opened(opened.call_id, voicemail.MEDIA, switch.now)
    switch.collect()
    (greeting,) = switch.effects()
    assert isinstance(greeting, PlayGreeting) and greeting.greeting == "voicemail_greeting_en"
