"""Fixtures: the database-backed adapter tests run on SQLite and on PostgreSQL.

`backend`, `empty_database_url` and `postgres_server` come from `cloudpbx.testing.fixtures`:
a test that takes `empty_database_url` (or `sessions`, built on it) runs twice, with the
ids `sqlite` and `postgresql`.
"""

from __future__ import annotations

from cloudpbx.testing.fixtures import (  # noqa: F401  (fixtures, registered by import)
    backend_fixture,
    empty_database_url_fixture,
    postgres_server_fixture,
)
