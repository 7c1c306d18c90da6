"""Cloud PBX calls (issue 6): who calls, what was dialled, where it goes, what the callee
sees. A pure decision over the config snapshot and the registrar (STYLE.md principle 8).

`route_pbx_call()` takes a new INVITE that `caller_auth` authenticated (a subscriber's
digest, or a trusted trunk's source address and/or digest) and returns a `CallRoute`
or a `CallRejection` (`routing`).

Rules, in the order they apply:
1. Trusted identity (RFC 3325). A P-Asserted-Identity is read only from a trusted trunk
   (RFC 3325 §5: the trunk is in our trust domain); from anything else it is ignored, and
   our INVITEs never copy the caller's (`Call` copies no such header): the identity the
   callee sees is always the one this module writes. A subscriber (fixed IP phone) is
   the extension it authenticated as, whatever it claims. "Trusted" here is every trunk
   `caller_auth` recognised (source address and/or digest), whatever its kind and its
   `identity_trusted` setting: a customer PBX names its extension this way, the mobile
   network its line, and the assertion is checked against our own lines and ranges
   (rule 2). `identity_trusted` (rule 7) is about what we send, not what we accept.
2. The origin of the call:
   - a fixed IP phone: its authenticated extension;
   - the mobile network trunk (`mobile_network`): the caller is the MSISDN the trunk
     asserts (P-Asserted-Identity, else the From user; national `090...` or E.164).
     Its mobile line must be one of ours (else 403: nothing outside our lines gets an
     extension's privileges), and the extension standing for that number is the caller:
     the A number gives the A extension, the 2in1 B number the B extension. The line is
     abroad when the operator API says so (`MobileLine.abroad`) or the INVITE carries the
     trunk's `abroad_header` (presence is enough, e.g. P-Visited-Network-ID, RFC 7315).
   - a customer PBX trunk (`customer_pbx`): the caller is the extension number it asserts
     (P-Asserted-Identity, else From user), which must lie in a customer-PBX range routed
     to that same trunk (else 403).
   - a PSTN or external-gateway trunk: an outside caller (`carrier`); it may call the
     tenant's extensions (an inbound external call, identity passed on as asserted) and
     nothing else: no transit to external or emergency numbers (403).
3. The dialled number is the Request-URI user without visual separators (RFC 3966
   §5.1.1: `-`, `.`, `(`, `)`), without a leading 184/186 in front of a full or
   emergency number (rule 7: the caller's presentation choice, never sent on; `184` in
   front of anything else is part of an extension number and dialled as is):
   - 110, 118, 119: an emergency call (rule 6);
   - a full number, starting with `0` (national: 0X0-..., 0AB-J) or `+` (E.164): an
     external call (rule 5), even when it is one of our own mobile numbers (PRODUCT.md
     Part B 2: dialing a full mobile number is an ordinary external call);
   - otherwise an extension of the caller's tenant (exact, or inside a customer-PBX
     range); none: 404.
4. Extension dialing (kind `internal`, flat-rate; `external` when an outside caller
   rings an extension). The callee sees the caller's extension number, never its mobile
   number: From `"<display name>" <sip:EXT@DOMAIN>` and P-Asserted-Identity
   `<sip:EXT@DOMAIN>` (an outside caller's From and trusted P-Asserted-Identity are passed
   on unchanged), unless the caller withholds it (rule 7). A mobile line abroad may not
   dial extensions: 403 with the `call_restricted` announcement. Where the call goes, by
   the callee's kind:
   - fixed IP phone: its registered contacts, its static contact, else 480
     (`routing.route_to_extension`);
   - mobile: out on the tenant's mobile network trunk (outbound trunks), Request-URI
     `sip:<A MSISDN>@<trunk>` (the handset's own number), with
     `P-Called-Party-ID: <tel:NUMBER>` (RFC 3455 §4.2) naming the number that was
     called: the A number, or the 2in1 B number for a call to the B extension (that
     header is how a B call is marked). A line abroad (operator API) is called only with
     the roaming option; without it 480 (the `callee` of the rejection is the extension:
     the voicemail diversion's hook);
   - customer PBX: out on the range's trunk, Request-URI `sip:<dialled number>@<trunk>`.
     A PBX calling a number of its own range gets 482 (Loop Detected, RFC 3261 §21.4.20):
     the PBX connects its own extensions itself.
5. External calls (kind `external`), by origin:
   - mobile line with the 050 option: out on the tenant's PSTN trunk (outbound trunks), From
     `<sip:050NUMBER@DOMAIN>` and P-Asserted-Identity `<tel:+8150NUMBER>`;
   - else with the gateway option: out on the tenant's `external_gateway` trunk showing
     the line's extension (the customer's gateway maps it to its own lines);
   - fixed IP phones have no line options: they dial external numbers through the
     tenant's external gateway when the tenant has one, showing their extension;
   - without any of these (a line without options, a tenant without a gateway, a
     customer PBX, which has its own external lines): 403 with the `call_restricted`
     announcement. An outside caller (carrier trunk): 403, no transit.
   The 050 option wins when a line has both. Request-URI: `sip:<dialled>@<trunk>`.
6. Emergency numbers 110 (police), 118 (coast guard), 119 (fire and ambulance), following
   Japanese practice: an emergency call must reach the emergency centre with a number it
   can call back, and a location; a telephone service that cannot give them must not
   pretend to (050 IP telephone services are not required to offer 110/119 and refuse
   them with guidance; 0AB-J services must offer them).
   - From a mobile line: never refused by options or roaming. A handset places emergency
     calls through the mobile network directly; if the mobile trunk does hand one to us,
     it goes out on the tenant's PSTN trunk (outbound trunks) showing the line's own
     MSISDN (the number the centre calls back; the "extension, never the mobile number"
     rule is about extension calls), whatever the line's options.
   - From a fixed IP phone or a customer PBX: refused, 403 with the
     `emergency_unavailable` announcement ("call from a mobile or fixed line"): our
     extensions have no public number to call back nor a registered location, and a
     customer PBX places emergency calls over its own lines.
   - From an outside caller (carrier trunk): 403, no transit.
   Withholding never applies (rule 7): 184 or `Privacy: id` on 110/118/119 still shows
   the line's number, because the centre must be able to call back (Japanese emergency
   centres get the number of a 184 call too); 184/186 in front is dropped.
7. Caller-ID withholding (RFC 3323, RFC 3325 §9.3; Japanese 184 非通知 / 186 通知):
   - The caller withholds their identity on a call when it dials 184 in front of a full
     number, or, without 184/186, when its INVITE carries `Privacy: id`, `header` or
     `user` or an anonymous From (`softswitch.b2bua.privacy`; from a mobile line that
     is what the mobile network sends for the handset). 186 shows the identity on this
     call even when the INVITE asks for privacy (a phone or line set to withhold by default, as
     186 overrides a line's default withholding in Japan). 184/186 are read only in
     front of a full or emergency number (rule 3) and never sent on.
   - Extension calls inside the tenant honour it too (RFC 3323: a caller who asked for
     privacy gets it; a company PBX shows the extension only when none is asked): the
     callee phone sees an anonymous caller.
   - An outside caller's own Privacy (`id`, `header`, `user`) from the carrier trunk is
     honoured the same way when it rings an extension (a phone never gets its
     P-Asserted-Identity, RFC 3325 §5).
   - A withheld call, wherever it goes, shows From `"Anonymous"
     <sip:anonymous@anonymous.invalid>` (RFC 3323 §4.1.1.3). Toward a trusted trunk
     (`identity_trusted`, our trust domain, RFC 3325 §2 Spec(T)) P-Asserted-Identity is
     still sent, as rules 4 and 5 write it (the network needs it: charging,
     malicious-call tracing, emergency), with `Privacy: id` so the network withholds it
     from the far end (RFC 3325 §9.3). Toward anything else (a phone, an untrusted trunk)
     P-Asserted-Identity is removed (RFC 3325 §5, §7) and no Privacy is sent (the
     privacy function was performed here, RFC 3323 §4.2). P-Called-Party-ID is about the
     callee and stays.
   - Which trunks are trusted: the trunk's `identity_trusted` setting (an operator's
     choice) when it has one, else by kind: the carrier PSTN and mobile network trunks
     are, a customer PBX or external-line gateway (the customer's equipment) is not. So a
     customer's gateway or PBX inside the trust domain can be marked trusted, and a
     carrier trunk outside it untrusted. The setting governs only what we send; what we
     accept from a trunk is rule 1, unchanged by it.
   - Emergency calls ignore withholding (rule 6).
8. Announcement language: a refusal's announcement is `<kind>_<language>`
   (`announcement_name`; `configs/announcements/<kind>_<language>.wav`) in the
   `announcement_language` of the caller's tenant (`tenant_language`: `ja` by default,
   or `en`), the tenant whose line or extension the refused call concerns (an outside
   caller is refused without an announcement, rules 5 and 6). The voicemail greeting is
   in the callee's (the mailbox owner's) tenant's language (`voicemail_call.greeting_name`).
- Outbound trunks: the mobile network trunk and the PSTN trunk are carrier-wide (no
  tenant). A tenant may have its own choice of each (`TenantEntry.pstn_trunk` /
  `mobile_trunk`, an operator setting): 050 external calls and emergency calls of its
  mobile lines leave on its PSTN trunk, calls to its mobile extensions (from anyone) on
  its mobile trunk (`outbound_trunk`; the tenant is the caller's line's for the first two,
  the callee extension's for the last). Without a choice (or one that names no
  carrier-wide trunk of that kind in the snapshot, which the writers refuse), or when
  several of a kind exist, the one named `mobile` / `pstn` is used, else the first by name
  (`carrier_trunk`). Gateways and customer PBXs are the tenant's own. A missing or
  unreachable (TLS: not spoken yet) outbound trunk: 480.
- Trunk capacity (`TrunkEntry.capacity`): a call that would leave on a trunk already
  carrying that many calls (cloud PBX and toll-free calls counted together) gets 486 Busy
  Here (RFC 3261 §21.4.24: every outside line is in use); emergency calls are never
  refused for it. The service holds one channel of the trunk for the whole call.
- No-answer timeouts: the callee extension's for extension calls; `EXTERNAL_NO_ANSWER_TIMEOUT`
  for external and emergency calls.
- Kinds: every decision, route or refusal, carries the call record's kind: internal
  for extension dialing between the tenant's own (also when refused: unknown extension
  404, a caller no line of ours 403), external for full and emergency numbers and for
  outside callers.
- Announcements are named `<kind>_<language>` (`configs/announcements/`), in the
  language of rule 8.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Protocol

from cloudpbx.domain import AnnouncementLanguage, ExtensionKind, TrunkKind
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.snapshot import ConfigSnapshot, ExtensionEntry, MobileLineEntry, TrunkEntry
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.headers import parse_name_address, quote_string, split_comma_values
from softswitch.sip.message import Request
from softswitch.sip.uri import SipUri, TelUri
from softswitch.tollfree import split_presentation_prefix

from .caller_auth import AuthenticatedCaller
from .privacy import ANONYMOUS_FROM, WITHHOLDING_VALUES, anonymous_from, privacy_values
from .routing import CallKind, CallRejection, CallRoute, ContactLookup, route_to_extension

__all__ = [
    "CALL_RESTRICTED_ANNOUNCEMENT",
    "EMERGENCY_ANNOUNCEMENT",
    "EMERGENCY_NUMBERS",
    "EXTERNAL_NO_ANSWER_TIMEOUT",
    "Origin",
    "OriginKind",
    "TrunkChannels",
    "announcement_name",
    "asserted_identity",
    "carrier_trunk",
    "dialled_number",
    "identify_origin",
    "identity_trusted",
    "outbound_trunk",
    "route_pbx_call",
    "tenant_language",
]

EMERGENCY_NUMBERS = frozenset({"110", "118", "119"})
"""Police, coast guard, fire and ambulance (rule 6)."""
CALL_RESTRICTED_ANNOUNCEMENT = "call_restricted"
"""The kind of the refusal of a call the caller may not make (rules 4, 5; rule 8 adds
the language)."""
EMERGENCY_ANNOUNCEMENT = "emergency_unavailable"
"""The kind of the refusal of an emergency call from a phone without a callback number
(rule 6; rule 8 adds the language)."""
EXTERNAL_NO_ANSWER_TIMEOUT = 60.0
"""Seconds an external or emergency call may ring before the caller gets 480."""
_PREFERRED_CARRIER_TRUNKS = {TrunkKind.MOBILE_NETWORK: "mobile", TrunkKind.PSTN: "pstn"}
_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")  # RFC 3966 §5.1.1


class TrunkChannels(Protocol):
    """Calls in progress per trunk (`softswitch.tollfree.ChannelCounter` is one)."""

    def at_limit(self, key: str, limit: int | None) -> bool:
        """True when trunk `key` already carries `limit` calls (None: no limit)."""
        ...


class OriginKind(enum.StrEnum):
    """Who is calling (rule 2)."""

    PHONE = "phone"
    MOBILE = "mobile"
    CUSTOMER_PBX = "customer_pbx"
    CARRIER = "carrier"


@dataclass(frozen=True, slots=True)
class Origin:
    """The caller of a new INVITE, as rule 2 decides it.

    Attributes:
        kind: phone, mobile line, customer PBX or outside caller.
        domain: the SIP domain of the caller's tenant (lower case): numbers are looked
            up in it.
        extension: the caller's extension (a customer-PBX range for a PBX caller); None
            for an outside caller or a mobile line without an extension.
        number: the caller's extension number (inside the range for a PBX); None
            without an extension.
        line: the caller's mobile line (mobile only).
        mobile_number: the E.164 number the mobile trunk asserted (A or B).
        abroad: the mobile line is abroad (operator API or the trunk's header).
        trunk: the trusted trunk the INVITE came from; None for a phone.
        asserted_identity: the P-Asserted-Identity a trusted trunk sent, else None.
        tenant_name: the caller's tenant (its language, rule 8); None for an outside
            caller.
    """

    kind: OriginKind
    domain: str
    extension: ExtensionEntry | None = None
    number: str | None = None
    line: MobileLineEntry | None = None
    mobile_number: str | None = None
    abroad: bool = False
    trunk: TrunkEntry | None = None
    asserted_identity: str | None = None
    tenant_name: str | None = None


def asserted_identity(request: Request, trunk: TrunkEntry | None) -> str | None:
    """The first P-Asserted-Identity value of `request`, only from a trusted trunk
    (rule 1, RFC 3325 §5); None otherwise or when it has none."""
    if trunk is None:
        return None
    for text in request.headers.get_all("p-asserted-identity"):
        try:
            values = split_comma_values(text)
        except RemoteProtocolError:
            return None
        return values[0].strip() if values else None
    return None


def _identity_user(text: str | None) -> str | None:
    """The user of a name-addr or URI text: the SIP URI user, or the tel: number."""
    if text is None:
        return None
    try:
        uri = parse_name_address(text).uri
    except RemoteProtocolError:
        return None
    if isinstance(uri, SipUri):
        return None if uri.user is None else uri.user.translate(_VISUAL_SEPARATORS)
    if isinstance(uri, TelUri):
        return uri.digits
    return None


def _e164(number: str) -> str | None:
    """A Japanese number as E.164 (`+819012340001`): `+...` kept, national `0...` given
    the country code 81; None for anything else."""
    if number.startswith("+") and number[1:].isdigit():
        return number
    if number.startswith("0") and number.isdigit():
        return "+81" + number[1:]
    return None


def _caller_number(request: Request, asserted: str | None) -> str | None:
    """What a trusted trunk says the caller is: its P-Asserted-Identity, else From user."""
    number = _identity_user(asserted)
    if number is not None:
        return number
    uri = request.from_address.uri
    if isinstance(uri, SipUri) and uri.user is not None:
        return uri.user.translate(_VISUAL_SEPARATORS)
    if isinstance(uri, TelUri):
        return uri.digits
    return None


def _has_header(request: Request, name: str | None) -> bool:
    if not name:
        return False
    try:
        return name in request.headers
    except RemoteProtocolError:  # pragma: no cover - provisioning checks the token
        return False


def identify_origin(
    request: Request, caller: AuthenticatedCaller, snapshot: ConfigSnapshot
) -> Origin | CallRejection:
    """Rule 2: who calls; 403 for a trunk caller that is none of ours."""
    trunk = None if caller.trunk is None else snapshot.trunks.get(caller.trunk)
    if trunk is None:
        extension = (
            None if caller.username is None else snapshot.extension(caller.domain, caller.username)
        )
        if extension is None:
            return CallRejection(403, "Forbidden (not an extension)")
        return Origin(
            OriginKind.PHONE,
            caller.domain,
            extension,
            extension.number,
            tenant_name=extension.tenant_name,
        )
    asserted = asserted_identity(request, trunk)
    number = _caller_number(request, asserted)
    if trunk.kind is TrunkKind.MOBILE_NETWORK:
        mobile_number = None if number is None else _e164(number)
        line = None if mobile_number is None else snapshot.mobile_line(mobile_number)
        tenant = None if line is None else snapshot.tenants.get(line.tenant_name)
        if mobile_number is None or line is None or tenant is None:
            return CallRejection(403, "Forbidden (not a mobile line of ours)")
        extension = snapshot.mobile_extension(mobile_number)
        abroad = line.abroad or _has_header(request, trunk.abroad_header)
        return Origin(
            OriginKind.MOBILE,
            tenant.sip_domain.lower(),
            extension,
            None if extension is None else extension.number,
            line,
            mobile_number,
            abroad,
            trunk,
            asserted,
            line.tenant_name,
        )
    if trunk.kind is TrunkKind.CUSTOMER_PBX:
        extension = None if number is None else snapshot.extension_for_number(caller.domain, number)
        if (
            number is None
            or extension is None
            or extension.kind is not ExtensionKind.CUSTOMER_PBX
            or extension.trunk_name != trunk.name
        ):
            return CallRejection(403, "Forbidden (not an extension behind this PBX)")
        return Origin(
            OriginKind.CUSTOMER_PBX,
            caller.domain,
            extension,
            number,
            trunk=trunk,
            asserted_identity=asserted,
            tenant_name=extension.tenant_name,
        )
    return Origin(OriginKind.CARRIER, caller.domain, trunk=trunk, asserted_identity=asserted)


def dialled_number(request: Request) -> str | None:
    """Rule 3: the Request-URI user without visual separators, or None."""
    uri = request.uri
    if isinstance(uri, SipUri) and uri.user:
        return uri.user.translate(_VISUAL_SEPARATORS)
    if isinstance(uri, TelUri):
        return uri.digits
    return None


def _is_full_number(number: str) -> bool:
    """Rule 3: national (`0...`) or E.164 (`+...`) digits."""
    if number.startswith("+"):
        return number[1:].isdigit() and len(number) > 1
    return number.startswith("0") and number.isdigit()


def carrier_trunk(snapshot: ConfigSnapshot, kind: TrunkKind) -> TrunkEntry | None:
    """The carrier-wide trunk of `kind` calls leave on (module rules: outbound trunks)."""
    candidates = sorted(
        (
            trunk
            for trunk in snapshot.trunks.values()
            if trunk.kind is kind and not trunk.tenant_name
        ),
        key=lambda trunk: trunk.name,
    )
    preferred = _PREFERRED_CARRIER_TRUNKS.get(kind)
    for trunk in candidates:
        if trunk.name == preferred:
            return trunk
    return candidates[0] if candidates else None


def outbound_trunk(
    snapshot: ConfigSnapshot, tenant_name: str | None, kind: TrunkKind
) -> TrunkEntry | None:
    """The carrier trunk of `kind` (PSTN or mobile network) a call of tenant `tenant_name`
    leaves on: the tenant's `pstn_trunk` / `mobile_trunk` when set, else `carrier_trunk`
    (module rules: outbound trunks).

    A setting that does not name a carrier-wide trunk of `kind` in `snapshot` (the writers
    refuse one, so only a snapshot built by hand has it) gives the carrier-wide default: an
    emergency call must still leave.
    """
    tenant = None if tenant_name is None else snapshot.tenants.get(tenant_name)
    name = None
    if tenant is not None:
        if kind is TrunkKind.PSTN:
            name = tenant.pstn_trunk
        elif kind is TrunkKind.MOBILE_NETWORK:
            name = tenant.mobile_trunk
    chosen = None if name is None else snapshot.trunks.get(name)
    if chosen is not None and chosen.kind is kind and not chosen.tenant_name:
        return chosen
    return carrier_trunk(snapshot, kind)


def _tenant_trunk(snapshot: ConfigSnapshot, tenant_name: str, kind: TrunkKind) -> TrunkEntry | None:
    """The tenant's own trunk of `kind` (first by name), if any."""
    candidates = sorted(
        (t for t in snapshot.trunks.values() if t.kind is kind and t.tenant_name == tenant_name),
        key=lambda trunk: trunk.name,
    )
    return candidates[0] if candidates else None


def _trunk_target(number: str, trunk: TrunkEntry) -> tuple[str, Flow] | None:
    """`sip:NUMBER@HOST:PORT` over the trunk's transport; None for TLS (not spoken)."""
    if trunk.transport is TrunkTransport.UDP:
        transport, suffix = Transport.UDP, ""
    elif trunk.transport is TrunkTransport.TCP:
        transport, suffix = Transport.TCP, ";transport=tcp"  # RFC 3261 §19.1.1
    else:
        return None
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    return f"sip:{number}@{host}:{trunk.port}{suffix}", Flow(transport, (trunk.host, trunk.port))


def _trunk_route(
    callee: str,
    number: str,
    trunk: TrunkEntry | None,
    timeout: float,
    kind: CallKind,
    from_address: str | None,
    headers: tuple[tuple[str, str], ...],
) -> CallRoute | CallRejection:
    target = None if trunk is None else _trunk_target(number, trunk)
    if trunk is None or target is None:
        return CallRejection(480, "Temporarily Unavailable (no trunk)", kind=kind)
    uri, flow = target
    return CallRoute(
        callee, uri, flow, timeout, False, (target,), kind, from_address, headers, trunk.name
    )


def _extension_identity(origin: Origin) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Rule 4: From and P-Asserted-Identity showing the caller's extension number; an
    outside caller's From unchanged and its trusted assertion passed on."""
    if origin.number is None:
        asserted = origin.asserted_identity
        return None, (() if asserted is None else (("P-Asserted-Identity", asserted),))
    uri = f"<sip:{origin.number}@{origin.domain}>"
    extension = origin.extension
    display = (
        extension.display_name
        if extension is not None and extension.range_last is None and extension.display_name
        else None
    )
    from_address = uri if display is None else f"{quote_string(display)} {uri}"
    return from_address, (("P-Asserted-Identity", uri),)


def tenant_language(snapshot: ConfigSnapshot, tenant_name: str | None) -> AnnouncementLanguage:
    """Rule 8: the announcement language of tenant `tenant_name` (Japanese when unknown)."""
    tenant = None if tenant_name is None else snapshot.tenants.get(tenant_name)
    return AnnouncementLanguage.JA if tenant is None else tenant.announcement_language


def announcement_name(kind: str, language: AnnouncementLanguage) -> str:
    """Rule 8: `<kind>_<language>`, the file name of `configs/announcements/` without .wav."""
    return f"{kind}_{language.value}"


def _restricted(
    kind: CallKind, reason: str, announcement: str, origin: Origin, snapshot: ConfigSnapshot
) -> CallRejection:
    """403 with the `announcement` kind in the caller's tenant's language (rule 8)."""
    name = announcement_name(announcement, tenant_language(snapshot, origin.tenant_name))
    return CallRejection(403, f"Forbidden ({reason})", name, kind)


def identity_trusted(trunk: TrunkEntry | None) -> bool:
    """Rule 7: a destination in our trust domain (RFC 3325 §2 Spec(T)): the trunk's
    `identity_trusted` setting when it has one, else by kind: a carrier trunk (PSTN or
    mobile network) is, customer PBXs and external gateways (the customer's equipment) are
    not. Phones (None) never are. Only what we send depends on it (rule 1)."""
    if trunk is None:
        return False
    if trunk.identity_trusted is not None:
        return trunk.identity_trusted
    return trunk.kind in (TrunkKind.PSTN, TrunkKind.MOBILE_NETWORK)


def _presentation(dialled: str | None) -> tuple[bool | None, str | None]:
    """Rule 7: the 184/186 choice dialled in front of a full or emergency number, and the
    number without it; (None, dialled) otherwise."""
    if dialled is None:
        return None, None
    choice, rest = split_presentation_prefix(dialled)
    if choice is not None and (rest in EMERGENCY_NUMBERS or _is_full_number(rest)):
        return choice, rest
    return None, dialled


def _withheld(request: Request, origin: Origin, choice: bool | None) -> bool:
    """Rule 7: does the caller withhold their identity on this call?"""
    if choice is not None and origin.kind is not OriginKind.CARRIER:
        return choice  # 184 / 186: the caller's choice for this call wins
    return bool(privacy_values(request) & WITHHOLDING_VALUES) or anonymous_from(request)


def _anonymous(route: CallRoute, snapshot: ConfigSnapshot) -> CallRoute:
    """Rule 7: the route's identity withheld: From anonymous (RFC 3323 §4.1.1.3); toward
    a trusted trunk P-Asserted-Identity kept with `Privacy: id` (RFC 3325 §9.3), toward
    anything else P-Asserted-Identity removed (RFC 3325 §5)."""
    trunk = None if route.trunk is None else snapshot.trunks.get(route.trunk)
    trusted = identity_trusted(trunk)
    headers = tuple(
        (name, value)
        for name, value in route.headers
        if trusted or name.lower() != "p-asserted-identity"
    )
    if trusted:
        headers = (*headers, ("Privacy", "id"))
    return dataclasses.replace(route, from_address=ANONYMOUS_FROM, headers=headers)


def route_pbx_call(
    request: Request,
    caller: AuthenticatedCaller,
    snapshot: ConfigSnapshot,
    registrations: ContactLookup,
    registrations_now: float,
    trunk_channels: TrunkChannels | None = None,
) -> CallRoute | CallRejection:
    """The route of a new (non-toll-free) INVITE from `caller` (see the module rules).

    Args:
        trunk_channels: the calls in progress per trunk (the service's counter, shared
            with toll-free calls); None: capacities are not checked.

    Returns:
        A `CallRoute` to start a `Call` with (its `from_address` and `headers` are what
        the callee sees), or the `CallRejection` to answer, with an announcement to play
        first when it names one.
    """
    choice, dialled = _presentation(dialled_number(request))
    origin = identify_origin(request, caller, snapshot)
    if isinstance(origin, CallRejection):
        # The record still says what was dialled (module rules: kinds).
        return dataclasses.replace(origin, kind=_dialled_kind(dialled, None))
    if dialled is None:
        return CallRejection(404, kind=_dialled_kind(dialled, origin))
    if dialled in EMERGENCY_NUMBERS:
        # Never refused for capacity, never withheld (rules 6, 7).
        return _emergency(origin, dialled, snapshot)
    if _is_full_number(dialled):
        decision = _external(origin, dialled, snapshot)
    else:
        callee = snapshot.extension_for_number(origin.domain, dialled)
        if callee is None:
            return CallRejection(404, kind=_dialled_kind(dialled, origin))
        decision = _internal(origin, callee, dialled, snapshot, registrations, registrations_now)
    if not isinstance(decision, CallRoute):
        return decision
    if decision.trunk and trunk_channels is not None:
        trunk = snapshot.trunks.get(decision.trunk)
        if trunk is not None and trunk_channels.at_limit(trunk.name, trunk.capacity):
            return CallRejection(486, "Busy Here (trunk full)", kind=decision.kind)
    if _withheld(request, origin, choice):
        return _anonymous(decision, snapshot)
    return decision


def _dialled_kind(dialled: str | None, origin: Origin | None) -> CallKind:
    """The record's kind of a call refused before it was routed: external for a full or
    emergency number or an outside caller, else internal (extension dialing)."""
    if origin is not None and origin.kind is OriginKind.CARRIER:
        return CallKind.EXTERNAL
    if dialled is not None and (dialled in EMERGENCY_NUMBERS or _is_full_number(dialled)):
        return CallKind.EXTERNAL
    return CallKind.INTERNAL


def _internal(
    origin: Origin,
    callee: ExtensionEntry,
    dialled: str,
    snapshot: ConfigSnapshot,
    registrations: ContactLookup,
    registrations_now: float,
) -> CallRoute | CallRejection:
    """Rule 4: extension dialing."""
    kind = CallKind.EXTERNAL if origin.kind is OriginKind.CARRIER else CallKind.INTERNAL
    if origin.kind is OriginKind.MOBILE:
        if origin.abroad:
            return _restricted(
                kind,
                "extension dialing from abroad",
                CALL_RESTRICTED_ANNOUNCEMENT,
                origin,
                snapshot,
            )
        if origin.extension is None:
            return _restricted(
                kind, "the line has no extension", CALL_RESTRICTED_ANNOUNCEMENT, origin, snapshot
            )
    from_address, headers = _extension_identity(origin)
    timeout = float(callee.no_answer_timeout_seconds)
    if callee.kind is ExtensionKind.MOBILE:
        line = callee.mobile_line
        called = callee.mobile_number
        if line is None or called is None:
            return CallRejection(404, kind=kind)
        if line.abroad and not line.option_roaming:
            # Hook: the voicemail diversion may take this 480 (`callee` is the extension).
            return CallRejection(480, "Temporarily Unavailable (abroad)", kind=kind, callee=callee)
        route = _trunk_route(
            callee.address_of_record,
            line.msisdn,
            outbound_trunk(snapshot, callee.tenant_name, TrunkKind.MOBILE_NETWORK),
            timeout,
            kind,
            from_address,
            (*headers, ("P-Called-Party-ID", f"<tel:{called}>")),  # RFC 3455 §4.2
        )
        if isinstance(route, CallRejection):
            return dataclasses.replace(route, callee=callee)
        return route
    if callee.kind is ExtensionKind.CUSTOMER_PBX:
        trunk = None if callee.trunk_name is None else snapshot.trunks.get(callee.trunk_name)
        if origin.trunk is not None and trunk is origin.trunk:
            return CallRejection(482, "Loop Detected (the PBX's own extension)", kind=kind)
        return _trunk_route(
            f"sip:{dialled}@{callee.domain}", dialled, trunk, timeout, kind, from_address, headers
        )
    route = route_to_extension(callee, registrations, registrations_now)
    if isinstance(route, CallRejection):
        return dataclasses.replace(route, kind=kind)
    return dataclasses.replace(route, kind=kind, from_address=from_address, headers=headers)


def _external(origin: Origin, dialled: str, snapshot: ConfigSnapshot) -> CallRoute | CallRejection:
    """Rule 5: a full number."""
    kind = CallKind.EXTERNAL
    callee = f"tel:{dialled}"
    if origin.kind is OriginKind.CARRIER:
        return CallRejection(403, "Forbidden (no transit)", kind=kind)
    line = origin.line
    if line is not None and line.option_050 and line.number_050:
        national = line.number_050
        domain = origin.domain
        return _trunk_route(
            callee,
            dialled,
            outbound_trunk(snapshot, origin.tenant_name, TrunkKind.PSTN),
            EXTERNAL_NO_ANSWER_TIMEOUT,
            kind,
            f"<sip:{national}@{domain}>",
            (("P-Asserted-Identity", f"<tel:+81{national[1:]}>"),),
        )
    tenant_name = None if origin.extension is None else origin.extension.tenant_name
    gateway_allowed = (origin.kind is OriginKind.PHONE) or (
        line is not None and line.option_gateway
    )
    if gateway_allowed and origin.number is not None and tenant_name is not None:
        gateway = _tenant_trunk(snapshot, tenant_name, TrunkKind.EXTERNAL_GATEWAY)
        if gateway is not None:
            from_address, headers = _extension_identity(origin)
            return _trunk_route(
                callee, dialled, gateway, EXTERNAL_NO_ANSWER_TIMEOUT, kind, from_address, headers
            )
    return _restricted(
        kind, "no external-call option", CALL_RESTRICTED_ANNOUNCEMENT, origin, snapshot
    )


def _emergency(origin: Origin, dialled: str, snapshot: ConfigSnapshot) -> CallRoute | CallRejection:
    """Rule 6: 110, 118, 119."""
    kind = CallKind.EXTERNAL
    if origin.kind is OriginKind.CARRIER:
        return CallRejection(403, "Forbidden (no transit)", kind=kind)
    if origin.kind is not OriginKind.MOBILE or origin.mobile_number is None:
        return _restricted(
            kind, "no emergency calls from this phone", EMERGENCY_ANNOUNCEMENT, origin, snapshot
        )
    number = origin.mobile_number
    return _trunk_route(
        f"tel:{dialled}",
        dialled,
        outbound_trunk(snapshot, origin.tenant_name, TrunkKind.PSTN),
        EXTERNAL_NO_ANSWER_TIMEOUT,
        kind,
        f"<sip:{number}@{origin.domain}>",
        (("P-Asserted-Identity", f"<tel:{number}>"),),
    )
