"""Property-based fuzz of the parser: whatever the bytes, the only exception is ours.

Three generators: arbitrary bytes; mutations (byte flips, cuts, insertions of SIP
metacharacters) of the RFC 4475 corpus; and structurally plausible messages built from
SIP-ish fragments. Each input goes through `parse_message` (datagram and stream
framing), `validate()`, every typed accessor, serialization and a re-parse.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip import RemoteProtocolError, Request, SipError, parse_message
from softswitch.sip.framing import StreamFramer
from softswitch.sip.tests.corpus import CORPUS

SAMPLES = [path.read_bytes() for path in sorted(CORPUS.glob("*.dat"))]

ACCESSORS = (
    "vias", "from_address", "to_address", "call_id", "cseq", "max_forwards", "contacts",
    "routes", "record_routes", "content_type", "accept", "expires", "min_expires",
    "require", "proxy_require", "supported", "allow", "unsupported", "authorizations",
    "proxy_authorizations", "www_authenticates", "proxy_authenticates",
)
METACHARACTERS = [b"\r\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"=",
                  b"@", b"%", b"?", b"[", b"]", b"\x00", b"\xff", b"\r\n ", b"/", b"SIP/2.0"]


def exercise(data: bytes) -> None:
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream)
        except RemoteProtocolError as error:
            assert 400 <= error.status_code <= 599
            continue
        for name in ACCESSORS:
            try:
                value = getattr(message, name)
                if name in ("from_address", "to_address"):
                    value.uri  # noqa: B018 - forces the lazy URI parse
                if name in ("contacts", "routes", "record_routes"):
                    for address in value:
                        if not address.wildcard:
                            address.uri  # noqa: B018
            except SipError:
                pass
        try:
            message.validate()
        except SipError:
            continue
        if isinstance(message, Request):
            message.uri  # noqa: B018
        again = parse_message(message.to_bytes(), stream=stream)
        again.validate()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    exercise(data)


@st.composite
def mutated_corpus_message(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not data:
            break
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            data[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "delete":
            del data[position:position + draw(st.integers(min_value=1, max_value=20))]
        elif action == "insert":
            data[position:position] = draw(st.sampled_from(METACHARACTERS))
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_corpus_message())
def test_mutated_corpus_only_raises_protocol_errors(data: bytes) -> None:
    exercise(data)


FRAGMENT = st.one_of(
    st.sampled_from(METACHARACTERS),
    st.sampled_from([b"sip:", b"sips:", b"tel:", b"user", b"example.com", b"5060", b"tag",
                     b"branch", b"z9hG4bK", b"INVITE", b"Digest", b"realm", b"0", b"-1",
                     b"99999999999999999999", b"[::1]", b"Via", b"To", b"From", b"Contact"]),
    st.binary(max_size=4),
)
HEADER_NAMES = st.sampled_from([
    b"Via", b"v", b"From", b"f", b"To", b"t", b"Call-ID", b"i", b"CSeq", b"Contact", b"m",
    b"Max-Forwards", b"Content-Length", b"l", b"Content-Type", b"c", b"Route",
    b"Record-Route", b"Expires", b"Require", b"Accept", b"Authorization",
    b"WWW-Authenticate", b"Date", b"X-Custom",
])


@st.composite
def plausible_message(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from([
        b"INVITE sip:user@example.com SIP/2.0", b"OPTIONS sip:[::1]:5060 SIP/2.0",
        b"SIP/2.0 200 OK", b"REGISTER sip:example.com SIP/2.0", b"BYE tel:+81312345678 SIP/2.0",
    ]))
    lines = [start]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        value = b"".join(draw(st.lists(FRAGMENT, max_size=8)))
        lines.append(draw(HEADER_NAMES) + b": " + value)
    body = draw(st.binary(max_size=64))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plausible_message())
def test_plausible_messages_only_raise_protocol_errors(data: bytes) -> None:
    exercise(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SAMPLES + [b"\r\n\r\n", b"\r\n"]), max_size=5),
       st.lists(st.integers(min_value=1, max_value=700), max_size=20))
def test_stream_framer_only_raises_protocol_errors(messages: list[bytes], cuts: list[int]) -> None:
    framer = StreamFramer()
    stream = b"".join(messages)
    position = 0
    try:
        for cut in cuts + [len(stream)]:
            for item in framer.feed(stream[position:position + cut]):
                if isinstance(item, bytes):
                    exercise(item)
            position += cut
    except RemoteProtocolError:
        pass
