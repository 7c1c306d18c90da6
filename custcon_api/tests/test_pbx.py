"""The Cloud PBX endpoints: tenants, sites, mobile lines, extensions, the mobile mapping
and trunks. Each test builds what it needs through the API (only tenant `demo`, its
extension 1001, tenant `other` and the conftest accounts are assumed), and checks the
status, the body, the rows, the audit rows and the published `config` notification."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.domain import DigestAlgorithm, compute_ha1
from cloudpbx.models import AuditLog, Extension, MobileLine, Site, Tenant, Trunk
from cloudpbx.notify import CONFIG
from cloudpbx.provisioning import PROVISIONING_ACTOR

from .conftest import Subscriber, bearer, token_for

TENANTS = "/api/v1/tenants"
TRUNKS = "/api/v1/trunks"
DEMO = f"{TENANTS}/demo"
HOLDER = "デモ株式会社"


def audit_rows(session_factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    """The API's audit rows of `action` (not the demo provisioning's)."""
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.action == action, AuditLog.actor != PROVISIONING_ACTOR)
                .order_by(AuditLog.id)
            )
        )


def locations(response: Any) -> list[str]:
    """The fields a 422 body names."""
    return [detail["loc"][-1] for detail in response.json()["detail"]]


def add_site(api: TestClient, headers: dict[str, str], name: str = "Tokyo-test") -> None:
    response = api.post(f"{DEMO}/sites", headers=headers, json={"name": name})
    assert response.status_code in (201, 409), response.text


def add_line(api: TestClient, operator: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"msisdn": "090-5555-0001", "contract_holder_name": HOLDER, **fields}
    response = api.post(f"{DEMO}/mobile-lines", headers=operator, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def add_pbx_trunk(
    api: TestClient, operator: dict[str, str], name: str = "pbx-test", tenant: str = "demo"
) -> None:
    response = api.post(
        TRUNKS,
        headers=operator,
        json={"name": name, "kind": "customer_pbx", "tenant": tenant, "host": "192.0.2.10"},
    )
    assert response.status_code == 201, response.text


# --- tenants ---------------------------------------------------------------------------


def test_operator_creates_reads_changes_and_deletes_a_tenant(
    api: TestClient,
    operator: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    body = {
        "name": "acme",
        "contract_holder_name": "アクメ株式会社",
        "address": "東京都千代田区1-1",
        "basic_contract": "BC-0001",
        "sip_domain": "ACME.Example.JP",
    }
    created = api.post(TENANTS, headers=operator, json=body)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"{TENANTS}/acme"
    assert created.json() == {
        **body,
        "sip_domain": "acme.example.jp",
        "announcement_language": "ja",
        "pstn_trunk": None,
        "mobile_trunk": None,
    }
    assert subscriber.received() == [CONFIG]
    assert api.get(f"{TENANTS}/acme", headers=operator).json()["basic_contract"] == "BC-0001"
    names = {tenant["name"] for tenant in api.get(TENANTS, headers=operator).json()}
    assert {"demo", "other", "acme"} <= names

    changed = api.patch(f"{TENANTS}/acme", headers=operator, json={"address": "大阪府"})
    assert changed.status_code == 200 and changed.json()["address"] == "大阪府"
    assert subscriber.received() == [CONFIG]
    (update,) = audit_rows(session_factory, "tenant.update")
    assert update.before is not None and update.after is not None
    assert (update.before["address"], update.after["address"]) == ("東京都千代田区1-1", "大阪府")

    unchanged = api.patch(f"{TENANTS}/acme", headers=operator, json={"address": "大阪府"})
    assert unchanged.status_code == 200
    assert subscriber.received() == []  # nothing changed, nothing published
    assert len(audit_rows(session_factory, "tenant.update")) == 1

    add = api.post(f"{TENANTS}/acme/sites", headers=operator, json={"name": "本社"})
    assert add.status_code == 201
    subscriber.received()
    with session_factory() as session:
        acme_id = session.scalars(select(Tenant.id).where(Tenant.name == "acme")).one()
    deleted = api.delete(f"{TENANTS}/acme", headers=operator)
    assert deleted.status_code == 204
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        assert session.scalars(select(Tenant).where(Tenant.name == "acme")).first() is None
        assert session.scalars(select(Site).where(Site.tenant_id == acme_id)).all() == []
    (row,) = audit_rows(session_factory, "tenant.delete")
    assert row.before is not None and row.before["sites"] == ["本社"]
    assert api.get(f"{TENANTS}/acme", headers=operator).status_code == 404


ACME = {"name": "acme", "contract_holder_name": "X", "sip_domain": "acme.example.jp"}
"""A new tenant's minimal contract information."""


def post_acme(api: TestClient, operator: dict[str, str], **fields: object) -> Response:
    """The operator creates tenant `acme` (`ACME`) with `fields` added."""
    response: Response = api.post(TENANTS, headers=operator, json={**ACME, **fields})
    return response


def test_tenant_conflicts_and_validation(api: TestClient, operator: dict[str, str]) -> None:
    base = ACME
    assert api.post(TENANTS, headers=operator, json={**base, "name": "demo"}).status_code == 409
    taken = api.post(TENANTS, headers=operator, json={**base, "sip_domain": "127.0.0.1"})
    assert taken.status_code == 409
    bad = api.post(TENANTS, headers=operator, json={**base, "sip_domain": "not a host!"})
    assert bad.status_code == 422 and locations(bad) == ["sip_domain"]
    bad = api.post(TENANTS, headers=operator, json={**base, "name": "Has Space"})
    assert bad.status_code == 422 and locations(bad) == ["name"]
    extra = api.post(TENANTS, headers=operator, json={**base, "colour": "red"})
    assert extra.status_code == 422 and locations(extra) == ["colour"]
    null = api.patch(DEMO, headers=operator, json={"address": None})
    assert null.status_code == 422 and locations(null) == ["address"]
    rename = api.patch(DEMO, headers=operator, json={"name": "renamed"})
    assert rename.status_code == 422 and locations(rename) == ["name"]


def test_announcement_language_is_a_tenant_setting_the_admin_may_change(
    api: TestClient,
    operator: dict[str, str],
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    assert api.get(DEMO, headers=admin).json()["announcement_language"] == "ja"
    changed = api.patch(DEMO, headers=admin, json={"announcement_language": "en"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["announcement_language"] == "en"
    assert subscriber.received() == [CONFIG]
    (row,) = audit_rows(session_factory, "tenant.update")
    assert row.actor == "admin@demo"
    assert row.before is not None and row.after is not None
    assert (row.before["announcement_language"], row.after["announcement_language"]) == (
        "ja",
        "en",
    )
    with session_factory() as session:
        stored = session.scalars(select(Tenant).where(Tenant.name == "demo")).one()
        assert stored.announcement_language == "en"
    # The same value again changes nothing: no audit row, no notification.
    assert api.patch(DEMO, headers=admin, json={"announcement_language": "en"}).status_code == 200
    assert subscriber.received() == []
    assert len(audit_rows(session_factory, "tenant.update")) == 1
    # A value outside ja/en, or null, is 422 naming the field, for every role.
    for headers in (admin, operator):
        for value in ("fr", "EN", None, 1):
            bad = api.patch(DEMO, headers=headers, json={"announcement_language": value})
            assert bad.status_code == 422 and locations(bad) == ["announcement_language"], value
    bad = post_acme(api, operator, announcement_language="de")
    assert bad.status_code == 422 and locations(bad) == ["announcement_language"]
    # The admin changes only the tenant's own settings, not the contract information:
    # 403 for the whole request, nothing written.
    refused = api.patch(
        DEMO, headers=admin, json={"announcement_language": "ja", "address": "大阪府"}
    )
    assert refused.status_code == 403
    assert api.get(DEMO, headers=admin).json()["announcement_language"] == "en"
    # The operator may set it too, and at creation.
    back = api.patch(DEMO, headers=operator, json={"announcement_language": "ja"})
    assert back.status_code == 200 and back.json()["announcement_language"] == "ja"
    created = post_acme(api, operator, announcement_language="en")
    assert created.status_code == 201 and created.json()["announcement_language"] == "en"


def test_a_tenant_with_extensions_or_accounts_is_not_deleted(
    api: TestClient, operator: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    response = api.delete(DEMO, headers=operator)
    assert response.status_code == 409
    assert "extensions" in response.json()["detail"]
    assert "accounts" in response.json()["detail"]
    with session_factory() as session:
        assert session.scalars(select(Tenant).where(Tenant.name == "demo")).one()


def test_sip_domain_cannot_change_under_sip_passwords(
    api: TestClient, operator: dict[str, str]
) -> None:
    response = api.patch(DEMO, headers=operator, json={"sip_domain": "demo.example.jp"})
    assert response.status_code == 409
    assert api.get(DEMO, headers=operator).json()["sip_domain"] == "127.0.0.1"


def test_contract_holder_must_stay_the_lines_holder(
    api: TestClient, operator: dict[str, str]
) -> None:
    add_line(api, operator)
    refused = api.patch(DEMO, headers=operator, json={"contract_holder_name": "別会社"})
    assert refused.status_code == 422 and locations(refused) == ["contract_holder_name"]
    # The same holder written differently (a space, full-width forms) is the same holder.
    same = api.patch(DEMO, headers=operator, json={"contract_holder_name": "デモ 株式会社"})
    assert same.status_code == 200


# --- sites -----------------------------------------------------------------------------


def test_admin_adds_and_deletes_sites(
    api: TestClient,
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    created = api.post(f"{DEMO}/sites", headers=admin, json={"name": "Nagoya"})
    assert created.status_code == 201, created.text
    assert created.json() == {"tenant": "demo", "name": "Nagoya"}
    assert subscriber.received() == [CONFIG]
    assert api.post(f"{DEMO}/sites", headers=admin, json={"name": "Nagoya"}).status_code == 409
    names = [site["name"] for site in api.get(f"{DEMO}/sites", headers=admin).json()]
    assert "Nagoya" in names
    deleted = api.delete(f"{DEMO}/sites/Nagoya", headers=admin)
    assert deleted.status_code == 204
    assert subscriber.received() == [CONFIG]
    assert api.delete(f"{DEMO}/sites/Nagoya", headers=admin).status_code == 404
    (row,) = audit_rows(session_factory, "site.delete")
    assert row.actor == "admin@demo" and row.before == {"tenant": "demo", "name": "Nagoya"}


def test_a_site_with_extensions_is_not_deleted(
    api: TestClient, admin: dict[str, str], subscriber: Subscriber
) -> None:
    site_of_1001 = api.get(f"{DEMO}/extensions/1001", headers=admin).json()["site"]
    response = api.delete(f"{DEMO}/sites/{site_of_1001}", headers=admin)
    assert response.status_code == 409
    assert subscriber.received() == []


# --- mobile lines ----------------------------------------------------------------------


def test_operator_provisions_a_mobile_line(
    api: TestClient,
    operator: dict[str, str],
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    line = add_line(
        api,
        operator,
        b_number="080-5555-0001",
        options={"number_050": "050-5555-0001", "gateway": True},
    )
    assert line == {
        "tenant": "demo",
        "msisdn": "+819055550001",
        "contract_holder_name": HOLDER,
        "b_number": "+818055550001",
        "options": {"number_050": "05055550001", "gateway": True, "roaming": False},
        "abroad": False,
    }
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        row = session.scalars(select(MobileLine).where(MobileLine.msisdn == "+819055550001")).one()
        assert (row.option_050, row.number_050, row.option_gateway) == (True, "05055550001", True)
    # The admin reads it, by either form of the number.
    assert api.get(f"{DEMO}/mobile-lines/09055550001", headers=admin).json() == line
    assert line in api.get(f"{DEMO}/mobile-lines", headers=admin).json()

    changed = api.patch(
        f"{DEMO}/mobile-lines/+819055550001",
        headers=operator,
        json={"options": {"number_050": None, "roaming": True}, "abroad": True},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["options"] == {"number_050": None, "gateway": True, "roaming": True}
    assert changed.json()["abroad"] is True
    assert subscriber.received() == [CONFIG]
    (update,) = audit_rows(session_factory, "mobile_line.update")
    assert update.target == "+819055550001" and update.actor == "operator"
    assert update.after is not None and update.after["abroad"] is True
    with session_factory() as session:
        row = session.scalars(select(MobileLine).where(MobileLine.msisdn == "+819055550001")).one()
        assert (row.option_050, row.number_050, row.option_roaming) == (False, None, True)

    assert api.delete(f"{DEMO}/mobile-lines/09055550001", headers=operator).status_code == 204
    assert subscriber.received() == [CONFIG]
    assert audit_rows(session_factory, "mobile_line.delete")[0].before is not None


def test_mobile_line_rules(api: TestClient, operator: dict[str, str]) -> None:
    url = f"{DEMO}/mobile-lines"
    other_holder = api.post(
        url, headers=operator, json={"msisdn": "09055550002", "contract_holder_name": "他社"}
    )
    assert other_holder.status_code == 422
    assert locations(other_holder) == ["contract_holder_name"]
    bad_number = api.post(
        url, headers=operator, json={"msisdn": "0312345678", "contract_holder_name": HOLDER}
    )
    assert bad_number.status_code == 422 and locations(bad_number) == ["msisdn"]
    bad_050 = api.post(
        url,
        headers=operator,
        json={
            "msisdn": "09055550002",
            "contract_holder_name": HOLDER,
            "options": {"number_050": "0312345678"},
        },
    )
    assert bad_050.status_code == 422 and locations(bad_050) == ["number_050"]
    add_line(api, operator, b_number="08055550001")
    again = api.post(
        url, headers=operator, json={"msisdn": "09055550001", "contract_holder_name": HOLDER}
    )
    assert again.status_code == 409
    b_taken = api.post(
        url, headers=operator, json={"msisdn": "08055550001", "contract_holder_name": HOLDER}
    )
    assert b_taken.status_code == 409
    assert api.get(f"{DEMO}/mobile-lines/09099999999", headers=operator).status_code == 404
    assert api.get(f"{DEMO}/mobile-lines/not-a-number", headers=operator).status_code == 404


# --- extensions ------------------------------------------------------------------------


def test_admin_creates_a_fixed_ip_phone(
    api: TestClient,
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    add_site(api, admin)
    subscriber.received()
    response = api.post(
        f"{DEMO}/extensions",
        headers=admin,
        json={
            "number": "4001",
            "site": "Tokyo-test",
            "display_name": "受付",
            "sip_password": "secret-4001",
            "digest_algorithms": ["SHA-256", "MD5"],
            "voicemail_enabled": True,
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"{DEMO}/extensions/4001"
    body = response.json()
    assert body["kind"] == "fixed_ip_phone" and body["voicemail_enabled"] is True
    assert (body["sip_username"], body["sip_realm"]) == ("4001", "127.0.0.1")
    assert "secret-4001" not in response.text and "ha1" not in response.text
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        extension = session.scalars(select(Extension).where(Extension.number == "4001")).one()
        assert extension.credential is not None
        assert extension.credential.ha1_md5 == compute_ha1(
            "4001", "127.0.0.1", "secret-4001", DigestAlgorithm.MD5
        )
        assert extension.credential.ha1_sha256 == compute_ha1(
            "4001", "127.0.0.1", "secret-4001", DigestAlgorithm.SHA_256
        )
    (row,) = audit_rows(session_factory, "extension.create")
    assert row.target == "demo/4001" and row.actor == "admin@demo" and row.before is None
    assert row.after is not None and row.after["sip_username"] == "4001"
    assert "secret-4001" not in str(row.after) and "ha1" not in str(row.after)


def test_extension_validation_names_the_field(
    api: TestClient, admin: dict[str, str], subscriber: Subscriber
) -> None:
    add_site(api, admin)
    subscriber.received()
    url = f"{DEMO}/extensions"
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"number": "4002", "site": "nowhere", "sip_password": "secret-4002"}, ["site"]),
        ({"number": "4002", "site": "Tokyo-test"}, ["sip_password"]),
        ({"number": "40-2", "site": "Tokyo-test", "sip_password": "secret-4002"}, ["number"]),
        (
            {"number": "4002", "site": "Tokyo-test", "sip_password": "x"},
            ["sip_password"],
        ),
        (
            {
                "number": "4002",
                "site": "Tokyo-test",
                "static_contact_uri": "sip:a@192.0.2.1",
                "digest_algorithms": ["MD5"],
            },
            ["digest_algorithms"],
        ),
        (
            {
                "number": "4002",
                "site": "Tokyo-test",
                "sip_password": "secret-4002",
                "mobile_line": "09055550001",
            },
            ["mobile_line"],
        ),
        ({"number": "4002", "kind": "mobile", "site": "Tokyo-test"}, ["mobile_line"]),
        (
            {
                "number": "4002",
                "kind": "mobile",
                "site": "Tokyo-test",
                "mobile_line": "09055559999",
            },
            ["mobile_line"],
        ),
        (
            {"number": "4002", "kind": "customer_pbx", "site": "Tokyo-test"},
            ["range_last", "trunk"],
        ),
        (
            {
                "number": "4002",
                "kind": "customer_pbx",
                "site": "Tokyo-test",
                "range_last": "400",
                "trunk": "no-such-trunk",
            },
            ["range_last", "trunk"],
        ),
        (
            {
                "number": "4002",
                "kind": "mobile",
                "site": "Tokyo-test",
                "mobile_line": "09055550001",
                "voicemail_enabled": True,
            },
            ["voicemail_enabled", "mobile_line"],
        ),
    ]
    for body, fields in cases:
        response = api.post(url, headers=admin, json=body)
        assert response.status_code == 422, (body, response.text)
        assert locations(response) == fields, (body, response.text)
    assert subscriber.received() == []


def test_extension_numbers_are_one_group_across_sites(
    api: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    add_site(api, admin, "Osaka-test")
    add_pbx_trunk(api, operator)
    url = f"{DEMO}/extensions"
    taken = api.post(
        url, headers=admin, json={"number": "1001", "site": "Osaka-test", "sip_password": "x" * 8}
    )
    assert taken.status_code == 409
    pbx = {"kind": "customer_pbx", "site": "Osaka-test", "trunk": "pbx-test"}
    created = api.post(url, headers=admin, json={"number": "5000", "range_last": "5099", **pbx})
    assert created.status_code == 201, created.text
    assert created.json()["trunk"] == "pbx-test" and created.json()["range_last"] == "5099"
    overlapping = api.post(url, headers=admin, json={"number": "5050", "range_last": "5150", **pbx})
    assert overlapping.status_code == 409 and "5000-5099" in overlapping.json()["detail"]
    inside = api.post(
        url, headers=admin, json={"number": "5042", "site": "Osaka-test", "sip_password": "x" * 8}
    )
    assert inside.status_code == 409
    # Another length is another number: 500 is not in 5000-5099.
    short = api.post(
        url, headers=admin, json={"number": "500", "site": "Osaka-test", "sip_password": "x" * 8}
    )
    assert short.status_code == 201
    # A trunk of another tenant is no trunk of this one.
    add_pbx_trunk(api, operator, "pbx-other", tenant="other")
    foreign = api.post(
        url,
        headers=admin,
        json={**pbx, "number": "6000", "range_last": "6009", "trunk": "pbx-other"},
    )
    assert foreign.status_code == 422 and locations(foreign) == ["trunk"]


def test_mobile_extensions_and_the_mapping(
    api: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    add_site(api, admin)
    add_line(api, operator)
    add_line(api, operator, msisdn="09055550002", b_number="08055550002")
    subscriber.received()
    url = f"{DEMO}/extensions"
    mobile = {"kind": "mobile", "site": "Tokyo-test"}
    created = api.post(
        url, headers=admin, json={"number": "2501", "mobile_line": "09055550001", **mobile}
    )
    assert created.status_code == 201, created.text
    assert (created.json()["mobile_line"], created.json()["mobile_identity"]) == (
        "+819055550001",
        "a",
    )
    assert subscriber.received() == [CONFIG]
    no_b = api.post(
        url,
        headers=admin,
        json={"number": "2502", "mobile_line": "09055550001", "mobile_identity": "b", **mobile},
    )
    assert no_b.status_code == 422 and locations(no_b) == ["mobile_identity"]
    twice = api.post(
        url, headers=admin, json={"number": "2502", "mobile_line": "09055550001", **mobile}
    )
    assert twice.status_code == 409
    b_side = api.post(
        url,
        headers=admin,
        json={"number": "2502", "mobile_line": "09055550002", "mobile_identity": "b", **mobile},
    )
    assert b_side.status_code == 201, b_side.text
    subscriber.received()

    # The mapping: 2501 becomes line 2's A number.
    mapping = f"{url}/2501/mobile-line"
    mapped = api.put(mapping, headers=admin, json={"msisdn": "+819055550002", "identity": "a"})
    assert mapped.status_code == 200, mapped.text
    assert mapped.json()["mobile_line"] == "+819055550002"
    assert subscriber.received() == [CONFIG]
    (row,) = audit_rows(session_factory, "extension.update")
    assert row.before is not None and row.after is not None
    assert (row.before["mobile_line"], row.after["mobile_line"]) == (
        "+819055550001",
        "+819055550002",
    )
    taken = api.put(mapping, headers=admin, json={"msisdn": "09055550002", "identity": "b"})
    assert taken.status_code == 409
    unknown = api.put(f"{url}/2999/mobile-line", headers=admin, json={"msisdn": "09055550002"})
    assert unknown.status_code == 404
    fixed = api.put(f"{url}/1001/mobile-line", headers=admin, json={"msisdn": "09055550001"})
    assert fixed.status_code == 409
    missing_line = api.put(mapping, headers=admin, json={"msisdn": "09055559999"})
    assert missing_line.status_code == 422 and locations(missing_line) == ["msisdn"]
    assert subscriber.received() == []

    # A line in use is not deleted, nor does it lose the B number an extension is.
    in_use = api.delete(f"{DEMO}/mobile-lines/09055550002", headers=operator)
    assert in_use.status_code == 409
    lose_b = api.patch(
        f"{DEMO}/mobile-lines/09055550002", headers=operator, json={"b_number": None}
    )
    assert lose_b.status_code == 409


def test_a_line_of_another_tenant_or_contract_holder_is_refused(
    api: TestClient,
    admin: dict[str, str],
    operator: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    add_site(api, admin)
    other_line = api.post(
        f"{TENANTS}/other/mobile-lines",
        headers=operator,
        json={"msisdn": "09077770001", "contract_holder_name": "他社株式会社"},
    )
    assert other_line.status_code == 201, other_line.text
    url = f"{DEMO}/extensions"
    mobile = {"kind": "mobile", "site": "Tokyo-test", "number": "2601"}
    foreign = api.post(url, headers=admin, json={**mobile, "mobile_line": "09077770001"})
    assert foreign.status_code == 422 and locations(foreign) == ["mobile_line"]
    # A line whose holder no longer matches (written behind the API's back) is refused too.
    add_line(api, operator)
    with session_factory() as session:
        line = session.scalars(select(MobileLine).where(MobileLine.msisdn == "+819055550001")).one()
        line.contract_holder_name = "別会社"
        session.commit()
    stale = api.post(url, headers=admin, json={**mobile, "mobile_line": "09055550001"})
    assert stale.status_code == 422 and locations(stale) == ["mobile_line"]
    assert stale.json()["detail"][0]["type"] == "contract_holder"
    mapped = api.put(f"{url}/1001/mobile-line", headers=admin, json={"msisdn": "09077770001"})
    assert mapped.status_code in (409, 422)


def test_admin_changes_and_deletes_an_extension(
    api: TestClient,
    admin: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    add_site(api, admin)
    subscriber.received()
    url = f"{DEMO}/extensions/1001"
    changed = api.patch(
        url,
        headers=admin,
        json={
            "site": "Tokyo-test",
            "sip_password": "new-secret-1001",
            "no_answer_timeout_seconds": 20,
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["site"] == "Tokyo-test"
    assert changed.json()["no_answer_timeout_seconds"] == 20
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        extension = session.scalars(
            select(Extension)
            .join(Extension.tenant)
            .where(Tenant.name == "demo", Extension.number == "1001")
        ).one()
        assert extension.credential is not None
        assert extension.credential.ha1_sha256 == compute_ha1(
            "1001", "127.0.0.1", "new-secret-1001", DigestAlgorithm.SHA_256
        )
    (row,) = audit_rows(session_factory, "extension.update")
    assert "new-secret-1001" not in str(row.before) + str(row.after)
    # Without password and static contact the phone could not be reached.
    orphan = api.patch(url, headers=admin, json={"sip_password": None})
    assert orphan.status_code == 422
    assert locations(orphan) == ["sip_password", "digest_algorithms"]
    kind = api.patch(url, headers=admin, json={"kind": "mobile"})
    assert kind.status_code == 422 and locations(kind) == ["kind"]
    other_kind = api.patch(url, headers=admin, json={"range_last": "1009"})
    assert other_kind.status_code == 422 and locations(other_kind) == ["range_last"]
    assert subscriber.received() == []

    deleted = api.delete(url, headers=admin)
    assert deleted.status_code == 204
    assert subscriber.received() == [CONFIG]
    assert api.get(url, headers=admin).status_code == 404
    (row,) = audit_rows(session_factory, "extension.delete")
    assert row.before is not None and row.before["number"] == "1001" and row.after is None


def test_a_user_changes_their_own_settings_only(
    api: TestClient, subscriber: Subscriber, session_factory: sessionmaker[Session]
) -> None:
    user = bearer(token_for(api, "user1001@demo"))
    url = f"{DEMO}/extensions/1001"
    assert api.get(url, headers=user).json()["number"] == "1001"
    changed = api.patch(
        url,
        headers=user,
        json={"display_name": "山田", "no_answer_timeout_seconds": 15, "voicemail_enabled": True},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["display_name"], changed.json()["voicemail_enabled"]) == ("山田", True)
    assert subscriber.received() == [CONFIG]
    (row,) = audit_rows(session_factory, "extension.update")
    assert row.actor == "user1001@demo"
    for body in (
        {"sip_password": "user-chosen-1"},
        {"site": "x"},
        {"display_name": "a", "static_contact_uri": None},
    ):
        assert api.patch(url, headers=user, json=body).status_code == 403
    assert api.get(f"{DEMO}/extensions/1002", headers=user).status_code == 403
    assert api.get(f"{DEMO}/extensions/9999", headers=user).status_code == 403
    assert api.get(f"{DEMO}/extensions", headers=user).status_code == 403
    assert subscriber.received() == []


# --- trunks ----------------------------------------------------------------------------


def test_operator_manages_trunks(
    api: TestClient,
    operator: dict[str, str],
    subscriber: Subscriber,
    session_factory: sessionmaker[Session],
) -> None:
    body = {
        "name": "pstn-test",
        "kind": "pstn",
        "host": "192.0.2.20",
        "port": 5070,
        "transport": "tcp",
        "trusted_sources": ["192.0.2.20", "192.0.2.21:5060"],
        "capacity": 120,
        "auth_username": "carrier",
        "auth_password": "carrier-secret",
        "auth_realm": "carrier.example.jp",
    }
    created = api.post(TRUNKS, headers=operator, json=body)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"{TRUNKS}/pstn-test"
    assert created.json() == {
        "name": "pstn-test",
        "kind": "pstn",
        "tenant": None,
        "host": "192.0.2.20",
        "port": 5070,
        "transport": "tcp",
        "trusted_sources": ["192.0.2.20", "192.0.2.21:5060"],
        "capacity": 120,
        "auth_username": "carrier",
        "auth_realm": "carrier.example.jp",
        "caller_area_header": None,
        "abroad_header": None,
        "identity_trusted": None,
    }
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        trunk = session.scalars(select(Trunk).where(Trunk.name == "pstn-test")).one()
        assert trunk.auth_ha1_md5 == compute_ha1(
            "carrier", "carrier.example.jp", "carrier-secret", DigestAlgorithm.MD5
        )
    (row,) = audit_rows(session_factory, "trunk.create")
    assert "carrier-secret" not in str(row.after) and "ha1" not in str(row.after)

    assert api.post(TRUNKS, headers=operator, json=body).status_code == 409
    claimed = api.post(
        TRUNKS,
        headers=operator,
        json={
            "name": "pstn-2",
            "kind": "pstn",
            "host": "192.0.2.30",
            "trusted_sources": ["192.0.2.20"],
        },
    )
    assert claimed.status_code == 409

    realm_only = api.patch(f"{TRUNKS}/pstn-test", headers=operator, json={"auth_realm": "x.jp"})
    assert realm_only.status_code == 422 and locations(realm_only) == ["auth_password"]
    changed = api.patch(
        f"{TRUNKS}/pstn-test",
        headers=operator,
        json={"capacity": None, "trusted_sources": ["[2001:db8::1]:5060"], "auth_username": None},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["trusted_sources"] == ["[2001:db8::1]:5060"]
    assert changed.json()["capacity"] is None and changed.json()["auth_username"] is None
    assert subscriber.received() == [CONFIG]
    with session_factory() as session:
        trunk = session.scalars(select(Trunk).where(Trunk.name == "pstn-test")).one()
        assert trunk.auth_ha1_md5 is None and trunk.auth_ha1_sha256 is None
    assert api.delete(f"{TRUNKS}/pstn-test", headers=operator).status_code == 204
    assert subscriber.received() == [CONFIG]
    assert len(audit_rows(session_factory, "trunk.delete")) == 1
    assert api.get(f"{TRUNKS}/pstn-test", headers=operator).status_code == 404


def test_trunk_validation(api: TestClient, operator: dict[str, str]) -> None:
    cases: list[tuple[dict[str, Any], list[str | int]]] = [
        ({"name": "t", "kind": "customer_pbx", "host": "192.0.2.1"}, ["tenant"]),
        ({"name": "t", "kind": "pstn", "host": "192.0.2.1", "tenant": "demo"}, ["tenant"]),
        (
            {"name": "t", "kind": "customer_pbx", "host": "192.0.2.1", "tenant": "nobody"},
            ["tenant"],
        ),
        ({"name": "t", "kind": "pstn", "host": "pbx.example.jp"}, ["host"]),
        ({"name": "t", "kind": "pstn", "host": "192.0.2.1", "port": 0}, ["port"]),
        ({"name": "t", "kind": "pstn", "host": "192.0.2.1", "trusted_sources": ["x"]}, [0]),
        (
            {
                "name": "t",
                "kind": "pstn",
                "host": "192.0.2.1",
                "trusted_sources": ["192.0.2.1"] * 2,
            },
            ["trusted_sources[1]"],
        ),
        (
            {"name": "t", "kind": "pstn", "host": "192.0.2.1", "auth_username": "u"},
            ["auth_password", "auth_realm"],
        ),
        ({"name": "t", "kind": "pstn", "host": "192.0.2.1", "capacity": 0}, ["capacity"]),
    ]
    for body, fields in cases:
        response = api.post(TRUNKS, headers=operator, json=body)
        assert response.status_code == 422, (body, response.text)
        assert locations(response) == fields, (body, response.text)


def test_a_trunk_extensions_route_to_stays(
    api: TestClient, operator: dict[str, str], admin: dict[str, str]
) -> None:
    add_site(api, admin)
    add_pbx_trunk(api, operator)
    created = api.post(
        f"{DEMO}/extensions",
        headers=admin,
        json={
            "number": "7000",
            "range_last": "7099",
            "kind": "customer_pbx",
            "site": "Tokyo-test",
            "trunk": "pbx-test",
        },
    )
    assert created.status_code == 201, created.text
    assert api.delete(f"{TRUNKS}/pbx-test", headers=operator).status_code == 409
    moved = api.patch(f"{TRUNKS}/pbx-test", headers=operator, json={"tenant": "other"})
    assert moved.status_code == 409
    to_pstn = api.patch(
        f"{TRUNKS}/pbx-test", headers=operator, json={"kind": "pstn", "tenant": None}
    )
    assert to_pstn.status_code == 409
    assert api.patch(f"{TRUNKS}/pbx-test", headers=operator, json={"port": 5080}).status_code == 200


def test_admins_read_their_own_tenants_trunks_only(
    api: TestClient, operator: dict[str, str], admin: dict[str, str]
) -> None:
    add_pbx_trunk(api, operator, "pbx-demo", "demo")
    add_pbx_trunk(api, operator, "pbx-other", "other")
    carrier = {"name": "pstn-carrier", "kind": "pstn", "host": "192.0.2.40"}
    assert api.post(TRUNKS, headers=operator, json=carrier).status_code == 201
    listed = api.get(TRUNKS, headers=admin)
    assert "pbx-demo" in [trunk["name"] for trunk in listed.json()]
    assert {trunk["tenant"] for trunk in listed.json()} == {"demo"}
    assert api.get(f"{TRUNKS}/pbx-demo", headers=admin).status_code == 200
    # Another tenant's trunk, a carrier trunk and a missing one look the same.
    responses = [
        api.get(f"{TRUNKS}/{name}", headers=admin) for name in ("pbx-other", "pstn-carrier", "nope")
    ]
    assert {response.status_code for response in responses} == {404}
    assert len({response.content for response in responses}) == 1
    everything = {trunk["name"] for trunk in api.get(TRUNKS, headers=operator).json()}
    assert {"pbx-demo", "pbx-other", "pstn-carrier"} <= everything
