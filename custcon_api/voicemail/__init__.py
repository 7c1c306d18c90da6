"""Voicemail messages of fixed IP phones through the API (issue 6 item 4).

Modules:
- `router`: HTTP only (list, download as audio/wav, delete).
- `service`: who may reach which mailbox and what each request changes.
- `schemas`: the message as the API shows it.

`ENDPOINT_ROLES` lists every endpoint with the roles that may call it (for the global
authorization matrix): the operator everywhere, a tenant administrator in their own
tenant, a user only their own extension's mailbox.
"""

from __future__ import annotations

__all__ = ["ENDPOINT_ROLES", "MESSAGES"]

MESSAGES = "/api/v1/tenants/{tenant}/extensions/{number}/voicemail/messages"

_OWNERS = frozenset({"operator", "tenant_admin:own", "user:own"})

ENDPOINT_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", MESSAGES): _OWNERS,
    ("GET", MESSAGES + "/{message_id}/audio"): _OWNERS,
    ("DELETE", MESSAGES + "/{message_id}"): _OWNERS,
}
