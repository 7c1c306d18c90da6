"""Header names and typed header values (RFC 3261 §7.3, §20 and §25.1).

Rules:
- Header names are case-insensitive and have compact forms (§7.3.3): `canonical_key()`
  maps any spelling to one lower-case key ("v" -> "via"), `display_name()` gives the
  spelling we write.
- Values arrive unfolded (the parser replaced each folded line break by one space, §7.3.1)
  and stripped. Typed parsers accept every LWS the grammar allows around `/`, `:`, `;`,
  `=` and `,` (RFC 4475 §3.1.1.1) and reject everything else with
  `RemoteProtocolError(400)`; they never raise another exception.
- A comma separates values only outside quoted strings and angle brackets (§7.3.1);
  headers whose grammar contains commas of their own (Date, the authentication headers)
  are never split.
- Typed values are small slotted dataclasses; `str(value)` serializes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import RemoteProtocolError
from .uri import SipUri, Uri, format_host_port, parse_uri

__all__ = [
    "canonical_key",
    "display_name",
    "split_comma_values",
    "parse_parameters",
    "format_parameters",
    "Via",
    "NameAddress",
    "CSeq",
    "MediaType",
    "parse_via",
    "parse_via_values",
    "parse_name_address",
    "parse_name_address_values",
    "parse_cseq",
    "parse_unsigned",
    "parse_max_forwards",
    "parse_token_list",
    "parse_media_type",
    "parse_call_id",
    "check_date",
    "quote_string",
    "MULTI_VALUE_KEYS",
    "clear_parse_caches",
    "SINGLE_VALUE_KEYS",
]

_COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

_DISPLAY_NAMES = {
    key: key.title()
    for key in (
        "via", "from", "to", "contact", "route", "record-route", "max-forwards", "expires",
        "min-expires", "content-type", "content-length", "content-encoding", "allow",
        "accept", "supported", "require", "proxy-require", "unsupported", "subject",
        "user-agent", "server", "date", "timestamp", "warning", "retry-after", "event",
        "allow-events", "subscription-state", "accept-encoding", "accept-language",
        "content-language", "content-disposition", "organization", "priority", "reason",
        "refer-to", "referred-by", "session-expires", "min-se", "privacy", "path",
    )
}
_DISPLAY_NAMES.update(
    {
        "call-id": "Call-ID",
        "cseq": "CSeq",
        "www-authenticate": "WWW-Authenticate",
        "proxy-authenticate": "Proxy-Authenticate",
        "authorization": "Authorization",
        "proxy-authorization": "Proxy-Authorization",
        "authentication-info": "Authentication-Info",
        "p-asserted-identity": "P-Asserted-Identity",
        "p-preferred-identity": "P-Preferred-Identity",
        "rseq": "RSeq",
        "rack": "RAck",
        "mime-version": "MIME-Version",
    }
)

# Exact spellings seen on the wire, mapped straight to their key: the parser's fast path.
KNOWN_SPELLINGS: dict[str, str] = {}
for _key, _name in _DISPLAY_NAMES.items():
    KNOWN_SPELLINGS[_name] = _key
    KNOWN_SPELLINGS[_key] = _key
for _compact, _key in _COMPACT_FORMS.items():
    KNOWN_SPELLINGS[_compact] = _key
    KNOWN_SPELLINGS[_compact.upper()] = _key
KNOWN_SPELLINGS["Call-Id"] = "call-id"
KNOWN_SPELLINGS["Cseq"] = "cseq"
KNOWN_SPELLINGS["CSEQ"] = "cseq"

_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(rf"[{_TOKEN_CHARS}]+")

# Headers whose values are comma-separated lists (§7.3.1); splitting the others would
# cut a Date or a digest credential in pieces.
MULTI_VALUE_KEYS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "content-encoding", "content-language", "in-reply-to", "warning", "alert-info",
        "call-info", "error-info", "allow-events", "p-asserted-identity",
        "p-preferred-identity", "path", "service-route", "reason",
    }
)
# Headers that must appear at most once (RFC 3261 §7.3.1 and §20); a request with two
# is ambiguous and gets 400 (RFC 4475 §3.3.8).
SINGLE_VALUE_KEYS = (
    "to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type",
    "expires", "min-expires",
)


def canonical_key(name: str) -> str:
    """Lower-case long-form key for any spelling of a header name (§7.3.3 compact forms).

    Raises:
        RemoteProtocolError(400): the name is not a token.
    """
    key = KNOWN_SPELLINGS.get(name)
    if key is not None:
        return key
    stripped = name.rstrip(" \t")
    if not _TOKEN_RE.fullmatch(stripped):
        raise RemoteProtocolError(f"malformed header name {name[:40]!r}")
    lowered = stripped.lower()
    return _COMPACT_FORMS.get(lowered, lowered)


def display_name(key: str) -> str:
    """The spelling we write for a header key ("call-id" -> "Call-ID")."""
    name = _DISPLAY_NAMES.get(key)
    if name is not None:
        return name
    return "-".join(part.capitalize() for part in key.split("-"))


def split_comma_values(text: str) -> list[str]:
    """Split a header value at commas outside quoted strings and <...> (§7.3.1).

    Empty elements (`a,,b`) are a syntax error: the grammar has no empty list member.
    """
    if "," not in text:
        return [text]
    values: list[str] = []
    start = 0
    in_quotes = False
    in_brackets = False
    index = 0
    length = len(text)
    while index < length:
        character = text[index]
        if in_quotes:
            if character == "\\":
                index += 1
            elif character == '"':
                in_quotes = False
        elif character == '"':
            in_quotes = True
        elif character == "<":
            in_brackets = True
        elif character == ">":
            in_brackets = False
        elif character == "," and not in_brackets:
            values.append(text[start:index].strip(" \t"))
            start = index + 1
        index += 1
    values.append(text[start:].strip(" \t"))
    if any(not value for value in values):
        raise RemoteProtocolError(f"empty element in list {text[:80]!r}")
    return values


_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
# ':' and brackets are admitted in unquoted values for IPv6 `received`/`maddr` values.
_PARAMETER_RE = re.compile(
    rf"[ \t]*;[ \t]*([{_TOKEN_CHARS}]+)(?:[ \t]*=[ \t]*({_QUOTED}|[{_TOKEN_CHARS}:\[\]]+))?[ \t]*"
)


_SIMPLE_PARAMETERS_RE = re.compile(rf"(?:;[{_TOKEN_CHARS}]+(?:=[{_TOKEN_CHARS}:\[\]]+)?)+")


def parse_parameters(text: str) -> dict[str, str | None]:
    """`;a=b ; c ;d="x y"` -> {'a': 'b', 'c': None, 'd': '"x y"'}.

    Names are lower-cased; values keep their wire form (quotes included) so that
    serialization is exact. An empty parameter (`;;`) is a syntax error (RFC 4475 §3.1.2.1).
    """
    parameters: dict[str, str | None] = {}
    if _SIMPLE_PARAMETERS_RE.fullmatch(text):
        # Fast path: no LWS and no quoted strings, the usual `;branch=...;rport`.
        for item in text[1:].split(";"):
            name, equals, value = item.partition("=")
            parameters[name.lower()] = value if equals else None
        return parameters
    position = 0
    length = len(text)
    while position < length:
        match = _PARAMETER_RE.match(text, position)
        if match is None:
            raise RemoteProtocolError(f"malformed parameters {text[:80]!r}")
        parameters[match.group(1).lower()] = match.group(2)
        position = match.end()
    return parameters


def format_parameters(parameters: dict[str, str | None]) -> str:
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in parameters.items()
    )


def quote_string(text: str) -> str:
    """Make a quoted-string (§25.1), escaping `"` and `\\`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    body = text[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL)


# ---------------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    rf"""
    ([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)
    [ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)
    (?:[ \t]*:[ \t]*([0-9]{{1,5}}))?
    """,
    re.VERBOSE,
)


@dataclass(slots=True)
class Via:
    """One Via header value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`."""

    transport: str
    host: str
    port: int | None = None
    parameters: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.parameters.get("branch")

    @property
    def received(self) -> str | None:
        return self.parameters.get("received")

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581: None when absent, True when present without a value, else the port."""
        if "rport" not in self.parameters:
            return None
        value = self.parameters["rport"]
        if not value:
            return True
        return int(value)

    @property
    def maddr(self) -> str | None:
        return self.parameters.get("maddr")

    @property
    def sent_by(self) -> str:
        return format_host_port(self.host, self.port)

    def __str__(self) -> str:
        parameters = format_parameters(self.parameters)
        return f"{self.protocol}/{self.transport} {self.sent_by}{parameters}"


_SIMPLE_VIA_RE = re.compile(
    rf"SIP/2\.0/([A-Za-z]+) ([0-9.]+|[A-Za-z0-9\-.]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;[{_TOKEN_CHARS}]+(?:=[{_TOKEN_CHARS}]+)?)*)"
)


_VIA_CACHE: dict[str, Via] = {}
"""Via text -> its parsed value. The Via we put on a request comes back on each of its
responses (§8.2.6.2 copies it), and a retransmission repeats its Via too."""
_VIA_CACHE_SIZE = 4096


def _parse_via(text: str) -> Via:
    cached = _VIA_CACHE.get(text)
    if cached is not None:
        # A pure function of the text (errors are never cached), and parsed values are
        # never changed in place (`_stamped_via` builds a new Via), so one serves all.
        return cached
    via = _parse_via_text(text)
    if len(_VIA_CACHE) >= _VIA_CACHE_SIZE:
        _VIA_CACHE.clear()
    _VIA_CACHE[text] = via
    return via


def remember_via(text: str, via: Via) -> None:
    """Put in the Via cache a value the caller built for `text`, which must be exactly
    what parsing `text` returns (the endpoint's own Via: its responses then find it)."""
    if len(_VIA_CACHE) >= _VIA_CACHE_SIZE:
        _VIA_CACHE.clear()
    _VIA_CACHE[text] = via


def _parse_via_text(text: str) -> Via:
    simple = _SIMPLE_VIA_RE.fullmatch(text)
    if simple is not None:
        # Fast path: `SIP/2.0/UDP host:port;branch=...;rport` without LWS or quotes.
        transport, host, port_text, parameters_text = simple.groups()
        parameters: dict[str, str | None] = {}
        if parameters_text:
            for item in parameters_text[1:].split(";"):
                name, equals, value = item.partition("=")
                parameters[name.lower()] = value if equals else None
            rport_value = parameters.get("rport")
            if rport_value and (not rport_value.isdigit() or int(rport_value) > 65535):
                raise RemoteProtocolError(f"malformed rport {rport_value[:20]!r}")
        port = None
        if port_text is not None:
            port = int(port_text)
            if port > 65535:
                raise RemoteProtocolError(f"Via port out of range {text[:80]!r}")
        return Via(transport.upper(), host, port, parameters)
    match = _VIA_RE.match(text)
    if match is None:
        raise RemoteProtocolError(f"malformed Via {text[:80]!r}")
    name, version, transport, host, port_text = match.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise RemoteProtocolError(f"unsupported Via protocol {name}/{version}")
    if host.startswith("["):
        host = host[1:-1]
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise RemoteProtocolError(f"Via port out of range {text[:80]!r}")
    rest = text[match.end():]
    parameters = parse_parameters(rest) if rest else {}
    rport = parameters.get("rport")
    if rport and (not rport.isdigit() or int(rport) > 65535):
        raise RemoteProtocolError(f"malformed rport {rport[:20]!r}")
    return Via(transport=transport.upper(), host=host, port=port, parameters=parameters)


parse_via = _parse_via
"""Parse one Via value (not a comma-separated list)."""


def parse_via_values(text: str) -> list[Via]:
    """Every Via value in one header line (they may be comma-separated)."""
    return [_parse_via(value) for value in split_comma_values(text)]


# --------------------------------------------------------------------- name-addr values

_DISPLAY_TOKENS_RE = re.compile(rf"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*")
_QUOTED_RE = re.compile(_QUOTED)


class NameAddress:
    """From, To, Contact, Route, Record-Route values (RFC 3261 §20.10, §25.1).

    `display_name` is unquoted (None when absent). `wildcard` is the `Contact: *` of a
    REGISTER that removes every binding (§10.2.2). The URI is parsed on first access of
    `uri`: a transaction layer reading only the tag never pays for it.

    Parsed values are shared (the parse caches hand the same object to every message
    carrying the same text, and copied headers share them): never change one in place;
    `copy()` it first.
    """

    __slots__ = ("_uri", "_uri_text", "_uri_string", "display_name", "parameters", "wildcard")

    def __init__(
        self,
        uri: Uri | str,
        display_name: str | None = None,
        parameters: dict[str, str | None] | None = None,
        wildcard: bool = False,
    ) -> None:
        if isinstance(uri, str):
            self._uri: Uri | None = None
            self._uri_text = uri
        else:
            self._uri = uri
            self._uri_text = ""
        self._uri_string: str | None = None
        """str(self._uri), once written (URIs are never changed in place; the setter
        forgets it)."""
        self.display_name = display_name
        self.parameters: dict[str, str | None] = parameters if parameters is not None else {}
        self.wildcard = wildcard

    @property
    def uri(self) -> Uri:
        """The URI; raises RemoteProtocolError(400) if malformed."""
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._uri_text)
        return uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self._uri_string = None

    @property
    def tag(self) -> str | None:
        return self.parameters.get("tag")

    @property
    def expires(self) -> int | None:
        value = self.parameters.get("expires")
        if value is None:
            return None
        return parse_unsigned(value, "expires")

    @property
    def q(self) -> float | None:
        value = self.parameters.get("q")
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError as error:
            raise RemoteProtocolError(f"malformed q value {value[:20]!r}") from error
        if not 0.0 <= number <= 1.0:
            raise RemoteProtocolError(f"q value out of range {value[:20]!r}")
        return number

    def copy(self) -> NameAddress:
        copied = NameAddress(
            self._uri_text, self.display_name, dict(self.parameters), self.wildcard
        )
        copied._uri = self._uri
        copied._uri_string = self._uri_string
        return copied

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddress):
            return NotImplemented
        return (
            self.uri == other.uri
            and self.display_name == other.display_name
            and self.parameters == other.parameters
            and self.wildcard == other.wildcard
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NameAddress({str(self)!r})"

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = "" if self.display_name is None else quote_string(self.display_name) + " "
        uri = self._uri
        uri_text: str | None = self._uri_text if uri is None else self._uri_string
        if uri_text is None:
            uri_text = self._uri_string = str(uri)
        return f"{name}<{uri_text}>{format_parameters(self.parameters)}"



PARSE_CACHE_SIZE = 8192
"""Entries a parse cache holds before it is emptied (a flood of distinct values then
costs one parse each, as without the cache, and never more memory than this)."""

_NAME_ADDRESS_CACHE: dict[str, NameAddress] = {}
"""Name-addr text -> its parsed value, shared by every message that carries it."""

_SMALL_CACHE_SIZE = 1024
"""Entries the CSeq and media-type caches hold before they are emptied."""
_CSEQ_CACHE: dict[str, CSeq] = {}
_MEDIA_TYPE_CACHE: dict[str, MediaType] = {}



def clear_parse_caches() -> None:
    """Empty the parse caches of header lines, name-addr values, SIP URIs, Via, CSeq
    values and media types (for memory tests)."""
    from .message import _LINE_CACHE
    from .uri import _SIP_URI_CACHE

    _LINE_CACHE.clear()
    _NAME_ADDRESS_CACHE.clear()
    _SIP_URI_CACHE.clear()
    _CSEQ_CACHE.clear()
    _MEDIA_TYPE_CACHE.clear()
    _VIA_CACHE.clear()


# The common well-formed shapes, `"Name" <uri>;tag=x`, `Name <uri>;tag=x` and `<uri>`,
# without escapes, LWS inside the brackets or quoted parameter values. Group 1 is a quoted
# display name, group 2 an unquoted one: exactly what the general parser below accepts
# as display-name (§25.1: `*(token LWS) / quoted-string`) and returns for these shapes.
_SIMPLE_NAME_ADDRESS_RE = re.compile(
    rf'(?:"([^"\\\r\n]*)" ?|([{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*)[ \t]*)?'
    rf'<([^<>\s"]+)>((?:;[{_TOKEN_CHARS}]+(?:=[{_TOKEN_CHARS}]+)?)*)'
)


def parse_name_address(text: str, *, require_brackets: bool = False) -> NameAddress:
    """Parse `[display-name] <uri> *(;param)` or `addr-spec *(;param)`.

    Raises:
        RemoteProtocolError(400): unterminated quotes (RFC 4475 §3.1.2.6), LWS inside
            `<...>` (§3.1.2.14), an unquoted display name with non-token characters
            (§3.1.2.15), an addr-spec containing `?` or `,` outside brackets (§3.1.2.13,
            RFC 3261 §20.10), or malformed parameters.
    """
    if not require_brackets:
        cached = _NAME_ADDRESS_CACHE.get(text)
        if cached is not None:
            # The same From, To or Contact text recurs in every message of a dialog;
            # parsed values are never changed in place (copy() first), so one object
            # serves all. The result is a pure function of the text (or an error, which
            # is never cached), so a hit answers exactly as a parse would.
            return cached
    simple = _SIMPLE_NAME_ADDRESS_RE.fullmatch(text)
    if simple is not None:
        # Fast path: `"Name" <uri>;tag=x`, `Name <uri>;tag=x` or `<uri>` without escapes,
        # LWS or quotes.
        quoted_text, token_text, uri_text, parameters_text = simple.groups()
        parameters: dict[str, str | None] = {}
        if parameters_text:
            for item in parameters_text[1:].split(";"):
                name, equals, value = item.partition("=")
                parameters[name.lower()] = value if equals else None
        address = NameAddress(
            uri_text, quoted_text if token_text is None else token_text, parameters
        )
    else:
        address = _parse_name_address(text, require_brackets)
    if len(_NAME_ADDRESS_CACHE) >= PARSE_CACHE_SIZE:
        _NAME_ADDRESS_CACHE.clear()
    _NAME_ADDRESS_CACHE[text] = address
    return address


def _parse_name_address(text: str, require_brackets: bool) -> NameAddress:
    """The general name-addr / addr-spec parser behind `parse_name_address`."""
    display: str | None = None
    position = 0
    if text.startswith('"'):
        match = _QUOTED_RE.match(text)
        if match is None:
            raise RemoteProtocolError(f"unterminated quoted string {text[:80]!r}")
        display = _unquote(match.group(0))
        position = match.end()
        while position < len(text) and text[position] in " \t":
            position += 1
        if not text.startswith("<", position):
            raise RemoteProtocolError(f"display name not followed by <URI> {text[:80]!r}")
    else:
        bracket = text.find("<")
        semicolon = text.find(";")
        if 0 <= semicolon < bracket:
            # `sip:a@b;+sip.instance="<urn:...>"`: the bracket belongs to a parameter.
            bracket = -1
        if bracket > 0:
            candidate = text[:bracket].rstrip(" \t")
            if not _DISPLAY_TOKENS_RE.fullmatch(candidate):
                raise RemoteProtocolError(f"malformed display name {candidate[:80]!r}")
            display = candidate
            position = bracket
        elif bracket < 0:
            if require_brackets:
                raise RemoteProtocolError(f"expected <URI> in {text[:80]!r}")
            uri_text, _, parameters_text = text.partition(";")
            uri_text = uri_text.rstrip(" \t")
            if "?" in uri_text or "," in uri_text or not uri_text:
                raise RemoteProtocolError(f"addr-spec must be in <> {text[:80]!r}")
            parameters = parse_parameters(";" + parameters_text) if parameters_text else {}
            return NameAddress(uri_text, parameters=parameters)
    closing = text.find(">", position)
    if closing < 0:
        raise RemoteProtocolError(f"unterminated <URI> in {text[:80]!r}")
    uri_text = text[position + 1:closing]
    rest = text[closing + 1:]
    return NameAddress(
        uri_text,
        display_name=display,
        parameters=parse_parameters(rest) if rest else {},
    )


def parse_name_address_values(text: str, *, allow_wildcard: bool = False) -> list[NameAddress]:
    """All values of a list header such as Contact or Route."""
    if allow_wildcard and text == "*":
        return [NameAddress(SipUri(host="*"), wildcard=True)]
    return [parse_name_address(value) for value in split_comma_values(text)]


# ------------------------------------------------------------------------------ scalars

_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+([{_TOKEN_CHARS}]+)")
_MAXIMUM_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: "MUST be less than 2**31".
_MAXIMUM_DELTA_SECONDS = 2**32 - 1


@dataclass(slots=True, frozen=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    cached = _CSEQ_CACHE.get(text)
    if cached is not None:
        # CSeq values are frozen and a pure function of the text; many UAs start every
        # dialog at the same number ("1 INVITE", then "1 ACK", "2 BYE").
        return cached
    match = _CSEQ_RE.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"malformed CSeq {text[:80]!r}")
    digits = match.group(1)
    if len(digits) > 10 or int(digits) > _MAXIMUM_CSEQ:
        raise RemoteProtocolError(f"CSeq number out of range {digits[:30]!r}")
    cseq = CSeq(int(digits), match.group(2))
    if len(_CSEQ_CACHE) >= _SMALL_CACHE_SIZE:
        _CSEQ_CACHE.clear()
    _CSEQ_CACHE[text] = cseq
    return cseq


def parse_unsigned(text: str, what: str, maximum: int = _MAXIMUM_DELTA_SECONDS) -> int:
    """A delta-seconds style integer (1*DIGIT), 0..maximum."""
    if not text.isdigit() or not text.isascii():
        raise RemoteProtocolError(f"malformed {what} {text[:30]!r}")
    if len(text) > 12 or int(text) > maximum:
        raise RemoteProtocolError(f"{what} out of range {text[:30]!r}")
    return int(text)


def parse_max_forwards(text: str) -> int:
    """Max-Forwards is 0..255 (RFC 3261 §20.22); larger values are rejected, not guessed."""
    return parse_unsigned(text, "Max-Forwards", 255)


def parse_token_list(text: str) -> list[str]:
    """Require, Supported, Allow...: a comma list of tokens (empty list allowed)."""
    if not text:
        return []
    values = split_comma_values(text)
    for value in values:
        if not _TOKEN_RE.fullmatch(value):
            raise RemoteProtocolError(f"malformed token {value[:40]!r}")
    return values


_CALL_ID_RE = re.compile(r"[^\s@]+(?:@[^\s@]+)?")


def parse_call_id(text: str) -> str:
    """Call-ID = word ["@" word] (§25.1); words may hold most visible characters."""
    if not _CALL_ID_RE.fullmatch(text):
        raise RemoteProtocolError(f"malformed Call-ID {text[:80]!r}")
    return text


@dataclass(slots=True, frozen=True)
class MediaType:
    """Content-Type / Accept value: `type/subtype;params` (RFC 3261 §20.15)."""

    type: str
    subtype: str
    parameters: dict[str, str | None] = field(default_factory=dict, hash=False)

    @property
    def essence(self) -> str:
        """`type/subtype` lower-cased, for comparisons."""
        return f"{self.type}/{self.subtype}".lower()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{format_parameters(self.parameters)}"


_MEDIA_TYPE_RE = re.compile(rf"([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)")


def parse_media_type(text: str) -> MediaType:
    cached = _MEDIA_TYPE_CACHE.get(text)
    if cached is not None:
        # "application/sdp" on every offer and answer: one frozen value, never changed
        # in place, serves all (the result is a pure function of the text).
        return cached
    match = _MEDIA_TYPE_RE.match(text)
    if match is None:
        raise RemoteProtocolError(f"malformed media type {text[:80]!r}")
    rest = text[match.end():]
    media_type = MediaType(
        match.group(1), match.group(2), parse_parameters(rest) if rest else {}
    )
    if len(_MEDIA_TYPE_CACHE) >= _SMALL_CACHE_SIZE:
        _MEDIA_TYPE_CACHE.clear()
    _MEDIA_TYPE_CACHE[text] = media_type
    return media_type


_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def check_date(text: str) -> None:
    """Date must be an RFC 1123 date in GMT (RFC 3261 §20.17; RFC 4475 §3.1.2.12)."""
    if not _DATE_RE.fullmatch(text):
        raise RemoteProtocolError(f"malformed Date {text[:80]!r}")
