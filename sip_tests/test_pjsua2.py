"""A call between two pjsua2 accounts (pjsip 2.14.1) through the real switch.

`sip_tests/pjsua.py` runs in a child process inside a private network and PID namespace
(`unshare --net --pid`: only `lo`, so every packet is on 127.0.0.0/8; the module
docstring says why pjsua2 needs this). There it starts `python -m softswitch run` with a
copy of `configs/demo.yaml` (conftest's `running`), creates one pjsua2 Endpoint (null
audio device, pjsip's own worker thread, log level 5 to a file) with two UDP transports on
their own 127.x.y.z addresses, and registers 1003 and 1002, both offered SHA-256 first,
then MD5 (RFC 8760). 1003 calls 1002, 1002 answers 200 at once.

Proven here:
- both REGISTERs end in 200; the call is CONFIRMED on both sides and DISCONNECTED on both
  after 1003 hangs up; the switch logs one `call ended ... result=answered status=200`;
- RTP flows both ways directly between the phones (their SDP carries 127.0.0.1): each side
  hears the other's RFC 4733 digits (RTP telephone-events on the negotiated audio
  session), and during one second of the established call, with no SIP traffic, the
  namespace received at least RTP_DATAGRAMS UDP datagrams (about 100 in practice: 20 ms
  frames both ways plus RTCP; VAD off). The binding has no `Call.getStreamStat`, so
  pjsua2's own packet counters cannot be read;
- the switch challenged every REGISTER and the INVITE with SHA-256 first, then MD5.

Found: pjsip 2.14.1 as bundled in `pjsua2-pybind11==0.1a3` does NOT answer SHA-256. It
logs `Unsupported digest algorithm "SHA-256"`, skips that challenge and answers the MD5
one, for REGISTER (`Authorization`) and INVITE (`Proxy-Authorization`) alike, so the test
asserts MD5. Unlike libre under baresip 1.0.0 it does not fail when SHA-256 is offered
first: it falls back cleanly, which is the RFC 8760 behaviour the switch relies on. (The
wheel's libpjsip exports `pjsip_auth_create_digestSHA256` but links no OpenSSL, and 2.14's
client-side SHA-256 appears to need it.) A client that really answers SHA-256 is still to
be found; this test will fail, and should then be updated, if a newer pjsip starts using
it. Also seen: pjsip sends `nc=00000002` on its first credential for a nonce (the skipped
SHA-256 challenge with the same nonce counted once); the switch accepts it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT, RunningElement, python_command

DRIVER_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
RTP_DATAGRAMS = 50  # of about 100 expected in the one-second window
PJSIP_VERSION = "2.14.1"


def namespace_command(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """`python -m sip_tests.pjsua` in new network and PID namespaces.

    `--kill-child` plus the PID namespace: if unshare dies, the driver (PID 1 inside)
    gets SIGKILL and the kernel then kills the switch it started, so nothing outlives it.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("`unshare` (util-linux) is needed to give pjsua2 a loopback-only network")
    command, environment = python_command()
    python = command[0]
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [
        unshare,
        *user,
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        python,
        "-m",
        "sip_tests.pjsua",
        "--workdir",
        str(workdir),
    ], environment


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the driver (unshare ignores it), then SIGKILL to unshare if need be.

    The driver is unshare's only child; its SIGTERM handler unwinds the scenario, so the
    switch is stopped and a result with the error is still written. SIGKILL to unshare
    takes everything in the namespaces down with it (see namespace_command).
    """
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    with contextlib.suppress(OSError, ValueError):
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def run_driver(workdir: Path) -> tuple[dict[str, Any], str]:
    """Run the driver to completion (stopped by its PID at the time limit)."""
    command, environment = namespace_command(workdir)
    output_path = workdir / "driver.out"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        timed_out = False
        try:
            process.wait(DRIVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(process)
    text = output_path.read_text(encoding="utf-8", errors="replace")
    if timed_out:
        text += f"\n(stopped: no result within {DRIVER_TIMEOUT} s)"
    result_path = workdir / "result.json"
    if not result_path.exists():
        pytest.fail(
            f"the pjsua2 driver wrote no result (exit status {process.returncode}):\n{text}"
        )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    return result, text


def test_pjsua2_call_through_the_switch(tmp_path: Path) -> None:
    if importlib.util.find_spec("pjsua2") is None:
        pytest.fail("pjsua2 is not installed: `.venv/bin/pip install -e '.[test]'`")

    result, output = run_driver(tmp_path)
    switch_log = tmp_path / "softswitch.log"
    context = (
        f"result: {json.dumps(result, indent=1)}\ndriver output:\n{output[-4000:]}\n"
        f"switch log:\n{switch_log.read_text() if switch_log.exists() else '(none)'}"
    )
    assert result["error"] == "" and result["callback_errors"] == [], context
    assert result["pjsip_version"] == PJSIP_VERSION, context

    # Registration, then the call's life on both sides.
    assert result["registrations"]["1003"][:1] == [200], context
    assert result["registrations"]["1002"][:1] == [200], context
    for name in ("caller-1003", "callee-1002"):
        states: list[str] = result["call_states"][name]
        assert "CONFIRMED" in states and states[-1] == "DISCONNECTED", context
        assert states.index("CONFIRMED") < states.index("DISCONNECTED"), context

    # RTP both ways, on loopback only.
    assert result["dtmf_received"] == {"callee-1002": "123", "caller-1003": "456"}, context
    assert result["udp_datagrams_in_window"] >= RTP_DATAGRAMS, context
    addresses: list[str] = result["sdp_connection_addresses"]
    assert addresses and all(address.startswith("127.") for address in addresses), context

    # Digest: offered SHA-256 then MD5 every time; pjsip answered MD5 every time.
    challenges: list[dict[str, Any]] = result["challenges"]
    assert {(c["method"], c["header"]) for c in challenges} == {
        ("REGISTER", "www-authenticate"),
        ("INVITE", "proxy-authenticate"),
    }, context
    assert all(c["algorithms"] == ["SHA-256", "MD5"] for c in challenges), context
    used = {(c["method"], c["username"], c["algorithm"]) for c in result["credentials"]}
    assert used == {
        ("REGISTER", "1003", "MD5"),
        ("REGISTER", "1002", "MD5"),
        ("INVITE", "1003", "MD5"),
    }, context
    assert "SHA-256" in result["unsupported_algorithms"], context

    # The switch's view of the same call.
    lines = [line for line in switch_log.read_text().splitlines() if "call ended" in line]
    assert len(lines) == 1, context
    assert "from=sip:1003@" in lines[0] and "to=sip:1002@" in lines[0], lines[0]
    assert "result=answered" in lines[0] and "status=200" in lines[0], lines[0]
    counts = RunningElement("127.0.0.1", 0, switch_log).counters("registrar")
    assert counts.get("register_ok", 0) >= 2 and counts.get("auth_failed", 0) == 0, counts
