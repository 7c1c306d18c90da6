"""RFC 4475 torture messages: every valid one parses and reads as the RFC says; every
invalid one raises RemoteProtocolError with the status the RFC calls for.

Liberal-acceptance choices (RFC 4475 allows either way; we reject, see README):
`baddn`, `badaspec`, `escruri` and `baddate` are refused with 400.
"""

from __future__ import annotations

import csv

import pytest

from softswitch.sip import (
    AbsoluteUri,
    RemoteProtocolError,
    Request,
    Response,
    SipUri,
    parse_message,
)
from softswitch.sip.tests.corpus import CORPUS
from softswitch.sip.uri import unescape

MANIFEST = {
    row["name"]: row
    for row in csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
}
VALID = sorted(name for name, row in MANIFEST.items() if row["expected"] == "valid")
INVALID = sorted(name for name, row in MANIFEST.items() if row["expected"] == "invalid")

EXPECTED_STATUS = {name: 400 for name in INVALID}
EXPECTED_STATUS["badvers"] = 505


def load(name: str) -> bytes:
    return (CORPUS / f"{name}.dat").read_bytes()


def parse_valid(name: str) -> Request | Response:
    message = parse_message(load(name))
    message.validate()
    return message


def parse_request(name: str) -> Request:
    message = parse_valid(name)
    assert isinstance(message, Request)
    return message


def test_corpus_is_complete() -> None:
    assert len(MANIFEST) == 50
    assert all((CORPUS / f"{name}.dat").exists() for name in MANIFEST)


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse_and_validate(name: str) -> None:
    message = parse_valid(name)
    # Typed access of the fields every element reads never fails on a valid message.
    assert message.vias
    assert message.cseq.number >= 0
    assert message.call_id


@pytest.mark.parametrize("name", INVALID)
def test_invalid_messages_raise_protocol_error_with_status(name: str) -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        message = parse_message(load(name))
        message.validate()
    assert raised.value.status_code == EXPECTED_STATUS[name], raised.value.reason


def test_wsinv_reads_through_all_the_whitespace() -> None:
    request = parse_request("wsinv")
    assert request.method == "INVITE"
    assert request.uri == SipUri.parse("sip:vivekg@chair-dnrc.example.com;unknownparam")
    assert request.to_address.tag == "1918181833n"
    assert request.to_address.uri == SipUri.parse("sip:vivekg@chair-dnrc.example.com")
    assert request.from_address.display_name == 'J Rosenberg \\"'
    assert request.from_address.tag == "98asjd8"
    assert request.max_forwards == 68
    assert request.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (request.cseq.number, request.cseq.method) == (9, "INVITE")
    vias = request.vias
    assert [(via.transport, via.host, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    assert request.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert request.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = request.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.parameters == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert contact.q == pytest.approx(0.33)
    (route,) = request.routes
    assert isinstance(route.uri, SipUri) and route.uri.loose_route
    assert route.uri.parameters["unknownwith"] == "value"
    assert "unknown-no-value" in route.uri.parameters
    assert len(request.body) == 150


def test_intmeth_accepts_every_token_character() -> None:
    request = parse_request("intmeth")
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert request.cseq.method == request.method
    uri = request.uri
    assert isinstance(uri, SipUri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert request.to_address.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_address.display_name == "token1~` token2'+_ token3*%!.-"
    assert request.from_address.tag == "_token~1'+`*%!-."
    assert request.from_address.parameters["fromparam''~+*_!.-%"] == '"работающий"'
    assert request.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert request.max_forwards == 255
    assert request.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert request.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01_escaped_uris_compare_equal_to_unescaped() -> None:
    request = parse_request("esc01")
    uri = request.uri
    assert isinstance(uri, SipUri)
    assert unescape(uri.user or "") == "sips:user@example.com"
    assert request.to_address.uri == SipUri.parse("sip:user@example.com")
    from_uri = request.from_address.uri
    assert isinstance(from_uri, SipUri) and unescape(from_uri.user or "") == "I have spaces"
    (contact,) = request.contacts
    assert contact.uri == SipUri.parse("sip:caller@host5.example.net;lr;name=value%2541")


def test_escnull_keeps_escaped_nul_octets() -> None:
    request = parse_request("escnull")
    to_uri = request.to_address.uri
    assert isinstance(to_uri, SipUri) and unescape(to_uri.user or "") == "null-\x00-null"
    users = [unescape(contact.uri.user or "") for contact in request.contacts
             if isinstance(contact.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]
    assert request.contacts[0].uri != request.contacts[1].uri


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    request = parse_request("esc02")
    assert request.method == "RE%47IST%45R"
    assert request.cseq.method == "RE%47IST%45R"
    assert request.to_address.display_name == "%Z%45"
    assert len(request.contacts) == 2  # C%6Fntact is an unknown header, not Contact
    assert request.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert request.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_without_space() -> None:
    request = parse_request("lwsdisp")
    assert request.from_address.display_name == "caller"
    assert request.from_address.tag == "323"


def test_longreq_many_vias_and_long_values() -> None:
    request = parse_request("longreq")
    assert len(request.vias) == 34
    assert request.vias[0].host == "sip33.example.com"
    assert request.vias[-1].branch is not None and request.vias[-1].branch.startswith("verylong")
    assert request.vias[-1].received == "192.0.2.5"
    assert request.to_address.display_name is not None
    assert "extremeextreme" in request.to_address.display_name
    assert request.cseq.number == 3882340
    assert len(load("longreq")) > 3000


def test_dblreq_ignores_octets_after_content_length() -> None:
    request = parse_request("dblreq")
    assert request.method == "REGISTER"
    assert request.body == b""


def test_semiuri_semicolons_in_user_part() -> None:
    request = parse_request("semiuri")
    uri = request.uri
    assert isinstance(uri, SipUri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    assert uri.parameters == {}


def test_transports_unknown_transport_tokens() -> None:
    request = parse_request("transports")
    assert [via.transport for via in request.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_kept_byte_exact() -> None:
    request = parse_request("mpart01")
    assert len(request.body) == 553
    content_type = request.content_type
    assert content_type is not None and content_type.essence == "multipart/mixed"
    assert content_type.parameters["boundary"] == "7a9cbec02ceef655"
    raw = load("mpart01")
    assert raw.endswith(request.body) or request.body in raw


def test_unreason_and_noreason_reason_phrases() -> None:
    unreason = parse_valid("unreason")
    assert isinstance(unreason, Response) and unreason.status_code == 200
    assert unreason.reason.startswith("= 2**3 * 5**2")
    noreason = parse_valid("noreason")
    assert isinstance(noreason, Response)
    assert (noreason.status_code, noreason.reason) == (100, "")


def test_badbranch_is_only_the_magic_cookie() -> None:
    assert parse_valid("badbranch").top_via.branch == "z9hG4bK"


def test_unknown_schemes_are_kept_opaque() -> None:
    unkscm = parse_request("unkscm")
    assert isinstance(unkscm.uri, AbsoluteUri)
    assert unkscm.uri.scheme == "nobodyKnowsThisScheme"
    novelsc = parse_request("novelsc")
    assert isinstance(novelsc.uri, AbsoluteUri) and novelsc.uri.scheme == "soap.beep"
    unksm2 = parse_request("unksm2")
    assert str(unksm2.to_address.uri) == "isbn:2983792873"
    assert str(unksm2.from_address.uri) == "http://www.example.com"
    assert str(unksm2.contacts[0].uri) == "name:John_Smith"


def test_bext01_require_tokens() -> None:
    request = parse_request("bext01")
    assert request.require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert request.proxy_require == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def test_invut_and_sdp01_media_types() -> None:
    content_type = parse_request("invut").content_type
    assert content_type is not None and content_type.essence == "application/unknownformat"
    accept = parse_request("sdp01").accept
    assert [media.essence for media in accept] == ["text/nobodyknowsthis"]


def test_regaut01_unknown_authorization_scheme() -> None:
    (credentials,) = parse_request("regaut01").authorizations
    assert credentials.scheme == "NoOneKnowsThisScheme"


def test_bcast_second_via_is_broadcast() -> None:
    response = parse_valid("bcast")
    assert isinstance(response, Response)
    assert response.vias[1].host == "255.255.255.255"


def test_zeromf_max_forwards_zero() -> None:
    assert parse_request("zeromf").max_forwards == 0


def test_contact_parameters_inside_and_outside_brackets() -> None:
    (outside,) = parse_request("cparam01").contacts
    assert "unknownparam" in outside.parameters  # header parameter
    assert isinstance(outside.uri, SipUri) and outside.uri.parameters == {}
    (inside,) = parse_request("cparam02").contacts
    assert outside.parameters != inside.parameters
    assert isinstance(inside.uri, SipUri) and "unknownparam" in inside.uri.parameters


def test_regescrt_escaped_headers_inside_brackets() -> None:
    (contact,) = parse_request("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_inv2543_rfc2543_syntax_is_accepted() -> None:
    request = parse_request("inv2543")
    assert request.top_via.branch is None
    assert request.max_forwards is None
    assert request.headers.get("Content-Length") is None
    assert len(request.body) > 0  # the body runs to the end of the datagram


@pytest.mark.parametrize("name", VALID)
def test_serialization_reparses_to_the_same_fields(name: str) -> None:
    message = parse_valid(name)
    again = parse_message(message.to_bytes())
    again.validate()
    assert type(again) is type(message)
    assert again.body == message.body
    assert [str(via) for via in again.vias] == [str(via) for via in message.vias]
    assert again.call_id == message.call_id
    assert again.cseq == message.cseq
    assert str(again.from_address) == str(message.from_address)
    assert str(again.to_address) == str(message.to_address)
