"""SIPp-like peers and a sans-I/O switch, for the CPU benchmark and the memory tests.

- `UacPeer` and `UasPeer` play SIPp's built-in `uac` and `uas` scenarios at the byte
  level, with the messages SIPp sends (`uac`: INVITE, 1xx, 200 -> ACK, later BYE, 200;
  `uas`: INVITE -> 180 and 200, ACK, BYE -> 200). They parse what they receive with a
  few regular expressions, not with the switch's parser, so they cannot share its bugs.
- `SansIoSwitch` is the switch's pure part wired as `softswitch run --config` wires it
  (`softswitch.wiring`: registrar, call service, element over one `SipEndpoint`), driven
  with an explicit `now`: datagrams in, datagrams out, timers run when the caller says
  time has passed. No socket, no event loop, no clock.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

import yaml

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.element import Element
from softswitch.sip.endpoint import TRYING_DELAY, EndpointConfig, SipEndpoint
from softswitch.sip.flows import Address
from softswitch.wiring import SwitchCore, build_switch_core

__all__ = [
    "CALLEE_HOST", "LOADGEN_HOST", "Lab",
    "CALLEE", "CALLER", "SWITCH", "SansIoSwitch", "UacPeer", "UasPeer", "load_bench_snapshot",
    "write_bench_config",
    "BENCH_TOLLFREE_NUMBER",
]

REPOSITORY = Path(__file__).resolve().parents[2]
LOADGEN_HOST = "127.0.0.2"  # the demo's trusted trunk source
CALLEE_HOST = "127.0.0.13"
SWITCH: Address = ("127.0.0.1", 5060)
CALLER: Address = (LOADGEN_HOST, 5061)
CALLEE: Address = (CALLEE_HOST, 5062)


BENCH_TOLLFREE_NUMBER = "0120999999"
"""The benchmark's toll-free number: one destination, reached through trunk `bench-uas`
(the SIPp uas), whole country designated, no schedule, channels far above any step."""


def write_bench_config(directory: Path, callee_port: int) -> Path:
    """The demo config plus extension 1999, whose static contact is the SIPp uas, and
    the toll-free number `BENCH_TOLLFREE_NUMBER`, whose destination is the same uas."""
    config = yaml.safe_load((REPOSITORY / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    tenant = config["tenants"][0]
    tenant["extensions"].append({
        "number": "1999",
        "site": tenant["sites"][0]["name"],
        "display_name": "benchmark callee (SIPp uas)",
        "static_contact_uri": f"sip:1999@{CALLEE_HOST}:{callee_port}",
    })
    config["trunks"].append({
        "name": "bench-uas",
        "kind": "pstn",
        "host": CALLEE_HOST,
        "port": callee_port,
        "transport": "udp",
    })
    config.setdefault("tollfree_numbers", []).append({
        "number": BENCH_TOLLFREE_NUMBER,
        "tenant": tenant["name"],
        "contracted_channels": 50_000,
        "channel_setting": 50_000,
        "options": ["distribution"],
        "destination_sets": {
            "default": [{"number": "0312349999", "weight": 1, "trunk": "bench-uas"}],
        },
    })
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def load_bench_snapshot(directory: Path) -> ConfigSnapshot:
    """Provision `write_bench_config` into a SQLite store under `directory`; its snapshot."""
    from cloudpbx.db import (
        create_engine_for,
        create_session_factory,
        database_url_for_directory,
        upgrade,
    )
    from cloudpbx.provisioning import provision
    from cloudpbx.repository import load_snapshot

    url = database_url_for_directory(str(directory / "data"))
    upgrade(url)
    engine = create_engine_for(url)
    try:
        with create_session_factory(engine)() as session:
            provision(session, write_bench_config(directory, CALLEE[1]))
            return load_snapshot(session)
    finally:
        engine.dispose()


SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
CALLER_SDP = SDP.format(host=LOADGEN_HOST)
CALLEE_SDP = SDP.format(host=CALLEE_HOST)

_HEADER = re.compile(rb"^([A-Za-z-]+)[ \t]*:[ \t]*(.*?)\r$", re.MULTILINE)


def _headers(data: bytes) -> tuple[bytes, dict[bytes, list[bytes]]]:
    head = data.split(b"\r\n\r\n", 1)[0]
    first_line = head.split(b"\r\n", 1)[0]
    headers: dict[bytes, list[bytes]] = {}
    for name, value in _HEADER.findall(head + b"\r"):
        headers.setdefault(name.lower(), []).append(value)
    return first_line, headers


class UacPeer:
    """SIPp's `uac` scenario: INVITE, (1xx), 200 -> ACK, then BYE when told, 200.

    A final response other than 200 is ACKed (RFC 3261 §17.1.1.3) and counted in
    `rejected`; `cancel(number)` cancels a call still ringing (§9.1).
    """

    def __init__(self, target: str = "1999") -> None:
        self.target = target
        """The Request-URI user: extension 1999, or `BENCH_TOLLFREE_NUMBER`."""
        self.established: deque[tuple[str, str]] = deque()  # (call number, To tag)
        self.completed = 0
        self.unexpected = 0
        self.rejected: Counter[int] = Counter()

    def invite(self, number: int) -> bytes:
        body = CALLER_SDP
        return (
            f"INVITE sip:{self.target}@{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-1-{number}-0\r\n"
            f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag=1SIPpTag00{number}\r\n"
            f"To: {self.target} <sip:{self.target}@{SWITCH[0]}:{SWITCH[1]}>\r\n"
            f"Call-ID: {number}-1@{CALLER[0]}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: sip:sipp@{CALLER[0]}:{CALLER[1]}\r\n"
            "Max-Forwards: 70\r\n"
            "Subject: Performance Test\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def _in_dialog(self, method: str, cseq: int, number: str, to_tag: str, branch: str) -> bytes:
        return (
            f"{method} sip:{self.target}@{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-1-{number}-{branch}\r\n"
            f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag=1SIPpTag00{number}\r\n"
            f"To: {self.target} <sip:{self.target}@{SWITCH[0]}:{SWITCH[1]}>;tag={to_tag}\r\n"
            f"Call-ID: {number}-1@{CALLER[0]}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: sip:sipp@{CALLER[0]}:{CALLER[1]}\r\n"
            "Max-Forwards: 70\r\n"
            "Subject: Performance Test\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def receive(self, data: bytes) -> list[bytes]:
        first_line, headers = _headers(data)
        status = int(first_line.split(b" ", 2)[1])
        cseq = headers[b"cseq"][0].decode()
        number = headers[b"call-id"][0].decode().split("-", 1)[0]
        if cseq.endswith("INVITE"):
            if status < 200:
                return []
            if status != 200:
                # §17.1.1.3: the ACK of a non-2xx has the INVITE's branch.
                self.rejected[status] += 1
                to_tag = headers[b"to"][0].decode().rsplit("tag=", 1)[1]
                return [self._in_dialog("ACK", 1, number, to_tag, "0")]
            to_tag = headers[b"to"][0].decode().rsplit("tag=", 1)[1]
            self.established.append((number, to_tag))
            return [self._in_dialog("ACK", 1, number, to_tag, "5")]
        if cseq.endswith("BYE") and status == 200:
            self.completed += 1
            return []
        if cseq.endswith("CANCEL") and status == 200:
            return []
        self.unexpected += 1
        return []

    def cancel(self, number: int) -> bytes:
        """§9.1: the CANCEL of call `number`'s INVITE (same branch, CSeq number)."""
        return (
            f"CANCEL sip:{self.target}@{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-1-{number}-0\r\n"
            f"From: sipp <sip:sipp@{CALLER[0]}:{CALLER[1]}>;tag=1SIPpTag00{number}\r\n"
            f"To: {self.target} <sip:{self.target}@{SWITCH[0]}:{SWITCH[1]}>\r\n"
            f"Call-ID: {number}-1@{CALLER[0]}\r\n"
            "CSeq: 1 CANCEL\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def hang_up_oldest(self) -> bytes:
        number, to_tag = self.established.popleft()
        return self._in_dialog("BYE", 2, number, to_tag, "7")


class UasPeer:
    """SIPp's `uas` scenario: INVITE -> 180, 200; ACK; BYE -> 200.

    `final` changes the answer: a status such as "486 Busy Here", or None to ring
    forever (then a CANCEL gets 200 and the INVITE 487, §9.2).
    """

    def __init__(self) -> None:
        self.tag = 0
        self.final: str | None = "200 OK"
        self._ringing: dict[bytes, tuple[dict[bytes, list[bytes]], bytes]] = {}

    @staticmethod
    def _response(status: str, headers: dict[bytes, list[bytes]], to: bytes,
                  body: str = "") -> bytes:
        lines = [f"SIP/2.0 {status}".encode()]
        lines += [b"Via: " + via for via in headers[b"via"]]
        lines += [b"From: " + headers[b"from"][0], b"To: " + to,
                  b"Call-ID: " + headers[b"call-id"][0], b"CSeq: " + headers[b"cseq"][0],
                  f"Contact: <sip:{CALLEE[0]}:{CALLEE[1]};transport=UDP>".encode()]
        if body:
            lines.append(b"Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}".encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body.encode()

    def receive(self, data: bytes) -> list[bytes]:
        first_line, headers = _headers(data)
        method = first_line.split(b" ", 1)[0]
        if method == b"INVITE":
            self.tag += 1
            to = headers[b"to"][0] + f";tag={self.tag}SIPpTag01".encode()
            ringing = self._response("180 Ringing", headers, to)
            if self.final is None:
                self._ringing[headers[b"call-id"][0]] = (headers, to)
                return [ringing]
            if self.final != "200 OK":
                return [ringing, self._response(self.final, headers, to)]
            return [ringing, self._response("200 OK", headers, to, CALLEE_SDP)]
        if method == b"CANCEL":
            invite_headers, to = self._ringing.pop(headers[b"call-id"][0])
            return [self._response("200 OK", headers, to),
                    self._response("487 Request Terminated", invite_headers, to)]
        if method == b"BYE":
            return [self._response("200 OK", headers, headers[b"to"][0])]
        return []  # ACK


class SansIoSwitch:
    """The switch without I/O (see the module rules)."""

    def __init__(
        self,
        snapshot: ConfigSnapshot,
        wall_clock: Callable[[], float],
        address: Address = SWITCH,
    ) -> None:
        self.endpoint = SipEndpoint(
            EndpointConfig(
                local_host=address[0], local_port=address[1], trying_delay=TRYING_DELAY
            )
        )
        self.core: SwitchCore = build_switch_core(snapshot, self.endpoint, address, wall_clock)
        self.element = Element(self.endpoint, registrar=None, calls=self.core.calls)
        self.sent: deque[tuple[bytes, Address]] = deque()
        self.records = 0

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One datagram from `source`; what the switch sends waits in `sent`."""
        self.endpoint.receive_datagram(data, source, now)
        self._pump(now)

    def next_deadline(self) -> float | None:
        deadlines = [
            deadline
            for deadline in (self.endpoint.get_timer(), self.core.calls.next_deadline())
            if deadline is not None
        ]
        return min(deadlines) if deadlines else None

    def run_timers(self, now: float) -> None:
        """Run every endpoint and call deadline due at `now`."""
        deadline = self.endpoint.get_timer()
        if deadline is not None and deadline <= now:
            self.endpoint.handle_timer(now)
        self.core.calls.handle_timer(now)
        self._pump(now)

    def _pump(self, now: float) -> None:
        endpoint = self.endpoint
        calls = self.core.calls
        while True:
            event = endpoint.next_event()
            if event is not None:
                self.element.handle_event(event, now)
                while calls.next_record() is not None:
                    self.records += 1
                continue
            outgoing = endpoint.data_to_send()
            if not outgoing:
                return
            for data, flow in outgoing:
                self.sent.append((data, flow.remote))


class Lab:
    """A `SansIoSwitch` between a `UacPeer` (the loadgen trunk) and a `UasPeer`."""

    def __init__(self, switch: SansIoSwitch) -> None:
        self.switch = switch
        self.caller = UacPeer()
        self.callee = UasPeer()

    def call(self, number: int, now: float) -> None:
        """Call number `number`: set up (INVITE ... ACK), left established."""
        self.switch.receive(self.caller.invite(number), CALLER, now)
        self.exchange(now)

    def hang_up_oldest(self, now: float) -> None:
        self.switch.receive(self.caller.hang_up_oldest(), CALLER, now)
        self.exchange(now)

    def cancel(self, number: int, now: float) -> None:
        """The caller cancels call `number` (still ringing)."""
        self.switch.receive(self.caller.cancel(number), CALLER, now)
        self.exchange(now)

    def exchange(self, now: float) -> None:
        """Hand what the switch sent to the peers, and their answers back, until quiet."""
        sent = self.switch.sent
        while sent:
            data, remote = sent.popleft()
            if remote == CALLEE:
                answers, source = self.callee.receive(data), CALLEE
            else:
                answers, source = self.caller.receive(data), CALLER
            for answer in answers:
                self.switch.receive(answer, source, now)

    def run_until(self, end: float) -> None:
        """Let time pass to `end`, running every deadline on its time."""
        while (deadline := self.switch.next_deadline()) is not None and deadline <= end:
            self.switch.run_timers(deadline)
            self.exchange(deadline)
