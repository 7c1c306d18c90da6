"""A trunk's `caller_area_header` and `abroad_header` through the Customer Control API
(issue 6): created, shown, changed, cleared, audited; 422 naming the field when a value
is not an RFC 3261 token."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import Trunk

TRUNKS = "/api/v1/trunks"


def test_headers_are_created_shown_changed_and_cleared(
    api: TestClient, operator: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    body = {
        "name": "mobile-test",
        "kind": "mobile_network",
        "host": "192.0.2.40",
        "abroad_header": "P-Visited-Network-ID",
    }
    created = api.post(TRUNKS, headers=operator, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["abroad_header"] == "P-Visited-Network-ID"
    assert created.json()["caller_area_header"] is None
    changed = api.patch(
        f"{TRUNKS}/mobile-test",
        headers=operator,
        json={"caller_area_header": "X-Charge-Area", "abroad_header": None},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["caller_area_header"], changed.json()["abroad_header"]) == (
        "X-Charge-Area",
        None,
    )
    with session_factory() as session:
        trunk = session.scalars(select(Trunk).where(Trunk.name == "mobile-test")).one()
        assert (trunk.caller_area_header, trunk.abroad_header) == ("X-Charge-Area", None)
    shown = api.get(f"{TRUNKS}/mobile-test", headers=operator)
    assert shown.json()["caller_area_header"] == "X-Charge-Area"
    untouched = api.patch(f"{TRUNKS}/mobile-test", headers=operator, json={"port": 5070})
    assert untouched.json()["caller_area_header"] == "X-Charge-Area"


@pytest.mark.parametrize("field", ["caller_area_header", "abroad_header"])
@pytest.mark.parametrize("value", ["P Visited", "", "X-Area:", "x" * 65, 7])
def test_a_header_name_must_be_a_token(
    api: TestClient, operator: dict[str, str], field: str, value: Any
) -> None:
    body = {"name": "bad-headers", "kind": "pstn", "host": "192.0.2.41", field: value}
    created = api.post(TRUNKS, headers=operator, json=body)
    assert created.status_code == 422, created.text
    assert [detail["loc"][-1] for detail in created.json()["detail"]] == [field]
    changed = api.patch(f"{TRUNKS}/pstn", headers=operator, json={field: value})
    assert changed.status_code == 422, changed.text
    assert [detail["loc"][-1] for detail in changed.json()["detail"]] == [field]
