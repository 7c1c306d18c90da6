"""The audit log's `before` / `after` views of Cloud PBX rows.

Rules:
- A view holds what the API shows of the row, by names (tenant, site, trunk, msisdn),
  never ids, so the audit trail still reads after the rows are gone.
- Never a password, HA1 or any digest: a credential shows as its username and realm only.
- Views are plain JSON values (str, int, bool, None, lists and dicts of them).
"""

from __future__ import annotations

from cloudpbx.models import Extension, MobileLine, Site, Tenant, Trunk

__all__ = [
    "extension_view",
    "format_source",
    "mobile_line_view",
    "site_view",
    "tenant_view",
    "trunk_view",
]


def tenant_view(tenant: Tenant) -> dict[str, object]:
    return {
        "name": tenant.name,
        "contract_holder_name": tenant.contract_holder_name,
        "address": tenant.address,
        "basic_contract": tenant.basic_contract,
        "sip_domain": tenant.sip_domain,
    }


def site_view(site: Site) -> dict[str, object]:
    return {"tenant": site.tenant.name, "name": site.name}


def mobile_line_view(line: MobileLine) -> dict[str, object]:
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
    }
