"""Toll-free calls (issue 5) through the running switch, end to end with SIPp on loopback.

- One switch for the module, on a test copy of `configs/demo.yaml` whose toll-free
  numbers reach their destinations through test trunks, one per destination gateway:
  each gateway is a SIPp UAS on its own 127.x.y.z address (`random_loopback_host`), so
  the calls each destination received are counted by its own SIPp (`-m` and its
  `-trace_stat` SuccessfulCall count).
- The caller is a SIPp UAC playing the carrier: it binds (`-i`) the demo's trusted `pstn`
  trunk source, 127.0.0.3, so it is not challenged and may reach toll-free routing.
- Covered: 400 calls at 3:1 give exactly 300 and 100, and every 4 consecutive calls (in
  the order SIPp numbered them) split 3/1; with a
  channel limit of 2, three concurrent calls give exactly one 486; a destination
  answering 503 is skipped for the next one (sequential failover); a CANCEL while the
  destination rings gives 487; after hours the switch answers with SDP, sends the
  announcement's RTP (PCMU, counted on a UDP socket of the test where the caller's SDP
  points) and hangs up with BYE; an out-of-area caller hears the refusal announcement
  and its BYE one second in stops the RTP.
- Each call leaves one `call ended ...` line in the switch's log (`to=` is the toll-free
  number), which the tests also count.
- Each call also leaves one call record; the switch serves the Customer Control API
  (`--api`), and the last test checks that its daily statistics, per number and per
  destination, equal the calls the tests before it made (each test notes its calls'
  categories in `MADE` once its own checks passed, so any subset of the module checks).
- Last, the switch is killed (SIGKILL) right after more calls ended, started again on
  the same store, and the statistics still hold every completed call: the records are
  in the journal before a call's log line is written, and the journal is ingested after
  the restart.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from . import sipp
from .conftest import REPO_ROOT, RunningElement, free_port, random_loopback_host, running

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
ANNOUNCEMENTS = REPO_ROOT / "configs" / "announcements"


def wav_frames(path: Path) -> int:
    """Sample frames of a WAV file (8 kHz: 160 per 20 ms RTP packet)."""
    with wave.open(str(path)) as audio:
        return audio.getnframes()


TRUNK_SOURCE = "127.0.0.3"
"""The demo's `pstn` trunk trusts this source address (any port)."""
SIPP_LIMIT = 30  # seconds, for `timeout` around SIPp
CALLER_NUMBER = "0312345678"

# Toll-free numbers of the test configuration and their destination gateways.
RATIO = "0120000111"
LIMITED = "0120000222"
FAILOVER = "0120000333"
RINGING = "0120000444"
AFTER_HOURS = "0120000555"
OUT_OF_AREA = "0120000666"
TOKYO_ONLY = "0120000777"
AREA_HEADER = "X-Caller-Area"
"""The `caller_area_header` of the test configuration's carrier trunk (`pstn`)."""
WHOLE_DAY = [
    {"weekday": day, "start": "00:00", "end": "24:00"}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
] + [{"holiday": True, "start": "00:00", "end": "24:00"}]
GATEWAYS = ("tokyo", "osaka", "limited", "broken", "backup", "ringer", "area")
MADE: Counter[tuple[str, str]] = Counter()
"""(toll-free number, category) -> calls the tests made and checked."""
MADE_BY_DESTINATION: Counter[tuple[str, str]] = Counter()
"""(toll-free number, destination) -> connected calls the tests made and checked."""
API: dict[str, str] = {}
"""`base`: the module switch's Customer Control API."""
OPERATOR = ("operator", "Demo-Operator-2026!")
STATISTICS_WAIT = 10.0
"""Seconds for the records to travel journal -> store (the ingester polls)."""


def destination(number: str, weight: int, trunk: str) -> dict[str, object]:
    return {"number": number, "weight": weight, "trunk": trunk}


def write_config(path: Path, gateways: dict[str, tuple[str, int]]) -> None:
    """The demo configuration with a trunk per gateway and four toll-free numbers."""
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    for name, (host, port) in gateways.items():
        document["trunks"].append(
            {
                "name": f"gw-{name}",
                "kind": "pstn",
                "host": host,
                "port": port,
                "transport": "udp",
                "trusted_sources": [],
            }
        )
    base = document["tollfree_numbers"][0]
    (carrier,) = [trunk for trunk in document["trunks"] if trunk["name"] == "pstn"]
    carrier["caller_area_header"] = AREA_HEADER

    def number(text: str, channels: int, *destinations: dict[str, object]) -> dict[str, object]:
        entry = dict(base)
        entry.update(
            number=text,
            contracted_channels=channels,
            channel_setting=channels,
            destination_sets={"default": list(destinations)},
            schedules=[],
            accounts=[],
        )
        return entry

    document["tollfree_numbers"] = [
        number(
            RATIO,
            100,
            destination("0312340001", 3, "gw-tokyo"),
            destination("0612340001", 1, "gw-osaka"),
        ),
        number(LIMITED, 2, destination("0312340002", 1, "gw-limited")),
        number(
            FAILOVER,
            10,
            destination("0312340003", 3, "gw-broken"),
            destination("0612340003", 1, "gw-backup"),
        ),
        number(RINGING, 10, destination("0312340004", 1, "gw-ringer")),
        number(AFTER_HOURS, 10, destination("0312340005", 1, "gw-ringer")),
        number(OUT_OF_AREA, 10, destination("0312340006", 1, "gw-ringer")),
        number(TOKYO_ONLY, 10, destination("0312340007", 1, "gw-area")),
    ]
    after_hours, out_of_area, tokyo_only = document["tollfree_numbers"][4:7]
    tokyo_only["designated_areas"] = {
        **base["designated_areas"],
        "whole_country": False,
        "prefectures": ["13"],
        "refusal_action": "reject",
    }
    # The English announcement (8.6 s) is the shorter one.
    after_hours["announcements"] = {**base["announcements"], "after_hours": "after_hours_en"}
    after_hours["schedules"] = [
        {"name": "closed", "action": "after_hours", "enabled": True, "ranges": WHOLE_DAY}
    ]
    out_of_area["designated_areas"] = {
        **base["designated_areas"],
        "whole_country": False,
        "prefectures": ["47"],  # Okinawa: a Tokyo caller is out of the area
        "refusal_action": "announcement",
    }
    document["tollfree_numbers"][0]["accounts"] = base.get("accounts", [])
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def tollfree_switch(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningElement, dict[str, tuple[str, int]]]]:
    """One switch for the module and the address of every destination gateway."""
    directory = tmp_path_factory.mktemp("tollfree")
    gateways: dict[str, tuple[str, int]] = {}
    for name in GATEWAYS:
        host = random_loopback_host()
        gateways[name] = (host, free_port(host))
    config = directory / "tollfree.yaml"
    write_config(config, gateways)
    api_port = free_port("127.0.0.1")
    options = (
        "--config", str(config), "--data-dir", str(directory / "data"),
        "--api", f"127.0.0.1:{api_port}",
    )  # fmt: skip
    API["base"] = f"http://127.0.0.1:{api_port}"
    with running("127.0.0.1", directory / "softswitch.log", options) as element:
        yield element, gateways


def sipp_command(
    switch: RunningElement,
    tmp_path: Path,
    scenario: str,
    name: str,
    address: tuple[str, int],
    calls: int,
    *extra: str,
) -> list[str]:
    return sipp.command(
        switch, tmp_path, scenario, *address, *extra, limit=SIPP_LIMIT, name=name, calls=calls
    )


def gateway(
    switch: RunningElement,
    tmp_path: Path,
    scenario: str,
    name: str,
    address: tuple[str, int],
    calls: int,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A SIPp UAS destination answering `calls` calls; stopped by its PID at the end."""
    command = sipp_command(switch, tmp_path, scenario, name, address, calls)
    return sipp.background(command, tmp_path, name, settle=0.3)


def carrier_call(
    switch: RunningElement,
    tmp_path: Path,
    scenario: str,
    number: str,
    calls: int,
    *extra: str,
    caller: str = CALLER_NUMBER,
) -> subprocess.CompletedProcess[bytes]:
    """`calls` SIPp UAC calls to the toll-free `number` from the trusted trunk source."""
    address = (TRUNK_SOURCE, free_port(TRUNK_SOURCE))
    command = sipp_command(
        switch, tmp_path, scenario, "caller", address, calls,
        "-s", number, "-key", "caller", caller, *extra,
    )  # fmt: skip
    return sipp.run(command, tmp_path, SIPP_LIMIT + 15)


def wait_exit(process: subprocess.Popen[bytes]) -> int:
    return sipp.exit_status(process, SIPP_LIMIT)


def call_lines(switch: RunningElement, number: str) -> list[dict[str, str]]:
    """The `call ended` log lines of calls to the toll-free `number`."""
    return [fields for fields in sipp.call_records(switch) if fields.get("to") == number]


def wait_call_lines(switch: RunningElement, number: str, count: int) -> list[dict[str, str]]:
    def enough() -> list[dict[str, str]]:
        lines = call_lines(switch, number)
        return lines if len(lines) >= count else []

    return sipp.wait_for(
        enough, lambda: f"fewer than {count} call lines:\n" + switch.log_text()[-4000:]
    )


# --- Tests ---------------------------------------------------------------------------------


def test_400_calls_at_3_to_1_reach_the_destinations_300_and_100(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, gateways = tollfree_switch
    with (
        gateway(switch, tmp_path, "call_uas.xml", "tokyo", gateways["tokyo"], 300) as tokyo,
        gateway(switch, tmp_path, "call_uas.xml", "osaka", gateways["osaka"], 100) as osaka,
    ):
        caller = carrier_call(
            switch, tmp_path, "call_uac_trunk.xml", RATIO, 400, "-r", "100", "-l", "60"
        )
        statuses = (wait_exit(tokyo), wait_exit(osaka))
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert statuses == (0, 0), info
    assert sipp.call_counts(tmp_path, "caller") == (400, 0), info
    assert sipp.call_counts(tmp_path, "tokyo") == (300, 0), info
    assert sipp.call_counts(tmp_path, "osaka") == (100, 0), info
    lines = wait_call_lines(switch, RATIO, 400)
    assert {(line["result"], line["status"]) for line in lines} == {("answered", "200")}
    # SIPp numbers its calls 1, 2, 3, ... in its Call-IDs (`N-pid@host`) and sends
    # them in that order: the switch's rotation saw them in that order too.
    lines.sort(key=lambda line: int(line["call_id"].split("-", 1)[0]))
    osaka_calls = [line["target"].startswith("sip:0612340001@") for line in lines]
    assert osaka_calls.count(True) == 100
    windows = {sum(osaka_calls[index : index + 4]) for index in range(len(osaka_calls) - 3)}
    assert windows == {1}, "a run of 4 consecutive calls did not split 3/1"
    MADE[(RATIO, "connected")] += 400
    MADE_BY_DESTINATION[(RATIO, "0312340001")] += 300
    MADE_BY_DESTINATION[(RATIO, "0612340001")] += 100


def test_one_call_over_the_channel_limit_gets_486(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, gateways = tollfree_switch
    with gateway(switch, tmp_path, "call_uas.xml", "limited", gateways["limited"], 2) as uas:
        caller = carrier_call(
            switch, tmp_path, "tollfree_uac_hold_or_busy.xml", LIMITED, 3,
            "-r", "100", "-l", "3",
        )  # fmt: skip
        status = wait_exit(uas)
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert status == 0, info
    assert sipp.call_counts(tmp_path, "limited") == (2, 0), info
    lines = wait_call_lines(switch, LIMITED, 3)
    outcomes = sorted((line["result"], line["status"]) for line in lines)
    assert outcomes == [("answered", "200"), ("answered", "200"), ("rejected", "486")], info
    MADE[(LIMITED, "connected")] += 2
    MADE[(LIMITED, "busy")] += 1


def test_failover_skips_a_destination_answering_503(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, gateways = tollfree_switch
    with (
        gateway(
            switch, tmp_path, "tollfree_uas_unavailable.xml", "broken", gateways["broken"], 1
        ) as broken,
        gateway(switch, tmp_path, "call_uas.xml", "backup", gateways["backup"], 1) as backup,
    ):
        caller = carrier_call(switch, tmp_path, "call_uac_trunk.xml", FAILOVER, 1)
        statuses = (wait_exit(broken), wait_exit(backup))
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert statuses == (0, 0), info
    assert sipp.call_counts(tmp_path, "broken") == (1, 0), info
    assert sipp.call_counts(tmp_path, "backup") == (1, 0), info
    (line,) = wait_call_lines(switch, FAILOVER, 1)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    # The weight-3 destination first, then the backup: both tried, one after the other.
    assert line["target"].startswith("sip:0312340003@"), line
    MADE[(FAILOVER, "connected")] += 1


def test_cancel_while_the_destination_rings_gives_487(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, gateways = tollfree_switch
    with gateway(
        switch, tmp_path, "call_uas_ringing.xml", "ringer", gateways["ringer"], 1
    ) as ringer:
        caller = carrier_call(switch, tmp_path, "tollfree_uac_cancel.xml", RINGING, 1)
        status = wait_exit(ringer)
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert status == 0, info
    (line,) = wait_call_lines(switch, RINGING, 1)
    assert (line["result"], line["status"]) == ("cancelled", "487"), line
    MADE[(RINGING, "abandoned")] += 1


def test_after_hours_the_switch_plays_the_announcement_and_hangs_up(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, _ = tollfree_switch
    with sipp.receiving(sipp.RtpSink(TRUNK_SOURCE)) as rtp:
        started = time.monotonic()
        caller = carrier_call(
            switch, tmp_path, "tollfree_uac_announcement.xml", AFTER_HOURS, 1,
            "-key", "rtp_port", str(rtp.port),
        )  # fmt: skip
        elapsed = time.monotonic() - started
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert sipp.call_counts(tmp_path, "caller") == (1, 0), info
    # after_hours_en.wav is 8.6 s: its frames in 20 ms packets (the last one padded with
    # silence), +-1 packet, all PCMU (payload type 0).
    expected = math.ceil(wav_frames(ANNOUNCEMENTS / "after_hours_en.wav") / 160)
    assert abs(len(rtp.payload_types) - expected) <= 1, (len(rtp.payload_types), expected, info)
    assert set(rtp.payload_types) == {0}
    assert 8.0 < elapsed < 15.0
    (line,) = wait_call_lines(switch, AFTER_HOURS, 1)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert line["target"] == "announcement:after_hours_en", line
    MADE[(AFTER_HOURS, "after_hours")] += 1


def test_an_out_of_area_caller_hangs_up_during_the_refusal_announcement(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    switch, _ = tollfree_switch
    with sipp.receiving(sipp.RtpSink(TRUNK_SOURCE)) as rtp:
        caller = carrier_call(
            switch, tmp_path, "tollfree_uac_announcement_hangup.xml", OUT_OF_AREA, 1,
            "-key", "rtp_port", str(rtp.port),
        )  # fmt: skip
        time.sleep(0.5)  # any packet still coming would arrive by now
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert sipp.call_counts(tmp_path, "caller") == (1, 0), info
    # About one second of the 7 s announcement, then nothing: the BYE stopped it. The
    # caller offered PCMA only: every packet is PCMA (payload type 8).
    assert 30 <= len(rtp.payload_types) <= 80, (len(rtp.payload_types), info)
    assert set(rtp.payload_types) == {8}
    (line,) = wait_call_lines(switch, OUT_OF_AREA, 1)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert line["target"] == "announcement:out_of_area_ja", line
    MADE[(OUT_OF_AREA, "out_of_area")] += 1


def test_an_osaka_caller_to_a_tokyo_only_number_is_refused_unless_the_trunk_says_tokyo(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    """Issue 5 part 5: a 06- caller to a Tokyo-only number is refused (403, counted
    `out_of_area`); the carrier trunk's asserted area (its `caller_area_header`) wins
    over the number's in both directions; a mobile has no area but the asserted one."""
    switch, gateways = tollfree_switch
    refused = carrier_call(
        switch, tmp_path, "tollfree_uac_refused.xml", TOKYO_ONLY, 1, caller="0612345678"
    )
    assert refused.returncode == 0, sipp.diagnostics(tmp_path, switch, refused)
    asserted_osaka = carrier_call(
        switch, tmp_path, "tollfree_uac_area_refused.xml", TOKYO_ONLY, 1,
        "-key", "area", "06", caller=CALLER_NUMBER,
    )  # fmt: skip
    assert asserted_osaka.returncode == 0, sipp.diagnostics(tmp_path, switch, asserted_osaka)
    with gateway(switch, tmp_path, "call_uas.xml", "area", gateways["area"], 2) as area:
        mobile = carrier_call(
            switch, tmp_path, "tollfree_uac_area.xml", TOKYO_ONLY, 2,
            "-key", "area", "03", "-r", "10", caller="09012345678",
        )  # fmt: skip
        status = wait_exit(area)
    info = sipp.diagnostics(tmp_path, switch, mobile)
    assert mobile.returncode == 0 and status == 0, info
    assert sipp.call_counts(tmp_path, "area") == (2, 0), info
    lines = wait_call_lines(switch, TOKYO_ONLY, 4)
    assert sorted((line["result"], line["status"]) for line in lines) == [
        ("answered", "200"),
        ("answered", "200"),
        ("rejected", "403"),
        ("rejected", "403"),
    ], lines
    MADE[(TOKYO_ONLY, "out_of_area")] += 2
    MADE[(TOKYO_ONLY, "connected")] += 2
    MADE_BY_DESTINATION[(TOKYO_ONLY, "0312340007")] += 2


# --- statistics: the API's totals equal the calls made ---------------------------------

CATEGORIES = ("connected", "after_hours", "busy", "out_of_area", "abandoned", "other")


def _operator_token(base: str) -> str:
    form = urllib.parse.urlencode({"username": OPERATOR[0], "password": OPERATOR[1]}).encode()
    with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=10) as reply:
        token = json.load(reply)["access_token"]
        assert isinstance(token, str)
        return token


def _daily_rows(
    base: str, token: str, number: str, by: str, granularity: str = "daily"
) -> list[dict[str, object]]:
    """Daily (or hourly) rows from yesterday to tomorrow (Asia/Tokyo): the calls of this
    run, even across midnight."""
    today = datetime.datetime.now(ZoneInfo("Asia/Tokyo")).date()
    query = urllib.parse.urlencode(
        {
            "granularity": granularity,
            "from": str(today - datetime.timedelta(days=1)),
            "to": str(today + datetime.timedelta(days=1)),
            "by": by,
        }
    )
    request = urllib.request.Request(
        f"{base}/api/v1/tollfree-numbers/{number}/statistics?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        rows: list[dict[str, object]] = json.load(reply)["rows"]
        return rows


def _totals(rows: list[dict[str, object]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for row in rows:
        for key in ("total", *CATEGORIES):
            value = row[key]
            assert isinstance(value, int)
            totals[key] += value
    return totals


def test_the_apis_daily_statistics_equal_the_calls_made(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]],
) -> None:
    switch, _ = tollfree_switch
    # The calls are the ones the tests above made (run the module, not this test alone).
    assert MADE, "no toll-free call test of this module ran before this one"
    base = API["base"]
    token = _operator_token(base)
    numbers = sorted({number for number, _ in MADE})
    expected = {
        number: Counter({category: MADE[(number, category)] for category in CATEGORIES})
        for number in numbers
    }
    for counter in expected.values():
        counter["total"] = sum(counter[category] for category in CATEGORIES)
    deadline = time.monotonic() + STATISTICS_WAIT
    while True:
        found = {number: _totals(_daily_rows(base, token, number, "number")) for number in numbers}
        if all(+found[number] == +expected[number] for number in numbers):
            break
        assert time.monotonic() < deadline, (found, expected, switch.log_text()[-3000:])
        time.sleep(0.2)
    for number in numbers:
        totals = found[number]
        assert totals["total"] == sum(totals[category] for category in CATEGORIES)
        hourly = _daily_rows(base, token, number, "number", granularity="hourly")
        assert len(hourly) == 72  # three whole days of 24 hours
        assert _totals(hourly) == totals, number
    by_destination: Counter[tuple[str, str]] = Counter()
    for number in {number for number, _ in MADE_BY_DESTINATION}:
        for row in _daily_rows(base, token, number, "destination"):
            connected = row["connected"]
            assert isinstance(connected, int)
            by_destination[(number, str(row["destination"]))] += connected
    assert +by_destination == +MADE_BY_DESTINATION


def test_completed_calls_survive_a_kill_9_of_the_switch(
    tollfree_switch: tuple[RunningElement, dict[str, tuple[str, int]]], tmp_path: Path
) -> None:
    """Issue 5 part 6: records survive a `kill -9`; none of the completed calls is lost."""
    switch, gateways = tollfree_switch
    base = API["base"]
    token = _operator_token(base)
    before = _totals(_daily_rows(base, token, RATIO, "number"))
    logged = len(call_lines(switch, RATIO))
    calls = 12
    with (
        gateway(switch, tmp_path, "call_uas.xml", "tokyo", gateways["tokyo"], 9) as tokyo,
        gateway(switch, tmp_path, "call_uas.xml", "osaka", gateways["osaka"], 3) as osaka,
    ):
        caller = carrier_call(
            switch, tmp_path, "call_uac_trunk.xml", RATIO, calls, "-r", "50", "-l", "12"
        )
        statuses = (wait_exit(tokyo), wait_exit(osaka))
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0 and statuses == (0, 0), info
    wait_call_lines(switch, RATIO, logged + calls)  # every call of this test has ended
    process = switch.process
    assert process is not None
    process.kill()  # SIGKILL: no shutdown, no flush
    assert process.wait(10) == -9
    switch.start()  # the same store, port and options
    token = _operator_token(base)
    deadline = time.monotonic() + STATISTICS_WAIT
    while True:
        after = _totals(_daily_rows(base, token, RATIO, "number"))
        if after["connected"] - before["connected"] >= calls:
            break
        assert time.monotonic() < deadline, (before, after, switch.log_text()[-3000:])
        time.sleep(0.2)
    assert after["connected"] - before["connected"] == calls  # each exactly once
    assert after["total"] - before["total"] == calls
    MADE[(RATIO, "connected")] += calls
