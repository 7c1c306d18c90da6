"""Registrar tests through the public API only.

REGISTERs are built as raw bytes and parsed with `parse_message`, challenges are answered
with `auth.answer_challenge` as a phone would, and time is stepped by passing `now`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from softswitch.registrar import (
    AddressOfRecord,
    AuthenticationFailureTracker,
    Binding,
    BindingChange,
    BindingStore,
    BindingTable,
    ChangeKind,
    Registrar,
    RegistrarConfig,
    RegistrationResult,
    RemovalReason,
    SubscriberCredentials,
)
from softswitch.sip import Request, Response, SipUri, parse_message
from softswitch.sip.auth import (
    DigestChallenge,
    DigestCredentials,
    NonceManager,
    answer_challenge,
    canonical_algorithm,
    compute_ha1,
)
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.flows import Flow, Transport

DOMAIN = "example.com"
SECRET = b"registrar-test-secret-0123456789"
NONCE_LIFETIME = 300.0
T0 = 1_700_000_000.0
PHONE_FLOW = Flow(Transport.UDP, ("203.0.113.5", 40001))
OTHER_FLOW = Flow(Transport.UDP, ("198.51.100.9", 5060))


def subscriber(
    user: str, password: str, algorithms: tuple[str, ...] = ("SHA-256", "MD5")
) -> SubscriberCredentials:
    return SubscriberCredentials(
        username=user,
        realm=DOMAIN,
        ha1_by_algorithm={
            name: compute_ha1(user, DOMAIN, password, name) for name in algorithms
        },
        algorithms=algorithms,
    )


@dataclass
class Directory:
    """In-memory CredentialLookup and DomainLookup."""

    subscribers: dict[tuple[str, str], SubscriberCredentials] = field(default_factory=dict)
    domains: frozenset[str] = frozenset({DOMAIN})

    def add(self, credentials: SubscriberCredentials) -> None:
        self.subscribers[(credentials.realm, credentials.username)] = credentials

    def lookup(self, domain: str, user: str) -> SubscriberCredentials | None:
        return self.subscribers.get((domain, user))

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains


@dataclass
class MemoryStore:
    """A BindingStore over a dict, as the DB adapter would behave."""

    rows: dict[tuple[AddressOfRecord, str], Binding] = field(default_factory=dict)

    async def load_bindings(self) -> Sequence[Binding]:
        return list(self.rows.values())

    async def apply_changes(self, changes: Sequence[BindingChange]) -> None:
        for change in changes:
            key = (change.binding.address_of_record, str(change.binding.contact_uri))
            if change.kind is ChangeKind.REMOVED:
                self.rows.pop(key, None)
            else:
                self.rows[key] = change.binding


def make_registrar(
    config: RegistrarConfig | None = None, directory: Directory | None = None
) -> tuple[Registrar, Directory]:
    directory = directory if directory is not None else Directory()
    if not directory.subscribers:
        directory.add(subscriber("alice", "alice-secret"))
        directory.add(subscriber("bob", "bob-secret"))
        directory.add(subscriber("legacy", "legacy-secret", ("MD5",)))
    registrar = Registrar(
        config or RegistrarConfig(),
        directory,
        directory,
        NonceManager(SECRET, NONCE_LIFETIME),
        SipEndpoint(EndpointConfig("192.0.2.10", 5060)),
    )
    return registrar, directory


_branches = itertools.count(1)


def build_register(
    *,
    user: str = "alice",
    to_user: str | None = None,
    request_uri: str = f"sip:{DOMAIN}",
    call_id: str = "call-1@phone",
    cseq: int = 1,
    contacts: Sequence[str] = ("<sip:alice@192.168.1.20:5060>",),
    expires: int | None = None,
    authorization: DigestCredentials | None = None,
    extra: Sequence[str] = (),
) -> Request:
    to_user = user if to_user is None else to_user
    lines = [
        f"REGISTER {request_uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK{next(_branches)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=from-{user}",
        f"To: <sip:{to_user}@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: TestPhone/1.0",
    ]
    lines += [f"Contact: {contact}" for contact in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    message.validate()
    return message


@dataclass
class Phone:
    """A UAC that registers like a phone: answers the topmost challenge it supports."""

    registrar: Registrar
    user: str = "alice"
    password: str = "alice-secret"
    supported: tuple[str, ...] = ("SHA-256", "MD5")
    flow: Flow = PHONE_FLOW
    call_id: str = "call-1@phone"
    cseq: int = 0
    challenge: DigestChallenge | None = None
    nonce_count: int = 0
    cnonces: itertools.count[int] = field(default_factory=itertools.count)

    def credentials(self, uri: str = f"sip:{DOMAIN}") -> DigestCredentials | None:
        challenge = self.challenge
        if challenge is None:
            return None
        assert challenge.realm is not None
        algorithm = canonical_algorithm(challenge.algorithm)
        assert algorithm is not None
        self.nonce_count += 1
        return answer_challenge(
            challenge,
            username=self.user,
            ha1=compute_ha1(self.user, challenge.realm, self.password, algorithm),
            method="REGISTER",
            uri=uri,
            cnonce=f"cnonce-{next(self.cnonces)}",
            nonce_count=self.nonce_count,
        )

    def take_challenge(self, response: Response) -> None:
        for value in response.headers.get_all("WWW-Authenticate"):
            challenge = DigestChallenge.parse(value)
            if canonical_algorithm(challenge.algorithm) in self.supported:
                self.challenge = challenge
                self.nonce_count = 0
                return
        raise AssertionError("no usable challenge")

    def send(
        self,
        now: float,
        *,
        cseq: int | None = None,
        contacts: Sequence[str] = ("<sip:alice@192.168.1.20:5060>",),
        expires: int | None = None,
        to_user: str | None = None,
    ) -> RegistrationResult:
        """One REGISTER with the current credentials (if any); learns new challenges."""
        self.cseq = self.cseq + 1 if cseq is None else cseq
        request = build_register(
            user=self.user,
            to_user=to_user,
            call_id=self.call_id,
            cseq=self.cseq,
            contacts=contacts,
            expires=expires,
            authorization=self.credentials(),
        )
        result = self.registrar.handle_register(request, self.flow, now)
        if result.response.status_code == 401:
            self.take_challenge(result.response)
        return result

    def register(
        self,
        now: float,
        *,
        contacts: Sequence[str] = ("<sip:alice@192.168.1.20:5060>",),
        expires: int | None = None,
    ) -> RegistrationResult:
        """Send until the answer is not a 401 (at most three tries, as a phone would)."""
        result = self.send(now, contacts=contacts, expires=expires)
        for _ in range(2):
            if result.response.status_code != 401:
                break
            result = self.send(now, contacts=contacts, expires=expires)
        return result


def challenges(response: Response) -> list[DigestChallenge]:
    return [DigestChallenge.parse(value) for value in response.headers.get_all("WWW-Authenticate")]


def contact_expires(response: Response) -> dict[str, int]:
    result: dict[str, int] = {}
    for contact in response.contacts:
        expires = contact.expires
        assert expires is not None
        result[str(contact.uri)] = expires
    return result


# --- Challenges ------------------------------------------------------------------------------


def test_first_register_is_challenged_sha256_then_md5() -> None:
    registrar, _ = make_registrar()
    result = registrar.handle_register(build_register(), PHONE_FLOW, T0)
    assert result.response.status_code == 401
    assert result.changes == ()
    offered = challenges(result.response)
    assert [challenge.algorithm for challenge in offered] == ["SHA-256", "MD5"]
    assert all(challenge.qop == "auth" and challenge.realm == DOMAIN for challenge in offered)
    assert all(not challenge.stale for challenge in offered)
    assert offered[0].nonce == offered[1].nonce
    assert result.response.to_address.tag is not None  # §8.2.6.2
    # Every challenge has a fresh nonce.
    again = registrar.handle_register(build_register(), PHONE_FLOW, T0)
    assert challenges(again.response)[0].nonce != offered[0].nonce
    assert registrar.counters["register_challenged"] == 2


def test_md5_only_subscriber_is_challenged_with_md5_only() -> None:
    registrar, _ = make_registrar()
    result = registrar.handle_register(build_register(user="legacy"), PHONE_FLOW, T0)
    assert [challenge.algorithm for challenge in challenges(result.response)] == ["MD5"]


@pytest.mark.parametrize(
    ("user", "password", "supported", "algorithm"),
    [
        ("alice", "alice-secret", ("SHA-256", "MD5"), "SHA-256"),
        ("alice", "alice-secret", ("MD5",), "MD5"),  # an old phone on a SHA-256 account
        ("legacy", "legacy-secret", ("SHA-256", "MD5"), "MD5"),
    ],
)
def test_register_after_challenge(
    user: str, password: str, supported: tuple[str, ...], algorithm: str
) -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar, user=user, password=password, supported=supported)
    result = phone.register(T0, contacts=[f"<sip:{user}@192.168.1.20:5060>"])
    assert phone.challenge is not None and phone.challenge.algorithm == algorithm
    assert result.response.status_code == 200
    assert contact_expires(result.response) == {f"sip:{user}@192.168.1.20:5060": 3600}
    assert [change.kind for change in result.changes] == [ChangeKind.ADDED]
    (binding,) = registrar.lookup_contacts(DOMAIN, user, T0)
    assert binding.address_of_record == AddressOfRecord(DOMAIN, user)
    assert binding.expires_at == T0 + 3600
    assert binding.cseq == 2 and binding.call_id == "call-1@phone"
    assert binding.user_agent == "TestPhone/1.0"
    assert registrar.counters["auth_ok"] == 1


def test_binding_keeps_the_source_flow_for_nat() -> None:
    registrar, _ = make_registrar()
    nat_flow = Flow(Transport.TCP, ("203.0.113.77", 51234), connection_id=7)
    Phone(registrar, flow=nat_flow).register(T0)
    (binding,) = registrar.lookup_contacts(DOMAIN, "alice", T0)
    assert binding.flow == nat_flow
    assert isinstance(binding.contact_uri, SipUri)
    assert binding.contact_uri.host == "192.168.1.20"  # private address kept as data


def test_wrong_password_is_challenged_again_without_stale() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar, password="guess")
    phone.send(T0)
    result = phone.send(T0)
    assert result.response.status_code == 401
    assert not any(challenge.stale for challenge in challenges(result.response))
    assert registrar.counters["auth_failed"] == 1
    assert registrar.lookup_contacts(DOMAIN, "alice", T0) == []


def _shape(response: Response) -> tuple[object, ...]:
    """Status, reason, header names and challenges with the nonce blanked."""
    names = [name for name, _ in response.headers]
    blanked = [
        str(DigestChallenge(realm=c.realm, nonce="-", algorithm=c.algorithm, qop=c.qop,
                            opaque=c.opaque, stale=c.stale))
        for c in challenges(response)
    ]
    return (response.status_code, response.reason, names, blanked)


def test_unknown_user_is_answered_exactly_like_a_wrong_password() -> None:
    registrar, _ = make_registrar()
    # Unauthenticated first REGISTER.
    known = registrar.handle_register(build_register(user="alice"), PHONE_FLOW, T0)
    unknown = registrar.handle_register(build_register(user="mallory"), PHONE_FLOW, T0)
    assert _shape(known.response) == _shape(unknown.response)
    # Answering the challenge with a wrong password, and as an unknown user.
    wrong = Phone(registrar, user="alice", password="guess", flow=OTHER_FLOW)
    wrong.send(T0)
    nobody = Phone(registrar, user="mallory", password="guess", flow=OTHER_FLOW)
    nobody.send(T0)
    wrong_result = wrong.send(T0)
    nobody_result = nobody.send(T0)
    assert wrong_result.response.status_code == 401
    assert _shape(wrong_result.response) == _shape(nobody_result.response)
    assert wrong_result.changes == nobody_result.changes == ()
    # Both count as authentication failures of the source.
    assert registrar.counters["auth_failed"] == 2


def test_stale_nonce_gets_stale_true_and_then_registers() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    assert phone.register(T0).response.status_code == 200
    later = T0 + NONCE_LIFETIME + 1
    result = phone.send(later)  # right digest, old nonce
    assert result.response.status_code == 401
    assert all(challenge.stale for challenge in challenges(result.response))
    assert registrar.counters["auth_stale"] == 1
    assert registrar.counters["auth_failed"] == 0
    assert phone.send(later).response.status_code == 200


def test_replayed_nonce_count_gets_stale_true() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.send(T0)
    credentials = phone.credentials()
    first = build_register(cseq=2, authorization=credentials)
    assert registrar.handle_register(first, PHONE_FLOW, T0).response.status_code == 200
    replay = build_register(cseq=3, authorization=credentials)
    result = registrar.handle_register(replay, PHONE_FLOW, T0)
    assert result.response.status_code == 401
    assert all(challenge.stale for challenge in challenges(result.response))


def test_forged_nonce_is_challenged_and_not_counted_as_a_failure() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.challenge = DigestChallenge(realm=DOMAIN, nonce="bm90IG91cnM=", algorithm="MD5",
                                      qop="auth")
    result = phone.send(T0)
    assert result.response.status_code == 401
    assert registrar.counters["auth_invalid_nonce"] == 1
    assert registrar.counters["auth_failed"] == 0


def test_to_must_match_the_authenticated_user() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.send(T0)
    result = phone.send(T0, to_user="bob")
    assert result.response.status_code == 403
    assert result.changes == ()
    assert registrar.lookup_contacts(DOMAIN, "bob", T0) == []


def test_request_uri_domain_is_checked() -> None:
    registrar, _ = make_registrar()
    foreign = build_register(request_uri="sip:other.example.org")
    assert registrar.handle_register(foreign, PHONE_FLOW, T0).response.status_code == 404
    tel = build_register(request_uri="tel:+81312345678")
    assert registrar.handle_register(tel, PHONE_FLOW, T0).response.status_code == 416
    upper = build_register(request_uri="sip:EXAMPLE.com")
    assert registrar.handle_register(upper, PHONE_FLOW, T0).response.status_code == 401


def test_only_register_is_handled() -> None:
    registrar, _ = make_registrar()
    raw = build_register().to_bytes().replace(b"REGISTER", b"OPTIONS")
    options = parse_message(raw)
    assert isinstance(options, Request)
    with pytest.raises(LocalProtocolError):
        registrar.handle_register(options, PHONE_FLOW, T0)


# --- Expiry values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contact", "expires_header", "granted"),
    [
        ("<sip:alice@192.168.1.20>", None, 3600),  # registrar default
        ("<sip:alice@192.168.1.20>", 120, 120),  # Expires header
        ("<sip:alice@192.168.1.20>;expires=300", 120, 300),  # parameter wins (§10.2.1.1)
        ("<sip:alice@192.168.1.20>;expires=90", 7200, 90),
        ("<sip:alice@192.168.1.20>", 86400, 3600),  # clamped to the maximum
        ("<sip:alice@192.168.1.20>;expires=60", None, 60),  # exactly the minimum
    ],
)
def test_expires_selection(contact: str, expires_header: int | None, granted: int) -> None:
    registrar, _ = make_registrar()
    result = Phone(registrar).register(T0, contacts=[contact], expires=expires_header)
    assert result.response.status_code == 200
    assert contact_expires(result.response) == {"sip:alice@192.168.1.20": granted}
    (binding,) = registrar.lookup_contacts(DOMAIN, "alice", T0)
    assert binding.expires_at == T0 + granted


@pytest.mark.parametrize(
    ("contact", "expires_header"),
    [
        ("<sip:alice@192.168.1.20>", 30),
        ("<sip:alice@192.168.1.20>;expires=59", 3600),  # the parameter is what counts
        ("<sip:alice@192.168.1.20>;expires=1", None),
    ],
)
def test_too_brief_gets_423_with_min_expires(contact: str, expires_header: int | None) -> None:
    registrar, _ = make_registrar()
    result = Phone(registrar).register(T0, contacts=[contact], expires=expires_header)
    assert result.response.status_code == 423
    assert result.response.min_expires == 60
    assert result.changes == ()
    assert registrar.lookup_contacts(DOMAIN, "alice", T0) == []


def test_minimum_and_maximum_are_configurable() -> None:
    registrar, _ = make_registrar(RegistrarConfig(min_expires=300, max_expires=600,
                                                  default_expires=600))
    phone = Phone(registrar)
    assert phone.register(T0, expires=120).response.min_expires == 300
    result = phone.register(T0)
    assert contact_expires(result.response) == {"sip:alice@192.168.1.20:5060": 600}


def test_a_too_brief_contact_rejects_the_whole_request() -> None:
    registrar, _ = make_registrar()
    result = Phone(registrar).register(
        T0, contacts=["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>;expires=10"]
    )
    assert result.response.status_code == 423
    assert registrar.lookup_contacts(DOMAIN, "alice", T0) == []


def test_malformed_contact_expires_is_400() -> None:
    registrar, _ = make_registrar()
    result = Phone(registrar).register(T0, contacts=["<sip:alice@10.0.0.1>;expires=soon"])
    assert result.response.status_code == 400
    result = Phone(registrar).register(T0, contacts=["<sip:alice@10.0.0.1>;q=2"])
    assert result.response.status_code == 400


# --- Several contacts, refresh, removal --------------------------------------------------


def test_several_contacts_per_address_of_record() -> None:
    registrar, _ = make_registrar()
    desk = Phone(registrar, call_id="desk@phone")
    soft = Phone(registrar, call_id="soft@laptop", flow=OTHER_FLOW)
    desk.register(T0, contacts=["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>;expires=600"])
    result = soft.register(T0 + 10, contacts=["<sip:alice@10.0.0.3;transport=tcp>"])
    assert result.response.status_code == 200
    assert contact_expires(result.response) == {
        "sip:alice@10.0.0.1": 3590,
        "sip:alice@10.0.0.2": 590,
        "sip:alice@10.0.0.3;transport=tcp": 3600,
    }
    assert [change.kind for change in result.changes] == [ChangeKind.ADDED]
    assert len(registrar.lookup_contacts(DOMAIN, "alice", T0 + 10)) == 3
    assert registrar.lookup_contacts(DOMAIN, "bob", T0 + 10) == []


def test_refresh_updates_expiry_and_keeps_registration_time() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, expires=600)
    result = phone.register(T0 + 500, expires=600)  # new nonce: the old one is stale
    assert result.response.status_code == 200
    (change,) = result.changes
    assert change.kind is ChangeKind.REFRESHED
    assert change.binding.expires_at == T0 + 1100
    assert change.binding.registered_at == T0
    assert change.binding.updated_at == T0 + 500
    assert contact_expires(result.response) == {"sip:alice@192.168.1.20:5060": 600}


def test_contact_uri_comparison_follows_rfc3261() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@PHONE.example.com;foo=1>"])
    result = phone.send(T0 + 1, contacts=["<sip:alice@phone.example.com>"])
    assert [change.kind for change in result.changes] == [ChangeKind.REFRESHED]
    assert len(registrar.lookup_contacts(DOMAIN, "alice", T0 + 1)) == 1


def test_expires_zero_removes_one_binding() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"])
    result = phone.send(T0 + 5, contacts=["<sip:alice@10.0.0.1>;expires=0"])
    assert result.response.status_code == 200
    (change,) = result.changes
    assert change.kind is ChangeKind.REMOVED and change.reason is RemovalReason.UNREGISTERED
    assert str(change.binding.contact_uri) == "sip:alice@10.0.0.1"
    assert contact_expires(result.response) == {"sip:alice@10.0.0.2": 3595}
    # Removing a contact that is not bound is not an error and changes nothing.
    again = phone.send(T0 + 6, contacts=["<sip:alice@10.0.0.9>"], expires=0)
    assert again.response.status_code == 200 and again.changes == ()


def test_wildcard_with_expires_zero_removes_all() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"])
    Phone(registrar, call_id="other@phone").register(T0, contacts=["<sip:alice@10.0.0.3>"])
    result = phone.send(T0 + 1, contacts=["*"], expires=0)
    assert result.response.status_code == 200
    assert result.response.contacts == []
    assert sorted(str(change.binding.contact_uri) for change in result.changes) == [
        "sip:alice@10.0.0.1", "sip:alice@10.0.0.2", "sip:alice@10.0.0.3",
    ]
    assert {change.reason for change in result.changes} == {RemovalReason.UNREGISTERED}
    assert registrar.lookup_contacts(DOMAIN, "alice", T0 + 1) == []
    assert registrar.next_expiry() is None


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [
        (["*"], None),  # default expiry is not zero
        (["*"], 30),
        (["*", "<sip:alice@10.0.0.1>"], 0),
    ],
)
def test_invalid_wildcard_is_400(contacts: list[str], expires: int | None) -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0)
    result = phone.send(T0 + 1, contacts=contacts, expires=expires)
    assert result.response.status_code == 400
    assert result.changes == ()
    assert len(registrar.lookup_contacts(DOMAIN, "alice", T0 + 1)) == 1


def test_register_without_contact_fetches_bindings() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>;q=0.5;+sip.instance=\"<urn:x>\""])
    result = phone.send(T0 + 100, contacts=[])
    assert result.response.status_code == 200
    assert result.changes == ()
    (contact,) = result.response.contacts
    assert contact.expires == 3500
    assert contact.q == 0.5
    assert contact.parameters["+sip.instance"] == '"<urn:x>"'
    assert registrar.counters["register_fetched"] == 1


def test_fetch_drops_lapsed_bindings() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>"], expires=60)
    result = phone.send(T0 + 60, contacts=[])
    assert result.response.status_code == 200 and result.response.contacts == []
    assert [(c.kind, c.reason) for c in result.changes] == [
        (ChangeKind.REMOVED, RemovalReason.EXPIRED)
    ]
    assert len(registrar.bindings) == 0


def test_non_digest_authorization_is_challenged() -> None:
    registrar, _ = make_registrar()
    request = build_register(extra=["Authorization: NoOneKnowsThisScheme opaque-data=here"])
    result = registrar.handle_register(request, PHONE_FLOW, T0)
    assert result.response.status_code == 401
    assert len(challenges(result.response)) == 2
    assert registrar.counters["auth_failed"] == 0


def test_date_header_when_configured() -> None:
    registrar, _ = make_registrar(RegistrarConfig(date_header=True))
    result = Phone(registrar).register(1_000_000_000.0)
    assert result.response.headers.get("Date") == "Sun, 09 Sep 2001 01:46:40 GMT"
    plain, _ = make_registrar()
    assert Phone(plain).register(T0).response.headers.get("Date") is None


def test_too_many_contacts_per_address_of_record() -> None:
    registrar, _ = make_registrar(RegistrarConfig(max_bindings_per_aor=2))
    phone = Phone(registrar)
    result = phone.register(T0, contacts=[f"<sip:alice@10.0.0.{n}>" for n in (1, 2, 3)])
    assert result.response.status_code == 403
    assert registrar.lookup_contacts(DOMAIN, "alice", T0) == []


# --- Call-ID / CSeq ordering (§10.3 step 7) ---------------------------------------------


def test_same_call_id_with_lower_or_equal_cseq_fails_without_change() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, expires=600)  # binding written with CSeq 2
    (before,) = registrar.lookup_contacts(DOMAIN, "alice", T0)
    for cseq in (2, 1):
        result = phone.send(T0 + 1, cseq=cseq, expires=0)
        assert result.response.status_code == 500
        assert result.changes == ()
    assert registrar.lookup_contacts(DOMAIN, "alice", T0 + 1) == [before]
    assert registrar.counters["register_out_of_order"] == 2
    # A later CSeq of the same Call-ID updates.
    assert phone.send(T0 + 2, cseq=5, expires=0).response.status_code == 200
    assert registrar.lookup_contacts(DOMAIN, "alice", T0 + 2) == []


def test_different_call_id_always_updates() -> None:
    registrar, _ = make_registrar()
    Phone(registrar, call_id="first").register(T0, expires=600)
    rebooted = Phone(registrar, call_id="after-reboot")
    result = rebooted.register(T0 + 1, expires=900)  # its CSeq (2) is not higher
    assert result.response.status_code == 200
    (binding,) = registrar.lookup_contacts(DOMAIN, "alice", T0 + 1)
    assert binding.call_id == "after-reboot" and binding.expires_at == T0 + 901


def test_out_of_order_wildcard_fails_and_keeps_everything() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>"])
    Phone(registrar, call_id="other").register(T0, contacts=["<sip:alice@10.0.0.2>"])
    result = phone.send(T0 + 1, cseq=1, contacts=["*"], expires=0)
    assert result.response.status_code == 500
    assert len(registrar.lookup_contacts(DOMAIN, "alice", T0 + 1)) == 2


# --- Expiry over time ------------------------------------------------------------------------


def test_expiry_by_stepping_time() -> None:
    registrar, _ = make_registrar()
    assert registrar.next_expiry() is None
    Phone(registrar).register(T0, contacts=["<sip:alice@10.0.0.1>;expires=120"])
    Phone(registrar, user="bob", password="bob-secret").register(
        T0 + 30, contacts=["<sip:bob@10.0.0.5>"], expires=300
    )
    assert registrar.next_expiry() == T0 + 120
    assert registrar.expire(T0 + 119.9) == []
    # A lapsed binding is not offered even before expire() runs.
    assert registrar.lookup_contacts(DOMAIN, "alice", T0 + 120) == []
    removed = registrar.expire(registrar.next_expiry() or 0.0)
    assert [(c.kind, c.reason, str(c.binding.contact_uri)) for c in removed] == [
        (ChangeKind.REMOVED, RemovalReason.EXPIRED, "sip:alice@10.0.0.1")
    ]
    assert registrar.next_expiry() == T0 + 330
    assert len(registrar.lookup_contacts(DOMAIN, "bob", T0 + 329)) == 1
    assert len(registrar.expire(T0 + 330)) == 1
    assert registrar.next_expiry() is None
    assert len(registrar.bindings) == 0
    assert registrar.counters["bindings_expired"] == 2


def test_refresh_moves_the_deadline() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, expires=120)
    phone.send(T0 + 100, expires=120)
    assert registrar.next_expiry() == T0 + 220
    assert registrar.expire(T0 + 120) == []
    assert len(registrar.lookup_contacts(DOMAIN, "alice", T0 + 219)) == 1


def test_lapsed_binding_is_reported_when_its_aor_registers_again() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>"], expires=60)
    result = phone.send(T0 + 61, contacts=["<sip:alice@10.0.0.2>"], expires=60)
    assert [(c.kind, c.reason) for c in result.changes] == [
        (ChangeKind.REMOVED, RemovalReason.EXPIRED),
        (ChangeKind.ADDED, None),
    ]
    assert registrar.expire(T0 + 100) == []  # already gone


def test_lookup_orders_by_q_then_most_recent() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, contacts=["<sip:alice@10.0.0.1>;q=0.5"])
    phone.send(T0 + 1, contacts=["<sip:alice@10.0.0.2>;q=0.9"])
    phone.send(T0 + 2, contacts=["<sip:alice@10.0.0.3>;q=0.5"])
    phone.send(T0 + 3, contacts=["<sip:alice@10.0.0.4>"])  # no q ranks as 1.0
    hosts = [
        binding.contact_uri.host
        for binding in registrar.lookup_contacts("EXAMPLE.COM", "alice", T0 + 4)
        if isinstance(binding.contact_uri, SipUri)
    ]
    assert hosts == ["10.0.0.4", "10.0.0.2", "10.0.0.3", "10.0.0.1"]


def test_binding_table_heap_stays_bounded_under_refreshes() -> None:
    registrar, _ = make_registrar()
    phone = Phone(registrar)
    phone.register(T0, expires=3600)
    for step in range(1, 500):
        assert phone.register(T0 + step, expires=3600).response.status_code == 200
    assert len(registrar.bindings) == 1
    assert registrar.bindings.heap_size() <= 2 * len(registrar.bindings) + 65
    assert registrar.next_expiry() == T0 + 499 + 3600


# --- Persistence port ------------------------------------------------------------------------


def test_changes_persist_and_reload_at_start_up() -> None:
    store = MemoryStore()
    port: BindingStore = store
    registrar, directory = make_registrar()
    phone = Phone(registrar)
    results = [
        phone.register(T0, contacts=["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"],
                       expires=600),
        phone.send(T0 + 10, contacts=["<sip:alice@10.0.0.1>;expires=0"]),
        Phone(registrar, user="bob", password="bob-secret").register(
            T0 + 20, contacts=["<sip:bob@10.0.0.5>;expires=60"]
        ),
    ]
    for result in results:
        asyncio.run(port.apply_changes(result.changes))
    assert len(store.rows) == 2

    # Restart after bob's binding lapsed.
    restarted, _ = make_registrar(directory=directory)
    persisted = asyncio.run(port.load_bindings())
    removed = restarted.load_bindings(persisted, T0 + 100)
    assert [str(change.binding.address_of_record) for change in removed] == [
        "sip:bob@example.com"
    ]
    asyncio.run(port.apply_changes(removed))
    assert len(store.rows) == 1
    (binding,) = restarted.lookup_contacts(DOMAIN, "alice", T0 + 100)
    assert str(binding.contact_uri) == "sip:alice@10.0.0.2"
    assert binding.flow == PHONE_FLOW
    assert restarted.next_expiry() == T0 + 600


def test_load_keeps_the_latest_duplicate() -> None:
    registrar, _ = make_registrar()
    Phone(registrar).register(T0)
    (older,) = registrar.lookup_contacts(DOMAIN, "alice", T0)
    newer = Binding(
        address_of_record=older.address_of_record, contact_uri=older.contact_uri, q=None,
        contact_parameters=(), expires_at=T0 + 7200, call_id="x", cseq=9,
        flow=OTHER_FLOW, registered_at=T0, updated_at=T0 + 5,
    )
    fresh, _ = make_registrar()
    removed = fresh.load_bindings([newer, older], T0 + 10)
    assert [(change.binding, change.reason) for change in removed] == [
        (older, RemovalReason.REPLACED)
    ]
    assert fresh.lookup_contacts(DOMAIN, "alice", T0 + 10) == [newer]


# --- Brute-force protection -----------------------------------------------------------------


def test_repeated_failures_lock_out_the_source() -> None:
    registrar, _ = make_registrar()
    attacker = Phone(registrar, password="guess", flow=OTHER_FLOW)
    attacker.send(T0)
    statuses = [attacker.send(T0 + n).response.status_code for n in range(10)]
    assert statuses == [401] * 9 + [403]
    assert registrar.counters["auth_lockouts"] == 1
    # Even the right password from that address is refused during the lockout...
    victim_at_attacker = Phone(registrar, flow=OTHER_FLOW, call_id="v")
    assert victim_at_attacker.register(T0 + 20).response.status_code == 403
    # ...while other sources are unaffected.
    assert Phone(registrar).register(T0 + 20).response.status_code == 200
    # After the lockout the source is challenged again and can register.
    after = T0 + 9 + 300
    assert victim_at_attacker.register(after).response.status_code == 200
    assert registrar.counters["register_locked_out"] >= 2


def test_failures_spread_beyond_the_window_do_not_lock_out() -> None:
    registrar, _ = make_registrar()
    attacker = Phone(registrar, password="guess", flow=OTHER_FLOW)
    attacker.send(T0)
    statuses = [attacker.send(T0 + 7 * n).response.status_code for n in range(20)]
    assert set(statuses) == {401}


def test_success_resets_no_counters() -> None:
    registrar, _ = make_registrar(RegistrarConfig(failure_threshold=3))
    attacker = Phone(registrar, password="guess", flow=OTHER_FLOW)
    attacker.send(T0)
    assert attacker.send(T0).response.status_code == 401
    assert attacker.send(T0 + 1).response.status_code == 401
    # A success elsewhere, and one from the attacker's own address, reset nothing.
    assert Phone(registrar).register(T0 + 2).response.status_code == 200
    same_address = Phone(registrar, user="bob", password="bob-secret", flow=OTHER_FLOW)
    assert same_address.register(T0 + 2).response.status_code == 200
    assert attacker.send(T0 + 3).response.status_code == 403


def test_failure_tracker_memory_is_bounded() -> None:
    tracker = AuthenticationFailureTracker(threshold=3, window=60.0, lockout=300.0,
                                           max_sources=100)
    for n in range(10_000):
        tracker.record_failure(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", T0)
    assert len(tracker) == 100
    assert tracker.evictions == 9_900
    # Idle records go once they can no longer matter (after window and lockout).
    tracker.record_failure("192.0.2.1", T0 + 301)
    assert len(tracker) == 1


def test_failure_tracker_bound_through_the_registrar() -> None:
    registrar, _ = make_registrar(RegistrarConfig(max_tracked_sources=50))
    for n in range(200):
        phone = Phone(registrar, password="guess", flow=Flow(Transport.UDP, (f"10.0.1.{n}", 5060)))
        phone.send(T0)
        phone.send(T0)
    assert len(registrar.failure_tracker) == 50
    assert registrar.counters["auth_failed"] == 200


def test_lockout_survives_tracker_pressure_while_active() -> None:
    tracker = AuthenticationFailureTracker(threshold=2, window=60.0, lockout=300.0,
                                           max_sources=10)
    tracker.record_failure("192.0.2.1", T0)
    assert tracker.record_failure("192.0.2.1", T0 + 1)
    assert tracker.is_locked("192.0.2.1", T0 + 299)
    assert not tracker.is_locked("192.0.2.1", T0 + 302)


# --- Configuration and the table ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_expires": 0},
        {"min_expires": 4000},
        {"default_expires": 30},
        {"default_algorithms": ()},
        {"default_algorithms": ("SHA-512",)},
        {"failure_threshold": 0},
        {"max_tracked_sources": 0},
        {"failure_window": 0.0},
    ],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RegistrarConfig(**kwargs)  # type: ignore[arg-type]


def test_binding_table_is_empty_at_start() -> None:
    table = BindingTable()
    assert len(table) == 0 and table.next_expiry() is None and table.expire(T0) == []
    assert table.lookup(AddressOfRecord(DOMAIN, "alice"), T0) == []
