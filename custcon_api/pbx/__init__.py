"""Cloud PBX settings: tenants, sites, mobile lines, extensions and trunks (issue 4 part 2).

Modules:
- `router`: HTTP only, every endpoint and the roles it admits in its docstring.
- `schemas`: request and response bodies (`extra="forbid"`, full words).
- `access`: who may do what (authorization before any lookup) and the end of every
  write transaction (audit row, commit, `cloudpbx.notify.CONFIG`).
- `views`: the audit log's `before` / `after` views (never a password or HA1).
- `tenants`, `mobile_lines`, `extensions`, `trunks`: the services, with their rules.

`ENDPOINT_ROLES` lists every endpoint with the roles that may call it (for the global
authorization matrix); "own" means only within the caller's own tenant (for a `user`,
only their own extension).
"""

from __future__ import annotations

__all__ = ["ENDPOINT_ROLES"]

ENDPOINT_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/tenants"): frozenset({"operator"}),
    ("POST", "/api/v1/tenants"): frozenset({"operator"}),
    ("GET", "/api/v1/tenants/{tenant}"): frozenset({"operator", "tenant_admin:own"}),
    ("PATCH", "/api/v1/tenants/{tenant}"): frozenset({"operator", "tenant_admin:own"}),
    ("DELETE", "/api/v1/tenants/{tenant}"): frozenset({"operator"}),
    ("GET", "/api/v1/tenants/{tenant}/sites"): frozenset({"operator", "tenant_admin:own"}),
    ("POST", "/api/v1/tenants/{tenant}/sites"): frozenset({"operator", "tenant_admin:own"}),
    ("DELETE", "/api/v1/tenants/{tenant}/sites/{site}"): frozenset(
        {"operator", "tenant_admin:own"}
    ),
    ("GET", "/api/v1/tenants/{tenant}/mobile-lines"): frozenset({"operator", "tenant_admin:own"}),
    ("POST", "/api/v1/tenants/{tenant}/mobile-lines"): frozenset({"operator"}),
    ("GET", "/api/v1/tenants/{tenant}/mobile-lines/{msisdn}"): frozenset(
        {"operator", "tenant_admin:own"}
    ),
    ("PATCH", "/api/v1/tenants/{tenant}/mobile-lines/{msisdn}"): frozenset({"operator"}),
    ("DELETE", "/api/v1/tenants/{tenant}/mobile-lines/{msisdn}"): frozenset({"operator"}),
    ("GET", "/api/v1/tenants/{tenant}/extensions"): frozenset({"operator", "tenant_admin:own"}),
    ("POST", "/api/v1/tenants/{tenant}/extensions"): frozenset({"operator", "tenant_admin:own"}),
    ("GET", "/api/v1/tenants/{tenant}/extensions/{number}"): frozenset(
        {"operator", "tenant_admin:own", "user:own"}
    ),
    ("PATCH", "/api/v1/tenants/{tenant}/extensions/{number}"): frozenset(
        {"operator", "tenant_admin:own", "user:own"}
    ),
    ("DELETE", "/api/v1/tenants/{tenant}/extensions/{number}"): frozenset(
        {"operator", "tenant_admin:own"}
    ),
    ("PUT", "/api/v1/tenants/{tenant}/extensions/{number}/mobile-line"): frozenset(
        {"operator", "tenant_admin:own"}
    ),
    ("GET", "/api/v1/trunks"): frozenset({"operator", "tenant_admin:own"}),
    ("POST", "/api/v1/trunks"): frozenset({"operator"}),
    ("GET", "/api/v1/trunks/{name}"): frozenset({"operator", "tenant_admin:own"}),
    ("PATCH", "/api/v1/trunks/{name}"): frozenset({"operator"}),
    ("DELETE", "/api/v1/trunks/{name}"): frozenset({"operator"}),
}
"""(method, path) -> roles allowed. `tenant_admin:own`: the admin of the tenant in the
path (for trunks: the tenant's own trunks, others are 404 to them; for PATCH of the
tenant: only its own settings, `announcement_language`); `user:own`: the user
owning the extension in the path, and for PATCH only its own settings (display_name,
no_answer_timeout_seconds, voicemail_enabled). Everyone else gets 403."""
