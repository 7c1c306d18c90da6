"""Provisioning a tenant's `pstn_trunk` / `mobile_trunk` and a trunk's `identity_trusted`:
stored, shown in the snapshot and the audit rows, cleared when left out, and refused with
the file, key path and reason (a trunk of this file, of the right kind, carrier-wide; a
stored tenant's trunk keeps its kind)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.models import AuditLog, Tenant, Trunk
from cloudpbx.provisioning import ProvisioningError, provision
from cloudpbx.repository import load_snapshot

from .conftest import DEMO_FILE
from .test_provisioning import _demo, _refusal, _write

# Indices of the demo file's trunks: loadgen, pstn, mobile, hq-pbx, gateway.
PSTN, HQ, GATEWAY = 1, 3, 4


def _second_carrier_trunks(data: dict[str, object]) -> None:
    """Add a PSTN trunk `pstn-b` and a mobile network trunk `mobile-b` to `data`."""
    trunks = data["trunks"]
    assert isinstance(trunks, list)
    trunks.append({"name": "pstn-b", "kind": "pstn", "host": "192.0.2.7"})
    trunks.append({"name": "mobile-b", "kind": "mobile_network", "host": "192.0.2.8"})


def _tenant(session: Session) -> Tenant:
    session.expire_all()
    return session.scalars(select(Tenant).where(Tenant.name == "demo")).one()


def test_tenant_trunks_are_provisioned_audited_and_cleared(
    session: Session, tmp_path: Path
) -> None:
    provision(session, DEMO_FILE)
    assert (_tenant(session).pstn_trunk, _tenant(session).mobile_trunk) == (None, None)
    data = _demo()
    _second_carrier_trunks(data)
    data["tenants"][0]["pstn_trunk"] = "pstn-b"
    data["tenants"][0]["mobile_trunk"] = "mobile-b"
    result = provision(session, _write(tmp_path, data))
    assert (result.tenants.updated, result.trunks.created) == (1, 2)
    tenant = _tenant(session)
    assert (tenant.pstn_trunk, tenant.mobile_trunk) == ("pstn-b", "mobile-b")
    entry = load_snapshot(session).tenants["demo"]
    assert (entry.pstn_trunk, entry.mobile_trunk) == ("pstn-b", "mobile-b")
    session.expire_all()  # the snapshot's rows were loaded with raiseload
    update = session.scalars(
        select(AuditLog).where(AuditLog.action == "tenant.update").order_by(AuditLog.id)
    ).all()[-1]
    assert update.before is not None and update.after is not None
    assert (update.before["pstn_trunk"], update.after["pstn_trunk"]) == (None, "pstn-b")
    assert (update.before["mobile_trunk"], update.after["mobile_trunk"]) == (None, "mobile-b")
    # The same file again changes nothing; a file without the keys sets the default.
    assert provision(session, _write(tmp_path, data)).tenants.unchanged == 1
    del data["tenants"][0]["pstn_trunk"]
    data["tenants"][0]["mobile_trunk"] = None
    assert provision(session, _write(tmp_path, data)).tenants.updated == 1
    assert (_tenant(session).pstn_trunk, _tenant(session).mobile_trunk) == (None, None)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("pstn_trunk", "nowhere", "names no trunk in this file"),
        ("pstn_trunk", "mobile", "must name a carrier-wide pstn trunk"),
        ("pstn_trunk", "gateway", "must name a carrier-wide pstn trunk"),
        ("mobile_trunk", "pstn", "must name a carrier-wide mobile_network trunk"),
        ("mobile_trunk", "hq-pbx", "must name a carrier-wide mobile_network trunk"),
    ],
)
def test_a_tenant_trunk_must_be_a_carrier_trunk_of_its_kind_in_the_file(
    tmp_path: Path, key: str, value: str, reason: str
) -> None:
    data = _demo()
    data["tenants"][0][key] = value
    assert _refusal(tmp_path, data) == [(f"tenants[0].{key}", reason)]


def test_a_tenant_trunk_owned_by_a_tenant_is_refused(tmp_path: Path) -> None:
    # A pstn trunk given a tenant is no carrier-wide trunk.
    data = _demo()
    _second_carrier_trunks(data)
    data["trunks"][-2]["tenant"] = "demo"
    data["tenants"][0]["pstn_trunk"] = "pstn-b"
    assert _refusal(tmp_path, data) == [
        ("tenants[0].pstn_trunk", "must name a carrier-wide pstn trunk")
    ]


@pytest.mark.parametrize("value", [1, ["pstn"], "bad name!"])
def test_a_tenant_trunk_must_be_a_name(tmp_path: Path, value: object) -> None:
    data = _demo()
    data["tenants"][0]["pstn_trunk"] = value
    assert [path for path, _ in _refusal(tmp_path, data)] == ["tenants[0].pstn_trunk"]


def test_a_trunk_a_stored_tenant_names_keeps_its_kind(session: Session, tmp_path: Path) -> None:
    data = _demo()
    _second_carrier_trunks(data)
    data["tenants"][0]["pstn_trunk"] = "pstn-b"
    provision(session, _write(tmp_path, data))
    # A file without the tenant may not change the kind of the trunk the tenant names.
    changed = {
        "trunks": [{"name": "pstn-b", "kind": "mobile_network", "host": "192.0.2.7"}],
    }
    path = _write(tmp_path, changed, "trunks.yaml")
    with pytest.raises(ProvisioningError) as caught:
        provision(session, path)
    assert [(issue.key_path, issue.reason) for issue in caught.value.issues] == [
        (
            "trunks[0].kind",
            "the stored tenant demo names this trunk as its pstn_trunk (a carrier-wide pstn"
            " trunk): change the tenant first",
        )
    ]
    assert f"{path}: trunks[0].kind: the stored tenant demo" in str(caught.value)
    session.expire_all()
    stored = session.scalars(select(Trunk).where(Trunk.name == "pstn-b")).one()
    assert stored.kind.value == "pstn"  # nothing written


def test_identity_trusted_is_provisioned_and_shown_in_the_snapshot(
    session: Session, tmp_path: Path
) -> None:
    provision(session, DEMO_FILE)
    snapshot = load_snapshot(session)
    assert {entry.identity_trusted for entry in snapshot.trunks.values()} == {None}
    data = _demo()
    data["trunks"][GATEWAY]["identity_trusted"] = True
    data["trunks"][PSTN]["identity_trusted"] = False
    result = provision(session, _write(tmp_path, data))
    assert result.trunks.updated == 2
    snapshot = load_snapshot(session)
    assert snapshot.trunks["gateway"].identity_trusted is True
    assert snapshot.trunks["pstn"].identity_trusted is False
    assert snapshot.trunks["mobile"].identity_trusted is None
    update = session.scalars(
        select(AuditLog)
        .where(AuditLog.action == "trunk.update", AuditLog.target == "gateway")
        .order_by(AuditLog.id)
    ).all()[-1]
    assert update.before is not None and update.after is not None
    assert (update.before["identity_trusted"], update.after["identity_trusted"]) == (None, True)
    # Left out: by kind again.
    del data["trunks"][GATEWAY]["identity_trusted"]
    provision(session, _write(tmp_path, data))
    assert load_snapshot(session).trunks["gateway"].identity_trusted is None


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_identity_trusted_must_be_a_boolean(tmp_path: Path, value: object) -> None:
    data = _demo()
    data["trunks"][HQ]["identity_trusted"] = value
    assert _refusal(tmp_path, data) == [
        (f"trunks[{HQ}].identity_trusted", "Input should be a valid boolean")
    ]
