"""Engines, sessions and schema upgrades for the config store.

Rules:
- Nothing connects at import time: callers build an engine with `create_engine_for` from a
  URL, and sessions with `create_session_factory`.
- The default store is SQLite, one file `softswitch.sqlite3` under a data directory
  (`data/` relative to the working directory unless configured); its directory is created
  on first use.
- On SQLite every connection enables `PRAGMA foreign_keys`, so cascades and references
  behave as on PostgreSQL.
- The schema is created only by migrations: `upgrade(database_url)` runs `alembic upgrade`
  with the scripts in `cloudpbx/migrations`, from any working directory. `create_all` is
  never used, so the migrated schema is the one tests check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DATABASE_FILE_NAME",
    "DEFAULT_DATA_DIRECTORY",
    "MIGRATIONS_DIRECTORY",
    "alembic_config",
    "create_engine_for",
    "create_session_factory",
    "database_url_for_directory",
    "upgrade",
]

DEFAULT_DATA_DIRECTORY = Path("data")
DATABASE_FILE_NAME = "softswitch.sqlite3"
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"


def database_url_for_directory(data_directory: Path | str = DEFAULT_DATA_DIRECTORY) -> str:
    """The SQLite URL of the store file under `data_directory` (made absolute)."""
    path = Path(data_directory).resolve() / DATABASE_FILE_NAME
    return f"sqlite:///{path}"


def _ensure_sqlite_directory(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine_for(database_url: str, *, echo: bool = False) -> Engine:
    """An engine for `database_url`; for a SQLite file, its directory is created first."""
    _ensure_sqlite_directory(database_url)
    engine = create_engine(database_url, echo=echo)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for our migrations against `database_url`, independent of
    the working directory and of `pyproject.toml`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    # An attribute, not an ini option: no ConfigParser interpolation of a % in the URL.
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the store at `database_url` to `revision` (creating it if needed)."""
    _ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)
