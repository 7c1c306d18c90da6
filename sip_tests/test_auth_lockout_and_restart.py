"""Issue 3, part 3, end to end: the switch as a process, the project's own digest code as
the phones, over UDP on loopback.

- Wrong INVITE passwords from one address: 407 until the registrar's threshold (10 within
  60 s), then 403 (`caller_auth` rule 2); from then on that address gets 403 for INVITE
  with the right password AND for REGISTER (one lockout shared with the registrar, rule
  0); another address is served. The shutdown counters show both refusals.
- The digest nonce key survives a restart: a REGISTER challenged by one process and
  answered to the next one on the same data directory registers (200), no new 401.
- A binding survives a restart whole: the 200 to a fetch lists the same Contact values
  (URI, q, every parameter, in the same order) as before the restart, and a call to
  the extension reaches the phone at the address its REGISTER came from, not at the
  (unreachable, private) address in its Contact.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from softswitch.sip.auth import DigestChallenge, answer_challenge, compute_ha1
from softswitch.sip.message import Request, Response, parse_message

from .conftest import random_loopback_host, running
from .test_registrar import DOMAIN, RegisteringClient, switch_options

ANSWER_WAIT = 3.0
THRESHOLD = 10  # the registrar's default failure_threshold


@dataclass
class InvitingClient:
    """New INVITEs from a UDP socket (RFC 3261 §17.1.1): reads up to the final
    response, ACKs a non-2xx one as the client transaction would (§17.1.1.3)."""

    switch: tuple[str, int]
    user: str
    host: str = field(default_factory=random_loopback_host)
    sent: int = 0

    def __post_init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((self.host, 0))
        self.socket.settimeout(ANSWER_WAIT)
        self.port = int(self.socket.getsockname()[1])

    def close(self) -> None:
        self.socket.close()

    def invite(self, callee: str, authorization: str | None = None) -> Response:
        self.sent += 1
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        call_id = secrets.token_hex(8)
        from_header = f"<sip:{self.user}@{DOMAIN}>;tag={secrets.token_hex(4)}"
        to_header = f"<sip:{callee}@{DOMAIN}>"
        lines = [
            f"INVITE sip:{callee}@{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {from_header}",
            f"To: {to_header}",
            f"Call-ID: {call_id}",
            f"CSeq: {self.sent} INVITE",
            f"Contact: <sip:{self.user}@{self.host}:{self.port}>",
        ]
        if authorization is not None:
            lines.append(f"Proxy-Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        self.socket.sendto("\r\n".join(lines).encode(), self.switch)
        while True:
            answer = parse_message(self.socket.recv(65535))
            assert isinstance(answer, Response)
            if answer.status_code >= 200:
                break
        if answer.status_code >= 300:
            ack = [
                f"ACK sip:{callee}@{DOMAIN} SIP/2.0",
                f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport",
                "Max-Forwards: 70",
                f"From: {from_header}",
                f"To: {answer.headers.get('To')}",
                f"Call-ID: {call_id}",
                f"CSeq: {self.sent} ACK",
                "Content-Length: 0",
                "",
                "",
            ]
            self.socket.sendto("\r\n".join(ack).encode(), self.switch)
        return answer


def proxy_credentials(
    challenge_response: Response, user: str, password: str, callee: str, nonce_count: int = 1
) -> str:
    """Answer the topmost Proxy-Authenticate (RFC 8760 §2.4) as `user`."""
    challenge = DigestChallenge.parse(challenge_response.headers.get_all("Proxy-Authenticate")[0])
    assert challenge.realm is not None and challenge.algorithm is not None
    return str(
        answer_challenge(
            challenge,
            username=user,
            ha1=compute_ha1(user, challenge.realm, password, challenge.algorithm),
            method="INVITE",
            uri=f"sip:{callee}@{DOMAIN}",
            cnonce=secrets.token_hex(8),
            nonce_count=nonce_count,
        )
    )


@pytest.fixture
def sockets() -> Iterator[list[InvitingClient | RegisteringClient]]:
    clients: list[InvitingClient | RegisteringClient] = []
    yield clients
    for client in clients:
        client.close()


def test_wrong_invite_passwords_lock_out_invite_and_register(
    tmp_path: Path, sockets: list[InvitingClient | RegisteringClient]
) -> None:
    with running(DOMAIN, tmp_path / "softswitch.log", switch_options(tmp_path / "data")) as switch:
        attacker = InvitingClient(switch.address, "1001")
        sockets.append(attacker)
        challenge = attacker.invite("1002")
        assert challenge.status_code == 407
        statuses = [
            attacker.invite("1002", proxy_credentials(challenge, "1001", "guess", "1002", n))
            .status_code
            for n in range(1, THRESHOLD + 1)
        ]
        assert statuses == [407] * (THRESHOLD - 1) + [403], switch.log_text()

        # Locked out: the right password is refused on INVITE...
        right = proxy_credentials(challenge, "1001", "pass1001", "1002", THRESHOLD + 1)
        assert attacker.invite("1002", right).status_code == 403
        # ...and REGISTER from the same address (another port) is refused too.
        registering = RegisteringClient(switch.address, "1001", "pass1001", host=attacker.host)
        sockets.append(registering)
        first, second = registering.register()
        assert first.status_code == 403 and second.status_code == 403
        # Another address is served.
        elsewhere = RegisteringClient(switch.address, "1001", "pass1001")
        sockets.append(elsewhere)
        assert elsewhere.register()[1].status_code == 200
        assert switch.stop() == 0
    calls = switch.counters("call")
    assert calls["invite_auth_failed"] == THRESHOLD
    assert calls["invite_auth_lockouts"] == 1
    assert calls["invite_locked_out"] == 2  # the 10th wrong one, then the right one
    assert switch.counters("registrar")["register_locked_out"] >= 1


def test_a_nonce_from_before_a_restart_is_accepted_after_it(
    tmp_path: Path, sockets: list[InvitingClient | RegisteringClient]
) -> None:
    options = switch_options(tmp_path / "data")
    client = RegisteringClient(("0.0.0.0", 0), "1001", "pass1001")
    sockets.append(client)
    with running(DOMAIN, tmp_path / "first.log", options) as first:
        client.switch = first.address
        challenge = client._exchange(client._request(None, True, 600))
        assert challenge.status_code == 401
        assert first.stop() == 0

    parsed = DigestChallenge.parse(challenge.headers.get_all("WWW-Authenticate")[0])
    assert parsed.realm is not None and parsed.algorithm is not None
    credentials = answer_challenge(
        parsed,
        username="1001",
        ha1=compute_ha1("1001", parsed.realm, "pass1001", parsed.algorithm),
        method="REGISTER",
        uri=f"sip:{DOMAIN}",
        cnonce=secrets.token_hex(8),
    )
    with running(DOMAIN, tmp_path / "second.log", options) as second:
        client.switch = second.address
        answer = client._exchange(client._request(str(credentials), True, 600))
        # Not 401 (neither stale=true nor "not our nonce"): registered at once.
        assert answer.status_code == 200, second.log_text()
        assert [str(contact.uri) for contact in answer.contacts] == [client.contact]
        assert second.stop() == 0
    assert second.counters("registrar").get("auth_invalid_nonce", 0) == 0


@dataclass
class NattedPhone(RegisteringClient):
    """A phone behind NAT: its Contact names a private address nobody can reach; only
    the address and port its REGISTER came from lead back to it (RFC 3261 §10.3, the
    binding's flow)."""

    contacts: tuple[str, ...] = ()

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@10.255.0.5:5062"

    def _request(self, authorization: str | None, contact: bool, expires: int | None) -> bytes:
        data = super()._request(authorization, False, expires)
        if not contact:
            return data
        head, separator, tail = data.partition(b"\r\nUser-Agent:")
        extra = "".join(f"\r\nContact: {value}" for value in self.contacts).encode()
        return head + extra + separator + tail


def contact_values(response: Response) -> list[str]:
    """The Contact header values with the remaining expiry blanked (it counts down)."""
    return [
        re.sub(r";expires=\d+", ";expires=N", value)
        for value in response.headers.get_all("Contact")
    ]


def test_bindings_come_back_whole_after_a_restart(
    tmp_path: Path, sockets: list[InvitingClient | RegisteringClient]
) -> None:
    options = switch_options(tmp_path / "data")
    phone = NattedPhone(("0.0.0.0", 0), "1003", "pass1003")
    phone.contacts = (
        '<sip:1003@10.255.0.5:5062;ob>;q=0.7;+sip.instance="<urn:uuid:00000000-0000-1000'
        '-8000-000a95a0e128>";reg-id=1;+sip.ice',
        "<sip:1003@10.255.0.6:5064>;q=0.3;expires=1800",
    )
    sockets.append(phone)
    with running(DOMAIN, tmp_path / "first.log", options) as first:
        phone.switch = first.address
        _, registered = phone.register(expires=3600)
        assert registered.status_code == 200, first.log_text()
        before = contact_values(registered)
        assert first.stop() == 0
    assert before == [
        '<sip:1003@10.255.0.5:5062;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-'
        '000a95a0e128>";reg-id=1;+sip.ice;q=0.7;expires=N',
        "<sip:1003@10.255.0.6:5064>;q=0.3;expires=N",
    ]

    with running(DOMAIN, tmp_path / "second.log", options) as second:
        phone.switch = second.address
        _, fetched = phone.register(contact=False, expires=None)
        assert fetched.status_code == 200
        assert contact_values(fetched) == before  # same URIs, q, parameters and order

        # A call to 1003 reaches the phone where its REGISTER came from (its NAT
        # binding), at every contact (parallel forking, best first).
        caller = InvitingClient(second.address, "1005")
        sockets.append(caller)
        challenge = caller.invite("1003")
        assert challenge.status_code == 407
        authorization = proxy_credentials(challenge, "1005", "pass1005", "1003")
        caller.socket.settimeout(10.0)
        outcome: list[Response] = []
        # The caller waits for its final answer while the phone answers each fork busy.
        thread = threading.Thread(
            target=lambda: outcome.append(caller.invite("1003", authorization)), daemon=True
        )
        thread.start()
        phone.socket.settimeout(0.5)
        branches: dict[str, str] = {}
        deadline = time.monotonic() + 10.0
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                message = parse_message(phone.socket.recv(65535))
            except TimeoutError:
                continue
            if isinstance(message, Request) and message.method == "INVITE":
                branches.setdefault(message.vias[0].branch or "", str(message.uri))
                # Busy (and again for a retransmission): the switch ACKs it (§17.1.1.3).
                phone.socket.sendto(busy_answer(message), second.address)
        thread.join(1.0)
        assert [response.status_code for response in outcome] == [486], second.log_text()
        assert list(branches.values()) == [
            "sip:1003@10.255.0.5:5062;ob",
            "sip:1003@10.255.0.6:5064",
        ]
        assert second.stop() == 0


def busy_answer(request: Request) -> bytes:
    lines = ["SIP/2.0 486 Busy Here"]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        lines.extend(f"{name}: {value}" for value in request.headers.get_all(name))
    lines += [f"To: {request.headers.get('To')};tag=busy", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()

