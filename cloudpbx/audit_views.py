"""The audit log's `before` / `after` views of configuration rows, shared by every writer.

The Customer Control API (`custcon_api.pbx`, `custcon_api.tollfree.service`) and
provisioning files (`cloudpbx.provisioning`) write audit rows for the same entities;
both build their views here, so the two never disagree about what a row looks like.
(An account's view is `cloudpbx.models.Account.audit_view`.)

Rules:
- A view holds what the API shows of the row, by names (tenant, site, trunk, msisdn,
  destination set, login), never ids, so the audit trail still reads after the rows are
  gone.
- Never a password, HA1 or any digest: a credential shows as its username and realm only.
  A change to a secret alone therefore has equal `before` and `after` views.
- Views are plain JSON values (str, int, bool, None, lists and dicts of them): enums as
  their values, dates as ISO dates, times of day as `HH:MM` (`24:00` only as an end).
- The toll-free views equal the API's response bodies dumped as JSON
  (`custcon_api.tollfree.schemas`: `TollFreeNumberPublic`, `DestinationSetPublic`,
  `SchedulePublic`, `DesignatedAreas`), key for key; a field added to one must be added
  to the other.
"""

from __future__ import annotations

import datetime

from cloudpbx.domain import AnnouncementLanguage, AreaKind
from cloudpbx.models import (
    Extension,
    MobileLine,
    Site,
    Tenant,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    TollFreeScheduleRange,
    Trunk,
)
from cloudpbx.rules import format_time_of_day

__all__ = [
    "designated_areas_view",
    "destination_set_view",
    "extension_view",
    "format_source",
    "mobile_line_view",
    "schedule_view",
    "site_view",
    "tenant_view",
    "tollfree_contract_view",
    "tollfree_number_view",
    "trunk_view",
]


# --- Cloud PBX settings ---------------------------------------------------------------


def tenant_view(tenant: Tenant) -> dict[str, object]:
    """A tenant's contract information, SIP domain, announcement language and outbound
    carrier trunks."""
    return {
        "name": tenant.name,
        "contract_holder_name": tenant.contract_holder_name,
        "address": tenant.address,
        "basic_contract": tenant.basic_contract,
        "sip_domain": tenant.sip_domain,
        # Unset only on a new row before its first flush (the column default is `ja`).
        "announcement_language": str(tenant.announcement_language or AnnouncementLanguage.JA),
        "pstn_trunk": tenant.pstn_trunk,
        "mobile_trunk": tenant.mobile_trunk,
    }


def site_view(site: Site) -> dict[str, object]:
    """A site by its tenant and name."""
    return {"tenant": site.tenant.name, "name": site.name}


def mobile_line_view(line: MobileLine) -> dict[str, object]:
    """A mobile line, its options and whether it is abroad."""
    return {
        "tenant": line.tenant.name,
        "msisdn": line.msisdn,
        "contract_holder_name": line.contract_holder_name,
        "b_number": line.b_number,
        "options": {
            "number_050": line.number_050,
            "gateway": line.option_gateway,
            "roaming": line.option_roaming,
        },
        "abroad": line.abroad,
    }


def extension_view(extension: Extension) -> dict[str, object]:
    """An extension of any kind; its credential as username and realm only."""
    credential = extension.credential
    return {
        "tenant": extension.tenant.name,
        "number": extension.number,
        "kind": extension.kind.value,
        "site": extension.site.name,
        "display_name": extension.display_name,
        "sip_username": None if credential is None else credential.username,
        "sip_realm": None if credential is None else credential.realm,
        "digest_algorithms": (
            None if extension.digest_algorithms is None else list(extension.digest_algorithms)
        ),
        "no_answer_timeout_seconds": extension.no_answer_timeout_seconds,
        "static_contact_uri": extension.static_contact_uri,
        "voicemail_enabled": extension.voicemail_enabled,
        "mobile_line": None if extension.mobile_line is None else extension.mobile_line.msisdn,
        "mobile_identity": (
            None if extension.mobile_identity is None else extension.mobile_identity.value
        ),
        "trunk": None if extension.trunk is None else extension.trunk.name,
        "range_last": extension.range_last,
    }


def format_source(address: str, port: int | None) -> str:
    """`ADDRESS`, `IPv4:PORT` or `[IPv6]:PORT`: the form the API reads and writes."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def trunk_view(trunk: Trunk) -> dict[str, object]:
    """A trunk; its digest credential as username and realm only."""
    return {
        "name": trunk.name,
        "kind": trunk.kind.value,
        "tenant": None if trunk.tenant is None else trunk.tenant.name,
        "host": trunk.host,
        "port": trunk.port,
        "transport": trunk.transport.value,
        "trusted_sources": [
            format_source(source.address, source.port) for source in trunk.source_addresses
        ],
        "capacity": trunk.capacity,
        "auth_username": trunk.auth_username,
        "auth_realm": trunk.auth_realm,
        "caller_area_header": trunk.caller_area_header,
        "abroad_header": trunk.abroad_header,
        "identity_trusted": trunk.identity_trusted,
    }


# --- toll-free numbers ----------------------------------------------------------------


def _destination_view(destination: TollFreeDestination) -> dict[str, object]:
    return {
        "position": destination.position,
        "number": destination.number,
        "weight": destination.weight,
        "trunk": destination.trunk.name,
    }


def destination_set_view(destination_set: TollFreeDestinationSet) -> dict[str, object]:
    """A destination set and its destinations in order (`DestinationSetPublic`)."""
    return {
        "name": destination_set.name,
        "destinations": [_destination_view(item) for item in destination_set.destinations],
    }


def _schedule_range_view(schedule_range: TollFreeScheduleRange) -> dict[str, object]:
    day = schedule_range.day
    return {
        "kind": schedule_range.kind.value,
        "weekday": schedule_range.weekday,
        # Through `date` as the API does, so a stored text has the API's one ISO form.
        "date": None if day is None else datetime.date.fromisoformat(day).isoformat(),
        "start": format_time_of_day(schedule_range.start_minute),
        "end": format_time_of_day(schedule_range.end_minute),
    }


def schedule_view(schedule: TollFreeSchedule) -> dict[str, object]:
    """A schedule, the set it selects and its ranges (`SchedulePublic`)."""
    return {
        "name": schedule.name,
        "action": schedule.action.value,
        "destination_set": (
            None if schedule.destination_set is None else schedule.destination_set.name
        ),
        "enabled": schedule.enabled,
        "ranges": [_schedule_range_view(item) for item in schedule.ranges],
    }


def designated_areas_view(number: TollFreeNumber) -> dict[str, object]:
    """The originating-area designation, codes sorted (`DesignatedAreas`)."""
    return {
        "whole_country": number.designated_whole_country,
        "prefectures": sorted(
            area.code for area in number.designated_areas if area.kind is AreaKind.PREFECTURE
        ),
        "area_codes": sorted(
            area.code for area in number.designated_areas if area.kind is AreaKind.AREA_CODE
        ),
        "allow_fixed": number.allow_fixed,
        "allow_mobile": number.allow_mobile,
        "allow_withheld": number.allow_withheld,
        "refusal_action": number.refusal_action.value,
    }


def tollfree_number_view(number: TollFreeNumber) -> dict[str, object]:
    """The whole number: contract, settings, destination sets, schedules, areas, grants.

    `TollFreeNumberPublic` with its name lists replaced by the sets' and schedules' own
    views, plus the designated areas and the granted logins (sorted).
    """
    return {
        "number": number.number,
        "tenant": number.tenant.name,
        "service_type": number.service_type.value,
        "contracted_channels": number.contracted_channels,
        "channel_setting": number.channel_setting,
        "strict_distribution": number.strict_distribution,
        "no_answer_timeout_seconds": number.no_answer_timeout_seconds,
        "options": list(number.options),
        "after_hours_announcement": number.after_hours_announcement,
        "destination_sets": [destination_set_view(item) for item in number.destination_sets],
        "schedules": [schedule_view(item) for item in number.schedules],
        "designated_areas": designated_areas_view(number),
        "grants": sorted(grant.account.login for grant in number.grants),
    }


def tollfree_contract_view(number: TollFreeNumber) -> dict[str, object]:
    """What an operator's contract change changes (`tollfree.contract`)."""
    return {
        "service_type": number.service_type.value,
        "contracted_channels": number.contracted_channels,
        "channel_setting": number.channel_setting,
        "options": list(number.options),
        "strict_distribution": number.strict_distribution,
    }
