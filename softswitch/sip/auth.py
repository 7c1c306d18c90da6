"""Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760): parse, build, verify.

Rules:
- The switch stores HA1 = H(username ":" realm ":" password) per user and hash algorithm,
  never the password (RFC 7616 §5.2). HA1 is enough to verify and to answer challenges, it
  is only good for that one realm, and a leaked table does not reveal the passwords users
  reuse elsewhere. `compute_ha1()` is for provisioning; `verify()` and `answer_challenge()`
  only ever see HA1 values. The `-sess` variants derive their session key from the same
  stored HA1 (RFC 7616 §3.4.2), so `stored_ha1_by_algorithm` is keyed by "MD5" / "SHA-256".
- A 401/407 carries one challenge per algorithm, as separate header values, most
  preferred first: SHA-256, then MD5 (RFC 8760 §2.3). A UAC uses the topmost challenge
  whose algorithm it supports (RFC 8760 §2.4), so modern phones use SHA-256 while the
  installed base that only knows MD5 keeps working. Every challenge offers qop="auth".
- Nonces are stateless: base64(issue time | random bytes | HMAC-SHA256(secret, both)).
  Any process holding the secret can check them; `now` must come from the same clock
  wherever the secret is shared (the wall clock for a cluster, `loop.time()` for one
  process). Nothing here reads a clock: time is always the `now` argument.
- Stale: a nonce that is authentic but older than its lifetime is STALE. Only when the
  digest is also right does `verify()` answer STALE, and the element challenges again
  with stale=true so the client retries with the fresh nonce without asking its user
  (RFC 7616 §3.3). A wrong digest is WRONG whatever the nonce's age; a forged or mangled
  nonce is INVALID_NONCE (challenge again, stale=false).
- Replays: qop="auth" responses carry a nonce count `nc` (RFC 7616 §3.4, §5.5).
  `NonceManager` remembers, for a bounded number of recently used nonces, the counts
  already accepted (with a small window so requests reordered over UDP still pass); a
  count seen twice gives REPLAYED, answered like STALE. Responses without qop (RFC 2069)
  cannot be protected that way and are refused unless `verify(..., allow_rfc2069=True)`.
- Parsing follows RFC 3261 §25.1: an auth-scheme token, whitespace, then comma-separated
  `name=value` pairs, each value a token or a quoted-string with backslash escapes, LWS
  allowed around `=` and `,`. Names are case-insensitive (kept lower-case), a name may
  appear once, and a value may arrive as token or quoted-string whatever its parameter
  (RFC 7235 §2.1). Unknown schemes parse too (RFC 4475 §3.3.7) and keep their parameters
  in `extension_params`. Every syntax error raises `RemoteProtocolError(reason, 400)`,
  whose reason never echoes the peer's bytes; nothing else escapes for any input string.
- Serializing quotes the parameters RFC 7616 §3.3/§3.4 and RFC 3261 §25.1 quote (realm,
  nonce, opaque, qop in a challenge, username, uri, response, cnonce) and writes the
  others as tokens when they are tokens, so `parse(str(value)) == value`.
- Not supported: qop="auth-int" (needs the body hash), `userhash` and `username*`
  (RFC 7616 §3.4.4), SHA-512-256. Such credentials verify as WRONG; asking the compute
  helpers for them raises `LocalProtocolError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "DigestChallenge",
    "DigestCredentials",
    "NonceManager",
    "NonceStatus",
    "VerificationResult",
    "VerificationStatus",
    "answer_challenge",
    "build_challenges",
    "canonical_algorithm",
    "compute_ha1",
    "compute_response",
    "verify",
]

# RFC 7616 §3.3 and RFC 8760 §2.1: the algorithms we hash with, in our order of preference.
SUPPORTED_ALGORITHMS: Final = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")
# RFC 8760 §2.3: what a challenge offers by default, most preferred first.
DEFAULT_ALGORITHMS: Final = ("SHA-256", "MD5")

_HASHLIB_NAMES: Final = {"MD5": "md5", "SHA-256": "sha256"}
_CANONICAL_ALGORITHMS: Final = {name.lower(): name for name in SUPPORTED_ALGORITHMS}
_SESSION_SUFFIX: Final = "-sess"

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# §7.3.1: a folded line (CRLF followed by whitespace) is equivalent to one space.
_FOLD_RE: Final = re.compile(r"[ \t]*\r?\n[ \t]+")
# §25.1: nc-value = 8LHEX (upper-case digits are accepted from peers).
_NONCE_COUNT_RE: Final = re.compile(r"[0-9A-Fa-f]{8}")
_WHITESPACE: Final = " \t"


def canonical_algorithm(name: str | None) -> str | None:
    """The supported algorithm `name` spells, in our spelling ("sha-256" -> "SHA-256").

    Returns:
        "MD5" when `name` is None (an absent algorithm parameter means MD5, RFC 7616 §3.3),
        None when the algorithm is not supported (a UAC then tries the next challenge).
    """
    if name is None:
        return "MD5"
    return _CANONICAL_ALGORITHMS.get(name.lower())


def _require_algorithm(name: str) -> str:
    algorithm = canonical_algorithm(name)
    if algorithm is None:
        raise LocalProtocolError(f"digest algorithm {name!r} is not supported")
    return algorithm


def _base_algorithm(algorithm: str) -> str:
    """The base algorithm ("SHA-256" for "SHA-256-sess"): the hash, and the HA1 key."""
    return algorithm.removesuffix(_SESSION_SUFFIX)


def _utf8(text: str) -> bytes:
    # RFC 7616 §4: digest input is UTF-8. surrogatepass keeps this total for any str.
    return text.encode("utf-8", "surrogatepass")


def _hash_hex(algorithm: str, text: str) -> str:
    """H(text) as lower-case hex (RFC 7616 §3.4: H, KD and the hex encoding)."""
    return hashlib.new(_HASHLIB_NAMES[_base_algorithm(algorithm)], _utf8(text)).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """HA1 = H(username ":" realm ":" password) for provisioning (RFC 7616 §3.4.2).

    For a `-sess` algorithm this is the same value as for its base algorithm: store it
    under "MD5" / "SHA-256"; `compute_response()` derives the session key per nonce.

    Raises:
        LocalProtocolError: `algorithm` is not in `SUPPORTED_ALGORITHMS`.
    """
    return _hash_hex(_require_algorithm(algorithm), f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    *,
    algorithm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (the `response` parameter) as lower-case hex, RFC 7616 §3.4.1.

    Args:
        ha1: the stored HA1 for the algorithm's hash (hex, either case).
        algorithm: one of `SUPPORTED_ALGORITHMS`.
        method: the request method, e.g. "REGISTER" or "INVITE".
        uri: the `uri` parameter exactly as sent (digest-uri-value).
        nonce, qop, nc, cnonce: the parameters exactly as sent; qop None gives the
            RFC 2069 form H(HA1 ":" nonce ":" HA2).

    Raises:
        LocalProtocolError: unsupported algorithm, a qop other than "auth", or qop "auth"
            (or a `-sess` algorithm) without nc / cnonce.
    """
    algorithm = _require_algorithm(algorithm)
    session_key = ha1.lower()
    if algorithm.endswith(_SESSION_SUFFIX):
        if cnonce is None:
            raise LocalProtocolError(f"{algorithm} needs a cnonce")
        # RFC 7616 §3.4.2: A1 = H(username:realm:passwd) ":" nonce-prime ":" cnonce-prime.
        session_key = _hash_hex(algorithm, f"{session_key}:{nonce}:{cnonce}")
    # RFC 7616 §3.4.3: A2 = Method ":" request-uri for qop "auth" (or no qop).
    ha2 = _hash_hex(algorithm, f"{method}:{uri}")
    if qop is None:
        # RFC 2069 compatibility (RFC 2617 §3.2.2.1): no nc, no cnonce.
        return _hash_hex(algorithm, f"{session_key}:{nonce}:{ha2}")
    if qop.lower() != "auth":
        raise LocalProtocolError(f"qop {qop!r} is not supported (only 'auth')")
    if nc is None or cnonce is None:
        raise LocalProtocolError("qop 'auth' needs nc and cnonce")
    # RFC 7616 §3.4.1: KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2)).
    return _hash_hex(algorithm, f"{session_key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- Parsing and serializing ---------------------------------------------------------------


def _is_control(character: str) -> bool:
    """Characters a quoted-string may only carry escaped (RFC 3261 §25.1 qdtext)."""
    return (character < " " and character != "\t") or character == "\x7f"


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _read_quoted_string(text: str, position: int, what: str, name: str) -> tuple[str, int]:
    """Unescape the quoted-string opening at `position`; return it and the index after it.

    RFC 3261 §25.1: quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE, where
    quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F) and qdtext excludes controls.
    """
    characters: list[str] = []
    index = position + 1
    while index < len(text):
        character = text[index]
        if character == '"':
            return "".join(characters), index + 1
        if character == "\\":
            escaped = text[index + 1 : index + 2]
            if not escaped:
                break
            if escaped in "\r\n" or not escaped.isascii():
                raise RemoteProtocolError(
                    f"{what}: invalid escape in quoted-string of parameter {name!r}"
                )
            characters.append(escaped)
            index += 2
            continue
        if _is_control(character):
            raise RemoteProtocolError(
                f"{what}: control character in quoted-string of parameter {name!r}"
            )
        characters.append(character)
        index += 1
    raise RemoteProtocolError(f"{what}: unterminated quoted-string in parameter {name!r}")


def _parse_auth_value(text: str, what: str) -> tuple[str, dict[str, str]]:
    """Split a challenge / credentials value into its scheme and its parameters.

    Returns:
        The scheme as written, and the parameters in order: lower-case name -> value
        (quoted-strings unescaped).

    Raises:
        RemoteProtocolError: (400) the value breaks RFC 3261 §25.1. Reasons name the
            offending parameter but never repeat the peer's text.
    """
    value = _FOLD_RE.sub(" ", text).strip(_WHITESPACE)
    if not value:
        raise RemoteProtocolError(f"empty {what}")
    match = _TOKEN_RE.match(value)
    if match is None:
        raise RemoteProtocolError(f"{what} does not start with an auth-scheme")
    scheme = match.group()
    position = match.end()
    if position == len(value):
        raise RemoteProtocolError(f"{what} has no parameters after the auth-scheme")
    if value[position] not in _WHITESPACE:
        raise RemoteProtocolError(f"{what}: the auth-scheme must be followed by whitespace")
    parameters: dict[str, str] = {}
    while True:
        position = _skip_whitespace(value, position)
        match = _TOKEN_RE.match(value, position)
        if match is None:
            raise RemoteProtocolError(f"{what}: expected a parameter name at offset {position}")
        name = match.group().lower()
        position = _skip_whitespace(value, match.end())
        if not value.startswith("=", position):
            raise RemoteProtocolError(f"{what}: missing '=' after parameter {name!r}")
        position = _skip_whitespace(value, position + 1)
        if value.startswith('"', position):
            parameter_value, position = _read_quoted_string(value, position, what, name)
        else:
            match = _TOKEN_RE.match(value, position)
            if match is None:
                raise RemoteProtocolError(f"{what}: missing value for parameter {name!r}")
            parameter_value, position = match.group(), match.end()
        # RFC 7235 §2.2 and RFC 7616 §3.3: each parameter appears at most once.
        if name in parameters:
            raise RemoteProtocolError(f"{what}: duplicate parameter {name!r}")
        parameters[name] = parameter_value
        position = _skip_whitespace(value, position)
        if position == len(value):
            return scheme, parameters
        if value[position] != ",":
            raise RemoteProtocolError(f"{what}: expected ',' after parameter {name!r}")
        position += 1


def _quote(value: str) -> str:
    """`value` as a quoted-string, escaping '"', '\\' and controls (RFC 3261 §25.1)."""
    if "\r" in value or "\n" in value:
        raise LocalProtocolError("a quoted-string cannot carry CR or LF (RFC 3261 §25.1)")
    escaped = "".join(
        "\\" + character if character in '"\\' or _is_control(character) else character
        for character in value
    )
    return f'"{escaped}"'


def _token_or_quoted(value: str) -> str:
    return value if _TOKEN_RE.fullmatch(value) else _quote(value)


# (name, value or None when absent, always quoted)
_Field = tuple[str, str | None, bool]

# Extension parameters whose grammar is a quoted-string (RFC 7616 §3.3 domain).
_QUOTED_EXTENSIONS: Final = frozenset({"domain"})


def _all_parameters(
    fields: Sequence[_Field], extension_params: Sequence[tuple[str, str]]
) -> list[tuple[str, str, bool]]:
    present = [(name, value, quoted) for name, value, quoted in fields if value is not None]
    present += [(name, value, name in _QUOTED_EXTENSIONS) for name, value in extension_params]
    return present


def _format(
    scheme: str, fields: Sequence[_Field], extension_params: Sequence[tuple[str, str]]
) -> str:
    if not _TOKEN_RE.fullmatch(scheme):
        raise LocalProtocolError(f"auth-scheme {scheme!r} is not a token")
    items: list[str] = []
    seen: set[str] = set()
    for name, value, quoted in _all_parameters(fields, extension_params):
        if not _TOKEN_RE.fullmatch(name) or name.lower() in seen:
            raise LocalProtocolError(f"parameter name {name!r} is not a token or is repeated")
        seen.add(name.lower())
        items.append(f"{name}={_quote(value) if quoted else _token_or_quoted(value)}")
    if not items:
        # RFC 3261 §25.1: a challenge or credentials value has at least one parameter.
        raise LocalProtocolError(f"{scheme} value without parameters")
    return f"{scheme} {', '.join(items)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestChallenge:
    """One WWW-Authenticate / Proxy-Authenticate value (RFC 7616 §3.3, RFC 3261 §25.1).

    Fields hold the unquoted values, None when the parameter is absent.
    """

    realm: str | None = None
    """Protection domain; one realm per user database (RFC 3261 §22.1)."""
    nonce: str | None = None
    """Server nonce, from `NonceManager.issue()`."""
    algorithm: str | None = None
    """As written ("SHA-256", "MD5", or any other text); None means MD5."""
    qop: str | None = None
    """The qop-options as written, e.g. "auth" or "auth,auth-int"."""
    opaque: str | None = None
    """Returned unchanged by the client (RFC 7616 §3.3)."""
    stale: bool = False
    """The previous nonce expired but the digest was right: retry without prompting.
    Parsed from stale=true in any case; another stale value is kept in extension_params."""
    scheme: str = "Digest"
    """The auth-scheme as written; compare case-insensitively (see `is_digest`)."""
    extension_params: tuple[tuple[str, str], ...] = ()
    """Parameters without a field above, in order (`domain`, `charset`, `userhash`, or
    all parameters of an unknown scheme); names lower-case, values unquoted."""

    @classmethod
    def parse(cls, text: str) -> DigestChallenge:
        """Parse a header value such as `Digest realm="a", nonce="b", qop="auth"`.

        Raises:
            RemoteProtocolError: (400) the value breaks RFC 3261 §25.1.
        """
        scheme, parameters = _parse_auth_value(text, "challenge")
        # RFC 7616 §3.3: stale is true when its value is "true" in any case, and false
        # otherwise; a value other than "true" stays in extension_params, so nothing is
        # lost and every parsed value serializes.
        stale = parameters.get("stale", "").lower() == "true"
        if stale:
            del parameters["stale"]
        return cls(
            realm=parameters.pop("realm", None),
            nonce=parameters.pop("nonce", None),
            algorithm=parameters.pop("algorithm", None),
            qop=parameters.pop("qop", None),
            opaque=parameters.pop("opaque", None),
            stale=stale,
            scheme=scheme,
            extension_params=tuple(parameters.items()),
        )

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (auth-scheme names are case-insensitive)."""
        return self.scheme.lower() == "digest"

    @property
    def params(self) -> dict[str, str]:
        """Every parameter as `str()` writes it: lower-case name -> unquoted value."""
        parameters = _all_parameters(self._fields(), self.extension_params)
        return {name: value for name, value, _ in parameters}

    def _fields(self) -> list[_Field]:
        # RFC 7616 §3.3 / RFC 3261 §25.1: qop-options is quoted; algorithm and stale are not.
        return [
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("algorithm", self.algorithm, False),
            ("qop", self.qop, True),
            ("stale", "true" if self.stale else None, False),
            ("opaque", self.opaque, True),
        ]

    def __str__(self) -> str:
        """The header value, e.g. `Digest realm="a", nonce="b", algorithm=SHA-256, qop="auth"`.

        Raises:
            LocalProtocolError: a value holds CR or LF, or a name is not a token.
        """
        return _format(self.scheme, self._fields(), self.extension_params)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestCredentials:
    """One Authorization / Proxy-Authorization value (RFC 7616 §3.4, RFC 3261 §25.1).

    Fields hold the unquoted values, None when the parameter is absent; `verify()`
    decides which absences matter.
    """

    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    """The digest-uri as sent; it is part of the digest."""
    response: str | None = None
    """The request-digest, hex."""
    algorithm: str | None = None
    """As written; None means MD5."""
    cnonce: str | None = None
    qop: str | None = None
    """The chosen qop ("auth"), None for the RFC 2069 form."""
    nc: str | None = None
    """Nonce count as 8 hex digits, e.g. "00000001"."""
    opaque: str | None = None
    scheme: str = "Digest"
    """The auth-scheme as written; compare case-insensitively (see `is_digest`)."""
    extension_params: tuple[tuple[str, str], ...] = ()
    """Parameters without a field above, in order (`userhash`, `username*`, or all
    parameters of an unknown scheme); names lower-case, values unquoted."""

    @classmethod
    def parse(cls, text: str) -> DigestCredentials:
        """Parse a header value such as `Digest username="alice", realm="a", ...`.

        An unknown scheme (`NoOneKnowsThisScheme opaque-data=here`, RFC 4475 §3.3.7)
        parses; the element then answers 401/407 with its own challenges.

        Raises:
            RemoteProtocolError: (400) the value breaks RFC 3261 §25.1.
        """
        scheme, parameters = _parse_auth_value(text, "credentials")
        return cls(
            username=parameters.pop("username", None),
            realm=parameters.pop("realm", None),
            nonce=parameters.pop("nonce", None),
            uri=parameters.pop("uri", None),
            response=parameters.pop("response", None),
            algorithm=parameters.pop("algorithm", None),
            cnonce=parameters.pop("cnonce", None),
            qop=parameters.pop("qop", None),
            nc=parameters.pop("nc", None),
            opaque=parameters.pop("opaque", None),
            scheme=scheme,
            extension_params=tuple(parameters.items()),
        )

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (auth-scheme names are case-insensitive)."""
        return self.scheme.lower() == "digest"

    @property
    def params(self) -> dict[str, str]:
        """Every parameter as `str()` writes it: lower-case name -> unquoted value."""
        parameters = _all_parameters(self._fields(), self.extension_params)
        return {name: value for name, value, _ in parameters}

    def _fields(self) -> list[_Field]:
        # RFC 7616 §3.4 / RFC 3261 §25.1: algorithm, qop (message-qop) and nc are tokens.
        return [
            ("username", self.username, True),
            ("realm", self.realm, True),
            ("nonce", self.nonce, True),
            ("uri", self.uri, True),
            ("response", self.response, True),
            ("algorithm", self.algorithm, False),
            ("cnonce", self.cnonce, True),
            ("qop", self.qop, False),
            ("nc", self.nc, False),
            ("opaque", self.opaque, True),
        ]

    def __str__(self) -> str:
        """The header value, e.g. `Digest username="alice", realm="a", nonce="b", ...`.

        Raises:
            LocalProtocolError: a value holds CR or LF, or a name is not a token.
        """
        return _format(self.scheme, self._fields(), self.extension_params)


# --- Challenges (UAS) and answers (UAC) ----------------------------------------------------


def build_challenges(
    realm: str,
    nonce: str,
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    *,
    stale: bool = False,
    opaque: str | None = None,
) -> list[DigestChallenge]:
    """The challenges for one 401/407, one header value each, in the given order.

    RFC 8760 §2.3: with several challenges for one realm each uses a different
    algorithm, most preferred first (SHA-256 before MD5 by default). All offer qop="auth"
    (RFC 7616 §3.3). Pass `stale=True` after a STALE or REPLAYED verification.

    Raises:
        LocalProtocolError: `algorithms` is empty, repeats one, or names one we cannot
            verify.
    """
    canonical = [_require_algorithm(name) for name in algorithms]
    if not canonical or len(set(canonical)) != len(canonical):
        raise LocalProtocolError("challenge algorithms must be distinct and at least one")
    return [
        DigestChallenge(
            realm=realm, nonce=nonce, algorithm=name, qop="auth", opaque=opaque, stale=stale
        )
        for name in canonical
    ]


def _qop_options(qop: str) -> list[str]:
    return [option.strip(_WHITESPACE).lower() for option in qop.split(",")]


def answer_challenge(
    challenge: DigestChallenge,
    *,
    username: str,
    ha1: str,
    method: str,
    uri: str,
    cnonce: str,
    nonce_count: int = 1,
) -> DigestCredentials:
    """The credentials a UAC sends back to `challenge` (RFC 3261 §22.2, RFC 7616 §3.4).

    Pick the topmost challenge whose algorithm `canonical_algorithm()` knows (RFC 8760
    §2.4) and pass the HA1 stored for that algorithm's hash. `cnonce` should be fresh
    random text; `nonce_count` counts the requests sent with this nonce, from 1.

    Raises:
        LocalProtocolError: not a Digest challenge, no realm or nonce, an unsupported
            algorithm, or qop options without "auth".
    """
    algorithm = canonical_algorithm(challenge.algorithm)
    if not challenge.is_digest or algorithm is None:
        raise LocalProtocolError("cannot answer a challenge with an unsupported scheme")
    if challenge.realm is None or challenge.nonce is None:
        raise LocalProtocolError("cannot answer a challenge without realm and nonce")
    qop: str | None = None
    nc: str | None = None
    response_cnonce: str | None = None
    if challenge.qop is not None:
        if "auth" not in _qop_options(challenge.qop):
            raise LocalProtocolError("the challenge offers no qop we support")
        qop, nc, response_cnonce = "auth", f"{nonce_count:08x}", cnonce
    response = compute_response(
        ha1,
        algorithm=algorithm,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc,
        cnonce=response_cnonce,
    )
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        # RFC 7616 §3.4: algorithm and opaque echo the challenge.
        algorithm=challenge.algorithm,
        cnonce=response_cnonce,
        qop=qop,
        nc=nc,
        opaque=challenge.opaque,
    )


# --- Nonces --------------------------------------------------------------------------------


class NonceStatus(Enum):
    """What `NonceManager.check()` says about a nonce."""

    VALID = "valid"
    """Issued by us (this secret) and within its lifetime."""
    STALE = "stale"
    """Issued by us but outside its lifetime: challenge again with stale=true."""
    INVALID = "invalid"
    """Not issued by us, or mangled: challenge again with stale=false."""


_ISSUE_TIME: Final = struct.Struct(">d")
_RANDOM_LENGTH: Final = 12
_MAC_LENGTH: Final = 16  # HMAC-SHA256 truncated to 128 bits (as RFC 4868 does).
_NONCE_LENGTH: Final = _ISSUE_TIME.size + _RANDOM_LENGTH + _MAC_LENGTH  # 36 bytes
_NONCE_TEXT_LENGTH: Final = _NONCE_LENGTH // 3 * 4  # 48 base64 characters, no padding
_MINIMUM_SECRET_LENGTH: Final = 16
# Nonce counts accepted below the highest one seen, for requests reordered in transit.
_NONCE_COUNT_WINDOW: Final = 64


class _NonceCountWindow:
    """Nonce counts seen for one nonce: the highest, and a bitmap of the 64 below it."""

    __slots__ = ("issue_time", "highest", "seen")

    def __init__(self, issue_time: float) -> None:
        self.issue_time = issue_time
        self.highest = 0
        self.seen = 0  # bit i set: count (highest - i) was accepted

    def accept(self, count: int) -> bool:
        if count > self.highest:
            shift = count - self.highest
            # Cap the shift: a jump from 1 to 0xffffffff must not build a 4-Gbit integer.
            self.seen = 1 if shift >= _NONCE_COUNT_WINDOW else (self.seen << shift) | 1
            self.seen &= (1 << _NONCE_COUNT_WINDOW) - 1
            self.highest = count
            return True
        offset = self.highest - count
        if offset >= _NONCE_COUNT_WINDOW or self.seen >> offset & 1:
            return False
        self.seen |= 1 << offset
        return True


class NonceManager:
    """Issues and checks stateless nonces; remembers nonce counts to refuse replays.

    A nonce is base64(issue time as a big-endian double | 12 random bytes | the first 16
    bytes of HMAC-SHA256(secret, time | random)): checking needs only the secret and
    `now`. Replay protection keeps, per nonce that passed `verify()`, the counts already
    accepted, for at most `max_tracked_nonces` nonces (least recently used dropped first).
    A nonce issued no later than one already dropped is refused as a replay if it shows
    up untracked, so a dropped record never lets a replay through; under that load some
    clients pay one extra stale=true round trip.
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        max_tracked_nonces: int = 4096,
    ) -> None:
        """
        Args:
            secret: at least 16 random bytes, shared by every process that checks nonces.
            lifetime: seconds a nonce stays VALID after `issue()` (e.g. 300).
            random_bytes: source of the random part; tests pass a deterministic one.
            max_tracked_nonces: bound of the nonce-count memory.

        Raises:
            ValueError: a short secret, a non-positive lifetime or bound.
        """
        if len(secret) < _MINIMUM_SECRET_LENGTH:
            raise ValueError(f"nonce secret must be at least {_MINIMUM_SECRET_LENGTH} bytes")
        if not (math.isfinite(lifetime) and lifetime > 0):
            raise ValueError("nonce lifetime must be a positive number of seconds")
        if max_tracked_nonces < 1:
            raise ValueError("max_tracked_nonces must be at least 1")
        self._secret = secret
        self._lifetime = lifetime
        self._random_bytes = random_bytes
        self._max_tracked_nonces = max_tracked_nonces
        self._windows: OrderedDict[str, _NonceCountWindow] = OrderedDict()
        # Latest issue time among nonces whose count record was dropped.
        self._forgotten_until = -math.inf

    @property
    def lifetime(self) -> float:
        """Seconds a nonce stays VALID after it was issued."""
        return self._lifetime

    def _mac(self, body: bytes) -> bytes:
        return hmac.digest(self._secret, body, "sha256")[:_MAC_LENGTH]

    def issue(self, now: float) -> str:
        """A fresh nonce, valid from `now` for `lifetime` seconds.

        Raises:
            ValueError: `now` is not finite, or `random_bytes` returned the wrong length.
        """
        if not math.isfinite(now):
            raise ValueError("now must be a finite number")
        random_part = self._random_bytes(_RANDOM_LENGTH)
        if len(random_part) != _RANDOM_LENGTH:
            raise ValueError(f"random_bytes({_RANDOM_LENGTH}) returned {len(random_part)} bytes")
        body = _ISSUE_TIME.pack(now) + random_part
        return base64.b64encode(body + self._mac(body)).decode("ascii")

    def _issue_time(self, nonce: str) -> float | None:
        """When we issued `nonce`; None if we did not (forged, other secret, mangled)."""
        if len(nonce) != _NONCE_TEXT_LENGTH or not nonce.isascii():
            return None
        try:
            raw = base64.b64decode(nonce, validate=True)
        except ValueError:  # binascii.Error is a ValueError
            return None
        if len(raw) != _NONCE_LENGTH:
            return None
        body, mac = raw[:-_MAC_LENGTH], raw[-_MAC_LENGTH:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        issue_time: float = _ISSUE_TIME.unpack_from(body)[0]
        return issue_time

    def _is_fresh(self, issue_time: float, now: float) -> bool:
        # A nonce dated in the future (clock stepped back, skew between nodes) is only
        # trusted within the same bound. Written so that a NaN `now` is never fresh.
        return abs(now - issue_time) <= self._lifetime

    def check(self, nonce: str, now: float) -> NonceStatus:
        """VALID, STALE (ours, expired; RFC 7616 §3.3) or INVALID. Never raises."""
        issue_time = self._issue_time(nonce)
        if issue_time is None:
            return NonceStatus.INVALID
        return NonceStatus.VALID if self._is_fresh(issue_time, now) else NonceStatus.STALE

    def accept_nonce_count(self, nonce: str, nonce_count: int, now: float) -> bool:
        """Record `nonce_count` for `nonce`; False if it was seen before (a replay).

        Call only after the digest verified (as `verify()` does), so a peer without the
        password cannot burn counts. RFC 7616 §5.5.

        Returns:
            True the first time this count is presented with this nonce; False for a
            repeat, a count too far below the highest seen, a count below 1, a nonce we
            did not issue, or an untracked nonce older than a dropped record.
        """
        issue_time = self._issue_time(nonce)
        if issue_time is None or nonce_count < 1:
            return False
        self._drop_expired(now)
        window = self._windows.get(nonce)
        if window is None:
            if issue_time <= self._forgotten_until:
                return False
            window = _NonceCountWindow(issue_time)
            self._windows[nonce] = window
            while len(self._windows) > self._max_tracked_nonces:
                self._drop_oldest()
        else:
            self._windows.move_to_end(nonce)
        return window.accept(nonce_count)

    def _drop_oldest(self) -> None:
        _, window = self._windows.popitem(last=False)
        self._forgotten_until = max(self._forgotten_until, window.issue_time)

    def _drop_expired(self, now: float) -> None:
        # Least recently used first; an expired nonce is STALE anyway, and raising
        # `_forgotten_until` to its issue time keeps it refused even if the clock steps back.
        while self._windows:
            window = next(iter(self._windows.values()))
            if self._is_fresh(window.issue_time, now):
                return
            self._drop_oldest()


# --- Verification (UAS / proxy) -------------------------------------------------------------


class VerificationStatus(Enum):
    """Outcome of `verify()` and what the element answers."""

    OK = "ok"
    """Authenticated: process the request."""
    STALE = "stale"
    """Right digest, expired nonce: 401/407 with fresh challenges, stale=true."""
    REPLAYED = "replayed"
    """Right digest, nonce count already used: answer as STALE (RFC 7616 §5.5)."""
    WRONG = "wrong"
    """Wrong digest, realm, algorithm or missing fields: 401/407, stale=false."""
    INVALID_NONCE = "invalid_nonce"
    """Nonce not ours (forged, mangled, other secret): 401/407, stale=false."""


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """`verify()`'s answer: the status and a fixed reason for logs (never peer text)."""

    status: VerificationStatus
    """What happened; see `VerificationStatus`."""
    reason: str
    """Short diagnostic for logs and counters; do not send it to the peer."""

    @property
    def ok(self) -> bool:
        return self.status is VerificationStatus.OK

    @property
    def challenge_stale(self) -> bool:
        """True when the new challenges carry stale=true (STALE and REPLAYED)."""
        return self.status in (VerificationStatus.STALE, VerificationStatus.REPLAYED)


def _wrong(reason: str) -> VerificationResult:
    return VerificationResult(VerificationStatus.WRONG, reason)


def verify(
    credentials: DigestCredentials,
    method: str,
    stored_ha1_by_algorithm: Mapping[str, str],
    nonce_manager: NonceManager,
    now: float,
    expected_realm: str,
    *,
    expected_opaque: str | None = None,
    allow_rfc2069: bool = False,
) -> VerificationResult:
    """Check one Authorization / Proxy-Authorization value (RFC 3261 §22.4, RFC 7616 §3.4).

    Args:
        credentials: the value whose realm is ours; a proxy leaves values for other
            realms in place (RFC 3261 §22.3).
        method: the request's method ("REGISTER", "INVITE", ...).
        stored_ha1_by_algorithm: HA1 of `credentials.username` in `expected_realm`, keyed
            "MD5" / "SHA-256". Pass an empty mapping for an unknown user: the answer is
            WRONG, the same as for a wrong password.
        nonce_manager: the manager that issued our nonces; records the nonce count.
        now: current time on the nonce manager's clock.
        expected_realm: our realm; the credentials' realm must equal it exactly.
        expected_opaque: when our challenges carried an opaque, the value to match.
        allow_rfc2069: accept responses without qop (no replay protection).

    Returns:
        A `VerificationResult`; answer 401/407 with `build_challenges(...,
        stale=result.challenge_stale)` unless `result.ok`. The `uri` parameter is covered
        by the digest but not compared with the Request-URI here.
    """
    if not credentials.is_digest:
        return _wrong("not Digest credentials")
    username, realm, nonce = credentials.username, credentials.realm, credentials.nonce
    uri, response = credentials.uri, credentials.response
    if username is None or realm is None or nonce is None or uri is None or response is None:
        return _wrong("missing username, realm, nonce, uri or response")
    if realm != expected_realm:
        return _wrong("realm is not ours")
    algorithm = canonical_algorithm(credentials.algorithm)
    if algorithm is None:
        return _wrong("unsupported algorithm")
    ha1 = stored_ha1_by_algorithm.get(_base_algorithm(algorithm))
    if ha1 is None:
        return _wrong("no stored HA1 for this user and algorithm")
    if expected_opaque is not None and credentials.opaque != expected_opaque:
        return _wrong("opaque does not match the challenge")
    qop, nc, cnonce = credentials.qop, credentials.nc, credentials.cnonce
    nonce_count: int | None = None
    if qop is None:
        # RFC 7616 §3.4: qop must be one of those offered, and we always offer "auth".
        if not allow_rfc2069:
            return _wrong("response without qop (RFC 2069) refused")
        if algorithm.endswith(_SESSION_SUFFIX) or nc is not None or cnonce is not None:
            return _wrong("nc, cnonce or -sess without qop")
    else:
        if qop.lower() != "auth":
            return _wrong("qop other than auth")
        if nc is None or cnonce is None or not _NONCE_COUNT_RE.fullmatch(nc):
            return _wrong("qop auth without a valid nc and cnonce")
        nonce_count = int(nc, 16)
        if nonce_count < 1:
            return _wrong("nonce count 0")  # RFC 7616 §3.4: nc counts from 00000001
    nonce_status = nonce_manager.check(nonce, now)
    if nonce_status is NonceStatus.INVALID:
        return VerificationResult(VerificationStatus.INVALID_NONCE, "nonce not issued by us")
    expected = compute_response(
        ha1,
        algorithm=algorithm,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
    )
    # Constant-time comparison on bytes (compare_digest refuses non-ASCII str).
    if not hmac.compare_digest(expected.encode("ascii"), _utf8(response.lower())):
        return _wrong("response does not match")
    # RFC 7616 §3.3: stale=true only when the digest is right for the expired nonce.
    if nonce_status is NonceStatus.STALE:
        return VerificationResult(VerificationStatus.STALE, "nonce expired")
    if nonce_count is not None and not nonce_manager.accept_nonce_count(
        nonce, nonce_count, now
    ):
        return VerificationResult(VerificationStatus.REPLAYED, "nonce count already used")
    return VerificationResult(VerificationStatus.OK, "authenticated")
