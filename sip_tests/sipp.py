"""SIPp and RTP plumbing shared by the black-box call tests (use it as `from . import sipp`).

Rules:
- Every SIPp run has three time limits: `timeout LIMIT` around the command (coreutils ends
  SIPp by its PID), SIPp's own `-timeout` on the scenario, and a limit on every wait of
  this module (`run`, `exit_status`, `stop`).
- A run in the background (`background`) is stopped by its own PID on the way out of its
  `with` block if it still runs: SIGTERM, then SIGKILL after a grace period. Nothing is
  killed by name.
- A run named NAME (by default its scenario's file name) keeps its files in the test's
  directory: NAME.csv (`-trace_stat`), NAME.errors.log (`-trace_err`), NAME.msg
  (`-trace_msg`) and, in the background, NAME.out (its output). `call_counts` reads the
  first; `diagnostics` gathers the error logs and outputs for a failure message.
- The switch logs one `call ended key=value ...` line per call; `call_records` parses them.
- An RTP socket of the test (`RtpSocket`) is read on a daemon thread between `start()`
  and `close()`; `receiving` does both around a `with` block.
"""

from __future__ import annotations

import contextlib
import csv
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from .conftest import SCENARIOS, RunningElement

STOP_GRACE = 10.0
"""Seconds a process has to end after SIGTERM (and then after SIGKILL)."""
POLL = 0.05
"""Seconds between two looks at the switch's log."""

Trace = Literal["stat", "err", "msg"]
_TRACES: dict[Trace, tuple[str, str, str]] = {
    "stat": ("-trace_stat", "-stf", ".csv"),
    "err": ("-trace_err", "-error_file", ".errors.log"),
    "msg": ("-trace_msg", "-message_file", ".msg"),
}
"""Trace -> SIPp's flag, its file option and the file's suffix after the run's name."""

T = TypeVar("T")
R = TypeVar("R", bound="RtpSocket")


# --- SIPp runs ---------------------------------------------------------------------------


def binary() -> str:
    """The `sipp` on PATH; fails the test (not skips it) when there is none."""
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is not installed: run `make test`, which installs sip-tester")
    return path


def command(
    switch: RunningElement,
    directory: Path,
    scenario: str,
    host: str,
    port: int,
    *extra: str,
    limit: int,
    name: str | None = None,
    calls: int | None = 1,
    traces: tuple[Trace, ...] = ("stat", "err"),
    scenario_timeout: str = "20s",
) -> list[str]:
    """`timeout LIMIT sipp SWITCH -sf SCENARIO ...` from `host`:`port`, then `extra`.

    `calls` is SIPp's `-m` (None: `extra` says it, or nothing does); each trace in
    `traces` goes to DIRECTORY/NAME plus its suffix (see the module's rules).
    """
    stem = directory / (name or scenario)
    arguments = ["timeout", str(limit), binary(), switch.sip_argument]
    arguments += ["-sf", str(SCENARIOS / scenario)]
    if calls is not None:
        arguments += ["-m", str(calls)]
    arguments += ["-i", host, "-p", str(port), "-nostdin"]
    for trace in traces:
        flag, option, suffix = _TRACES[trace]
        arguments += [flag, option, f"{stem}{suffix}"]
    return [*arguments, "-timeout", scenario_timeout, *extra]


def run(
    arguments: list[str], directory: Path, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """`arguments` run to their end in `directory` (output captured), `timeout` s at most."""
    return subprocess.run(
        arguments, cwd=directory, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )


@contextlib.contextmanager
def background(
    arguments: list[str],
    directory: Path,
    name: str,
    *,
    settle: float = 0.0,
    grace: float = STOP_GRACE,
) -> Iterator[subprocess.Popen[bytes]]:
    """`arguments` started in `directory`, output to DIRECTORY/NAME.out; yields the process
    after `settle` seconds (time for a SIPp UAS to bind its socket before the first INVITE
    can reach it) and stops it by its PID on the way out if it still runs."""
    with (directory / f"{name}.out").open("wb") as output:
        process = subprocess.Popen(
            arguments, cwd=directory, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            time.sleep(settle)
            yield process
        finally:
            stop(process, grace)


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM to the process's PID if it still runs; SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def exit_status(process: subprocess.Popen[bytes], limit: float) -> int:
    """The process's exit status, or -1 if it still runs after `limit` seconds."""
    try:
        return process.wait(limit)
    except subprocess.TimeoutExpired:
        return -1


def call_counts(directory: Path, name: str) -> tuple[int, int]:
    """(SuccessfulCall, FailedCall) at the end of run NAME, from its `-trace_stat` file."""
    with (directory / f"{name}.csv").open(encoding="utf-8") as statistics:
        rows = list(csv.reader(statistics, delimiter=";"))
    header, last = rows[0], rows[-1]
    return int(last[header.index("SuccessfulCall(C)")]), int(last[header.index("FailedCall(C)")])


def diagnostics(directory: Path, switch: RunningElement, *results: object) -> str:
    """For a failure message: the tail of each result, of every SIPp error log and output
    in `directory`, and of the switch's log."""
    parts = [repr(result)[-2000:] for result in results]
    for path in sorted(directory.glob("*.errors.log")) + sorted(directory.glob("*.out")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}")
    parts.append("--- switch\n" + switch.log_text()[-4000:])
    return "\n".join(parts)


# --- The switch's call log ---------------------------------------------------------------

CALL_ENDED = "call ended "


def call_ended_lines(switch: RunningElement) -> list[str]:
    """The switch's `call ended ...` log lines, oldest first."""
    return [line for line in switch.log_text().splitlines() if CALL_ENDED in line]


def call_records(switch: RunningElement) -> list[dict[str, str]]:
    """The `call ended` lines as dictionaries of their `key=value` fields."""
    return [
        dict(re.findall(r"(\w+)=(\S*)", line.split(CALL_ENDED, 1)[1]))
        for line in call_ended_lines(switch)
    ]


def wait_for(find: Callable[[], T], failure: Callable[[], str], timeout: float = 5.0) -> T:
    """`find()` every 50 ms until it returns something true, which is returned; after
    `timeout` seconds an AssertionError with `failure()`."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(failure())
        time.sleep(POLL)


# --- RTP sockets of the test -------------------------------------------------------------


def is_rtp(data: bytes) -> bool:
    """RFC 3550 §5.1: at least the 12-byte fixed header, version 2."""
    return len(data) >= 12 and data[0] >> 6 == 2


class RtpSocket:
    """A UDP socket of the test on a free port of `host`, read on a daemon thread.

    Subclasses handle each datagram in `received` and may end the thread from `idle`,
    called whenever `poll` seconds pass without one. The thread runs from `start()` to
    `close()` (see `receiving`), so a subclass sets its state after `__init__`.
    """

    poll = 0.2

    def __init__(self, host: str) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((host, 0))
        self.socket.settimeout(self.poll)
        self.port = int(self.socket.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(STOP_GRACE)
        self.socket.close()

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        """One datagram, on the thread."""

    def idle(self) -> bool:
        """`poll` seconds without a datagram, on the thread; True ends the thread."""
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.socket.recvfrom(2048)
            except TimeoutError:
                if self.idle():
                    return
                continue
            self.received(data, source)


class RtpSink(RtpSocket):
    """Where a caller's SDP points: keeps the payload type of every RTP packet received."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.payload_types: list[int] = []

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        if is_rtp(data):
            self.payload_types.append(data[1] & 0x7F)


@contextlib.contextmanager
def receiving(receiver: R) -> Iterator[R]:
    """`receiver` read on its thread for the `with` block, closed on the way out."""
    try:
        receiver.start()
        yield receiver
    finally:
        receiver.close()
