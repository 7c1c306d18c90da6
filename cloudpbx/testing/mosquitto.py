"""A throwaway Mosquitto MQTT broker for the test suites (issue 4 part 4).

Rules:
- The broker is the Debian one (`make debian-packages` installs `mosquitto`), found on
  $PATH or in /usr/sbin; nothing else on the machine is touched (no system service).
- Each broker gets a fresh temporary directory holding its configuration (one listener
  on 127.0.0.1 at a port that was free a moment before, anonymous clients allowed, no
  persistence) and its log (the broker logs to stderr, which goes to that file).
- `start()` returns once the broker accepts TCP connections (bounded wait); a broker
  that exits or does not accept in time raises `MosquittoUnavailable` with its log, so
  the MQTT tests FAIL rather than being skipped.
- Stopping is by the PID of the process we started: SIGTERM, then SIGKILL after a grace
  period; never by process name. `stop()` then `start()` again restarts the broker on
  the same port (the tests of reconnection do so).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MosquittoBroker",
    "MosquittoUnavailable",
    "find_mosquitto",
    "free_tcp_port",
    "running_broker",
]

START_DEADLINE = 10.0
"""Seconds for the broker to accept its first connection."""
STOP_GRACE = 5.0
"""Seconds a SIGTERM gets before SIGKILL."""


class MosquittoUnavailable(RuntimeError):
    """No throwaway broker could be had; the message says why."""


def find_mosquitto() -> str:
    """The `mosquitto` executable.

    Raises:
        MosquittoUnavailable: the Debian package `mosquitto` is not installed.
    """
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found is None:
        raise MosquittoUnavailable(
            "no `mosquitto` executable: install the Debian package `mosquitto` "
            "(`make debian-packages` does)"
        )
    return found


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class MosquittoBroker:
    """One broker on 127.0.0.1; `MosquittoBroker.create()` then `start()`."""

    port: int
    directory: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, port: int | None = None) -> MosquittoBroker:
        """A broker (not started yet) on `port` (default: a free one)."""
        find_mosquitto()
        directory = Path(tempfile.mkdtemp(prefix="softswitch-mosquitto-"))
        return cls(port if port is not None else free_tcp_port(), directory)

    @property
    def address(self) -> str:
        """`HOST:PORT`, as the `--mqtt` options take it."""
        return f"{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no broker log)"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections.

        Raises:
            MosquittoUnavailable: it exited or did not accept in time (with its log).
        """
        if self.running:
            raise RuntimeError("the broker is running already")
        self.config_file.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_file)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise MosquittoUnavailable(
                    f"mosquitto exited with {self.process.returncode} at start:\n"
                    + self.log_text()
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise MosquittoUnavailable(
                        f"mosquitto did not accept on {self.address} within "
                        f"{START_DEADLINE:.0f} s: {error}\n{self.log_text()}"
                    ) from error
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker by its PID (SIGTERM, then SIGKILL); idempotent, never raises."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(STOP_GRACE)
        self.process = None

    def remove(self) -> None:
        """Stop the broker and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def running_broker(port: int | None = None) -> Iterator[MosquittoBroker]:
    """A started broker for the block, stopped and removed afterwards."""
    broker = MosquittoBroker.create(port)
    try:
        broker.start()
        yield broker
    finally:
        broker.remove()
