"""Queries over the config store: the snapshot builder and registration persistence.

Rules:
- `load_snapshot` reads everything the switch routes on in one pass: one SELECT per table,
  eager-loaded, with lazy loading turned into an error (`raiseload`), so the number of
  queries does not grow with the number of rows. It returns values only (see
  `cloudpbx.snapshot`); no ORM object escapes.
- Functions here never commit: the caller owns the session and its transaction.
- Registrations are keyed by (address-of-record, contact URI), as RFC 3261 §10.3 step 7
  keys bindings; `store_registration` replaces the row for that key.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, raiseload, selectinload

from cloudpbx.domain import DigestAlgorithm, Transport
from cloudpbx.models import Extension, Registration, Site, Tenant, Trunk
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DigestCredential,
    ExtensionEntry,
    TenantEntry,
    TrunkEntry,
    TrunkSource,
)

__all__ = [
    "RegistrationRecord",
    "delete_expired_registrations",
    "delete_registration",
    "load_registrations",
    "load_snapshot",
    "store_registration",
]


def _extension_entry(extension: Extension, tenant: Tenant, site: Site) -> ExtensionEntry:
    credential = extension.credential
    digest_credential = None
    if credential is not None:
        digest_credential = DigestCredential(
            username=credential.username,
            realm=credential.realm,
            ha1_by_algorithm=MappingProxyType(
                {
                    DigestAlgorithm.MD5: credential.ha1_md5,
                    DigestAlgorithm.SHA_256: credential.ha1_sha256,
                }
            ),
        )
    algorithms = extension.digest_algorithms
    return ExtensionEntry(
        tenant_name=tenant.name,
        site_name=site.name,
        domain=tenant.sip_domain.lower(),
        number=extension.number,
        kind=extension.kind,
        display_name=extension.display_name,
        digest_algorithms=(
            None if algorithms is None else tuple(DigestAlgorithm(name) for name in algorithms)
        ),
        no_answer_timeout_seconds=extension.no_answer_timeout_seconds,
        static_contact_uri=extension.static_contact_uri,
        credential=digest_credential,
    )


def load_snapshot(session: Session) -> ConfigSnapshot:
    """Read the whole routing configuration into an immutable `ConfigSnapshot`.

    Raises:
        ValueError: the stored data breaks a snapshot rule (see `ConfigSnapshot.build`).
    """
    tenants = session.scalars(
        select(Tenant)
        .order_by(Tenant.id)
        .options(
            selectinload(Tenant.sites),
            selectinload(Tenant.extensions).selectinload(Extension.credential),
            raiseload("*"),
        )
    ).all()
    trunks = session.scalars(
        select(Trunk)
        .order_by(Trunk.id)
        .options(
            selectinload(Trunk.tenant),
            selectinload(Trunk.source_addresses),
            raiseload("*"),
        )
    ).all()

    tenant_entries: list[TenantEntry] = []
    extension_entries: list[ExtensionEntry] = []
    for tenant in tenants:
        sites_by_id = {site.id: site for site in tenant.sites}
        tenant_entries.append(
            TenantEntry(
                name=tenant.name,
                contract_holder_name=tenant.contract_holder_name,
                sip_domain=tenant.sip_domain.lower(),
                site_names=tuple(site.name for site in sorted(tenant.sites, key=_by_id)),
            )
        )
        for extension in sorted(tenant.extensions, key=_by_id):
            site = sites_by_id[extension.site_id]
            extension_entries.append(_extension_entry(extension, tenant, site))

    trunk_entries = [
        TrunkEntry(
            name=trunk.name,
            tenant_name=None if trunk.tenant is None else trunk.tenant.name,
            host=trunk.host,
            port=trunk.port,
            transport=trunk.transport,
            sources=tuple(
                TrunkSource(address=source.address, port=source.port)
                for source in trunk.source_addresses
            ),
        )
        for trunk in trunks
    ]
    return ConfigSnapshot.build(tenant_entries, extension_entries, trunk_entries)


def _by_id(row: Site | Extension) -> int:
    return row.id


@dataclass(frozen=True, slots=True)
class RegistrationRecord:
    """One persisted binding, as the registrar stores and reloads it."""

    address_of_record: str
    contact_uri: str
    expires_at: float
    """Absolute unix time in seconds."""
    call_id: str
    cseq: int
    received_host: str
    received_port: int
    transport: Transport
    instance_id: str | None = None
    user_agent: str | None = None


def _record(row: Registration) -> RegistrationRecord:
    return RegistrationRecord(
        address_of_record=row.address_of_record,
        contact_uri=row.contact_uri,
        expires_at=row.expires_at,
        call_id=row.call_id,
        cseq=row.cseq,
        received_host=row.received_host,
        received_port=row.received_port,
        transport=row.transport,
        instance_id=row.instance_id,
        user_agent=row.user_agent,
    )


def load_registrations(session: Session, now: float) -> tuple[RegistrationRecord, ...]:
    """Every binding still valid at `now` (expires_at > now), by AOR then contact."""
    rows = session.scalars(
        select(Registration)
        .where(Registration.expires_at > now)
        .order_by(Registration.address_of_record, Registration.contact_uri)
    ).all()
    return tuple(_record(row) for row in rows)


def store_registration(session: Session, record: RegistrationRecord) -> None:
    """Insert or replace the binding for (address_of_record, contact_uri)."""
    row = session.scalars(
        select(Registration).where(
            Registration.address_of_record == record.address_of_record,
            Registration.contact_uri == record.contact_uri,
        )
    ).one_or_none()
    if row is None:
        row = Registration(
            address_of_record=record.address_of_record, contact_uri=record.contact_uri
        )
        session.add(row)
    row.expires_at = record.expires_at
    row.call_id = record.call_id
    row.cseq = record.cseq
    row.received_host = record.received_host
    row.received_port = record.received_port
    row.transport = record.transport
    row.instance_id = record.instance_id
    row.user_agent = record.user_agent
    session.flush()


def delete_registration(session: Session, address_of_record: str, contact_uri: str) -> None:
    """Remove one binding (a REGISTER with Expires: 0); absent is not an error."""
    session.execute(
        delete(Registration).where(
            Registration.address_of_record == address_of_record,
            Registration.contact_uri == contact_uri,
        )
    )


def delete_expired_registrations(session: Session, now: float) -> int:
    """Remove bindings expired at `now`; returns how many were removed."""
    result = session.execute(delete(Registration).where(Registration.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
