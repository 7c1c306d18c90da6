"""Provisioning from a YAML file: tenants with their sites, mobile lines and extensions,
trunks, toll-free numbers, and the Customer Control accounts.

Rules:
- The file is validated whole before anything is written: shape and types by the pydantic
  models below, then the rules across entries (`_cross_check`), which are the product's
  rules in `cloudpbx.rules` (shared with the Customer Control API, so a value one accepts
  the other accepts too). Any problem refuses the whole file with `ProvisioningError`,
  which names the file and, for each problem, the key path
  (`tollfree_numbers[0].destination_sets.default[1].weight`) and the reason. Nothing is
  written then.
- Writing is one transaction: `provision` commits once on success and rolls back on any
  error, including a conflict with rows already in the store.
- Provisioning is idempotent: entries are matched by their natural keys (tenant name, site
  name within the tenant, mobile line MSISDN, extension number within the tenant, trunk
  name, toll-free number, destination set and schedule name within the number) and only
  the attributes that differ are written, so a second run with the same file changes
  nothing. Entries the file does not mention are left alone: the file adds and updates, it
  never deletes (the Customer Control API writes the same store).
- Lists inside an entry are part of its value: the file's list replaces the stored one
  (a trunk's trusted sources; a toll-free number's destination sets and their
  destinations, schedules and their ranges, designated areas and granted accounts).
- References name entries of the same file: a trunk's `tenant`, an account's `tenant` and
  `extension`, a mobile extension's `mobile_line` (by MSISDN, a line of its tenant), a
  customer-PBX range's `trunk` (a `customer_pbx` trunk of its tenant), a toll-free
  number's `tenant`, its destinations' `trunk` and its granted `accounts`.
- Tenants: `address` and `basic_contract` are contract information;
  `announcement_language` (`ja` or `en`) is the language of the recordings the tenant's
  cloud PBX calls play. It is a customer setting the Customer Control API changes too,
  so a file that leaves it out keeps the stored value (`ja` for a new tenant).
  `pstn_trunk` and `mobile_trunk` name the carrier-wide `pstn` / `mobile_network` trunk
  (a trunk of this file, of that kind, without `tenant`) the tenant's outbound calls leave
  on; they are the operator's, like the contract information, so leaving one out sets the
  carrier-wide default. A trunk a stored tenant (one the file leaves out) names cannot
  change kind or get a tenant. Mobile lines
  (`mobile_lines:`) are stored in E.164 (`cloudpbx.rules.normalize_msisdn`); a line's
  contract holder defaults to the tenant's and a different holder is refused (the
  same-name rule, `cloudpbx.rules.same_contract_holder`). `option_050` needs its
  `number_050` (and the number needs the option). A line's `abroad` state is not in the
  file: the mobile trunk or an operator sets it.
- Extensions by kind: a `fixed_ip_phone` registers (a password) or has a static contact,
  and may have `voicemail`; a `mobile` extension names a line and `identity: a|b` (B needs
  the line's 2in1 `b_number`; a line's A and B are each one extension at most); a
  `customer_pbx` extension is the range `number` .. `range_last` (same length, the last not
  below the first; a single number when `range_last` is left out) behind `trunk`. Only a
  fixed IP phone has SIP credentials, a static contact or voicemail. A tenant's ranges and
  single numbers must not overlap, in the file and with the tenant's stored extensions.
- Plain passwords exist only in the file and in memory: the store gets HA1 digests for
  MD5 and SHA-256 (`cloudpbx.domain.compute_ha1`). For an extension, realm = the tenant's
  SIP domain and username = the extension number unless `username` is given. A trunk's
  digest credential (`username` and `password` together) uses `realm`, by default its
  tenant's SIP domain (a carrier-wide trunk must name one). Error messages never repeat
  input values that could be passwords.
- Trunks of kind `customer_pbx` and `external_gateway` belong to a tenant. A trunk's
  `caller_area_header` and `abroad_header` (issue 6; e.g. `P-Visited-Network-ID` on the
  mobile trunk) are SIP header names: RFC 3261 §25.1 tokens (`cloudpbx.rules.check_header_name`).
  `identity_trusted` (true/false; left out: by kind) says whether the peer is in our trust
  domain for the identities we send it (`softswitch.b2bua.pbx_routing` rule 7).
- Toll-free numbers are stored in national form (`cloudpbx.rules.normalize_tollfree_number`),
  destination numbers too. The channel setting (default: the contracted channels) is at
  most the contract. A destination set named `default` is required; each set follows
  `cloudpbx.rules.destination_set_problems` (1 to 5 destinations, weights 0-9 or 0-32 for
  the office type). A `destination_change` schedule names another set of the number, an
  `after_hours` one names none. Schedule ranges are `weekday` (0 = Monday, or `mon` ...
  `sun`), `date` or `holiday: true`, with quoted `start` / `end` times (`"18:00"`; YAML
  reads an unquoted 18:00 as the number 1080); overlaps are refused by
  `cloudpbx.rules.schedule_overlaps`, disabled schedules included (enabling one later must
  not make the configuration ambiguous). Granted `accounts` are login names of accounts in
  the file, of the number's tenant, with role `user` or `tollfree_viewer`, at most 50.
- Numbers must be YAML strings (`"1001"`): YAML reads an unquoted `0120` as the octal
  number 80, so numbers as integers are refused rather than guessed.
- Accounts (`accounts:`) are matched by login name. An account's `tenant` must name a
  tenant in the same file (none for an operator), a `user` must name an `extension` of
  that tenant (no other role may), and the login name must fit its role and tenant
  (`cloudpbx.domain.account_login_problem`). Passwords must meet the policy's strength
  rules (length, character classes; `cloudpbx.domain.password_policy_violations`) and are
  stored as argon2id hashes only. A hash is salted, so a re-run does not rehash: the file's
  password is verified against the stored hash and only a mismatch writes a new hash
  (and revokes the account's API tokens, as a password change through the API does).
- Audit (issue 4: who, when, what, before and after): every entry the file creates or
  changes writes one `audit_log` row in the same transaction, and an unchanged entry
  writes nothing, so a second run of the same file writes no row. Actor
  `PROVISIONING_ACTOR` (`(provisioning)`: the operator who runs a file is outside the
  API's accounts), `at` the run's one clock reading, `tenant_id` the entry's tenant
  (null for an operator account or a carrier-wide trunk), `before` null when created.
  Actions, targets and views are the API's (`cloudpbx.audit_views`, shared with
  `custcon_api`, and `Account.audit_view`): `tenant.create|update` (the tenant's name),
  `site.create` (`TENANT/SITE`; a file never changes a site), `mobile_line.create|update`
  (the MSISDN), `extension.create|update` (`TENANT/NUMBER`), `trunk.create|update` (the
  name), `account.create|update` (the login name), `tollfree.create|update` (the
  number). A toll-free number is one entry: its destination sets, schedules, designated
  areas and grants are part of its value (the file replaces them whole), so one row
  with the whole number's view (`tollfree_number_view`, as the API's `tollfree.create`)
  records them; `tollfree.update` is provisioning's, where the API writes one row per
  part it changes (`tollfree.contract`, `tollfree.schedule.update`, ...).
- Views never hold a password or HA1, so a change of a password (or of a value no view
  shows, such as a toll-free number's out-of-area announcement) writes an update row
  whose `before` and `after` are equal: the row still says who changed the entry, when.
- The rows are added after every entry is applied (one flush first): a new tenant then
  has its id, and each `after` view is the run's final state; rows are in the order
  the entries were applied (tenants with their sites and lines, trunks, extensions,
  accounts, toll-free numbers).
"""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
)
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cloudpbx.audit_views import (
    extension_view,
    mobile_line_view,
    site_view,
    tenant_view,
    tollfree_number_view,
    trunk_view,
)
from cloudpbx.domain import (
    MAX_ACCOUNTS_PER_TOLLFREE_NUMBER,
    MAX_PASSWORD_LENGTH,
    TENANT_CARRIER_TRUNK_SETTINGS,
    AccountRole,
    AnnouncementLanguage,
    AreaKind,
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
    Transport,
    TrunkKind,
    account_login_problem,
    compute_ha1,
    hash_account_password,
    password_policy_violations,
    verify_account_password,
)
from cloudpbx.models import (
    Account,
    ApiToken,
    AuditLog,
    Extension,
    MobileLine,
    SipCredential,
    Site,
    Tenant,
    TollFreeAccountGrant,
    TollFreeDesignatedArea,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    TollFreeScheduleRange,
    Trunk,
    TrunkSourceAddress,
)
from cloudpbx.rules import (
    TOLLFREE_OPTIONS,
    ScheduleRangeValue,
    area_code_problem,
    channel_setting_problem,
    check_header_name,
    destination_set_problems,
    normalize_050_number,
    normalize_ip_address,
    normalize_msisdn,
    normalize_national_number,
    normalize_sip_domain,
    normalize_tollfree_number,
    parse_source_address,
    parse_time_of_day,
    same_contract_holder,
    schedule_overlaps,
)
from cloudpbx.snapshot import TrunkSource

__all__ = [
    "ChangeCounts",
    "PROVISIONING_ACTOR",
    "ProvisioningError",
    "ProvisioningIssue",
    "ProvisioningResult",
    "load_provisioning_file",
    "provision",
]

# --- the file's shape ------------------------------------------------------------------

def _parse_source(value: object) -> TrunkSource:
    """A trusted source (`cloudpbx.rules.parse_source_address`)."""
    if not isinstance(value, str):
        raise ValueError("must be a string: an IP address with an optional :port")
    address, port = parse_source_address(value)
    return TrunkSource(address=address, port=port)


def _check_algorithms(algorithms: list[DigestAlgorithm] | None) -> list[DigestAlgorithm] | None:
    if algorithms is not None and len(set(algorithms)) != len(algorithms):
        raise ValueError("lists an algorithm twice")
    return algorithms


def _check_account_password(password: str) -> str:
    violations = password_policy_violations(password)
    if violations:
        raise ValueError("; ".join(violation.message for violation in violations))
    return password


def _time_of_day(*, end: bool) -> Callable[[object], int]:
    """A validator of `HH:MM` giving minutes since midnight (24:00 only as an end)."""

    def validate(value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080.
            raise ValueError(
                'must be a quoted time of day such as "18:00" (YAML reads an'
                " unquoted 18:00 as the number 1080)"
            )
        if not isinstance(value, str):
            raise ValueError('must be a time of day such as "18:00"')
        return parse_time_of_day(value, end=end)

    return validate


_WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekday(value: object) -> int:
    """0 = Monday ... 6 = Sunday, from that number or from `mon` ... `sun`."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str) and value.strip().lower() in _WEEKDAY_NAMES:
        return _WEEKDAY_NAMES.index(value.strip().lower())
    raise ValueError("must be 0 (Monday) to 6 (Sunday) or mon, tue, wed, thu, fri, sat, sun")


def _calendar_date(value: object) -> datetime.date:
    """A date as YAML reads an unquoted 2026-12-31, or that text quoted."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("must be a date such as 2026-12-31")


Text = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[
    str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]
ExtensionNumber = Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9]{1,32}$")]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
StrictBool = Annotated[bool, Strict()]
HolderName = Annotated[
    str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=256)
]
MobileNumber = Annotated[str, Strict(), AfterValidator(normalize_msisdn)]
Number050 = Annotated[str, Strict(), AfterValidator(normalize_050_number)]
NationalNumber = Annotated[str, Strict(), AfterValidator(normalize_national_number)]
TollFreeNumberText = Annotated[str, Strict(), AfterValidator(normalize_tollfree_number)]
AnnouncementName = Annotated[
    # A file name under configs/: no path separators, so it cannot leave the directory.
    str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")
]
AreaCode = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, max_length=8)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSpec(_Spec):
    """A site (拠点) of a tenant."""

    name: Annotated[
        str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=128)
    ]


class MobileLineSpec(_Spec):
    """A mobile line of a tenant and its options."""

    msisdn: MobileNumber
    contract_holder_name: HolderName | None = None
    """None: the tenant's."""
    b_number: MobileNumber | None = None
    """The 2in1 B number."""
    option_050: StrictBool = False
    number_050: Number050 | None = None
    option_gateway: StrictBool = False
    option_roaming: StrictBool = False


class ExtensionSpec(_Spec):
    """An extension, at one of its tenant's sites."""

    number: ExtensionNumber
    site: Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
    kind: ExtensionKind = ExtensionKind.FIXED_IP_PHONE
    display_name: Annotated[str, Strict(), StringConstraints(max_length=128)] = ""
    username: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)] | None = (
        None
    )
    password: Annotated[str, Strict(), StringConstraints(min_length=1)] | None = None
    digest_algorithms: Annotated[
        list[DigestAlgorithm] | None, Field(min_length=1), AfterValidator(_check_algorithms)
    ] = None
    no_answer_timeout_seconds: Annotated[int, Strict(), Field(ge=1, le=3600)] = 30
    static_contact_uri: (
        Annotated[str, Strict(), StringConstraints(pattern=r"^sips?:\S+$", max_length=1024)] | None
    ) = None
    voicemail: StrictBool = False
    """The voicemail option (fixed IP phones only)."""
    mobile_line: MobileNumber | None = None
    """The line's MSISDN (mobile only)."""
    identity: MobileIdentity | None = None
    """Which number of the line: `a` (the default) or the 2in1 `b` (mobile only)."""
    range_last: ExtensionNumber | None = None
    """The last number of the range (customer_pbx only; default: `number`)."""
    trunk: Name | None = None
    """The customer PBX's trunk (customer_pbx only)."""

    @property
    def last(self) -> str:
        """The last number this extension covers (`number` unless a range)."""
        return self.range_last if self.range_last is not None else self.number


class TenantSpec(_Spec):
    """A tenant: one basic contract."""

    name: Name
    contract_holder_name: HolderName
    sip_domain: Annotated[str, Strict(), AfterValidator(normalize_sip_domain)]
    address: Annotated[str, Strict(), StringConstraints(strip_whitespace=True)] = ""
    basic_contract: Annotated[
        str, Strict(), StringConstraints(strip_whitespace=True, max_length=64)
    ] = ""
    announcement_language: AnnouncementLanguage | None = None
    """`ja` or `en`; None: as stored (`ja` for a new tenant), a customer setting."""
    pstn_trunk: Name | None = None
    """The carrier-wide `pstn` trunk of the tenant's outbound calls; None: the default."""
    mobile_trunk: Name | None = None
    """The carrier-wide `mobile_network` trunk of calls to its mobile extensions; None:
    the default."""
    sites: list[SiteSpec] = []
    mobile_lines: list[MobileLineSpec] = []
    extensions: list[ExtensionSpec] = []


class TrunkSpec(_Spec):
    """A SIP peer, how it is recognised, and how many calls it takes."""

    name: Name
    kind: TrunkKind = TrunkKind.PSTN
    tenant: Name | None = None
    host: Annotated[str, Strict(), AfterValidator(normalize_ip_address)]
    port: Port = 5060
    transport: Transport = Transport.UDP
    capacity: Annotated[int, Strict(), Field(ge=0)] | None = None
    """Concurrent calls; None: no limit."""
    trusted_sources: list[Annotated[TrunkSource, PlainValidator(_parse_source)]] = []
    username: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)] | None = (
        None
    )
    password: Annotated[str, Strict(), StringConstraints(min_length=1)] | None = None
    realm: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)] | None = None
    caller_area_header: Annotated[str, Strict(), AfterValidator(check_header_name)] | None = None
    """The header in which the trunk asserts the caller's charging area (issue 5)."""
    abroad_header: Annotated[str, Strict(), AfterValidator(check_header_name)] | None = None
    """The header whose presence says the calling mobile line is abroad (issue 6)."""
    identity_trusted: StrictBool | None = None
    """In our trust domain for the identities we send (RFC 3325 §2); None: by kind."""


class AccountSpec(_Spec):
    """A Customer Control account (an API login, not a SIP device)."""

    login: Annotated[str, Strict(), StringConstraints(min_length=1)]
    role: AccountRole
    tenant: Name | None = None
    extension: ExtensionNumber | None = None
    password: Annotated[
        str,
        Strict(),
        StringConstraints(max_length=MAX_PASSWORD_LENGTH),
        AfterValidator(_check_account_password),
    ]
    disabled: StrictBool = False


class DestinationSpec(_Spec):
    """A destination of a toll-free number: where, how often, through which trunk."""

    number: NationalNumber
    weight: Annotated[int, Strict()]
    trunk: Name


class ScheduleRangeSpec(_Spec):
    """Days (one of `weekday`, `date`, `holiday`) and a time range [start, end)."""

    weekday: Annotated[int, PlainValidator(_weekday)] | None = None
    date: Annotated[datetime.date, PlainValidator(_calendar_date)] | None = None
    holiday: StrictBool = False
    start: Annotated[int, PlainValidator(_time_of_day(end=False))]
    end: Annotated[int, PlainValidator(_time_of_day(end=True))]

    @property
    def kind(self) -> ScheduleRangeKind | None:
        """The kind its days give, or None when they name no kind or several."""
        kinds = [
            kind
            for kind, given in (
                (ScheduleRangeKind.WEEKLY, self.weekday is not None),
                (ScheduleRangeKind.DATE, self.date is not None),
                (ScheduleRangeKind.HOLIDAY, self.holiday),
            )
            if given
        ]
        return kinds[0] if len(kinds) == 1 else None


class ScheduleSpec(_Spec):
    """A named schedule of a toll-free number."""

    name: Name
    action: ScheduleAction
    destination_set: Name | None = None
    """The set calls go to, for `destination_change`."""
    enabled: StrictBool = True
    ranges: list[ScheduleRangeSpec] = []


class DesignatedAreasSpec(_Spec):
    """Originating-area designation (発信地域指定)."""

    whole_country: StrictBool = True
    prefectures: list[AreaCode] = []
    area_codes: list[AreaCode] = []
    allow_fixed: StrictBool = True
    allow_mobile: StrictBool = True
    allow_withheld: StrictBool = True
    refusal_action: RefusalAction = RefusalAction.ANNOUNCEMENT


class AnnouncementsSpec(_Spec):
    """The recordings the switch plays for a toll-free number."""

    after_hours: AnnouncementName = "after_hours_ja"
    out_of_area: AnnouncementName = "out_of_area_ja"


class TollFreeSpec(_Spec):
    """A toll-free number contract and its customer settings."""

    number: TollFreeNumberText
    tenant: Name
    service_type: TollFreeServiceType = TollFreeServiceType.STANDARD
    contracted_channels: Annotated[int, Strict(), Field(ge=1)]
    channel_setting: Annotated[int, Strict()] | None = None
    """None: the contracted channels."""
    strict_distribution: StrictBool = False
    no_answer_timeout_seconds: Annotated[int, Strict(), Field(ge=5, le=300)] = 30
    """Seconds the destinations ring in all before the caller gets 480."""
    announcements: AnnouncementsSpec = AnnouncementsSpec()
    options: list[Annotated[str, Strict()]] = []
    designated_areas: DesignatedAreasSpec = DesignatedAreasSpec()
    destination_sets: dict[Name, list[DestinationSpec]]
    schedules: list[ScheduleSpec] = []
    accounts: list[Annotated[str, Strict(), StringConstraints(min_length=1)]] = []
    """Login names of the accounts granted the number."""

    @property
    def effective_channel_setting(self) -> int:
        """The channel setting, the contract when the file leaves it out."""
        if self.channel_setting is None:
            return self.contracted_channels
        return self.channel_setting


class ProvisioningFile(_Spec):
    """The whole file."""

    tenants: list[TenantSpec] = []
    trunks: list[TrunkSpec] = []
    accounts: list[AccountSpec] = []
    tollfree_numbers: list[TollFreeSpec] = []


# --- errors ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvisioningIssue:
    """One problem in a provisioning file."""

    key_path: str
    """Where: `tenants[0].extensions[3].number`, or `line 4, column 7` for YAML syntax."""
    reason: str


class ProvisioningError(Exception):
    """A provisioning file was refused whole; nothing was written."""

    def __init__(self, path: Path | str, issues: Sequence[ProvisioningIssue]) -> None:
        self.path = Path(path)
        self.issues = tuple(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {issue.key_path}: {issue.reason}" for issue in self.issues)


def _key_path(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _issues_from_validation(error: ValidationError) -> list[ProvisioningIssue]:
    issues = []
    for detail in error.errors(include_url=False, include_input=True):
        reason = str(detail["msg"]).removeprefix("Value error, ")
        if detail["type"] == "string_type" and isinstance(detail.get("input"), int):
            reason += " (quote it: YAML reads 0120 as the number 80)"
        issues.append(ProvisioningIssue(_key_path(detail["loc"]), reason))
    return issues


# --- reading ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Issues:
    """The problems found so far, in the order found."""

    def __init__(self) -> None:
        self.found: list[ProvisioningIssue] = []

    def add(self, key_path: str, reason: str) -> None:
        self.found.append(ProvisioningIssue(key_path, reason))

    def first_seen(self, seen: dict[Any, str], key: object, path: str, what: str) -> bool:
        """Record `key` at `path`; a key seen before is a duplicate (False)."""
        if key in seen:
            self.add(path, f"duplicate {what} (also at {seen[key]})")
            return False
        seen[key] = path
        return True


@dataclass(frozen=True, slots=True)
class _NumberSpan:
    """The numbers an extension covers, for the overlap rule."""

    first: str
    last: str
    key_path: str

    def describe(self) -> str:
        return self.first if self.first == self.last else f"{self.first}-{self.last}"


def _span_overlaps(spans: Iterable[_NumberSpan]) -> list[tuple[_NumberSpan, _NumberSpan]]:
    """(earlier, later) pairs of spans sharing a number; equal first numbers excluded.

    Numbers compare as text of equal length (a range's ends have one length), which is
    their numeric order; a sweep keeps the span reaching furthest so far, so n spans cost
    n log n, not n².
    """
    ordered = sorted(spans, key=lambda span: (len(span.first), span.first, span.last))
    found: list[tuple[_NumberSpan, _NumberSpan]] = []
    reaching: _NumberSpan | None = None
    for span in ordered:
        if reaching is not None and len(reaching.first) == len(span.first):
            # Equal first numbers are a duplicate number, reported as such elsewhere.
            if span.first <= reaching.last and span.first != reaching.first:
                found.append((reaching, span))
            if span.last > reaching.last:
                reaching = span
        else:
            reaching = span
    return found




def _check_tenant(
    tenant: TenantSpec,
    prefix: str,
    trunks: dict[str, TrunkSpec],
    msisdns: dict[Any, str],
    numbers_050: dict[Any, str],
    issues: _Issues,
) -> None:
    site_names: dict[Any, str] = {}
    for site_index, site in enumerate(tenant.sites):
        issues.first_seen(site_names, site.name, f"{prefix}.sites[{site_index}].name", "site name")

    lines: dict[str, MobileLineSpec] = {}
    for line_index, line in enumerate(tenant.mobile_lines):
        path = f"{prefix}.mobile_lines[{line_index}]"
        # A and B numbers share one name space: a call to either must find one line.
        if issues.first_seen(msisdns, line.msisdn, f"{path}.msisdn", "mobile number"):
            lines[line.msisdn] = line
        if line.b_number is not None:
            issues.first_seen(msisdns, line.b_number, f"{path}.b_number", "mobile number")
        if line.contract_holder_name is not None and not same_contract_holder(
            line.contract_holder_name, tenant.contract_holder_name
        ):
            issues.add(
                f"{path}.contract_holder_name",
                "must be the tenant's contract holder: all mobile lines of a tenant are"
                " under one holder (same-name rule)",
            )
        if line.option_050 and line.number_050 is None:
            issues.add(f"{path}.number_050", "is required with option_050")
        elif line.number_050 is not None:
            if not line.option_050:
                issues.add(f"{path}.option_050", "must be true when number_050 is given")
            issues.first_seen(numbers_050, line.number_050, f"{path}.number_050", "050 number")

    for key, wanted in TENANT_CARRIER_TRUNK_SETTINGS.items():
        name = getattr(tenant, key)
        if name is None:
            continue
        named = trunks.get(name)
        if named is None:
            issues.add(f"{prefix}.{key}", "names no trunk in this file")
        elif named.kind is not wanted or named.tenant is not None:
            issues.add(f"{prefix}.{key}", f"must name a carrier-wide {wanted.value} trunk")

    numbers: dict[Any, str] = {}
    usernames: dict[Any, str] = {}
    line_identities: dict[Any, str] = {}
    spans: list[_NumberSpan] = []
    for extension_index, extension in enumerate(tenant.extensions):
        path = f"{prefix}.extensions[{extension_index}]"
        unique = issues.first_seen(numbers, extension.number, f"{path}.number", "extension number")
        if extension.site not in site_names:
            issues.add(f"{path}.site", "names no site of this tenant")
        kind = extension.kind
        for key, given, owner in (
            ("password", extension.password is not None, ExtensionKind.FIXED_IP_PHONE),
            ("username", extension.username is not None, ExtensionKind.FIXED_IP_PHONE),
            (
                "digest_algorithms",
                extension.digest_algorithms is not None,
                ExtensionKind.FIXED_IP_PHONE,
            ),
            (
                "static_contact_uri",
                extension.static_contact_uri is not None,
                ExtensionKind.FIXED_IP_PHONE,
            ),
            ("voicemail", extension.voicemail, ExtensionKind.FIXED_IP_PHONE),
            ("mobile_line", extension.mobile_line is not None, ExtensionKind.MOBILE),
            ("identity", extension.identity is not None, ExtensionKind.MOBILE),
            ("range_last", extension.range_last is not None, ExtensionKind.CUSTOMER_PBX),
            ("trunk", extension.trunk is not None, ExtensionKind.CUSTOMER_PBX),
        ):
            if given and kind is not owner:
                issues.add(f"{path}.{key}", f"is only for a {owner.value} extension")
        if kind is ExtensionKind.FIXED_IP_PHONE:
            if extension.password is not None:
                username = extension.username or extension.number
                key_path = f"{path}.username" if extension.username else f"{path}.number"
                if unique:
                    issues.first_seen(usernames, username, key_path, "SIP username")
            elif extension.username is not None or extension.digest_algorithms is not None:
                issues.add(f"{path}.password", "is required with username or digest_algorithms")
            if extension.password is None and extension.static_contact_uri is None:
                issues.add(path, "needs a password (to register) or a static_contact_uri")
        elif kind is ExtensionKind.MOBILE:
            identity = extension.identity or MobileIdentity.A
            if extension.mobile_line is None:
                issues.add(f"{path}.mobile_line", "is required for a mobile extension")
            elif extension.mobile_line not in lines:
                issues.add(f"{path}.mobile_line", "names no mobile line (MSISDN) of this tenant")
            else:
                if identity is MobileIdentity.B and lines[extension.mobile_line].b_number is None:
                    issues.add(f"{path}.identity", "b needs the line's 2in1 b_number")
                issues.first_seen(
                    line_identities,
                    (extension.mobile_line, identity),
                    f"{path}.identity",
                    "extension for this number of the line",
                )
        else:
            if len(extension.last) != len(extension.number):
                issues.add(f"{path}.range_last", "must have as many digits as number")
            elif extension.last < extension.number:
                issues.add(f"{path}.range_last", "must not be below number")
            trunk = None if extension.trunk is None else trunks.get(extension.trunk)
            if extension.trunk is None:
                issues.add(f"{path}.trunk", "is required for a customer_pbx extension")
            elif trunk is None:
                issues.add(f"{path}.trunk", "names no trunk in this file")
            elif trunk.kind is not TrunkKind.CUSTOMER_PBX or trunk.tenant != tenant.name:
                issues.add(f"{path}.trunk", "must name a customer_pbx trunk of this tenant")
        if len(extension.last) == len(extension.number):
            spans.append(_NumberSpan(extension.number, extension.last, f"{path}.number"))
    for earlier, later in _span_overlaps(spans):
        issues.add(
            later.key_path,
            f"{later.describe()} overlaps {earlier.describe()} (at {earlier.key_path})",
        )


def _check_trunks(
    document: ProvisioningFile, tenant_names: dict[Any, str], issues: _Issues
) -> dict[str, TrunkSpec]:
    trunk_names: dict[Any, str] = {}
    trunks: dict[str, TrunkSpec] = {}
    sources: dict[Any, str] = {}
    for trunk_index, trunk in enumerate(document.trunks):
        prefix = f"trunks[{trunk_index}]"
        if issues.first_seen(trunk_names, trunk.name, f"{prefix}.name", "trunk name"):
            trunks[trunk.name] = trunk
        if trunk.tenant is not None and trunk.tenant not in tenant_names:
            issues.add(f"{prefix}.tenant", "names no tenant in this file")
        if trunk.tenant is None and trunk.kind in (
            TrunkKind.CUSTOMER_PBX,
            TrunkKind.EXTERNAL_GATEWAY,
        ):
            issues.add(f"{prefix}.tenant", f"is required for a {trunk.kind.value} trunk")
        if (trunk.username is None) != (trunk.password is None):
            missing = "password" if trunk.password is None else "username"
            issues.add(f"{prefix}.{missing}", "username and password go together")
        if trunk.username is None and trunk.realm is not None:
            issues.add(f"{prefix}.realm", "is only for a trunk with username and password")
        if trunk.username is not None and trunk.realm is None and trunk.tenant is None:
            issues.add(f"{prefix}.realm", "is required for a trunk without a tenant")
        for source_index, source in enumerate(trunk.trusted_sources):
            issues.first_seen(
                sources,
                (source.address, source.port),
                f"{prefix}.trusted_sources[{source_index}]",
                "trusted source",
            )
    return trunks


def _check_accounts(
    document: ProvisioningFile, tenant_names: dict[Any, str], issues: _Issues
) -> None:
    tenant_extensions = {
        tenant.name: {extension.number for extension in tenant.extensions}
        for tenant in document.tenants
    }
    logins: dict[Any, str] = {}
    for account_index, account in enumerate(document.accounts):
        prefix = f"accounts[{account_index}]"
        issues.first_seen(logins, account.login, f"{prefix}.login", "login name")
        if account.role is AccountRole.OPERATOR:
            if account.tenant is not None:
                issues.add(f"{prefix}.tenant", "an operator belongs to no tenant")
        elif account.tenant is None:
            issues.add(f"{prefix}.tenant", f"is required for role {account.role}")
        elif account.tenant not in tenant_names:
            issues.add(f"{prefix}.tenant", "names no tenant in this file")
        login_problem = account_login_problem(
            account.login,
            account.role,
            None if account.role is AccountRole.OPERATOR else account.tenant,
        )
        if login_problem is not None and (
            account.role is AccountRole.OPERATOR or account.tenant is not None
        ):
            issues.add(f"{prefix}.login", login_problem)
        if account.role is AccountRole.USER:
            if account.extension is None:
                issues.add(f"{prefix}.extension", "is required for role user")
            elif account.extension not in tenant_extensions.get(account.tenant or "", set()):
                issues.add(f"{prefix}.extension", "names no extension of its tenant")
        elif account.extension is not None:
            issues.add(f"{prefix}.extension", "only a user account owns an extension")


_GRANTABLE_ROLES = (AccountRole.USER, AccountRole.TOLLFREE_VIEWER)


def _check_tollfree_number(
    number: TollFreeSpec,
    prefix: str,
    document: ProvisioningFile,
    tenant_names: dict[Any, str],
    trunks: dict[str, TrunkSpec],
    issues: _Issues,
) -> None:
    if number.tenant not in tenant_names:
        issues.add(f"{prefix}.tenant", "names no tenant in this file")
    problem = channel_setting_problem(number.effective_channel_setting, number.contracted_channels)
    if problem is not None:
        issues.add(f"{prefix}.channel_setting", problem)
    options: dict[Any, str] = {}
    for option_index, option in enumerate(number.options):
        path = f"{prefix}.options[{option_index}]"
        if option not in TOLLFREE_OPTIONS:
            issues.add(path, "must be one of " + ", ".join(sorted(TOLLFREE_OPTIONS)))
        issues.first_seen(options, option, path, "option")

    areas = number.designated_areas
    for key, kind, codes in (
        ("prefectures", AreaKind.PREFECTURE, areas.prefectures),
        ("area_codes", AreaKind.AREA_CODE, areas.area_codes),
    ):
        seen_codes: dict[Any, str] = {}
        for code_index, code in enumerate(codes):
            path = f"{prefix}.designated_areas.{key}[{code_index}]"
            code_problem = area_code_problem(kind, code)
            if code_problem is not None:
                issues.add(path, code_problem)
            issues.first_seen(seen_codes, code, path, "area")
    if not areas.whole_country and not areas.prefectures and not areas.area_codes:
        issues.add(
            f"{prefix}.designated_areas",
            "must name prefectures or area_codes when whole_country is false",
        )

    sets_path = f"{prefix}.destination_sets"
    if "default" not in number.destination_sets:
        issues.add(sets_path, "must have a set named default")
    for set_name, destinations in number.destination_sets.items():
        set_path = f"{sets_path}.{set_name}"
        for rule_problem in destination_set_problems(
            number.service_type,
            [(destination.number, destination.weight) for destination in destinations],
        ):
            # The rules name `destinations[i].weight`; in the file the list is the set.
            issues.add(
                set_path + rule_problem.field.removeprefix("destinations"), rule_problem.message
            )
        for destination_index, destination in enumerate(destinations):
            if destination.trunk not in trunks:
                issues.add(f"{set_path}[{destination_index}].trunk", "names no trunk in this file")

    schedule_names: dict[Any, str] = {}
    ranges: list[ScheduleRangeValue] = []
    range_paths: dict[int, str] = {}
    for schedule_index, schedule in enumerate(number.schedules):
        path = f"{prefix}.schedules[{schedule_index}]"
        issues.first_seen(schedule_names, schedule.name, f"{path}.name", "schedule name")
        if schedule.action is ScheduleAction.DESTINATION_CHANGE:
            if schedule.destination_set is None:
                issues.add(f"{path}.destination_set", "is required for destination_change")
            elif schedule.destination_set not in number.destination_sets:
                issues.add(f"{path}.destination_set", "names no destination set of this number")
        elif schedule.destination_set is not None:
            issues.add(f"{path}.destination_set", "is only for destination_change")
        for range_index, range_spec in enumerate(schedule.ranges):
            range_path = f"{path}.ranges[{range_index}]"
            range_kind = range_spec.kind
            if range_kind is None:
                issues.add(range_path, "must name exactly one of weekday, date, holiday: true")
                continue
            if range_spec.start >= range_spec.end:
                issues.add(f"{range_path}.end", "must be after start")
                continue
            value = ScheduleRangeValue(
                schedule=schedule.name,
                action=schedule.action,
                kind=range_kind,
                weekday=range_spec.weekday,
                day=range_spec.date,
                start_minute=range_spec.start,
                end_minute=range_spec.end,
            )
            ranges.append(value)
            range_paths[id(value)] = range_path
    for first, second in schedule_overlaps(ranges):
        issues.add(
            range_paths[id(second)],
            f"overlaps {first.describe()} (at {range_paths[id(first)]})",
        )

    accounts = {account.login: account for account in document.accounts}
    granted: dict[Any, str] = {}
    for login_index, login in enumerate(number.accounts):
        path = f"{prefix}.accounts[{login_index}]"
        issues.first_seen(granted, login, path, "account")
        account = accounts.get(login)
        if account is None:
            issues.add(path, "names no account in this file")
        elif account.tenant != number.tenant:
            issues.add(path, "must be an account of the number's tenant")
        elif account.role not in _GRANTABLE_ROLES:
            issues.add(path, "must be an account of role user or tollfree_viewer")
    if len(number.accounts) > MAX_ACCOUNTS_PER_TOLLFREE_NUMBER:
        issues.add(
            f"{prefix}.accounts",
            f"grants {len(number.accounts)} accounts; at most"
            f" {MAX_ACCOUNTS_PER_TOLLFREE_NUMBER} may be granted one number",
        )


def _cross_check(document: ProvisioningFile) -> list[ProvisioningIssue]:
    """The rules that span entries: uniqueness, references by name, the product rules."""
    issues = _Issues()
    tenant_names: dict[Any, str] = {}
    domains: dict[Any, str] = {}
    for tenant_index, tenant in enumerate(document.tenants):
        prefix = f"tenants[{tenant_index}]"
        issues.first_seen(tenant_names, tenant.name, f"{prefix}.name", "tenant name")
        issues.first_seen(domains, tenant.sip_domain, f"{prefix}.sip_domain", "SIP domain")
    # Trunk problems come after the tenants' in the list, as the file is read; the tenants'
    # checks need the trunks (a customer-PBX range names its trunk).
    trunk_issues = _Issues()
    trunks = _check_trunks(document, tenant_names, trunk_issues)
    msisdns: dict[Any, str] = {}
    numbers_050: dict[Any, str] = {}
    for tenant_index, tenant in enumerate(document.tenants):
        _check_tenant(tenant, f"tenants[{tenant_index}]", trunks, msisdns, numbers_050, issues)
    issues.found.extend(trunk_issues.found)
    _check_accounts(document, tenant_names, issues)
    tollfree_numbers: dict[Any, str] = {}
    for number_index, number in enumerate(document.tollfree_numbers):
        prefix = f"tollfree_numbers[{number_index}]"
        issues.first_seen(tollfree_numbers, number.number, f"{prefix}.number", "toll-free number")
        _check_tollfree_number(number, prefix, document, tenant_names, trunks, issues)
    return issues.found


def load_provisioning_file(path: Path | str) -> ProvisioningFile:
    """Read and validate a provisioning file without touching the store.

    Raises:
        ProvisioningError: unreadable, not YAML, or any rule broken; lists every problem
            found in that stage.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        issue = ProvisioningIssue("(file)", f"unreadable: {reason}")
        raise ProvisioningError(path, [issue]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        reason = error.problem or error.context or "not valid YAML"
        raise ProvisioningError(path, [ProvisioningIssue(where, reason)]) from None
    except yaml.YAMLError as error:
        raise ProvisioningError(path, [ProvisioningIssue("(file)", str(error))]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProvisioningError(
            path,
            [
                ProvisioningIssue(
                    "(top level)", "must be a mapping with tenants, trunks and accounts"
                )
            ],
        )
    try:
        document = ProvisioningFile.model_validate(data)
    except ValidationError as error:
        raise ProvisioningError(path, _issues_from_validation(error)) from None
    issues = _cross_check(document)
    if issues:
        raise ProvisioningError(path, issues)
    return document


# --- writing ---------------------------------------------------------------------------


@dataclass(slots=True)
class ChangeCounts:
    """What provisioning did to one kind of entry."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def count(self, created: bool, changed: bool) -> None:
        if created:
            self.created += 1
        elif changed:
            self.updated += 1
        else:
            self.unchanged += 1

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass(slots=True)
class ProvisioningResult:
    """Counts per kind of entry, for the command line and tests."""

    tenants: ChangeCounts = field(default_factory=ChangeCounts)
    sites: ChangeCounts = field(default_factory=ChangeCounts)
    mobile_lines: ChangeCounts = field(default_factory=ChangeCounts)
    extensions: ChangeCounts = field(default_factory=ChangeCounts)
    trunks: ChangeCounts = field(default_factory=ChangeCounts)
    accounts: ChangeCounts = field(default_factory=ChangeCounts)
    tollfree_numbers: ChangeCounts = field(default_factory=ChangeCounts)

    def _all(self) -> tuple[tuple[str, ChangeCounts], ...]:
        return (
            ("tenants", self.tenants),
            ("sites", self.sites),
            ("mobile lines", self.mobile_lines),
            ("extensions", self.extensions),
            ("trunks", self.trunks),
            ("accounts", self.accounts),
            ("toll-free numbers", self.tollfree_numbers),
        )

    @property
    def changed(self) -> bool:
        """True when anything was created or updated."""
        return any(counts.created or counts.updated for _name, counts in self._all())

    def __str__(self) -> str:
        return "; ".join(f"{name}: {counts}" for name, counts in self._all())


def _assign(row: object, values: dict[str, object]) -> bool:
    """Set the attributes that differ; True when any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _relate(row: object, name: str, value: object) -> bool:
    """Point the relationship `name` at `value` (by identity); True when it changed."""
    if getattr(row, name) is value:
        return False
    setattr(row, name, value)
    return True


def _ha1_values(username: str, realm: str, password: str) -> tuple[str, str]:
    return (
        compute_ha1(username, realm, password, DigestAlgorithm.MD5),
        compute_ha1(username, realm, password, DigestAlgorithm.SHA_256),
    )


def _apply_credential(extension: Extension, spec: ExtensionSpec, realm: str) -> bool:
    if spec.password is None:
        if extension.credential is None:
            return False
        extension.credential = None
        return True
    username = spec.username or spec.number
    ha1_md5, ha1_sha256 = _ha1_values(username, realm, spec.password)
    values: dict[str, object] = {
        "username": username,
        "realm": realm,
        "ha1_md5": ha1_md5,
        "ha1_sha256": ha1_sha256,
    }
    if extension.credential is None:
        extension.credential = SipCredential(**values)
        return True
    return _assign(extension.credential, values)


PROVISIONING_ACTOR = "(provisioning)"
"""The audit log's actor for rows written by a provisioning file (no login has brackets)."""


@dataclass(frozen=True, slots=True)
class _Change:
    """An entry the run created or changed, audited when the run's rows are flushed."""

    action: str
    target: str
    tenant: Tenant | None
    """The entry's tenant (its row may not have an id yet); None for carrier-wide ones."""
    before: dict[str, object] | None
    """The view before the run changed it; None when the run created it."""
    after: Callable[[], dict[str, object]]
    """The view, taken once every change of the run is applied."""


@dataclass(slots=True)
class _AuditTrail:
    """The audit rows of one run, in the order the entries were applied."""

    changes: list[_Change] = field(default_factory=list)

    def note(
        self,
        kind: str,
        *,
        created: bool,
        target: str,
        tenant: Tenant | None,
        before: dict[str, object] | None,
        after: Callable[[], dict[str, object]],
    ) -> None:
        """Record that an entry of `kind` (`tenant`, `tollfree`, ...) was created or changed."""
        action = f"{kind}.create" if created else f"{kind}.update"
        self.changes.append(_Change(action, target, tenant, None if created else before, after))

    def write(self, session: Session, now: float) -> None:
        """Add one `audit_log` row per change to `session` (the caller commits)."""
        if not self.changes:
            return
        # New tenants get their ids, and the views read the run's final state.
        session.flush()
        for change in self.changes:
            session.add(
                AuditLog(
                    at=now,
                    actor=PROVISIONING_ACTOR,
                    tenant_id=None if change.tenant is None else change.tenant.id,
                    action=change.action,
                    target=change.target,
                    before=change.before,
                    after=change.after(),
                )
            )


@dataclass(slots=True)
class _Applied:
    """Rows written so far in this run, by the natural keys the file uses, and the
    changes to audit."""

    tenants: dict[str, Tenant] = field(default_factory=dict)
    sites: dict[tuple[str, str], Site] = field(default_factory=dict)
    mobile_lines: dict[str, MobileLine] = field(default_factory=dict)
    trunks: dict[str, Trunk] = field(default_factory=dict)
    audit: _AuditTrail = field(default_factory=_AuditTrail)


def _apply_tenant(
    session: Session, spec: TenantSpec, applied: _Applied, result: ProvisioningResult
) -> None:
    """The tenant, its sites and its mobile lines (extensions come after the trunks)."""
    tenant = session.scalars(
        select(Tenant)
        .where(Tenant.name == spec.name)
        .options(
            selectinload(Tenant.sites),
            selectinload(Tenant.extensions).selectinload(Extension.credential),
            selectinload(Tenant.extensions).selectinload(Extension.mobile_line),
            selectinload(Tenant.extensions).selectinload(Extension.trunk),
        )
    ).one_or_none()
    created = tenant is None
    before = None
    if tenant is None:
        tenant = Tenant(name=spec.name)
        session.add(tenant)
    else:
        before = tenant_view(tenant)
    changed = _assign(
        tenant,
        {
            "contract_holder_name": spec.contract_holder_name,
            "sip_domain": spec.sip_domain,
            "address": spec.address,
            "basic_contract": spec.basic_contract,
            "pstn_trunk": spec.pstn_trunk,
            "mobile_trunk": spec.mobile_trunk,
            **(
                {}
                if spec.announcement_language is None
                else {"announcement_language": spec.announcement_language}
            ),
        },
    )
    result.tenants.count(created, changed)
    applied.tenants[spec.name] = tenant
    if created or changed:
        applied.audit.note(
            "tenant",
            created=created,
            target=tenant.name,
            tenant=tenant,
            before=before,
            after=functools.partial(tenant_view, tenant),
        )

    sites = {site.name: site for site in tenant.sites}
    for site_spec in spec.sites:
        site_created = site_spec.name not in sites
        if site_created:
            site = Site(name=site_spec.name, tenant=tenant)
            session.add(site)  # SQLAlchemy 2 does not cascade along the backref
            sites[site_spec.name] = site
            applied.audit.note(
                "site",
                created=True,
                target=f"{spec.name}/{site_spec.name}",
                tenant=tenant,
                before=None,
                after=functools.partial(site_view, site),
            )
        applied.sites[(spec.name, site_spec.name)] = sites[site_spec.name]
        result.sites.count(site_created, changed=False)

    msisdns = [line.msisdn for line in spec.mobile_lines]
    stored_lines = {
        line.msisdn: line
        for line in session.scalars(select(MobileLine).where(MobileLine.msisdn.in_(msisdns)))
    }
    for line_spec in spec.mobile_lines:
        line = stored_lines.get(line_spec.msisdn)
        line_created = line is None
        line_before = None
        if line is None:
            # `abroad` is state, not configuration: a new line starts at home.
            line = MobileLine(msisdn=line_spec.msisdn, abroad=False)
            session.add(line)
        else:
            line_before = mobile_line_view(line)
        line_changed = _relate(line, "tenant", tenant)
        line_changed |= _assign(
            line,
            {
                "contract_holder_name": line_spec.contract_holder_name or spec.contract_holder_name,
                "b_number": line_spec.b_number,
                "option_050": line_spec.option_050,
                "number_050": line_spec.number_050,
                "option_gateway": line_spec.option_gateway,
                "option_roaming": line_spec.option_roaming,
            },
        )
        applied.mobile_lines[line_spec.msisdn] = line
        result.mobile_lines.count(line_created, line_changed)
        if line_created or line_changed:
            applied.audit.note(
                "mobile_line",
                created=line_created,
                target=line.msisdn,
                tenant=tenant,
                before=line_before,
                after=functools.partial(mobile_line_view, line),
            )


def _apply_extensions(
    session: Session,
    spec: TenantSpec,
    tenant_index: int,
    applied: _Applied,
    result: ProvisioningResult,
) -> list[ProvisioningIssue]:
    """The tenant's extensions; the overlap problems with stored extensions, if any."""
    tenant = applied.tenants[spec.name]
    extensions = {extension.number: extension for extension in tenant.extensions}
    for extension_spec in spec.extensions:
        extension = extensions.get(extension_spec.number)
        created = extension is None
        before = None
        if extension is None:
            extension = Extension(number=extension_spec.number, tenant=tenant)
            session.add(extension)
            extensions[extension_spec.number] = extension
        else:
            before = extension_view(extension)
        kind = extension_spec.kind
        fixed = kind is ExtensionKind.FIXED_IP_PHONE
        mobile = kind is ExtensionKind.MOBILE
        pbx = kind is ExtensionKind.CUSTOMER_PBX
        line = applied.mobile_lines[extension_spec.mobile_line or ""] if mobile else None
        trunk = applied.trunks[extension_spec.trunk or ""] if pbx else None
        # No flush between these: a half-changed kind would break the extension CHECKs.
        with session.no_autoflush:
            changed = _relate(extension, "site", applied.sites[(spec.name, extension_spec.site)])
            changed |= _relate(extension, "mobile_line", line)
            changed |= _relate(extension, "trunk", trunk)
            changed |= _assign(
                extension,
                {
                    "kind": kind,
                    "display_name": extension_spec.display_name,
                    "digest_algorithms": (
                        None
                        if extension_spec.digest_algorithms is None
                        else [algorithm.value for algorithm in extension_spec.digest_algorithms]
                    ),
                    "no_answer_timeout_seconds": extension_spec.no_answer_timeout_seconds,
                    "static_contact_uri": extension_spec.static_contact_uri,
                    "voicemail_enabled": extension_spec.voicemail,
                    "mobile_identity": (
                        (extension_spec.identity or MobileIdentity.A) if mobile else None
                    ),
                    "range_last": extension_spec.last if pbx else None,
                },
            )
            if fixed or extension.credential is not None:
                changed |= _apply_credential(extension, extension_spec, realm=spec.sip_domain)
        result.extensions.count(created, changed)
        if created or changed:
            # A new password alone leaves the view as it was: the view has no secrets.
            applied.audit.note(
                "extension",
                created=created,
                target=f"{spec.name}/{extension.number}",
                tenant=tenant,
                before=before,
                after=functools.partial(extension_view, extension),
            )

    # The file's own extensions do not overlap (checked before writing); extensions it
    # does not mention may still cover its numbers.
    in_file = {
        extension_spec.number: f"tenants[{tenant_index}].extensions[{extension_index}].number"
        for extension_index, extension_spec in enumerate(spec.extensions)
    }
    spans = [
        _NumberSpan(
            extension.number,
            extension.range_last or extension.number,
            in_file.get(extension.number, ""),
        )
        for extension in extensions.values()
    ]
    return [
        ProvisioningIssue(
            (later if later.key_path else earlier).key_path,
            f"{later.describe()} overlaps the stored extension "
            f"{(earlier if later.key_path else later).describe()}",
        )
        for earlier, later in _span_overlaps(spans)
        if not (earlier.key_path and later.key_path)
    ]


def _apply_trunk(
    session: Session, spec: TrunkSpec, applied: _Applied, result: ProvisioningResult
) -> None:
    trunk = session.scalars(
        select(Trunk).where(Trunk.name == spec.name).options(selectinload(Trunk.source_addresses))
    ).one_or_none()
    created = trunk is None
    before = None
    if trunk is None:
        trunk = Trunk(name=spec.name)
        session.add(trunk)
    else:
        before = trunk_view(trunk)
    tenant = None if spec.tenant is None else applied.tenants[spec.tenant]
    changed = _relate(trunk, "tenant", tenant)
    username = spec.username
    realm: str | None = None
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    if username is not None and spec.password is not None:
        realm = spec.realm or (tenant.sip_domain if tenant is not None else None)
        if realm is not None:
            ha1_md5, ha1_sha256 = _ha1_values(username, realm, spec.password)
    changed |= _assign(
        trunk,
        {
            "kind": spec.kind,
            "host": spec.host,
            "port": spec.port,
            "transport": spec.transport,
            "capacity": spec.capacity,
            "auth_username": username,
            "auth_realm": realm,
            "auth_ha1_md5": ha1_md5,
            "auth_ha1_sha256": ha1_sha256,
            "caller_area_header": spec.caller_area_header,
            "abroad_header": spec.abroad_header,
            "identity_trusted": spec.identity_trusted,
        },
    )
    stored = [(source.address, source.port) for source in trunk.source_addresses]
    wanted = [(source.address, source.port) for source in spec.trusted_sources]
    if stored != wanted:
        trunk.source_addresses = [
            TrunkSourceAddress(address=address, port=port) for address, port in wanted
        ]
        changed = True
    applied.trunks[spec.name] = trunk
    result.trunks.count(created, changed)
    if created or changed:
        applied.audit.note(
            "trunk",
            created=created,
            target=trunk.name,
            tenant=tenant,
            before=before,
            after=functools.partial(trunk_view, trunk),
        )


def _named_trunk_conflicts(session: Session, document: ProvisioningFile) -> list[ProvisioningIssue]:
    """A stored tenant the file leaves out whose `pstn_trunk` / `mobile_trunk` names a trunk
    the file makes another kind or gives a tenant (the file's own tenants are checked by
    `_check_tenant`)."""
    conflicts: list[ProvisioningIssue] = []
    for index, spec in enumerate(document.trunks):
        for key, kind in TENANT_CARRIER_TRUNK_SETTINGS.items():
            if spec.kind is kind and spec.tenant is None:
                continue
            user = session.scalars(
                select(Tenant.name).where(getattr(Tenant, key) == spec.name)
            ).first()
            if user is not None:
                field = "kind" if spec.kind is not kind else "tenant"
                conflicts.append(
                    ProvisioningIssue(
                        f"trunks[{index}].{field}",
                        f"the stored tenant {user} names this trunk as its {key}"
                        f" (a carrier-wide {kind.value} trunk): change the tenant first",
                    )
                )
    return conflicts


def _apply_account(
    session: Session,
    spec: AccountSpec,
    applied: _Applied,
    now: float,
    result: ProvisioningResult,
) -> None:
    account = session.scalars(select(Account).where(Account.login == spec.login)).one_or_none()
    tenant = None if spec.tenant is None else applied.tenants[spec.tenant]
    extension = None
    if tenant is not None and spec.extension is not None:
        extension = next(item for item in tenant.extensions if item.number == spec.extension)
    created = account is None
    before = None
    if account is None:
        account = Account(
            login=spec.login,
            role=spec.role,
            password_hash=hash_account_password(spec.password),
            password_changed_at=now,
            created_at=now,
            failed_login_count=0,
        )
        session.add(account)
        changed = True
    else:
        before = account.audit_view()
        changed = False
        if not verify_account_password(account.password_hash, spec.password):
            account.password_hash = hash_account_password(spec.password)
            account.password_changed_at = now
            # A new password ends every session of the old one (as the API's change does).
            session.execute(
                update(ApiToken)
                .where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            changed = True
    # No flush between these: a half-applied role change would break the account CHECKs.
    with session.no_autoflush:
        changed |= _relate(account, "tenant", tenant)
        changed |= _relate(account, "extension", extension)
        changed |= _assign(account, {"role": spec.role, "disabled": spec.disabled})
    result.accounts.count(created, changed)
    if changed:
        applied.audit.note(
            "account",
            created=created,
            target=account.login,
            tenant=tenant,
            before=before,
            after=account.audit_view,
        )


def _apply_destination_sets(
    session: Session, number: TollFreeNumber, spec: TollFreeSpec, applied: _Applied
) -> tuple[bool, dict[str, TollFreeDestinationSet]]:
    """Create or update the file's sets (old sets are removed after the schedules)."""
    changed = False
    sets = {destination_set.name: destination_set for destination_set in number.destination_sets}
    for set_name, destination_specs in spec.destination_sets.items():
        destination_set = sets.get(set_name)
        if destination_set is None:
            destination_set = TollFreeDestinationSet(name=set_name)
            number.destination_sets.append(destination_set)
            sets[set_name] = destination_set
            changed = True
        stored = [
            (destination.position, destination.number, destination.weight, destination.trunk)
            for destination in destination_set.destinations
        ]
        wanted = [
            (position, destination.number, destination.weight, applied.trunks[destination.trunk])
            for position, destination in enumerate(destination_specs, start=1)
        ]
        if stored != wanted:
            if destination_set.destinations:
                # Old rows go first: positions and numbers are unique within a set, and
                # the unit of work would insert the new rows before deleting the old.
                destination_set.destinations.clear()
                session.flush()
            destination_set.destinations = [
                TollFreeDestination(position=position, number=text, weight=weight, trunk=trunk)
                for position, text, weight, trunk in wanted
            ]
            changed = True
    return changed, sets


def _apply_schedules(
    session: Session,
    number: TollFreeNumber,
    spec: TollFreeSpec,
    sets: dict[str, TollFreeDestinationSet],
) -> bool:
    changed = False
    schedules = {schedule.name: schedule for schedule in number.schedules}
    for schedule_spec in spec.schedules:
        schedule = schedules.get(schedule_spec.name)
        if schedule is None:
            schedule = TollFreeSchedule(name=schedule_spec.name)
            number.schedules.append(schedule)
            changed = True
        target = (
            None if schedule_spec.destination_set is None else sets[schedule_spec.destination_set]
        )
        with session.no_autoflush:
            changed |= _relate(schedule, "destination_set", target)
            changed |= _assign(
                schedule, {"action": schedule_spec.action, "enabled": schedule_spec.enabled}
            )
        stored = [
            (item.kind, item.weekday, item.day, item.start_minute, item.end_minute)
            for item in schedule.ranges
        ]
        wanted = [
            (
                range_spec.kind,
                range_spec.weekday,
                None if range_spec.date is None else range_spec.date.isoformat(),
                range_spec.start,
                range_spec.end,
            )
            for range_spec in schedule_spec.ranges
        ]
        if stored != wanted:
            schedule.ranges = [
                TollFreeScheduleRange(
                    kind=kind, weekday=weekday, day=day, start_minute=start, end_minute=end
                )
                for kind, weekday, day, start, end in wanted
            ]
            changed = True
    wanted_names = {schedule_spec.name for schedule_spec in spec.schedules}
    for schedule in list(number.schedules):
        if schedule.name not in wanted_names:
            number.schedules.remove(schedule)
            changed = True
    return changed


def _apply_designated_areas(number: TollFreeNumber, spec: TollFreeSpec) -> bool:
    areas = spec.designated_areas
    changed = _assign(
        number,
        {
            "designated_whole_country": areas.whole_country,
            "allow_fixed": areas.allow_fixed,
            "allow_mobile": areas.allow_mobile,
            "allow_withheld": areas.allow_withheld,
            "refusal_action": areas.refusal_action,
        },
    )
    wanted = [(AreaKind.PREFECTURE, code) for code in areas.prefectures] + [
        (AreaKind.AREA_CODE, code) for code in areas.area_codes
    ]
    # Removed rows before added ones is not needed: (kind, code) pairs kept stay as rows.
    for area in list(number.designated_areas):
        if (area.kind, area.code) not in wanted:
            number.designated_areas.remove(area)
            changed = True
    stored = {(area.kind, area.code) for area in number.designated_areas}
    for kind, code in wanted:
        if (kind, code) not in stored:
            number.designated_areas.append(TollFreeDesignatedArea(kind=kind, code=code))
            changed = True
    return changed


def _apply_grants(session: Session, number: TollFreeNumber, spec: TollFreeSpec) -> bool:
    changed = False
    wanted = set(spec.accounts)
    for grant in list(number.grants):
        if grant.account.login not in wanted:
            number.grants.remove(grant)
            changed = True
    stored = {grant.account.login for grant in number.grants}
    missing = wanted - stored
    if missing:
        for account in session.scalars(
            select(Account).where(Account.login.in_(sorted(missing))).order_by(Account.login)
        ):
            number.grants.append(TollFreeAccountGrant(account=account))
        changed = True
    return changed


def _apply_tollfree_number(
    session: Session, spec: TollFreeSpec, applied: _Applied, result: ProvisioningResult
) -> None:
    number = session.scalars(
        select(TollFreeNumber)
        .where(TollFreeNumber.number == spec.number)
        .options(
            selectinload(TollFreeNumber.destination_sets)
            .selectinload(TollFreeDestinationSet.destinations)
            .selectinload(TollFreeDestination.trunk),
            selectinload(TollFreeNumber.schedules).selectinload(TollFreeSchedule.ranges),
            selectinload(TollFreeNumber.schedules).selectinload(TollFreeSchedule.destination_set),
            selectinload(TollFreeNumber.designated_areas),
            selectinload(TollFreeNumber.grants).selectinload(TollFreeAccountGrant.account),
        )
    ).one_or_none()
    created = number is None
    before = None
    if number is None:
        number = TollFreeNumber(number=spec.number)
        session.add(number)
    else:
        before = tollfree_number_view(number)
    tenant = applied.tenants[spec.tenant]
    with session.no_autoflush:
        changed = _relate(number, "tenant", tenant)
        changed |= _assign(
            number,
            {
                "service_type": spec.service_type,
                "contracted_channels": spec.contracted_channels,
                "channel_setting": spec.effective_channel_setting,
                "strict_distribution": spec.strict_distribution,
                "no_answer_timeout_seconds": spec.no_answer_timeout_seconds,
                "after_hours_announcement": spec.announcements.after_hours,
                "refusal_announcement": spec.announcements.out_of_area,
                "options": sorted(spec.options),
            },
        )
        changed |= _apply_designated_areas(number, spec)
    sets_changed, sets = _apply_destination_sets(session, number, spec, applied)
    changed |= sets_changed
    changed |= _apply_schedules(session, number, spec, sets)
    stale_sets = [
        item for item in number.destination_sets if item.name not in spec.destination_sets
    ]
    if stale_sets:
        # Schedules that named them are gone or moved on: flush that before the delete
        # (a schedule's set reference is ON DELETE RESTRICT).
        session.flush()
        for stale in stale_sets:
            number.destination_sets.remove(stale)
        changed = True
    changed |= _apply_grants(session, number, spec)
    result.tollfree_numbers.count(created, changed)
    if created or changed:
        applied.audit.note(
            "tollfree",
            created=created,
            target=number.number,
            tenant=tenant,
            before=before,
            after=functools.partial(tollfree_number_view, number),
        )


def provision(
    session: Session, path: Path | str, *, clock: Callable[[], float] = time.time
) -> ProvisioningResult:
    """Validate the file at `path`, then write it to the store in one transaction.

    Commits on success. On any error the session is rolled back and nothing is written.

    Returns:
        Counts of created, updated and unchanged entries per kind.

    Raises:
        ProvisioningError: the file is refused (see `load_provisioning_file`), or it
            conflicts with rows already stored (e.g. a SIP domain another tenant holds, or
            a number inside a stored customer-PBX range).
    """
    document = load_provisioning_file(path)
    result = ProvisioningResult()
    now = clock()
    try:
        applied = _Applied()
        # Order of references: tenants (sites, lines) <- trunks <- extensions <- accounts
        # <- toll-free numbers (their destinations' trunks and their granted accounts).
        for tenant_spec in document.tenants:
            _apply_tenant(session, tenant_spec, applied, result)
        for trunk_spec in document.trunks:
            _apply_trunk(session, trunk_spec, applied, result)
        conflicts = _named_trunk_conflicts(session, document)
        for tenant_index, tenant_spec in enumerate(document.tenants):
            conflicts += _apply_extensions(session, tenant_spec, tenant_index, applied, result)
        if conflicts:
            session.rollback()
            raise ProvisioningError(path, conflicts)
        for account_spec in document.accounts:
            _apply_account(session, account_spec, applied, now, result)
        for tollfree_spec in document.tollfree_numbers:
            _apply_tollfree_number(session, tollfree_spec, applied, result)
        applied.audit.write(session, now)
        session.commit()
    except IntegrityError as error:
        session.rollback()
        reason = f"conflicts with the stored configuration: {error.orig}"
        raise ProvisioningError(path, [ProvisioningIssue("(store)", reason)]) from None
    except BaseException:
        session.rollback()
        raise
    return result
