"""Queries over the config store: the snapshot builder and registration persistence.

Rules:
- `load_snapshot` reads everything the switch routes on in one pass: one SELECT per table,
  eager-loaded, with lazy loading turned into an error (`raiseload`), so the number of
  queries does not grow with the number of rows. References between the tables (an
  extension's mobile line and trunk, a destination's trunk, a schedule's destination set)
  are resolved through the ids of rows already read, not by joins.
- It is one consistent read: on PostgreSQL a session that has not begun a transaction
  begins one at REPEATABLE READ, so every SELECT sees the same committed state (at READ
  COMMITTED an extension could be read before the mobile line a concurrent writer adds
  with it). Call it on a fresh session or at the start of a transaction.
- It returns values only (see `cloudpbx.snapshot`); no ORM object escapes.
- Functions here never commit: the caller owns the session and its transaction.
- Registrations are keyed by (address-of-record, contact URI), as RFC 3261 §10.3 step 7
  keys bindings; `store_registration` replaces the row for that key.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, raiseload, selectinload

from cloudpbx.domain import AreaKind, DigestAlgorithm, Transport
from cloudpbx.models import (
    Extension,
    MobileLine,
    Registration,
    Site,
    Tenant,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    Trunk,
)
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DestinationEntry,
    DestinationSetEntry,
    DigestCredential,
    ExtensionEntry,
    MobileLineEntry,
    ScheduleEntry,
    ScheduleRangeEntry,
    TenantEntry,
    TollFreeEntry,
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


def _digest_credential(username: str, realm: str, md5: str, sha256: str) -> DigestCredential:
    return DigestCredential(
        username=username,
        realm=realm,
        ha1_by_algorithm=MappingProxyType(
            {DigestAlgorithm.MD5: md5, DigestAlgorithm.SHA_256: sha256}
        ),
    )


def _extension_entry(
    extension: Extension,
    tenant: Tenant,
    site: Site,
    lines: dict[int, MobileLineEntry],
    trunk_names: dict[int, str],
) -> ExtensionEntry:
    credential = extension.credential
    digest_credential = None
    if credential is not None:
        digest_credential = _digest_credential(
            credential.username, credential.realm, credential.ha1_md5, credential.ha1_sha256
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
        voicemail_enabled=extension.voicemail_enabled,
        mobile_line=None if extension.mobile_line_id is None else lines[extension.mobile_line_id],
        mobile_identity=extension.mobile_identity,
        range_last=extension.range_last,
        trunk_name=None if extension.trunk_id is None else trunk_names[extension.trunk_id],
    )


def _trunk_entry(trunk: Trunk, tenant_names: dict[int, str]) -> TrunkEntry:
    credential = None
    if (
        trunk.auth_username is not None
        and trunk.auth_realm is not None
        and trunk.auth_ha1_md5 is not None
        and trunk.auth_ha1_sha256 is not None
    ):
        credential = _digest_credential(
            trunk.auth_username, trunk.auth_realm, trunk.auth_ha1_md5, trunk.auth_ha1_sha256
        )
    return TrunkEntry(
        name=trunk.name,
        tenant_name=None if trunk.tenant_id is None else tenant_names[trunk.tenant_id],
        host=trunk.host,
        port=trunk.port,
        transport=trunk.transport,
        sources=tuple(
            TrunkSource(address=source.address, port=source.port)
            for source in trunk.source_addresses
        ),
        kind=trunk.kind,
        capacity=trunk.capacity,
        credential=credential,
        caller_area_header=trunk.caller_area_header,
        abroad_header=trunk.abroad_header,
        identity_trusted=trunk.identity_trusted,
    )


def _mobile_line_entry(line: MobileLine, tenant_names: dict[int, str]) -> MobileLineEntry:
    return MobileLineEntry(
        tenant_name=tenant_names[line.tenant_id],
        msisdn=line.msisdn,
        b_number=line.b_number,
        option_050=line.option_050,
        number_050=line.number_050,
        option_gateway=line.option_gateway,
        option_roaming=line.option_roaming,
        abroad=line.abroad,
    )


def _tollfree_entry(
    number: TollFreeNumber, tenant_names: dict[int, str], trunk_names: dict[int, str]
) -> TollFreeEntry:
    set_names = {
        destination_set.id: destination_set.name for destination_set in number.destination_sets
    }
    return TollFreeEntry(
        number=number.number,
        tenant_name=tenant_names[number.tenant_id],
        service_type=number.service_type,
        contracted_channels=number.contracted_channels,
        channel_setting=number.channel_setting,
        strict_distribution=number.strict_distribution,
        no_answer_timeout_seconds=number.no_answer_timeout_seconds,
        after_hours_announcement=number.after_hours_announcement,
        refusal_announcement=number.refusal_announcement,
        refusal_action=number.refusal_action,
        designated_whole_country=number.designated_whole_country,
        designated_prefectures=frozenset(
            area.code for area in number.designated_areas if area.kind is AreaKind.PREFECTURE
        ),
        designated_area_codes=frozenset(
            area.code for area in number.designated_areas if area.kind is AreaKind.AREA_CODE
        ),
        allow_fixed=number.allow_fixed,
        allow_mobile=number.allow_mobile,
        allow_withheld=number.allow_withheld,
        options=frozenset(number.options),
        destination_sets=MappingProxyType(
            {
                destination_set.name: DestinationSetEntry(
                    name=destination_set.name,
                    destinations=tuple(
                        DestinationEntry(
                            number=destination.number,
                            weight=destination.weight,
                            trunk_name=trunk_names[destination.trunk_id],
                        )
                        for destination in destination_set.destinations
                    ),
                )
                for destination_set in number.destination_sets
            }
        ),
        schedules=tuple(
            ScheduleEntry(
                name=schedule.name,
                action=schedule.action,
                destination_set_name=(
                    None
                    if schedule.destination_set_id is None
                    else set_names[schedule.destination_set_id]
                ),
                enabled=schedule.enabled,
                ranges=tuple(
                    ScheduleRangeEntry(
                        kind=item.kind,
                        weekday=item.weekday,
                        day=None if item.day is None else datetime.date.fromisoformat(item.day),
                        start_minute=item.start_minute,
                        end_minute=item.end_minute,
                    )
                    for item in schedule.ranges
                ),
            )
            for schedule in number.schedules
        ),
    )


def _begin_consistent_read(session: Session) -> None:
    """Begin the session's transaction at REPEATABLE READ on PostgreSQL (module rules)."""
    if session.in_transaction():
        return  # the caller's transaction decides; its isolation cannot change now
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def load_snapshot(session: Session) -> ConfigSnapshot:
    """Read the whole routing configuration into an immutable `ConfigSnapshot`.

    Raises:
        ValueError: the stored data breaks a snapshot rule (see `ConfigSnapshot.build`).
    """
    _begin_consistent_read(session)
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
        .options(selectinload(Trunk.source_addresses), raiseload("*"))
    ).all()
    lines = session.scalars(
        select(MobileLine).order_by(MobileLine.id).options(raiseload("*"))
    ).all()
    tollfree_numbers = session.scalars(
        select(TollFreeNumber)
        .order_by(TollFreeNumber.id)
        .options(
            selectinload(TollFreeNumber.destination_sets).selectinload(
                TollFreeDestinationSet.destinations
            ),
            selectinload(TollFreeNumber.schedules).selectinload(TollFreeSchedule.ranges),
            selectinload(TollFreeNumber.designated_areas),
            raiseload("*"),
        )
    ).all()

    tenant_names = {tenant.id: tenant.name for tenant in tenants}
    trunk_names = {trunk.id: trunk.name for trunk in trunks}
    line_entries = {line.id: _mobile_line_entry(line, tenant_names) for line in lines}
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
                address=tenant.address,
                basic_contract=tenant.basic_contract,
                announcement_language=tenant.announcement_language,
                pstn_trunk=tenant.pstn_trunk,
                mobile_trunk=tenant.mobile_trunk,
            )
        )
        for extension in sorted(tenant.extensions, key=_by_id):
            site = sites_by_id[extension.site_id]
            extension_entries.append(
                _extension_entry(extension, tenant, site, line_entries, trunk_names)
            )

    return ConfigSnapshot.build(
        tenant_entries,
        extension_entries,
        [_trunk_entry(trunk, tenant_names) for trunk in trunks],
        line_entries.values(),
        [_tollfree_entry(number, tenant_names, trunk_names) for number in tollfree_numbers],
    )


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
