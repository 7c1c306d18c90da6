"""Provisioning's audit trail: one row per entry created or changed, none for the rest.

The views are the API's (`cloudpbx.audit_views`), so these tests compare rows with the
views of the stored entries; they never hold a password or an HA1.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.audit_views import (
    extension_view,
    mobile_line_view,
    site_view,
    tenant_view,
    tollfree_number_view,
    trunk_view,
)
from cloudpbx.models import (
    AuditLog,
    Extension,
    MobileLine,
    SipCredential,
    Site,
    Tenant,
    TollFreeNumber,
    Trunk,
)
from cloudpbx.provisioning import PROVISIONING_ACTOR, provision

from .conftest import DEMO_FILE
from .test_provisioning import _demo, _write

FIRST_RUN = 1_700_000_000.0
SECOND_RUN = 1_700_000_500.0


def _rows(session: Session, since: int = 0) -> list[AuditLog]:
    session.expire_all()
    return list(session.scalars(select(AuditLog).where(AuditLog.id > since).order_by(AuditLog.id)))


def _last_id(session: Session) -> int:
    return max((row.id for row in _rows(session)), default=0)


def _row_text(row: AuditLog) -> str:
    """Every column of the row as one text, to search it for secrets."""
    columns = [column.key for column in AuditLog.__table__.columns]
    return json.dumps(
        {name: getattr(row, name) for name in columns}, ensure_ascii=False, default=str
    )


def _secrets(session: Session) -> list[str]:
    """The HA1 digests stored now, of extensions and of trunks."""
    found: list[str] = []
    for credential in session.scalars(select(SipCredential)):
        found += [credential.ha1_md5, credential.ha1_sha256]
    for trunk in session.scalars(select(Trunk)):
        found += [value for value in (trunk.auth_ha1_md5, trunk.auth_ha1_sha256) if value]
    return found


def test_the_demo_writes_one_row_per_entry(session: Session) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    rows = _rows(session)
    assert Counter(row.action for row in rows) == {
        "tenant.create": 1,
        "site.create": 2,
        "mobile_line.create": 2,
        "trunk.create": 5,
        "extension.create": 10,
        "account.create": 4,
        "tollfree.create": 1,
    }
    # In the order the file is applied: tenants (sites, lines), trunks, extensions,
    # accounts, toll-free numbers.
    assert [row.action.split(".")[0] for row in rows] == (
        ["tenant", "site", "site", "mobile_line", "mobile_line"]
        + ["trunk"] * 5
        + ["extension"] * 10
        + ["account"] * 4
        + ["tollfree"]
    )
    tenant = session.scalars(select(Tenant)).one()
    for row in rows:
        assert (row.at, row.actor, row.actor_account_id) == (FIRST_RUN, PROVISIONING_ACTOR, None)
        assert (row.before, row.remote_address) == (None, None)
    by_target = {(row.action, row.target): row for row in rows}
    assert by_target[("tenant.create", "demo")].after == tenant_view(tenant)
    for site in session.scalars(select(Site)):
        assert by_target[("site.create", f"demo/{site.name}")].after == site_view(site)
    for line in session.scalars(select(MobileLine)):
        assert by_target[("mobile_line.create", line.msisdn)].after == mobile_line_view(line)
    for extension in session.scalars(select(Extension)):
        row = by_target[("extension.create", f"demo/{extension.number}")]
        assert row.after == extension_view(extension)
    for trunk in session.scalars(select(Trunk)):
        row = by_target[("trunk.create", trunk.name)]
        assert row.after == trunk_view(trunk)
        # A carrier-wide trunk belongs to no tenant, the tenant's own to it.
        assert row.tenant_id == trunk.tenant_id
    number = session.scalars(select(TollFreeNumber)).one()
    tollfree = by_target[("tollfree.create", "0120000111")]
    assert tollfree.after == tollfree_number_view(number)
    assert tollfree.after is not None
    assert tollfree.after["grants"] == ["tf@demo"]
    assert tollfree.after["destination_sets"] == [
        {
            "name": "default",
            "destinations": [
                {"position": 1, "number": "0312340001", "weight": 3, "trunk": "pstn"},
                {"position": 2, "number": "0612340001", "weight": 1, "trunk": "pstn"},
            ],
        }
    ]
    tenant_rows = [row for row in rows if row.action != "trunk.create"]
    assert {row.tenant_id for row in tenant_rows if row.target != "operator"} == {tenant.id}
    secrets = _secrets(session)
    for row in rows:
        text = _row_text(row)
        assert "pass1" not in text and "Demo-" not in text
        assert not any(secret in text for secret in secrets)


def test_an_identical_rerun_writes_no_row(session: Session) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    last = _last_id(session)
    result = provision(session, DEMO_FILE, clock=lambda: SECOND_RUN)
    assert not result.changed
    assert _rows(session, since=last) == []


def test_a_changed_extension_writes_its_update(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    old_secrets = _secrets(session)
    last = _last_id(session)
    data = _demo()
    extension_spec = data["tenants"][0]["extensions"][1]
    extension_spec["no_answer_timeout_seconds"] = 45
    extension_spec["display_name"] = "受付"
    extension_spec["password"] = "changed-secret"
    provision(session, _write(tmp_path, data), clock=lambda: SECOND_RUN)
    (row,) = _rows(session, since=last)
    assert (row.action, row.target, row.actor, row.at) == (
        "extension.update",
        "demo/1002",
        PROVISIONING_ACTOR,
        SECOND_RUN,
    )
    assert row.tenant_id == session.scalars(select(Tenant.id)).one()
    assert row.before is not None and row.after is not None
    changed = {key for key in row.after if row.after[key] != row.before[key]}
    assert changed == {"no_answer_timeout_seconds", "display_name"}
    assert (row.before["no_answer_timeout_seconds"], row.after["no_answer_timeout_seconds"]) == (
        30,
        45,
    )
    extension = session.scalars(select(Extension).where(Extension.number == "1002")).one()
    assert row.after == extension_view(extension)
    text = _row_text(row)
    assert "changed-secret" not in text and "pass1002" not in text
    assert not any(secret in text for secret in old_secrets + _secrets(session))


def test_a_new_password_alone_is_audited_without_it(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    last = _last_id(session)
    data = _demo()
    data["tenants"][0]["extensions"][0]["password"] = "another-secret"
    data["trunks"][3]["username"] = "hq"
    data["trunks"][3]["password"] = "trunk-secret"
    provision(session, _write(tmp_path, data), clock=lambda: SECOND_RUN)
    rows = _rows(session, since=last)
    assert [(row.action, row.target) for row in rows] == [
        ("trunk.update", "hq-pbx"),
        ("extension.update", "demo/1001"),
    ]
    trunk_row, extension_row = rows
    assert trunk_row.before is not None and trunk_row.after is not None
    assert (trunk_row.before["auth_username"], trunk_row.after["auth_username"]) == (None, "hq")
    assert trunk_row.after["auth_realm"] == "127.0.0.1"
    # The view has no secret, so a password change shows as an unchanged view.
    assert extension_row.before == extension_row.after
    secrets = _secrets(session)
    for row in rows:
        text = _row_text(row)
        assert "secret" not in text
        assert not any(secret in text for secret in secrets)


def test_other_changed_entries_write_their_updates(session: Session, tmp_path: Path) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    last = _last_id(session)
    data = _demo()
    tenant = data["tenants"][0]
    tenant["address"] = "大阪府大阪市北区1-1"
    tenant["sites"].append({"name": "Nagoya"})
    tenant["mobile_lines"][0]["option_gateway"] = True
    data["trunks"][1]["capacity"] = 30
    provision(session, _write(tmp_path, data), clock=lambda: SECOND_RUN)
    rows = _rows(session, since=last)
    assert [(row.action, row.target) for row in rows] == [
        ("tenant.update", "demo"),
        ("site.create", "demo/Nagoya"),
        ("mobile_line.update", "+819012340001"),
        ("trunk.update", "pstn"),
    ]
    tenant_row, site_row, line_row, trunk_row = rows
    assert tenant_row.before is not None and tenant_row.after is not None
    assert tenant_row.after["address"] == "大阪府大阪市北区1-1"
    assert tenant_row.before["address"] == "東京都千代田区丸の内1-1-1"
    assert (site_row.before, site_row.after) == (None, {"tenant": "demo", "name": "Nagoya"})
    assert line_row.before is not None and line_row.after is not None
    assert line_row.before["options"] == {
        "number_050": "05012340001",
        "gateway": False,
        "roaming": False,
    }
    assert line_row.after["options"] == {
        "number_050": "05012340001",
        "gateway": True,
        "roaming": False,
    }
    assert trunk_row.before is not None and trunk_row.after is not None
    assert (trunk_row.before["capacity"], trunk_row.after["capacity"]) == (None, 30)
    assert trunk_row.tenant_id is None  # a carrier trunk
    tenant_id = session.scalars(select(Tenant.id)).one()
    assert [row.tenant_id for row in rows[:3]] == [tenant_id] * 3


def test_a_changed_tollfree_number_writes_one_update_with_its_whole_view(
    session: Session, tmp_path: Path
) -> None:
    provision(session, DEMO_FILE, clock=lambda: FIRST_RUN)
    last = _last_id(session)
    data = _demo()
    number = data["tollfree_numbers"][0]
    number["destination_sets"]["default"][0]["weight"] = 5
    number["destination_sets"]["night"] = [{"number": "0312340009", "weight": 1, "trunk": "pstn"}]
    number["schedules"] = [
        {
            "name": "night",
            "action": "destination_change",
            "destination_set": "night",
            "ranges": [{"date": "2026-12-31", "start": "00:00", "end": "24:00"}],
        }
    ]
    number["designated_areas"] = {"whole_country": False, "prefectures": ["27", "13"]}
    number["accounts"] = []
    provision(session, _write(tmp_path, data), clock=lambda: SECOND_RUN)
    (row,) = _rows(session, since=last)
    assert (row.action, row.target) == ("tollfree.update", "0120000111")
    stored = session.scalars(select(TollFreeNumber)).one()
    assert row.tenant_id == stored.tenant_id
    assert row.after == tollfree_number_view(stored)
    before, after = row.before, row.after
    assert before is not None and after is not None
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {"destination_sets", "schedules", "designated_areas", "grants"}
    assert (before["grants"], after["grants"]) == (["tf@demo"], [])
    assert after["schedules"] == [
        {
            "name": "night",
            "action": "destination_change",
            "destination_set": "night",
            "enabled": True,
            "ranges": [
                {
                    "kind": "date",
                    "weekday": None,
                    "date": "2026-12-31",
                    "start": "00:00",
                    "end": "24:00",
                }
            ],
        }
    ]
    assert after["designated_areas"] == {
        "whole_country": False,
        "prefectures": ["13", "27"],
        "area_codes": [],
        "allow_fixed": True,
        "allow_mobile": True,
        "allow_withheld": True,
        "refusal_action": "announcement",
    }
    # And back: one more update, then nothing.
    provision(session, DEMO_FILE, clock=lambda: SECOND_RUN)
    (back,) = _rows(session, since=row.id)
    assert (back.action, back.before) == ("tollfree.update", after)
    assert back.after == before
    last = _last_id(session)
    provision(session, DEMO_FILE, clock=lambda: SECOND_RUN)
    assert _rows(session, since=last) == []
