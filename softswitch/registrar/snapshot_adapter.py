"""The registrar's `CredentialLookup` and `DomainLookup` over a `cloudpbx` config snapshot.

Rules:
- Built from an immutable `ConfigSnapshot`: lookups are dictionary reads, never SQL, so
  the request path does no I/O. On a configuration change a new directory is built
  off the event loop and `replace_with()` copies its two read-only tables into the one
  the registrar and the caller authenticator hold, on the loop: one step, so a lookup
  sees the old tables or the new ones, never a mix (`softswitch.wiring.SwitchCore.install`).
- A subscriber is an extension with SIP credentials whose digest username is its number
  (the registrar lets a user bind only its own AOR, RFC 3261 §10.3 step 4; provisioning
  makes the username the number unless told otherwise). Its realm is the one stored with
  its HA1s (provisioning uses the tenant's SIP domain, so unknown users and known ones
  are challenged alike, RFC 3261 §22.4 and the registrar's no-enumeration rule).
- The challenge algorithms are the extension's own list, else the registrar's default
  order (SHA-256 then MD5, RFC 8760 §2.3), keeping only those the store holds an HA1
  for: a challenge we could not verify is never offered.
- Domains and the lookup key's domain compare case-insensitively (RFC 3261 §19.1.4);
  user parts (extension numbers) compare exactly.
- The direction of imports is softswitch -> cloudpbx, never back.
"""

from __future__ import annotations

from types import MappingProxyType

from cloudpbx.domain import DigestAlgorithm
from cloudpbx.snapshot import ConfigSnapshot, ExtensionEntry

from .registrar import SubscriberCredentials

__all__ = ["SnapshotDirectory"]


def _subscriber(
    entry: ExtensionEntry, default_algorithms: tuple[DigestAlgorithm, ...]
) -> SubscriberCredentials | None:
    credential = entry.credential
    if credential is None:
        return None
    ha1_by_algorithm = {
        str(algorithm): ha1 for algorithm, ha1 in credential.ha1_by_algorithm.items() if ha1
    }
    algorithms = tuple(
        str(algorithm)
        for algorithm in entry.offered_algorithms(default_algorithms)
        if str(algorithm) in ha1_by_algorithm
    )
    if not algorithms:
        return None
    return SubscriberCredentials(
        username=credential.username,
        realm=credential.realm,
        ha1_by_algorithm=MappingProxyType(ha1_by_algorithm),
        algorithms=algorithms,
    )


class SnapshotDirectory:
    """Subscribers and served domains of one snapshot (see the module rules).

    Implements `softswitch.registrar.CredentialLookup` and `DomainLookup`.
    """

    __slots__ = ("_subscribers", "_domains")

    def __init__(
        self,
        snapshot: ConfigSnapshot,
        default_algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    ) -> None:
        """
        Args:
            snapshot: the configuration to serve.
            default_algorithms: challenge order for extensions without their own list.

        Raises:
            ValueError: a default algorithm the store does not know.
        """
        defaults = tuple(DigestAlgorithm(name) for name in default_algorithms)
        subscribers: dict[tuple[str, str], SubscriberCredentials] = {}
        for (domain, number), entry in snapshot.extensions.items():
            subscriber = _subscriber(entry, defaults)
            # §10.3 step 4: the registrar binds the authenticated username's own AOR,
            # so only an extension whose digest username is its number can register.
            if subscriber is not None and subscriber.username == number:
                subscribers[(domain.lower(), number)] = subscriber
        self._subscribers = MappingProxyType(subscribers)
        self._domains = frozenset(
            tenant.sip_domain.lower() for tenant in snapshot.tenants.values()
        )

    def replace_with(self, other: SnapshotDirectory) -> None:
        """Serve `other`'s subscribers and domains from now on (module rules)."""
        self._subscribers = other._subscribers
        self._domains = other._domains

    def lookup(self, domain: str, user: str) -> SubscriberCredentials | None:
        """The subscriber `user` of `domain`, or None (`CredentialLookup`)."""
        return self._subscribers.get((domain.lower(), user))

    def is_local_domain(self, domain: str) -> bool:
        """Whether `domain` is one of our tenants' SIP domains (`DomainLookup`)."""
        return domain.lower() in self._domains
