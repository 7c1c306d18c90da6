"""Overload control end to end (issue 6 item 7): the real switch, SIPp on loopback.

The switch runs with `--overload-max-invites 3 --overload-retry-after 7` and extension
1999 at a SIPp UAS that rings 3 s before it answers (`overload_uas_late_answer.xml`).
Three calls from the trusted trunk's address ring at once; `/metrics` shows 3 INVITEs
in progress; a fourth INVITE gets 503 with `Retry-After: 7` (RFC 3261 §21.5.4, §20.33;
`overload_uac_refused.xml` fails on any other answer) before any challenge. The three
calls are then answered and hung up by the caller (ACK and BYE served), and once they
ended a new call is accepted and completes. No timing assertions: every wait is a
bounded poll. Every process is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from . import sipp
from .conftest import RunningElement, free_port, random_loopback_host, running
from .test_calls import DOMAIN, SIPP_LIMIT, assert_one_success, write_config

TRUNK_SOURCE = "127.0.0.2"
"""The demo configuration's trusted `loadgen` trunk: its INVITEs are not challenged."""
BOUND = 3
RETRY_AFTER = 7  # overload_uac_refused.xml checks this value


@contextlib.contextmanager
def overload_switch(tmp_path: Path, static_contact: str) -> Iterator[tuple[RunningElement, str]]:
    """The switch with a bound of 3 INVITEs in progress and /metrics; (switch, URL)."""
    config = write_config(tmp_path, static_contact, 20)
    metrics_port = free_port(DOMAIN)
    options = (
        "--config", str(config), "--data-dir", str(tmp_path / "data"),
        "--metrics", f"{DOMAIN}:{metrics_port}",
        "--overload-max-invites", str(BOUND),
        "--overload-retry-after", str(RETRY_AFTER),
    )  # fmt: skip
    with running(DOMAIN, tmp_path / "softswitch.log", options) as switch:
        yield switch, f"http://{DOMAIN}:{metrics_port}/metrics"


def metric(url: str, name: str) -> float | None:
    """The value of sample `name` (with its labels, if any) in the exposition."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def wait_metric(url: str, name: str, value: float, switch: RunningElement) -> None:
    deadline = time.monotonic() + 10
    while metric(url, name) != value:
        assert time.monotonic() < deadline, f"{name} never {value}:\n{switch.log_text()}"
        time.sleep(0.05)


def sipp_command(
    switch: RunningElement,
    tmp_path: Path,
    scenario: str,
    host: str,
    port: int,
    *extra: str,
    calls: int = 1,
) -> list[str]:
    return sipp.command(
        switch, tmp_path, scenario, host, port, *extra, limit=SIPP_LIMIT, calls=calls
    )


def finished(process: subprocess.Popen[bytes]) -> int:
    return sipp.exit_status(process, SIPP_LIMIT)


def trunk_call(
    switch: RunningElement, tmp_path: Path, scenario: str, *extra: str, calls: int = 1
) -> list[str]:
    return sipp_command(
        switch, tmp_path, scenario, TRUNK_SOURCE, free_port(TRUNK_SOURCE),
        "-s", "1999", "-key", "caller", "0312345678", *extra, calls=calls,
    )  # fmt: skip


def test_the_invite_over_the_bound_gets_503_and_the_calls_in_progress_complete(
    tmp_path: Path,
) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with overload_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as (switch, url):
        late_uas = sipp_command(
            switch, tmp_path, "overload_uas_late_answer.xml", callee_host, callee_port,
            calls=BOUND,
        )  # fmt: skip
        with sipp.background(late_uas, tmp_path, "late_uas", settle=0.5) as uas:
            three_calls = trunk_call(
                switch, tmp_path, "call_uac_trunk.xml", "-l", str(BOUND), "-r", "10", calls=BOUND
            )
            with sipp.background(three_calls, tmp_path, "three_calls") as callers:
                # All three ring (no final answer yet): the bound is reached.
                wait_metric(url, "softswitch_overload_invites_in_progress", BOUND, switch)
                refused_host = random_loopback_host()
                refused = sipp.run(
                    sipp_command(
                        switch, tmp_path, "overload_uac_refused.xml",
                        refused_host, free_port(refused_host), "-s", "1999",
                        "-key", "caller", "1004",
                    ),
                    tmp_path, SIPP_LIMIT + 15,
                )  # fmt: skip
                callers_status = finished(callers)
            uas_status = finished(uas)
        info = sipp.diagnostics(tmp_path, switch, refused)
        assert refused.returncode == 0, info
        assert_one_success(tmp_path, "overload_uac_refused.xml")
        # The calls accepted before the refusal were answered, ACKed and hung up.
        assert callers_status == 0, info
        assert uas_status == 0, info
        assert metric(url, 'softswitch_overload_refused_total{reason="invites_in_progress"}') == 1
        assert metric(url, "softswitch_calls_invites_refused_overload_total") == 1
        wait_metric(url, "softswitch_overload_invites_in_progress", 0, switch)

        # Recovered: the next INVITE is accepted and the call completes.
        uas_command = sipp_command(switch, tmp_path, "call_uas.xml", callee_host, callee_port)
        with sipp.background(uas_command, tmp_path, "uas", settle=0.5) as uas:
            caller = sipp.run(
                trunk_call(switch, tmp_path, "call_uac_trunk.xml"), tmp_path, SIPP_LIMIT + 15
            )
            uas_status = finished(uas)
        info = sipp.diagnostics(tmp_path, switch, caller)
        assert caller.returncode == 0, info
        assert uas_status == 0, info
        assert metric(url, "softswitch_calls_invites_refused_overload_total") == 1
        deadline = time.monotonic() + 5
        while len(sipp.call_records(switch)) < BOUND + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = sipp.call_records(switch)
    assert [(line["result"], line["status"]) for line in lines] == [("answered", "200")] * 4
    counters = switch.counters("call")
    assert counters["invites_refused_overload"] == 1, counters
    assert counters["calls_started"] == BOUND + 1, counters
    assert "invite_challenged" not in counters, counters  # refused before authentication
    assert switch.counters("overload") == {"overload_refused.invites_in_progress": 1}
    assert switch.returncode == 0
    assert "Traceback" not in switch.log_text()
