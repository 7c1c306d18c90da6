"""A tenant's own outbound PSTN trunk and a trunk's identity trust, end to end.

The running switch of `test_pbx_calls` (its fixture and SIPp helpers, a switch of this
module's own on a test copy of `configs/demo.yaml`; SIPp peers on the demo's trunk
addresses):
- The operator adds a second carrier-wide PSTN trunk `pstn-b` (on the address and port of
  the gateway's SIPp peer) and makes it the demo tenant's `pstn_trunk` through the
  Customer Control API: the 050 external call of a mobile line then reaches that SIPp UAS,
  with the 050 identity (not the gateway's extension identity: the route is rule 5's 050
  one, only the trunk changed). The setting is cleared afterwards (the default trunk is
  `test_pbx_calls`' and the unit tests' subject).
- The operator marks the `pstn` trunk `identity_trusted: false`: a 184 call then reaches
  it anonymous without P-Asserted-Identity or Privacy (`pbx_routing` rule 7).
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

from .test_pbx_calls import OPERATOR, PEERS, PbxSwitch, pbx_switch, routed_invite, trunk_uri

__all__ = ["pbx_switch"]  # the module's running switch (a fixture of test_pbx_calls)


def operator_request(switch: PbxSwitch, method: str, path: str, body: object) -> None:
    """One operator request to the switch's API (2xx expected), then wait for the switch
    to rebuild its snapshot (its ` reloaded in ` log line)."""
    form = urllib.parse.urlencode({"username": OPERATOR[0], "password": OPERATOR[1]}).encode()
    with urllib.request.urlopen(f"{switch.api}/api/v1/auth/token", data=form, timeout=10) as reply:
        token = json.load(reply)["access_token"]
    request = urllib.request.Request(
        f"{switch.api}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    reloads = switch.element.log_text().count(" reloaded in ")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status in (200, 201), reply.status
    deadline = time.monotonic() + 10.0
    while switch.element.log_text().count(" reloaded in ") <= reloads:
        assert time.monotonic() < deadline, switch.element.log_text()[-3000:]
        time.sleep(0.05)


def test_a_050_call_leaves_on_the_tenants_own_pstn_trunk(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    second = {
        "name": "pstn-b",
        "kind": "pstn",
        "host": PEERS["gateway"],
        "port": switch.ports["gateway"],
    }
    operator_request(switch, "POST", "/api/v1/trunks", second)
    operator_request(switch, "PATCH", "/api/v1/tenants/demo", {"pstn_trunk": "pstn-b"})
    try:
        received = routed_invite(
            switch, tmp_path, "gateway", PEERS["mobile"], "0312348888", "+819012340001"
        )
        assert received.uri == trunk_uri(switch, "gateway", "0312348888")
        assert received.asserted == "<tel:+815012340001>"
    finally:
        operator_request(switch, "PATCH", "/api/v1/tenants/demo", {"pstn_trunk": None})


def test_a_184_call_to_an_untrusted_pstn_trunk_carries_no_identity(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    operator_request(switch, "PATCH", "/api/v1/trunks/pstn", {"identity_trusted": False})
    try:
        received = routed_invite(
            switch, tmp_path, "pstn", PEERS["mobile"], "1840312347778", "+819012340001"
        )
    finally:
        operator_request(switch, "PATCH", "/api/v1/trunks/pstn", {"identity_trusted": None})
    assert received.uri == trunk_uri(switch, "pstn", "0312347778")
    assert received.from_.startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    assert received.asserted is None, received.text
    assert "privacy:" not in received.text.lower()
    assert "05012340001" not in received.text and "+819012340001" not in received.text
