"""The OpenAPI document declares the OAuth2 password flow and uses it on every protected
route; the interactive docs are served."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PUBLIC = {("/api/v1/auth/token", "post")}


def _document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_the_security_scheme_is_the_oauth2_password_flow(client: TestClient) -> None:
    schemes = _document(client)["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"
    assert schemes["OAuth2PasswordBearer"]["flows"] == {
        "password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}
    }


def test_every_route_but_login_requires_the_scheme(client: TestClient) -> None:
    paths = _document(client)["paths"]
    operations = {
        (path, method): operation
        for path, methods in paths.items()
        for method, operation in methods.items()
    }
    # Every operation is protected but the login; these at least exist (the PBX and
    # toll-free operations are listed by the authorization matrix, test_authorization.py).
    assert set(operations) >= PUBLIC | {
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/password", "post"),
        ("/api/v1/tenants/{tenant}/accounts", "get"),
        ("/api/v1/tenants/{tenant}/accounts", "post"),
        ("/api/v1/tenants/{tenant}/accounts/{login}", "delete"),
        ("/api/v1/operator/reload", "post"),
    }
    for key, operation in operations.items():
        expected: list[dict[str, list[str]]] = (
            [] if key in PUBLIC else [{"OAuth2PasswordBearer": []}]
        )
        assert operation.get("security", []) == expected, key


def test_the_token_request_is_a_form(client: TestClient) -> None:
    operation = _document(client)["paths"]["/api/v1/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]


def test_the_docs_are_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
