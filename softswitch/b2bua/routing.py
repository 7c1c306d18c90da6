"""Where a new call goes: a pure decision over the config snapshot and the registrar.

Rules, in the order `route_call()` applies them (STYLE.md principle 8: policy over an
immutable snapshot, no I/O, no SQL):
1. The callee is the Request-URI user in the caller's domain (an extension number;
   RFC 3261 §8.2.2.1 already made sure the URI is a sip:/sips: one). A Request-URI
   without a user, or a number that is not an extension of that domain: 404 Not Found.
2. An extension with live registered contacts (RFC 3261 §10: the registrar's bindings,
   best q first, then the most recently refreshed) is called at all of them in
   parallel (§16.5: the target set is the contacts; §16.6 parallel search, the first
   2xx wins, issue 3): one target per binding, whose Request-URI is the Contact URI,
   sent over the binding's flow, the address and port its REGISTER came from (RFC 5626
   §5.3 spirit: phones behind NAT are reached where they are, not at their private
   Contact). `target_uri` and `flow` name the best one.
3. Otherwise an extension with a static contact (a device that does not register) is
   called at that URI. Its host must be an IP literal (the core never resolves names);
   port 5060 when absent (§19.1.2); transport=tcp selects TCP, else UDP (§18.1.1).
   A static contact we cannot reach that way: 480.
4. Otherwise: 480 Temporarily Unavailable (§21.4.18: the callee exists but is not
   reachable now).
- The no-answer timeout is the callee extension's `no_answer_timeout_seconds`.
- Cloud PBX calls (issue 6: mobile and customer-PBX extensions, external numbers, the
  caller identity the callee sees, 2in1, roaming) are decided by
  `pbx_routing.route_pbx_call`, which uses `route_to_extension` for fixed IP phones and
  fills the `CallRoute` fields this module leaves at their defaults (`kind`,
  `from_address`, `headers`, `trunk`) and the `CallRejection`'s `announcement`.
- `registrations_now` is the registrar's clock (wall time in the running switch), not
  the SIP core's.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from cloudpbx.snapshot import ConfigSnapshot, ExtensionEntry
from softswitch.registrar.bindings import Binding
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request
from softswitch.sip.uri import SipUri, parse_uri

__all__ = [
    "CallKind",
    "CallRejection",
    "CallRoute",
    "ContactLookup",
    "route_call",
    "route_to_extension",
    "static_contact_flow",
]

_DEFAULT_SIP_PORT = 5060  # RFC 3261 §19.1.2


class ContactLookup(Protocol):
    """The registrar's side of routing (`softswitch.registrar.Registrar` implements it)."""

    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        """Live bindings of sip:user@domain, best first."""
        ...


class CallKind(enum.StrEnum):
    """How a call is charged (PRODUCT.md Part B 1): the `kind=` of its call record."""

    INTERNAL = "internal"
    """Extension dialing between the tenant's extensions: flat-rate."""
    EXTERNAL = "external"
    """To or from a number outside the tenant (PSTN, gateway, emergency)."""


@dataclass(frozen=True, slots=True)
class CallRoute:
    """Call the callee here.

    Attributes:
        callee: the extension's address-of-record, `sip:NUMBER@DOMAIN`.
        target_uri: the Request-URI of the uac_leg INVITE.
        flow: where the uac_leg's requests go.
        no_answer_timeout: seconds of ringing before the caller gets 480.
        registered: True for a registered contact, False for a static one.
        targets: (Request-URI, flow) of every target to call in parallel, best first;
            `(target_uri, flow)` is the first.
        kind: internal (extension dialing) or external, for the call record.
        from_address: the From (name-addr, no tag) of our INVITEs; None: the caller's.
        headers: further (name, value) headers of our INVITEs (P-Asserted-Identity,
            P-Called-Party-ID).
        trunk: the trunk the call leaves on; None for a phone.
    """

    callee: str
    target_uri: str
    flow: Flow
    no_answer_timeout: float
    registered: bool
    targets: tuple[tuple[str, Flow], ...]
    kind: CallKind = CallKind.INTERNAL
    from_address: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class CallRejection:
    """Answer the caller with this final status; no call is made.

    Attributes:
        announcement: an announcement to play before the final status (early media),
            `call_restricted_ja`; None: the status alone.
        kind: the call record's kind; None: not known (no number was classified).
        callee: the extension refused, when the refusal is about one (e.g. 480 for an
            unregistered phone or an unreachable mobile: a voicemail diversion hook);
            not compared (a rejection equals another with the same answer).
    """

    status_code: int
    reason: str | None = None
    announcement: str | None = None
    kind: CallKind | None = None
    callee: ExtensionEntry | None = field(default=None, compare=False)


def route_call(
    request: Request,
    caller_domain: str,
    snapshot: ConfigSnapshot,
    registrations: ContactLookup,
    registrations_now: float,
) -> CallRoute | CallRejection:
    """The route of a new INVITE from an authenticated caller of `caller_domain`.

    Returns:
        A `CallRoute` to start a `Call` with, or the `CallRejection` to answer.
    """
    uri = request.uri
    user = uri.user if isinstance(uri, SipUri) else None
    if user is None:
        return CallRejection(404)
    extension = snapshot.extension(caller_domain, user)
    if extension is None:
        return CallRejection(404)
    return route_to_extension(extension, registrations, registrations_now)


def route_to_extension(
    extension: ExtensionEntry, registrations: ContactLookup, registrations_now: float
) -> CallRoute | CallRejection:
    """Rules 2-4 for a fixed IP phone: its registered contacts, its static contact, or 480."""
    timeout = float(extension.no_answer_timeout_seconds)
    bindings = registrations.lookup_contacts(extension.domain, extension.number, registrations_now)
    if bindings:
        # Rule 2: every live binding, in the registrar's order. Two bindings with the
        # same contact and flow are one target (one device must not ring twice).
        targets = tuple(dict.fromkeys((str(b.contact_uri), b.flow) for b in bindings))
        best_uri, best_flow = targets[0]
        return CallRoute(extension.address_of_record, best_uri, best_flow, timeout, True, targets)
    if extension.static_contact_uri is not None:
        flow = static_contact_flow(extension.static_contact_uri)
        if flow is None:
            return CallRejection(
                480, "Temporarily Unavailable (unreachable static contact)", callee=extension
            )
        return CallRoute(
            extension.address_of_record,
            extension.static_contact_uri,
            flow,
            timeout,
            False,
            ((extension.static_contact_uri, flow),),
        )
    return CallRejection(480, callee=extension)


def static_contact_flow(text: str) -> Flow | None:
    """The flow to a static contact URI (rule 3), or None when it has none."""
    try:
        uri = parse_uri(text)
    except RemoteProtocolError:
        return None
    if not isinstance(uri, SipUri):
        return None
    host = uri.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    transport_name = (uri.parameters.get("transport") or "udp").lower()
    if transport_name not in ("udp", "tcp"):
        return None
    transport = Transport.TCP if transport_name == "tcp" else Transport.UDP
    return Flow(transport, (host, uri.port or _DEFAULT_SIP_PORT))
