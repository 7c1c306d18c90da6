"""Provisioning: idempotent writes, updates, and bad files refused whole with key paths."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.domain import (
    AnnouncementLanguage,
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    ScheduleAction,
    TrunkKind,
    compute_ha1,
)
from cloudpbx.models import (
    Account,
    AuditLog,
    Extension,
    MobileLine,
    SipCredential,
    Site,
    Tenant,
    TollFreeAccountGrant,
    TollFreeDesignatedArea,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    TollFreeScheduleRange,
    Trunk,
    TrunkSourceAddress,
)
from cloudpbx.provisioning import ProvisioningError, load_provisioning_file, provision
from cloudpbx.repository import load_snapshot

from .conftest import DEMO_FILE

ALL_MODELS = (
    Tenant,
    Site,
    MobileLine,
    Extension,
    SipCredential,
    Trunk,
    TrunkSourceAddress,
    Account,
    AuditLog,
    TollFreeNumber,
    TollFreeDestinationSet,
    TollFreeDestination,
    TollFreeSchedule,
    TollFreeScheduleRange,
    TollFreeDesignatedArea,
    TollFreeAccountGrant,
)


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
    assert (result.tenants.created, result.sites.created, result.mobile_lines.created) == (1, 2, 2)
    assert (result.extensions.created, result.trunks.created) == (10, 5)
    assert (result.accounts.created, result.tollfree_numbers.created) == (4, 1)
    tenant = session.scalars(select(Tenant)).one()
    assert tenant.contract_holder_name == "デモ株式会社"
    assert tenant.sip_domain == "127.0.0.1"
    assert tenant.address.startswith("東京都")
    extensions = session.scalars(select(Extension).order_by(Extension.number)).all()
    assert [extension.number for extension in extensions] == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
        "1101",
        "2001",
        "2002",
        "2102",
        "3000",
    ]
    assert extensions[0].digest_algorithms == ["SHA-256", "MD5"]
    assert extensions[4].digest_algorithms == ["MD5"]
    assert {extension.site.name for extension in extensions[:5]} == {"Tokyo"}
    assert extensions[5].site.name == "Osaka"
    mobile = {extension.number: extension for extension in extensions[6:9]}
    assert all(extension.kind is ExtensionKind.MOBILE for extension in mobile.values())
    assert all(extension.credential is None for extension in mobile.values())
    assert mobile["2102"].mobile_identity is MobileIdentity.B
    assert mobile["2102"].mobile_line is mobile["2002"].mobile_line
    line_2001 = mobile["2001"].mobile_line
    assert line_2001 is not None
    assert (line_2001.msisdn, line_2001.option_050, line_2001.number_050) == (
        "+819012340001",
        True,
        "05012340001",
    )
    assert line_2001.contract_holder_name == "デモ株式会社"
    line_2002 = mobile["2002"].mobile_line
    assert line_2002 is not None
    assert (line_2002.b_number, line_2002.option_roaming) == ("+819012349002", True)
    pbx = extensions[9]
    assert (pbx.kind, pbx.range_last) == (ExtensionKind.CUSTOMER_PBX, "3099")
    assert pbx.trunk is not None and pbx.trunk.name == "hq-pbx"
    trunks = {trunk.name: trunk for trunk in session.scalars(select(Trunk))}
    assert {name: (trunk.kind, trunk.host) for name, trunk in trunks.items()} == {
        "loadgen": (TrunkKind.PSTN, "127.0.0.2"),
        "pstn": (TrunkKind.PSTN, "127.0.0.3"),
        "mobile": (TrunkKind.MOBILE_NETWORK, "127.0.0.4"),
        "hq-pbx": (TrunkKind.CUSTOMER_PBX, "127.0.0.5"),
        "gateway": (TrunkKind.EXTERNAL_GATEWAY, "127.0.0.6"),
    }
    assert all(
        [source.address for source in trunk.source_addresses] == [trunk.host]
        for trunk in trunks.values()
    )
    number = session.scalars(select(TollFreeNumber)).one()
    assert (number.number, number.contracted_channels, number.channel_setting) == (
        "0120000111",
        10,
        10,
    )
    assert number.designated_whole_country
    [default] = number.destination_sets
    assert [
        (item.position, item.number, item.weight, item.trunk.name) for item in default.destinations
    ] == [(1, "0312340001", 3, "pstn"), (2, "0612340001", 1, "pstn")]
    [schedule] = number.schedules
    assert (schedule.action, schedule.enabled) == (ScheduleAction.AFTER_HOURS, False)
    assert [grant.account.login for grant in number.grants] == ["tf@demo"]


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
    assert result.extensions.unchanged == 10 and result.trunks.unchanged == 5
    assert result.tollfree_numbers.unchanged == 1 and result.mobile_lines.unchanged == 2
    assert _dump_store(session) == before


def test_changed_values_update_rows_in_place(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    data = _demo()
    data["tenants"][0]["extensions"][1]["no_answer_timeout_seconds"] = 45
    data["tenants"][0]["extensions"][1]["password"] = "changed"
    data["trunks"][0]["trusted_sources"] = ["127.0.0.2:5070", "127.0.0.9"]
    result = provision(session, _write(tmp_path, data))
    assert (result.extensions.updated, result.extensions.unchanged) == (1, 9)
    assert (result.trunks.updated, result.tenants.unchanged) == (1, 1)
    after = _dump_store(session)
    assert len(after["extension"]) == len(before["extension"])
    extension = session.scalars(select(Extension).where(Extension.number == "1002")).one()
    assert extension.no_answer_timeout_seconds == 45
    assert extension.credential is not None
    assert extension.credential.ha1_md5 == compute_ha1(
        "1002", "127.0.0.1", "changed", DigestAlgorithm.MD5
    )
    loadgen = session.scalars(select(Trunk).where(Trunk.name == "loadgen")).one()
    assert [(source.address, source.port) for source in loadgen.source_addresses] == [
        ("127.0.0.2", 5070),
        ("127.0.0.9", None),
    ]
    # Only the changed rows differ.
    assert after["tenant"] == before["tenant"]
    assert after["extension"][0] == before["extension"][0]


def test_announcement_language_is_provisioned_and_kept_when_left_out(
    session: Session, tmp_path: Path
) -> None:
    def stored() -> AnnouncementLanguage:
        session.expire_all()
        return session.scalars(
            select(Tenant.announcement_language).where(Tenant.name == "demo")
        ).one()

    provision(session, DEMO_FILE)
    assert stored() is AnnouncementLanguage.JA  # the default
    data = _demo()
    data["tenants"][0]["announcement_language"] = "en"
    result = provision(session, _write(tmp_path, data))
    assert result.tenants.updated == 1
    (entry,) = load_snapshot(session).tenants.values()
    assert entry.announcement_language is AnnouncementLanguage.EN
    assert stored() is AnnouncementLanguage.EN
    update = session.scalars(
        select(AuditLog).where(AuditLog.action == "tenant.update").order_by(AuditLog.id)
    ).all()[-1]
    assert update.before is not None and update.after is not None
    assert (update.before["announcement_language"], update.after["announcement_language"]) == (
        "ja",
        "en",
    )
    # A file without the key keeps the customer's choice (the API changes it too).
    result = provision(session, DEMO_FILE)
    assert result.tenants.unchanged == 1
    assert stored() is AnnouncementLanguage.EN


@pytest.mark.parametrize("value", ["fr", "EN", 1, None])
def test_a_bad_announcement_language_is_refused_by_its_key_path(
    tmp_path: Path, value: object
) -> None:
    data = _demo()
    data["tenants"][0]["announcement_language"] = value
    if value is None:
        # `announcement_language: null` is the same as leaving it out.
        path = _write(tmp_path, data)
        assert load_provisioning_file(path).tenants[0].announcement_language is None
        return
    assert _refusal(tmp_path, data) == [
        ("tenants[0].announcement_language", "Input should be 'ja' or 'en'")
    ]


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
    tenant = data["tenants"][0]
    # A new tenant claiming demo's SIP domain (and nothing that names tenant demo).
    data = {
        "tenants": [
            {"name": "other", "contract_holder_name": "他社", "sip_domain": tenant["sip_domain"]}
        ]
    }
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
        ("trunks[0].trusted_sources[1]", "must be an IP address with an optional :port")
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
    data["trunks"][5]["trusted_sources"] = ["127.0.0.2"]
    assert _refusal(tmp_path, data) == [
        ("trunks[5].name", "duplicate trunk name (also at trunks[0].name)"),
        ("trunks[5].tenant", "names no tenant in this file"),
        (
            "trunks[5].trusted_sources[0]",
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


# --- the whole domain model --------------------------------------------------------------


def _tenant(data: dict[str, Any]) -> dict[str, Any]:
    tenant: dict[str, Any] = data["tenants"][0]
    return tenant


def _tollfree(data: dict[str, Any]) -> dict[str, Any]:
    number: dict[str, Any] = data["tollfree_numbers"][0]
    return number


def _set_weight(weight: int) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        _tollfree(data)["destination_sets"]["default"][1]["weight"] = weight

    return change


def _office_weight(weight: int) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        _tollfree(data)["service_type"] = "office"
        _tollfree(data)["destination_sets"]["default"][1]["weight"] = weight

    return change


def _overlapping_schedule(data: dict[str, Any]) -> None:
    _tollfree(data)["schedules"].append(
        {
            "name": "lunch",
            "action": "after_hours",
            "ranges": [{"weekday": "mon", "start": "08:00", "end": "13:00"}],
        }
    )


def _overlap_in_one_schedule(data: dict[str, Any]) -> None:
    _tollfree(data)["schedules"][0]["ranges"].append(
        {"weekday": 4, "start": "23:00", "end": "24:00"}
    )


def _grant_51(data: dict[str, Any]) -> None:
    for index in range(50):
        data["accounts"].append(
            {
                "login": f"viewer{index}@demo",
                "role": "tollfree_viewer",
                "tenant": "demo",
                "password": "Viewer-Pass-2026!",
            }
        )
        _tollfree(data)["accounts"].append(f"viewer{index}@demo")


def _other_holder(data: dict[str, Any]) -> None:
    _tenant(data)["mobile_lines"][1]["contract_holder_name"] = "他社株式会社"


def _b_without_2in1(data: dict[str, Any]) -> None:
    del _tenant(data)["mobile_lines"][1]["b_number"]


def _pbx_trunk_of_wrong_kind(data: dict[str, Any]) -> None:
    _tenant(data)["extensions"][9]["trunk"] = "gateway"


def _single_inside_range(data: dict[str, Any]) -> None:
    _tenant(data)["extensions"].append({"number": "3042", "site": "Tokyo", "password": "p3042"})


def _overlapping_range(data: dict[str, Any]) -> None:
    _tenant(data)["extensions"].append(
        {"number": "3090", "range_last": "3199", "site": "Tokyo", "kind": "customer_pbx",
         "trunk": "hq-pbx"}
    )  # fmt: skip


def _change(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """Set the value at a dotted path of keys and list indexes (`tenants.0.name`)."""

    def change(data: dict[str, Any]) -> None:
        parts = path.split(".")
        target: Any = data
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "key_path", "reason"),
    [
        (_set_weight(10), "tollfree_numbers[0].destination_sets.default[1].weight", "0 to 9"),
        (_set_weight(-1), "tollfree_numbers[0].destination_sets.default[1].weight", "0 to 9"),
        (_office_weight(33), "tollfree_numbers[0].destination_sets.default[1].weight", "0 to 32"),
        (
            _change("tollfree_numbers.0.channel_setting", 11),
            "tollfree_numbers[0].channel_setting",
            "must not exceed the contracted 10 channels",
        ),
        (_overlapping_schedule, "tollfree_numbers[0].schedules[1].ranges[0]", "overlaps"),
        (_overlap_in_one_schedule, "tollfree_numbers[0].schedules[0].ranges[13]", "overlaps"),
        (
            _change("tollfree_numbers.0.schedules.0.ranges.0.end", "00:00"),
            "tollfree_numbers[0].schedules[0].ranges[0].end",
            "must be after start",
        ),
        (
            _change("tollfree_numbers.0.schedules.0.ranges.0.end", "24:30"),
            "tollfree_numbers[0].schedules[0].ranges[0].end",
            "24:00 only as an end",
        ),
        (
            _change("tollfree_numbers.0.schedules.0.ranges.1.start", 1080),
            "tollfree_numbers[0].schedules[0].ranges[1].start",
            "quoted",
        ),
        (_grant_51, "tollfree_numbers[0].accounts", "at most 50"),
        (
            _change("tollfree_numbers.0.accounts", ["admin@demo"]),
            "tollfree_numbers[0].accounts[0]",
            "role user or tollfree_viewer",
        ),
        (
            _change("tollfree_numbers.0.accounts", ["nobody@demo"]),
            "tollfree_numbers[0].accounts[0]",
            "names no account in this file",
        ),
        (
            _change("tollfree_numbers.0.destination_sets.default.0.trunk", "nowhere"),
            "tollfree_numbers[0].destination_sets.default[0].trunk",
            "names no trunk in this file",
        ),
        (
            _change(
                "tollfree_numbers.0.destination_sets",
                {"main": [{"number": "0312340001", "weight": 1, "trunk": "pstn"}]},
            ),  # noqa: E501
            "tollfree_numbers[0].destination_sets",
            "must have a set named default",
        ),
        (
            _change("tollfree_numbers.0.destination_sets.default.1.number", "03-1234-0001"),
            "tollfree_numbers[0].destination_sets.default[1].number",
            "appears twice",
        ),
        (
            _change("tollfree_numbers.0.number", "0120-000-11"),
            "tollfree_numbers[0].number",
            "0120 number of 10 digits",
        ),
        (
            _change("tollfree_numbers.0.options", ["distribution", "teleport"]),
            "tollfree_numbers[0].options[1]",
            "must be one of",
        ),
        (
            _change("tollfree_numbers.0.designated_areas", {"whole_country": False}),
            "tollfree_numbers[0].designated_areas",
            "must name prefectures or area_codes",
        ),
        (
            _change("tollfree_numbers.0.designated_areas.prefectures", ["48"]),
            "tollfree_numbers[0].designated_areas.prefectures[0]",
            "01 to 47",
        ),
        (
            _change("tollfree_numbers.0.schedules.0.action", "destination_change"),
            "tollfree_numbers[0].schedules[0].destination_set",
            "is required for destination_change",
        ),
        (
            _change("tollfree_numbers.0.tenant", "nobody"),
            "tollfree_numbers[0].tenant",
            "names no tenant in this file",
        ),
        (_other_holder, "tenants[0].mobile_lines[1].contract_holder_name", "same-name rule"),
        (
            _change("tenants.0.mobile_lines.0.msisdn", "0312345678"),
            "tenants[0].mobile_lines[0].msisdn",
            "must be a mobile number",
        ),
        (
            _change("tenants.0.mobile_lines.0.number_050", None),
            "tenants[0].mobile_lines[0].number_050",
            "is required with option_050",
        ),
        (
            _change("tenants.0.mobile_lines.1.b_number", "090-1234-0001"),
            "tenants[0].mobile_lines[1].b_number",
            "duplicate mobile number (also at tenants[0].mobile_lines[0].msisdn)",
        ),
        (_b_without_2in1, "tenants[0].extensions[8].identity", "needs the line's 2in1 b_number"),
        (
            _change("tenants.0.extensions.6.mobile_line", "+819099999999"),
            "tenants[0].extensions[6].mobile_line",
            "names no mobile line",
        ),
        (
            _change("tenants.0.extensions.7.identity", "b"),
            "tenants[0].extensions[8].identity",
            "duplicate extension for this number of the line",
        ),
        (
            _change("tenants.0.extensions.6.password", "pass2001"),
            "tenants[0].extensions[6].password",
            "is only for a fixed_ip_phone extension",
        ),
        (
            _change("tenants.0.extensions.0.trunk", "hq-pbx"),
            "tenants[0].extensions[0].trunk",
            "is only for a customer_pbx extension",
        ),
        (
            _change("tenants.0.extensions.9.trunk", "nowhere"),
            "tenants[0].extensions[9].trunk",
            "names no trunk in this file",
        ),
        (_pbx_trunk_of_wrong_kind, "tenants[0].extensions[9].trunk", "customer_pbx trunk"),
        (
            _change("tenants.0.extensions.9.range_last", "309"),
            "tenants[0].extensions[9].range_last",
            "as many digits",
        ),
        (
            _change("tenants.0.extensions.9.range_last", "2999"),
            "tenants[0].extensions[9].range_last",
            "must not be below number",
        ),
        (_single_inside_range, "tenants[0].extensions[10].number", "3042 overlaps 3000-3099"),
        (_overlapping_range, "tenants[0].extensions[10].number", "overlaps 3000-3099"),
        (
            _change("trunks.3.tenant", None),
            "trunks[3].tenant",
            "is required for a customer_pbx trunk",
        ),
        (_change("trunks.1.username", "carrier"), "trunks[1].password", "go together"),
        (
            _change("trunks.1.kind", "satellite"),
            "trunks[1].kind",
            "Input should be",
        ),
        (_change("trunks.1.capacity", -1), "trunks[1].capacity", "greater than or equal to 0"),
    ],
)
def test_a_bad_whole_model_entry_is_refused_by_its_key_path(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], key_path: str, reason: str
) -> None:
    data = _demo()
    change(data)
    issues = _refusal(tmp_path, data)
    assert any(path == key_path and reason in text for path, text in issues), issues


def test_a_trunk_password_needs_a_realm_without_tenant_and_is_never_echoed(
    tmp_path: Path,
) -> None:
    data = _demo()
    data["trunks"][1].update({"username": "carrier", "password": "Very-Secret-1"})
    data["trunks"][2].update({"username": "core", "password": 1234567})
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        load_provisioning_file(path)
    issues = [(issue.key_path, issue.reason) for issue in caught.value.issues]
    assert ("trunks[2].password", "Input should be a valid string") in [
        (key, reason.split(" (")[0]) for key, reason in issues
    ]
    text = str(caught.value)
    assert "Very-Secret-1" not in text and "1234567" not in text
    data["trunks"][2] = _demo()["trunks"][2]
    assert _refusal(tmp_path, data) == [
        ("trunks[1].realm", "is required for a trunk without a tenant")
    ]


def test_a_trunk_credential_is_stored_as_ha1_only(session: Session, tmp_path: Path) -> None:
    data = _demo()
    data["trunks"][3].update({"username": "hq", "password": "Pbx-Secret-9"})
    provision(session, _write(tmp_path, data))
    trunk = session.scalars(select(Trunk).where(Trunk.name == "hq-pbx")).one()
    assert (trunk.auth_username, trunk.auth_realm) == ("hq", "127.0.0.1")
    assert trunk.auth_ha1_md5 == compute_ha1("hq", "127.0.0.1", "Pbx-Secret-9", DigestAlgorithm.MD5)
    assert trunk.auth_ha1_sha256 == compute_ha1(
        "hq", "127.0.0.1", "Pbx-Secret-9", DigestAlgorithm.SHA_256
    )
    for rows in _dump_store(session).values():
        assert not any("Pbx-Secret-9" in str(value) for row in rows for value in row)


def test_whole_model_rerun_after_changes_is_idempotent(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    data = _demo()
    number = _tollfree(data)
    number["destination_sets"]["default"] = [
        {"number": "06-1234-0001", "weight": 2, "trunk": "pstn"},
        {"number": "03-1234-0001", "weight": 5, "trunk": "pstn"},
        {"number": "045-123-0001", "weight": 1, "trunk": "hq-pbx"},
    ]
    number["destination_sets"]["night"] = [{"number": "0312340009", "weight": 1, "trunk": "pstn"}]
    number["schedules"] = [
        {
            "name": "night",
            "action": "destination_change",
            "destination_set": "night",
            "ranges": [{"weekday": "sat", "start": "00:00", "end": "24:00"}],
        }
    ]
    number["designated_areas"] = {"whole_country": False, "area_codes": ["03", "06"]}
    number["accounts"] = []
    _tenant(data)["mobile_lines"][0]["option_gateway"] = True
    _tenant(data)["extensions"][9]["range_last"] = "3049"
    path = _write(tmp_path, data)
    result = provision(session, path)
    assert (result.tollfree_numbers.updated, result.mobile_lines.updated) == (1, 1)
    assert result.extensions.updated == 1
    stored = session.scalars(select(TollFreeNumber)).one()
    assert [item.name for item in stored.destination_sets] == ["default", "night"]
    assert [
        (item.position, item.number, item.weight)
        for item in stored.destination_sets[0].destinations
    ] == [(1, "0612340001", 2), (2, "0312340001", 5), (3, "0451230001", 1)]
    assert [schedule.name for schedule in stored.schedules] == ["night"]
    assert sorted(area.code for area in stored.designated_areas) == ["03", "06"]
    assert stored.grants == []
    before = _dump_store(session)
    again = provision(session, path)
    assert not again.changed
    assert _dump_store(session) == before
    # Back to the demo: the disabled after-hours schedule returns, the night set goes.
    provision(session, DEMO_FILE)
    stored = session.scalars(select(TollFreeNumber)).one()
    assert [item.name for item in stored.destination_sets] == ["default"]
    assert [schedule.name for schedule in stored.schedules] == ["after-hours"]


def test_a_file_overlapping_a_stored_range_is_refused(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    before = _dump_store(session)
    # A file that does not mention the stored 3000-3099 range but adds 3050.
    data = _demo()
    _tenant(data)["extensions"] = [{"number": "3050", "site": "Tokyo", "password": "p3050"}]
    data["accounts"] = [account for account in data["accounts"] if "extension" not in account]
    path = _write(tmp_path, data)
    with pytest.raises(ProvisioningError) as caught:
        provision(session, path)
    assert [(issue.key_path, issue.reason) for issue in caught.value.issues] == [
        ("tenants[0].extensions[0].number", "3050 overlaps the stored extension 3000-3099")
    ]
    assert _dump_store(session) == before


def test_a_mobile_extension_can_become_a_fixed_phone(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE)
    data = _demo()
    _tenant(data)["extensions"][6] = {"number": "2001", "site": "Osaka", "password": "pass2001"}
    result = provision(session, _write(tmp_path, data))
    assert result.extensions.updated == 1
    extension = session.scalars(select(Extension).where(Extension.number == "2001")).one()
    assert (extension.kind, extension.mobile_line, extension.mobile_identity) == (
        ExtensionKind.FIXED_IP_PHONE,
        None,
        None,
    )
    assert extension.credential is not None
