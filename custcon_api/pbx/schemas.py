"""Request and response bodies of the Cloud PBX endpoints.

Rules:
- Every request body forbids unknown fields (`extra="forbid"`); a value pydantic refuses
  is a 422 whose `loc` names the field (`["body", "msisdn"]`).
- Numbers are normalised here with `cloudpbx.rules`: mobile numbers (MSISDN, 2in1 B) to
  E.164 (`+819012340001`), 050 numbers to national form, so the services compare and
  store one form only.
- In a PATCH body an absent field is left alone; `null` clears a field that may be empty
  (`static_contact_uri`, `b_number`, ...) and is refused (422) for one that may not.
- Responses are the audit views (`custcon_api.pbx.views`) validated into these models:
  what the API shows is what the audit log records, and neither holds a password or HA1.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from cloudpbx.domain import (
    MAX_PASSWORD_LENGTH,
    AnnouncementLanguage,
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    Transport,
    TrunkKind,
)
from cloudpbx.rules import (
    check_header_name,
    normalize_050_number,
    normalize_ip_address,
    normalize_msisdn,
    normalize_sip_domain,
    parse_source_address,
)
from custcon_api.pbx.views import format_source

__all__ = [
    "ExtensionCreate",
    "ExtensionPublic",
    "ExtensionUpdate",
    "MobileLineCreate",
    "MobileLineOptions",
    "MobileLineOptionsUpdate",
    "MobileLinePublic",
    "MobileLineUpdate",
    "MobileMapping",
    "SiteCreate",
    "SitePublic",
    "TENANT_ADMIN_TENANT_FIELDS",
    "TenantCreate",
    "TenantPublic",
    "TenantUpdate",
    "TrunkCreate",
    "TrunkPublic",
    "TrunkUpdate",
    "USER_EXTENSION_FIELDS",
]


def _check_source(text: str) -> str:
    return format_source(*parse_source_address(text))


def _check_algorithms(algorithms: list[DigestAlgorithm]) -> list[DigestAlgorithm]:
    if len(set(algorithms)) != len(algorithms):
        raise ValueError("lists an algorithm twice")
    return algorithms


TenantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
"""Short identifier of a tenant (`demo`): lower case, as in account logins `LOCAL@TENANT`."""
HolderName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
SipDomain = Annotated[str, StringConstraints(max_length=256), AfterValidator(normalize_sip_domain)]
Msisdn = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize_msisdn)]
Number050 = Annotated[str, StringConstraints(max_length=32), AfterValidator(normalize_050_number)]
SiteName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
ExtensionNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]
TrunkName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
SipPassword = Annotated[str, StringConstraints(min_length=8, max_length=MAX_PASSWORD_LENGTH)]
Algorithms = Annotated[
    list[DigestAlgorithm], Field(min_length=1), AfterValidator(_check_algorithms)
]
ContactUri = Annotated[str, StringConstraints(pattern=r"^sips?:\S+$", max_length=1024)]
NoAnswerTimeout = Annotated[int, Field(ge=1, le=3600)]
Port = Annotated[int, Field(ge=1, le=65535)]
TrustedSource = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_source)]

PostalAddress = Annotated[str, StringConstraints(max_length=1024)]
BasicContract = Annotated[str, StringConstraints(max_length=64)]
IpAddress = Annotated[str, StringConstraints(max_length=64), AfterValidator(normalize_ip_address)]
DisplayName = Annotated[str, StringConstraints(max_length=128)]
AuthUsername = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AuthRealm = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Capacity = Annotated[int, Field(ge=1)]
HeaderName = Annotated[str, AfterValidator(check_header_name)]
"""A SIP header name (RFC 3261 §25.1 token, at most 64 characters): `P-Visited-Network-ID`."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null")
    return value


NotNull = BeforeValidator(_refuse_null)
"""On a PATCH field `X | None = None`: absent is None (left alone), explicit null is 422."""


# --- tenants and sites -----------------------------------------------------------------


class TenantCreate(_Request):
    """A new tenant: one enterprise, one basic contract."""

    name: TenantName
    contract_holder_name: HolderName
    """Legal name of the contract holder; every mobile line of the tenant carries it."""
    address: PostalAddress = ""
    basic_contract: BasicContract = ""
    sip_domain: SipDomain
    """Host part of the tenant's SIP URIs (and the digest realm of its phones)."""
    announcement_language: AnnouncementLanguage = AnnouncementLanguage.JA
    """The language of the refusal announcements and voicemail greeting of the tenant's
    calls: `ja` (default) or `en`."""
    pstn_trunk: TrunkName | None = None
    """The carrier-wide `pstn` trunk the tenant's outbound calls leave on; null: the
    carrier-wide default."""
    mobile_trunk: TrunkName | None = None
    """The carrier-wide `mobile_network` trunk calls to the tenant's mobile extensions leave
    on; null: the carrier-wide default."""


class TenantUpdate(_Request):
    """Changes to a tenant (its name is its identifier and does not change)."""

    contract_holder_name: Annotated[HolderName | None, NotNull] = None
    address: Annotated[PostalAddress | None, NotNull] = None
    basic_contract: Annotated[BasicContract | None, NotNull] = None
    sip_domain: Annotated[SipDomain | None, NotNull] = None
    announcement_language: Annotated[AnnouncementLanguage | None, NotNull] = None
    """`ja` or `en`: the one field a tenant administrator may change here."""
    pstn_trunk: TrunkName | None = None
    """A carrier-wide `pstn` trunk's name; null: back to the carrier-wide default."""
    mobile_trunk: TrunkName | None = None
    """A carrier-wide `mobile_network` trunk's name; null: the carrier-wide default."""


TENANT_ADMIN_TENANT_FIELDS = frozenset({"announcement_language"})
"""The tenant settings a `tenant_admin` may change on their own tenant (the rest is the
operator's contract information)."""


class TenantPublic(BaseModel):
    name: str
    contract_holder_name: str
    address: str
    basic_contract: str
    sip_domain: str
    announcement_language: AnnouncementLanguage
    pstn_trunk: str | None = None
    mobile_trunk: str | None = None


class SiteCreate(_Request):
    name: SiteName


class SitePublic(BaseModel):
    tenant: str
    name: str


# --- mobile lines ----------------------------------------------------------------------


class MobileLineOptions(_Request):
    """A line's options: present `number_050` means the 050 option."""

    number_050: Number050 | None = None
    """The line's 050 number (050 outbound, caller ID = this number); null: no 050 option."""
    gateway: bool = False
    """External calls leave through the tenant's external-line gateway."""
    roaming: bool = False
    """Extension calls still reach the line abroad."""


class MobileLineOptionsUpdate(_Request):
    number_050: Number050 | None = None
    gateway: Annotated[bool | None, NotNull] = None
    roaming: Annotated[bool | None, NotNull] = None


class MobileLineCreate(_Request):
    msisdn: Msisdn
    """The A number: `09012340001` or `+819012340001` (stored in E.164)."""
    contract_holder_name: HolderName
    """Must be the tenant's contract holder (the same-name rule)."""
    b_number: Msisdn | None = None
    """The 2in1 B number; null without the 2in1 option."""
    options: MobileLineOptions = MobileLineOptions()
    abroad: bool = False


class MobileLineUpdate(_Request):
    contract_holder_name: Annotated[HolderName | None, NotNull] = None
    b_number: Msisdn | None = None
    options: Annotated[MobileLineOptionsUpdate | None, NotNull] = None
    abroad: Annotated[bool | None, NotNull] = None


class MobileLineOptionsPublic(BaseModel):
    number_050: str | None
    gateway: bool
    roaming: bool


class MobileLinePublic(BaseModel):
    tenant: str
    msisdn: str
    contract_holder_name: str
    b_number: str | None
    options: MobileLineOptionsPublic
    abroad: bool


# --- extensions ------------------------------------------------------------------------


USER_EXTENSION_FIELDS = frozenset(
    {"display_name", "no_answer_timeout_seconds", "voicemail_enabled"}
)
"""The settings a `user` may change on their own extension."""


class ExtensionCreate(_Request):
    """A new extension; which fields apply depends on `kind` (others are refused, 422).

    - `fixed_ip_phone`: `sip_password` (to register) or `static_contact_uri`;
      `digest_algorithms` (needs `sip_password`), `voicemail_enabled`.
    - `mobile`: `mobile_line` (an MSISDN of the tenant) and `mobile_identity` (`a`, or `b`
      for the line's 2in1 B number).
    - `customer_pbx`: `range_last` (the range `number`..`range_last`) and `trunk` (a
      customer PBX trunk of the tenant).
    """

    number: ExtensionNumber
    kind: ExtensionKind = ExtensionKind.FIXED_IP_PHONE
    site: SiteName
    display_name: DisplayName = ""
    sip_password: SipPassword | None = None
    """Stored as HA1 digests only (username = the number, realm = the tenant's SIP domain)."""
    digest_algorithms: Algorithms | None = None
    no_answer_timeout_seconds: NoAnswerTimeout = 30
    static_contact_uri: ContactUri | None = None
    voicemail_enabled: bool = False
    mobile_line: Msisdn | None = None
    mobile_identity: MobileIdentity | None = None
    trunk: TrunkName | None = None
    range_last: ExtensionNumber | None = None


class ExtensionUpdate(_Request):
    """Changes to an extension (its number and kind do not change). A `user` may send
    only `display_name`, `no_answer_timeout_seconds` and `voicemail_enabled`."""

    site: Annotated[SiteName | None, NotNull] = None
    display_name: Annotated[DisplayName | None, NotNull] = None
    sip_password: SipPassword | None = None
    """A new password; null removes the credential (the phone can no longer register)."""
    digest_algorithms: Algorithms | None = None
    no_answer_timeout_seconds: Annotated[NoAnswerTimeout | None, NotNull] = None
    static_contact_uri: ContactUri | None = None
    voicemail_enabled: Annotated[bool | None, NotNull] = None
    mobile_line: Annotated[Msisdn | None, NotNull] = None
    mobile_identity: Annotated[MobileIdentity | None, NotNull] = None
    trunk: Annotated[TrunkName | None, NotNull] = None
    range_last: Annotated[ExtensionNumber | None, NotNull] = None


class MobileMapping(_Request):
    """`PUT .../extensions/{number}/mobile-line`: which mobile number the extension is."""

    msisdn: Msisdn
    identity: MobileIdentity = MobileIdentity.A


class ExtensionPublic(BaseModel):
    """An extension as the API shows it: the SIP username and realm, never a secret."""

    tenant: str
    number: str
    kind: ExtensionKind
    site: str
    display_name: str
    sip_username: str | None
    """Null: no SIP password (the extension does not register)."""
    sip_realm: str | None
    digest_algorithms: list[DigestAlgorithm] | None
    no_answer_timeout_seconds: int
    static_contact_uri: str | None
    voicemail_enabled: bool
    mobile_line: str | None
    mobile_identity: MobileIdentity | None
    trunk: str | None
    range_last: str | None


# --- trunks ----------------------------------------------------------------------------


class TrunkCreate(_Request):
    """A SIP peer. `tenant` is required for `customer_pbx` and `external_gateway`, refused
    for the carrier-wide `mobile_network` and `pstn`. Digest authentication needs all of
    `auth_username`, `auth_password` and `auth_realm` (stored as HA1 digests only)."""

    name: TrunkName
    kind: TrunkKind
    tenant: TenantName | None = None
    host: IpAddress
    port: Port = 5060
    transport: Transport = Transport.UDP
    trusted_sources: list[TrustedSource] = []
    """Source addresses trusted as this trunk: `ADDRESS`, `IPv4:PORT` or `[IPv6]:PORT`."""
    capacity: Capacity | None = None
    """Concurrent calls the peer takes; null: no limit."""
    auth_username: AuthUsername | None = None
    auth_password: SipPassword | None = None
    auth_realm: AuthRealm | None = None
    caller_area_header: HeaderName | None = None
    """The header in which the trunk asserts the caller's charging area; null: none."""
    abroad_header: HeaderName | None = None
    """The header whose presence on the trunk's INVITE says the calling mobile line is
    abroad (a `mobile_network` trunk); null: none."""
    identity_trusted: bool | None = None
    """The peer is in our trust domain for the identities we send it (RFC 3325 §2): a
    withheld call gets P-Asserted-Identity with `Privacy: id` (true) or none (false);
    null: by kind (`pstn` and `mobile_network` trusted)."""


class TrunkUpdate(_Request):
    """Changes to a trunk (its name does not change). Changing `auth_username` or
    `auth_realm` needs `auth_password` too (the HA1 covers all three); `auth_username`
    null removes digest authentication."""

    kind: Annotated[TrunkKind | None, NotNull] = None
    tenant: TenantName | None = None
    host: Annotated[IpAddress | None, NotNull] = None
    port: Annotated[Port | None, NotNull] = None
    transport: Annotated[Transport | None, NotNull] = None
    trusted_sources: Annotated[list[TrustedSource] | None, NotNull] = None
    capacity: Capacity | None = None
    auth_username: AuthUsername | None = None
    auth_password: SipPassword | None = None
    auth_realm: AuthRealm | None = None
    caller_area_header: HeaderName | None = None
    abroad_header: HeaderName | None = None
    identity_trusted: bool | None = None


class TrunkPublic(BaseModel):
    """A trunk as the API shows it: never its HA1s."""

    name: str
    kind: TrunkKind
    tenant: str | None
    host: str
    port: int
    transport: Transport
    trusted_sources: list[str]
    capacity: int | None
    auth_username: str | None
    auth_realm: str | None
    caller_area_header: str | None = None
    abroad_header: str | None = None
    identity_trusted: bool | None = None
