"""One brute-force lockout for REGISTER and INVITE (registrar rule 0, `caller_auth` rule 2).

The switch core is built by `softswitch.wiring.build_switch_core`, as `softswitch run`
builds it, so these tests also prove the wiring shares the tracker. INVITEs go through a
real `SipEndpoint` into the call service; REGISTERs into the registrar. Time is stepped
by the wall clock handed to the core.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from softswitch.b2bua.caller_auth import AuthenticatedCaller, CallerAuthenticator
from softswitch.registrar import AuthenticationFailureTracker, Registrar, RegistrarConfig
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import DigestChallenge, NonceManager, answer_challenge, compute_ha1
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.events import RequestReceived
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.wiring import SwitchCore, build_switch_core

from .test_routing import DOMAIN, PHONE, SNAPSHOT, SWITCH, credentials_for, invite, switch_endpoint

T0 = 1_800_000_000.0
# The registrar's defaults: 10 wrong digests within 60 s lock the address for 300 s.
THRESHOLD = 10
LOCKOUT = 300.0
# The same address as PHONE, another port: the lockout is per address.
PHONE_REGISTERING = Flow(Transport.UDP, (PHONE.remote[0], 5064))
ELSEWHERE = Flow(Transport.UDP, ("192.0.2.77", 5062))


@dataclass
class Switch:
    """The core over one endpoint, with a wall clock the test moves."""

    now: float = T0
    endpoint: SipEndpoint = field(default_factory=switch_endpoint)
    core: SwitchCore = field(init=False)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.core = build_switch_core(
            SNAPSHOT, self.endpoint, SWITCH, lambda: self.now, nonce_secret=b"n" * 32
        )

    def invite(
        self, flow: Flow, caller: str = "1001", authorization: str | None = None
    ) -> Response | None:
        """One new INVITE from `flow`; the call service's answer (None: routed)."""
        number = next(self._numbers)
        extra = "" if authorization is None else f"Proxy-Authorization: {authorization}\r\n"
        request = invite("2001", caller=caller, extra=extra, call_id=f"inv{number}")
        self.endpoint.receive_datagram(bytes(request), flow.remote, self.now)
        event = self.endpoint.next_event()
        assert isinstance(event, RequestReceived)
        answer = self.core.calls.handle_invite(event, self.now)
        self.endpoint.data_to_send()  # what was sent is not under test here
        return answer

    def challenge(self, flow: Flow, caller: str = "1001") -> Response:
        answer = self.invite(flow, caller)
        assert answer is not None and answer.status_code == 407
        return answer

    def register(self, flow: Flow, password: str, user: str = "1001") -> int:
        """REGISTER, answer the 401 like a phone; the final status."""
        first = self.core.registrar.handle_register(register(user, None), flow, self.now)
        if first.response.status_code != 401:
            return first.response.status_code
        challenge = DigestChallenge.parse(first.response.headers.get_all("WWW-Authenticate")[0])
        assert challenge.realm is not None and challenge.algorithm is not None
        credentials = answer_challenge(
            challenge,
            username=user,
            ha1=compute_ha1(user, challenge.realm, password, challenge.algorithm),
            method="REGISTER",
            uri=f"sip:{DOMAIN}",
            cnonce="feed",
        )
        second = self.core.registrar.handle_register(
            register(user, str(credentials)), flow, self.now
        )
        return second.response.status_code


_registers = itertools.count(1)


def register(user: str, authorization: str | None) -> Request:
    number = next(_registers)
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP {PHONE_REGISTERING.remote[0]}:5064;branch=z9hG4bK-reg{number}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=r{number}",
        f"To: <sip:{user}@{DOMAIN}>",
        f"Call-ID: reg-{number}",
        f"CSeq: {number} REGISTER",
        f"Contact: <sip:{user}@{PHONE_REGISTERING.remote[0]}:5064>",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += ["Content-Length: 0", "", ""]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    message.validate()
    return message


def status(answer: Response | None) -> int | None:
    return None if answer is None else answer.status_code


def _shape(response: Response | None) -> tuple[object, ...]:
    """Status, reason, header names and challenges with the nonce blanked."""
    assert response is not None
    challenges = [
        DigestChallenge.parse(value) for value in response.headers.get_all("Proxy-Authenticate")
    ]
    blanked = [
        str(DigestChallenge(realm=c.realm, nonce="-", algorithm=c.algorithm, qop=c.qop,
                            opaque=c.opaque, stale=c.stale))
        for c in challenges
    ]
    return (response.status_code, response.reason, [name for name, _ in response.headers], blanked)


def test_the_wiring_shares_one_tracker() -> None:
    switch = Switch()
    tracker = switch.core.registrar.failure_tracker
    assert len(tracker) == 0
    challenge = switch.challenge(PHONE)
    switch.invite(PHONE, authorization=credentials_for(challenge, "1001", "guess"))
    # The INVITE's failure is in the registrar's tracker.
    assert len(tracker) == 1


def test_wrong_invite_passwords_lock_out_invite_and_register() -> None:
    switch = Switch()
    challenge = switch.challenge(PHONE)
    wrong = credentials_for(challenge, "1001", "guess")
    statuses = []
    for _ in range(THRESHOLD):
        statuses.append(status(switch.invite(PHONE, authorization=wrong)))
        switch.now += 1
    assert statuses == [407] * (THRESHOLD - 1) + [403]
    # Locked out: the right password gets 403 on INVITE...
    challenge = switch.challenge(ELSEWHERE)  # a fresh nonce, fetched from elsewhere
    right = credentials_for(challenge, "1001", "pass1001")
    assert status(switch.invite(PHONE, authorization=right)) == 403
    assert status(switch.invite(PHONE)) == 403  # no challenge either
    # ...and on REGISTER, from any port of that address (RFC 3261 §10.3, rule 0).
    assert switch.register(PHONE_REGISTERING, "pass1001") == 403
    # Another address is not affected.
    assert switch.register(ELSEWHERE, "pass1001") == 200
    # Once the lockout is over, the address is served again.
    switch.now += LOCKOUT
    challenge = switch.challenge(PHONE)
    assert status(switch.invite(PHONE, authorization=credentials_for(
        challenge, "1001", "pass1001"))) is None  # authenticated and routed
    assert switch.register(PHONE_REGISTERING, "pass1001") == 200


def test_wrong_register_passwords_lock_out_invite() -> None:
    switch = Switch()
    statuses = [switch.register(PHONE_REGISTERING, "guess") for _ in range(THRESHOLD)]
    assert statuses == [401] * (THRESHOLD - 1) + [403]
    challenge = switch.challenge(ELSEWHERE)
    right = credentials_for(challenge, "1001", "pass1001")
    assert status(switch.invite(PHONE, authorization=right)) == 403


def test_register_and_invite_failures_add_up() -> None:
    switch = Switch()
    half = THRESHOLD // 2
    assert [switch.register(PHONE_REGISTERING, "guess") for _ in range(half)] == [401] * half
    challenge = switch.challenge(PHONE)
    wrong = credentials_for(challenge, "1001", "guess")
    statuses = [status(switch.invite(PHONE, authorization=wrong)) for _ in range(half)]
    assert statuses == [407] * (half - 1) + [403]


def test_unknown_caller_is_answered_exactly_like_a_wrong_password() -> None:
    # Two sources, one guessing 1001's password, one an extension that does not exist.
    switch = Switch()
    wrong_source = PHONE
    unknown_source = ELSEWHERE
    assert _shape(switch.challenge(wrong_source)) == _shape(
        switch.challenge(unknown_source, caller="7777")
    )
    challenge = switch.challenge(ELSEWHERE)
    wrong = credentials_for(challenge, "1001", "guess")
    unknown = credentials_for(challenge, "7777", "pass7777")
    for _ in range(THRESHOLD + 2):
        wrong_answer = switch.invite(wrong_source, authorization=wrong)
        unknown_answer = switch.invite(unknown_source, caller="7777", authorization=unknown)
        assert _shape(wrong_answer) == _shape(unknown_answer)
    # Both were locked out at the same step, and REGISTER is refused to both alike.
    assert status(wrong_answer) == status(unknown_answer) == 403
    assert switch.register(Flow(Transport.UDP, (wrong_source.remote[0], 5070)), "pass1001") == 403
    assert switch.register(unknown_source, "pass1001") == 403


def test_stale_and_foreign_nonces_do_not_count() -> None:
    switch = Switch()
    # A nonce issued with another key (say, a switch that is gone): never a failure.
    foreign = NonceManager(b"x" * 32, 300.0).issue(switch.now)
    challenge = switch.challenge(PHONE)
    forged = DigestChallenge(
        realm=challenge_realm(challenge), nonce=foreign, algorithm="MD5", qop="auth"
    )
    wrong_with_foreign_nonce = str(
        answer_challenge(
            forged,
            username="1001",
            ha1=compute_ha1("1001", DOMAIN, "guess", "MD5"),
            method="INVITE",
            uri=f"sip:2001@{DOMAIN}",
            cnonce="c",
        )
    )
    statuses = {
        status(switch.invite(PHONE, authorization=wrong_with_foreign_nonce))
        for _ in range(2 * THRESHOLD)
    }
    assert statuses == {407}
    # A stale nonce (older than its lifetime) with the right password: stale=true, no count.
    old = switch.challenge(PHONE)
    switch.now += 301
    for _ in range(2 * THRESHOLD):
        answer = switch.invite(PHONE, authorization=credentials_for(old, "1001", "pass1001"))
        assert answer is not None and answer.status_code == 407
    assert len(switch.core.registrar.failure_tracker) == 0


def challenge_realm(response: Response) -> str:
    realm = DigestChallenge.parse(response.headers.get_all("Proxy-Authenticate")[0]).realm
    assert realm is not None
    return realm


def test_an_authenticator_without_a_shared_tracker_still_locks_out() -> None:
    endpoint = switch_endpoint()
    directory = SnapshotDirectory(SNAPSHOT)
    nonces = NonceManager(b"k" * 32, 300.0)
    tracker = AuthenticationFailureTracker.for_config(RegistrarConfig(failure_threshold=2))
    registrar = Registrar(RegistrarConfig(), directory, directory, nonces, endpoint, tracker)
    assert registrar.failure_tracker is tracker
    alone = CallerAuthenticator(SNAPSHOT, directory, directory, nonces, endpoint)
    challenge = alone.authenticate(invite("2001"), PHONE, T0)
    assert isinstance(challenge, Response)
    wrong = f"Proxy-Authorization: {credentials_for(challenge, '1001', 'guess')}\r\n"
    answers = [
        alone.authenticate(invite("2001", extra=wrong, call_id=f"a{n}"), PHONE, T0)
        for n in range(THRESHOLD)
    ]
    assert [a.status_code for a in answers if isinstance(a, Response)] == [407] * (
        THRESHOLD - 1
    ) + [403]
    assert alone.counters["invite_auth_lockouts"] == 1
    # Its own tracker: the registrar's knows nothing of it.
    assert len(tracker) == 0
    later = T0 + LOCKOUT + 1
    challenge = alone.authenticate(invite("2001", call_id="b"), PHONE, later)
    assert isinstance(challenge, Response) and challenge.status_code == 407
    right = f"Proxy-Authorization: {credentials_for(challenge, '1001', 'pass1001')}\r\n"
    assert alone.authenticate(
        invite("2001", extra=right, call_id="c"), PHONE, later
    ) == AuthenticatedCaller(DOMAIN, "1001")
