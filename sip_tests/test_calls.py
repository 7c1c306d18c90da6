"""Calls through the running switch, end to end with SIPp over real sockets on loopback.

- The switch runs with a test copy of `configs/demo.yaml` that adds extension 1999 with a
  static contact `sip:1999@HOST:PORT`, a SIPp UAS on its own 127.x.y.z address.
- The caller is a SIPp UAC as 1004 (MD5 only: SIPp answers MD5 challenges only): its
  first INVITE gets 407 Proxy-Authenticate (RFC 3261 §22.3), it ACKs that and sends the
  INVITE again with Proxy-Authorization.
- Covered: answered and hung up by the caller; busy (486 relayed); unknown extension
  (404); an extension neither registered nor with a static contact (1002: 480); CANCEL
  while ringing (487); no answer within the extension's timeout (1 s: 480 to the
  caller, CANCEL to the callee); a call to a REGISTERED callee (SIPp registers 1005 from an
  address and port, then a SIPp UAS on that same address and port answers).
- Inside an answered call (each SIPp scenario checks with `ereg check_it` that what it
  receives carries what was sent, and fails on any message it does not expect): hung up
  by the callee (its BYE reaches the caller); hold and resume by re-INVITE (a=sendonly
  answered a=recvonly, then a=sendrecv) from the caller and from the callee, with the
  ACKs reaching the other side; INFO (application/dtmf-relay) and UPDATE (SDP offer and
  answer) relayed both ways; OPTIONS answered by the switch itself, not relayed.
- A caller on the trusted trunk's source address (`loadgen`, 127.0.0.2) is not
  challenged; the same INVITE from another address gets 407.
- Each call leaves one `call ended ...` line in the switch's log with its status (the
  line does not say which side hung up).
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from . import sipp
from .conftest import REPO_ROOT, RunningElement, free_port, random_loopback_host, running
from .test_registrar import run_sipp

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DOMAIN = "127.0.0.1"
SIPP_LIMIT = 30  # seconds, for `timeout` around SIPp
CALLER = "1004"
CALLER_PASSWORD = "pass1004"
AS_CALLER = ("-key", "caller", CALLER, "-au", CALLER, "-ap", CALLER_PASSWORD)
"""SIPp arguments: the caller's number and its credentials."""


def write_config(tmp_path: Path, static_contact: str | None, no_answer_timeout: int) -> Path:
    """The demo configuration plus extension 1999 at `static_contact`."""
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    if static_contact is not None:
        document["tenants"][0]["extensions"].append(
            {
                "number": "1999",
                "site": document["tenants"][0]["sites"][0]["name"],
                "display_name": "static 1999",
                "static_contact_uri": static_contact,
                "no_answer_timeout_seconds": no_answer_timeout,
            }
        )
    path = tmp_path / "calls.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@contextlib.contextmanager
def call_switch(
    tmp_path: Path, static_contact: str | None, no_answer_timeout: int = 20
) -> Iterator[RunningElement]:
    config = write_config(tmp_path, static_contact, no_answer_timeout)
    options = ("--config", str(config), "--data-dir", str(tmp_path / "data"))
    with running(DOMAIN, tmp_path / "softswitch.log", options) as element:
        yield element


def sipp_command(
    switch: RunningElement, tmp_path: Path, scenario: str, host: str, port: int, *extra: str
) -> list[str]:
    return sipp.command(switch, tmp_path, scenario, host, port, *extra, limit=SIPP_LIMIT)


def sipp_uas(
    switch: RunningElement, tmp_path: Path, scenario: str, host: str, port: int
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A SIPp UAS in the background; stopped by its PID if still running at the end."""
    command = sipp_command(switch, tmp_path, scenario, host, port)
    return sipp.background(command, tmp_path, scenario, settle=0.5)


def run_caller(
    switch: RunningElement, tmp_path: Path, scenario: str, callee: str
) -> subprocess.CompletedProcess[bytes]:
    host = random_loopback_host()
    command = sipp_command(
        switch, tmp_path, scenario, host, free_port(host), "-s", callee, *AS_CALLER
    )
    return sipp.run(command, tmp_path, SIPP_LIMIT + 15)


def assert_one_success(tmp_path: Path, scenario: str) -> None:
    assert sipp.call_counts(tmp_path, scenario) == (1, 0)


def wait_uas(process: subprocess.Popen[bytes]) -> int:
    return sipp.exit_status(process, SIPP_LIMIT)


def wait_call_line(switch: RunningElement, timeout: float = 5.0) -> dict[str, str]:
    lines = sipp.wait_for(
        lambda: sipp.call_records(switch), lambda: "no call line:\n" + switch.log_text(), timeout
    )
    assert len(lines) == 1, lines
    return lines[0]


def call_to_uas(
    switch: RunningElement,
    tmp_path: Path,
    uas_scenario: str,
    callee: tuple[str, int],
    uac_scenario: str,
    to: str = "1999",
) -> None:
    """One call from the caller (`uac_scenario`) to `to`, whose SIPp UAS (`uas_scenario`)
    listens at `callee`; asserts both SIPp runs passed."""
    with sipp_uas(switch, tmp_path, uas_scenario, *callee) as uas:
        caller = run_caller(switch, tmp_path, uac_scenario, to)
        uas_status = wait_uas(uas)
    info = sipp.diagnostics(tmp_path, switch, caller)
    assert caller.returncode == 0, info
    assert uas_status == 0, info


# --- Tests ---------------------------------------------------------------------------------


def test_answered_call_hung_up_by_the_caller(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        call_to_uas(switch, tmp_path, "call_uas.xml", (callee_host, callee_port), "call_uac.xml")
        assert_one_success(tmp_path, "call_uac.xml")
        line = wait_call_line(switch)
    assert line["result"] == "answered", line
    assert line["status"] == "200"
    assert line["from"] == f"sip:{CALLER}@{DOMAIN}"
    assert line["to"] == f"sip:1999@{DOMAIN}"
    assert float(line["duration"]) > 0.2
    assert switch.returncode == 0


def test_busy_callee_is_relayed(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        call_to_uas(
            switch, tmp_path, "call_uas_busy.xml", (callee_host, callee_port),
            "call_uac_refused.xml",
        )  # fmt: skip
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("rejected", "486"), line


@pytest.mark.parametrize(("callee", "status"), [("3999", "404"), ("1002", "480")])
def test_unknown_and_unreachable_extensions(tmp_path: Path, callee: str, status: str) -> None:
    with call_switch(tmp_path, None) as switch:
        caller = run_caller(switch, tmp_path, "call_uac_refused.xml", callee)
        assert caller.returncode == 0, sipp.diagnostics(tmp_path, switch, caller)
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("rejected", status), line
    assert line["to"] == f"sip:{callee}@{DOMAIN}:{switch.port}"


def test_cancel_while_ringing(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        call_to_uas(
            switch, tmp_path, "call_uas_ringing.xml", (callee_host, callee_port),
            "call_uac_cancel.xml",
        )  # fmt: skip
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("cancelled", "487"), line


def test_no_answer_timeout_gives_480_and_cancels_the_callee(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(
        tmp_path, f"sip:1999@{callee_host}:{callee_port}", no_answer_timeout=1
    ) as switch:
        with sipp_uas(switch, tmp_path, "call_uas_ringing.xml", callee_host, callee_port) as uas:
            started = time.monotonic()
            caller = run_caller(switch, tmp_path, "call_uac_refused.xml", "1999")
            elapsed = time.monotonic() - started
            uas_status = wait_uas(uas)
        info = sipp.diagnostics(tmp_path, switch, caller)
        assert caller.returncode == 0, info
        # The switch's CANCEL (the loop timer at the deadline) ended the callee's side.
        assert uas_status == 0, info
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("no_answer", "480"), line
    assert 1.0 <= elapsed < 10.0


def test_call_to_a_registered_callee(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, None) as switch:
        # SIPp registers 1005 from callee_host:callee_port; the binding's flow is that
        # address and port, where the SIPp UAS then listens.
        run_sipp(
            switch, tmp_path, "register.xml",
            user="1005", password="pass1005", host=callee_host, port=callee_port,
        )  # fmt: skip
        call_to_uas(
            switch, tmp_path, "call_uas.xml", (callee_host, callee_port), "call_uac.xml", to="1005"
        )
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert line["to"] == f"sip:1005@{DOMAIN}"
    assert line["target"] == f"sip:1005@{callee_host}:{callee_port}"


@contextlib.contextmanager
def drain_mid_call(switch: RunningElement, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long call from the caller to 1999, then SIGTERM to the switch once the call is
    answered; yields the caller's SIPp once the switch says it drains that call."""
    process = switch.process
    assert process is not None
    host = random_loopback_host()
    command = sipp_command(
        switch, tmp_path, "call_uac_long.xml", host, free_port(host), "-s", "1999", *AS_CALLER
    )
    # Answered 1.5 s in; the caller hangs up after 3 s of call.
    with sipp.background(command, tmp_path, "call_uac_long.xml", settle=1.5) as long_call:
        process.send_signal(signal.SIGTERM)
        sipp.wait_for(lambda: "draining 1 calls" in switch.log_text(), switch.log_text)
        yield long_call


def test_sigterm_drains_the_call_in_progress_and_refuses_new_ones(tmp_path: Path) -> None:
    """SIGTERM mid-call: a new INVITE gets 503 (RFC 3261 §21.5.4), the call in progress
    goes on to its BYE, then the switch exits 0 without a traceback."""
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        process = switch.process
        assert process is not None
        with sipp_uas(switch, tmp_path, "call_uas.xml", callee_host, callee_port) as uas:
            with drain_mid_call(switch, tmp_path) as long_call:
                refused = run_caller(switch, tmp_path, "call_uac_unavailable.xml", "1999")
                caller_status = long_call.wait(SIPP_LIMIT)
            uas_status = wait_uas(uas)
        info = sipp.diagnostics(tmp_path, switch, refused)
        assert refused.returncode == 0, info
        assert caller_status == 0, info
        assert uas_status == 0, info
        assert process.wait(10) == 0, info
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert float(line["duration"]) > 2.5
    log = switch.log_text()
    assert "drained: no call in progress" in log
    assert "Traceback" not in log
    assert switch.counters("call")["invites_refused_draining"] == 1


def test_a_second_signal_cuts_the_drain_short_without_a_traceback(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        process = switch.process
        assert process is not None
        with sipp_uas(switch, tmp_path, "call_uas.xml", callee_host, callee_port):
            with drain_mid_call(switch, tmp_path):
                started = time.monotonic()
                process.send_signal(signal.SIGINT)
                status = process.wait(10)
                elapsed = time.monotonic() - started
    log = switch.log_text()
    assert status == 0, log
    assert elapsed < 1.0, log  # before the call's BYE: the drain was cut short
    assert "stopping with 1 calls still in progress" in log
    assert "Traceback" not in log


# --- Hang-up by the callee, re-INVITE, UPDATE, INFO, OPTIONS, trunk callers --------------


def answered_call(
    tmp_path: Path, uas_scenario: str, uac_scenario: str
) -> tuple[RunningElement, dict[str, str]]:
    """One call from 1004 (`uac_scenario`) to 1999 (`uas_scenario` at its static
    contact); asserts both SIPp scenarios passed and returns the switch (stopped) and its
    one call line."""
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        call_to_uas(switch, tmp_path, uas_scenario, (callee_host, callee_port), uac_scenario)
        assert_one_success(tmp_path, uac_scenario)
        assert_one_success(tmp_path, uas_scenario)
        line = wait_call_line(switch)
    assert switch.returncode == 0, switch.log_text()
    assert "Traceback" not in switch.log_text()
    return switch, line


def test_answered_call_hung_up_by_the_callee(tmp_path: Path) -> None:
    """The callee's BYE is answered 200 on its leg and sent on the caller's (§15.1.2):
    the caller's SIPp gets a BYE of its dialog and its 200 ends the call."""
    _, line = answered_call(tmp_path, "call_uas_hangs_up.xml", "call_uac_callee_hangs_up.xml")
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert line["from"] == f"sip:{CALLER}@{DOMAIN}"
    assert line["to"] == f"sip:1999@{DOMAIN}"
    assert float(line["duration"]) > 0.2  # the callee hangs up 0.3 s after its answer


def test_hold_and_resume_by_the_caller(tmp_path: Path) -> None:
    """A re-INVITE with a=sendonly from the caller reaches the callee with that offer, the
    callee's a=recvonly answer reaches the caller, each side's ACK completes its leg; the
    same for the re-INVITE that resumes (a=sendrecv); then the caller's BYE."""
    _, line = answered_call(tmp_path, "call_uas_held.xml", "call_uac_hold.xml")
    assert (line["result"], line["status"]) == ("answered", "200"), line


def test_hold_and_resume_by_the_callee(tmp_path: Path) -> None:
    """The reverse direction: the callee's re-INVITEs (hold, then resume) reach the caller,
    whose answers and the switch's ACKs come back; then the caller's BYE."""
    _, line = answered_call(tmp_path, "call_uas_holds.xml", "call_uac_held.xml")
    assert (line["result"], line["status"]) == ("answered", "200"), line


def test_info_and_update_relayed_both_ways(tmp_path: Path) -> None:
    """INFO (RFC 6086, application/dtmf-relay) and UPDATE with an SDP offer (RFC 3311)
    from each side reach the other with their bodies; each 200 comes back (the UPDATE's
    with the answer and a Contact)."""
    _, line = answered_call(tmp_path, "call_uas_info_update.xml", "call_uac_info_update.xml")
    assert (line["result"], line["status"]) == ("answered", "200"), line


def test_options_inside_the_dialog_is_answered_by_the_switch(tmp_path: Path) -> None:
    """OPTIONS from the caller with the dialog's To tag gets the switch's own 200 with
    OPTIONS in Allow (RFC 3261 §11.2): the element consumes OPTIONS and never forwards
    it, so the callee (call_uas.xml, which fails on any unexpected request) sees none."""
    _, line = answered_call(tmp_path, "call_uas.xml", "call_uac_options.xml")
    assert (line["result"], line["status"]) == ("answered", "200"), line


TRUNK_SOURCE = "127.0.0.2"
"""The demo configuration's trusted `loadgen` trunk source address."""
TRUNK_CALLER = "0312345678"


def run_uncredentialed_caller(
    switch: RunningElement, tmp_path: Path, scenario: str, host: str
) -> subprocess.CompletedProcess[bytes]:
    """SIPp `scenario` from `host` (a free port) to 1999, with no credentials at all."""
    command = sipp_command(
        switch, tmp_path, scenario, host, free_port(host),
        "-s", "1999", "-key", "caller", TRUNK_CALLER,
    )  # fmt: skip
    return sipp.run(command, tmp_path, SIPP_LIMIT + 15)


def test_trunk_caller_is_not_challenged(tmp_path: Path) -> None:
    """An INVITE without credentials from the loadgen trunk's source address (127.0.0.2,
    any port) is routed at once: no 407 (call_uac_trunk.xml fails on one), answered,
    hung up by the caller."""
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with call_switch(tmp_path, f"sip:1999@{callee_host}:{callee_port}") as switch:
        with sipp_uas(switch, tmp_path, "call_uas.xml", callee_host, callee_port) as uas:
            caller = run_uncredentialed_caller(switch, tmp_path, "call_uac_trunk.xml", TRUNK_SOURCE)
            uas_status = wait_uas(uas)
        info = sipp.diagnostics(tmp_path, switch, caller)
        assert caller.returncode == 0, info
        assert uas_status == 0, info
        assert_one_success(tmp_path, "call_uac_trunk.xml")
        line = wait_call_line(switch)
    assert (line["result"], line["status"]) == ("answered", "200"), line
    assert line["from"] == f"sip:{TRUNK_CALLER}@{DOMAIN}"
    assert line["to"] == f"sip:1999@{DOMAIN}"
    assert line["target"] == f"sip:1999@{callee_host}:{callee_port}"
    counters = switch.counters("call")
    assert counters.get("invite_from_trunk") == 1, counters
    assert "invite_challenged" not in counters, counters


def test_same_invite_from_a_non_trunk_address_is_challenged(tmp_path: Path) -> None:
    """call_uac_trunk.xml's INVITE from another 127.x address gets 407 with a Digest
    Proxy-Authenticate (RFC 3261 §22.3), and leaves no call line (a challenge is no
    call) and nothing reaches the callee."""
    with call_switch(tmp_path, "sip:1999@127.0.0.9:5080") as switch:
        caller = run_uncredentialed_caller(
            switch, tmp_path, "call_uac_challenged.xml", random_loopback_host()
        )
        assert caller.returncode == 0, sipp.diagnostics(tmp_path, switch, caller)
        assert_one_success(tmp_path, "call_uac_challenged.xml")
    assert sipp.call_records(switch) == [], switch.log_text()
    counters = switch.counters("call")
    assert counters.get("invite_challenged") == 1, counters
    assert "invite_from_trunk" not in counters, counters
    assert "calls_started" not in counters, counters
