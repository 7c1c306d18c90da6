"""Cloud PBX calls (issue 6 items 1, 2, 3, 5, 6) through the running switch, end to end.

- One switch for the module, on a test copy of `configs/demo.yaml` whose trunks point at
  SIPp peers on free ports of the demo's trunk addresses: the mobile network 127.0.0.4,
  the PSTN 127.0.0.3, the customer PBX `hq-pbx` 127.0.0.5 and the external-line gateway
  127.0.0.6 (each trunk trusts its address on any port, so a peer's UAC and UAS use two
  ports of one address). The copy adds a mobile line with the gateway option
  (+819012340003, extension 2003) and offers the baresip phones 1001/1002 MD5 only
  (`test_baresip.py` explains why). The switch serves the Customer Control API, through
  which the tests mark lines abroad.
- Calls from a mobile arrive as the mobile network sends them: from 127.0.0.4 with the
  MSISDN asserted (P-Asserted-Identity) and the dialled digits as Request-URI; calls to a
  mobile must leave to the mobile trunk with the MSISDN as Request-URI. A call to a
  customer-PBX extension must leave to the PBX with the extension as Request-URI user.
- What a callee saw is read from its SIPp message trace (`-trace_msg`): Request-URI,
  From, P-Asserted-Identity, P-Called-Party-ID; what a caller got (403, 480) from its own.
  The baresip phones report the caller they saw (`peeruri` of CALL_ESTABLISHED).
- Every call leaves one `call ended ...` line in the switch's log with `kind=internal` or
  `kind=external`, which the tests check.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from . import sipp
from .baresip import Baresip
from .conftest import REPO_ROOT, RunningElement, free_port, running
from .test_baresip import distinct_hosts, free_rtp_range

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DOMAIN = "127.0.0.1"
PEERS = {
    "mobile": "127.0.0.4",
    "pstn": "127.0.0.3",
    "hq-pbx": "127.0.0.5",
    "gateway": "127.0.0.6",
}
"""Trunk name -> the address its SIPp peers use (the demo's trusted source)."""
SIPP_LIMIT = 20  # seconds, for `timeout` around SIPp
OPERATOR = ("operator", "Demo-Operator-2026!")
NO_HEADER = "X-Test: none"
PHONE_HOST = "127.0.0.1"
"""Where the SIPp fixed phones call from (not a trunk's address)."""


def write_config(path: Path, ports: dict[str, int]) -> None:
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    tenant = document["tenants"][0]
    for extension in tenant["extensions"]:
        if extension["number"] in ("1001", "1002"):
            extension["digest_algorithms"] = ["MD5"]
    tenant["mobile_lines"].append({"msisdn": "+819012340003", "option_gateway": True})
    tenant["extensions"].append(
        {
            "number": "2003",
            "site": "Osaka",
            "kind": "mobile",
            "display_name": "携帯2003",
            "mobile_line": "+819012340003",
            "identity": "a",
        }
    )
    for trunk in document["trunks"]:
        if trunk["name"] in ports:
            trunk["port"] = ports[trunk["name"]]
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


@dataclass
class PbxSwitch:
    element: RunningElement
    ports: dict[str, int]
    """Trunk name -> the port of its SIPp UAS (the trunk's configured port)."""
    api: str


@pytest.fixture(scope="module")
def pbx_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PbxSwitch]:
    directory = tmp_path_factory.mktemp("pbx")
    ports = {name: free_port(host) for name, host in PEERS.items()}
    config = directory / "pbx.yaml"
    write_config(config, ports)
    api_port = free_port("127.0.0.1")
    options = (
        "--config", str(config), "--data-dir", str(directory / "data"),
        "--api", f"127.0.0.1:{api_port}",
    )  # fmt: skip
    with running(DOMAIN, directory / "softswitch.log", options) as element:
        yield PbxSwitch(element, ports, f"http://127.0.0.1:{api_port}")


# --- SIPp peers and their traces ------------------------------------------------------------


def _messages(path: Path) -> list[str]:
    """The messages a SIPp trace (`-trace_msg`) shows as received, in order."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    received = []
    for block in re.split(r"\n-{20,}[^\n]*\n", "\n" + text):
        head, _, message = block.partition("\n\n")
        if "message received" in head:
            received.append(message.strip().replace("\r\n", "\n"))
    return received


def _header(message: str, name: str) -> str | None:
    for line in message.split("\n")[1:]:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


@dataclass
class Invite:
    """The INVITE a callee received."""

    uri: str
    from_: str
    asserted: str | None
    called: str | None
    text: str


def _invite(messages: list[str]) -> Invite:
    invites = [message for message in messages if message.startswith("INVITE ")]
    assert len(invites) >= 1, messages
    text = invites[0]
    return Invite(
        text.split(" ")[1],
        _header(text, "From") or "",
        _header(text, "P-Asserted-Identity"),
        _header(text, "P-Called-Party-ID"),
        text,
    )


def _statuses(messages: list[str]) -> list[int]:
    return [int(message.split(" ")[1]) for message in messages if message.startswith("SIP/2.0 ")]


def sipp_command(
    switch: PbxSwitch, tmp_path: Path, scenario: str, name: str, host: str, port: int, *extra: str
) -> list[str]:
    """SIPp `scenario` once from `host`:`port`, its message trace in TMP_PATH/NAME.msg."""
    return sipp.command(
        switch.element, tmp_path, scenario, host, port, *extra,
        limit=SIPP_LIMIT, name=name, traces=("msg",), scenario_timeout="15s",
    )  # fmt: skip


@contextlib.contextmanager
def callee(switch: PbxSwitch, tmp_path: Path, trunk: str) -> Iterator[Path]:
    """A SIPp UAS on `trunk`'s address and port answering one call; yields its trace."""
    name = f"callee-{trunk}"
    command = sipp_command(
        switch, tmp_path, "call_uas.xml", name, PEERS[trunk], switch.ports[trunk]
    )
    with sipp.background(command, tmp_path, name, settle=0.3, grace=5) as process:
        yield tmp_path / f"{name}.msg"
        status = sipp.exit_status(process, SIPP_LIMIT)
        assert status == 0, (tmp_path / f"{name}.out").read_text(errors="replace")


_CALLS = iter(range(1, 10_000))


def call(
    switch: PbxSwitch,
    tmp_path: Path,
    scenario: str,
    source: str,
    dialled: str,
    caller: str,
    *extra: str,
    header: str = NO_HEADER,
) -> tuple[int, list[str]]:
    """One SIPp UAC call from `source` (a trunk's address, or a phone's); returns SIPp's
    exit status and the messages it received."""
    name = f"caller-{next(_CALLS)}"
    command = sipp_command(
        switch, tmp_path, scenario, name, source, free_port(source),
        "-s", dialled, "-key", "caller", caller, "-key", "extra", header, *extra,
    )  # fmt: skip
    completed = sipp.run(command, tmp_path, SIPP_LIMIT + 5)
    return completed.returncode, _messages(tmp_path / f"{name}.msg")


def record(switch: PbxSwitch, *needles: str) -> str:
    """The switch's `call ended` line holding every needle (waits for it a little)."""
    lines = sipp.wait_for(
        lambda: [
            line
            for line in sipp.call_ended_lines(switch.element)
            if all(needle in line for needle in needles)
        ],
        lambda: f"no call record with {needles}:\n" + switch.element.log_text(),
    )
    return lines[-1]


def trunk_uri(switch: PbxSwitch, trunk: str, user: str) -> str:
    return f"sip:{user}@{PEERS[trunk]}:{switch.ports[trunk]}"


def routed_invite(
    switch: PbxSwitch,
    tmp_path: Path,
    trunk: str,
    source: str,
    dialled: str,
    caller: str,
    *extra: str,
    scenario: str = "pbx_uac_trunk.xml",
) -> Invite:
    """One call that must leave on `trunk`, whose SIPp UAS answers it; asserts both SIPp
    runs passed and returns the INVITE the UAS received."""
    with callee(switch, tmp_path, trunk) as trace:
        status, _ = call(switch, tmp_path, scenario, source, dialled, caller, *extra)
    assert status == 0
    return _invite(_messages(trace))


@contextlib.contextmanager
def registered_phones(
    switch_port: int, tmp_path: Path, *accounts: tuple[str, str]
) -> Iterator[list[Baresip]]:
    """One registered baresip per (extension, account parameters) of the demo domain, e.g.
    ("1001", ";answermode=auto") or ("1001", ";mwi=yes") (which loads the `mwi` module),
    on the switch at `switch_port`; stopped by PID on the way out. Two at most: each RTP
    range avoids the one before it only."""
    assert len(accounts) <= 2, accounts
    hosts = distinct_hosts(len(accounts))
    instances: list[Baresip] = []
    rtp: tuple[int, int] | None = None
    for (number, extra), host in zip(accounts, hosts, strict=True):
        rtp = free_rtp_range(exclude=rtp)
        instances.append(
            Baresip(
                name=f"phone{number}",
                directory=tmp_path / f"baresip-{number}",
                host=host,
                sip_port=free_port(host),
                ctrl_port=free_port(host),
                rtp_ports=rtp,
                account=(
                    f"<sip:{number}@{DOMAIN}:{switch_port};transport=udp>"
                    f";auth_pass=pass{number};regint=300{extra}"
                ),
                app_modules=("mwi.so",) if "mwi=yes" in extra else (),
            )
        )
    try:
        for instance in instances:
            instance.start()
        for instance in instances:
            instance.wait_registered()
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def as_phone(number: str, claimed: str | None = None) -> tuple[str, ...]:
    """SIPp arguments of `pbx_uac_phone.xml` for fixed phone `number`: its credentials and
    the identity it claims (its own by default)."""
    return ("-key", "claimed", claimed or number, "-au", number, "-ap", f"pass{number}")


# --- item 2: extension dialing in every direction ---------------------------------------------


def test_mobile_and_fixed_phones_call_each_other_by_extension(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    with registered_phones(
        switch.element.port, tmp_path, ("1001", ";answermode=auto"), ("1002", "")
    ) as (phone_1001, phone_1002):

        # Mobile -> fixed: the mobile network asserts 2001's MSISDN; the phone sees 2001.
        status, _ = call(
            switch, tmp_path, "pbx_uac_trunk.xml", PEERS["mobile"], "1001", "+819012340001"
        )
        established = phone_1001.wait_event("CALL_ESTABLISHED", timeout=10)
        peer = str(established.get("peeruri", ""))
        assert peer.startswith(f"sip:2001@{DOMAIN}"), established
        assert "9012340001" not in json.dumps(established), established
        phone_1001.wait_event("CALL_CLOSED", timeout=10)
        assert status == 0
        assert "kind=internal" in record(switch, "to=sip:1001@", "result=answered")

        # Fixed -> mobile: out on the mobile trunk to the MSISDN, showing 1002.
        with callee(switch, tmp_path, "mobile") as trace:
            phone_1002.command("dial", f"sip:2001@{DOMAIN}:{switch.element.port}")
            phone_1002.wait_event("CALL_ESTABLISHED", timeout=10)
            phone_1002.command("hangup")
            phone_1002.wait_event("CALL_CLOSED", timeout=10)
        received = _invite(_messages(trace))
        assert received.uri == trunk_uri(switch, "mobile", "+819012340001")
        assert f"sip:1002@{DOMAIN}" in received.from_
        assert received.asserted == f"<sip:1002@{DOMAIN}>"
        assert received.called == "<tel:+819012340001>"
        assert "kind=internal" in record(switch, "to=sip:2001@", "result=answered")

        # Fixed -> external: a fixed IP phone has no line options; it goes out through
        # the tenant's external gateway, showing its extension (pbx_routing rule 5).
        with callee(switch, tmp_path, "gateway") as trace:
            phone_1002.command("dial", f"sip:0312349998@{DOMAIN}:{switch.element.port}")
            phone_1002.wait_event("CALL_ESTABLISHED", timeout=10)
            phone_1002.command("hangup")
            phone_1002.wait_event("CALL_CLOSED", timeout=10)
        received = _invite(_messages(trace))
        assert received.uri == trunk_uri(switch, "gateway", "0312349998")
        assert f"sip:1002@{DOMAIN}" in received.from_
        assert received.asserted == f"<sip:1002@{DOMAIN}>"
        assert "kind=external" in record(switch, "to=tel:0312349998", "result=answered")


def test_mobile_to_mobile_and_the_2in1_b_extension(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    # 2001 dials 2102, the B extension of line +819012340002: the same handset, marked B.
    received = routed_invite(switch, tmp_path, "mobile", PEERS["mobile"], "2102", "+819012340001")
    assert received.uri == trunk_uri(switch, "mobile", "+819012340002")
    assert received.called == "<tel:+819012349002>"
    assert f"<sip:2001@{DOMAIN}>" in received.from_
    assert received.asserted == f"<sip:2001@{DOMAIN}>"
    assert "+819012340001" not in received.text
    assert "kind=internal" in record(switch, "to=sip:2102@", "result=answered")


def test_the_b_identity_calls_the_customer_pbx_as_the_b_extension(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    received = routed_invite(switch, tmp_path, "hq-pbx", PEERS["mobile"], "3005", "+819012349002")
    assert received.uri == trunk_uri(switch, "hq-pbx", "3005")
    assert f"<sip:2102@{DOMAIN}>" in received.from_
    assert received.asserted == f"<sip:2102@{DOMAIN}>"
    assert "kind=internal" in record(switch, "to=sip:3005@", "result=answered")


def test_a_customer_pbx_extension_calls_a_mobile(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    received = routed_invite(switch, tmp_path, "mobile", PEERS["hq-pbx"], "2002", "3001")
    assert received.uri == trunk_uri(switch, "mobile", "+819012340002")
    assert received.asserted == f"<sip:3001@{DOMAIN}>"
    assert "kind=internal" in record(switch, "to=sip:2002@", "result=answered")


# --- item 1: untrusted identity ----------------------------------------------------------------


def test_a_phone_cannot_assert_another_identity(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    received = routed_invite(
        switch, tmp_path, "mobile", PHONE_HOST, "2001", "1004", *as_phone("1004", claimed="2002"),
        scenario="pbx_uac_phone.xml",
    )  # fmt: skip
    assert received.asserted == f"<sip:1004@{DOMAIN}>"
    assert "sip:2002@" not in received.text and f"sip:1004@{DOMAIN}" in received.from_


# --- item 3: external calls and emergency numbers ---------------------------------------------


def test_external_calls_follow_the_lines_options(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    # 050 option: the PSTN gets the call showing the line's 050 number.
    received = routed_invite(
        switch, tmp_path, "pstn", PEERS["mobile"], "0312345678", "+819012340001"
    )
    assert received.uri == trunk_uri(switch, "pstn", "0312345678")
    assert f"<sip:05012340001@{DOMAIN}>" in received.from_
    assert received.asserted == "<tel:+815012340001>"
    assert "kind=external" in record(switch, "to=tel:0312345678", "result=answered")
    # Gateway option: the tenant's gateway gets it showing the extension.
    received = routed_invite(
        switch, tmp_path, "gateway", PEERS["mobile"], "0612345678", "+819012340003"
    )
    assert received.uri == trunk_uri(switch, "gateway", "0612345678")
    assert received.asserted == f"<sip:2003@{DOMAIN}>"
    # Neither option: refused, at once without an offer ...
    status, messages = call(
        switch,
        tmp_path,
        "pbx_uac_trunk_refused.xml",
        PEERS["mobile"],
        "0312349999",
        "+819012340002",
    )
    assert status == 0 and _statuses(messages)[-1] == 403, messages
    assert "kind=external" in record(switch, "to=sip:0312349999@", "status=403")


def test_a_refusal_plays_its_announcement_as_early_media_then_403(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    with sipp.receiving(sipp.RtpSink(PEERS["mobile"])) as rtp:
        status, messages = call(
            switch,
            tmp_path,
            "pbx_uac_trunk_announcement.xml",
            PEERS["mobile"],
            "0312348888",
            "+819012340002",
            "-key", "rtp_port", str(rtp.port),
        )  # fmt: skip
    assert status == 0, messages
    assert [code for code in _statuses(messages) if code != 100] == [183, 403]
    # The announcement (5.4 s of 20 ms packets) was sent before the 403.
    pcmu_packets = rtp.payload_types.count(0)
    assert pcmu_packets >= 200, pcmu_packets
    line = record(switch, "to=sip:0312348888@", "status=403")
    assert "target=announcement:call_restricted_ja" in line and "kind=external" in line


def test_emergency_numbers(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    # A fixed phone: refused (no callback number, no location).
    status, messages = call(
        switch, tmp_path, "pbx_uac_phone.xml", PHONE_HOST, "110", "1005", *as_phone("1005")
    )
    assert status == 0 and _statuses(messages)[-1] == 403, messages
    # A mobile line without any external option: out on the PSTN with its own number.
    received = routed_invite(switch, tmp_path, "pstn", PEERS["mobile"], "119", "+819012340002")
    assert received.uri == trunk_uri(switch, "pstn", "119")
    assert received.asserted == "<tel:+819012340002>"


# --- item 6: international roaming ------------------------------------------------------------


def _set_abroad(switch: PbxSwitch, msisdn: str, abroad: bool) -> None:
    form = urllib.parse.urlencode({"username": OPERATOR[0], "password": OPERATOR[1]}).encode()
    with urllib.request.urlopen(f"{switch.api}/api/v1/auth/token", data=form, timeout=10) as reply:
        token = json.load(reply)["access_token"]
    request = urllib.request.Request(
        f"{switch.api}/api/v1/tenants/demo/mobile-lines/{msisdn}",
        data=json.dumps({"abroad": abroad}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="PATCH",
    )
    reloads = switch.element.log_text().count(" reloaded in ")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
    # The in-process notification rebuilds the snapshot (~20 ms); its log line says when.
    deadline = time.monotonic() + 10.0
    while switch.element.log_text().count(" reloaded in ") <= reloads:
        assert time.monotonic() < deadline, switch.element.log_text()[-3000:]
        time.sleep(0.05)


def test_international_roaming(pbx_switch: PbxSwitch, tmp_path: Path) -> None:
    switch = pbx_switch
    # The mobile network says the line is abroad: extension dialing is refused.
    status, messages = call(
        switch,
        tmp_path,
        "pbx_uac_trunk_refused.xml",
        PEERS["mobile"],
        "1003",
        "+819012340002",
        header="P-Visited-Network-ID: visited.example",
    )
    assert status == 0 and _statuses(messages)[-1] == 403, messages
    assert "kind=internal" in record(switch, "to=sip:1003@", "status=403")
    try:
        # The operator marks both lines abroad: only the one with roaming is reached.
        _set_abroad(switch, "09012340001", True)
        _set_abroad(switch, "09012340002", True)
        status, messages = call(
            switch, tmp_path, "pbx_uac_phone.xml", PHONE_HOST, "2001", "1004", *as_phone("1004")
        )
        assert status == 0 and _statuses(messages)[-1] == 480, messages
        received = routed_invite(
            switch, tmp_path, "mobile", PHONE_HOST, "2102", "1004", *as_phone("1004"),
            scenario="pbx_uac_phone.xml",
        )  # fmt: skip
        assert received.called == "<tel:+819012349002>"
    finally:
        _set_abroad(switch, "09012340001", False)
        _set_abroad(switch, "09012340002", False)
