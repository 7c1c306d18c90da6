"""Drive pjsua2 (PyPI `pjsua2-pybind11==0.1a3`, pjsip 2.14.1) against the running switch.

Run as `python -m sip_tests.pjsua --workdir DIR` INSIDE a private network namespace that
has only `lo` (`sip_tests/test_pjsua2.py` starts it under `unshare --net --pid`); it
starts the switch there itself, drives one call with two pjsua2 accounts in one
Endpoint, and writes what it observed to `DIR/result.json` (the test asserts on it).
Why a namespace and a child process:

- The binding has no media account settings (`AccountConfig` lacks `mediaConfig`), so the
  RTP address pjsua puts in its SDP is `pj_gethostip()`: the address of the default-route
  interface (e.g. 192.0.2.2), not loopback. A rewrite in `onCallSdpCreated` does not take
  (pybind11 hands the callback a copy of the parameter), and `CallOpParam.sdp` is
  ignored by `makeCall`. In a namespace with only `lo` pjsip falls back to 127.0.0.1, so
  every SIP, RTP and RTCP packet provably stays on 127.0.0.0/8, and the RTP ports pjsua
  always binds on 0.0.0.0 (4000 and up, not configurable here) cannot collide with
  anything else on the machine.
- A pjsip assertion aborts the whole process; in a child it cannot take pytest down.
  With a PID namespace, the kernel kills everything inside (the switch too) when the
  driver dies, whatever way it dies.
- One `libCreate` per process.

The binding has no `libHandleEvents` and no `Call.getStreamStat`: pjsip runs one worker
thread (`threadCnt=1`, `mainThreadOnly=False`); the callbacks (on that thread) record
into a `threading.Condition` that the main thread waits on, always with a deadline (the
callee's also answers 200 at once), and the main thread calls `makeCall`, `dialDtmf` and
`hangup` itself (pjsua's API is thread-safe; no deadlock seen). RTP is
proven instead by RFC 4733 telephone-events (RTP packets of the negotiated audio
session): each side sends three digits and the other side's `onDtmfDigit` must report
them, plus the namespace's own UDP datagram counter (`/proc/net/snmp`, per namespace)
over one second of the established call (SIP is quiet then, bar a late ACK).
Which digest algorithm pjsip answered with is read from its level-5 log (every SIP message
it sent and received).
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pjsua2 as pj

from .conftest import REPO_ROOT, free_port, random_loopback_host, running

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DOMAIN = "127.0.0.1"
RESULT_FILE = "result.json"
PJSUA_LOG = "pjsua.log"
SWITCH_LOG = "softswitch.log"

CALLER = "1003"  # demo: SHA-256, then MD5
CALLEE = "1002"  # demo: SHA-256, then MD5
CALLER_DIGITS = "123"
CALLEE_DIGITS = "456"

WAIT = 10.0  # the deadline of every wait below
QUIET_WINDOW = 1.0  # seconds of the established call over which UDP datagrams are counted

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class WaitTimeout(AssertionError):
    pass


@dataclass
class Result:
    """What the driver saw; written as JSON for the test."""

    pjsip_version: str = ""
    registrations: dict[str, list[int]] = field(default_factory=dict)
    call_states: dict[str, list[str]] = field(default_factory=dict)
    dtmf_received: dict[str, str] = field(default_factory=dict)
    udp_datagrams_in_window: int | None = None
    sdp_connection_addresses: list[str] = field(default_factory=list)
    challenges: list[dict[str, Any]] = field(default_factory=list)
    """Per challenge pjsip received: method, header, the algorithms offered in order."""
    credentials: list[dict[str, str]] = field(default_factory=list)
    """Every Authorization / Proxy-Authorization pjsip sent: method, username, algorithm."""
    unsupported_algorithms: list[str] = field(default_factory=list)
    """pjsip's own `Unsupported digest algorithm "X"` log lines."""
    callback_errors: list[str] = field(default_factory=list)
    error: str = ""


class Recorder:
    """Thread-safe store that pjsip's thread writes and the main thread waits on."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.condition = threading.Condition()

    def update(self, change: Callable[[Result], object]) -> None:
        with self.condition:
            change(self.result)
            self.condition.notify_all()

    def error(self, where: str) -> None:
        text = f"{where}: {traceback.format_exc()}"
        self.update(lambda result: result.callback_errors.append(text))

    def wait(self, predicate: Callable[[Result], bool], what: str, timeout: float = WAIT) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: predicate(self.result), timeout):
                raise WaitTimeout(f"{what}: not within {timeout} s")


class Phone(pj.Account):
    """One extension; as callee it answers every call with 200 at once."""

    def __init__(self, extension: str, recorder: Recorder) -> None:
        super().__init__()
        self.extension = extension
        self.recorder = recorder
        self.calls: list[PhoneCall] = []
        recorder.update(lambda result: result.registrations.setdefault(extension, []))

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        # Every callback body catches everything: an exception escaping into pjsip's thread
        # can abort or hang the process.
        try:
            code = int(prm.code)
            self.recorder.update(lambda result: result.registrations[self.extension].append(code))
        except BaseException:
            self.recorder.error(f"onRegState {self.extension}")

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            call = PhoneCall(self, f"callee-{self.extension}", self.recorder, prm.callId)
            self.calls.append(call)
            answer = pj.CallOpParam()
            answer.statusCode = pj.StatusCode.OK
            call.answer(answer)
        except BaseException:
            self.recorder.error(f"onIncomingCall {self.extension}")


class PhoneCall(pj.Call):
    """Records its states and the DTMF digits it hears; wires its audio like a phone."""

    def __init__(self, account: Phone, name: str, recorder: Recorder, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.name = name
        self.recorder = recorder
        recorder.update(lambda result: result.call_states.setdefault(name, []))
        recorder.update(lambda result: result.dtmf_received.setdefault(name, ""))

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            state = self.info.state.name
            self.recorder.update(lambda result: result.call_states[self.name].append(state))
        except BaseException:
            self.recorder.error(f"onCallState {self.name}")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            audio = self.getAudioMedia(-1)
            devices = pj.Endpoint.instance().audDevManager
            audio.startTransmit(devices.playbackDevMedia)
            devices.captureDevMedia.startTransmit(audio)
        except BaseException:
            self.recorder.error(f"onCallMediaState {self.name}")

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        try:
            digit = str(prm.digit)

            def add(result: Result) -> None:
                result.dtmf_received[self.name] += digit

            self.recorder.update(add)
        except BaseException:
            self.recorder.error(f"onDtmfDigit {self.name}")


def loopback_up() -> None:
    """`ip link set lo up` (a new network namespace starts with `lo` down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def udp_datagrams_received() -> int:
    """This network namespace's `Udp: InDatagrams` counter."""
    lines = [
        line.split()
        for line in Path("/proc/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]
    header, values = lines[0], lines[1]
    return int(values[header.index("InDatagrams")])


# --- the pjsua log ----------------------------------------------------------------------

MESSAGE_START = re.compile(r"\b(TX|RX) \d+ bytes (Request|Response) msg (?:\d{3}/)?([A-Z]+)/cseq")
PARAMETER = re.compile(r'(\w+)=("[^"]*"|[^,\s]+)')


def parse_log(text: str, result: Result) -> None:
    """Challenges received, credentials sent, SDP addresses, pjsip's auth complaints."""
    direction = ""
    method = ""
    in_message = False
    offered: dict[str, list[str]] = {}
    for line in text.splitlines():
        start = MESSAGE_START.search(line)
        if start is not None:
            direction, _, method = start.groups()
            in_message = True
            offered = {}
            continue
        if line.startswith("--end msg--"):
            for header, algorithms in offered.items():
                result.challenges.append(
                    {"method": method, "header": header, "algorithms": algorithms}
                )
            in_message = False
            continue
        unsupported = re.search(r'Unsupported digest algorithm "([^"]*)"', line)
        if unsupported is not None:
            result.unsupported_algorithms.append(unsupported.group(1))
        if not in_message:
            continue
        if line.startswith("c=IN IP4 "):
            result.sdp_connection_addresses.append(line.split()[-1])
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        parameters = {key: raw.strip('"') for key, raw in PARAMETER.findall(value)}
        algorithm = parameters.get("algorithm", "MD5")  # RFC 7616: absent means MD5
        if name in ("www-authenticate", "proxy-authenticate") and direction == "RX":
            offered.setdefault(name, []).append(algorithm)
        elif name in ("authorization", "proxy-authorization") and direction == "TX":
            result.credentials.append(
                {
                    "method": method,
                    "header": name,
                    "username": parameters.get("username", ""),
                    "algorithm": algorithm,
                }
            )


# --- the scenario -----------------------------------------------------------------------


def create_phone(
    endpoint: pj.Endpoint, switch_port: int, extension: str, recorder: Recorder
) -> Phone:
    host = random_loopback_host()
    transport = pj.TransportConfig()
    transport.boundAddress = host
    transport.port = free_port(host)
    transport_id = endpoint.transportCreate(pj.TransportType.UDP, transport)

    config = pj.AccountConfig()
    config.idUri = f"sip:{extension}@{DOMAIN}"
    config.regConfig.registrarUri = f"sip:{DOMAIN}:{switch_port}"
    config.regConfig.timeoutSec = 300
    config.sipConfig.transportId = transport_id
    config.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", "*", extension, 0, f"pass{extension}")
    )
    phone = Phone(extension, recorder)
    phone.create(config)
    return phone


def drive_call(phones: dict[str, Phone], switch_port: int, recorder: Recorder) -> None:
    """Register, call, exchange digits, hang up. Never raises: a failure is recorded in
    `result.error`, so no traceback keeps a Call alive past `libDestroy` (a Call destroyed
    after it trips a pjsua assertion that aborts the process)."""
    result = recorder.result
    try:
        recorder.wait(
            lambda r: all(r.registrations[ext] for ext in (CALLER, CALLEE)),
            "a final REGISTER response for each account",
        )

        caller = PhoneCall(phones[CALLER], f"caller-{CALLER}", recorder)
        phones[CALLER].calls.append(caller)
        caller.makeCall(f"sip:{CALLEE}@{DOMAIN}:{switch_port}", pj.CallOpParam(True))
        callee_name = f"callee-{CALLEE}"
        recorder.wait(
            lambda r: (
                "CONFIRMED" in r.call_states.get(caller.name, [])
                and "CONFIRMED" in r.call_states.get(callee_name, [])
            ),
            "the call CONFIRMED on both sides",
        )
        callee = phones[CALLEE].calls[0]

        before = udp_datagrams_received()
        time.sleep(QUIET_WINDOW)  # measured, not waited on: nothing else is sent now
        result.udp_datagrams_in_window = udp_datagrams_received() - before

        caller.dialDtmf(CALLER_DIGITS)
        callee.dialDtmf(CALLEE_DIGITS)
        recorder.wait(
            lambda r: (
                r.dtmf_received[callee.name] == CALLER_DIGITS
                and r.dtmf_received[caller.name] == CALLEE_DIGITS
            ),
            "RFC 4733 digits heard on both sides",
        )

        caller.hangup(pj.CallOpParam())
        recorder.wait(
            lambda r: all(
                "DISCONNECTED" in r.call_states.get(name, []) for name in (caller.name, callee.name)
            ),
            "DISCONNECTED on both sides",
        )
    except BaseException:
        result.error += traceback.format_exc()


def scenario(workdir: Path, recorder: Recorder) -> None:
    result = recorder.result
    config = workdir / "demo.yaml"
    shutil.copyfile(DEMO_CONFIG, config)
    options = ("--config", str(config), "--data-dir", str(workdir / "data"))
    with running(DOMAIN, workdir / SWITCH_LOG, options) as switch:
        endpoint = pj.Endpoint()
        endpoint.libCreate()
        phones: dict[str, Phone] = {}
        try:
            settings = pj.EpConfig()
            settings.uaConfig.threadCnt = 1  # no libHandleEvents in this binding
            settings.uaConfig.mainThreadOnly = False
            settings.uaConfig.maxCalls = 4
            settings.logConfig.level = 5  # every SIP message, for the digest algorithm
            settings.logConfig.consoleLevel = 0
            settings.logConfig.filename = str(workdir / PJSUA_LOG)
            settings.logConfig.msgLogging = 1
            settings.medConfig.noVad = True  # keep sending RTP through silence
            endpoint.libInit(settings)
            endpoint.audDevManager.setNullDev()
            result.pjsip_version = endpoint.version.full
            for extension in (CALLER, CALLEE):
                phones[extension] = create_phone(endpoint, switch.port, extension, recorder)
            endpoint.libStart()

            drive_call(phones, switch.port, recorder)
        finally:
            # Calls and accounts must be gone before libDestroy (a Call destroyed after
            # it trips a pjsua assertion); libDestroy un-REGISTERs (about 1 s).
            for phone in phones.values():
                phone.calls.clear()
            gc.collect()
            for phone in phones.values():
                phone.shutdown()
            phones.clear()
            gc.collect()
            endpoint.libDestroy()


def terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, required=True)
    arguments = parser.parse_args(argv)
    workdir: Path = arguments.workdir
    # PID 1 of a PID namespace ignores signals it has no handler for.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    result = Result()
    recorder = Recorder(result)
    try:
        loopback_up()
        if interfaces() != ["lo"]:
            raise AssertionError(f"not in a private network namespace: {interfaces()}")
        scenario(workdir, recorder)
    except BaseException:
        result.error += traceback.format_exc()
    log = workdir / PJSUA_LOG
    if log.exists():
        parse_log(log.read_text(encoding="utf-8", errors="replace"), result)
    with recorder.condition:
        data: dict[str, Any] = asdict(result)
    (workdir / RESULT_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 1 if result.error or result.callback_errors else 0


if __name__ == "__main__":
    sys.exit(main())
