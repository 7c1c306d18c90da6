"""The toll-free endpoints: the role matrix, 403 versus 404, every change's rows, audit row
and `config` publication, and every 422 the product rules give (a weight above the
service type's bound, channels above the contract, overlapping schedule ranges, a 51st
account, ...).

The tests create what they need through the API as the operator (numbers 0120-000-222
and -444 of `demo`, 0120-000-333 of `other`) and the carrier trunk `pstn` directly in the
store when the demo file does not provide it, so they pass whether or not the demo file
has its own toll-free number 0120-000-111.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.domain import AccountRole, Transport, TrunkKind
from cloudpbx.models import (
    Account,
    AuditLog,
    TollFreeAccountGrant,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    Trunk,
)
from cloudpbx.notify import ACCOUNTS, CONFIG

from .conftest import FakeClock, Subscriber, bearer, token_for

BASE = "/api/v1/tollfree-numbers"
NUMBER = "0120000222"
"""Demo's number under test: standard, contracted 10, granted to tf@demo and user1001@demo."""
OTHER_NUMBER = "0120000333"
"""Tenant other's number."""
UNGRANTED_NUMBER = "0120000444"
"""Another number of demo, granted to nobody."""
DEFAULT_SET = [
    {"number": "03-1234-0001", "weight": 3, "trunk": "pstn"},
    {"number": "06-1234-0001", "weight": 1, "trunk": "pstn"},
]


class Tokens:
    """Bearer headers per login, logging in once each."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self._headers: dict[str, dict[str, str]] = {}

    def __getitem__(self, login: str) -> dict[str, str]:
        if login not in self._headers:
            self._headers[login] = bearer(token_for(self._client, login))
        return self._headers[login]


@pytest.fixture
def tokens(api: TestClient) -> Tokens:
    return Tokens(api)


def _ensure_carrier_trunk(session_factory: sessionmaker[Session], name: str) -> None:
    with session_factory() as session:
        if session.scalars(select(Trunk).where(Trunk.name == name)).first() is None:
            session.add(
                Trunk(
                    name=name,
                    host="127.0.0.3",
                    port=5060,
                    transport=Transport.UDP,
                    kind=TrunkKind.PSTN,
                )
            )
            session.commit()


def _create_number(
    client: TestClient, operator: dict[str, str], number: str, tenant: str, **extra: Any
) -> None:
    body: dict[str, Any] = {
        "number": number,
        "tenant": tenant,
        "service_type": "standard",
        "contracted_channels": 10,
        "options": ["distribution", "after_hours"],
    }
    body.update(extra)
    response = client.post(BASE, headers=operator, json=body)
    assert response.status_code == 201, response.text
    response = client.put(
        f"{BASE}/{number}/destination-sets/default",
        headers=operator,
        json={"destinations": DEFAULT_SET},
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def numbers(
    api: TestClient,
    tokens: Tokens,
    session_factory: sessionmaker[Session],
    subscriber: Subscriber,
) -> None:
    """The three numbers of the module docstring, set up by the operator."""
    _ensure_carrier_trunk(session_factory, "pstn")
    operator = tokens["operator"]
    _create_number(api, operator, NUMBER, "demo")
    _create_number(api, operator, OTHER_NUMBER, "other")
    _create_number(api, operator, UNGRANTED_NUMBER, "demo")
    for login in ("tf@demo", "user1001@demo"):
        assert api.put(f"{BASE}/{NUMBER}/accounts/{login}", headers=operator).status_code == 201
    assert api.put(f"{BASE}/{OTHER_NUMBER}/accounts/tf@other", headers=operator).status_code == 201
    subscriber.received()  # the set-up's publications are not the test's


def _audit_rows(session_factory: sessionmaker[Session], number: str, action: str) -> list[AuditLog]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.target == number, AuditLog.action == action)
                .order_by(AuditLog.id)
            )
        )


def _schedule_names(session_factory: sessionmaker[Session], number: str) -> set[str]:
    """Names of the number's schedules (its schedule rows, whether or not it still exists)."""
    with session_factory() as session:
        return set(
            session.scalars(
                select(TollFreeSchedule.name)
                .join(TollFreeNumber)
                .where(TollFreeNumber.number == number)
            )
        )


def _locations(response: httpx.Response) -> list[tuple[list[Any], str]]:
    assert response.status_code == 422, response.text
    return [(detail["loc"], detail["type"]) for detail in response.json()["detail"]]


# --- the role matrix ------------------------------------------------------------------

CALLERS = [
    "operator",
    "admin@demo",
    "user1001@demo",
    "tf@demo",
    "admin@other",
    "user1001@other",
    "tf@other",
]


@dataclass(frozen=True)
class Operation:
    """One toll-free endpoint as the matrix calls it (on the demo's NUMBER)."""

    method: str
    route: str
    """The route's path template, as `/openapi.json` names it."""
    url: str
    allowed: frozenset[str]
    """The callers that may do it; everyone else gets 403."""
    status: int = 200
    """The answer to an allowed call."""
    body: dict[str, Any] | None = None


_ANYONE_WHO_SEES = frozenset({"operator", "admin@demo", "user1001@demo", "tf@demo"})
_SETTERS = frozenset({"operator", "admin@demo", "user1001@demo"})
_GRANTERS = frozenset({"operator", "admin@demo"})
_OPERATOR = frozenset({"operator"})
_NIGHTS = {
    "action": "after_hours",
    "enabled": True,
    "ranges": [{"kind": "weekly", "weekday": 0, "start": "20:00", "end": "24:00"}],
}
_AREAS = {
    "whole_country": False,
    "prefectures": ["13"],
    "area_codes": [],
    "allow_fixed": True,
    "allow_mobile": True,
    "allow_withheld": False,
    "refusal_action": "reject",
}
N = f"{BASE}/{NUMBER}"
R = BASE + "/{number}"

OPERATIONS: dict[str, Operation] = {
    "read": Operation("GET", R, N, _ANYONE_WHO_SEES),
    "delete": Operation("DELETE", R, N, _OPERATOR, 204),
    "contract_information": Operation(
        "GET", R + "/contract-information", N + "/contract-information", _ANYONE_WHO_SEES
    ),
    "settings": Operation(
        "PUT", R + "/channels", N + "/channels", _SETTERS, body={"channel_setting": 4}
    ),
    "after_hours": Operation(
        "PUT",
        R + "/after-hours",
        N + "/after-hours",
        _SETTERS,
        body={"announcement": "after_hours_en"},
    ),
    "destination_sets": Operation(
        "GET", R + "/destination-sets", N + "/destination-sets", _ANYONE_WHO_SEES
    ),
    "weights": Operation(
        "PATCH",
        R + "/destination-sets/{set_name}/weights",
        N + "/destination-sets/default/weights",
        _SETTERS,
        body={"weights": [{"number": "0312340001", "weight": 2}]},
    ),
    "destinations": Operation(
        "PUT",
        R + "/destination-sets/{set_name}",
        N + "/destination-sets/default",
        _OPERATOR,
        body={"destinations": DEFAULT_SET[:1]},
    ),
    "schedules": Operation("GET", R + "/schedules", N + "/schedules", _ANYONE_WHO_SEES),
    "schedule_put": Operation(
        "PUT",
        R + "/schedules/{name}",
        N + "/schedules/nights",
        _SETTERS,
        201,
        {**_NIGHTS, "ranges": [{"kind": "weekly", "weekday": 1, "start": "20:00", "end": "24:00"}]},
    ),
    "schedule_delete": Operation(
        "DELETE", R + "/schedules/{name}", N + "/schedules/preset", _SETTERS, 204
    ),
    "areas": Operation("GET", R + "/designated-areas", N + "/designated-areas", _ANYONE_WHO_SEES),
    "areas_put": Operation(
        "PUT", R + "/designated-areas", N + "/designated-areas", _SETTERS, body=_AREAS
    ),
    "grants": Operation("GET", R + "/accounts", N + "/accounts", _GRANTERS),
    "grant": Operation(
        "PUT", R + "/accounts/{login}", N + "/accounts/viewer2@demo", _GRANTERS, 201
    ),
    "revoke": Operation("DELETE", R + "/accounts/{login}", N + "/accounts/tf@demo", _GRANTERS, 204),
    "contract": Operation(
        "PATCH", R + "/contract", N + "/contract", _OPERATOR, body={"contracted_channels": 12}
    ),
}
"""Every toll-free endpoint that names a number (the list and the creation, which name
none, are `test_lists_show_only_visible_numbers` and `test_only_the_operator_creates`)."""

ALLOWED = {name: operation.allowed for name, operation in OPERATIONS.items()}


@pytest.fixture
def matrix_objects(
    api: TestClient, tokens: Tokens, session_factory: sessionmaker[Session], subscriber: Subscriber
) -> None:
    """What the matrix's operations act on: schedule `preset` of NUMBER, and an account
    `viewer2@demo` that may be granted it."""
    operator = tokens["operator"]
    response = api.put(f"{N}/schedules/preset", headers=operator, json=_NIGHTS)
    assert response.status_code == 201, response.text
    response = api.post(
        "/api/v1/tenants/demo/accounts",
        headers=operator,
        json={"login": "viewer2@demo", "role": "tollfree_viewer", "password": "Viewer-Two-2026!"},
    )
    assert response.status_code == 201, response.text
    subscriber.received()


# Authorization does not depend on the database: the matrix runs on SQLite only (both
# backends run every other test here).
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.usefixtures("numbers", "matrix_objects")
def test_role_matrix(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    caller: str,
    operation: str,
) -> None:
    called = OPERATIONS[operation]
    response = api.request(called.method, called.url, headers=tokens[caller], json=called.body)
    if caller in called.allowed:
        assert response.status_code == called.status, response.text
    else:
        assert response.status_code == 403, response.text
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert subscriber.received() == []


# Authorization does not depend on the database: the matrix runs on SQLite only (both
# backends run every other test here).
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.usefixtures("numbers")
def test_only_the_operator_creates(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, caller: str
) -> None:
    for tenant in ("demo", "other"):
        number = "0120000555" if tenant == "demo" else "0120000556"
        response = api.post(
            BASE,
            headers=tokens[caller],
            json={
                "number": number,
                "tenant": tenant,
                "service_type": "standard",
                "contracted_channels": 2,
            },
        )
        if caller == "operator":
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 403, response.text
            assert subscriber.received() == []


@pytest.mark.usefixtures("numbers")
def test_every_endpoint_needs_a_token(api: TestClient) -> None:
    for method, path in [
        ("GET", BASE),
        ("GET", f"{BASE}/{NUMBER}"),
        ("PUT", f"{BASE}/{NUMBER}/channels"),
        ("GET", f"{BASE}/{NUMBER}/accounts"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 401, (method, path)


@pytest.mark.usefixtures("numbers")
def test_lists_show_only_visible_numbers(api: TestClient, tokens: Tokens) -> None:
    def listed(login: str) -> set[str]:
        response = api.get(BASE, headers=tokens[login])
        assert response.status_code == 200
        return {item["number"] for item in response.json()}

    ours = {NUMBER, OTHER_NUMBER, UNGRANTED_NUMBER}
    assert listed("operator") >= ours
    assert listed("admin@demo") & ours == {NUMBER, UNGRANTED_NUMBER}
    assert listed("tf@demo") & ours == {NUMBER}
    assert listed("user1001@demo") & ours == {NUMBER}
    assert listed("admin@other") & ours == {OTHER_NUMBER}
    assert listed("user1001@other") & ours == set()
    # Whatever else the store holds, no one sees another tenant's numbers.
    assert all(item["tenant"] == "demo" for item in api.get(BASE, headers=tokens["tf@demo"]).json())


@pytest.mark.usefixtures("numbers")
def test_not_visible_is_the_same_403_whether_or_not_the_number_exists(
    api: TestClient, tokens: Tokens
) -> None:
    for caller in ("admin@other", "tf@demo"):
        target = OTHER_NUMBER if caller == "tf@demo" else NUMBER
        existing = api.get(f"{BASE}/{target}", headers=tokens[caller])
        missing = api.get(f"{BASE}/0120999999", headers=tokens[caller])
        assert existing.status_code == missing.status_code == 403
        assert existing.content == missing.content
    ungranted = api.get(f"{BASE}/{UNGRANTED_NUMBER}", headers=tokens["tf@demo"])
    assert ungranted.status_code == 403
    assert api.get(f"{BASE}/0120999999", headers=tokens["operator"]).status_code == 404


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("numbers")
def test_numbers_in_paths_may_carry_hyphens_and_malformed_ones_are_422(
    api: TestClient, tokens: Tokens
) -> None:
    response = api.get(f"{BASE}/0120-000-222", headers=tokens["tf@demo"])
    assert response.status_code == 200
    assert response.json()["number"] == NUMBER
    assert _locations(api.get(f"{BASE}/12345", headers=tokens["tf@demo"])) == [
        (["path", "number"], "tollfree_number")
    ]


@pytest.mark.usefixtures("numbers")
def test_a_revoked_user_loses_the_number(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    admin = tokens["admin@demo"]
    assert api.delete(f"{BASE}/{NUMBER}/accounts/user1001@demo", headers=admin).status_code == 204
    assert subscriber.received() == [ACCOUNTS]
    assert api.get(f"{BASE}/{NUMBER}", headers=tokens["user1001@demo"]).status_code == 403
    (row,) = _audit_rows(session_factory, NUMBER, "tollfree.account.revoke")
    assert row.actor == "admin@demo"
    assert row.before == {"login": "user1001@demo", "role": "user"} and row.after is None


# --- numbers and contracts ------------------------------------------------------------


def test_the_operator_creates_and_deletes_a_number(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    _ensure_carrier_trunk(session_factory, "pstn")
    operator = tokens["operator"]
    created = api.post(
        BASE,
        headers=operator,
        json={
            "number": "0800-000-0001",
            "tenant": "demo",
            "service_type": "office",
            "contracted_channels": 30,
            "channel_setting": 20,
            "options": ["statistics", "distribution", "distribution"],
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"{BASE}/08000000001"
    assert created.json() == {
        "number": "08000000001",
        "tenant": "demo",
        "service_type": "office",
        "contracted_channels": 30,
        "channel_setting": 20,
        "strict_distribution": False,
        "options": ["distribution", "statistics"],
        "after_hours_announcement": "after_hours_ja",
        "destination_sets": [],
        "schedules": [],
    }
    assert subscriber.received() == [CONFIG]
    (row,) = _audit_rows(session_factory, "08000000001", "tollfree.create")
    assert row.actor == "operator" and row.before is None
    assert row.after is not None and row.after["contracted_channels"] == 30
    assert (
        api.post(
            BASE,
            headers=operator,
            json={
                "number": "08000000001",
                "tenant": "other",
                "service_type": "standard",
                "contracted_channels": 1,
            },
        ).status_code
        == 409
    )
    number = "08000000001"
    assert (
        api.put(
            f"{BASE}/{number}/destination-sets/default",
            headers=operator,
            json={"destinations": [{"number": "0312340001", "weight": 32, "trunk": "pstn"}]},
        ).status_code
        == 201
    )
    assert (
        api.put(
            f"{BASE}/{number}/schedules/night",
            headers=operator,
            json={
                "action": "after_hours",
                "ranges": [{"kind": "weekly", "weekday": 0, "start": "18:00", "end": "24:00"}],
            },
        ).status_code
        == 201
    )
    assert api.put(f"{BASE}/{number}/accounts/tf@demo", headers=operator).status_code == 201
    subscriber.received()
    with session_factory() as session:
        number_id = session.scalars(
            select(TollFreeNumber.id).where(TollFreeNumber.number == number)
        ).one()
    assert api.delete(f"{BASE}/{number}", headers=operator).status_code == 204
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        assert (
            session.scalars(select(TollFreeNumber).where(TollFreeNumber.number == number)).first()
            is None
        )
        for column in (
            TollFreeSchedule.tollfree_number_id,
            TollFreeDestinationSet.tollfree_number_id,
            TollFreeAccountGrant.tollfree_number_id,
        ):
            assert session.scalars(select(column).where(column == number_id)).all() == []
    (deleted,) = _audit_rows(session_factory, number, "tollfree.delete")
    assert deleted.after is None and deleted.before is not None
    assert deleted.before["grants"] == ["tf@demo"]
    assert deleted.tenant_id == row.tenant_id
    assert api.get(f"{BASE}/{number}", headers=operator).status_code == 404


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("body", "location", "kind"),
    [
        ({"number": "0120-12"}, ["body", "number"], "tollfree_number"),
        ({"tenant": "nobody"}, ["body", "tenant"], "unknown_tenant"),
        ({"options": ["distribution", "coffee"]}, ["body", "options", 1], "unknown_option"),
        ({"channel_setting": 11}, ["body", "channel_setting"], "channel_setting"),
        ({"service_type": "premium"}, ["body", "service_type"], "enum"),
        ({"contracted_channels": -1}, ["body", "contracted_channels"], "greater_than_equal"),
        ({"surprise": True}, ["body", "surprise"], "extra_forbidden"),
    ],
)
def test_create_refusals_name_the_field(
    api: TestClient,
    tokens: Tokens,
    body: dict[str, Any],
    location: list[Any],
    kind: str,
) -> None:
    request: dict[str, Any] = {
        "number": "0120000555",
        "tenant": "demo",
        "service_type": "standard",
        "contracted_channels": 10,
    }
    request.update(body)
    response = api.post(BASE, headers=tokens["operator"], json=request)
    assert _locations(response) == [(location, kind)]


@pytest.mark.usefixtures("numbers")
def test_lowering_the_contract_lowers_the_channel_setting(
    api: TestClient, tokens: Tokens, session_factory: sessionmaker[Session]
) -> None:
    response = api.patch(
        f"{BASE}/{NUMBER}/contract",
        headers=tokens["operator"],
        json={"contracted_channels": 6, "options": ["statistics"]},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["contracted_channels"], response.json()["channel_setting"]) == (6, 6)
    (row,) = _audit_rows(session_factory, NUMBER, "tollfree.contract")
    assert row.before is not None and row.after is not None
    assert (row.before["channel_setting"], row.after["channel_setting"]) == (10, 6)
    assert row.after["options"] == ["statistics"]


@pytest.mark.usefixtures("numbers")
def test_standard_is_refused_while_a_weight_is_above_9(api: TestClient, tokens: Tokens) -> None:
    operator = tokens["operator"]
    assert (
        api.patch(
            f"{BASE}/{NUMBER}/contract", headers=operator, json={"service_type": "office"}
        ).status_code
        == 200
    )
    assert (
        api.patch(
            f"{BASE}/{NUMBER}/destination-sets/default/weights",
            headers=tokens["admin@demo"],
            json={"weights": [{"number": "0312340001", "weight": 20}]},
        ).status_code
        == 200
    )
    response = api.patch(
        f"{BASE}/{NUMBER}/contract", headers=operator, json={"service_type": "standard"}
    )
    assert _locations(response) == [(["body", "service_type"], "weight_range")]


# --- channels -------------------------------------------------------------------------


@pytest.mark.usefixtures("numbers")
def test_channel_setting(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    user = tokens["user1001@demo"]
    response = api.put(f"{BASE}/{NUMBER}/channels", headers=user, json={"channel_setting": 3})
    assert response.status_code == 200
    assert response.json() == {
        "channel_setting": 3,
        "contracted_channels": 10,
        "no_answer_timeout_seconds": 30,
    }
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        row = session.scalars(select(TollFreeNumber).where(TollFreeNumber.number == NUMBER)).one()
        assert row.channel_setting == 3
    (audit_row,) = _audit_rows(session_factory, NUMBER, "tollfree.channels")
    assert audit_row.actor == "user1001@demo"
    unchanged = {"contracted_channels": 10, "no_answer_timeout_seconds": 30}
    assert audit_row.before == {"channel_setting": 10, **unchanged}
    assert audit_row.after == {"channel_setting": 3, **unchanged}
    assert audit_row.tenant_id == row.tenant_id
    for value in (11, -1):
        refused = api.put(
            f"{BASE}/{NUMBER}/channels", headers=user, json={"channel_setting": value}
        )
        assert _locations(refused) == [(["body", "channel_setting"], "channel_setting")]
    assert subscriber.received() == []
    assert len(_audit_rows(session_factory, NUMBER, "tollfree.channels")) == 1


# --- destination sets and weights -----------------------------------------------------


def _weights(session_factory: sessionmaker[Session], number: str) -> dict[str, int]:
    with session_factory() as session:
        rows = session.scalars(
            select(TollFreeDestination)
            .join(TollFreeDestination.destination_set)
            .join(TollFreeNumber)
            .where(TollFreeNumber.number == number)
        )
        return {row.number: row.weight for row in rows}


def _view_weights(view: dict[str, object] | None) -> list[object]:
    """The weights of a destination set's audit view."""
    assert view is not None
    destinations = view["destinations"]
    assert isinstance(destinations, list)
    return [item["weight"] for item in destinations]


@pytest.mark.usefixtures("numbers")
def test_a_ratio_change_is_stored_audited_and_published(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    response = api.patch(
        f"{BASE}/{NUMBER}/destination-sets/default/weights",
        headers=tokens["admin@demo"],
        json={"weights": [{"number": "06-1234-0001", "weight": 2}]},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "default",
        "destinations": [
            {"position": 1, "number": "0312340001", "weight": 3, "trunk": "pstn"},
            {"position": 2, "number": "0612340001", "weight": 2, "trunk": "pstn"},
        ],
    }
    assert subscriber.received() == [CONFIG]
    assert _weights(session_factory, NUMBER) == {"0312340001": 3, "0612340001": 2}
    (row,) = _audit_rows(session_factory, NUMBER, "tollfree.weights")
    assert row.actor == "admin@demo"
    assert (_view_weights(row.before), _view_weights(row.after)) == ([3, 1], [3, 2])
    listed = api.get(f"{BASE}/{NUMBER}/destination-sets", headers=tokens["tf@demo"])
    assert listed.json() == [response.json()]


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("weights", "location", "kind"),
    [
        (
            [{"number": "0312340001", "weight": 10}],
            ["body", "weights", 0, "weight"],
            "weight_range",
        ),
        (
            [{"number": "0312340001", "weight": -1}],
            ["body", "weights", 0, "weight"],
            "weight_range",
        ),
        (
            [{"number": "0312340001", "weight": 0}, {"number": "0612340001", "weight": 0}],
            ["body", "weights"],
            "destination_set",
        ),
        (
            [{"number": "0312349999", "weight": 1}],
            ["body", "weights", 0, "number"],
            "unknown_destination",
        ),
        (
            [{"number": "0312340001", "weight": 1}, {"number": "03-1234-0001", "weight": 2}],
            ["body", "weights", 1, "number"],
            "duplicate_destination",
        ),
        ([{"number": "12", "weight": 1}], ["body", "weights", 0, "number"], "telephone_number"),
        ([], ["body", "weights"], "too_short"),
    ],
)
@pytest.mark.usefixtures("numbers")
def test_weight_refusals_name_the_field(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
    weights: list[dict[str, Any]],
    location: list[Any],
    kind: str,
) -> None:
    response = api.patch(
        f"{BASE}/{NUMBER}/destination-sets/default/weights",
        headers=tokens["user1001@demo"],
        json={"weights": weights},
    )
    assert _locations(response) == [(location, kind)]
    assert _weights(session_factory, NUMBER) == {"0312340001": 3, "0612340001": 1}
    assert subscriber.received() == []
    assert _audit_rows(session_factory, NUMBER, "tollfree.weights") == []


@pytest.mark.usefixtures("numbers")
def test_office_numbers_take_weights_up_to_32(api: TestClient, tokens: Tokens) -> None:
    assert (
        api.patch(
            f"{BASE}/{NUMBER}/contract", headers=tokens["operator"], json={"service_type": "office"}
        ).status_code
        == 200
    )
    url = f"{BASE}/{NUMBER}/destination-sets/default/weights"
    admin = tokens["admin@demo"]
    ok = api.patch(url, headers=admin, json={"weights": [{"number": "0312340001", "weight": 32}]})
    assert ok.status_code == 200
    refused = api.patch(
        url, headers=admin, json={"weights": [{"number": "0312340001", "weight": 33}]}
    )
    assert _locations(refused) == [(["body", "weights", 0, "weight"], "weight_range")]


@pytest.mark.usefixtures("numbers")
def test_an_unknown_destination_set_is_404(api: TestClient, tokens: Tokens) -> None:
    response = api.patch(
        f"{BASE}/{NUMBER}/destination-sets/holiday/weights",
        headers=tokens["admin@demo"],
        json={"weights": [{"number": "0312340001", "weight": 1}]},
    )
    assert response.status_code == 404


@pytest.mark.usefixtures("numbers")
def test_the_operator_replaces_a_destination_set(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    response = api.put(
        f"{BASE}/{NUMBER}/destination-sets/default",
        headers=tokens["operator"],
        json={
            "destinations": [
                {"number": "06-1234-0001", "weight": 5, "trunk": "pstn"},
                {"number": "+81312340002", "weight": 0, "trunk": "pstn"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert [(item["number"], item["position"]) for item in response.json()["destinations"]] == [
        ("0612340001", 1),
        ("0312340002", 2),
    ]
    assert subscriber.received() == [CONFIG]
    assert _weights(session_factory, NUMBER) == {"0612340001": 5, "0312340002": 0}
    (row,) = [
        row
        for row in _audit_rows(session_factory, NUMBER, "tollfree.destination_set.update")
        if row.before is not None
    ]
    assert row.actor == "operator"


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("destinations", "location", "kind"),
    [
        (
            [{"number": "0312340001", "weight": 1, "trunk": "nowhere"}],
            ["body", "destinations", 0, "trunk"],
            "unknown_trunk",
        ),
        (
            [{"number": "0312340001", "weight": 1, "trunk": "other-pbx"}],
            ["body", "destinations", 0, "trunk"],
            "unknown_trunk",
        ),
        (
            [{"number": "0312340001", "weight": 10, "trunk": "pstn"}],
            ["body", "destinations", 0, "weight"],
            "weight_range",
        ),
        (
            [{"number": f"031234000{index}", "weight": 1, "trunk": "pstn"} for index in range(6)],
            ["body", "destinations"],
            "destination_set",
        ),
        ([], ["body", "destinations"], "destination_set"),
        (
            [
                {"number": "0312340001", "weight": 1, "trunk": "pstn"},
                {"number": "03-1234-0001", "weight": 1, "trunk": "pstn"},
            ],
            ["body", "destinations", 1, "number"],
            "duplicate_destination",
        ),
        (
            [{"number": "1234", "weight": 1, "trunk": "pstn"}],
            ["body", "destinations", 0, "number"],
            "telephone_number",
        ),
    ],
)
@pytest.mark.usefixtures("numbers")
def test_destination_set_refusals_name_the_field(
    api: TestClient,
    tokens: Tokens,
    session_factory: sessionmaker[Session],
    destinations: list[dict[str, Any]],
    location: list[Any],
    kind: str,
) -> None:
    with session_factory() as session:
        # A customer PBX trunk of the other tenant: not usable for demo's number.
        other_tenant_id = session.scalars(
            select(TollFreeNumber.tenant_id).where(TollFreeNumber.number == OTHER_NUMBER)
        ).one()
        session.add(
            Trunk(
                name="other-pbx",
                host="127.0.0.4",
                transport=Transport.UDP,
                kind=TrunkKind.CUSTOMER_PBX,
                tenant_id=other_tenant_id,
            )
        )
        session.commit()
    response = api.put(
        f"{BASE}/{NUMBER}/destination-sets/default",
        headers=tokens["operator"],
        json={"destinations": destinations},
    )
    assert _locations(response) == [(location, kind)]
    assert _weights(session_factory, NUMBER) == {"0312340001": 3, "0612340001": 1}


# --- schedules ------------------------------------------------------------------------

WEEKDAY_NIGHTS = [
    {"kind": "weekly", "weekday": day, "start": "18:00", "end": "24:00"} for day in range(5)
]


@pytest.mark.usefixtures("numbers")
def test_schedules_are_created_replaced_and_deleted(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    user = tokens["user1001@demo"]
    url = f"{BASE}/{NUMBER}/schedules/night"
    body: dict[str, Any] = {
        "action": "after_hours",
        "ranges": [
            *WEEKDAY_NIGHTS,
            {"kind": "date", "date": "2027-12-31", "start": "00:00", "end": "24:00"},
            {"kind": "holiday", "start": "00:00", "end": "24:00"},
        ],
    }
    created = api.put(url, headers=user, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["ranges"][-2] == {
        "kind": "date",
        "weekday": None,
        "date": "2027-12-31",
        "start": "00:00",
        "end": "24:00",
    }
    assert subscriber.received() == [CONFIG]
    body["enabled"] = False
    body["ranges"] = WEEKDAY_NIGHTS[:1]
    replaced = api.put(url, headers=user, json=body)
    assert replaced.status_code == 200
    assert replaced.json() == {
        "name": "night",
        "action": "after_hours",
        "destination_set": None,
        "enabled": False,
        "ranges": [WEEKDAY_NIGHTS[0] | {"date": None}],
    }
    listed = api.get(f"{BASE}/{NUMBER}/schedules", headers=tokens["tf@demo"])
    assert listed.json() == [replaced.json()]
    rows = _audit_rows(session_factory, NUMBER, "tollfree.schedule.update")
    assert [row.before is None for row in rows] == [True, False]
    assert rows[1].after == replaced.json()
    assert api.delete(url, headers=user).status_code == 204
    assert subscriber.received() == [CONFIG, CONFIG]
    assert api.delete(url, headers=user).status_code == 404
    assert _schedule_names(session_factory, NUMBER) == set()
    (deleted,) = _audit_rows(session_factory, NUMBER, "tollfree.schedule.delete")
    assert deleted.before == replaced.json() and deleted.after is None


@pytest.mark.usefixtures("numbers")
def test_a_destination_change_names_an_existing_set(
    api: TestClient, tokens: Tokens, session_factory: sessionmaker[Session]
) -> None:
    operator = tokens["operator"]
    assert (
        api.put(
            f"{BASE}/{NUMBER}/destination-sets/osaka-only",
            headers=operator,
            json={"destinations": [{"number": "0612340001", "weight": 1, "trunk": "pstn"}]},
        ).status_code
        == 201
    )
    url = f"{BASE}/{NUMBER}/schedules/lunch"
    ranges = [{"kind": "weekly", "weekday": 2, "start": "12:00", "end": "13:00"}]
    admin = tokens["admin@demo"]
    change = {"action": "destination_change", "ranges": ranges}
    assert _locations(api.put(url, headers=admin, json=change)) == [
        (["body", "destination_set"], "missing")
    ]
    assert _locations(
        api.put(url, headers=admin, json=change | {"destination_set": "nowhere"})
    ) == [(["body", "destination_set"], "unknown_destination_set")]
    assert _locations(
        api.put(
            url,
            headers=admin,
            json={"action": "after_hours", "destination_set": "osaka-only", "ranges": ranges},
        )
    ) == [(["body", "destination_set"], "not_allowed")]
    response = api.put(url, headers=admin, json=change | {"destination_set": "osaka-only"})
    assert response.status_code == 201, response.text
    assert response.json()["destination_set"] == "osaka-only"
    # An after-hours range may overlap a destination change: after-hours wins.
    night = api.put(
        f"{BASE}/{NUMBER}/schedules/closed",
        headers=admin,
        json={"action": "after_hours", "ranges": ranges},
    )
    assert night.status_code == 201, night.text


@pytest.mark.usefixtures("numbers")
def test_overlapping_ranges_are_422(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    admin = tokens["admin@demo"]
    url = f"{BASE}/{NUMBER}/schedules"
    same_schedule = api.put(
        f"{url}/night",
        headers=admin,
        json={
            "action": "after_hours",
            "ranges": [
                {"kind": "weekly", "weekday": 0, "start": "18:00", "end": "22:00"},
                {"kind": "weekly", "weekday": 1, "start": "18:00", "end": "22:00"},
                {"kind": "weekly", "weekday": 0, "start": "21:00", "end": "23:00"},
            ],
        },
    )
    assert _locations(same_schedule) == [(["body", "ranges", 2], "schedule_overlap")]
    assert "'night' weekday 0 18:00-22:00" in same_schedule.json()["detail"][0]["msg"]
    assert (
        api.put(
            f"{url}/night", headers=admin, json={"action": "after_hours", "ranges": WEEKDAY_NIGHTS}
        ).status_code
        == 201
    )
    subscriber.received()
    # Another after-hours schedule over the same hours: ambiguous, refused.
    other_schedule = api.put(
        f"{url}/late",
        headers=admin,
        json={
            "action": "after_hours",
            "ranges": [{"kind": "weekly", "weekday": 4, "start": "23:00", "end": "24:00"}],
        },
    )
    assert _locations(other_schedule) == [(["body", "ranges", 0], "schedule_overlap")]
    # Touching ranges do not overlap ([start, end)).
    touching = api.put(
        f"{url}/evening",
        headers=admin,
        json={
            "action": "after_hours",
            "ranges": [{"kind": "weekly", "weekday": 4, "start": "17:00", "end": "18:00"}],
        },
    )
    assert touching.status_code == 201
    assert _schedule_names(session_factory, NUMBER) == {"night", "evening"}


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("schedule_range", "location", "kind"),
    [
        ({"kind": "weekly", "start": "09:00", "end": "10:00"}, ["weekday"], "missing"),
        (
            {"kind": "weekly", "weekday": 7, "start": "09:00", "end": "10:00"},
            ["weekday"],
            "less_than_equal",
        ),
        ({"kind": "date", "start": "09:00", "end": "10:00"}, ["date"], "missing"),
        (
            {"kind": "holiday", "weekday": 1, "start": "09:00", "end": "10:00"},
            ["weekday"],
            "not_allowed",
        ),
        (
            {"kind": "date", "date": "2027-02-30", "start": "09:00", "end": "10:00"},
            ["date"],
            "date_from_datetime_parsing",
        ),
        ({"kind": "holiday", "start": "10:00", "end": "09:00"}, ["end"], "time_range"),
        ({"kind": "holiday", "start": "24:00", "end": "24:00"}, ["start"], "time_of_day"),
        ({"kind": "holiday", "start": "9:00", "end": "10:00"}, ["start"], "time_of_day"),
        ({"kind": "holiday", "start": "09:00", "end": "25:00"}, ["end"], "time_of_day"),
    ],
)
@pytest.mark.usefixtures("numbers")
def test_schedule_range_refusals_name_the_field(
    api: TestClient,
    tokens: Tokens,
    schedule_range: dict[str, Any],
    location: list[Any],
    kind: str,
) -> None:
    response = api.put(
        f"{BASE}/{NUMBER}/schedules/bad",
        headers=tokens["admin@demo"],
        json={"action": "after_hours", "ranges": [schedule_range]},
    )
    assert _locations(response) == [(["body", "ranges", 0, *location], kind)]


# --- after-hours announcement and designated areas ------------------------------------


@pytest.mark.usefixtures("numbers")
def test_after_hours_announcement(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    url = f"{BASE}/{NUMBER}/after-hours"
    user = tokens["user1001@demo"]
    response = api.put(url, headers=user, json={"announcement": "after_hours_en"})
    assert response.status_code == 200
    assert response.json() == {"announcement": "after_hours_en"}
    assert subscriber.received() == [CONFIG]
    assert api.get(f"{BASE}/{NUMBER}", headers=user).json()["after_hours_announcement"] == (
        "after_hours_en"
    )
    (row,) = _audit_rows(session_factory, NUMBER, "tollfree.after_hours")
    assert (row.before, row.after) == (
        {"announcement": "after_hours_ja"},
        {"announcement": "after_hours_en"},
    )
    refused = api.put(url, headers=user, json={"announcement": "../../etc/passwd"})
    assert _locations(refused) == [(["body", "announcement"], "literal_error")]


AREAS = {
    "whole_country": False,
    "prefectures": ["27", "13"],
    "area_codes": ["06", "03"],
    "allow_fixed": True,
    "allow_mobile": False,
    "allow_withheld": False,
    "refusal_action": "reject",
}


@pytest.mark.usefixtures("numbers")
def test_designated_areas(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    url = f"{BASE}/{NUMBER}/designated-areas"
    admin = tokens["admin@demo"]
    before = api.get(url, headers=tokens["tf@demo"]).json()
    assert before["whole_country"] is True
    response = api.put(url, headers=admin, json=AREAS)
    assert response.status_code == 200, response.text
    expected = AREAS | {"prefectures": ["13", "27"], "area_codes": ["03", "06"]}
    assert response.json() == expected
    assert api.get(url, headers=tokens["tf@demo"]).json() == expected
    assert subscriber.received() == [CONFIG]
    # Putting the same codes again replaces the rows without a unique-constraint clash.
    assert api.put(url, headers=admin, json=AREAS).status_code == 200
    rows = _audit_rows(session_factory, NUMBER, "tollfree.designated_areas")
    assert rows[0].before == before and rows[0].after == expected
    assert api.get(url, headers=tokens["tf@demo"]).json() == expected


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("change", "location", "kind"),
    [
        ({"prefectures": ["48"]}, ["prefectures", 0], "prefecture"),
        ({"area_codes": ["03", "090"]}, ["area_codes", 1], "area_code"),
        ({"prefectures": [], "area_codes": []}, ["whole_country"], "no_designated_area"),
        ({"refusal_action": "ignore"}, ["refusal_action"], "enum"),
        ({"allow_fax": True}, ["allow_fax"], "extra_forbidden"),
    ],
)
@pytest.mark.usefixtures("numbers")
def test_designated_area_refusals_name_the_field(
    api: TestClient,
    tokens: Tokens,
    change: dict[str, Any],
    location: list[Any],
    kind: str,
) -> None:
    response = api.put(
        f"{BASE}/{NUMBER}/designated-areas", headers=tokens["admin@demo"], json=AREAS | change
    )
    assert _locations(response) == [(["body", *location], kind)]


# --- contract information -------------------------------------------------------------


@pytest.mark.usefixtures("numbers")
def test_contract_information(api: TestClient, tokens: Tokens) -> None:
    operator = tokens["operator"]
    assert (
        api.put(
            f"{BASE}/{NUMBER}/destination-sets/night",
            headers=operator,
            json={
                "destinations": [
                    {"number": "0612340001", "weight": 1, "trunk": "pstn"},
                    {"number": "0612340002", "weight": 1, "trunk": "pstn"},
                ]
            },
        ).status_code
        == 201
    )
    response = api.get(f"{BASE}/0120-000-222/contract-information", headers=tokens["tf@demo"])
    assert response.status_code == 200
    assert response.json() == {
        "tollfree_number": NUMBER,
        "contract_holder_name": "デモ株式会社",
        "address": response.json()["address"],
        "service_type": "standard",
        "contracted_channels": 10,
        "distribution_ratio": [
            {"destination_number": "0312340001", "weight": 3},
            {"destination_number": "0612340001", "weight": 1},
        ],
        "destination_numbers": ["0312340001", "0612340001", "0612340002"],
        "designated_areas": {
            "whole_country": True,
            "prefectures": [],
            "area_codes": [],
            "allow_fixed": True,
            "allow_mobile": True,
            "allow_withheld": True,
            "refusal_action": "announcement",
        },
        "option_contracts": ["after_hours", "distribution"],
    }


# Input validation does not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_contract_information_fields_carry_their_japanese_names(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ContractInformation"]
    descriptions = {name: field["description"] for name, field in schema["properties"].items()}
    assert "着信課金番号" in descriptions["tollfree_number"]
    assert "契約者名" in descriptions["contract_holder_name"]
    assert "住所等" in descriptions["address"]
    assert "回線数振分比" in descriptions["distribution_ratio"]
    assert "追加番号" in descriptions["destination_numbers"]
    assert "発信地域指定" in descriptions["designated_areas"]
    assert "オプション機能契約内容" in descriptions["option_contracts"]


# --- account grants -------------------------------------------------------------------


@pytest.mark.usefixtures("numbers")
def test_grants(
    api: TestClient, tokens: Tokens, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    admin = tokens["admin@demo"]
    url = f"{BASE}/{NUMBER}/accounts"
    listed = api.get(url, headers=admin)
    assert listed.json() == [
        {"login": "tf@demo", "role": "tollfree_viewer"},
        {"login": "user1001@demo", "role": "user"},
    ]
    again = api.put(f"{url}/tf@demo", headers=admin)
    assert again.status_code == 200
    assert subscriber.received() == [ACCOUNTS]
    assert _locations(api.put(f"{url}/admin@demo", headers=admin)) == [
        (["path", "login"], "account_role")
    ]
    assert api.put(f"{url}/tf@other", headers=admin).status_code == 404
    assert api.put(f"{url}/nobody@demo", headers=admin).status_code == 404
    assert api.delete(f"{BASE}/{UNGRANTED_NUMBER}/accounts/tf@demo", headers=admin).status_code == (
        404
    )
    assert subscriber.received() == []
    # A grant on one number shows nothing of another.
    assert api.put(f"{BASE}/{UNGRANTED_NUMBER}/accounts/tf@demo", headers=admin).status_code == 201
    assert api.get(f"{BASE}/{UNGRANTED_NUMBER}", headers=tokens["tf@demo"]).status_code == 200
    rows = _audit_rows(session_factory, UNGRANTED_NUMBER, "tollfree.account.grant")
    assert [(row.actor, row.before, row.after) for row in rows] == [
        ("admin@demo", None, {"login": "tf@demo", "role": "tollfree_viewer"})
    ]


@pytest.mark.usefixtures("numbers")
def test_a_51st_account_is_422(
    api: TestClient, tokens: Tokens, session_factory: sessionmaker[Session], clock: FakeClock
) -> None:
    with session_factory() as session:
        number = session.scalars(
            select(TollFreeNumber).where(TollFreeNumber.number == NUMBER)
        ).one()
        granted = len(
            session.scalars(
                select(TollFreeAccountGrant).where(
                    TollFreeAccountGrant.tollfree_number_id == number.id
                )
            ).all()
        )
        for index in range(51 - granted):
            account = Account(
                login=f"viewer{index}@demo",
                password_hash="not-a-hash",
                role=AccountRole.TOLLFREE_VIEWER,
                tenant_id=number.tenant_id,
                failed_login_count=0,
                password_changed_at=clock.now,
                created_at=clock.now,
                disabled=False,
            )
            session.add(account)
            session.flush()
            if index < 50 - granted:
                session.add(
                    TollFreeAccountGrant(tollfree_number_id=number.id, account_id=account.id)
                )
        session.commit()
    admin = tokens["admin@demo"]
    last = f"viewer{50 - granted}@demo"
    response = api.put(f"{BASE}/{NUMBER}/accounts/{last}", headers=admin)
    assert _locations(response) == [(["path", "login"], "too_many_accounts")]
    assert len(api.get(f"{BASE}/{NUMBER}/accounts", headers=admin).json()) == 50
    # Re-granting one of the 50 is no 51st.
    assert api.put(f"{BASE}/{NUMBER}/accounts/tf@demo", headers=admin).status_code == 200
    assert api.delete(f"{BASE}/{NUMBER}/accounts/tf@demo", headers=admin).status_code == 204
    assert api.put(f"{BASE}/{NUMBER}/accounts/{last}", headers=admin).status_code == 201


# --- the demo number ------------------------------------------------------------------


def test_the_demo_numbers_ratio_change(
    api: TestClient,
    tokens: Tokens,
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    """0120-000-111 as configs/demo.yaml describes it (created here when the file lacks it):
    tf@demo reads it, the tenant administrator changes Tokyo 3 : Osaka 1 to 1 : 1."""
    demo_number = "0120000111"
    operator = tokens["operator"]
    if api.get(f"{BASE}/{demo_number}", headers=operator).status_code == 404:
        _ensure_carrier_trunk(session_factory, "pstn")
        _create_number(api, operator, demo_number, "demo")
        granted = api.put(f"{BASE}/{demo_number}/accounts/tf@demo", headers=operator)
        assert granted.status_code == 201
        subscriber.received()
    seen = api.get(f"{BASE}/0120-000-111/destination-sets", headers=tokens["tf@demo"])
    assert seen.status_code == 200
    (default,) = [item for item in seen.json() if item["name"] == "default"]
    assert [(item["number"], item["weight"]) for item in default["destinations"]] == [
        ("0312340001", 3),
        ("0612340001", 1),
    ]
    response = api.patch(
        f"{BASE}/0120-000-111/destination-sets/default/weights",
        headers=tokens["admin@demo"],
        json={"weights": [{"number": "03-1234-0001", "weight": 1}]},
    )
    assert response.status_code == 200, response.text
    assert subscriber.received() == [CONFIG]
    assert _weights(session_factory, demo_number) == {"0312340001": 1, "0612340001": 1}
    assert len(_audit_rows(session_factory, demo_number, "tollfree.weights")) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("numbers")
def test_the_no_answer_timeout_is_set_with_the_channels(
    api: TestClient, tokens: Tokens, session_factory: sessionmaker[Session]
) -> None:
    admin = tokens["admin@demo"]
    path = f"{BASE}/{NUMBER}/channels"
    response = api.put(path, json={"channel_setting": 4}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["no_answer_timeout_seconds"] == 30  # the default, unchanged
    response = api.put(
        path, json={"channel_setting": 4, "no_answer_timeout_seconds": 45}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channel_setting": 4,
        "contracted_channels": 10,
        "no_answer_timeout_seconds": 45,
    }
    for bad in (4, 301, "thirty"):
        refused = api.put(
            path, json={"channel_setting": 4, "no_answer_timeout_seconds": bad}, headers=admin
        )
        assert _locations(refused)[0][0] == ["body", "no_answer_timeout_seconds"], bad
    with session_factory() as session:
        stored = session.scalars(select(TollFreeNumber).where(TollFreeNumber.number == NUMBER))
        assert stored.one().no_answer_timeout_seconds == 45
