"""The snapshot built from the store: lookups, immutability, and no SQL after loading."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from cloudpbx.domain import (
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
    Transport,
    TrunkKind,
    compute_ha1,
)
from cloudpbx.provisioning import provision
from cloudpbx.repository import load_snapshot
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DestinationEntry,
    ExtensionEntry,
    ScheduleRangeEntry,
    TrunkEntry,
    TrunkSource,
)

from .conftest import DEMO_FILE


@pytest.fixture
def snapshot(session: Session) -> ConfigSnapshot:
    provision(session, DEMO_FILE)
    return load_snapshot(session)


def test_extension_by_domain_and_number(snapshot: ConfigSnapshot) -> None:
    extension = snapshot.extension("127.0.0.1", "1001")
    assert extension is not None
    assert (extension.tenant_name, extension.site_name) == ("demo", "Tokyo")
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
    assert tenant.site_names == ("Tokyo", "Osaka")
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
        for number in range(5000, 5050):
            data["tenants"][0]["extensions"].append(
                {"number": str(number), "site": "Tokyo", "password": f"pass{number}"}
            )
        path = tmp_path / "more.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        provision(session, path)
        session.expire_all()
        statements.clear()
        # 9 single numbers in the demo (its customer-PBX range is not one) and 50 more.
        assert len(load_snapshot(session).extensions) == 59
        assert len(statements) == loaded_with_five
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- the whole domain model --------------------------------------------------------------


def test_tenant_contract_information(snapshot: ConfigSnapshot) -> None:
    tenant = snapshot.tenants["demo"]
    assert tenant.address.startswith("東京都")
    assert tenant.basic_contract == "DEMO-0001"


def test_trunk_kinds_capacity_and_sources(snapshot: ConfigSnapshot) -> None:
    assert {name: (trunk.kind, trunk.tenant_name) for name, trunk in snapshot.trunks.items()} == {
        "loadgen": (TrunkKind.PSTN, None),
        "pstn": (TrunkKind.PSTN, None),
        "mobile": (TrunkKind.MOBILE_NETWORK, None),
        "hq-pbx": (TrunkKind.CUSTOMER_PBX, "demo"),
        "gateway": (TrunkKind.EXTERNAL_GATEWAY, "demo"),
    }
    assert snapshot.trunks["hq-pbx"].capacity == 10
    assert snapshot.trunks["pstn"].capacity is None
    assert snapshot.trunks["hq-pbx"].credential is None
    for host, name in (("127.0.0.3", "pstn"), ("127.0.0.4", "mobile"), ("127.0.0.6", "gateway")):
        trunk = snapshot.trunk_for_source(host, 5060)
        assert trunk is not None and trunk.name == name


def test_trunk_digest_credential(session: Session, tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    data["trunks"][3].update({"username": "hq", "password": "pbx-secret"})
    data["trunks"][2].update({"username": "core", "password": "core-secret", "realm": "carrier"})
    path = tmp_path / "digest.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    provision(session, path)
    snapshot = load_snapshot(session)
    pbx = snapshot.trunks["hq-pbx"].credential
    assert pbx is not None
    assert (pbx.username, pbx.realm) == ("hq", "127.0.0.1")  # the tenant's SIP domain
    assert pbx.ha1(DigestAlgorithm.MD5) == compute_ha1(
        "hq", "127.0.0.1", "pbx-secret", DigestAlgorithm.MD5
    )
    assert pbx.ha1(DigestAlgorithm.SHA_256) == compute_ha1(
        "hq", "127.0.0.1", "pbx-secret", DigestAlgorithm.SHA_256
    )
    mobile = snapshot.trunks["mobile"].credential
    assert mobile is not None and (mobile.username, mobile.realm) == ("core", "carrier")


def test_mobile_extensions_and_lines(snapshot: ConfigSnapshot) -> None:
    extension = snapshot.extension("127.0.0.1", "2001")
    assert extension is not None and extension.kind is ExtensionKind.MOBILE
    assert extension.credential is None and extension.static_contact_uri is None
    assert extension.mobile_identity is MobileIdentity.A
    assert extension.mobile_number == "+819012340001"
    line = extension.mobile_line
    assert line is not None
    assert (line.option_050, line.number_050, line.option_gateway) == (True, "05012340001", False)
    assert (line.option_roaming, line.abroad) == (False, False)

    b_extension = snapshot.extension("127.0.0.1", "2102")
    assert b_extension is not None and b_extension.mobile_identity is MobileIdentity.B
    assert b_extension.mobile_number == "+819012349002"
    two_in_one = snapshot.mobile_line("+819012349002")
    assert two_in_one is not None and two_in_one is snapshot.mobile_line("+819012340002")
    assert two_in_one.option_roaming and two_in_one.tenant_name == "demo"
    assert two_in_one.identity_of("+819012349002") is MobileIdentity.B
    assert two_in_one.identity_of("+819012340002") is MobileIdentity.A
    assert two_in_one.identity_of("+819012340001") is None

    found = snapshot.mobile_extension("+819012340002")
    assert found is not None and found.number == "2002"
    mobile_b = snapshot.mobile_extension("+819012349002")
    assert mobile_b is not None and mobile_b.number == "2102"
    assert snapshot.mobile_extension("+819099999999") is None
    assert snapshot.mobile_line("+819099999999") is None


def test_fixed_phone_voicemail_flag(session: Session, tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    data["tenants"][0]["extensions"][2]["voicemail"] = True
    path = tmp_path / "voicemail.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    provision(session, path)
    snapshot = load_snapshot(session)
    with_voicemail = snapshot.extension("127.0.0.1", "1003")
    without = snapshot.extension("127.0.0.1", "1002")
    assert with_voicemail is not None and with_voicemail.voicemail_enabled
    assert without is not None and not without.voicemail_enabled


def test_customer_pbx_range_lookup(snapshot: ConfigSnapshot) -> None:
    # `extension()` stays exact: the B2BUA routes single numbers only.
    assert snapshot.extension("127.0.0.1", "3000") is None
    assert snapshot.extension("127.0.0.1", "3050") is None
    for number in ("3000", "3050", "3099"):
        entry = snapshot.extension_for_number("127.0.0.1", number)
        assert entry is not None, number
        assert (entry.kind, entry.number, entry.range_last) == (
            ExtensionKind.CUSTOMER_PBX,
            "3000",
            "3099",
        )
        assert entry.trunk_name == "hq-pbx" and entry.covers(number)
    for number in ("2999", "3100", "300", "30000", "30a0", ""):
        assert snapshot.extension_for_number("127.0.0.1", number) is None, number
    assert snapshot.extension_for_number("example.com", "3050") is None
    exact = snapshot.extension_for_number("127.0.0.1", "1001")
    assert exact is not None and exact is snapshot.extension("127.0.0.1", "1001")
    assert [entry.number for entry in snapshot.extension_ranges["127.0.0.1"]] == ["3000"]


def _range(number: str, last: str, domain: str = "d.example") -> ExtensionEntry:
    return ExtensionEntry(
        "t", "s", domain, number, ExtensionKind.CUSTOMER_PBX, "", None, 30, None, None,
        range_last=last, trunk_name="pbx",
    )  # fmt: skip


def _single(number: str, domain: str = "d.example") -> ExtensionEntry:
    return ExtensionEntry(
        "t", "s", domain, number, ExtensionKind.FIXED_IP_PHONE, "", None, 30, None, None
    )


def test_range_lookup_among_many_ranges() -> None:
    snapshot = ConfigSnapshot.build(
        [],
        [
            _range("500", "599"),
            _range("3000", "3099"),
            _range("3100", "3100"),
            _range("3200", "3299"),
            _range("40", "49"),
            _single("3150"),
            _range("3000", "3999", domain="other.example"),
        ],
        [],
    )
    cases = {
        "3000": "3000", "3099": "3000", "3100": "3100", "3101": None, "3150": "3150",
        "3199": None, "3250": "3200", "3300": None, "45": "40", "50": None, "550": "500",
        "5": None, "4": None,
    }  # fmt: skip
    for number, expected in cases.items():
        entry = snapshot.extension_for_number("D.EXAMPLE", number)
        assert (None if entry is None else entry.number) == expected, number
    other = snapshot.extension_for_number("other.example", "3150")
    assert other is not None and other.number == "3000"


def test_build_refuses_overlaps_and_duplicates() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ConfigSnapshot.build([], [_range("3000", "3099"), _range("3050", "3199")], [])
    with pytest.raises(ValueError, match="inside a range"):
        ConfigSnapshot.build([], [_range("3000", "3099"), _single("3050")], [])
    with pytest.raises(ValueError, match="duplicate extension"):
        ConfigSnapshot.build([], [_single("3000"), _range("3000", "3099")], [])
    # Different lengths or different domains never overlap.
    ConfigSnapshot.build(
        [],
        [_range("3000", "3099"), _range("300", "309"), _single("3050", domain="x.example")],
        [],
    )


def test_tollfree_number_entry(snapshot: ConfigSnapshot) -> None:
    assert snapshot.tollfree_number("0120-000-111") is None  # national form only
    number = snapshot.tollfree_number("0120000111")
    assert number is not None
    assert (number.tenant_name, number.service_type) == ("demo", TollFreeServiceType.STANDARD)
    assert (number.contracted_channels, number.channel_setting) == (10, 10)
    assert not number.strict_distribution
    assert (number.after_hours_announcement, number.refusal_announcement) == (
        "after_hours_ja",
        "out_of_area_ja",
    )
    assert number.refusal_action is RefusalAction.ANNOUNCEMENT
    assert number.designated_whole_country
    assert number.designated_prefectures == frozenset() == number.designated_area_codes
    assert (number.allow_fixed, number.allow_mobile, number.allow_withheld) == (True,) * 3
    assert "distribution" in number.options
    default = number.default_destinations
    assert default is not None and list(number.destination_sets) == ["default"]
    assert default.destinations == (
        DestinationEntry("0312340001", 3, "pstn"),
        DestinationEntry("0612340001", 1, "pstn"),
    )
    [schedule] = number.schedules
    assert (schedule.name, schedule.action, schedule.enabled) == (
        "after-hours",
        ScheduleAction.AFTER_HOURS,
        False,
    )
    assert schedule.destination_set_name is None
    assert schedule.ranges[0] == ScheduleRangeEntry(ScheduleRangeKind.WEEKLY, 0, None, 0, 540)
    assert schedule.ranges[-1] == ScheduleRangeEntry(ScheduleRangeKind.HOLIDAY, None, None, 0, 1440)


def test_tollfree_sets_schedules_and_areas_in_order(session: Session, tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO_FILE.read_text(encoding="utf-8"))
    number = data["tollfree_numbers"][0]
    number["service_type"] = "office"
    number["destination_sets"]["disaster"] = [
        {"number": "+81-6-1234-0001", "weight": 32, "trunk": "pstn"},
        {"number": "0312340001", "weight": 0, "trunk": "hq-pbx"},
    ]
    number["schedules"].append(
        {
            "name": "year-end",
            "action": "destination_change",
            "destination_set": "disaster",
            "ranges": [{"date": datetime.date(2026, 12, 31), "start": "09:00", "end": "17:30"}],
        }
    )
    number["designated_areas"] = {
        "whole_country": False,
        "prefectures": ["13", "27"],
        "area_codes": ["045"],
        "allow_withheld": False,
        "refusal_action": "reject",
    }
    path = tmp_path / "tollfree.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    provision(session, path)
    entry = load_snapshot(session).tollfree_number("0120000111")
    assert entry is not None
    assert list(entry.destination_sets) == ["default", "disaster"]
    assert entry.destination_sets["disaster"].destinations == (
        DestinationEntry("0612340001", 32, "pstn"),
        DestinationEntry("0312340001", 0, "hq-pbx"),
    )
    year_end = entry.schedules[1]
    assert (year_end.action, year_end.destination_set_name, year_end.enabled) == (
        ScheduleAction.DESTINATION_CHANGE,
        "disaster",
        True,
    )
    assert year_end.ranges == (
        ScheduleRangeEntry(ScheduleRangeKind.DATE, None, datetime.date(2026, 12, 31), 540, 1050),
    )
    assert not entry.designated_whole_country
    assert entry.designated_prefectures == frozenset({"13", "27"})
    assert entry.designated_area_codes == frozenset({"045"})
    assert not entry.allow_withheld and entry.refusal_action is RefusalAction.REJECT
