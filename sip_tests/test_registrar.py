"""The registrar in the running switch, end to end over real sockets on loopback.

- The switch runs as `python -m softswitch run --config configs/demo.yaml --data-dir TMP`
  (the demo tenant: domain 127.0.0.1, extensions 1001-1003 with SHA-256 then MD5,
  1004-1005 MD5 only, password pass<extension>).
- SIPp registers an MD5 extension with digest authentication and gets a 200 listing
  its contact with an expiry (`scenarios/register.xml`), unregisters it with Expires 0
  (`scenarios/unregister.xml`), and a wrong password only ever gets another 401
  (`scenarios/register_wrong_password.xml`).
- The project's own UAC code (`softswitch.sip.auth.answer_challenge`) registers the
  SHA-256 extension 1001 over a UDP socket: RFC 7616 with SHA-256, which SIPp cannot do.
- Repeated wrong passwords from one address lock it out: 403, even for the right one.
- A binding survives a restart: it is in the `registration` table after a SIGTERM, and
  a new switch on the same data directory answers a fetch (REGISTER without Contact,
  RFC 3261 §10.2.3) with it.
Every process has a time limit and is stopped by its PID.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloudpbx.db import create_engine_for, create_session_factory, database_url_for_directory
from cloudpbx.repository import RegistrationRecord, load_registrations
from softswitch.sip.auth import DigestChallenge, answer_challenge, compute_ha1
from softswitch.sip.message import Response, parse_message

from . import sipp
from .conftest import REPO_ROOT, RunningElement, free_port, random_loopback_host, running

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DOMAIN = "127.0.0.1"  # the demo tenant's SIP domain
ANSWER_WAIT = 3.0
SIPP_LIMIT = 30  # seconds, for `timeout` around SIPp


def switch_options(data_directory: Path) -> tuple[str, ...]:
    return ("--config", str(DEMO_CONFIG), "--data-dir", str(data_directory))


@pytest.fixture
def data_directory(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def registrar_switch(tmp_path: Path, data_directory: Path) -> Iterator[RunningElement]:
    with running(DOMAIN, tmp_path / "softswitch.log", switch_options(data_directory)) as element:
        yield element


def stored_registrations(data_directory: Path) -> tuple[RegistrationRecord, ...]:
    """The live rows of the `registration` table (read with the switch stopped)."""
    engine = create_engine_for(database_url_for_directory(data_directory))
    try:
        with create_session_factory(engine)() as session:
            return load_registrations(session, 0.0)
    finally:
        engine.dispose()


# --- A minimal UAC over UDP, built on the project's own digest code -------------------------


@dataclass
class RegisteringClient:
    """REGISTERs from a UDP socket on a random loopback address (RFC 3261 §10.2)."""

    switch: tuple[str, int]
    user: str
    password: str
    host: str = field(default_factory=random_loopback_host)
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    cseq: int = 0

    def __post_init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((self.host, 0))
        self.socket.settimeout(ANSWER_WAIT)
        self.port = int(self.socket.getsockname()[1])

    def close(self) -> None:
        self.socket.close()

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    def _request(self, authorization: str | None, contact: bool, expires: int | None) -> bytes:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)}"
            ";rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{self.user}@{DOMAIN}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
        ]
        if contact:
            lines.append(f"Contact: <{self.contact}>")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        lines += ["User-Agent: sip_tests RegisteringClient", "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def _exchange(self, data: bytes) -> Response:
        self.socket.sendto(data, self.switch)
        answer = parse_message(self.socket.recv(65535))
        assert isinstance(answer, Response)
        return answer

    def register(
        self, *, contact: bool = True, expires: int | None = 3600, password: str | None = None
    ) -> tuple[Response, Response]:
        """REGISTER, answer the topmost challenge (RFC 8760 §2.4), REGISTER again.

        Returns:
            The challenge (401) and the answer to the credentials.
        """
        challenge_response = self._exchange(self._request(None, contact, expires))
        if challenge_response.status_code != 401:
            return challenge_response, challenge_response
        challenge = DigestChallenge.parse(
            challenge_response.headers.get_all("WWW-Authenticate")[0]
        )
        assert challenge.realm is not None and challenge.algorithm is not None
        ha1 = compute_ha1(
            self.user, challenge.realm, password or self.password, challenge.algorithm
        )
        credentials = answer_challenge(
            challenge,
            username=self.user,
            ha1=ha1,
            method="REGISTER",
            uri=f"sip:{DOMAIN}",
            cnonce=secrets.token_hex(8),
        )
        return challenge_response, self._exchange(self._request(str(credentials), contact, expires))


@pytest.fixture
def client_factory() -> Iterator[list[RegisteringClient]]:
    clients: list[RegisteringClient] = []
    yield clients
    for client in clients:
        client.close()


def contact_uris(response: Response) -> list[str]:
    return [str(contact.uri) for contact in response.contacts]


# --- SIPp ----------------------------------------------------------------------------------


def run_sipp(
    switch: RunningElement,
    tmp_path: Path,
    scenario: str,
    *,
    user: str,
    password: str,
    host: str,
    port: int,
    expires: int = 3600,
) -> None:
    """One SIPp call of `scenario` from `host`:`port`; asserts it succeeded."""
    command = sipp.command(
        switch, tmp_path, scenario, host, port,
        "-s", user, "-au", user, "-ap", password, "-key", "expires", str(expires),
        limit=SIPP_LIMIT,
    )  # fmt: skip
    completed = sipp.run(command, tmp_path, SIPP_LIMIT + 15)
    output = (completed.stdout + completed.stderr).decode(errors="replace")[-3000:]
    errors = tmp_path / f"{scenario}.errors.log"
    error_text = errors.read_text(errors="replace")[-3000:] if errors.exists() else ""
    assert completed.returncode == 0, (completed.returncode, output, error_text, switch.log_text())
    successful, failed = sipp.call_counts(tmp_path, scenario)
    assert successful == 1, error_text
    assert failed == 0, error_text


# --- Tests ---------------------------------------------------------------------------------


def test_sha256_registration_with_the_projects_own_digest_code(
    registrar_switch: RunningElement, client_factory: list[RegisteringClient]
) -> None:
    client = RegisteringClient(registrar_switch.address, "1001", "pass1001")
    client_factory.append(client)
    challenge, answer = client.register(expires=600)

    # RFC 8760 §2.3: one challenge per algorithm, SHA-256 first, then MD5.
    assert challenge.status_code == 401
    algorithms = [
        DigestChallenge.parse(value).algorithm
        for value in challenge.headers.get_all("WWW-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]
    # §10.3 step 8: 200 listing the binding with its expiry, and a Date.
    assert answer.status_code == 200, registrar_switch.log_text()
    assert contact_uris(answer) == [client.contact]
    expires = answer.contacts[0].expires
    assert expires is not None and 590 <= expires <= 600
    assert answer.headers.get("Date") is not None


def test_md5_only_extension_is_challenged_with_md5_only(
    registrar_switch: RunningElement, client_factory: list[RegisteringClient]
) -> None:
    client = RegisteringClient(registrar_switch.address, "1005", "pass1005")
    client_factory.append(client)
    challenge, answer = client.register()
    assert [
        DigestChallenge.parse(value).algorithm
        for value in challenge.headers.get_all("WWW-Authenticate")
    ] == ["MD5"]
    assert answer.status_code == 200
    assert contact_uris(answer) == [client.contact]


def test_sipp_registers_and_unregisters_an_md5_extension(
    registrar_switch: RunningElement, tmp_path: Path, client_factory: list[RegisteringClient]
) -> None:
    host = random_loopback_host()
    port = free_port(host)
    sipp_contact = f"sip:1004@{host}:{port}"
    run_sipp(
        registrar_switch, tmp_path, "register.xml",
        user="1004", password="pass1004", host=host, port=port,
    )
    fetcher = RegisteringClient(registrar_switch.address, "1004", "pass1004")
    client_factory.append(fetcher)
    _, fetched = fetcher.register(contact=False, expires=None)
    assert fetched.status_code == 200
    assert contact_uris(fetched) == [sipp_contact]

    run_sipp(
        registrar_switch, tmp_path, "unregister.xml",
        user="1004", password="pass1004", host=host, port=port,
    )
    _, fetched = fetcher.register(contact=False, expires=None)
    assert fetched.status_code == 200
    assert contact_uris(fetched) == []


def test_sipp_wrong_password_is_challenged_again(
    registrar_switch: RunningElement, tmp_path: Path, client_factory: list[RegisteringClient]
) -> None:
    host = random_loopback_host()
    run_sipp(
        registrar_switch, tmp_path, "register_wrong_password.xml",
        user="1004", password="wrong-password", host=host, port=free_port(host),
    )
    fetcher = RegisteringClient(registrar_switch.address, "1004", "pass1004")
    client_factory.append(fetcher)
    _, fetched = fetcher.register(contact=False, expires=None)
    assert fetched.status_code == 200
    assert contact_uris(fetched) == []  # nothing was bound


def test_repeated_wrong_passwords_lock_the_source_out(
    registrar_switch: RunningElement, client_factory: list[RegisteringClient]
) -> None:
    client = RegisteringClient(registrar_switch.address, "1002", "pass1002")
    client_factory.append(client)
    statuses = [client.register(password="guess")[1].status_code for _ in range(10)]
    # The registrar's default: 10 wrong digests within 60 s lock the address for 300 s.
    assert statuses == [401] * 9 + [403]
    challenge, answer = client.register()
    assert challenge.status_code == 403 and answer.status_code == 403
    # Another address is not affected.
    other = RegisteringClient(registrar_switch.address, "1002", "pass1002")
    client_factory.append(other)
    assert other.register()[1].status_code == 200


def test_bindings_survive_a_restart(
    tmp_path: Path, data_directory: Path, client_factory: list[RegisteringClient]
) -> None:
    options = switch_options(data_directory)
    client = RegisteringClient(("0.0.0.0", 0), "1003", "pass1003")
    client_factory.append(client)
    with running(DOMAIN, tmp_path / "first.log", options) as first:
        client.switch = first.address
        assert client.register()[1].status_code == 200
        assert first.stop() == 0

    rows = stored_registrations(data_directory)
    assert [(row.address_of_record, row.contact_uri) for row in rows] == [
        (f"sip:1003@{DOMAIN}", client.contact)
    ]
    assert rows[0].received_host == client.host and rows[0].received_port == client.port

    with running(DOMAIN, tmp_path / "second.log", options) as second:
        assert "1 bindings loaded" in second.log_text()
        client.switch = second.address
        _, fetched = client.register(contact=False, expires=None)
        assert fetched.status_code == 200
        assert contact_uris(fetched) == [client.contact]
        # Unregistering deletes the row (written behind, flushed at shutdown).
        assert client.register(expires=0)[1].status_code == 200
        assert second.stop() == 0
    assert stored_registrations(data_directory) == ()


def test_without_a_config_store_register_is_still_404(
    running_element: RunningElement, client_factory: list[RegisteringClient]
) -> None:
    client = RegisteringClient(running_element.address, "1001", "pass1001")
    client_factory.append(client)
    challenge, _ = client.register()
    assert challenge.status_code == 404

