"""The snapshot built from the store: lookups, immutability, and no SQL after loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from cloudpbx.domain import DigestAlgorithm, ExtensionKind, Transport, compute_ha1
from cloudpbx.provisioning import provision
from cloudpbx.repository import load_snapshot
from cloudpbx.snapshot import ConfigSnapshot, TrunkEntry, TrunkSource

from .conftest import DEMO_FILE


@pytest.fixture
def snapshot(session: Session) -> ConfigSnapshot:
    provision(session, DEMO_FILE)
    return load_snapshot(session)


def test_extension_by_domain_and_number(snapshot: ConfigSnapshot) -> None:
    extension = snapshot.extension("127.0.0.1", "1001")
    assert extension is not None
    assert (extension.tenant_name, extension.site_name) == ("demo", "本社")
    assert extension.kind is ExtensionKind.FIXED_IP_PHONE
    assert extension.digest_algorithms == (DigestAlgorithm.SHA_256, DigestAlgorithm.MD5)
    assert extension.no_answer_timeout_seconds == 30
    assert extension.static_contact_uri is None
    assert extension.address_of_record == "sip:1001@127.0.0.1"
    credential = extension.credential
    assert credential is not None
    assert (credential.username, credential.realm) == ("1001", "127.0.0.1")
    assert credential.ha1(DigestAlgorithm.SHA_256) == compute_ha1(
        "1001", "127.0.0.1", "pass1001", DigestAlgorithm.SHA_256
    )
    assert credential.ha1(DigestAlgorithm.MD5) == compute_ha1(
        "1001", "127.0.0.1", "pass1001", DigestAlgorithm.MD5
    )


def test_legacy_extension_offers_md5_only(snapshot: ConfigSnapshot) -> None:
    extension = snapshot.extension("127.0.0.1", "1005")
    assert extension is not None
    assert extension.digest_algorithms == (DigestAlgorithm.MD5,)
    assert extension.offered_algorithms((DigestAlgorithm.SHA_256,)) == (DigestAlgorithm.MD5,)


def test_unknown_extension_or_domain(snapshot: ConfigSnapshot) -> None:
    assert snapshot.extension("127.0.0.1", "1999") is None
    assert snapshot.extension("example.com", "1001") is None


def test_default_algorithms_and_static_contact(session: Session, tmp_path: Path) -> None:
    data = {
        "tenants": [
            {
                "name": "acme",
                "contract_holder_name": "株式会社アクメ",
                "sip_domain": "PBX.Example.COM",
                "sites": [{"name": "本社"}],
                "extensions": [
                    {"number": "200", "site": "本社", "password": "secret"},
                    {
                        "number": "201",
                        "site": "本社",
                        "static_contact_uri": "sip:201@192.0.2.10:5060",
                        "no_answer_timeout_seconds": 20,
                    },
                ],
            }
        ]
    }
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    provision(session, path)
    snapshot = load_snapshot(session)
    registering = snapshot.extension("pbx.example.com", "200")
    assert registering is not None and registering.digest_algorithms is None
    assert registering.offered_algorithms((DigestAlgorithm.SHA_256,)) == (DigestAlgorithm.SHA_256,)
    static = snapshot.extension("PBX.EXAMPLE.com", "201")
    assert static is not None
    assert static.credential is None
    assert static.static_contact_uri == "sip:201@192.0.2.10:5060"
    assert static.no_answer_timeout_seconds == 20


def test_tenant_and_trunk_entries(snapshot: ConfigSnapshot) -> None:
    tenant = snapshot.tenants["demo"]
    assert tenant.contract_holder_name == "デモ株式会社"
    assert tenant.site_names == ("本社",)
    trunk = snapshot.trunks["loadgen"]
    assert (trunk.host, trunk.port, trunk.transport) == ("127.0.0.2", 5060, Transport.UDP)
    assert trunk.sources == (TrunkSource("127.0.0.2", None),)


def test_trunk_by_source_address(snapshot: ConfigSnapshot) -> None:
    trunk = snapshot.trunk_for_source("127.0.0.2", 5060)
    assert trunk is not None and trunk.name == "loadgen"
    assert snapshot.trunk_for_source("127.0.0.2", 40000) is trunk
    assert snapshot.trunk_for_source("127.0.0.1", 5060) is None
    assert snapshot.trunk_for_source("not-an-address", 5060) is None


def _trunk(name: str, *sources: TrunkSource) -> TrunkEntry:
    return TrunkEntry(name, None, "192.0.2.1", 5060, Transport.UDP, sources)


def test_trunk_by_address_and_port_wins_over_address_only() -> None:
    snapshot = ConfigSnapshot.build(
        [],
        [],
        [
            _trunk("carrier", TrunkSource("192.0.2.1", None)),
            _trunk("pbx", TrunkSource("192.0.2.1", 5080), TrunkSource("2001:db8::1", 5060)),
        ],
    )
    assert snapshot.trunk_for_source("192.0.2.1", 5080) == snapshot.trunks["pbx"]
    assert snapshot.trunk_for_source("192.0.2.1", 5060) == snapshot.trunks["carrier"]
    assert snapshot.trunk_for_source("[2001:db8:0::0001]", 5060) == snapshot.trunks["pbx"]
    assert snapshot.trunk_for_source("2001:db8::1", 5061) is None


def test_build_refuses_a_source_on_two_trunks() -> None:
    with pytest.raises(ValueError, match="claimed by trunks 'a' and 'b'"):
        ConfigSnapshot.build(
            [],
            [],
            [
                _trunk("a", TrunkSource("192.0.2.1", 5060)),
                _trunk("b", TrunkSource("192.0.2.1", 5060)),
            ],
        )


def test_snapshot_is_immutable(snapshot: ConfigSnapshot) -> None:
    extension = snapshot.extension("127.0.0.1", "1001")
    assert extension is not None and extension.credential is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        extension.number = "9999"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.extensions[("127.0.0.1", "9999")] = extension  # type: ignore[index]
    with pytest.raises(TypeError):
        extension.credential.ha1_by_algorithm[DigestAlgorithm.MD5] = "x"  # type: ignore[index]


def test_loading_is_a_fixed_number_of_queries_and_lookups_run_none(
    session: Session, engine: Engine, tmp_path: Path
) -> None:
    statements: list[str] = []

    def record(*arguments: object) -> None:
        statements.append(str(arguments[2]))

    provision(session, DEMO_FILE)
    event.listen(engine, "before_cursor_execute", record)
    try:
        session.expire_all()
        snapshot = load_snapshot(session)
        loaded_with_five = len(statements)
        snapshot.extension("127.0.0.1", "1001")
        snapshot.trunk_for_source("127.0.0.2", 5060)
        assert len(statements) == loaded_with_five

        data = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
        for number in range(2000, 2050):
            data["tenants"][0]["extensions"].append(
                {"number": str(number), "site": "本社", "password": f"pass{number}"}
            )
        path = tmp_path / "more.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        provision(session, path)
        session.expire_all()
        statements.clear()
        assert len(load_snapshot(session).extensions) == 55
        assert len(statements) == loaded_with_five
    finally:
        event.remove(engine, "before_cursor_execute", record)
