"""The immutable configuration the switch routes on.

Rules:
- Everything here is a frozen value: dataclasses with `frozen=True, slots=True`, tuples and
  read-only mappings (`MappingProxyType`). No ORM object and no session is reachable from
  a snapshot, so the call path can never run SQL by accident.
- A snapshot is built whole (`ConfigSnapshot.build`, used by
  `cloudpbx.repository.load_snapshot`) and replaced whole: the switch swaps its reference
  atomically on a change notification and never mutates one.
- Extensions are found by (SIP domain, number). Domains compare case-insensitively
  (RFC 3261 §19.1.4: the host part is case-insensitive), numbers exactly.
- Trunks are recognised by the source address of a request: an entry with the exact
  (address, port) wins over an entry for the address with any port. Addresses compare in
  canonical `ipaddress` form, so `::0001` and `::1` are the same source.
- `build` refuses inconsistent input (two extensions on one key, one source address on two
  trunks) with `ValueError`; provisioning validates the same rules earlier, with key paths.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cloudpbx.domain import DigestAlgorithm, ExtensionKind, Transport

__all__ = [
    "ConfigSnapshot",
    "DigestCredential",
    "ExtensionEntry",
    "TenantEntry",
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
class ExtensionEntry:
    """One extension as the switch sees it."""

    tenant_name: str
    site_name: str
    domain: str
    """The tenant's SIP domain, lower case."""
    number: str
    kind: ExtensionKind
    display_name: str
    digest_algorithms: tuple[DigestAlgorithm, ...] | None
    """Algorithms to challenge with, most preferred first; None: the switch's default."""
    no_answer_timeout_seconds: int
    static_contact_uri: str | None
    """Where to reach a device that does not register; None for registering devices."""
    credential: DigestCredential | None
    """None when the extension has no SIP credentials (it cannot register)."""

    @property
    def address_of_record(self) -> str:
        """`sip:NUMBER@DOMAIN`, the key its registrations are stored under."""
        return f"sip:{self.number}@{self.domain}"

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
    """The owning tenant of a customer-PBX trunk; None for carrier-wide trunks."""
    host: str
    port: int
    transport: Transport
    sources: tuple[TrunkSource, ...]


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """All routing configuration at one moment. Build with `ConfigSnapshot.build`."""

    tenants: Mapping[str, TenantEntry] = field(default_factory=lambda: MappingProxyType({}))
    """By tenant name."""
    extensions: Mapping[tuple[str, str], ExtensionEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """By (lower-case domain, number)."""
    trunks: Mapping[str, TrunkEntry] = field(default_factory=lambda: MappingProxyType({}))
    """By trunk name."""
    trunks_by_source: Mapping[tuple[str, int | None], TrunkEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """By (canonical address, port or None)."""

    @classmethod
    def build(
        cls,
        tenants: Iterable[TenantEntry],
        extensions: Iterable[ExtensionEntry],
        trunks: Iterable[TrunkEntry],
    ) -> ConfigSnapshot:
        """Index the entries into a snapshot.

        Raises:
            ValueError: a duplicate tenant, extension key, trunk name or trunk source.
        """
        tenant_index: dict[str, TenantEntry] = {}
        for tenant in tenants:
            if tenant.name in tenant_index:
                raise ValueError(f"duplicate tenant {tenant.name!r}")
            tenant_index[tenant.name] = tenant
        extension_index: dict[tuple[str, str], ExtensionEntry] = {}
        for extension in extensions:
            key = (extension.domain.lower(), extension.number)
            if key in extension_index:
                raise ValueError(f"duplicate extension {extension.number!r}@{key[0]}")
            extension_index[key] = extension
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
        return cls(
            tenants=MappingProxyType(tenant_index),
            extensions=MappingProxyType(extension_index),
            trunks=MappingProxyType(trunk_index),
            trunks_by_source=MappingProxyType(source_index),
        )

    def extension(self, domain: str, number: str) -> ExtensionEntry | None:
        """The extension `number` in the tenant whose SIP domain is `domain`, if any."""
        return self.extensions.get((domain.lower(), number))

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
