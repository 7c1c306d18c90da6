"""Black-box harness: run `python -m softswitch run` as a real process on loopback.

Rules:
- Every process is started with a time limit on its start-up and is stopped by its own
  PID in a fixture's `finally` (SIGTERM, then SIGKILL after a grace period); nothing is
  killed by name.
- Ports are free ports found by binding port 0 (for UDP and TCP at once where a SIP
  element needs both); all traffic stays on 127.0.0.0/8.
- The element's log goes to a file in the test's temporary directory, so a test can read
  it after the process has stopped and a failure shows it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloudpbx.testing.fixtures import (  # noqa: F401  (fixture, registered by import)
    mosquitto_broker_fixture,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LISTENING_MARK = "softswitch listening on"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for both UDP and TCP right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError as error:
                    if error.errno == errno.EADDRINUSE:
                        continue
                    raise
                return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")


def python_command(*arguments: str) -> tuple[list[str], dict[str, str]]:
    """`python -m softswitch ARGUMENTS` and an environment that finds the package."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    return [sys.executable, "-m", "softswitch", *arguments], environment


def random_loopback_host() -> str:
    """A random 127.x.y.z that is not 127.0.0.1 (the element's address)."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(2, 254)}"


@dataclass
class RunningElement:
    """One `python -m softswitch run` process."""

    host: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    arguments: list[str] = field(default_factory=list)
    options: tuple[str, ...] = ()
    """Extra `run` options, e.g. `--config configs/demo.yaml --data-dir DIR`."""

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def sip_argument(self) -> str:
        """`--sip` as the command wants it: IPv6 in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> None:
        self.arguments, environment = python_command(
            "run", "--sip", self.sip_argument, "--log-level", "INFO", *self.options
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.arguments,
                cwd=REPO_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while LISTENING_MARK not in self.log_text():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"softswitch exited with {self.process.returncode} at start:\n"
                    + self.log_text()
                )
            if time.monotonic() > deadline:
                raise AssertionError("softswitch did not start in time:\n" + self.log_text())
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, wait, SIGKILL if need be; returns the exit status."""
        process = self.process
        if process is None:
            raise AssertionError("not started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        self.returncode = process.returncode
        return process.returncode

    def counters(self, kind: str) -> dict[str, int]:
        """The `<kind> counters: a=1 b=2` line logged at shutdown."""
        mark = f"{kind} counters: "
        for line in self.log_text().splitlines():
            if mark in line:
                text = line.split(mark, 1)[1].strip()
                if text == "none":
                    return {}
                return {
                    name: int(value)
                    for name, _, value in (item.partition("=") for item in text.split())
                }
        raise AssertionError(f"no {kind} counters in the log:\n{self.log_text()}")


@contextlib.contextmanager
def running(
    host: str, log_path: Path, options: tuple[str, ...] = ()
) -> Iterator[RunningElement]:
    """A started element on a free port of `host`, stopped by PID on the way out."""
    element = RunningElement(host, free_port(host), log_path, options=options)
    try:
        element.start()
        yield element
    finally:
        if element.process is not None:
            element.stop()


@pytest.fixture
def running_element(tmp_path: Path) -> Iterator[RunningElement]:
    with running("127.0.0.1", tmp_path / "softswitch.log") as element:
        yield element
