"""A tenant's outbound carrier trunks (`pstn_trunk`, `mobile_trunk`) and a trunk's
`identity_trusted` through the Customer Control API: set by the operator only (the tenant
administrator gets 403), 422 naming the field for a trunk that is missing, of another kind
or a tenant's own, 409 for deleting or re-kinding a trunk a tenant names, audit rows and
the `config` notification."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import Tenant, Trunk
from cloudpbx.notify import CONFIG

from .conftest import Subscriber
from .test_pbx import DEMO, TRUNKS, add_pbx_trunk, audit_rows, locations, post_acme


def add_trunk(
    api: TestClient, operator: dict[str, str], name: str, kind: str, **fields: Any
) -> dict[str, Any]:
    host = f"192.0.2.{60 + len(name)}"
    response = api.post(
        TRUNKS, headers=operator, json={"name": name, "kind": kind, "host": host, **fields}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def carrier_trunks(api: TestClient, operator: dict[str, str]) -> None:
    """A second PSTN trunk `pstn-b` and mobile network trunk `mobile-b`."""
    add_trunk(api, operator, "pstn-b", "pstn")
    add_trunk(api, operator, "mobile-b", "mobile_network")


@pytest.mark.usefixtures("carrier_trunks")
def test_the_operator_sets_and_clears_a_tenants_carrier_trunks(
    api: TestClient,
    operator: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    shown = api.get(DEMO, headers=operator).json()
    assert (shown["pstn_trunk"], shown["mobile_trunk"]) == (None, None)
    subscriber.received()
    changed = api.patch(
        DEMO, headers=operator, json={"pstn_trunk": "pstn-b", "mobile_trunk": "mobile-b"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["pstn_trunk"], changed.json()["mobile_trunk"]) == ("pstn-b", "mobile-b")
    assert subscriber.received() == [CONFIG]
    (row,) = audit_rows(session_factory, "tenant.update")
    assert row.actor == "operator" and row.target == "demo"
    assert row.before is not None and row.after is not None
    assert (row.before["pstn_trunk"], row.after["pstn_trunk"]) == (None, "pstn-b")
    assert (row.before["mobile_trunk"], row.after["mobile_trunk"]) == (None, "mobile-b")
    with session_factory() as session:
        stored = session.scalars(select(Tenant).where(Tenant.name == "demo")).one()
        assert (stored.pstn_trunk, stored.mobile_trunk) == ("pstn-b", "mobile-b")
    # The same values again: nothing changes, nothing is audited or published.
    again = api.patch(DEMO, headers=operator, json={"pstn_trunk": "pstn-b"})
    assert again.status_code == 200 and subscriber.received() == []
    assert len(audit_rows(session_factory, "tenant.update")) == 1
    # null is the carrier-wide default again; an absent field is left alone.
    cleared = api.patch(DEMO, headers=operator, json={"pstn_trunk": None})
    assert cleared.status_code == 200
    assert (cleared.json()["pstn_trunk"], cleared.json()["mobile_trunk"]) == (None, "mobile-b")
    assert subscriber.received() == [CONFIG]
    # At creation too.
    created = post_acme(api, operator, pstn_trunk="pstn-b")
    assert created.status_code == 201, created.text
    assert (created.json()["pstn_trunk"], created.json()["mobile_trunk"]) == ("pstn-b", None)
    (create_row,) = audit_rows(session_factory, "tenant.create")
    assert create_row.after is not None and create_row.after["pstn_trunk"] == "pstn-b"


@pytest.mark.usefixtures("carrier_trunks")
def test_the_tenant_admin_may_not_choose_the_carrier_trunks(
    api: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    for body in (
        {"pstn_trunk": "pstn-b"},
        {"mobile_trunk": "mobile-b"},
        {"mobile_trunk": None},
        {"announcement_language": "en", "pstn_trunk": "pstn-b"},
    ):
        refused = api.patch(DEMO, headers=admin, json=body)
        assert refused.status_code == 403, (body, refused.text)
    shown = api.get(DEMO, headers=admin).json()
    assert (shown["pstn_trunk"], shown["announcement_language"]) == (None, "ja")
    assert audit_rows(session_factory, "tenant.update") == []
    # The admin's own setting still works, and the admin reads the operator's choice.
    assert api.patch(DEMO, headers=admin, json={"announcement_language": "en"}).status_code == 200


@pytest.mark.usefixtures("carrier_trunks")
def test_a_carrier_trunk_of_the_right_kind_is_required(
    api: TestClient, operator: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    add_pbx_trunk(api, operator, "pbx-demo", "demo")
    add_trunk(api, operator, "gw-demo", "external_gateway", tenant="demo")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"pstn_trunk": "nowhere"}, ["pstn_trunk"]),  # unknown trunk
        ({"mobile_trunk": "nowhere"}, ["mobile_trunk"]),
        ({"pstn_trunk": "mobile-b"}, ["pstn_trunk"]),  # wrong kind
        ({"mobile_trunk": "pstn-b"}, ["mobile_trunk"]),
        ({"pstn_trunk": "gw-demo"}, ["pstn_trunk"]),  # a tenant's own trunk
        ({"mobile_trunk": "pbx-demo"}, ["mobile_trunk"]),
        ({"pstn_trunk": "mobile-b", "mobile_trunk": "nowhere"}, ["pstn_trunk", "mobile_trunk"]),
        ({"pstn_trunk": "bad name!"}, ["pstn_trunk"]),  # not a trunk name at all
        ({"pstn_trunk": 5}, ["pstn_trunk"]),
    ]
    for body, fields in cases:
        response = api.patch(DEMO, headers=operator, json=body)
        assert response.status_code == 422, (body, response.text)
        assert locations(response) == fields, (body, response.text)
    messages = {
        detail["msg"]
        for body, _ in cases[:6]
        for detail in api.patch(DEMO, headers=operator, json=body).json()["detail"]
    }
    assert messages == {
        "names no trunk",
        "must name a pstn trunk",
        "must name a mobile_network trunk",
        "must name a carrier-wide trunk (no tenant)",
    }
    create = post_acme(api, operator, mobile_trunk="pstn-b")
    assert create.status_code == 422 and locations(create) == ["mobile_trunk"]
    assert audit_rows(session_factory, "tenant.update") == []
    assert audit_rows(session_factory, "tenant.create") == []


@pytest.mark.usefixtures("carrier_trunks")
def test_a_trunk_a_tenant_names_is_not_deleted_nor_changed_to_another_kind(
    api: TestClient, operator: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    assert api.patch(DEMO, headers=operator, json={"mobile_trunk": "mobile-b"}).status_code == 200
    deleted = api.delete(f"{TRUNKS}/mobile-b", headers=operator)
    assert deleted.status_code == 409
    assert "demo" in deleted.text and "mobile_trunk" in deleted.text
    to_pstn = api.patch(f"{TRUNKS}/mobile-b", headers=operator, json={"kind": "pstn"})
    assert to_pstn.status_code == 409
    to_gateway = api.patch(
        f"{TRUNKS}/mobile-b",
        headers=operator,
        json={"kind": "external_gateway", "tenant": "demo"},
    )
    assert to_gateway.status_code == 409
    assert audit_rows(session_factory, "trunk.delete") == []
    with session_factory() as session:
        trunk = session.scalars(select(Trunk).where(Trunk.name == "mobile-b")).one()
        assert trunk.kind.value == "mobile_network"
    # Other changes are fine; once the tenant's setting is cleared, the trunk goes.
    assert api.patch(f"{TRUNKS}/mobile-b", headers=operator, json={"port": 5080}).status_code == 200
    assert api.delete(f"{TRUNKS}/pstn-b", headers=operator).status_code == 204  # not named
    assert api.patch(DEMO, headers=operator, json={"mobile_trunk": None}).status_code == 200
    assert api.delete(f"{TRUNKS}/mobile-b", headers=operator).status_code == 204


def test_identity_trusted_is_an_operator_trunk_setting(
    api: TestClient,
    operator: dict[str, str],
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    created = add_trunk(api, operator, "gw-trusted", "external_gateway", tenant="demo")
    assert created["identity_trusted"] is None  # by kind
    trusted = add_trunk(api, operator, "pstn-untrusted", "pstn", identity_trusted=False)
    assert trusted["identity_trusted"] is False
    subscriber.received()
    changed = api.patch(f"{TRUNKS}/gw-trusted", headers=operator, json={"identity_trusted": True})
    assert changed.status_code == 200 and changed.json()["identity_trusted"] is True
    assert subscriber.received() == [CONFIG]
    rows = [
        row for row in audit_rows(session_factory, "trunk.update") if row.target == "gw-trusted"
    ]
    assert len(rows) == 1 and rows[0].before is not None and rows[0].after is not None
    assert (rows[0].before["identity_trusted"], rows[0].after["identity_trusted"]) == (None, True)
    with session_factory() as session:
        stored = session.scalars(select(Trunk).where(Trunk.name == "gw-trusted")).one()
        assert stored.identity_trusted is True
    # The admin reads it on their tenant's trunk and cannot change it.
    assert api.get(f"{TRUNKS}/gw-trusted", headers=admin).json()["identity_trusted"] is True
    refused = api.patch(f"{TRUNKS}/gw-trusted", headers=admin, json={"identity_trusted": False})
    assert refused.status_code == 403
    # null: by kind again; a non-boolean is 422 naming the field.
    back = api.patch(f"{TRUNKS}/gw-trusted", headers=operator, json={"identity_trusted": None})
    assert back.status_code == 200 and back.json()["identity_trusted"] is None
    for value in ("maybe", [True], 2):
        bad = api.patch(f"{TRUNKS}/gw-trusted", headers=operator, json={"identity_trusted": value})
        assert bad.status_code == 422 and locations(bad) == ["identity_trusted"], value
