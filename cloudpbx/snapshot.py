"""The immutable configuration the switch routes on.

Rules:
- Everything here is a frozen value: dataclasses with `frozen=True, slots=True`, tuples,
  frozensets and read-only mappings (`MappingProxyType`). No ORM object and no session is
  reachable from a snapshot, so the call path can never run SQL by accident.
- A snapshot is built whole (`ConfigSnapshot.build`, used by
  `cloudpbx.repository.load_snapshot`) and replaced whole: the switch swaps its reference
  atomically on a change notification and never mutates one.
- Extensions are found by (SIP domain, number). Domains compare case-insensitively
  (RFC 3261 §19.1.4: the host part is case-insensitive), numbers exactly.
  `extension()` finds single-number extensions only (fixed IP phones and mobile
  extensions); a customer-PBX range lives in `extension_ranges` and
  `extension_for_number()` finds the exact extension or else the range holding the
  number (a range holds the numbers of its own length from its first to its last).
- Mobile lines are found by either of their numbers (the A number, the 2in1 B number),
  E.164 with `+`; `mobile_extension()` gives the extension standing for such a number.
- Trunks are recognised by the source address of a request: an entry with the exact
  (address, port) wins over an entry for the address with any port. Addresses compare in
  canonical `ipaddress` form, so `::0001` and `::1` are the same source.
- Toll-free numbers are found by their national form without separators (`0120000111`);
  their destination sets keep the stored order, `default` among them.
- `build` refuses inconsistent input (two extensions on one key, overlapping ranges or a
  single number inside a range of the same domain, one mobile number on two lines, one
  source address on two trunks, a toll-free number twice) with `ValueError`; provisioning
  validates the same rules earlier, with key paths.
"""

from __future__ import annotations

import bisect
import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cloudpbx.domain import (
    AnnouncementLanguage,
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
    Transport,
    TrunkKind,
)

__all__ = [
    "ConfigSnapshot",
    "DestinationEntry",
    "DestinationSetEntry",
    "DigestCredential",
    "ExtensionEntry",
    "MobileLineEntry",
    "ScheduleEntry",
    "ScheduleRangeEntry",
    "TenantEntry",
    "TollFreeEntry",
    "TrunkEntry",
    "TrunkSource",
    "canonical_address",
]


def canonical_address(host: str) -> str | None:
    """The canonical text of an IP literal (brackets allowed for IPv6), or None if `host`
    is not one."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DigestCredential:
    """What a registrar needs to verify a digest response (RFC 7616 §3.4.1)."""

    username: str
    """The `username` the device puts in its Authorization header."""
    realm: str
    """The realm we challenge with."""
    ha1_by_algorithm: Mapping[DigestAlgorithm, str]
    """HA1 (lower-case hex) for every algorithm we hold one for; read-only."""

    def ha1(self, algorithm: DigestAlgorithm) -> str | None:
        """The HA1 for `algorithm`, or None when none is stored."""
        return self.ha1_by_algorithm.get(algorithm)


@dataclass(frozen=True, slots=True)
class MobileLineEntry:
    """A mobile line and its options (PRODUCT.md Part B 3, 5, 6)."""

    tenant_name: str
    msisdn: str
    """The A number, E.164 (`+819012340001`)."""
    b_number: str | None
    """The 2in1 B number, E.164; None without 2in1."""
    option_050: bool
    number_050: str | None
    """The 050 number shown on 050 outbound calls (national form); None without the option."""
    option_gateway: bool
    """External calls leave through the tenant's external gateway."""
    option_roaming: bool
    """Extension calls still reach the line while it is abroad."""
    abroad: bool

    def number(self, identity: MobileIdentity) -> str | None:
        """The E.164 number of `identity` (None: a B without 2in1)."""
        return self.msisdn if identity is MobileIdentity.A else self.b_number

    def identity_of(self, number: str) -> MobileIdentity | None:
        """Which of the line's numbers `number` (E.164) is, or None."""
        if number == self.msisdn:
            return MobileIdentity.A
        if self.b_number is not None and number == self.b_number:
            return MobileIdentity.B
        return None


@dataclass(frozen=True, slots=True)
class ExtensionEntry:
    """One extension as the switch sees it: a number, or a customer-PBX range."""

    tenant_name: str
    site_name: str
    domain: str
    """The tenant's SIP domain, lower case."""
    number: str
    """The number; the first of the range for a customer-PBX extension."""
    kind: ExtensionKind
    display_name: str
    digest_algorithms: tuple[DigestAlgorithm, ...] | None
    """Algorithms to challenge with, most preferred first; None: the switch's default."""
    no_answer_timeout_seconds: int
    static_contact_uri: str | None
    """Where to reach a device that does not register; None for registering devices."""
    credential: DigestCredential | None
    """None when the extension has no SIP credentials (it cannot register)."""
    voicemail_enabled: bool = False
    """The voicemail option of a fixed IP phone."""
    mobile_line: MobileLineEntry | None = None
    """The line of a `mobile` extension (with its options and abroad state)."""
    mobile_identity: MobileIdentity | None = None
    """Which number of `mobile_line` the extension stands for."""
    range_last: str | None = None
    """The last number of a `customer_pbx` range (as long as `number`)."""
    trunk_name: str | None = None
    """The customer PBX's trunk of a `customer_pbx` range."""

    @property
    def address_of_record(self) -> str:
        """`sip:NUMBER@DOMAIN`, the key its registrations are stored under."""
        return f"sip:{self.number}@{self.domain}"

    @property
    def mobile_number(self) -> str | None:
        """The E.164 number a `mobile` extension stands for (A or B), else None."""
        if self.mobile_line is None or self.mobile_identity is None:
            return None
        return self.mobile_line.number(self.mobile_identity)

    @property
    def last_number(self) -> str:
        """The last number the extension covers (`number` unless a range)."""
        return self.range_last if self.range_last is not None else self.number

    def covers(self, number: str) -> bool:
        """True when `number` is this extension's number or inside its range."""
        if self.range_last is None:
            return number == self.number
        return len(number) == len(self.number) and self.number <= number <= self.range_last

    def offered_algorithms(
        self, default: tuple[DigestAlgorithm, ...]
    ) -> tuple[DigestAlgorithm, ...]:
        """The algorithms to challenge with: the extension's own list, else `default`."""
        return self.digest_algorithms if self.digest_algorithms is not None else default


@dataclass(frozen=True, slots=True)
class TenantEntry:
    """A tenant's identity, for logs, call records and routing decisions."""

    name: str
    contract_holder_name: str
    sip_domain: str
    site_names: tuple[str, ...]
    address: str = ""
    basic_contract: str = ""
    announcement_language: AnnouncementLanguage = AnnouncementLanguage.JA
    """The language of the announcements and voicemail greeting its calls play."""
    pstn_trunk: str | None = None
    """The carrier-wide PSTN trunk its outbound calls leave on; None: the default."""
    mobile_trunk: str | None = None
    """The carrier-wide mobile network trunk calls to its mobile extensions leave on;
    None: the default."""


@dataclass(frozen=True, slots=True)
class TrunkSource:
    """A trusted source of a trunk: an address and, optionally, one port."""

    address: str
    """Canonical IP literal (no brackets)."""
    port: int | None
    """None: any port."""


@dataclass(frozen=True, slots=True)
class TrunkEntry:
    """A SIP peer we exchange calls with."""

    name: str
    tenant_name: str | None
    """The owning tenant of a customer-PBX or gateway trunk; None for carrier-wide trunks."""
    host: str
    port: int
    transport: Transport
    sources: tuple[TrunkSource, ...]
    kind: TrunkKind = TrunkKind.PSTN
    capacity: int | None = None
    """Concurrent calls the peer takes; None: no limit."""
    credential: DigestCredential | None = None
    """The digest credential the peer authenticates with; None: source address only."""
    caller_area_header: str | None = None
    """Header in which the trunk asserts the caller's charging area code (issue 5)."""
    abroad_header: str | None = None
    """Header whose presence says the calling mobile line is abroad (issue 6)."""
    identity_trusted: bool | None = None
    """In our trust domain for the identities we send it (RFC 3325 §2); None: by kind."""


@dataclass(frozen=True, slots=True)
class DestinationEntry:
    """One destination of a toll-free destination set."""

    number: str
    """National form without separators (`0312340001`)."""
    weight: int
    trunk_name: str
    """The trunk that reaches the number."""


@dataclass(frozen=True, slots=True)
class DestinationSetEntry:
    """A named destination set, its destinations in their stored order (position)."""

    name: str
    destinations: tuple[DestinationEntry, ...]


@dataclass(frozen=True, slots=True)
class ScheduleRangeEntry:
    """A time range [start_minute, end_minute) of the days it names, Asia/Tokyo."""

    kind: ScheduleRangeKind
    weekday: int | None
    """0 = Monday ... 6 = Sunday, for `weekly`."""
    day: datetime.date | None
    """The date, for `date`."""
    start_minute: int
    end_minute: int
    """Exclusive; 1440 is midnight at the end of the day."""


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A toll-free schedule: while one of its ranges is in force, its action applies."""

    name: str
    action: ScheduleAction
    destination_set_name: str | None
    """The set calls go to, for `destination_change`."""
    enabled: bool
    ranges: tuple[ScheduleRangeEntry, ...]


@dataclass(frozen=True, slots=True)
class TollFreeEntry:
    """A toll-free number with everything issue 5 routes its calls on."""

    number: str
    """National form without separators (`0120000111`)."""
    tenant_name: str
    service_type: TollFreeServiceType
    contracted_channels: int
    channel_setting: int
    """Concurrent calls allowed now (at most the contract)."""
    strict_distribution: bool
    """No failover to other destinations."""
    after_hours_announcement: str
    refusal_announcement: str
    refusal_action: RefusalAction
    designated_whole_country: bool
    """True: every domestic area is designated (the area sets are ignored)."""
    designated_prefectures: frozenset[str]
    """JIS prefecture codes (`13`)."""
    designated_area_codes: frozenset[str]
    """Area codes in national form (`03`)."""
    allow_fixed: bool
    allow_mobile: bool
    allow_withheld: bool
    options: frozenset[str]
    destination_sets: Mapping[str, DestinationSetEntry]
    """By name, in stored order; `default` is in force unless a schedule says otherwise."""
    schedules: tuple[ScheduleEntry, ...]
    no_answer_timeout_seconds: int = 30
    """Seconds the destinations ring in all before the caller gets 480."""

    @property
    def default_destinations(self) -> DestinationSetEntry | None:
        """The `default` destination set (provisioning and the API require one)."""
        return self.destination_sets.get("default")


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """All routing configuration at one moment. Build with `ConfigSnapshot.build`."""

    tenants: Mapping[str, TenantEntry] = field(default_factory=lambda: MappingProxyType({}))
    """By tenant name."""
    extensions: Mapping[tuple[str, str], ExtensionEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Single-number extensions by (lower-case domain, number)."""
    extension_ranges: Mapping[str, tuple[ExtensionEntry, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Customer-PBX ranges by lower-case domain, ordered by (length, first number)."""
    trunks: Mapping[str, TrunkEntry] = field(default_factory=lambda: MappingProxyType({}))
    """By trunk name."""
    trunks_by_source: Mapping[tuple[str, int | None], TrunkEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """By (canonical address, port or None)."""
    mobile_lines: Mapping[str, MobileLineEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """By E.164 number: the A number and the B number both lead to the line."""
    mobile_extensions: Mapping[str, ExtensionEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Mobile extensions by the E.164 number they stand for (A or B)."""
    tollfree_numbers: Mapping[str, TollFreeEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """By national number (`0120000111`)."""

    @classmethod
    def build(
        cls,
        tenants: Iterable[TenantEntry],
        extensions: Iterable[ExtensionEntry],
        trunks: Iterable[TrunkEntry],
        mobile_lines: Iterable[MobileLineEntry] = (),
        tollfree_numbers: Iterable[TollFreeEntry] = (),
    ) -> ConfigSnapshot:
        """Index the entries into a snapshot.

        Raises:
            ValueError: a duplicate tenant, extension key, trunk name, trunk source,
                mobile number or toll-free number, or overlapping extension numbers.
        """
        tenant_index: dict[str, TenantEntry] = {}
        for tenant in tenants:
            if tenant.name in tenant_index:
                raise ValueError(f"duplicate tenant {tenant.name!r}")
            tenant_index[tenant.name] = tenant

        extension_index: dict[tuple[str, str], ExtensionEntry] = {}
        ranges: dict[str, list[ExtensionEntry]] = {}
        mobile_extension_index: dict[str, ExtensionEntry] = {}
        keys: set[tuple[str, str]] = set()
        for extension in extensions:
            domain = extension.domain.lower()
            key = (domain, extension.number)
            if key in keys:
                raise ValueError(f"duplicate extension {extension.number!r}@{domain}")
            keys.add(key)
            if extension.range_last is not None:
                ranges.setdefault(domain, []).append(extension)
            else:
                extension_index[key] = extension
            mobile_number = extension.mobile_number
            if mobile_number is not None:
                if mobile_number in mobile_extension_index:
                    raise ValueError(f"two extensions stand for the mobile number {mobile_number}")
                mobile_extension_index[mobile_number] = extension
        range_index = {
            domain: _ordered_ranges(domain, entries) for domain, entries in ranges.items()
        }
        for (domain, number), single in extension_index.items():
            if _range_holding(range_index.get(domain, ()), number) is not None:
                raise ValueError(f"extension {single.number}@{domain} is inside a range")

        line_index: dict[str, MobileLineEntry] = {}
        for line in mobile_lines:
            for line_number in (line.msisdn, line.b_number):
                if line_number is None:
                    continue
                if line_number in line_index:
                    raise ValueError(f"mobile number {line_number} is on two lines")
                line_index[line_number] = line

        trunk_index: dict[str, TrunkEntry] = {}
        source_index: dict[tuple[str, int | None], TrunkEntry] = {}
        for trunk in trunks:
            if trunk.name in trunk_index:
                raise ValueError(f"duplicate trunk {trunk.name!r}")
            trunk_index[trunk.name] = trunk
            for source in trunk.sources:
                address = canonical_address(source.address)
                if address is None:
                    raise ValueError(f"trunk {trunk.name!r}: {source.address!r} is not an IP")
                source_key = (address, source.port)
                other = source_index.get(source_key)
                if other is not None and other.name != trunk.name:
                    raise ValueError(
                        f"source {address} port {source.port} is claimed by trunks "
                        f"{other.name!r} and {trunk.name!r}"
                    )
                source_index[source_key] = trunk

        tollfree_index: dict[str, TollFreeEntry] = {}
        for tollfree in tollfree_numbers:
            if tollfree.number in tollfree_index:
                raise ValueError(f"duplicate toll-free number {tollfree.number}")
            tollfree_index[tollfree.number] = tollfree

        return cls(
            tenants=MappingProxyType(tenant_index),
            extensions=MappingProxyType(extension_index),
            extension_ranges=MappingProxyType(range_index),
            trunks=MappingProxyType(trunk_index),
            trunks_by_source=MappingProxyType(source_index),
            mobile_lines=MappingProxyType(line_index),
            mobile_extensions=MappingProxyType(mobile_extension_index),
            tollfree_numbers=MappingProxyType(tollfree_index),
        )

    def extension(self, domain: str, number: str) -> ExtensionEntry | None:
        """The single-number extension `number` of the tenant whose SIP domain is `domain`.

        Exact: a number inside a customer-PBX range is not found here (see
        `extension_for_number`).
        """
        return self.extensions.get((domain.lower(), number))

    def extension_for_number(self, domain: str, number: str) -> ExtensionEntry | None:
        """The extension `number` of `domain`'s tenant, or the customer-PBX range holding it.

        An exact single-number extension wins (provisioning keeps ranges and single
        numbers apart, so this is only an order of lookups).
        """
        exact = self.extension(domain, number)
        if exact is not None:
            return exact
        return _range_holding(self.extension_ranges.get(domain.lower(), ()), number)

    def mobile_line(self, number: str) -> MobileLineEntry | None:
        """The mobile line with the E.164 `number` as its A or B number, if any."""
        return self.mobile_lines.get(number)

    def mobile_extension(self, number: str) -> ExtensionEntry | None:
        """The mobile extension standing for the E.164 `number` (A or B), if any."""
        return self.mobile_extensions.get(number)

    def tollfree_number(self, number: str) -> TollFreeEntry | None:
        """The toll-free number in national form (`0120000111`), if any."""
        return self.tollfree_numbers.get(number)

    def trunk_for_source(self, host: str, port: int) -> TrunkEntry | None:
        """The trunk a request from (`host`, `port`) comes from, or None if untrusted.

        An entry for the exact port wins over one for the address with any port; a host
        that is not an IP literal matches nothing.
        """
        address = canonical_address(host)
        if address is None:
            return None
        exact = self.trunks_by_source.get((address, port))
        if exact is not None:
            return exact
        return self.trunks_by_source.get((address, None))


def _range_key(entry: ExtensionEntry) -> tuple[int, str]:
    return (len(entry.number), entry.number)


def _ordered_ranges(domain: str, entries: list[ExtensionEntry]) -> tuple[ExtensionEntry, ...]:
    """`entries` ordered by (length, first number); ValueError on any overlap."""
    ordered = sorted(entries, key=_range_key)
    # Sorted by start, any overlap shows between neighbours.
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if len(earlier.number) == len(later.number) and later.number <= earlier.last_number:
            raise ValueError(
                f"extension ranges {earlier.number}-{earlier.last_number} and "
                f"{later.number}-{later.last_number}@{domain} overlap"
            )
    return tuple(ordered)


def _range_holding(ranges: tuple[ExtensionEntry, ...], number: str) -> ExtensionEntry | None:
    """The range of `ranges` (ordered, without overlaps) that holds `number`, or None."""
    # The candidate is the last range starting at or before `number` among its length.
    position = bisect.bisect_right(ranges, (len(number), number), key=_range_key)
    if position == 0:
        return None
    candidate = ranges[position - 1]
    return candidate if candidate.covers(number) else None
