"""The running element, as a peer sees it: `python -m softswitch run` on loopback.

- Every RFC 4475 request is sent over UDP and its answer checked (the endpoint answers
  what is malformed, the element what is well-formed); nothing invalid gets a 2xx and
  requests without a usable Via are dropped and counted.
- Responses are routed as RFC 3261 §18.2.2 says: to the `received` address (our source
  address) at the Via sent-by port, 5060 when absent. So the test listens on port 5060
  (and 5050, which quotbal's Via names) of a random 127.x.y.z, on UDP and TCP (several
  Vias name TCP or TLS), and sends from its UDP port 5060.
- Afterwards the element still answers OPTIONS, stops cleanly on SIGTERM and has logged
  no traceback.
- SIPp sends OPTIONS with `scenarios/options.xml`.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import random
import re
import socket
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.message import Headers, Request, Response, parse_message
from softswitch.sip.tests.corpus import CORPUS

from . import sipp
from .conftest import (
    RunningElement,
    free_port,
    python_command,
    random_loopback_host,
    running,
)

T = TypeVar("T")

MANIFEST = {
    row["name"]: row
    for row in csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
}
REQUEST_FILES = sorted(
    name for name in MANIFEST if not (CORPUS / f"{name}.dat").read_bytes().startswith(b"SIP/")
)
RESPONSE_PORTS = (5060, 5050)

# What a peer gets back for each RFC 4475 request; None: no answer (dropped).
EXPECTED_STATUS: dict[str, int | None] = {
    # Answered by the endpoint: a bad SIP version, then bad syntax or semantics.
    "badvers": 505,
    "mismatch01": 400,  # CSeq method differs from the request method
    "mismatch02": 400,
    "insuf": 400,  # no Call-ID, From or To
    "multi01": 400,  # two To, From, Call-ID, CSeq
    "mcl01": 400,  # two Content-Length
    "badaspec": 400,
    "baddate": 400,
    "baddn": 400,
    "clerr": 400,  # Content-Length beyond the datagram
    "escruri": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "ncl": 400,
    "quotbal": 400,
    "regbadct": 400,
    "scalar02": 400,
    "trws": 400,
    # badinv01's Via `SIP/2.0/UDP 192.0.2.15;;,;,,` is malformed but names a host and
    # (default) port, so the endpoint can answer it, as RFC 4475 §3.1.2.1 asks.
    "badinv01": 400,
    # No Via at all: nowhere to answer (RFC 3261 §18.2.2), so dropped and counted.
    "test": None,
    # Answered by the element (softswitch/element.py).
    "badbranch": 200,
    "bext01": 420,
    "cparam01": 404,
    "cparam02": 404,
    "dblreq": 404,
    "esc01": 404,
    "esc02": 405,
    "escnull": 404,
    "intmeth": 405,
    "inv2543": 404,
    "invut": 415,
    "longreq": 404,
    "lwsdisp": 200,
    "mpart01": 405,
    "novelsc": 416,
    "regaut01": 404,
    "regescrt": 404,
    "sdp01": 406,
    "semiuri": 200,
    "transports": 200,
    "unkscm": 416,
    "unksm2": 404,
    "wsinv": 481,
    "zeromf": 200,
}

NO_USABLE_VIA = ("test",)

ANSWER_WAIT = 2.0  # seconds to wait for an answer that should come
DROP_WAIT = 0.7  # seconds to wait to be sure nothing comes
_CALL_ID_RE = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ")
_TOP_VIA_BRANCH_RE = re.compile(
    rb"^(?:via|v)[ \t]*:[^\r\n]*?;[ \t]*branch=([^;, \t\r\n]+)", re.IGNORECASE | re.MULTILINE
)


def run(coroutine: Coroutine[Any, Any, T], limit: float = 90.0) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, limit))


def call_ids_of(data: bytes) -> set[bytes]:
    return set(_CALL_ID_RE.findall(data))


def with_unique_branch(data: bytes, name: str, seen: set[bytes]) -> bytes:
    """The request, its top Via branch made unique if an earlier file used it.

    RFC 4475 reuses branches (z9hG4bKkdjuw in many messages). Within Timer J (32 s) an
    element must take a second request with the same branch, sent-by and method for a
    retransmission (RFC 3261 §17.2.3) and answer it with the first one's response, as
    cparam01/cparam02, escnull/regescrt and novelsc/unkscm would be. Appending
    `.<name>` to a reused branch lets each message be judged on its own; a branch
    without the magic cookie, or the bare cookie of badbranch, is left alone.
    """
    match = _TOP_VIA_BRANCH_RE.search(data)
    if match is None:
        return data
    branch = match.group(1)
    if not branch.startswith(b"z9hG4bK") or len(branch) == len(b"z9hG4bK"):
        return data
    if branch not in seen:
        seen.add(branch)
        return data
    return data[: match.end(1)] + b"." + name.encode() + data[match.end(1) :]


@dataclass
class Answer:
    status_code: int
    data: bytes
    transport: str
    port: int


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, port: int, inbox: asyncio.Queue[Answer | bytes]) -> None:
        self.port = port
        self.inbox = inbox
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.inbox.put_nowait(self._answer(data, "UDP"))

    def _answer(self, data: bytes, transport: str) -> Answer | bytes:
        match = _STATUS_RE.match(data)
        if match is None:
            return data  # not a response: a request from the element would be a bug here
        return Answer(int(match.group(1)), data, transport, self.port)

    def send(self, data: bytes, remote: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, remote)


@dataclass
class Peer:
    """The test's SIP peer on one loopback address: UDP and TCP on 5060 and 5050."""

    host: str
    inbox: asyncio.Queue[Answer | bytes] = field(default_factory=asyncio.Queue)
    udp: dict[int, UdpListener] = field(default_factory=dict)
    servers: list[asyncio.Server] = field(default_factory=list)

    @classmethod
    async def bind(cls) -> Peer:
        """Bind on a random 127.x.y.z, trying others while an address is in use."""
        for _ in range(50):
            peer = cls(random_loopback_host())
            try:
                for port in RESPONSE_PORTS:
                    await peer._listen(port)
            except OSError as error:
                await peer.close()
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return peer
        raise AssertionError("no free loopback address for ports 5060 and 5050")

    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, listener = await loop.create_datagram_endpoint(
            lambda: UdpListener(port, self.inbox), local_addr=(self.host, port)
        )
        self.udp[port] = listener

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(reader, writer, port)

        self.servers.append(await asyncio.start_server(accept, self.host, port))

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head,
                                  re.IGNORECASE | re.MULTILINE)
                length = int(match.group(1)) if match else 0
                data = head + (await reader.readexactly(length) if length else b"")
                self.inbox.put_nowait(self.udp[port]._answer(data, "TCP"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def send(self, data: bytes, remote: tuple[str, int]) -> None:
        self.udp[5060].send(data, remote)

    async def receive(self, timeout: float) -> Answer | bytes | None:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        for listener in self.udp.values():
            if listener.transport is not None:
                listener.transport.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()


def ack_for(request_data: bytes, answer: Answer) -> bytes | None:
    """The ACK of a non-2xx final answer to an INVITE (RFC 3261 §17.1.1.3), which stops
    the element's Timer G retransmissions."""
    try:
        request = parse_message(request_data)
        response = parse_message(answer.data)
        if not isinstance(request, Request) or not isinstance(response, Response):
            return None
        if request.method != "INVITE" or response.status_code < 300:
            return None
        request.validate()
        headers = Headers()
        headers.add("Via", str(request.top_via))
        headers.add("Max-Forwards", "70")
        headers.add("From", request.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq.number} ACK")
        return Request("ACK", request.uri_text, headers).to_bytes()
    except RemoteProtocolError:
        return None  # an invalid INVITE is answered statelessly: nothing to acknowledge


def options_from(peer: Peer, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {peer.host}:5060;branch=z9hG4bK-{call_id}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:tester@{peer.host}>;tag=tester\r\n"
        f"To: <sip:ping@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@dataclass
class Exchange:
    """What came back for each corpus file sent, and anything unexpected."""

    requests: dict[str, bytes] = field(default_factory=dict)
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    strays: list[bytes] = field(default_factory=list)
    owner_of_call_id: dict[bytes, str] = field(default_factory=dict)

    def record(
        self, item: Answer | bytes, current: str, peer: Peer, element: RunningElement
    ) -> str | None:
        """File an item under the request it answers; ACK a non-2xx to an INVITE."""
        if not isinstance(item, Answer):
            self.strays.append(item)
            return None
        if item.status_code < 200:
            return None  # 100 Trying to an INVITE (RFC 3261 §17.2.1): wait for the final
        name = current  # a stateless answer without known Call-ID: the request just sent
        for call_id in call_ids_of(item.data):
            if call_id in self.owner_of_call_id:
                name = self.owner_of_call_id[call_id]
        self.answers.setdefault(name, []).append(item)
        ack = ack_for(self.requests.get(name, b""), item)
        if ack is not None:
            peer.send(ack, element.address)
        return name

    async def send(
        self, peer: Peer, element: RunningElement, name: str, data: bytes, wait: float
    ) -> None:
        """Send one request; wait up to `wait` for its final answer."""
        self.requests[name] = data
        self.answers.setdefault(name, [])
        for call_id in call_ids_of(data):
            self.owner_of_call_id.setdefault(call_id, name)
        peer.send(data, element.address)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (remaining := deadline - loop.time()) > 0:
            item = await peer.receive(remaining)
            if item is None or self.record(item, name, peer, element) == name:
                return

    async def drain(self, peer: Peer, element: RunningElement, last: str) -> None:
        """Late or repeated answers."""
        while (item := await peer.receive(DROP_WAIT)) is not None:
            self.record(item, last, peer, element)


async def exchange_corpus(element: RunningElement) -> tuple[Exchange, Exchange]:
    """Send each corpus request, then a retransmission of one, then one OPTIONS.

    Returns the corpus exchange and the exchange after it (retransmission, OPTIONS).
    """
    peer = await Peer.bind()
    try:
        corpus = Exchange()
        branches: set[bytes] = set()
        for name in REQUEST_FILES:
            data = with_unique_branch((CORPUS / f"{name}.dat").read_bytes(), name, branches)
            wait = ANSWER_WAIT if EXPECTED_STATUS.get(name) is not None else DROP_WAIT
            await corpus.send(peer, element, name, data, wait)
        await corpus.drain(peer, element, REQUEST_FILES[-1])

        after = Exchange()
        # RFC 3261 §17.2.2: a retransmitted request gets the same response again.
        await after.send(peer, element, "cparam01", corpus.requests["cparam01"], ANSWER_WAIT)
        await after.send(peer, element, "options", options_from(peer, "after-corpus"), ANSWER_WAIT)
        await after.drain(peer, element, "options")
        return corpus, after
    finally:
        await peer.close()


def test_corpus_over_udp(running_element: RunningElement) -> None:
    assert set(EXPECTED_STATUS) == set(REQUEST_FILES)
    corpus, after = run(exchange_corpus(running_element))

    statuses = {
        name: [answer.status_code for answer in found] for name, found in corpus.answers.items()
    }
    got = {name: (codes[0] if codes else None) for name, codes in statuses.items()}
    mismatches = {
        name: (got[name], EXPECTED_STATUS[name])
        for name in REQUEST_FILES
        if got[name] != EXPECTED_STATUS[name]
    }
    assert not mismatches, f"(got, expected): {mismatches}\n{running_element.log_text()}"
    # Retransmitted answers repeat the same status.
    assert all(len(set(codes)) <= 1 for codes in statuses.values()), statuses
    # Nothing invalid is ever accepted; nothing but OPTIONS for us is.
    for name, codes in statuses.items():
        if MANIFEST[name]["expected"] == "invalid" or EXPECTED_STATUS[name] != 200:
            assert not any(200 <= code < 300 for code in codes), (name, codes)
    assert corpus.strays == [] and after.strays == []

    # A retransmission is absorbed and answered with the same response (same To tag).
    (first, *_), (again, *_) = corpus.answers["cparam01"], after.answers["cparam01"]
    assert parse_message(again.data).to_address.tag == parse_message(first.data).to_address.tag

    # (b) The element still answers.
    assert [answer.status_code for answer in after.answers["options"]] == [200]

    # (c) A clean stop, no traceback, drops counted.
    assert running_element.stop() == 0, running_element.log_text()
    log = running_element.log_text()
    assert "Traceback" not in log, log
    transport = running_element.counters("transport")
    assert transport.get("internal_errors", 0) == 0, log
    assert transport.get("dropped.no_usable_via", 0) == len(NO_USABLE_VIA), transport
    assert all(corpus.answers[name] == [] for name in NO_USABLE_VIA)
    invalid_requests = sum(1 for name in REQUEST_FILES if MANIFEST[name]["expected"] == "invalid")
    assert (
        transport.get("dropped.malformed", 0) + transport.get("dropped.no_usable_via", 0)
        == invalid_requests
    ), transport


def test_sipp_options(running_element: RunningElement, tmp_path: Path) -> None:
    host = f"127.0.0.{random.randint(2, 254)}"
    command = sipp.command(
        running_element, tmp_path, "options.xml", host, free_port(host), limit=30, calls=5
    )
    completed = sipp.run(command, tmp_path, 45)
    output = completed.stdout.decode(errors="replace")[-3000:]
    assert completed.returncode == 0, (completed.returncode, output, running_element.log_text())
    assert sipp.call_counts(tmp_path, "options.xml") == (5, 0)


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine's loopback has no ::1 (IPv6 disabled)"
)
def test_ipv6_loopback_over_udp_and_tcp(tmp_path: Path) -> None:
    with running("::1", tmp_path / "softswitch-ipv6.log") as element:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            udp.bind(("::1", 0))
            udp.settimeout(ANSWER_WAIT)
            port = udp.getsockname()[1]
            udp.sendto(ipv6_options(port, "UDP", "v6-udp"), element.address)
            answer = parse_message(udp.recv(65535))
        assert isinstance(answer, Response) and answer.status_code == 200
        with socket.create_connection(element.address, timeout=ANSWER_WAIT) as tcp:
            port = tcp.getsockname()[1]
            tcp.sendall(ipv6_options(port, "TCP", "v6-tcp"))
            data = b""
            while b"\r\n\r\n" not in data:
                data += tcp.recv(65535)
        answer = parse_message(data, stream=True)
        assert isinstance(answer, Response) and answer.status_code == 200
        assert element.stop() == 0
        assert "Traceback" not in element.log_text()


def ipv6_options(port: int, transport: str, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:ping@[::1] SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} [::1]:{port};branch=z9hG4bK-{call_id};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:tester@[::1]>;tag=tester\r\n"
        f"To: <sip:ping@[::1]>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def test_check_message_reads_the_corpus_as_the_manifest_says(tmp_path: Path) -> None:
    names = sorted(MANIFEST)
    command, environment = python_command(
        "check-message", *(str(CORPUS / f"{name}.dat") for name in names)
    )
    completed = subprocess.run(
        command, env=environment, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert completed.returncode == 1, completed.stderr  # some files are invalid
    lines = completed.stdout.decode().splitlines()
    assert len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        path, _, verdict = line.partition(": ")
        assert path == str(CORPUS / f"{name}.dat")
        expected = MANIFEST[name]["expected"]
        assert verdict.split(" ", 1)[0] == expected, line
    assert "badvers.dat: invalid (505 " in completed.stdout.decode()

    valid = str(CORPUS / "wsinv.dat")
    command, environment = python_command("check-message", valid)
    completed = subprocess.run(command, env=environment, capture_output=True, timeout=60)
    assert (completed.returncode, completed.stdout.decode()) == (0, f"{valid}: valid\n")

    missing = str(tmp_path / "missing.sip")
    command, environment = python_command("check-message", valid, missing)
    completed = subprocess.run(command, env=environment, capture_output=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stdout.decode().splitlines()[1].startswith(f"{missing}: unreadable (")


@pytest.mark.parametrize(
    "address", ["localhost:5060", "0.0.0.0:5060", "[::]:5060", "127.0.0.1", "[127.0.0.1]:5060",
                "127.0.0.1:70000", "192.0.2.1:5060"]
)
def test_run_refuses_an_address_it_cannot_serve(address: str) -> None:
    command, environment = python_command("run", "--sip", address)
    completed = subprocess.run(command, env=environment, capture_output=True, timeout=30)
    assert completed.returncode == 2, completed.stderr
    assert b"Traceback" not in completed.stderr
