"""Provisioning: idempotent writes, updates, and bad files refused whole with key paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.domain import DigestAlgorithm, compute_ha1
from cloudpbx.models import Extension, SipCredential, Site, Tenant, Trunk, TrunkSourceAddress
from cloudpbx.provisioning import ProvisioningError, load_provisioning_file, provision

from .conftest import DEMO_FILE

ALL_MODELS = (Tenant, Site, Extension, SipCredential, Trunk, TrunkSourceAddress)


def _demo() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def _write(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _dump_store(session: Session) -> dict[str, list[tuple[object, ...]]]:
    """Every column of every row, by table, so two states can be compared exactly."""
    session.expire_all()
    dump: dict[str, list[tuple[object, ...]]] = {}
    for model in ALL_MODELS:
        columns = [column.key for column in model.__table__.columns]
        rows = session.scalars(select(model).order_by(model.id)).all()
        dump[model.__tablename__] = [tuple(getattr(row, name) for name in columns) for row in rows]
    return dump


def _refusal(tmp_path: Path, data: object) -> list[tuple[str, str]]:
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    assert caught.value.path == path
    return [(issue.key_path, issue.reason) for issue in caught.value.issues]


def test_demo_file_creates_the_expected_rows(session: Session) -> None:
    result = provision(session, DEMO_FILE)
    assert (result.tenants.created, result.sites.created) == (1, 1)
    assert (result.extensions.created, result.trunks.created) == (5, 1)
    tenant = session.scalars(select(Tenant)).one()
    assert tenant.contract_holder_name == "デモ株式会社"
    assert tenant.sip_domain == "127.0.0.1"
    extensions = session.scalars(select(Extension).order_by(Extension.number)).all()
    assert [extension.number for extension in extensions] == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
    ]
    assert extensions[0].digest_algorithms == ["SHA-256", "MD5"]
    assert extensions[4].digest_algorithms == ["MD5"]
    assert {extension.site.name for extension in extensions} == {"本社"}


def test_credentials_are_stored_as_ha1_only(session: Session) -> None:
    provision(session, DEMO_FILE)
    credential = session.scalars(
        select(SipCredential).where(SipCredential.username == "1004")
    ).one()
    assert credential.realm == "127.0.0.1"
    assert credential.ha1_md5 == compute_ha1("1004", "127.0.0.1", "pass1004", DigestAlgorithm.MD5)
    assert credential.ha1_sha256 == compute_ha1(
        "1004", "127.0.0.1", "pass1004", DigestAlgorithm.SHA_256
    )
    for rows in _dump_store(session).values():
        for row in rows:
            assert not any(isinstance(value, str) and "pass100" in value for value in row)


def test_running_twice_changes_nothing(session: Session) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    result = provision(session, DEMO_FILE)
    assert not result.changed
    assert result.extensions.unchanged == 5 and result.trunks.unchanged == 1
    assert _dump_store(session) == before


def test_changed_values_update_rows_in_place(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    data = _demo()
    data["tenants"][0]["extensions"][1]["no_answer_timeout_seconds"] = 45
    data["tenants"][0]["extensions"][1]["password"] = "changed"
    data["trunks"][0]["trusted_sources"] = ["127.0.0.2:5070", "127.0.0.3"]
    result = provision(session, _write(tmp_path, data))
    assert (result.extensions.updated, result.extensions.unchanged) == (1, 4)
    assert (result.trunks.updated, result.tenants.unchanged) == (1, 1)
    after = _dump_store(session)
    assert len(after["extension"]) == len(before["extension"])
    extension = session.scalars(select(Extension).where(Extension.number == "1002")).one()
    assert extension.no_answer_timeout_seconds == 45
    assert extension.credential is not None
    assert extension.credential.ha1_md5 == compute_ha1(
        "1002", "127.0.0.1", "changed", DigestAlgorithm.MD5
    )
    sources = session.scalars(select(TrunkSourceAddress).order_by(TrunkSourceAddress.id)).all()
    assert [(source.address, source.port) for source in sources] == [
        ("127.0.0.2", 5070),
        ("127.0.0.3", None),
    ]
    # Only the changed rows differ.
    assert after["tenant"] == before["tenant"]
    assert after["extension"][0] == before["extension"][0]


def test_moving_an_extension_to_another_site(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    data = _demo()
    data["tenants"][0]["sites"].append({"name": "大阪支店"})
    data["tenants"][0]["extensions"][2]["site"] = "大阪支店"
    result = provision(session, _write(tmp_path, data))
    assert (result.sites.created, result.extensions.updated) == (1, 1)
    extension = session.scalars(select(Extension).where(Extension.number == "1003")).one()
    assert extension.site.name == "大阪支店"


def test_a_bad_file_writes_nothing(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    data = _demo()
    data["tenants"][0]["extensions"][0]["display_name"] = "changed"  # valid change ...
    data["trunks"][0]["trusted_sources"] = ["not-an-ip"]  # ... in a refused file
    with pytest.raises(ProvisioningError):
        provision(session, _write(tmp_path, data))
    assert _dump_store(session) == before


def test_a_conflict_with_stored_rows_is_refused_and_rolled_back(
    session: Session, tmp_path: Path
) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    data = _demo()
    data["tenants"][0]["name"] = "other"  # a new tenant claiming demo's SIP domain
    data["accounts"] = []  # they name tenant demo, which this file no longer has
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        provision(session, path)
    assert caught.value.issues[0].key_path == "(store)"
    assert str(caught.value).startswith(f"{path}: (store): ")
    assert _dump_store(session) == before


def test_missing_number(tmp_path: Path) -> None:
    data = _demo()
    del data["tenants"][0]["extensions"][3]["number"]
    assert _refusal(tmp_path, data) == [("tenants[0].extensions[3].number", "Field required")]


def test_duplicate_extension(tmp_path: Path) -> None:
    data = _demo()
    data["tenants"][0]["extensions"][4]["number"] = "1001"
    assert _refusal(tmp_path, data) == [
        (
            "tenants[0].extensions[4].number",
            "duplicate extension number (also at tenants[0].extensions[0].number)",
        )
    ]


def test_bad_ip_in_trusted_sources(tmp_path: Path) -> None:
    data = _demo()
    data["trunks"][0]["trusted_sources"] = ["127.0.0.2", "127.0.0.300:5060"]
    assert _refusal(tmp_path, data) == [
        ("trunks[0].trusted_sources[1]", "'127.0.0.300' is not an IP address")
    ]


def test_bad_trunk_host(tmp_path: Path) -> None:
    data = _demo()
    data["trunks"][0]["host"] = "loadgen.example"
    assert _refusal(tmp_path, data) == [
        ("trunks[0].host", "must be an IP address (the switch does not resolve names)")
    ]


def test_unknown_algorithm(tmp_path: Path) -> None:
    data = _demo()
    data["tenants"][0]["extensions"][1]["digest_algorithms"] = ["SHA-512", "MD5"]
    assert _refusal(tmp_path, data) == [
        ("tenants[0].extensions[1].digest_algorithms[0]", "Input should be 'SHA-256' or 'MD5'")
    ]


def test_wrong_types(tmp_path: Path) -> None:
    data = _demo()
    data["tenants"][0]["extensions"][0]["no_answer_timeout_seconds"] = "thirty"
    data["tenants"][0]["extensions"][2]["number"] = 1003
    assert _refusal(tmp_path, data) == [
        (
            "tenants[0].extensions[0].no_answer_timeout_seconds",
            "Input should be a valid integer",
        ),
        (
            "tenants[0].extensions[2].number",
            "Input should be a valid string (quote it: YAML reads 0120 as the number 80)",
        ),
    ]


def test_unknown_key_and_unknown_site(tmp_path: Path) -> None:
    data = _demo()
    data["tenants"][0]["extensions"][0]["pasword"] = "typo"
    assert _refusal(tmp_path, data) == [
        ("tenants[0].extensions[0].pasword", "Extra inputs are not permitted")
    ]
    data = _demo()
    data["tenants"][0]["extensions"][0]["site"] = "支社"
    assert _refusal(tmp_path, data) == [
        ("tenants[0].extensions[0].site", "names no site of this tenant")
    ]


def test_every_problem_is_listed(tmp_path: Path) -> None:
    data = _demo()
    data["trunks"].append({"name": "loadgen", "host": "127.0.0.9", "tenant": "nobody"})
    data["trunks"][1]["trusted_sources"] = ["127.0.0.2"]
    assert _refusal(tmp_path, data) == [
        ("trunks[1].name", "duplicate trunk name (also at trunks[0].name)"),
        ("trunks[1].tenant", "names no tenant in this file"),
        (
            "trunks[1].trusted_sources[0]",
            "duplicate trusted source (also at trunks[0].trusted_sources[0])",
        ),
    ]


def test_yaml_syntax_error_and_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("tenants: [\n", encoding="utf-8")
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    assert caught.value.issues[0].key_path.startswith("line ")
    path.write_text("trunks: []\ntrunks: []\n", encoding="utf-8")
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    assert [(issue.key_path, issue.reason) for issue in caught.value.issues] == [
        ("line 2, column 1", "duplicate key 'trunks'")
    ]


def test_top_level_must_be_a_mapping_and_file_must_exist(tmp_path: Path) -> None:
    assert _refusal(tmp_path, ["a", "list"]) == [
        ("(top level)", "must be a mapping with tenants, trunks and accounts")
    ]
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(tmp_path / "missing.yaml")
    assert caught.value.issues[0].key_path == "(file)"


def test_error_text_names_the_file_and_never_the_password(tmp_path: Path) -> None:
    data = _demo()
    data["tenants"][0]["extensions"][0]["password"] = 12345
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: tenants[0].extensions[0].password: ")
    assert "12345" not in text
