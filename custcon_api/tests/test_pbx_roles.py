"""Who may call each Cloud PBX endpoint: every role (operator, the demo tenant's admin,
user and toll-free viewer) against its own tenant `demo` and the tenant `other`.

A refused call is 403 whether or not its object exists, changes nothing and publishes
nothing; an allowed write publishes `config`. `custcon_api.pbx.ENDPOINT_ROLES` must list
exactly the endpoints the app serves under the pbx paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import Account, ApiToken
from cloudpbx.notify import CONFIG, ChangeNotifier
from custcon_api import create_app
from custcon_api.pbx import ENDPOINT_ROLES
from custcon_api.pbx.router import router as pbx_router
from custcon_api.security import new_token, token_digest

from .conftest import START, FakeClock, Subscriber, bearer, token_for

ROLES = {
    "operator": "operator",
    "tenant_admin": "admin@demo",
    "user": "user1001@demo",
    "tollfree_viewer": "tf@demo",
}
TARGETS = {"own": "demo", "other": "other"}
HOLDERS = {"demo": "デモ株式会社", "other": "他社株式会社"}
LINES = {"demo": ("09066660001", "09066660002"), "other": ("09066660011", "09066660012")}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    """The route's path template (as in `ENDPOINT_ROLES`)."""
    url: Callable[[str], str]
    """The URL for the target tenant."""
    allowed: frozenset[str]
    """`operator`, `tenant_admin:own`, `user:own` as in `ENDPOINT_ROLES`."""
    status: int
    """The answer to an allowed call."""
    body: Callable[[str], dict[str, Any]] | None = None
    writes: bool = False
    other_admin_status: int | None = None
    """An administrator's answer for the other tenant, when not 403 (trunks: 404)."""


T = "/api/v1/tenants"
OPERATOR = frozenset({"operator"})
ADMINS = frozenset({"operator", "tenant_admin:own"})
OWNERS = frozenset({"operator", "tenant_admin:own", "user:own"})

ENDPOINTS = [
    Endpoint("GET", T, lambda t: T, OPERATOR, 200),
    Endpoint(
        "POST",
        T,
        lambda t: T,
        OPERATOR,
        201,
        lambda t: {"name": f"new-{t}", "contract_holder_name": "新社", "sip_domain": f"{t}.new.jp"},
        writes=True,
    ),
    Endpoint("GET", T + "/{tenant}", lambda t: f"{T}/{t}", ADMINS, 200),
    Endpoint(
        "PATCH",
        T + "/{tenant}",
        lambda t: f"{T}/{t}",
        ADMINS,
        200,
        lambda t: {"announcement_language": "en"},
        writes=True,
    ),
    Endpoint("DELETE", T + "/{tenant}", lambda t: f"{T}/{t}", OPERATOR, 409),
    Endpoint("GET", T + "/{tenant}/sites", lambda t: f"{T}/{t}/sites", ADMINS, 200),
    Endpoint(
        "POST",
        T + "/{tenant}/sites",
        lambda t: f"{T}/{t}/sites",
        ADMINS,
        201,
        lambda t: {"name": "another"},
        writes=True,
    ),
    Endpoint(
        "DELETE",
        T + "/{tenant}/sites/{site}",
        lambda t: f"{T}/{t}/sites/empty",
        ADMINS,
        204,
        writes=True,
    ),
    Endpoint("GET", T + "/{tenant}/mobile-lines", lambda t: f"{T}/{t}/mobile-lines", ADMINS, 200),
    Endpoint(
        "POST",
        T + "/{tenant}/mobile-lines",
        lambda t: f"{T}/{t}/mobile-lines",
        OPERATOR,
        201,
        lambda t: {
            "msisdn": "0906666" + ("0099" if t == "demo" else "0098"),
            "contract_holder_name": HOLDERS[t],
        },
        writes=True,
    ),
    Endpoint(
        "GET",
        T + "/{tenant}/mobile-lines/{msisdn}",
        lambda t: f"{T}/{t}/mobile-lines/{LINES[t][0]}",
        ADMINS,
        200,
    ),
    Endpoint(
        "PATCH",
        T + "/{tenant}/mobile-lines/{msisdn}",
        lambda t: f"{T}/{t}/mobile-lines/{LINES[t][0]}",
        OPERATOR,
        200,
        lambda t: {"abroad": True},
        writes=True,
    ),
    Endpoint(
        "DELETE",
        T + "/{tenant}/mobile-lines/{msisdn}",
        lambda t: f"{T}/{t}/mobile-lines/{LINES[t][1]}",
        OPERATOR,
        204,
        writes=True,
    ),
    Endpoint("GET", T + "/{tenant}/extensions", lambda t: f"{T}/{t}/extensions", ADMINS, 200),
    Endpoint(
        "POST",
        T + "/{tenant}/extensions",
        lambda t: f"{T}/{t}/extensions",
        ADMINS,
        201,
        lambda t: {"number": "8009", "site": "matrix", "static_contact_uri": "sip:x@192.0.2.9"},
        writes=True,
    ),
    Endpoint(
        "GET",
        T + "/{tenant}/extensions/{number}",
        lambda t: f"{T}/{t}/extensions/1001",
        OWNERS,
        200,
    ),
    Endpoint(
        "PATCH",
        T + "/{tenant}/extensions/{number}",
        lambda t: f"{T}/{t}/extensions/1001",
        OWNERS,
        200,
        lambda t: {"display_name": "changed"},
        writes=True,
    ),
    Endpoint(
        "DELETE",
        T + "/{tenant}/extensions/{number}",
        lambda t: f"{T}/{t}/extensions/8002",
        ADMINS,
        204,
        writes=True,
    ),
    Endpoint(
        "PUT",
        T + "/{tenant}/extensions/{number}/mobile-line",
        lambda t: f"{T}/{t}/extensions/8003/mobile-line",
        ADMINS,
        200,
        lambda t: {"msisdn": LINES[t][1], "identity": "a"},
        writes=True,
    ),
    Endpoint(
        "GET", "/api/v1/trunks", lambda t: "/api/v1/trunks", ADMINS, 200, other_admin_status=200
    ),
    Endpoint(
        "POST",
        "/api/v1/trunks",
        lambda t: "/api/v1/trunks",
        OPERATOR,
        201,
        lambda t: {"name": f"new-{t}", "kind": "pstn", "host": "192.0.2.77"},
        writes=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/trunks/{name}",
        lambda t: f"/api/v1/trunks/pbx-{t}",
        ADMINS,
        200,
        other_admin_status=404,
    ),
    Endpoint(
        "PATCH",
        "/api/v1/trunks/{name}",
        lambda t: f"/api/v1/trunks/pbx-{t}",
        OPERATOR,
        200,
        lambda t: {"capacity": 10},
        writes=True,
    ),
    Endpoint(
        "DELETE",
        "/api/v1/trunks/{name}",
        lambda t: f"/api/v1/trunks/pbx-{t}",
        OPERATOR,
        204,
        writes=True,
    ),
]


def _allowed(endpoint: Endpoint, role: str, target: str) -> int | None:
    """The expected status when not 403."""
    if role == "operator":
        return endpoint.status if "operator" in endpoint.allowed else None
    if role == "tenant_admin" and "tenant_admin:own" in endpoint.allowed:
        if target == "own":
            return endpoint.status
        return endpoint.other_admin_status
    if role == "user" and "user:own" in endpoint.allowed and target == "own":
        return endpoint.status
    return None


@pytest.fixture
def api(
    session_factory: sessionmaker[Session], clock: FakeClock, notifier: ChangeNotifier
) -> Iterator[TestClient]:
    """The app, with in both tenants: sites `matrix` and `empty`, two mobile lines, a
    fixed extension 8002, a mobile extension 8003 on the first line, a PBX trunk."""
    with TestClient(create_app(session_factory, clock=clock, notifier=notifier)) as client:
        operator = bearer(stored_token(session_factory, "operator"))
        for tenant in TARGETS.values():
            base = f"{T}/{tenant}"
            requests: list[tuple[str, dict[str, Any]]] = [
                (f"{base}/sites", {"name": "matrix"}),
                (f"{base}/sites", {"name": "empty"}),
                *(
                    (
                        f"{base}/mobile-lines",
                        {"msisdn": msisdn, "contract_holder_name": HOLDERS[tenant]},
                    )
                    for msisdn in LINES[tenant]
                ),
                (
                    f"{base}/extensions",
                    {"number": "8002", "site": "matrix", "static_contact_uri": "sip:a@192.0.2.8"},
                ),
                (
                    f"{base}/extensions",
                    {
                        "number": "8003",
                        "kind": "mobile",
                        "site": "matrix",
                        "mobile_line": LINES[tenant][0],
                    },
                ),
                (
                    "/api/v1/trunks",
                    {
                        "name": f"pbx-{tenant}",
                        "kind": "customer_pbx",
                        "tenant": tenant,
                        "host": "192.0.2.50",
                    },
                ),
            ]
            for url, body in requests:
                response = client.post(url, headers=operator, json=body)
                assert response.status_code == 201, response.text
        yield client


def stored_token(session_factory: sessionmaker[Session], login: str) -> str:
    """A valid bearer token of `login`, written straight into the store (a login through
    the API costs an argon2 verification, and the matrix has hundreds of cases)."""
    token = new_token()
    with session_factory() as session:
        account = session.scalars(select(Account).where(Account.login == login)).one()
        session.add(
            ApiToken(
                token_sha256=token_digest(token),
                account=account,
                issued_at=START,
                expires_at=START + 3600,
            )
        )
        session.commit()
    return token


MATRIX = [
    pytest.param(endpoint, role, target, id=f"{endpoint.method} {endpoint.path} {role} {target}")
    for endpoint in ENDPOINTS
    for role in ROLES
    for target in TARGETS
]


# Authorization does not depend on the database: the matrix runs on SQLite only (both
# backends run every other test here).
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("endpoint", "role", "target"), MATRIX)
def test_role_matrix(
    api: TestClient,
    session_factory: sessionmaker[Session],
    subscriber: Subscriber,
    endpoint: Endpoint,
    role: str,
    target: str,
) -> None:
    headers = bearer(stored_token(session_factory, ROLES[role]))
    subscriber.received()
    tenant = TARGETS[target]
    body = None if endpoint.body is None else endpoint.body(tenant)
    response = api.request(endpoint.method, endpoint.url(tenant), headers=headers, json=body)
    expected = _allowed(endpoint, role, target)
    if expected is None:
        assert response.status_code == 403, response.text
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert subscriber.received() == []
        return
    assert response.status_code == expected, response.text
    if endpoint.writes and expected < 300:
        assert subscriber.received() == [CONFIG]
    else:
        assert subscriber.received() == []


@pytest.mark.parametrize(
    "endpoint", [pytest.param(e, id=f"{e.method} {e.path}") for e in ENDPOINTS]
)
def test_every_pbx_endpoint_needs_a_token(api: TestClient, endpoint: Endpoint) -> None:
    body = None if endpoint.body is None else endpoint.body("demo")
    response = api.request(endpoint.method, endpoint.url("demo"), json=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="custcon"'


def test_refusals_tell_nothing_about_other_tenants(api: TestClient) -> None:
    """A tenant admin gets the same 403 for a tenant that exists and one that does not,
    and a user the same for an extension that exists and one that does not."""
    admin = bearer(token_for(api, "admin@demo"))
    for suffix in ("", "/sites", "/mobile-lines", "/extensions", "/extensions/1001"):
        existing = api.get(f"{T}/other{suffix}", headers=admin)
        missing = api.get(f"{T}/no-such-tenant{suffix}", headers=admin)
        assert existing.status_code == missing.status_code == 403
        assert existing.content == missing.content
    user = bearer(token_for(api, "user1001@demo"))
    existing = api.get(f"{T}/demo/extensions/8002", headers=user)
    missing = api.get(f"{T}/demo/extensions/8999", headers=user)
    assert existing.status_code == missing.status_code == 403
    assert existing.content == missing.content
    operator = bearer(token_for(api, "operator"))
    assert api.get(f"{T}/no-such-tenant/extensions", headers=operator).status_code == 404


def test_endpoint_roles_cover_the_routes(api: TestClient) -> None:
    served = {
        (method, route.path)
        for route in pbx_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    paths = api.get("/openapi.json").json()["paths"]
    app_routes = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert served <= app_routes
    assert served == set(ENDPOINT_ROLES)
    assert {(endpoint.method, endpoint.path) for endpoint in ENDPOINTS} == set(ENDPOINT_ROLES)
    for endpoint in ENDPOINTS:
        assert ENDPOINT_ROLES[(endpoint.method, endpoint.path)] == endpoint.allowed
