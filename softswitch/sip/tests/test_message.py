"""Unit tests of the message layer: headers, URIs, framing, limits, serialization."""

from __future__ import annotations

import pytest

from softswitch.sip import (
    AbsoluteUri,
    Headers,
    ParserLimits,
    RemoteProtocolError,
    Request,
    Response,
    SipUri,
    TelUri,
    parse_message,
    parse_uri,
)
from softswitch.sip.framing import KEEPALIVE_PING, StreamFramer
from softswitch.sip.headers import canonical_key, parse_name_address, split_comma_values

OPTIONS = (
    b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:probe@127.0.0.2>;tag=1\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: options-1@127.0.0.2\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_round_trip_is_byte_exact_for_canonical_messages() -> None:
    message = parse_message(OPTIONS)
    assert message.to_bytes() == OPTIONS


def test_compact_and_case_insensitive_names() -> None:
    assert canonical_key("v") == "via"
    assert canonical_key("VIA") == "via"
    assert canonical_key("i") == "call-id"
    assert canonical_key("Call-Id") == "call-id"
    assert canonical_key("l") == "content-length"
    assert canonical_key("X-Thing ") == "x-thing"
    with pytest.raises(RemoteProtocolError):
        canonical_key("bad name")


def test_headers_mutation_keeps_order_and_invalidates_typed_cache() -> None:
    message = parse_message(OPTIONS)
    assert message.top_via.branch == "z9hG4bKabc"
    message.headers.insert_first("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnew")
    assert [via.branch for via in message.vias] == ["z9hG4bKnew", "z9hG4bKabc"]
    message.headers.remove_first("Via")
    assert [via.branch for via in message.vias] == ["z9hG4bKabc"]
    message.headers.set("Max-Forwards", "69")
    assert message.max_forwards == 69
    message.headers.remove("Max-Forwards")
    assert message.max_forwards is None


def test_remove_first_splits_comma_separated_vias() -> None:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com")
    headers.remove_first("Via")
    assert headers.get("Via") == "SIP/2.0/UDP b.example.com"


def test_content_length_is_written_from_the_body() -> None:
    request = Request("MESSAGE", "sip:user@example.com", body=b"hello")
    request.headers.add("Content-Length", "999")
    assert b"Content-Length: 5\r\n\r\nhello" in request.to_bytes()
    without = Response(200)
    assert without.to_bytes().endswith(b"Content-Length: 0\r\n\r\n")


def test_datagram_body_without_content_length_runs_to_the_end() -> None:
    data = OPTIONS.replace(b"Content-Length: 0\r\n", b"") + b"body"
    assert parse_message(data).body == b"body"
    assert parse_message(data, stream=True).body == b""


def test_short_body_is_an_error_and_extra_octets_are_ignored() -> None:
    short = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 10") + b"abc"
    with pytest.raises(RemoteProtocolError) as raised:
        parse_message(short)
    assert raised.value.status_code == 400
    extra = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 2") + b"abcdef"
    assert parse_message(extra).body == b"ab"


def test_limits_give_513() -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        parse_message(OPTIONS, limits=ParserLimits(max_message_size=100))
    assert raised.value.status_code == 513
    many = OPTIONS.replace(b"\r\n\r\n", b"\r\n" + b"X-A: 1\r\n" * 300 + b"\r\n")
    with pytest.raises(RemoteProtocolError) as raised:
        parse_message(many)
    assert raised.value.status_code == 513


def test_leading_crlf_and_bare_lf_are_tolerated() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + OPTIONS), Request)
    bare = OPTIONS.replace(b"\r\n", b"\n")
    message = parse_message(bare)
    assert message.call_id == "options-1@127.0.0.2"


def test_version_505_and_status_line_checks() -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        parse_message(OPTIONS.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert raised.value.status_code == 505
    response = parse_message(b"SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(response, Response) and response.status_code == 180
    for bad in (b"SIP/2.0 99 Low\r\n\r\n", b"SIP/2.0 700 High\r\n\r\n", b"SIP/2.0 2000 X\r\n\r\n"):
        with pytest.raises(RemoteProtocolError):
            parse_message(bad)


def test_uris_of_every_kind() -> None:
    uri = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "2001:db8::1", 5061)
    assert uri.transport == "tcp" and uri.loose_route and uri.headers == "subject=x"
    assert str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=x"
    tel = parse_uri("tel:+81-3-1234-5678;phone-context=example.com")
    assert isinstance(tel, TelUri) and tel.digits == "+81312345678"
    opaque = parse_uri("urn:service:sos")
    assert isinstance(opaque, AbsoluteUri) and str(opaque) == "urn:service:sos"
    for bad in ("sip:", "sip:user@", "sip:a b@example.com", "sip:host:99999", "nocolon"):
        with pytest.raises(RemoteProtocolError):
            parse_uri(bad)


def test_uri_comparison_rfc3261_section_19_1_4() -> None:
    assert SipUri.parse("sip:%61lice@ATLANTA.com;transport=TCP") == SipUri.parse(
        "sip:alice@atlanta.com;transport=tcp")
    assert SipUri.parse("sip:alice@atlanta.com") != SipUri.parse("sip:ALICE@atlanta.com")
    assert SipUri.parse("sip:bob@biloxi.com") != SipUri.parse("sip:bob@biloxi.com:5060")
    assert SipUri.parse("sip:bob@biloxi.com;transport=udp") != SipUri.parse("sip:bob@biloxi.com")
    assert SipUri.parse("sip:carol@chicago.com;security=on") == SipUri.parse(
        "sip:carol@chicago.com")


def test_name_address_forms() -> None:
    plain = parse_name_address("sip:alice@example.com;tag=1")
    assert plain.tag == "1" and plain.display_name is None
    quoted = parse_name_address('"Alice \\"A\\"" <sip:alice@example.com>;tag=2')
    assert quoted.display_name == 'Alice "A"' and quoted.tag == "2"
    assert str(quoted) == '"Alice \\"A\\"" <sip:alice@example.com>;tag=2'
    instance = parse_name_address('sip:a@b;+sip.instance="<urn:uuid:1>"')
    assert instance.parameters["+sip.instance"] == '"<urn:uuid:1>"'
    bad_values = ('"unterminated <sip:a@b>', "<sip:a@b", "a,b <sip:a@b>", "sip:a@b?x=y",
                  "< sip:a@b>")
    for bad in bad_values:
        with pytest.raises(RemoteProtocolError):
            address = parse_name_address(bad)
            address.uri  # noqa: B018


def test_comma_splitting_respects_quotes_and_brackets() -> None:
    assert split_comma_values('"a, b" <sip:x@y>, <sip:z@w;p=1,2>') == [
        '"a, b" <sip:x@y>', "<sip:z@w;p=1,2>"]
    with pytest.raises(RemoteProtocolError):
        split_comma_values("a,,b")


def test_missing_mandatory_headers_and_duplicates() -> None:
    no_call_id = parse_message(OPTIONS.replace(b"Call-ID: options-1@127.0.0.2\r\n", b""))
    with pytest.raises(RemoteProtocolError):
        no_call_id.validate()
    duplicated = parse_message(
        OPTIONS.replace(b"CSeq: 1 OPTIONS\r\n", b"CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n")
    )
    with pytest.raises(RemoteProtocolError):
        duplicated.validate()
    with pytest.raises(RemoteProtocolError):
        parse_message(OPTIONS.replace(b"Max-Forwards: 70", b"Max-Forwards: 256")).validate()


def test_stream_framer_cuts_messages_and_reports_pings() -> None:
    framer = StreamFramer()
    body_message = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 4") + b"abcd"
    stream = b"\r\n\r\n" + OPTIONS + body_message + b"\r\n" + OPTIONS
    items = []
    for index in range(0, len(stream), 7):  # arbitrary segment boundaries
        items.extend(framer.feed(stream[index:index + 7]))
    assert items == [KEEPALIVE_PING, OPTIONS, body_message, OPTIONS]
    assert framer.buffered == 0


def test_stream_framer_refuses_unframable_streams() -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: x"))
    with pytest.raises(RemoteProtocolError) as raised:
        StreamFramer(ParserLimits(max_message_size=64)).feed(b"A" * 100)
    assert raised.value.status_code == 513
