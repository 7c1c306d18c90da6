"""SIP requests and responses: parsing, typed access and serialization (RFC 3261 §7, §20).

Rules:
- `parse_message(data, stream=...)` turns one datagram (or one message cut from a stream
  by `StreamFramer`) into a `Request` or `Response`. It checks only what framing needs:
  the start line, header-line syntax, Content-Length and our size limits. Typed header
  values are parsed lazily on first access and cached, so a B2BUA that reads five
  headers of a message pays for five.
- `message.validate()` parses every header the core understands and enforces the rules
  RFC 3261 §8.1.1 and RFC 4475 ask of a receiver (mandatory headers, single-value headers
  present once, CSeq method equal to the request method, no headers in a Request-URI).
  An element calls it once before acting on a message.
- Datagram framing (RFC 3261 §18.3): octets after Content-Length are ignored
  (RFC 4475 §3.1.1.8), a body shorter than Content-Length is an error (§3.1.2.2), and a
  datagram without Content-Length carries its body to the end of the datagram.
- Every failure is `RemoteProtocolError` with the status to answer: 400 for syntax, 505
  for a SIP version other than 2.0, 513 for a message over our limits.
- Header values are stored unfolded and stripped; `to_bytes()` writes each header as
  stored and always writes a Content-Length equal to the body it sends.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import RemoteProtocolError
from .headers import (
    KNOWN_SPELLINGS,
    MULTI_VALUE_KEYS,
    SINGLE_VALUE_KEYS,
    CSeq,
    MediaType,
    NameAddress,
    Via,
    canonical_key,
    check_date,
    display_name,
    parse_call_id,
    parse_cseq,
    parse_max_forwards,
    parse_media_type,
    parse_name_address,
    parse_name_address_values,
    parse_token_list,
    parse_unsigned,
    parse_via,
    parse_via_values,
    split_comma_values,
)
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "Headers",
    "Message",
    "Request",
    "Response",
    "ParserLimits",
    "parse_message",
    "REASON_PHRASES",
    "SIP_VERSION",
]

SIP_VERSION = "SIP/2.0"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


@dataclass(slots=True, frozen=True)
class ParserLimits:
    """What the parser refuses before looking further (answered with 513).

    `max_message_size` bounds one message (UDP datagrams cannot exceed 65,535 octets;
    a TCP peer could otherwise make us buffer without end). `max_headers` bounds the
    header lines of one message (RFC 4475 longreq has about 50).
    """

    max_message_size: int = 65535
    max_headers: int = 256


DEFAULT_LIMITS = ParserLimits()

T = TypeVar("T")

_FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")
_FOLD_SEARCH_RE = re.compile("\r\n[ \t]")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Key of the typed cache entry that records a successful validate(); any header
# mutation removes it.
_VALIDATED = "\0validated"
_COMMON_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
     "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/([0-9]+)\.([0-9]+)")


class Headers:
    """An ordered multimap of header fields, keyed case- and compact-form-insensitively.

    Each field is `(key, name, value)`: the canonical key ("call-id"), the name as written
    and the unfolded value. Typed values are cached per key and dropped when that key
    changes.
    """

    __slots__ = ("_fields", "_typed")

    def __init__(self, fields: list[tuple[str, str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str, str]] = fields if fields is not None else []
        self._typed: dict[str, Any] = {}

    @staticmethod
    def _field(name: str, value: str) -> tuple[str, str, str]:
        key = canonical_key(name)
        written = display_name(key) if name == key else name
        return (key, written, value)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name, value) pairs in wire order."""
        for _, name, value in self._fields:
            yield name, value

    def __len__(self) -> int:
        return len(self._fields)

    # KNOWN_SPELLINGS.get first: canonical_key() gives the same key for those, and a
    # dict lookup is cheaper than the call.
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = KNOWN_SPELLINGS.get(name) or canonical_key(name)
        for field in self._fields:
            if field[0] == key:
                return True
        return False

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, or `default`."""
        key = KNOWN_SPELLINGS.get(name) or canonical_key(name)
        for field in self._fields:
            if field[0] == key:
                return field[2]
        return default

    def get_all(self, name: str) -> list[str]:
        """Every header line's value for a name, in order (not comma-split)."""
        key = KNOWN_SPELLINGS.get(name) or canonical_key(name)
        return [field[2] for field in self._fields if field[0] == key]

    def count(self, name: str) -> int:
        key = canonical_key(name)
        return sum(1 for field in self._fields if field[0] == key)

    def add(self, name: str, value: str) -> None:
        """Append a header line after the existing ones."""
        key = KNOWN_SPELLINGS.get(name) or canonical_key(name)
        self._fields.append((key, display_name(key) if name == key else name, value))
        typed = self._typed
        if typed:  # a message being built has nothing cached yet: nothing to drop
            typed.pop(key, None)
            typed.pop(_VALIDATED, None)

    def insert_first(self, name: str, value: str) -> None:
        """Put a header line before every other line of the same header (e.g. our Via)."""
        field = self._field(name, value)
        key = field[0]
        for index, existing in enumerate(self._fields):
            if existing[0] == key:
                self._fields.insert(index, field)
                break
        else:
            self._fields.append(field)
        self._typed.pop(key, None)
        self._typed.pop(_VALIDATED, None)

    def set(self, name: str, value: str) -> None:
        """Replace every line of a header with one line, kept at the first one's place."""
        field = self._field(name, value)
        key = field[0]
        replaced = False
        kept: list[tuple[str, str, str]] = []
        for existing in self._fields:
            if existing[0] == key:
                if not replaced:
                    kept.append(field)
                    replaced = True
            else:
                kept.append(existing)
        if not replaced:
            kept.append(field)
        self._fields = kept
        self._typed.pop(key, None)
        self._typed.pop(_VALIDATED, None)

    def remove(self, name: str) -> None:
        key = canonical_key(name)
        self._fields = [field for field in self._fields if field[0] != key]
        self._typed.pop(key, None)
        self._typed.pop(_VALIDATED, None)

    def remove_first(self, name: str) -> None:
        """Remove the first value of a possibly comma-separated list header (e.g. top Via)."""
        key = canonical_key(name)
        for index, (field_key, written, value) in enumerate(self._fields):
            if field_key == key:
                values = split_comma_values(value) if key in MULTI_VALUE_KEYS else [value]
                if len(values) > 1:
                    self._fields[index] = (field_key, written, ", ".join(values[1:]))
                else:
                    del self._fields[index]
                break
        self._typed.pop(key, None)
        self._typed.pop(_VALIDATED, None)

    def copy(self) -> Headers:
        """An independent copy; the typed values parsed so far are shared (they are
        never changed in place: every mutation replaces or drops a cached value)."""
        copied = Headers(list(self._fields))
        copied._typed = self._typed.copy()
        return copied

    def typed(self, key: str, parse: Callable[[Headers], T]) -> T:
        """The cached typed value of `key`, computed by `parse(self)` on first use."""
        cache = self._typed
        if key in cache:
            value: T = cache[key]
            return value
        value = parse(self)
        cache[key] = value
        return value

    def first_value(self, key: str) -> str | None:
        """Like get() for an already canonical key (the hot path)."""
        for field in self._fields:
            if field[0] == key:
                return field[2]
        return None

    def values_of(self, key: str) -> Iterator[str]:
        for field in self._fields:
            if field[0] == key:
                yield field[2]

    def lines(self) -> list[str]:
        return [f"{name}: {value}" for _, name, value in self._fields]


def _required(headers: Headers, key: str) -> str:
    value = headers.first_value(key)
    if value is None:
        raise RemoteProtocolError(f"missing {key} header")
    return value


def _parse_vias(headers: Headers) -> list[Via]:
    values = [field[2] for field in headers._fields if field[0] == "via"]
    if len(values) == 1 and "," not in values[0]:
        return [parse_via(values[0])]  # the common case: one Via line, one value
    vias: list[Via] = []
    for value in values:
        vias.extend(parse_via_values(value))
    if not vias:
        raise RemoteProtocolError("missing Via header")
    return vias


def _parse_address_list(
    key: str, allow_wildcard: bool = False
) -> Callable[[Headers], list[NameAddress]]:
    def parse(headers: Headers) -> list[NameAddress]:
        addresses: list[NameAddress] = []
        for value in headers.values_of(key):
            addresses.extend(parse_name_address_values(value, allow_wildcard=allow_wildcard))
        return addresses

    return parse


def _parse_token_lists(key: str) -> Callable[[Headers], list[str]]:
    def parse(headers: Headers) -> list[str]:
        tokens: list[str] = []
        for value in headers.values_of(key):
            tokens.extend(parse_token_list(value))
        return tokens

    return parse


def _parse_optional_unsigned(key: str) -> Callable[[Headers], int | None]:
    def parse(headers: Headers) -> int | None:
        value = headers.first_value(key)
        return None if value is None else parse_unsigned(value, key)

    return parse


_parse_contacts = _parse_address_list("contact", allow_wildcard=True)
_parse_routes = _parse_address_list("route")
_parse_record_routes = _parse_address_list("record-route")
_parse_require = _parse_token_lists("require")
_parse_proxy_require = _parse_token_lists("proxy-require")
_parse_supported = _parse_token_lists("supported")
_parse_allow = _parse_token_lists("allow")
_parse_unsupported = _parse_token_lists("unsupported")
_parse_expires = _parse_optional_unsigned("expires")
_parse_min_expires = _parse_optional_unsigned("min-expires")


def _parse_from(headers: Headers) -> NameAddress:
    return parse_name_address(_required(headers, "from"))


def _parse_to(headers: Headers) -> NameAddress:
    return parse_name_address(_required(headers, "to"))


def _parse_call_id(headers: Headers) -> str:
    return parse_call_id(_required(headers, "call-id"))


def _parse_cseq(headers: Headers) -> CSeq:
    return parse_cseq(_required(headers, "cseq"))


def _parse_max_forwards(headers: Headers) -> int | None:
    value = headers.first_value("max-forwards")
    return None if value is None else parse_max_forwards(value)


def _parse_content_type(headers: Headers) -> MediaType | None:
    value = headers.first_value("content-type")
    return None if value is None else parse_media_type(value)


def _parse_accept(headers: Headers) -> list[MediaType]:
    types: list[MediaType] = []
    for value in headers.values_of("accept"):
        if value:
            types.extend(parse_media_type(item) for item in split_comma_values(value))
    return types


def _parse_credentials(key: str) -> Callable[[Headers], list[Any]]:
    def parse(headers: Headers) -> list[Any]:
        values = list(headers.values_of(key))
        if not values:
            return []
        from .auth import DigestCredentials

        return [DigestCredentials.parse(value) for value in values]

    return parse


def _parse_challenges(key: str) -> Callable[[Headers], list[Any]]:
    def parse(headers: Headers) -> list[Any]:
        values = list(headers.values_of(key))
        if not values:
            return []
        from .auth import DigestChallenge

        return [DigestChallenge.parse(value) for value in values]

    return parse


_parse_authorizations = _parse_credentials("authorization")
_parse_proxy_authorizations = _parse_credentials("proxy-authorization")
_parse_www_authenticates = _parse_challenges("www-authenticate")
_parse_proxy_authenticates = _parse_challenges("proxy-authenticate")


# Every header `validate()` parses, with its parser.
_VALIDATED_HEADERS: tuple[tuple[str, Callable[[Headers], Any]], ...] = (
    ("via", _parse_vias),
    ("from", _parse_from),
    ("to", _parse_to),
    ("call-id", _parse_call_id),
    ("cseq", _parse_cseq),
    ("max-forwards", _parse_max_forwards),
    ("contact", _parse_contacts),
    ("route", _parse_routes),
    ("record-route", _parse_record_routes),
    ("content-type", _parse_content_type),
    ("accept", _parse_accept),
    ("expires", _parse_expires),
    ("min-expires", _parse_min_expires),
    ("require", _parse_require),
    ("proxy-require", _parse_proxy_require),
    ("supported", _parse_supported),
    ("allow", _parse_allow),
    ("unsupported", _parse_unsupported),
    ("authorization", _parse_authorizations),
    ("proxy-authorization", _parse_proxy_authorizations),
    ("www-authenticate", _parse_www_authenticates),
    ("proxy-authenticate", _parse_proxy_authenticates),
)


_MANDATORY_KEYS = frozenset({"via", "from", "to", "call-id", "cseq"})
_ADDRESS_LIST_KEYS = ("route", "record-route", "contact")


def _parse_expires_value(text: str) -> int:
    return parse_unsigned(text, "expires")


def _parse_min_expires_value(text: str) -> int:
    return parse_unsigned(text, "min-expires")


# The single-value headers of _VALIDATED_HEADERS, parsed from their one value: once
# validate() has refused duplicates (RFC 3261 §7.3.1), that value is the first one, which
# is all their Headers-level parsers above read.
_VALUE_PARSERS: dict[str, Callable[[str], Any]] = {
    "from": parse_name_address,
    "to": parse_name_address,
    "call-id": parse_call_id,
    "cseq": parse_cseq,
    "max-forwards": parse_max_forwards,
    "content-type": parse_media_type,
    "expires": _parse_expires_value,
    "min-expires": _parse_min_expires_value,
}

_ValidationStep = tuple[str, Callable[[str], Any] | None, Callable[[Headers], Any]]
_ValidationPlan = tuple[tuple[_ValidationStep, ...], bool, tuple[str, ...]]
_VALIDATION_PLANS: dict[frozenset[str], _ValidationPlan] = {}
"""The header keys of a message -> what validate() parses for them. Messages of one
kind carry the same set of headers, so the plan is worked out once per set."""
_VALIDATION_PLANS_SIZE = 256


def _validation_plan(present: frozenset[str]) -> _ValidationPlan:
    """What validate() does for a message with these header keys, every mandatory one
    among them: each validated header present, in the order of _VALIDATED_HEADERS
    (so the error reported is the one the general loop would report), with its
    single-value parser if it has one; whether there is a Date; the address lists."""
    steps = tuple(
        (key, _VALUE_PARSERS.get(key), parse)
        for key, parse in _VALIDATED_HEADERS
        if key in present
    )
    address_keys = tuple(key for key in _ADDRESS_LIST_KEYS if key in present)
    plan = (steps, "date" in present, address_keys)
    if len(_VALIDATION_PLANS) >= _VALIDATION_PLANS_SIZE:
        _VALIDATION_PLANS.clear()
    _VALIDATION_PLANS[present] = plan
    return plan


class Message(abc.ABC):
    """What requests and responses share: headers, body and typed header access.

    Typed accessors raise `RemoteProtocolError(400)` when the header is malformed, and
    for mandatory headers (Via, From, To, Call-ID, CSeq) also when it is missing.
    """

    __slots__ = ("headers", "body")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # -- typed access -------------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        value: list[Via] | None = self.headers._typed.get("via")
        return value if value is not None else self.headers.typed("via", _parse_vias)

    @property
    def top_via(self) -> Via:
        vias: list[Via] | None = self.headers._typed.get("via")
        return (vias if vias is not None else self.vias)[0]

    @property
    def from_address(self) -> NameAddress:
        value: NameAddress | None = self.headers._typed.get("from")
        return value if value is not None else self.headers.typed("from", _parse_from)

    @property
    def to_address(self) -> NameAddress:
        value: NameAddress | None = self.headers._typed.get("to")
        return value if value is not None else self.headers.typed("to", _parse_to)

    @property
    def call_id(self) -> str:
        value: str | None = self.headers._typed.get("call-id")
        return value if value is not None else self.headers.typed("call-id", _parse_call_id)

    @property
    def cseq(self) -> CSeq:
        value: CSeq | None = self.headers._typed.get("cseq")
        return value if value is not None else self.headers.typed("cseq", _parse_cseq)

    @property
    def max_forwards(self) -> int | None:
        return self.headers.typed("max-forwards", _parse_max_forwards)

    @property
    def contacts(self) -> list[NameAddress]:
        value: list[NameAddress] | None = self.headers._typed.get("contact")
        return value if value is not None else self.headers.typed("contact", _parse_contacts)

    @property
    def routes(self) -> list[NameAddress]:
        return self.headers.typed("route", _parse_routes)

    @property
    def record_routes(self) -> list[NameAddress]:
        return self.headers.typed("record-route", _parse_record_routes)

    @property
    def content_type(self) -> MediaType | None:
        return self.headers.typed("content-type", _parse_content_type)

    @property
    def accept(self) -> list[MediaType]:
        return self.headers.typed("accept", _parse_accept)

    @property
    def expires(self) -> int | None:
        return self.headers.typed("expires", _parse_expires)

    @property
    def min_expires(self) -> int | None:
        return self.headers.typed("min-expires", _parse_min_expires)

    @property
    def require(self) -> list[str]:
        return self.headers.typed("require", _parse_require)

    @property
    def proxy_require(self) -> list[str]:
        return self.headers.typed("proxy-require", _parse_proxy_require)

    @property
    def supported(self) -> list[str]:
        return self.headers.typed("supported", _parse_supported)

    @property
    def allow(self) -> list[str]:
        return self.headers.typed("allow", _parse_allow)

    @property
    def unsupported(self) -> list[str]:
        return self.headers.typed("unsupported", _parse_unsupported)

    @property
    def authorizations(self) -> list[Any]:
        """Authorization values as `auth.DigestCredentials`."""
        return self.headers.typed("authorization", _parse_authorizations)

    @property
    def proxy_authorizations(self) -> list[Any]:
        return self.headers.typed("proxy-authorization", _parse_proxy_authorizations)

    @property
    def www_authenticates(self) -> list[Any]:
        """WWW-Authenticate values as `auth.DigestChallenge`."""
        return self.headers.typed("www-authenticate", _parse_www_authenticates)

    @property
    def proxy_authenticates(self) -> list[Any]:
        return self.headers.typed("proxy-authenticate", _parse_proxy_authenticates)

    def replace_top_via(self, via: Via) -> None:
        """Put `via` in place of the top Via value (RFC 3261 §18.2.1 `received`, RFC 3581
        `rport`), keeping every header line where it was.

        The typed cache and a previous successful `validate()` survive: the new value
        is a typed Via we built, so the message stays as valid as it was.
        """
        headers = self.headers
        fields = headers._fields
        for index, (key, name, value) in enumerate(fields):
            if key != "via":
                continue
            try:
                rest = split_comma_values(value)[1:] if "," in value else []
            except RemoteProtocolError:
                rest = []  # a malformed list (RFC 4475 badinv01): replace it whole
            fields[index] = (key, name, ", ".join([str(via), *rest]))
            break
        else:
            fields.append(("via", "Via", str(via)))
        cached = headers._typed.get("via")
        if cached:
            headers._typed["via"] = [via, *cached[1:]]
        else:
            headers._typed.pop("via", None)
            headers._typed.pop(_VALIDATED, None)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> None:
        """Parse every header the core understands; raise on the first error.

        Raises:
            RemoteProtocolError(400): a mandatory header is missing, a single-value header
                appears twice (RFC 4475 §3.3.8), or any known header is malformed.
        """
        headers = self.headers
        typed = headers._typed
        if _VALIDATED in typed:
            return  # validated before, and no header changed since
        fields = headers._fields
        keys = [field[0] for field in fields]
        present = frozenset(keys)
        if len(present) < len(keys):
            for key in SINGLE_VALUE_KEYS:  # ordered: the To/From error is the one reported
                count = keys.count(key)
                if count > 1:
                    raise RemoteProtocolError(f"{key} header appears {count} times")
        plan = _VALIDATION_PLANS.get(present)
        if plan is None and _MANDATORY_KEYS <= present:
            plan = _validation_plan(present)
        if plan is not None:
            # The usual case, every mandatory header present: the plan parses the same
            # headers in the same order as the general loop below. A single-value header
            # occurs once here (duplicates were refused above), so `values` maps its key
            # to its one value.
            steps, has_date, address_keys = plan
            values = {field[0]: field[2] for field in fields}
            for key, parse_value, parse in steps:
                if key not in typed:
                    typed[key] = parse(headers) if parse_value is None else parse_value(values[key])
        else:
            # The mandatory headers are parsed whether present or not (a missing one is
            # the error); an optional header that is absent has nothing to check. Parsed
            # in the order of _VALIDATED_HEADERS, so the error reported is always the
            # same one.
            for key, parse in _VALIDATED_HEADERS:
                if key not in typed and (key in present or key in _MANDATORY_KEYS):
                    typed[key] = parse(headers)
            has_date = "date" in present
            address_keys = tuple(key for key in _ADDRESS_LIST_KEYS if key in present)
        if has_date:
            check_date(headers.first_value("date") or "")
        # URIs inside name-addr values are parsed lazily; validation forces them.
        _ = typed["from"].uri, typed["to"].uri
        for key in address_keys:
            for address in typed[key]:
                if not address.wildcard:
                    _ = address.uri
        headers._typed[_VALIDATED] = True

    # -- serialization ------------------------------------------------------------------
    @abc.abstractmethod
    def start_line(self) -> str:
        """The Request-Line or Status-Line, without CRLF."""

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length always equals the body length (RFC 3261 §20.14)."""
        body = self.body
        lines = [self.start_line()]
        wrote_length = False
        for key, name, value in self.headers._fields:
            if key == "content-length":
                if wrote_length:
                    continue
                value = str(len(body))
                wrote_length = True
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    __bytes__ = to_bytes


class Request(Message):
    """A SIP request. `uri` is parsed lazily from the Request-URI text."""

    __slots__ = ("method", "_uri_text", "_uri")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        # Message.__init__, inlined (a message is built for every one received or sent).
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.method = method
        if isinstance(uri, str):
            self._uri_text = uri
            self._uri: Uri | None = None
        else:
            self._uri_text = str(uri)
            self._uri = uri

    @property
    def uri(self) -> Uri:
        """The Request-URI (RFC 3261 §7.1, §19.1.1).

        Raises:
            RemoteProtocolError(400): malformed, or a SIP URI carrying headers (`?...`),
                which RFC 3261 §19.1.1 forbids in a Request-URI (RFC 4475 §3.1.2.11).
        """
        uri = self._uri
        if uri is None:
            uri = parse_uri(self._uri_text)
            if isinstance(uri, SipUri) and uri.headers is not None:
                raise RemoteProtocolError("headers are not allowed in a Request-URI")
            self._uri = uri
        return uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self._uri_text = str(value)

    @property
    def uri_text(self) -> str:
        return self._uri_text

    def start_line(self) -> str:
        return f"{self.method} {self._uri_text} {SIP_VERSION}"

    def validate(self) -> None:
        """Request checks of RFC 3261 §8.1.1 / §8.2 that need no element state.

        Max-Forwards is not required: RFC 2543 requests lack it and RFC 4475 §3.4.1 says
        they must be accepted.
        """
        _ = self.uri
        super().validate()
        cseq_method = self.cseq.method
        if cseq_method != self.method:
            raise RemoteProtocolError(
                f"CSeq method {cseq_method[:20]} does not match {self.method[:20]}"
            )
        contacts = self.contacts
        if contacts and contacts[0].wildcard and self.method != "REGISTER":
            raise RemoteProtocolError("Contact: * is only allowed in REGISTER")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("status_code", "reason")

    def __init__(
        self,
        status_code: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        # Message.__init__, inlined (a message is built for every one received or sent).
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.status_code = status_code
        self.reason = REASON_PHRASES.get(status_code, "") if reason is None else reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status_code} {self.reason}"

    @property
    def is_provisional(self) -> bool:
        return self.status_code < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


_LINE_CACHE: dict[str, tuple[str, str, str]] = {}
"""Unfolded header line -> its (key, name, value) field, as `_parse_header_line` gives
it (an error is never cached)."""
_LINE_CACHE_SIZE = 4096


def _parse_header_line(line: str) -> tuple[str, str, str]:
    """One header line as a field: the key (known spellings map straight to it; anything
    else goes through canonical_key, which validates the name), the name as written and
    the value stripped of SP/HT (RFC 3261 §7.3.1). A line without a colon is refused."""
    name, colon, value = line.partition(":")
    if not colon:
        raise RemoteProtocolError(f"header line without a colon {line[:40]!r}")
    field = (KNOWN_SPELLINGS.get(name) or canonical_key(name), name, value.strip(" \t"))
    if len(_LINE_CACHE) >= _LINE_CACHE_SIZE:
        _LINE_CACHE.clear()
    _LINE_CACHE[line] = field
    return field


def _parse_request_line(line: str) -> tuple[str, str]:
    # RFC 3261 §25.1: Method SP Request-URI SP SIP-Version, exactly one SP each
    # (RFC 4475 §3.1.2.8-10 reject LWS in the URI, extra and trailing spaces).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        if len(parts) == 3 or (len(parts) > 1 and _VERSION_RE.fullmatch(parts[-1] or "")):
            raise RemoteProtocolError("malformed Request-Line (spaces)")
        raise RemoteProtocolError("malformed Request-Line")
    method, uri_text, version = parts
    if version == SIP_VERSION and method in _COMMON_METHODS and uri_text[0] != "<":
        return method, uri_text
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise RemoteProtocolError("malformed SIP-Version in Request-Line")
    if match.group(1) != "2" or match.group(2) != "0":
        raise RemoteProtocolError(f"SIP version {version[:20]} not supported", 505)
    if not _TOKEN_RE.fullmatch(method):
        raise RemoteProtocolError("malformed method")
    if uri_text.startswith("<"):
        raise RemoteProtocolError("Request-URI must not be enclosed in <>")
    return method, uri_text


def _parse_status_line(line: str) -> tuple[int, str]:
    version, _, rest = line.partition(" ")
    if version != SIP_VERSION:  # "SIP/2.0" itself needs no regex: it is 2.0
        match = _VERSION_RE.fullmatch(version)
        if match is None:
            raise RemoteProtocolError("malformed SIP-Version in Status-Line")
        if match.group(1) != "2" or match.group(2) != "0":
            raise RemoteProtocolError(f"SIP version {version[:20]} not supported", 505)
    code_text, _, reason = rest.partition(" ")
    if len(code_text) != 3 or not code_text.isdigit() or not code_text.isascii():
        raise RemoteProtocolError(f"malformed status code {code_text[:20]!r}")
    code = int(code_text)
    if not 100 <= code <= 699:
        raise RemoteProtocolError(f"status code {code} out of range")
    return code, reason


def parse_message(
    data: bytes, *, stream: bool = False, limits: ParserLimits = DEFAULT_LIMITS
) -> Request | Response:
    """Parse one SIP message.

    Args:
        data: one UDP datagram, or one message as framed by `StreamFramer`.
        stream: True when the message came over a stream transport; then the body is
            exactly Content-Length octets (RFC 3261 §18.3) and a missing Content-Length
            means an empty body.
        limits: size limits; exceeding them is a 513.

    Returns:
        A `Request` or `Response`; header values are parsed later, on access.

    Raises:
        RemoteProtocolError: with status 400, 505 or 513 (see the module rules).
    """
    if len(data) > limits.max_message_size:
        raise RemoteProtocolError("message too large", 513)
    if data[:2] == b"\r\n":
        # RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives).
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head = data[:end].decode("utf-8", "surrogateescape")
        body_start = end + 4
        separator = "\r\n"
    else:
        # Liberal: some embedded stacks end lines with a bare LF.
        end = data.find(b"\n\n")
        if end < 0 or b"\r\n" in data[:end]:
            raise RemoteProtocolError("no empty line after the headers")
        head = data[:end].decode("utf-8", "surrogateescape")
        body_start = end + 2
        separator = "\n"
    if separator == "\r\n":
        if _FOLD_SEARCH_RE.search(head) is not None:
            head = _FOLD_RE.sub(" ", head)
    elif "\n " in head or "\n\t" in head:
        head = re.sub(r"[ \t]*\n[ \t]+", " ", head)
    lines = head.split(separator)
    if len(lines) - 1 > limits.max_headers:
        raise RemoteProtocolError("too many header fields", 513)
    start = lines[0]
    if not start:
        raise RemoteProtocolError("empty start line")

    # A method is a token, and '/' is not a token character: only a Status-Line can
    # begin with "SIP/". The start line is checked first so that a bad version gets
    # its 505 whatever the headers hold.
    is_response = start[:4].upper() == "SIP/"
    if is_response:
        status_code, reason = _parse_status_line(start)
    else:
        method, uri_text = _parse_request_line(start)

    # The hot loop of the whole parser. Most header lines recur verbatim from message to
    # message (Max-Forwards, CSeq, Content-Type, and From, To and Call-ID within a
    # dialog): their field comes from the line cache, the others from
    # _parse_header_line, a pure function of the line, whose successes are the entries.
    get_field = _LINE_CACHE.get
    fields = [get_field(line) or _parse_header_line(line) for line in lines[1:]]
    lengths = [field[2] for field in fields if field[0] == "content-length"]
    content_length = lengths[0] if lengths else None
    length_count = len(lengths)

    available = len(data) - body_start
    if length_count > 1:
        raise RemoteProtocolError("Content-Length appears more than once")
    if content_length is None:
        body = b"" if stream else data[body_start:]
    else:
        if not content_length.isdigit() or not content_length.isascii() or len(content_length) > 9:
            raise RemoteProtocolError(f"malformed Content-Length {content_length[:20]!r}")
        length = int(content_length)
        if length > available:
            raise RemoteProtocolError("body shorter than Content-Length")
        body = data[body_start:body_start + length] if length else b""

    headers = Headers(fields)
    if is_response:
        return Response(status_code, reason, headers, body)
    return Request(method, uri_text, headers, body)
