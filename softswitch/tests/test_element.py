"""The element's UAS answers: RFC 3261 §8.2 checks in order, over RFC 4475 and crafted
requests.

The checks are pure functions of the request and a small core (`create_response`,
`is_merged_request`); `ResponseBuilder` below is that core built from RFC 3261 §8.2.6
alone, so the tests read the element's decisions without depending on the endpoint.
`test_answers_through_the_real_endpoint` runs the same corpus through the real
`SipEndpoint.create_response`.
"""

from __future__ import annotations

import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.element import (
    ALLOWED_METHODS,
    Element,
    ElementPolicy,
    answer_request,
    check_request,
)
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.events import CancelReceived, RequestReceived, SipEvent
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Headers, Request, Response, parse_message
from softswitch.sip.tests.corpus import CORPUS

MANIFEST = {
    row["name"]: row
    for row in csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
}


def _is_request_file(name: str) -> bool:
    return not (CORPUS / f"{name}.dat").read_bytes().startswith(b"SIP/")


REQUEST_FILES = sorted(name for name in MANIFEST if _is_request_file(name))

# What the element answers to each valid RFC 4475 request (after the endpoint has
# validated it), and why.
EXPECTED_ANSWERS: dict[str, int | None] = {
    "badbranch": 200,  # OPTIONS for us; the bare magic cookie is the transaction layer's
    "bext01": 420,  # Require: nothingSupportsThis... (RFC 4475 §3.3.5)
    "cparam01": 404,  # REGISTER: no address-of-record exists yet
    "cparam02": 404,
    "dblreq": 404,  # the REGISTER; the INVITE after Content-Length is ignored
    "esc01": 404,  # INVITE to a user we do not have
    "esc02": 405,  # RE%47IST%45R is a method of its own
    "escnull": 404,
    "intmeth": 405,  # an extension method we do not implement
    "inv2543": 404,  # RFC 2543 INVITE, accepted for processing: no such user
    "invut": 415,  # application/unknownformat (RFC 4475 §3.3.6)
    "longreq": 404,  # INVITE with very long headers, to a user we do not have
    "lwsdisp": 200,
    "mpart01": 405,  # MESSAGE is not implemented (before its multipart body is looked at)
    "novelsc": 416,  # soap.beep: Request-URI (RFC 4475 §3.3.3)
    "regaut01": 404,
    "regescrt": 404,
    "sdp01": 406,  # Accept: text/nobodyKnowsThis (RFC 4475 §3.3.15)
    "semiuri": 200,
    "transports": 200,
    "unkscm": 416,  # nobodyKnowsThisScheme: Request-URI (RFC 4475 §3.3.2)
    "unksm2": 404,  # unknown schemes in To/From/Contact are fine; no such user
    "wsinv": 481,  # INVITE with a To tag
    "zeromf": 200,  # OPTIONS with Max-Forwards 0 is answered by its target (§11)
}


class ResponseBuilder:
    """A UAS core from RFC 3261 §8.2.6 alone: copies Via, From, To, Call-ID and CSeq,
    and adds a To tag of its choosing when the caller gives none."""

    def __init__(self, merged: bool = False) -> None:
        self.merged = merged
        self.tags_chosen = 0
        self.sent: list[tuple[Response, float, str | None]] = []

    def create_response(
        self,
        request: Request,
        status_code: int,
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> Response:
        if to_tag is None and status_code > 100 and request.to_address.tag is None:
            self.tags_chosen += 1
            to_tag = f"core-tag-{self.tags_chosen}"
        headers = Headers()
        for via in request.headers.get_all("Via"):
            headers.add("Via", via)
        for name in ("From", "To", "Call-ID", "CSeq"):
            value = request.headers.get(name)
            if value is not None:
                if name == "To" and to_tag is not None:
                    value = f"{value};tag={to_tag}"
                headers.add(name, value)
        return Response(status_code, reason, headers)

    def is_merged_request(self, request: Request) -> bool:
        return self.merged

    def send_response(
        self, response: Response, now: float, transaction_key: str | None = None
    ) -> None:
        self.sent.append((response, now, transaction_key))


def load_request(name: str) -> Request:
    message = parse_message((CORPUS / f"{name}.dat").read_bytes())
    assert isinstance(message, Request)
    return message


def validated(name: str) -> Request | None:
    """The corpus request if it parses and validates, else None (the endpoint's case)."""
    try:
        request = load_request(name)
        request.validate()
    except RemoteProtocolError:
        return None
    return request


def make_request(
    method: str = "OPTIONS",
    uri: str = "sip:service@192.0.2.10",
    *,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    to_tag: str | None = None,
    max_forwards: int | None = 70,
) -> Request:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-test-1")
    headers.add("From", "<sip:alice@example.com>;tag=from-1")
    headers.add("To", "<sip:service@192.0.2.10>" + (f";tag={to_tag}" if to_tag else ""))
    headers.add("Call-ID", "element-test@192.0.2.1")
    headers.add("CSeq", f"1 {method}")
    if max_forwards is not None:
        headers.add("Max-Forwards", str(max_forwards))
    for name, value in extra:
        headers.add(name, value)
    request = Request(method, uri, headers, body)
    request.validate()
    return request


def status_of(request: Request, core: ResponseBuilder | None = None) -> int | None:
    response = answer_request(request, core or ResponseBuilder(), to_tag="to-1")
    return None if response is None else response.status_code


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


# -- the RFC 4475 corpus -------------------------------------------------------------------


def test_expectations_cover_every_valid_request_of_the_corpus() -> None:
    parsed = {name for name in REQUEST_FILES if validated(name) is not None}
    assert parsed == set(EXPECTED_ANSWERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ANSWERS))
def test_corpus_request_gets_its_answer(name: str) -> None:
    request = validated(name)
    assert request is not None
    assert status_of(request) == EXPECTED_ANSWERS[name]


@pytest.mark.parametrize(
    "name", sorted(name for name in REQUEST_FILES if MANIFEST[name]["expected"] == "invalid")
)
def test_invalid_corpus_request_never_gets_a_2xx(name: str) -> None:
    """Were the endpoint to pass one up, the element still refuses it (400/505), or
    stays silent when no response can be built from it."""
    try:
        request = load_request(name)
    except RemoteProtocolError:
        return  # cannot even be parsed: the endpoint answers or drops it
    response = answer_request(request, ResponseBuilder())
    assert response is None or response.status_code in (400, 505)


def test_bext01_lists_only_the_require_tags_in_unsupported() -> None:
    request = validated("bext01")
    assert request is not None
    response = answer_request(request, ResponseBuilder())
    assert response is not None and response.status_code == 420
    assert response.headers.get("Unsupported") == (
        "nothingSupportsThis, nothingSupportsThisEither"
    )


def test_invut_answer_lists_what_we_accept() -> None:
    request = validated("invut")
    assert request is not None
    response = answer_request(request, ResponseBuilder())
    assert response is not None and response.status_code == 415
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Accept-Encoding") == "identity"
    assert response.headers.get("Accept-Language") == "en"


# -- the order of the checks (RFC 3261 §8.2) ------------------------------------------------


def test_method_is_checked_before_the_uri_scheme() -> None:
    request = make_request("NEWMETHOD", "nobodyKnowsThisScheme:opaque")
    response = check_request(request, ResponseBuilder())
    assert response is not None and response.status_code == 405
    assert response.headers.get("Allow") == ", ".join(ALLOWED_METHODS)


def test_uri_scheme_is_checked_before_require() -> None:
    request = make_request("OPTIONS", "soap.beep://192.0.2.103:3002", extra=(("Require", "x"),))
    assert status_of(request) == 416


def test_tel_uri_is_not_ours_yet() -> None:
    assert status_of(make_request("INVITE", "tel:+81312345678")) == 404
    assert status_of(make_request("OPTIONS", "tel:+81312345678")) == 404


def test_not_ours_is_checked_before_merged() -> None:
    policy = ElementPolicy(served_schemes=("sip", "sips", "tel"))
    response = check_request(
        make_request("INVITE", "tel:+81312345678"), ResponseBuilder(merged=True), policy
    )
    assert response is not None and response.status_code == 404


def test_merged_request_is_a_loop_before_require() -> None:
    request = make_request("INVITE", extra=(("Require", "foo"),))
    response = check_request(request, ResponseBuilder(merged=True))
    assert response is not None and response.status_code == 482


def test_merged_check_applies_only_outside_a_dialog() -> None:
    request = make_request("BYE", to_tag="dialog-1")
    assert status_of(request, ResponseBuilder(merged=True)) == 481


def test_require_is_checked_before_the_body() -> None:
    request = make_request(
        "INVITE",
        extra=(("Require", "100rel, timer"), ("Content-Type", "application/unknown")),
        body=b"x",
    )
    response = check_request(request, ResponseBuilder())
    assert response is not None and response.status_code == 420
    assert response.headers.get("Unsupported") == "100rel, timer"


def test_proxy_require_is_ignored_by_the_uas() -> None:
    request = make_request("OPTIONS", extra=(("Proxy-Require", "sec-agree"),))
    assert status_of(request) == 200


def test_supported_option_tags_pass_require() -> None:
    policy = ElementPolicy(supported_option_tags=("timer",))
    request = make_request("OPTIONS", extra=(("Require", "timer"),))
    assert check_request(request, ResponseBuilder(), policy) is None


def test_require_is_ignored_in_cancel() -> None:
    request = make_request("CANCEL", extra=(("Require", "foo"),))
    assert status_of(request) == 481


def test_body_is_checked_before_accept() -> None:
    request = make_request(
        "INVITE",
        extra=(("Content-Type", "application/unknown"), ("Accept", "text/plain")),
        body=b"x",
    )
    assert status_of(request) == 415


def test_content_coding_we_do_not_know_is_a_415() -> None:
    request = make_request(
        "INVITE",
        extra=(("Content-Type", "application/sdp"), ("Content-Encoding", "gzip")),
        body=SDP,
    )
    response = check_request(request, ResponseBuilder())
    assert response is not None and response.status_code == 415
    assert response.headers.get("Accept-Encoding") == "identity"


def test_body_without_content_type_is_a_bad_request() -> None:
    request = make_request("OPTIONS", body=b"hello")
    assert status_of(request) == 400


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/sdp", 404),
        ("application/*", 404),
        ("*/*", 404),
        ("text/plain, application/SDP;level=1", 404),
        ("text/nobodyKnowsThis", 406),
        ("", 406),
    ],
)
def test_accept_is_checked_against_the_session_description_of_the_answer(
    accept: str, expected: int
) -> None:
    request = make_request(
        "INVITE", extra=(("Content-Type", "application/sdp"), ("Accept", accept)), body=SDP
    )
    assert status_of(request) == expected


def test_accept_does_not_matter_for_options_which_we_answer_without_a_body() -> None:
    assert status_of(make_request("OPTIONS", extra=(("Accept", "text/plain"),))) == 200


def test_accept_is_checked_before_max_forwards() -> None:
    request = make_request("INVITE", extra=(("Accept", "text/plain"),), max_forwards=0)
    assert status_of(request) == 406


@pytest.mark.parametrize(
    ("method", "expected"),
    [("INVITE", 483), ("BYE", 483), ("INFO", 483), ("UPDATE", 483), ("OPTIONS", 200),
     ("REGISTER", 404)],
)
def test_max_forwards_zero(method: str, expected: int) -> None:
    assert status_of(make_request(method, max_forwards=0)) == expected


def test_missing_max_forwards_is_accepted() -> None:
    """RFC 2543 requests have none (RFC 4475 §3.4.1)."""
    assert status_of(make_request("OPTIONS", max_forwards=None)) == 200


# -- the answers of this first version ------------------------------------------------------


def test_options_answer_lists_our_capabilities_and_adds_a_to_tag() -> None:
    response = answer_request(make_request("OPTIONS"), ResponseBuilder(), to_tag="to-1")
    assert response is not None and response.status_code == 200
    headers = response.headers
    assert headers.get("Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE"
    assert headers.get("Accept") == "application/sdp"
    assert headers.get("Accept-Encoding") == "identity"
    assert headers.get("Accept-Language") == "en"
    assert "Supported" in headers
    assert response.to_address.tag == "to-1"


def test_rejection_keeps_the_tag_the_request_has() -> None:
    response = answer_request(make_request("BYE", to_tag="theirs"), ResponseBuilder())
    assert response is not None and response.status_code == 481
    assert response.to_address.tag == "theirs"


def test_rejection_of_a_request_without_to_tag_leaves_the_tag_to_the_core() -> None:
    core = ResponseBuilder()
    response = answer_request(make_request("INVITE"), core)
    assert response is not None and response.to_address.tag == "core-tag-1"


def test_real_endpoint_keeps_one_to_tag_per_transaction() -> None:
    """§9.2: the 487 after a CANCEL carries the tag of the CANCEL's 200."""
    endpoint = SipEndpoint(EndpointConfig(local_host="127.0.0.1", local_port=5060))
    flow = Flow(Transport.UDP, ("192.0.2.1", 5060))
    invite = make_request("INVITE")
    endpoint.receive_datagram(invite.to_bytes(), flow.remote, 0.0)
    cancel = make_request("CANCEL")
    endpoint.receive_datagram(cancel.to_bytes(), flow.remote, 0.1)
    events = []
    while (event := endpoint.next_event()) is not None:
        events.append(event)
    (received,) = [event for event in events if isinstance(event, RequestReceived)]
    (cancelled,) = [event for event in events if isinstance(event, CancelReceived)]
    answers = [parse_message(data) for data, _ in endpoint.data_to_send()]
    (cancel_answer,) = [
        answer for answer in answers
        if isinstance(answer, Response) and answer.cseq.method == "CANCEL"
    ]
    assert cancel_answer.status_code == 200
    response = answer_request(received.request, endpoint)
    assert response is not None and response.status_code == 404
    assert response.to_address.tag == cancel_answer.to_address.tag
    assert cancelled.invite_transaction_key == received.transaction_key


@pytest.mark.parametrize(
    ("method", "expected"),
    [("INVITE", 404), ("REGISTER", 404), ("BYE", 481), ("INFO", 481), ("UPDATE", 481),
     ("CANCEL", 481), ("OPTIONS", 200)],
)
def test_answer_outside_a_dialog(method: str, expected: int) -> None:
    assert status_of(make_request(method)) == expected


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "BYE", "INFO", "UPDATE"])
def test_mid_dialog_request_for_an_unknown_dialog_is_481(method: str) -> None:
    assert status_of(make_request(method, to_tag="unknown-dialog")) == 481


def test_register_with_a_to_tag_is_still_a_registration() -> None:
    assert status_of(make_request("REGISTER", to_tag="x")) == 404


def test_ack_is_never_answered_whatever_it_carries() -> None:
    request = make_request(
        "ACK", extra=(("Require", "foo"), ("Content-Type", "text/plain")), body=b"x",
        max_forwards=0,
    )
    assert check_request(request, ResponseBuilder()) is None
    assert answer_request(request, ResponseBuilder()) is None


def test_request_that_fails_validation_gets_its_status() -> None:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1")
    headers.add("From", "<sip:a@example.com>;tag=1")
    headers.add("To", "<sip:b@example.com>")
    headers.add("Call-ID", "x@y")
    headers.add("CSeq", "1 INVITE")
    response = answer_request(Request("OPTIONS", "sip:b@example.com", headers), ResponseBuilder())
    assert response is not None and response.status_code == 400


# -- a property: nothing but a clean OPTIONS is ever accepted ----------------------------


@given(
    method=st.sampled_from(
        ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "MESSAGE",
         "SUBSCRIBE", "PRACK"]
    ),
    uri=st.sampled_from(
        ["sip:a@192.0.2.1", "sips:a@example.com", "tel:+15551234", "urn:x:y", "soap.beep://h"]
    ),
    require=st.sampled_from([None, "", "100rel", "timer, foo"]),
    content=st.sampled_from(
        [None, ("application/sdp", SDP), ("text/plain", b"hi"), ("application/sdp", b"")]
    ),
    accept=st.sampled_from([None, "", "application/sdp", "text/plain", "*/*"]),
    max_forwards=st.sampled_from([None, 0, 1, 70]),
    to_tag=st.sampled_from([None, "t"]),
    merged=st.booleans(),
)
def test_only_a_clean_options_is_accepted(
    method: str,
    uri: str,
    require: str | None,
    content: tuple[str, bytes] | None,
    accept: str | None,
    max_forwards: int | None,
    to_tag: str | None,
    merged: bool,
) -> None:
    extra: list[tuple[str, str]] = []
    body = b""
    if require is not None:
        extra.append(("Require", require))
    if content is not None:
        extra.append(("Content-Type", content[0]))
        body = content[1]
    if accept is not None:
        extra.append(("Accept", accept))
    request = make_request(
        method, uri, extra=tuple(extra), body=body, to_tag=to_tag, max_forwards=max_forwards
    )
    response = answer_request(request, ResponseBuilder(merged=merged))
    if method == "ACK":
        assert response is None
        return
    assert response is not None
    if 200 <= response.status_code < 300:
        assert method == "OPTIONS"
        assert uri.startswith("sip")
        assert not require
        assert content is None or content[0] == "application/sdp"
        assert to_tag is None and not merged
    else:
        assert response.status_code >= 400


# -- the event handler ---------------------------------------------------------------------


def test_element_answers_through_the_transaction_it_was_given() -> None:
    core = ResponseBuilder()
    element = Element(core)
    flow = Flow(Transport.UDP, ("192.0.2.1", 5060))
    element.handle_event(RequestReceived(make_request("OPTIONS"), flow, "key-1"), 12.5)
    element.handle_event(RequestReceived(make_request("ACK"), flow, None), 12.6)
    (response, now, key), = core.sent
    assert (response.status_code, now, key) == (200, 12.5, "key-1")
    assert element.counters["responses.200"] == 1
    assert element.counters["requests.ACK"] == 1


def test_element_ignores_a_cancel_for_an_answered_invite() -> None:
    core = ResponseBuilder()
    element = Element(core)
    element.handle_event(CancelReceived("key-1", make_request("CANCEL")), 1.0)
    assert core.sent == []


class RecordingCalls:
    """A `CallHandler` double: takes events whose Call-ID it knows, answers INVITEs."""

    def __init__(self, answer: int | None) -> None:
        self.answer = answer
        self.owned_call_ids: set[str] = set()
        self.invites: list[RequestReceived] = []
        self.core = ResponseBuilder()

    def handle_call_event(self, event: SipEvent, now: float) -> bool:
        return isinstance(event, RequestReceived) and (
            event.request.call_id in self.owned_call_ids
        )

    def handle_invite(self, event: RequestReceived, now: float) -> Response | None:
        self.invites.append(event)
        if self.answer is None:
            return None
        return self.core.create_response(event.request, self.answer)


@pytest.mark.parametrize("answer", [None, 407])
def test_new_invite_goes_to_the_call_handler(answer: int | None) -> None:
    core = ResponseBuilder()
    calls = RecordingCalls(answer)
    element = Element(core, calls=calls)
    flow = Flow(Transport.UDP, ("192.0.2.1", 5060))
    element.handle_event(RequestReceived(make_request("INVITE"), flow, "key-1"), 1.0)
    assert len(calls.invites) == 1
    assert [response.status_code for response, _, _ in core.sent] == (
        [] if answer is None else [answer]
    )


def test_call_handler_gets_events_first_and_invites_only_after_the_checks() -> None:
    core = ResponseBuilder()
    calls = RecordingCalls(None)
    element = Element(core, calls=calls)
    flow = Flow(Transport.UDP, ("192.0.2.1", 5060))
    # §8.2.2.3: an unsupported Require is refused before any call sees the INVITE.
    invite = make_request("INVITE", extra=(("Require", "nosuchtag"),))
    element.handle_event(RequestReceived(invite, flow, "key-1"), 1.0)
    assert calls.invites == [] and [r.status_code for r, _, _ in core.sent] == [420]
    # A BYE of a call the handler owns is not answered 481 by the element.
    calls.owned_call_ids.add("element-test@192.0.2.1")
    element.handle_event(RequestReceived(make_request("BYE", to_tag="t"), flow, "key-2"), 2.0)
    assert len(core.sent) == 1


# -- the same corpus through the real endpoint ---------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_ANSWERS))
def test_answers_through_the_real_endpoint(name: str) -> None:
    endpoint = SipEndpoint(EndpointConfig(local_host="127.0.0.1", local_port=5060))
    request = validated(name)
    assert request is not None
    response = answer_request(request, endpoint)
    expected = EXPECTED_ANSWERS[name]
    assert (None if response is None else response.status_code) == expected
    if response is not None:
        assert response.call_id == request.call_id
        assert response.cseq == request.cseq
        if request.to_address.tag is None:
            assert response.to_address.tag
