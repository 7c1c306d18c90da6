"""Run and drive one headless baresip instance (Debian `baresip-core`) on loopback.

Recipe: `../shared/docs/SOFTPHONES.md`. Each instance gets its own config folder, its own
127.x.y.z address for SIP, RTP and the `ctrl_tcp` control socket, and `aubridge` as its
audio player (no sound card). The audio SOURCE is `aufile` playing a generated 8 kHz
tone: with `aubridge` as the source too (the SOFTPHONES.md recipe), baresip 1.0.0's
CALLER sends no RTP at all (its TX packet counter stays 0, also on a direct
baresip-to-baresip call without the switch), so only one direction would flow.
Control is netstring-framed JSON over TCP (`LEN:{json},`): commands get a
`{"response":true,...}` answer carrying the same token, events arrive as
`{"event":true,"type":...}`. The process is stopped by its PID (`quit`, then SIGTERM,
then SIGKILL), never by name.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import struct
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MODULE_PATH = "/usr/lib/baresip/modules"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
TONE_SECONDS = 30


def baresip_binary() -> str:
    binary = shutil.which("baresip")
    if binary is None:
        pytest.fail("baresip is not installed: run `make test`, which installs baresip-core")
    return binary


def write_tone(path: Path, seconds: int = TONE_SECONDS, hertz: int = 440) -> None:
    """A mono 16-bit 8 kHz sine WAV: what the phone sends (G.711 needs no resampling)."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hertz * index / rate)))
        for index in range(rate * seconds)
    )
    with wave.open(str(path), "wb") as output:
        output.setnchannels(1)
        output.setsampwidth(2)
        output.setframerate(rate)
        output.writeframes(frames)


@dataclass
class Baresip:
    """One baresip process: write its config, start it, send commands, read events."""

    name: str
    directory: Path
    host: str
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    account: str
    """The `accounts` line, e.g. `<sip:1001@127.0.0.1:5060>;auth_pass=...;regint=300`
    (the `uanew` parameter instead with `mwi.so`, see `app_modules`)."""
    audio_source: str | None = None
    """`audio_source` value; default `aufile,<directory>/tone.wav` (written at start)."""
    app_modules: tuple[str, ...] = ()
    """Extra `module_app` lines, e.g. `("mwi.so",)`: with `;mwi=yes` on the account it
    SUBSCRIBEs to the account's message-summary once registered (RFC 3842) and logs each
    NOTIFY body (`mwi_bodies`). With `mwi.so` the account is created over the control
    socket (`uanew`) once baresip runs, not from the `accounts` file: baresip 1.0.0's
    mwi module re-subscribes its list from a timer started 1 ms after it loads, and
    that loop appends to the list it walks, so when the REGISTER's 200 comes before that
    timer (a busy machine) it subscribes in a tight loop forever and never answers the
    control socket again. Created later, the account registers after the timer ran."""
    process: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _socket: socket.socket | None = None
    _buffer: bytes = b""
    _token: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / "baresip.log"

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        device = f"aubridge,{self.name}"
        source = self.audio_source
        if source is None:
            tone = self.directory / "tone.wav"
            write_tone(tone)
            source = f"aufile,{tone}"
        lines = [
            f"sip_listen {self.host}:{self.sip_port}",
            f"net_interface {self.host}",
            f"audio_player {device}",
            f"audio_source {source}",
            # The alert (ring) player gets its own bridge device, apart from the call's.
            f"audio_alert {device}-alert",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aubridge.so",
            "module aufile.so",
            "module ctrl_tcp.so",
            "module_app account.so",
            "module_app menu.so",
            *(f"module_app {module}" for module in self.app_modules),
            f"ctrl_tcp_listen {self.host}:{self.ctrl_port}",
        ]
        (self.directory / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")
        account = "" if self._account_by_command else self.account
        (self.directory / "accounts").write_text(account + "\n", encoding="utf-8")

    @property
    def _account_by_command(self) -> bool:
        """The account is made with `uanew` after start-up (see `app_modules`)."""
        return "mwi.so" in self.app_modules

    def start(self) -> None:
        self.write_config()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [baresip_binary(), "-f", str(self.directory)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"baresip {self.name} exited with {self.process.returncode}:\n"
                    + self.log_text()
                )
            try:
                self._socket = socket.create_connection((self.host, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"baresip {self.name} control port did not open:\n" + self.log_text()
                    ) from None
                time.sleep(0.05)
        if self._account_by_command:
            # Its answer proves the main loop runs; the REGISTER's answers come on later
            # turns of it, after the start-up timers (due at once) have run.
            self.command("reginfo")
            self.command("uanew", self.account)

    def stop(self) -> int | None:
        """`quit` over the control socket, then SIGTERM / SIGKILL by PID."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None and self._socket is not None:
            try:
                self._send({"command": "quit", "params": "", "token": "quit"})
            except OSError:
                pass
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        return process.returncode

    # --- control protocol -------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        assert self._socket is not None, "not started"
        data = json.dumps(message).encode()
        self._socket.sendall(str(len(data)).encode() + b":" + data + b",")

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        """The next netstring message, or None at the deadline."""
        assert self._socket is not None, "not started"
        while True:
            colon = self._buffer.find(b":")
            if colon > 0:
                length = int(self._buffer[:colon])
                end = colon + 1 + length
                if len(self._buffer) > end:
                    payload = self._buffer[colon + 1 : end]
                    self._buffer = self._buffer[end + 1 :]  # drop the trailing ","
                    message: dict[str, Any] = json.loads(payload)
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._socket.settimeout(remaining)
            try:
                chunk = self._socket.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise AssertionError(f"baresip {self.name} closed its control socket")
            self._buffer += chunk

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        """Send a command and return its `data` text; events read meanwhile are kept."""
        self._token += 1
        token = f"{self.name}-{self._token}"
        self._send({"command": command, "params": params, "token": token})
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message is None:
                raise AssertionError(f"baresip {self.name}: no answer to {command!r}")
            if message.get("event"):
                self.events.append(message)
            elif message.get("response") and message.get("token") == token:
                if not message.get("ok", False):
                    raise AssertionError(f"baresip {self.name}: {command!r} failed: {message}")
                return str(message.get("data", ""))

    def wait_event(self, event_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first event of `event_type` (already received or arriving in time)."""
        for event in self.events:
            if event.get("type") == event_type:
                self.events.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message is None:
                raise AssertionError(
                    f"baresip {self.name}: no {event_type} within {timeout} s; events so far "
                    f"{self.events}\n" + self.log_text()
                )
            if message.get("event"):
                if message.get("type") == event_type:
                    return message
                self.events.append(message)

    def rtp_counters(self) -> tuple[int, int]:
        """(packets sent, packets received) on the current call's audio stream.

        Read from `audio_debug`: the RTCP session's `TX: packets=N` and the sum of the
        `rcvd=N` of its members (the remote sources heard).
        """
        text = self.command("audio_debug")
        sent = re.search(r"TX: packets=(\d+)", text)
        received = [int(value) for value in re.findall(r"rcvd=(\d+)", text)]
        if sent is None:
            raise AssertionError(f"baresip {self.name}: no RTP counters in:\n{text}")
        return int(sent.group(1)), sum(received)

    def wait_registered(self, timeout: float = 10.0) -> str:
        """Poll `reginfo` until the account shows `OK`; returns the last answer."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.command("reginfo")
            if "OK" in text:
                return text
            if "ERR" in text:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"baresip {self.name} did not register (limit {timeout} s):\n{text}\n" + self.log_text()
        )

    def send_digits(self, digits: str) -> None:
        """Press `digits` on the current call (`sndcode`: each key pressed and released);
        baresip sends them as RFC 4733 telephone-events when the answer kept the
        offered `telephone-event/8000` payload type."""
        self.command("sndcode", digits)

    def mwi_bodies(self) -> list[str]:
        """The message-summary bodies of the NOTIFYs received so far, oldest first, as
        baresip 1.0.0 logs them (`----- MWI for <aor> -----`, the body, a blank line).
        The log keeps every NOTIFY, whenever it came; the control socket only passes on
        events while it is connected."""
        bodies = []
        for block in self.log_text().split("----- MWI for ")[1:]:
            _, _, rest = block.partition("\n")
            bodies.append(rest.split("\n\n", 1)[0].strip())
        return bodies

    def wait_mwi(self, *needles: str, after: int = 0, timeout: float = 10.0) -> int:
        """Wait for a NOTIFY body holding every needle among those after the first
        `after`; returns the number of bodies up to and including it."""
        deadline = time.monotonic() + timeout
        while True:
            bodies = self.mwi_bodies()
            for index in range(after, len(bodies)):
                if all(needle in bodies[index] for needle in needles):
                    return index + 1
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"baresip {self.name}: no MWI NOTIFY with {needles} after the first "
                    f"{after} within {timeout} s; bodies: {bodies}\n" + self.log_text()
                )
            time.sleep(0.05)
