"""Provisioning a trunk's `caller_area_header` and `abroad_header` (issue 6): stored, shown
in the snapshot, refused with the key path when not an RFC 3261 token."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.models import Trunk
from cloudpbx.provisioning import provision
from cloudpbx.repository import load_snapshot
from cloudpbx.rules import check_header_name

from .conftest import DEMO_FILE
from .test_provisioning import _demo, _refusal, _write


def test_the_demo_mobile_trunk_says_abroad_with_p_visited_network_id(session: Session) -> None:
    provision(session, DEMO_FILE)
    trunk = session.scalars(select(Trunk).where(Trunk.name == "mobile")).one()
    assert (trunk.abroad_header, trunk.caller_area_header) == ("P-Visited-Network-ID", None)
    snapshot = load_snapshot(session)
    assert snapshot.trunks["mobile"].abroad_header == "P-Visited-Network-ID"
    assert snapshot.trunks["pstn"].abroad_header is None


def test_headers_are_stored_changed_and_cleared(session: Session, tmp_path: Path) -> None:
    data = _demo()
    data["trunks"][1]["caller_area_header"] = "X-Charge-Area"
    provision(session, _write(tmp_path, data))
    trunk = session.scalars(select(Trunk).where(Trunk.name == "pstn")).one()
    assert trunk.caller_area_header == "X-Charge-Area"
    del data["trunks"][1]["caller_area_header"]
    result = provision(session, _write(tmp_path, data))
    assert result.trunks.updated == 1
    session.refresh(trunk)
    assert trunk.caller_area_header is None


@pytest.mark.parametrize("value", ["P Visited", "", "X-Area:", "é-header", "x" * 65])
def test_a_header_name_must_be_a_token(tmp_path: Path, value: str) -> None:
    data = _demo()
    data["trunks"][2]["abroad_header"] = value
    issues = _refusal(tmp_path, data)
    assert [path for path, _ in issues] == ["trunks[2].abroad_header"], issues
    assert "RFC 3261 token" in issues[0][1]


def test_check_header_name() -> None:
    assert check_header_name("P-Visited-Network-ID") == "P-Visited-Network-ID"
    assert check_header_name("x.y!%*_+`'~") == "x.y!%*_+`'~"
    with pytest.raises(ValueError, match="RFC 3261 token"):
        check_header_name("X Y")
