"""The audit log's `before` / `after` views of Cloud PBX rows.

Rules:
- The views are `cloudpbx.audit_views`, re-exported here: provisioning files audit the
  same entities with the same views, so the API and a file never disagree about what a
  row looks like. Change a view there, not here.
- A view holds what the API shows of the row, by names (tenant, site, trunk, msisdn),
  never ids, so the audit trail still reads after the rows are gone.
- Never a password, HA1 or any digest: a credential shows as its username and realm only.
- Views are plain JSON values (str, int, bool, None, lists and dicts of them).
"""

from __future__ import annotations

from cloudpbx.audit_views import (
    extension_view,
    format_source,
    mobile_line_view,
    site_view,
    tenant_view,
    trunk_view,
)

__all__ = [
    "extension_view",
    "format_source",
    "mobile_line_view",
    "site_view",
    "tenant_view",
    "trunk_view",
]
