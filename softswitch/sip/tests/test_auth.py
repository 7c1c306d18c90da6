"""Digest authentication: RFC 7616 vectors, the challenge/verify round trip, nonce
lifetime and replays, header parse/serialize round trips, and fuzzing of the parsers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.auth import (
    DigestChallenge,
    DigestCredentials,
    NonceManager,
    NonceStatus,
    VerificationStatus,
    answer_challenge,
    build_challenges,
    canonical_algorithm,
    compute_ha1,
    compute_response,
    verify,
)
from softswitch.sip.errors import LocalProtocolError, RemoteProtocolError

# RFC 7616 §3.9.1.
RFC_USERNAME = "Mufasa"
RFC_PASSWORD = "Circle of Life"
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_URI = "/dir/index.html"
RFC_RESPONSES = {
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
}

REALM = "sip.example.net"
SECRET = b"0123456789abcdef0123456789abcdef"
LIFETIME = 300.0
T0 = 1_000.0


def counting_random_bytes() -> Callable[[int], bytes]:
    """A deterministic `random_bytes`: 0x00.., 0x01.., ... one fill byte per call."""
    counter = itertools.count()

    def random_bytes(length: int) -> bytes:
        return bytes([next(counter) % 256]) * length

    return random_bytes


def make_manager(max_tracked_nonces: int = 4096) -> NonceManager:
    return NonceManager(
        SECRET,
        LIFETIME,
        random_bytes=counting_random_bytes(),
        max_tracked_nonces=max_tracked_nonces,
    )


def stored_ha1(username: str = "alice", password: str = "s3cret") -> dict[str, str]:
    return {name: compute_ha1(username, REALM, password, name) for name in ("MD5", "SHA-256")}


def client_answer(
    challenge: DigestChallenge,
    *,
    password: str = "s3cret",
    method: str = "REGISTER",
    nonce_count: int = 1,
) -> DigestCredentials:
    algorithm = canonical_algorithm(challenge.algorithm)
    assert algorithm is not None and challenge.realm is not None
    return answer_challenge(
        challenge,
        username="alice",
        ha1=compute_ha1("alice", challenge.realm, password, algorithm),
        method=method,
        uri="sip:sip.example.net",
        cnonce="0a4f113b",
        nonce_count=nonce_count,
    )


def run_verify(
    credentials: DigestCredentials, manager: NonceManager, now: float, method: str = "REGISTER"
) -> VerificationStatus:
    return verify(credentials, method, stored_ha1(), manager, now, REALM).status


# --- RFC 7616 §3.9.1 --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc7616_worked_example(algorithm: str) -> None:
    ha1 = compute_ha1(RFC_USERNAME, RFC_REALM, RFC_PASSWORD, algorithm)
    response = compute_response(
        ha1,
        algorithm=algorithm,
        method="GET",
        uri=RFC_URI,
        nonce=RFC_NONCE,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == RFC_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc7616_example_headers(algorithm: str) -> None:
    """The example's header values, folded as printed, parse and answer to the vector."""
    challenge = DigestChallenge.parse(
        "Digest\r\n"
        f'       realm="{RFC_REALM}",\r\n'
        '       qop="auth, auth-int",\r\n'
        f"       algorithm={algorithm},\r\n"
        f'       nonce="{RFC_NONCE}",\r\n'
        f'       opaque="{RFC_OPAQUE}"'
    )
    assert (challenge.realm, challenge.nonce, challenge.algorithm) == (
        RFC_REALM,
        RFC_NONCE,
        algorithm,
    )
    assert challenge.qop == "auth, auth-int" and challenge.opaque == RFC_OPAQUE
    credentials = answer_challenge(
        challenge,
        username=RFC_USERNAME,
        ha1=compute_ha1(RFC_USERNAME, RFC_REALM, RFC_PASSWORD, algorithm),
        method="GET",
        uri=RFC_URI,
        cnonce=RFC_CNONCE,
    )
    assert credentials.response == RFC_RESPONSES[algorithm]
    assert credentials.qop == "auth" and credentials.nc == "00000001"
    assert credentials.opaque == RFC_OPAQUE

    authorization = DigestCredentials.parse(
        f'Digest username="{RFC_USERNAME}",\r\n'
        f'       realm="{RFC_REALM}",\r\n'
        f'       uri="{RFC_URI}",\r\n'
        f"       algorithm={algorithm},\r\n"
        f'       nonce="{RFC_NONCE}",\r\n'
        "       nc=00000001,\r\n"
        f'       cnonce="{RFC_CNONCE}",\r\n'
        "       qop=auth,\r\n"
        f'       response="{RFC_RESPONSES[algorithm]}",\r\n'
        f'       opaque="{RFC_OPAQUE}"'
    )
    assert authorization == credentials


def test_rfc2069_form_without_qop() -> None:
    ha1 = compute_ha1(RFC_USERNAME, RFC_REALM, RFC_PASSWORD, "MD5")
    response = compute_response(ha1, algorithm="MD5", method="GET", uri=RFC_URI, nonce=RFC_NONCE)
    # H(HA1 ":" nonce ":" HA2), computed independently.
    ha2 = hashlib.md5(f"GET:{RFC_URI}".encode()).hexdigest()
    assert response == hashlib.md5(f"{ha1}:{RFC_NONCE}:{ha2}".encode()).hexdigest()


def test_session_algorithm_derives_from_the_stored_ha1() -> None:
    ha1 = compute_ha1("alice", REALM, "s3cret", "SHA-256-sess")
    assert ha1 == compute_ha1("alice", REALM, "s3cret", "SHA-256")
    response = compute_response(
        ha1,
        algorithm="SHA-256-sess",
        method="INVITE",
        uri="sip:bob@example.net",
        nonce="n",
        qop="auth",
        nc="00000001",
        cnonce="c",
    )
    session = hashlib.sha256(f"{ha1}:n:c".encode()).hexdigest()
    ha2 = hashlib.sha256(b"INVITE:sip:bob@example.net").hexdigest()
    expected = hashlib.sha256(f"{session}:n:00000001:c:auth:{ha2}".encode()).hexdigest()
    assert response == expected


def test_compute_refuses_what_it_cannot_hash() -> None:
    with pytest.raises(LocalProtocolError):
        compute_ha1("a", "r", "p", "SHA-512-256")
    request = {"algorithm": "MD5", "method": "GET", "uri": "/", "nonce": "n"}
    with pytest.raises(LocalProtocolError):
        compute_response("00", **request, qop="auth-int", nc="00000001", cnonce="c")
    with pytest.raises(LocalProtocolError):
        compute_response("00", **request, qop="auth")  # no nc, no cnonce
    with pytest.raises(LocalProtocolError):
        compute_response("00", **{**request, "algorithm": "MD5-sess"})  # no cnonce


def test_canonical_algorithm() -> None:
    assert canonical_algorithm(None) == "MD5"
    assert canonical_algorithm("sha-256") == "SHA-256"
    assert canonical_algorithm("md5-SESS") == "MD5-sess"
    assert canonical_algorithm("SHA-512-256") is None


# --- Challenges -------------------------------------------------------------------------------


def test_build_challenges_sha256_first_then_md5() -> None:
    challenges = build_challenges(REALM, "abc")
    assert [str(challenge) for challenge in challenges] == [
        'Digest realm="sip.example.net", nonce="abc", algorithm=SHA-256, qop="auth"',
        'Digest realm="sip.example.net", nonce="abc", algorithm=MD5, qop="auth"',
    ]


def test_build_challenges_stale_and_opaque() -> None:
    (challenge,) = build_challenges(REALM, "abc", ["sha-256"], stale=True, opaque="xyz")
    assert str(challenge) == (
        'Digest realm="sip.example.net", nonce="abc", algorithm=SHA-256, qop="auth", '
        'stale=true, opaque="xyz"'
    )
    assert DigestChallenge.parse(str(challenge)) == challenge


@pytest.mark.parametrize("algorithms", [[], ["MD5", "md5"], ["SHA-512-256"]])
def test_build_challenges_refuses_bad_algorithm_lists(algorithms: list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        build_challenges(REALM, "abc", algorithms)


# --- Round trip through NonceManager and verify() ---------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_round_trip_ok(index: int) -> None:
    manager = make_manager()
    challenge = build_challenges(REALM, manager.issue(T0))[index]
    # The client sees the header text, not our object.
    credentials = client_answer(DigestChallenge.parse(str(challenge)))
    wire = DigestCredentials.parse(str(credentials))
    assert run_verify(wire, manager, T0 + 1) is VerificationStatus.OK


def test_wrong_password_is_wrong() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    credentials = client_answer(challenge, password="guess")
    result = verify(credentials, "REGISTER", stored_ha1(), manager, T0 + 1, REALM)
    assert result.status is VerificationStatus.WRONG and not result.challenge_stale


def test_unknown_user_is_wrong() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    result = verify(client_answer(challenge), "REGISTER", {}, manager, T0 + 1, REALM)
    assert result.status is VerificationStatus.WRONG


def test_method_is_part_of_the_digest() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    credentials = client_answer(challenge, method="REGISTER")
    assert run_verify(credentials, manager, T0 + 1, method="INVITE") is VerificationStatus.WRONG


def test_expired_nonce_with_right_digest_is_stale() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    credentials = client_answer(challenge)
    result = verify(credentials, "REGISTER", stored_ha1(), manager, T0 + LIFETIME + 1, REALM)
    assert result.status is VerificationStatus.STALE and result.challenge_stale
    # The client retries with a fresh nonce, without its user.
    (fresh,) = build_challenges(REALM, manager.issue(T0 + LIFETIME + 1), ["SHA-256"], stale=True)
    retry = client_answer(DigestChallenge.parse(str(fresh)))
    assert run_verify(retry, manager, T0 + LIFETIME + 2) is VerificationStatus.OK


def test_expired_nonce_with_wrong_digest_is_wrong() -> None:
    # RFC 7616 §3.3: stale only when the client proved it knows the password.
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    credentials = client_answer(challenge, password="guess")
    assert run_verify(credentials, manager, T0 + LIFETIME + 1) is VerificationStatus.WRONG


def test_nonce_lifetime_boundaries() -> None:
    manager = make_manager()
    nonce = manager.issue(T0)
    assert manager.check(nonce, T0) is NonceStatus.VALID
    assert manager.check(nonce, T0 + LIFETIME) is NonceStatus.VALID
    assert manager.check(nonce, T0 + LIFETIME + 0.001) is NonceStatus.STALE
    assert manager.check(nonce, T0 - LIFETIME - 0.001) is NonceStatus.STALE
    assert manager.check(nonce, float("nan")) is NonceStatus.STALE


def test_forged_nonce_is_invalid() -> None:
    manager = make_manager()
    nonce = manager.issue(T0)
    other_secret = NonceManager(b"another secret, 32 bytes long!!!", LIFETIME).issue(T0)
    flipped = nonce[:5] + ("B" if nonce[5] == "A" else "A") + nonce[6:]
    for forged in (other_secret, flipped, "", "abc", nonce + "A", "é" * 48, "=" * 48):
        assert manager.check(forged, T0) is NonceStatus.INVALID, forged
    (challenge,) = build_challenges(REALM, flipped, ["SHA-256"])
    result = verify(client_answer(challenge), "REGISTER", stored_ha1(), manager, T0, REALM)
    assert result.status is VerificationStatus.INVALID_NONCE and not result.challenge_stale


def test_nonces_are_distinct_and_deterministic() -> None:
    first, second = make_manager(), make_manager()
    nonces = [first.issue(T0) for _ in range(3)]
    assert len(set(nonces)) == 3
    assert nonces == [second.issue(T0) for _ in range(3)]
    assert all(len(nonce) == 48 for nonce in nonces)


def test_nonce_count_replay_is_refused() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])

    def status(nonce_count: int) -> VerificationStatus:
        return run_verify(client_answer(challenge, nonce_count=nonce_count), manager, T0 + 1)

    assert status(1) is VerificationStatus.OK
    assert status(1) is VerificationStatus.REPLAYED
    assert status(2) is VerificationStatus.OK
    # Reordered in transit: 4 arrives before 3; both are fresh, neither twice.
    assert status(4) is VerificationStatus.OK
    assert status(3) is VerificationStatus.OK
    assert status(3) is VerificationStatus.REPLAYED
    assert status(4) is VerificationStatus.REPLAYED
    # Far below the highest count seen: outside the window, refused.
    assert status(1000) is VerificationStatus.OK
    assert status(5) is VerificationStatus.REPLAYED


def test_replay_result_asks_for_a_stale_challenge() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["MD5"])
    credentials = client_answer(challenge)
    assert verify(credentials, "REGISTER", stored_ha1(), manager, T0, REALM).ok
    replay = verify(credentials, "REGISTER", stored_ha1(), manager, T0, REALM)
    assert replay.status is VerificationStatus.REPLAYED and replay.challenge_stale


def test_failed_digest_does_not_burn_the_nonce_count() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    assert run_verify(client_answer(challenge, password="guess"), manager, T0) is (
        VerificationStatus.WRONG
    )
    assert run_verify(client_answer(challenge), manager, T0) is VerificationStatus.OK


def test_nonce_count_memory_is_bounded_and_never_lets_a_replay_through() -> None:
    manager = make_manager(max_tracked_nonces=2)
    challenges = [
        build_challenges(REALM, manager.issue(T0 + offset), ["SHA-256"])[0] for offset in range(3)
    ]
    for challenge in challenges:
        assert run_verify(client_answer(challenge), manager, T0 + 5) is VerificationStatus.OK
    # The first nonce's record was dropped: its next count is refused (the client gets
    # stale=true and a fresh nonce) rather than accepting a possible replay.
    first = client_answer(challenges[0], nonce_count=1)
    assert run_verify(first, manager, T0 + 5) is VerificationStatus.REPLAYED
    # Tracked nonces still work.
    later = client_answer(challenges[2], nonce_count=2)
    assert run_verify(later, manager, T0 + 5) is VerificationStatus.OK


def test_rfc2069_credentials_refused_unless_allowed() -> None:
    manager = make_manager()
    nonce = manager.issue(T0)
    challenge = DigestChallenge(realm=REALM, nonce=nonce, algorithm="MD5")  # no qop offered
    credentials = client_answer(challenge)
    assert credentials.qop is None and credentials.nc is None
    assert run_verify(credentials, manager, T0) is VerificationStatus.WRONG
    allowed = verify(credentials, "REGISTER", stored_ha1(), manager, T0, REALM, allow_rfc2069=True)
    assert allowed.ok


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scheme": "Basic"}, "not Digest credentials"),
        ({"username": None}, "missing username, realm, nonce, uri or response"),
        ({"response": None}, "missing username, realm, nonce, uri or response"),
        ({"realm": "other.example.net"}, "realm is not ours"),
        ({"algorithm": "SHA-512-256"}, "unsupported algorithm"),
        ({"qop": "auth-int"}, "qop other than auth"),
        ({"nc": "1"}, "qop auth without a valid nc and cnonce"),
        ({"nc": "00000000"}, "nonce count 0"),
        ({"cnonce": None}, "qop auth without a valid nc and cnonce"),
        ({"response": "é" * 64}, "response does not match"),
        ({"opaque": "not-ours"}, "opaque does not match the challenge"),
    ],
)
def test_wrong_credentials(change: dict[str, Any], reason: str) -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"], opaque="ours")
    credentials = dataclasses.replace(client_answer(challenge), **change)
    result = verify(
        credentials, "REGISTER", stored_ha1(), manager, T0, REALM, expected_opaque="ours"
    )
    assert (result.status, result.reason) == (VerificationStatus.WRONG, reason)


def test_uppercase_hex_response_and_lowercase_algorithm_are_accepted() -> None:
    manager = make_manager()
    (challenge,) = build_challenges(REALM, manager.issue(T0), ["SHA-256"])
    credentials = client_answer(challenge)
    assert credentials.response is not None
    header = str(credentials).replace(credentials.response, credentials.response.upper())
    header = header.replace("algorithm=SHA-256", "algorithm=sha-256")
    assert run_verify(DigestCredentials.parse(header), manager, T0) is VerificationStatus.OK


def test_nonce_manager_refuses_insecure_settings() -> None:
    with pytest.raises(ValueError):
        NonceManager(b"short", LIFETIME)
    with pytest.raises(ValueError):
        NonceManager(SECRET, 0)
    with pytest.raises(ValueError):
        NonceManager(SECRET, LIFETIME, max_tracked_nonces=0)
    with pytest.raises(ValueError):
        NonceManager(SECRET, LIFETIME).issue(float("inf"))
    with pytest.raises(ValueError):
        NonceManager(SECRET, LIFETIME, random_bytes=lambda n: b"x").issue(T0)


# --- Parse / serialize ------------------------------------------------------------------------


def test_rfc4475_regaut01_unknown_scheme() -> None:
    # RFC 4475 §3.3.7: an unknown scheme parses; the registrar answers 401.
    credentials = DigestCredentials.parse("NoOneKnowsThisScheme opaque-data=here")
    assert credentials.scheme == "NoOneKnowsThisScheme" and not credentials.is_digest
    assert credentials.extension_params == (("opaque-data", "here"),)
    assert credentials.params == {"opaque-data": "here"}
    assert str(credentials) == "NoOneKnowsThisScheme opaque-data=here"
    manager = make_manager()
    assert run_verify(credentials, manager, T0) is VerificationStatus.WRONG


def test_credentials_serialize_with_rfc_quoting() -> None:
    credentials = DigestCredentials(
        username="alice",
        realm=REALM,
        nonce="n0nce",
        uri="sip:sip.example.net",
        response="abc123",
        algorithm="SHA-256",
        cnonce="c",
        qop="auth",
        nc="00000001",
        opaque="o",
    )
    assert str(credentials) == (
        'Digest username="alice", realm="sip.example.net", nonce="n0nce", '
        'uri="sip:sip.example.net", response="abc123", algorithm=SHA-256, cnonce="c", '
        'qop=auth, nc=00000001, opaque="o"'
    )
    assert DigestCredentials.parse(str(credentials)) == credentials


def test_parse_tolerates_whitespace_case_and_quoting_variants() -> None:
    text = (
        'digest  USERNAME = "bob" ,realm="r"\t,  Nonce=abc ,uri="sip:x"  ,response="00",'
        ' algorithm="MD5", qop="auth", nc=0000000A, cnonce="q\\"uote\\\\d"'
    )
    credentials = DigestCredentials.parse(text)
    assert credentials.is_digest and credentials.scheme == "digest"
    assert (credentials.username, credentials.nonce, credentials.algorithm) == ("bob", "abc", "MD5")
    assert credentials.cnonce == 'q"uote\\d'
    assert DigestCredentials.parse(str(credentials)) == credentials


def test_challenge_keeps_extension_parameters_and_stale_spelling() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", domain="sip:a sip:b", nonce="n", stale=TRUE, charset=UTF-8'
    )
    assert challenge.stale
    assert challenge.extension_params == (("domain", "sip:a sip:b"), ("charset", "UTF-8"))
    assert str(challenge) == (
        'Digest realm="r", nonce="n", stale=true, domain="sip:a sip:b", charset=UTF-8'
    )
    not_stale = DigestChallenge.parse('Digest realm="r", stale=FALSE')
    assert not not_stale.stale and not_stale.extension_params == (("stale", "FALSE"),)
    assert str(not_stale) == 'Digest realm="r", stale=FALSE'
    assert DigestChallenge.parse(str(challenge)) == challenge


def test_empty_and_escaped_values_round_trip() -> None:
    challenge = DigestChallenge(realm="", nonce='a"b\\c\x01', opaque="é")
    assert str(challenge) == 'Digest realm="", nonce="a\\"b\\\\c\\\x01", opaque="é"'
    assert DigestChallenge.parse(str(challenge)) == challenge


def test_serializing_a_line_break_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        str(DigestChallenge(realm="a\r\nEvil: header", nonce="n"))
    with pytest.raises(LocalProtocolError):
        str(DigestCredentials(scheme="Not a token", username="a"))
    with pytest.raises(LocalProtocolError):
        str(DigestCredentials(username="a", extension_params=(("username", "b"),)))
    with pytest.raises(LocalProtocolError):
        str(DigestChallenge())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty credentials"),
        ("   ", "empty credentials"),
        ('"Digest" realm="a"', "credentials does not start with an auth-scheme"),
        ("Digest", "credentials has no parameters after the auth-scheme"),
        ("Digest,realm=a", "credentials: the auth-scheme must be followed by whitespace"),
        ("Digest realm", "credentials: missing '=' after parameter 'realm'"),
        ('Digest realm "a"', "credentials: missing '=' after parameter 'realm'"),
        ("Digest realm=", "credentials: missing value for parameter 'realm'"),
        ("Digest realm=,nonce=b", "credentials: missing value for parameter 'realm'"),
        ('Digest realm="a', "credentials: unterminated quoted-string in parameter 'realm'"),
        ('Digest realm="a\\', "credentials: unterminated quoted-string in parameter 'realm'"),
        ('Digest realm="a\x00"', "credentials: control character in quoted-string of parameter 'realm'"),  # noqa: E501
        ('Digest realm="a\\é"', "credentials: invalid escape in quoted-string of parameter 'realm'"),  # noqa: E501
        ('Digest realm="a" nonce="b"', "credentials: expected ',' after parameter 'realm'"),
        ('Digest realm="a",', "credentials: expected a parameter name at offset 17"),
        ('Digest realm="a",,nonce="b"', "credentials: expected a parameter name at offset 17"),
        ('Digest realm="a", REALM="b"', "credentials: duplicate parameter 'realm'"),
        ('Digest realm="a", Basic realm="b"', "credentials: missing '=' after parameter 'basic'"),
        ("Digest uri=sip:a@b", "credentials: expected ',' after parameter 'uri'"),
        ('Digest realm="a"\r\n', "credentials: expected ',' after parameter 'realm'"),
    ],
)
def test_malformed_credentials_error_text(text: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        DigestCredentials.parse(text)
    assert (caught.value.reason, caught.value.status_code) == (reason, 400)


def test_malformed_challenge_says_challenge() -> None:
    with pytest.raises(RemoteProtocolError, match="^challenge: missing '='"):
        DigestChallenge.parse("Digest realm")


# --- Fuzzing ----------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    "Digest|digest|NoOneKnowsThisScheme| |\t|\r\n |\r\n|\n|,|=|\"|\\|\\\\|\\\"|realm|nonce|"
    "username|qop|nc|stale|true|auth|00000001|MD5|SHA-256|sip:a@b|é|\x00|\x7f|abc".split("|")
)
_TOKEN = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,8}", fullmatch=True)
_QUOTED = st.text(max_size=8).map(lambda text: '"' + re.sub(r'(["\\])', r"\\\1", text) + '"')
_SPACE = st.sampled_from(["", " ", "\t", "  ", " \r\n "])
_NAME = st.one_of(
    st.sampled_from(
        "realm nonce algorithm qop opaque stale domain username uri response cnonce nc".split()
    ),
    _TOKEN,
)


@st.composite
def _auth_values(draw: st.DrawFn) -> str:
    """Mostly well-formed values: scheme, then name=value pairs with assorted LWS."""
    scheme = draw(st.one_of(st.sampled_from(["Digest", "digest", "NoOneKnowsThisScheme"]), _TOKEN))
    names = draw(st.lists(_NAME, min_size=1, max_size=6, unique_by=str.lower))
    pairs = [
        f"{name}{draw(_SPACE)}={draw(_SPACE)}{draw(st.one_of(_TOKEN, _QUOTED))}" for name in names
    ]
    text = scheme + " " + "".join(f"{draw(_SPACE)},{draw(_SPACE)}{pair}" for pair in pairs)[1:]
    if draw(st.booleans()):  # one random edit
        index = draw(st.integers(0, len(text)))
        text = text[:index] + draw(st.one_of(_PIECES, st.just(""))) + text[index + 1 :]
    return text


_HEADER_TEXT = st.one_of(
    st.text(), st.lists(_PIECES, max_size=24).map("".join), _auth_values()
)


@settings(max_examples=400)
@given(_HEADER_TEXT)
def test_parse_raises_only_remote_protocol_error(text: str) -> None:
    for parse in (DigestChallenge.parse, DigestCredentials.parse):
        try:
            value = parse(text)
        except RemoteProtocolError as error:
            assert error.status_code == 400
            continue
        # Whatever parses serializes, and re-parses to the same value.
        assert parse(str(value)) == value


_VALUES = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["auth", "00000001", "MD5"]))


@settings(max_examples=200)
@given(
    username=_VALUES,
    realm=st.one_of(st.just(REALM), _VALUES),
    nonce=_VALUES,
    uri=_VALUES,
    response=_VALUES,
    algorithm=st.one_of(st.sampled_from(["SHA-256", "MD5-sess"]), _VALUES),
    cnonce=_VALUES,
    qop=_VALUES,
    nc=_VALUES,
    text=st.text(max_size=60),
)
def test_verify_and_check_never_raise(
    username: str | None,
    realm: str | None,
    nonce: str | None,
    uri: str | None,
    response: str | None,
    algorithm: str | None,
    cnonce: str | None,
    qop: str | None,
    nc: str | None,
    text: str,
) -> None:
    manager = make_manager()
    credentials = DigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=cnonce,
        qop=qop,
        nc=nc,
    )
    result = verify(credentials, "INVITE", stored_ha1(), manager, T0, REALM)
    assert result.status is not VerificationStatus.OK
    assert manager.check(text, T0) is NonceStatus.INVALID
