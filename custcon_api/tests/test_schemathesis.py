"""Property-based tests of the whole API from its own OpenAPI document (schemathesis).

Every operation in `/openapi.json` gets generated requests, valid and invalid, sent with
a bearer token of each role that changes most (the operator, who may reach every
operation, and a tenant administrator, who is refused much of it). For every response:
no server error (5xx), a status code the document declares, a declared content type,
headers and a body that match the declared schema.

Rules:
- The store is a copy of the provisioned demo store (SQLite), one per role, so the
  generated requests meet real rows (tenant `demo`, extension 1001, 0120-000-111...).
- Logging out and changing the own password are left out: they end the session the
  rest of the run needs. They have their own tests (`test_auth.py`).
- Each operation is its own test, with a bounded number of examples (`_MAX_EXAMPLES`)
  so the suite stays within its time budget.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import sessionmaker

from cloudpbx.db import create_engine_for, create_session_factory
from custcon_api import create_app
from custcon_api.tests.conftest import bearer, token_for

_EXCLUDED_PATHS = ("/api/v1/auth/logout", "/api/v1/me/password")
_MAX_EXAMPLES = 8
_CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)


class _Session:
    """The app under test and the token its requests carry."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = bearer(token)


@pytest.fixture(params=["operator", "admin@demo"])
def api_session(
    request: pytest.FixtureRequest, template_store: Path, tmp_path: Path
) -> Iterator[_Session]:
    path = tmp_path / "store.sqlite3"
    shutil.copyfile(template_store, path)
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        app = create_app(create_session_factory(engine))
        with TestClient(app) as client:
            yield _Session(client, token_for(client, request.param))
    finally:
        engine.dispose()


def _operation_labels() -> list[str]:
    """`METHOD /path` of every operation, read from an app with no store behind it (the
    document needs none), so each operation is its own test."""
    document = create_app(sessionmaker()).openapi()
    return sorted(
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
        if path not in _EXCLUDED_PATHS
    )


@pytest.mark.parametrize("label", _operation_labels())
def test_every_operation_conforms_to_the_document(label: str, api_session: _Session) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_session.client.app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(
        max_examples=_MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=api_session.headers, checks=list(_CHECKS))

    run()
