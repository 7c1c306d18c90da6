"""The audit log endpoint: who reads which rows, paging, and that changes made through
the API appear in it with who, when, what, before and after."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import bearer, token_for

URL = "/api/v1/audit-log"


def _create_user(client: TestClient, token: str, tenant: str, local: str) -> None:
    response = client.post(
        f"/api/v1/tenants/{tenant}/accounts",
        json={
            "login": f"{local}@{tenant}",
            "role": "tollfree_viewer",
            "password": "Audit-Trail-2026!x",
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text


def test_an_admin_reads_the_own_tenants_changes_only(client: TestClient) -> None:
    admin = token_for(client, "admin@demo")
    _create_user(client, admin, "demo", "auditor")
    _create_user(client, token_for(client, "admin@other"), "other", "elsewhere")

    response = client.get(URL, headers=bearer(admin))
    assert response.status_code == 200, response.text
    entries = response.json()
    assert entries, "the admin's own change must be listed"
    assert {entry["tenant"] for entry in entries} == {"demo"}
    created = [entry for entry in entries if entry["action"] == "account.create"]
    assert created[0]["target"] == "auditor@demo"
    assert created[0]["actor"] == "admin@demo"
    assert created[0]["before"] is None
    assert created[0]["after"]["role"] == "tollfree_viewer"
    assert "password" not in str(created[0]["after"]).lower().replace("password_changed_at", "")
    assert all("elsewhere" not in str(entry["target"]) for entry in entries)


def test_an_admin_naming_another_tenant_is_refused(client: TestClient) -> None:
    response = client.get(
        URL, params={"tenant": "other"}, headers=bearer(token_for(client, "admin@demo"))
    )
    assert response.status_code == 403


@pytest.mark.parametrize("login", ["user1001@demo", "tf@demo"])
def test_users_and_viewers_cannot_read_it(client: TestClient, login: str) -> None:
    response = client.get(URL, headers=bearer(token_for(client, login)))
    assert response.status_code == 403


def test_the_operator_reads_everything_and_filters_and_pages(client: TestClient) -> None:
    operator = token_for(client, "operator")
    _create_user(client, operator, "other", "pager")
    everything = client.get(URL, headers=bearer(operator)).json()
    assert {"demo", "other", None} <= {entry["tenant"] for entry in everything} | {None}
    ids = [entry["id"] for entry in everything]
    assert ids == sorted(ids, reverse=True)

    other = client.get(URL, params={"tenant": "other"}, headers=bearer(operator)).json()
    assert other and {entry["tenant"] for entry in other} == {"other"}

    first_page = client.get(URL, params={"limit": 2}, headers=bearer(operator)).json()
    assert len(first_page) == 2
    second_page = client.get(
        URL, params={"limit": 2, "before_id": first_page[-1]["id"]}, headers=bearer(operator)
    ).json()
    assert second_page[0]["id"] < first_page[-1]["id"]

    missing = client.get(URL, params={"tenant": "nobody"}, headers=bearer(operator))
    assert missing.status_code == 404


def test_a_bad_limit_names_the_field(client: TestClient) -> None:
    response = client.get(URL, params={"limit": 0}, headers=bearer(token_for(client, "operator")))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
