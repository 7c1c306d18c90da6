"""`softswitch run --api`: the Customer Control API in the switch's own process and event
loop, and configuration changes taking effect without a restart; all over real sockets.

- One process, `softswitch run --config demo.yaml --api 127.0.0.1:PORT --sip
  127.0.0.1:PORT2`: a login over HTTP (urllib) and `GET /api/v1/me` work, and raw UDP
  OPTIONS are answered by the same process while ten logins (argon2, ~0.1 s each) run:
  every one answered (before T1, so no peer would have retransmitted), so the API's
  synchronous work stays off the SIP loop. The latencies are printed, not asserted
  (timings are benchmark figures, not test outcomes; measured here: median ~1 ms).
- Reload: extension 1009 (static contact: a SIPp UAS) is written to the store by
  `softswitch provision` of an edited demo file while the switch runs. An INVITE to 1009
  from the trusted trunk address 127.0.0.2 gets 404 before, and still 404 after the
  provisioning (the switch routes on its snapshot, never on SQL); after the operator's
  `POST /api/v1/operator/reload` the same call reaches the SIPp UAS. The time from the
  reload request to the switch's `config snapshot reloaded` log line is measured and
  printed.
- SIGTERM with a call in progress: the switch drains it (as before) and the API is
  closed at once.
- `--api` without a config store, or on an address in use: exit 2, one log line.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from . import sipp
from .conftest import (
    REPO_ROOT,
    RunningElement,
    free_port,
    python_command,
    random_loopback_host,
    running,
)
from .test_calls import (
    SIPP_LIMIT,
    assert_one_success,
    sipp_command,
    sipp_uas,
    wait_uas,
)

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DOMAIN = "127.0.0.1"
TRUNK_SOURCE = "127.0.0.2"
"""The demo configuration's trusted `loadgen` trunk source address."""
OPERATOR = ("operator", "Demo-Operator-2026!")
ADMIN = ("admin@demo", "Demo-Admin-2026!")
T1 = 0.5
"""RFC 3261 §17.1.2.2: a peer retransmits a request unanswered after T1."""
"""Seconds within which every OPTIONS must be answered while the API works."""
RELOADED = re.compile(r"config snapshot reloaded in ([0-9.]+) ms")


@contextlib.contextmanager
def switch_with_api(tmp_path: Path) -> Iterator[tuple[RunningElement, str]]:
    """The switch over the demo store with the API; yields it and the API's base URL."""
    api_port = free_port(DOMAIN)
    options = (
        "--config", str(DEMO_CONFIG), "--data-dir", str(tmp_path / "data"),
        "--api", f"{DOMAIN}:{api_port}",
    )
    with running(DOMAIN, tmp_path / "softswitch.log", options) as switch:
        yield switch, f"http://{DOMAIN}:{api_port}"


def log_in(base: str, credentials: tuple[str, str]) -> str:
    """The OAuth2 password grant (RFC 6749 §4.3.2) over HTTP; the access token."""
    form = urllib.parse.urlencode(
        {"username": credentials[0], "password": credentials[1]}
    ).encode()
    with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=10) as reply:
        assert reply.status == 200
        token = json.load(reply)["access_token"]
        assert isinstance(token, str)
        return token


def authorized(url: str, token: str, method: str = "GET") -> urllib.request.Request:
    return urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {token}"}
    )


class RawUdpPeer:
    """A UDP socket on its own loopback address that sends requests and reads answers."""

    def __init__(self, switch: RunningElement, host: str | None = None) -> None:
        self.switch = switch
        self.host = host or random_loopback_host()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((self.host, 0))
        self.port = int(self.socket.getsockname()[1])
        self.sent = 0

    def close(self) -> None:
        self.socket.close()

    def request(self, method: str, callee: str, extra: str = "") -> tuple[bytes, str]:
        """Send one request; returns its bytes and its branch."""
        self.sent += 1
        branch = f"z9hG4bK-raw{self.sent}-{time.monotonic_ns()}"
        data = (
            f"{method} sip:{callee}@{DOMAIN}:{self.switch.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:0312345678@{DOMAIN}>;tag=raw{self.sent}\r\n"
            f"To: <sip:{callee}@{DOMAIN}>\r\n"
            f"Call-ID: raw{self.sent}-{branch}@{self.host}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:0312345678@{self.host}:{self.port}>\r\n"
            f"{extra}Content-Length: 0\r\n\r\n"
        ).encode()
        self.socket.sendto(data, self.switch.address)
        return data, branch

    def final_answer(self, branch: str, timeout: float = 5.0) -> bytes:
        """The first final (>= 200) response of the transaction `branch`."""
        return self.answer(branch, rb"SIP/2\.0 [2-6]\d\d ", timeout)

    def answer(self, branch: str, status: bytes, timeout: float = 5.0) -> bytes:
        """The first response of the transaction `branch` whose start matches `status`."""
        deadline = time.monotonic() + timeout
        while True:
            self.socket.settimeout(max(0.001, deadline - time.monotonic()))
            data, _ = self.socket.recvfrom(65535)
            if branch.encode() in data and re.match(status, data):
                return data

    def options_round_trip(self) -> float:
        """Seconds from sending an OPTIONS to its 200."""
        started = time.perf_counter()
        _, branch = self.request("OPTIONS", "ping")
        answer = self.final_answer(branch, timeout=2.0)
        elapsed = time.perf_counter() - started
        assert answer.startswith(b"SIP/2.0 200 "), answer
        return elapsed

    def invite_status(self, callee: str) -> int:
        """An INVITE to `callee` (no credentials); its final status. A non-2xx is ACKed
        (RFC 3261 §17.1.1.3) so the switch stops retransmitting it."""
        data, branch = self.request("INVITE", callee)
        answer = self.final_answer(branch)
        status = int(answer.split(b" ", 2)[1])
        if status >= 300:
            to_line = re.search(rb"\r\nTo: ([^\r]*)", answer)
            assert to_line is not None
            ack = re.sub(rb"\r\nTo: [^\r]*", b"\r\nTo: " + to_line.group(1), data)
            ack = ack.replace(b"INVITE sip:", b"ACK sip:", 1).replace(b" 1 INVITE", b" 1 ACK")
            self.socket.sendto(ack, self.switch.address)
        return status


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print a measured figure in the test output, even under `pytest -q`."""
    with capsys.disabled():
        sys.stdout.write(f"\n{text}\n")


def options_during_logins(base: str, peer: RawUdpPeer) -> tuple[list[float], float]:
    """OPTIONS round trips (seconds) while ten logins run one after another on the API;
    and how long the logins took."""
    login_errors: list[BaseException] = []

    def logins() -> None:
        try:
            for _ in range(10):
                log_in(base, ADMIN)
        except BaseException as error:  # reported by the main thread
            login_errors.append(error)

    worker = threading.Thread(target=logins)
    started = time.monotonic()
    worker.start()
    round_trips: list[float] = []
    while worker.is_alive():
        round_trips.append(peer.options_round_trip())
        time.sleep(0.01)
    worker.join()
    assert login_errors == []
    return round_trips, time.monotonic() - started


def test_api_and_sip_in_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ten logins while OPTIONS go back and forth: every OPTIONS answered before T1 (a
    loop blocked by argon2 or SQL would leave them unanswered for the logins' duration,
    about a second); the latencies are printed."""
    windows: list[tuple[list[float], float]] = []
    with switch_with_api(tmp_path) as (switch, base):
        token = log_in(base, ADMIN)
        with urllib.request.urlopen(authorized(f"{base}/api/v1/me", token), timeout=10) as reply:
            assert json.load(reply)["login"] == ADMIN[0]
        peer = RawUdpPeer(switch)
        try:
            assert peer.options_round_trip() < 1.0
            windows.append(options_during_logins(base, peer))
        finally:
            peer.close()
    assert switch.returncode == 0
    log = switch.log_text()
    assert "Traceback" not in log, log
    assert log.count('"POST /api/v1/auth/token HTTP/1.1" 200') == 1 + 10 * len(windows), log
    for round_trips, logins_took in windows:
        report(
            capsys,
            f"OPTIONS during 10 API logins ({logins_took:.2f} s): {len(round_trips)} "
            f"answered, median {statistics.median(round_trips) * 1000:.1f} ms, "
            f"max {max(round_trips) * 1000:.1f} ms",
        )
        assert len(round_trips) >= 10
    assert max(windows[-1][0]) < T1, windows


def provision(tmp_path: Path, callee_host: str, callee_port: int) -> None:
    """`softswitch provision` of the demo file plus 1009 at a static contact."""
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    tenant = document["tenants"][0]
    tenant["extensions"].append(
        {
            "number": "1009",
            "site": tenant["sites"][0]["name"],
            "display_name": "static 1009",
            "static_contact_uri": f"sip:1009@{callee_host}:{callee_port}",
        }
    )
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    command, environment = python_command(
        "provision", str(path), "--data-dir", str(tmp_path / "data")
    )
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "extensions: 1 created" in completed.stdout, completed.stdout


def wait_for_reload(switch: RunningElement, seen: int, timeout: float = 5.0) -> float:
    """Wait for reload line number `seen + 1`; returns the milliseconds it logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        figures = RELOADED.findall(switch.log_text())
        if len(figures) > seen:
            return float(figures[seen])
        time.sleep(0.001)
    raise AssertionError("no reload logged:\n" + switch.log_text())


def test_a_provisioned_extension_is_routed_after_the_operator_reload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with switch_with_api(tmp_path) as (switch, base):
        trunk = RawUdpPeer(switch, TRUNK_SOURCE)
        try:
            assert trunk.invite_status("1009") == 404
            provision(tmp_path, callee_host, callee_port)
            # Written to the store, not yet in the switch's snapshot: still 404.
            assert trunk.invite_status("1009") == 404
        finally:
            trunk.close()
        token = log_in(base, OPERATOR)
        request = authorized(f"{base}/api/v1/operator/reload", token, "POST")
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
        in_process_ms = wait_for_reload(switch, 0)
        seen_after = time.perf_counter() - started
        with sipp_uas(switch, tmp_path, "call_uas.xml", callee_host, callee_port) as uas:
            command = sipp_command(
                switch, tmp_path, "call_uac_trunk.xml", TRUNK_SOURCE, free_port(TRUNK_SOURCE),
                "-s", "1009", "-key", "caller", "0312345678",
            )
            caller = sipp.run(command, tmp_path, SIPP_LIMIT + 15)
            uas_status = wait_uas(uas)
        info = sipp.diagnostics(tmp_path, switch, caller)
        assert caller.returncode == 0, info
        assert uas_status == 0, info
        assert_one_success(tmp_path, "call_uac_trunk.xml")
        lines = sipp.call_ended_lines(switch)
        assert len(lines) == 3, lines  # two 404s, then the answered call
    answered = lines[-1]
    assert "result=answered" in answered and f"target=sip:1009@{callee_host}" in answered
    assert switch.returncode == 0
    counters = switch.counters("reload")
    assert counters.get("snapshot_reloads") == 1 and "reload_failures" not in counters
    report(
        capsys,
        f"reload: {seen_after * 1000:.1f} ms from POST /api/v1/operator/reload to the "
        f"swapped snapshot in the log (in-process, notification to swap: "
        f"{in_process_ms:.1f} ms)",
    )
    assert seen_after < 1.0


def test_sigterm_drains_calls_and_closes_the_api(tmp_path: Path) -> None:
    callee_host = random_loopback_host()
    callee_port = free_port(callee_host)
    with switch_with_api(tmp_path) as (switch, base):
        provision(tmp_path, callee_host, callee_port)
        token = log_in(base, OPERATOR)
        request = authorized(f"{base}/api/v1/operator/reload", token, "POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
        wait_for_reload(switch, 0)
        # A call that rings until cancelled: the drain waits for it.
        with sipp_uas(switch, tmp_path, "call_uas_ringing.xml", callee_host, callee_port):
            trunk = RawUdpPeer(switch, TRUNK_SOURCE)
            try:
                _, branch = trunk.request("INVITE", "1009")
                trunk.answer(branch, rb"SIP/2\.0 180 ")  # the callee rings
                assert switch.process is not None
                switch.process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 5
                while "stop requested: draining 1 calls" not in switch.log_text():
                    assert time.monotonic() < deadline, switch.log_text()
                    time.sleep(0.02)
                # Draining: the switch is still running, the API already refuses.
                deadline = time.monotonic() + 5
                while True:
                    try:
                        urllib.request.urlopen(f"{base}/openapi.json", timeout=1).close()
                    except (urllib.error.URLError, ConnectionError):
                        break
                    assert time.monotonic() < deadline, "the API still answers"
                    time.sleep(0.05)
                assert switch.process.poll() is None
            finally:
                trunk.close()
            switch.process.send_signal(signal.SIGTERM)  # a second signal: stop now
            switch.process.wait(10)
    assert switch.returncode == 0
    assert "Traceback" not in switch.log_text()


def run_expecting_failure(*arguments: str) -> subprocess.CompletedProcess[str]:
    command, environment = python_command("run", *arguments)
    return subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_api_without_a_config_store_exits_2() -> None:
    completed = run_expecting_failure(
        "--sip", f"{DOMAIN}:{free_port(DOMAIN)}", "--api", f"{DOMAIN}:{free_port(DOMAIN)}"
    )
    assert completed.returncode == 2
    assert "--api: needs the config store" in completed.stderr


def test_an_api_address_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((DOMAIN, 0))
        taken.listen()
        completed = run_expecting_failure(
            "--sip", f"{DOMAIN}:{free_port(DOMAIN)}",
            "--config", str(DEMO_CONFIG), "--data-dir", str(tmp_path / "data"),
            "--api", f"{DOMAIN}:{taken.getsockname()[1]}",
        )
    assert completed.returncode == 2, completed.stderr
    assert "cannot serve the API on" in completed.stderr
    assert "Traceback" not in completed.stderr
