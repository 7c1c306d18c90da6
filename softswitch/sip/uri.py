"""SIP, SIPS, tel and opaque URIs (RFC 3261 §19.1 and §25.1, RFC 3966).

Rules:
- `parse_uri(text)` returns a `SipUri` for `sip:`/`sips:`, a `TelUri` for `tel:` and an
  `AbsoluteUri` (scheme plus opaque part, kept verbatim) for any other scheme, so an
  element can answer 416 to an unknown scheme instead of 400 (RFC 4475 §3.3.2).
- Components keep their escaped wire form; `str(uri)` gives back the same text, and
  equality follows RFC 3261 §19.1.4 (escapes decoded, host and scheme case-insensitive,
  `user`/`ttl`/`method`/`maddr`/`transport` parameters must match when either side has
  them, other parameters only when both sides have them; headers must match).
- Grammar errors raise `RemoteProtocolError` (status 400); whitespace, `<`, `>` and `"`
  can never be part of a URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import RemoteProtocolError

__all__ = [
    "SipUri",
    "TelUri",
    "AbsoluteUri",
    "Uri",
    "parse_uri",
    "unescape",
    "format_host_port",
]

_ESCAPED = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ).
_USER = rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+"
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*"
# hostname / IPv4address / IPv6reference; the IPv6 body is checked loosely, the
# brackets strictly.
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+"
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})"
_HEADERCHAR = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"

_SIP_URI_RE = re.compile(
    rf"""
    (?P<scheme>[Ss][Ii][Pp][Ss]?):
    (?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?
    (?P<host>{_HOST})
    (?::(?P<port>[0-9]{{1,5}}))?
    (?P<parameters>(?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*)
    (?:\?(?P<headers>{_HEADERCHAR}+={_HEADERCHAR}*(?:&{_HEADERCHAR}+={_HEADERCHAR}*)*))?
    """,
    re.VERBOSE,
)
_TEL_URI_RE = re.compile(
    r"[Tt][Ee][Ll]:(?P<number>[0-9A-Fa-f+\-.()*#pPwW]+)(?P<parameters>(?:;[^;\s<>\"]+)*)"
)
_ABSOLUTE_URI_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*):(?P<opaque>[^\s<>\"]+)")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")

# §19.1.4: these parameters must match if present in either URI.
_SIGNIFICANT_PARAMETERS = ("user", "ttl", "method", "maddr", "transport")


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.4); %00 stays a NUL character, never a cut."""
    if "%" not in text:
        return text
    return _ESCAPE_RE.sub(lambda match: chr(int(match.group(1), 16)), text)


def format_host_port(host: str, port: int | None) -> str:
    """`host` or `host:port`; IPv6 addresses are bracketed as RFC 3261 §25.1 requires."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _split_parameters(text: str) -> dict[str, str | None]:
    """`;a=b;c` (already validated) -> {'a': 'b', 'c': None}; names lower-cased."""
    parameters: dict[str, str | None] = {}
    for item in text.split(";")[1:]:
        name, equals, value = item.partition("=")
        parameters[name.lower()] = value if equals else None
    return parameters


def _comparable_parameters(parameters: dict[str, str | None]) -> dict[str, str]:
    return {
        unescape(name).lower(): unescape(value or "").lower()
        for name, value in parameters.items()
    }


_SIP_URI_CACHE_SIZE = 8192
"""Entries the URI cache holds before it is emptied (never more memory than this)."""


@dataclass(slots=True, eq=False)
class SipUri:
    """A `sip:` or `sips:` URI. `host` keeps IPv6 brackets off; `str()` adds them."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    parameters: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    scheme: str = "sip"

    @classmethod
    def parse(cls, text: str) -> SipUri:
        cached = _SIP_URI_CACHE.get(text)
        if cached is not None:
            # A dialog's URIs recur in each of its messages: parsed once, shared after
            # (parsed values are never changed in place).
            return cached
        uri = cls._parse(text)
        if len(_SIP_URI_CACHE) >= _SIP_URI_CACHE_SIZE:
            _SIP_URI_CACHE.clear()
        _SIP_URI_CACHE[text] = uri
        return uri

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        match = _SIP_URI_RE.fullmatch(text)
        if match is None:
            raise RemoteProtocolError(f"malformed SIP URI {text[:80]!r}")
        host = match.group("host")
        if host.startswith("["):
            host = host[1:-1]
        port_text = match.group("port")
        port = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise RemoteProtocolError(f"port out of range in URI {text[:80]!r}")
        parameters_text = match.group("parameters")
        return cls(
            host=host,
            user=match.group("user"),
            password=match.group("password"),
            port=port,
            parameters=_split_parameters(parameters_text) if parameters_text else {},
            headers=match.group("headers"),
            scheme=match.group("scheme").lower(),
        )

    @property
    def transport(self) -> str | None:
        value = self.parameters.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        return format_host_port(self.host, self.port)

    @property
    def loose_route(self) -> bool:
        """RFC 3261 §19.1.1: the `lr` parameter marks a loose router."""
        return "lr" in self.parameters

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(format_host_port(self.host, self.port))
        for name, value in self.parameters.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            parts.append("?")
            parts.append(self.headers)
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def _comparable_headers(self) -> dict[str, str]:
        if not self.headers:
            return {}
        result: dict[str, str] = {}
        for item in self.headers.split("&"):
            name, _, value = item.partition("=")
            result[unescape(name).lower()] = unescape(value)
        return result

    def __eq__(self, other: object) -> bool:
        """RFC 3261 §19.1.4 URI comparison."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme:
            return False
        if (self.user is None) != (other.user is None):
            return False
        if self.user is not None and other.user is not None:
            if unescape(self.user) != unescape(other.user):
                return False
        if unescape(self.password or "") != unescape(other.password or ""):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _comparable_parameters(self.parameters)
        theirs = _comparable_parameters(other.parameters)
        for name in _SIGNIFICANT_PARAMETERS:
            if (name in mine or name in theirs) and mine.get(name) != theirs.get(name):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        return self._comparable_headers() == other._comparable_headers()

    def __hash__(self) -> int:
        return hash((self.scheme, unescape(self.user or ""), self.host.lower(), self.port))


@dataclass(slots=True, frozen=True)
class TelUri:
    """A `tel:` URI (RFC 3966); the number keeps its visual separators."""

    number: str
    parameters: dict[str, str | None] = field(default_factory=dict, hash=False)

    @property
    def scheme(self) -> str:
        return "tel"

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 §5.1.1)."""
        return "".join(character for character in self.number if character not in "-.()")

    def __str__(self) -> str:
        parameters = "".join(
            f";{name}" if value is None else f";{name}={value}"
            for name, value in self.parameters.items()
        )
        return f"tel:{self.number}{parameters}"


@dataclass(slots=True, frozen=True)
class AbsoluteUri:
    """A URI of a scheme we do not interpret (RFC 3261 §25.1 absoluteURI), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri

_SIP_URI_CACHE: dict[str, SipUri] = {}
"""SIP URI text -> its parsed value, shared by every message that carries it."""


def parse_uri(text: str) -> Uri:
    """Parse any URI a SIP message may carry.

    Raises:
        RemoteProtocolError(400): the text is not a URI of any scheme, or a `sip:`/`sips:`/
            `tel:` URI that breaks its grammar.
    """
    scheme, colon, _ = text.partition(":")
    if not colon:
        raise RemoteProtocolError(f"URI without a scheme {text[:80]!r}")
    lowered = scheme.lower()
    if lowered in ("sip", "sips"):
        return SipUri.parse(text)
    if lowered == "tel":
        match = _TEL_URI_RE.fullmatch(text)
        if match is None:
            raise RemoteProtocolError(f"malformed tel URI {text[:80]!r}")
        parameters_text = match.group("parameters")
        return TelUri(
            number=match.group("number"),
            parameters=_split_parameters(parameters_text) if parameters_text else {},
        )
    match = _ABSOLUTE_URI_RE.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"malformed URI {text[:80]!r}")
    return AbsoluteUri(scheme=match.group("scheme"), opaque=match.group("opaque"))
