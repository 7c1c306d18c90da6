"""Caller-ID withholding (184) and a tenant's announcement language, end to end.

The running switch of `test_pbx_calls` (its fixture and SIPp helpers, a switch of this
module's own on a test copy of `configs/demo.yaml`; SIPp peers on the demo's trunk
addresses):
- A mobile line (+819012340001, 050 option) dials 184 in front of an external number, as
  the mobile network sends it: the PSTN trunk's SIPp UAS must get the number without
  184, From `"Anonymous" <sip:anonymous@anonymous.invalid>`, the P-Asserted-Identity of
  the 050 number and `Privacy: id` (`pbx_routing` rule 7: a trusted carrier trunk).
- The tenant administrator switches the demo tenant to English through the Customer
  Control API; a refused external call of a line without options then hears
  `call_restricted_en`: the RTP packets counted are the English WAV's 20 ms frames
  (the Japanese one is 15 packets shorter), and the call record names it.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
import wave
from pathlib import Path

from . import sipp
from .conftest import REPO_ROOT
from .test_pbx_calls import (
    PEERS,
    PbxSwitch,
    _statuses,
    call,
    pbx_switch,
    record,
    routed_invite,
    trunk_uri,
)

__all__ = ["pbx_switch"]  # the module's running switch (a fixture of test_pbx_calls)

ANNOUNCEMENTS = REPO_ROOT / "configs" / "announcements"
ADMIN = ("admin@demo", "Demo-Admin-2026!")
"""The demo tenant's administrator (configs/demo.yaml): a customer, not the operator."""


def wav_packets(name: str) -> int:
    """20 ms RTP packets (160 samples at 8 kHz) of announcement `name`."""
    with wave.open(str(ANNOUNCEMENTS / f"{name}.wav")) as audio:
        return math.ceil(audio.getnframes() / 160)


def set_language(switch: PbxSwitch, language: str) -> None:
    """PATCH the demo tenant's announcement language as its administrator, then wait for
    the switch to rebuild its snapshot (its ` reloaded in ` log line)."""
    form = urllib.parse.urlencode({"username": ADMIN[0], "password": ADMIN[1]}).encode()
    with urllib.request.urlopen(f"{switch.api}/api/v1/auth/token", data=form, timeout=10) as reply:
        token = json.load(reply)["access_token"]
    request = urllib.request.Request(
        f"{switch.api}/api/v1/tenants/demo",
        data=json.dumps({"announcement_language": language}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="PATCH",
    )
    reloads = switch.element.log_text().count(" reloaded in ")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        assert json.load(reply)["announcement_language"] == language
    deadline = time.monotonic() + 10.0
    while switch.element.log_text().count(" reloaded in ") <= reloads:
        assert time.monotonic() < deadline, switch.element.log_text()[-3000:]
        time.sleep(0.05)


def test_a_184_call_reaches_the_pstn_anonymous_with_pai_and_privacy(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    received = routed_invite(
        switch, tmp_path, "pstn", PEERS["mobile"], "1840312347777", "+819012340001"
    )
    # 184 is the caller's choice, not part of the number sent on.
    assert received.uri == trunk_uri(switch, "pstn", "0312347777")
    assert received.from_.startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    # The carrier network still gets the identity, and is told to withhold it.
    assert received.asserted == "<tel:+815012340001>"
    privacy = [
        line.partition(":")[2].strip()
        for line in received.text.split("\n")
        if line.lower().startswith("privacy:")
    ]
    assert privacy == ["id"], received.text
    assert "05012340001@" not in received.text and "+819012340001" not in received.text
    assert "kind=external" in record(switch, "to=tel:0312347777", "result=answered")


def test_an_english_tenants_refusal_plays_the_english_announcement(
    pbx_switch: PbxSwitch, tmp_path: Path
) -> None:
    switch = pbx_switch
    english, japanese = wav_packets("call_restricted_en"), wav_packets("call_restricted_ja")
    assert abs(english - japanese) > 2  # the count tells the two recordings apart
    set_language(switch, "en")
    try:
        # +819012340002 has no external-call option: 403 after the announcement.
        with sipp.receiving(sipp.RtpSink(PEERS["mobile"])) as rtp:
            status, messages = call(
                switch, tmp_path, "pbx_uac_trunk_announcement.xml", PEERS["mobile"],
                "0312346666", "+819012340002", "-key", "rtp_port", str(rtp.port),
            )  # fmt: skip
            time.sleep(0.1)  # a last packet still in flight
        assert status == 0, messages
        assert [code for code in _statuses(messages) if code != 100] == [183, 403]
        packets = rtp.payload_types.count(0)
        assert abs(packets - english) <= 1, (packets, english, japanese)
        line = record(switch, "to=sip:0312346666@", "status=403")
        assert "target=announcement:call_restricted_en" in line and "kind=external" in line
    finally:
        set_language(switch, "ja")
