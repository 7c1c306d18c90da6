"""`softswitch provision` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from cloudpbx.db import create_engine_for, create_session_factory, database_url_for_directory
from cloudpbx.models import Extension

from .conftest import DEMO_FILE, REPOSITORY_ROOT


def _softswitch(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "softswitch", *arguments],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _extension_count(data_directory: Path) -> int:
    engine = create_engine_for(database_url_for_directory(data_directory))
    try:
        with create_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Extension)) or 0
    finally:
        engine.dispose()


def test_provision_demo_twice_then_a_bad_file(tmp_path: Path) -> None:
    data_directory = tmp_path / "data"
    first = _softswitch("provision", "configs/demo.yaml", "--data-dir", str(data_directory))
    assert first.returncode == 0, first.stderr
    assert "extensions: 10 created, 0 updated, 0 unchanged" in first.stdout
    assert (data_directory / "softswitch.sqlite3").is_file()

    second = _softswitch("provision", "configs/demo.yaml", "--data-dir", str(data_directory))
    assert second.returncode == 0, second.stderr
    assert "extensions: 0 created, 0 updated, 10 unchanged" in second.stdout
    assert _extension_count(data_directory) == 10

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        DEMO_FILE.read_text(encoding="utf-8").replace('number: "1004"', 'number: "10x4"'),
        encoding="utf-8",
    )
    refused = _softswitch("provision", str(bad), "--data-dir", str(data_directory))
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert f"{bad}: tenants[0].extensions[3].number: " in refused.stderr
    assert _extension_count(data_directory) == 10


def test_provision_with_a_database_url(empty_database_url: str) -> None:
    # The store is migrated by the command itself, on SQLite and on PostgreSQL.
    completed = _softswitch("provision", str(DEMO_FILE), "--database", empty_database_url)
    assert completed.returncode == 0, completed.stderr
    assert "trunks: 5 created" in completed.stdout
    engine = create_engine_for(empty_database_url)
    try:
        with create_session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(Extension)) == 10
    finally:
        engine.dispose()


def test_database_and_data_dir_exclude_each_other(tmp_path: Path) -> None:
    completed = _softswitch(
        "provision", str(DEMO_FILE), "--database", "sqlite://", "--data-dir", str(tmp_path)
    )
    assert completed.returncode == 2
