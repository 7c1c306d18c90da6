"""A tenant's outbound carrier trunks and a trunk's identity trust (`pbx_routing`: outbound
trunks, rules 1 and 7).

Pure routing decisions over the demo-shaped snapshot of `test_pbx_routing` with a second
PSTN and mobile network trunk: the tenant's choice is used for its 050 external calls,
its mobile lines' emergency calls and calls to its mobile extensions; without a choice
the carrier-wide default stays. Then `identity_trusted` overriding the trunk kind both
ways (what a withheld call sends), inbound P-Asserted-Identity unchanged by it, and the
INVITE a `CallService` sends on the tenant's trunk.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from cloudpbx.domain import TrunkKind
from cloudpbx.snapshot import ConfigSnapshot, TenantEntry
from softswitch.b2bua.pbx_routing import (
    asserted_identity,
    carrier_trunk,
    identity_trusted,
    outbound_trunk,
)
from softswitch.b2bua.privacy import ANONYMOUS_FROM
from softswitch.b2bua.routing import CallKind
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request

from .test_pbx_routing import (
    DOMAIN,
    FROM_MOBILE,
    FROM_PBX,
    FROM_PSTN,
    MOBILE,
    PHONE_1001,
    SNAPSHOT,
    TRUNKS,
    deliver,
    from_mobile,
    header,
    invite,
    routed,
    sent,
    service_for,
    snapshot,
    switch_endpoint,
    trunk,
)

PSTN_B = trunk("pstn-b", TrunkKind.PSTN, "192.0.2.7")
MOBILE_B = trunk("mobile-b", TrunkKind.MOBILE_NETWORK, "192.0.2.8")
OTHER_GW = trunk("other-gw", TrunkKind.EXTERNAL_GATEWAY, "192.0.2.9", "other")
OTHER = TenantEntry("other", "他社", "other.example.com", ("Osaka",))
WITHHOLD = "Privacy: id\r\n"


def configured(
    pstn_trunk: str | None = None,
    mobile_trunk: str | None = None,
    other_pstn_trunk: str | None = None,
) -> ConfigSnapshot:
    """The demo snapshot with PSTN_B, MOBILE_B and OTHER_GW added, demo's settings as
    given, and a second tenant `other` choosing `other_pstn_trunk`."""
    config = snapshot(trunks=[*TRUNKS, PSTN_B, MOBILE_B, OTHER_GW])
    tenants = {
        "demo": dataclasses.replace(
            config.tenants["demo"], pstn_trunk=pstn_trunk, mobile_trunk=mobile_trunk
        ),
        "other": dataclasses.replace(OTHER, pstn_trunk=other_pstn_trunk),
    }
    return dataclasses.replace(config, tenants=MappingProxyType(tenants))


TENANT_TRUNKS = configured(pstn_trunk="pstn-b", mobile_trunk="mobile-b")
DEFAULTS = configured()


def trusted(config: ConfigSnapshot, name: str, value: bool | None) -> ConfigSnapshot:
    """`config` with trunk `name`'s `identity_trusted` set to `value`."""
    trunks = dict(config.trunks)
    trunks[name] = dataclasses.replace(trunks[name], identity_trusted=value)
    return dataclasses.replace(config, trunks=MappingProxyType(trunks))


# --- outbound trunks: the tenant's choice ----------------------------------------------------


def test_a_050_call_leaves_on_the_tenants_pstn_trunk() -> None:
    decision = routed(from_mobile("0312345678", "+819012340001"), FROM_MOBILE, TENANT_TRUNKS)
    assert decision.trunk == "pstn-b"
    assert decision.target_uri == "sip:0312345678@192.0.2.7:5060"
    assert decision.flow == Flow(Transport.UDP, ("192.0.2.7", 5060))
    # Only the trunk changes: the identity is rule 5's.
    assert decision.from_address == f"<sip:05012340001@{DOMAIN}>"
    assert header(decision, "P-Asserted-Identity") == "<tel:+815012340001>"


@pytest.mark.parametrize("dialled", ["110", "118", "119"])
def test_an_emergency_call_of_a_mobile_line_leaves_on_the_tenants_pstn_trunk(
    dialled: str,
) -> None:
    decision = routed(from_mobile(dialled, "+819012340002"), FROM_MOBILE, TENANT_TRUNKS)
    assert decision.trunk == "pstn-b" and decision.kind is CallKind.EXTERNAL
    assert decision.target_uri == f"sip:{dialled}@192.0.2.7:5060"
    assert header(decision, "P-Asserted-Identity") == "<tel:+819012340002>"


def test_calls_to_a_mobile_extension_leave_on_the_tenants_mobile_trunk() -> None:
    from_phone = routed(invite("2001"), PHONE_1001, TENANT_TRUNKS)
    assert from_phone.trunk == "mobile-b"
    assert from_phone.target_uri == "sip:+819012340001@192.0.2.8:5060"
    assert header(from_phone, "P-Called-Party-ID") == "<tel:+819012340001>"
    # The 2in1 B extension, from another mobile line, from the customer PBX.
    b_call = routed(from_mobile("2102", "+819012340001"), FROM_MOBILE, TENANT_TRUNKS)
    assert b_call.trunk == "mobile-b" and b_call.target_uri.startswith("sip:+819012340002@")
    from_pbx = routed(
        invite("2001", caller="3001", caller_host="192.0.2.5"), FROM_PBX, TENANT_TRUNKS
    )
    assert from_pbx.trunk == "mobile-b"
    # An outside caller ringing the extension: the callee's tenant's trunk.
    outside = routed(
        invite("2002", caller="0312345678", caller_host="192.0.2.3"), FROM_PSTN, TENANT_TRUNKS
    )
    assert outside.trunk == "mobile-b" and outside.kind is CallKind.EXTERNAL


def test_without_a_choice_the_carrier_wide_default_is_kept() -> None:
    # pstn-b and mobile-b exist, but the default is the trunk named pstn / mobile.
    assert routed(from_mobile("0312345678", "+819012340001"), FROM_MOBILE, DEFAULTS).trunk == (
        "pstn"
    )
    assert routed(from_mobile("119", "+819012340002"), FROM_MOBILE, DEFAULTS).trunk == "pstn"
    assert routed(invite("2001"), PHONE_1001, DEFAULTS).trunk == "mobile"
    # One setting without the other: each kind is chosen on its own.
    pstn_only = configured(pstn_trunk="pstn-b")
    assert routed(invite("2001"), PHONE_1001, pstn_only).trunk == "mobile"
    mobile_only = configured(mobile_trunk="mobile-b")
    assert routed(from_mobile("110", "+819012340002"), FROM_MOBILE, mobile_only).trunk == "pstn"


def test_another_tenants_choice_does_not_move_this_tenants_calls() -> None:
    config = configured(other_pstn_trunk="pstn-b")
    assert outbound_trunk(config, "other", TrunkKind.PSTN) == PSTN_B
    assert routed(from_mobile("0312345678", "+819012340001"), FROM_MOBILE, config).trunk == "pstn"


def test_gateway_and_pbx_routes_ignore_the_carrier_trunk_choice() -> None:
    by_line = routed(from_mobile("0612345678", "+819012340003"), FROM_MOBILE, TENANT_TRUNKS)
    assert by_line.trunk == "gw"
    assert routed(invite("0312345678"), PHONE_1001, TENANT_TRUNKS).trunk == "gw"
    assert routed(invite("3005"), PHONE_1001, TENANT_TRUNKS).trunk == "hq"


def test_a_choice_naming_no_carrier_trunk_of_its_kind_falls_back_to_the_default() -> None:
    # The API and provisioning refuse these; a snapshot built by hand may hold one, and
    # an emergency call must still leave.
    for name in ("missing", "mobile-b", "hq", "other-gw"):
        config = configured(pstn_trunk=name)
        assert outbound_trunk(config, "demo", TrunkKind.PSTN) == carrier_trunk(
            config, TrunkKind.PSTN
        )
        assert routed(from_mobile("110", "+819012340002"), FROM_MOBILE, config).trunk == "pstn"
    config = configured(mobile_trunk="pstn-b")
    assert outbound_trunk(config, "demo", TrunkKind.MOBILE_NETWORK) == TRUNKS[2]
    assert outbound_trunk(TENANT_TRUNKS, None, TrunkKind.PSTN) == TRUNKS[1]  # no tenant


def test_the_switch_sends_the_invite_to_the_tenants_trunk() -> None:
    endpoint = switch_endpoint()
    service = service_for(endpoint)
    service.replace_snapshot(TENANT_TRUNKS)
    assert deliver(endpoint, service, from_mobile("0312345678", "+819012340001"), MOBILE) is None
    invites = [(message, flow) for message, flow in sent(endpoint) if isinstance(message, Request)]
    assert len(invites) == 1
    outgoing, flow = invites[0]
    assert flow.remote == ("192.0.2.7", 5060)
    assert str(outgoing.uri) == "sip:0312345678@192.0.2.7:5060"
    assert outgoing.headers.get_all("P-Asserted-Identity") == ["<tel:+815012340001>"]


# --- identity trust: the trunk's setting over its kind --------------------------------------


def test_identity_trusted_follows_the_kind_unless_the_trunk_says_otherwise() -> None:
    by_name = {entry.name: entry for entry in TRUNKS}
    for name, by_kind in (("pstn", True), ("mobile", True), ("hq", False), ("gw", False)):
        entry = by_name[name]
        assert identity_trusted(entry) is by_kind
        assert identity_trusted(dataclasses.replace(entry, identity_trusted=True)) is True
        assert identity_trusted(dataclasses.replace(entry, identity_trusted=False)) is False
    assert not identity_trusted(None)  # a phone is never in the trust domain


def test_a_gateway_marked_trusted_gets_the_withheld_identity_with_privacy() -> None:
    request = from_mobile("1840612345678", "+819012340003")
    untrusted = routed(request, FROM_MOBILE)
    assert untrusted.trunk == "gw" and header(untrusted, "P-Asserted-Identity") is None
    decision = routed(request, FROM_MOBILE, trusted(SNAPSHOT, "gw", True))
    assert decision.trunk == "gw" and decision.from_address == ANONYMOUS_FROM
    assert header(decision, "P-Asserted-Identity") == f"<sip:2003@{DOMAIN}>"
    assert header(decision, "Privacy") == "id"
    # A shown call is the same either way: the setting is about withheld identities.
    shown = routed(from_mobile("0612345678", "+819012340003"), FROM_MOBILE)
    assert shown == routed(
        from_mobile("0612345678", "+819012340003"), FROM_MOBILE, trusted(SNAPSHOT, "gw", True)
    )


def test_a_customer_pbx_marked_trusted_keeps_the_assertion_of_a_withheld_call() -> None:
    decision = routed(invite("3005", extra=WITHHOLD), PHONE_1001, trusted(SNAPSHOT, "hq", True))
    assert decision.trunk == "hq" and decision.from_address == ANONYMOUS_FROM
    assert header(decision, "P-Asserted-Identity") == f"<sip:1001@{DOMAIN}>"
    assert header(decision, "Privacy") == "id"


def test_a_carrier_trunk_marked_untrusted_gets_no_withheld_identity() -> None:
    request = from_mobile("1840312345678", "+819012340001")
    decision = routed(request, FROM_MOBILE, trusted(SNAPSHOT, "pstn", False))
    assert decision.trunk == "pstn" and decision.from_address == ANONYMOUS_FROM
    assert header(decision, "P-Asserted-Identity") is None
    assert header(decision, "Privacy") is None
    to_mobile = routed(
        invite("2002", extra=WITHHOLD), PHONE_1001, trusted(SNAPSHOT, "mobile", False)
    )
    assert header(to_mobile, "P-Asserted-Identity") is None
    assert header(to_mobile, "P-Called-Party-ID") == "<tel:+819012340002>"  # about the callee
    # The tenant's own choice of trunk is judged by that trunk's setting.
    config = trusted(TENANT_TRUNKS, "pstn-b", False)
    chosen = routed(request, FROM_MOBILE, config)
    assert chosen.trunk == "pstn-b" and header(chosen, "P-Asserted-Identity") is None


def test_emergency_calls_still_show_the_number_on_an_untrusted_trunk() -> None:
    # Rule 6 before rule 7: emergency calls are never withheld, trusted trunk or not.
    config = trusted(SNAPSHOT, "pstn", False)
    decision = routed(from_mobile("184119", "+819012340002"), FROM_MOBILE, config)
    assert decision.from_address == f"<sip:+819012340002@{DOMAIN}>"
    assert header(decision, "P-Asserted-Identity") == "<tel:+819012340002>"


def test_the_setting_does_not_change_what_we_accept_from_a_trunk() -> None:
    # Rule 1: every recognised trunk's P-Asserted-Identity is read, as before.
    request = invite("2001", extra="P-Asserted-Identity: <sip:3001@pbx.example.com>\r\n")
    hq = dataclasses.replace(TRUNKS[3], identity_trusted=False)
    assert asserted_identity(request, hq) == "<sip:3001@pbx.example.com>"
    untrusted_mobile = trusted(SNAPSHOT, "mobile", False)
    decision = routed(from_mobile("1001", "+819012340001"), FROM_MOBILE, untrusted_mobile)
    assert decision.from_address == f'"携帯2001" <sip:2001@{DOMAIN}>'
    outside = routed(
        invite(
            "1001",
            caller="0312345678",
            caller_host="192.0.2.3",
            extra="P-Asserted-Identity: <tel:+81312345678>\r\n",
        ),
        FROM_PSTN,
        trusted(SNAPSHOT, "pstn", False),
    )
    assert outside.kind is CallKind.EXTERNAL
    assert header(outside, "P-Asserted-Identity") == "<tel:+81312345678>"
