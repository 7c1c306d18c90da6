"""Voicemail in the call service, in memory: the hand-over to a `VoicemailCall` (not
registered, no answer, busy), its media effects, and the message-summary subscriptions.

The switch is a real `SipEndpoint` fed datagrams built here; the caller is a trusted
trunk (not challenged), the callee phone and the subscriber are only flows.
"""

from __future__ import annotations

import dataclasses
import itertools
from types import MappingProxyType

from cloudpbx.domain import DigestAlgorithm, ExtensionKind
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DigestCredential,
    ExtensionEntry,
    TenantEntry,
    TrunkEntry,
    TrunkSource,
)
from softswitch.b2bua.caller_auth import CallerAuthenticator
from softswitch.b2bua.service import CallService
from softswitch.b2bua.voicemail_call import (
    MEDIA_OPEN_TIMEOUT,
    OpenRecorder,
    PlayGreeting,
    StartMailbox,
    StartRecording,
    StopRecorder,
    VoicemailEffect,
)
from softswitch.media import Codec, Direction
from softswitch.registrar.bindings import AddressOfRecord, Binding
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import DigestChallenge, NonceManager, answer_challenge, compute_ha1
from softswitch.sip.endpoint import EndpointConfig, SipEndpoint
from softswitch.sip.events import RequestReceived, SipEvent, TransactionTerminated
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.uri import parse_uri
from softswitch.voicemail import Mailbox

DOMAIN = "pbx.example.com"
SWITCH: Address = ("192.0.2.10", 5060)
TRUNK: Address = ("192.0.2.99", 5060)
PHONE: Address = ("192.0.2.2", 5070)
SUBSCRIBER: Address = ("192.0.2.3", 5080)
MEDIA: Address = ("192.0.2.10", 40000)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\n"
)


def extension(number: str, voicemail: bool) -> ExtensionEntry:
    credential = DigestCredential(
        number,
        DOMAIN,
        MappingProxyType(
            {DigestAlgorithm.MD5: compute_ha1(number, DOMAIN, f"pass{number}", "MD5")}
        ),
    )
    return ExtensionEntry(
        "t", "s", DOMAIN, number, ExtensionKind.FIXED_IP_PHONE, "",
        (DigestAlgorithm.MD5,), 10, None, credential, voicemail_enabled=voicemail,
    )  # fmt: skip


SNAPSHOT = ConfigSnapshot.build(
    [TenantEntry("t", "T", DOMAIN, ("s",))],
    [extension("1001", True), extension("1002", False)],
    [TrunkEntry("gw", "t", TRUNK[0], TRUNK[1], TrunkTransport.UDP, (TrunkSource(TRUNK[0], None),))],
)
MAILBOX = Mailbox("t", "1001", DOMAIN)
BRANCHES = itertools.count(1)


class Registrations:
    def __init__(self) -> None:
        self.bindings: dict[str, list[Binding]] = {}

    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        return self.bindings.get(user, [])

    def register(self, user: str) -> None:
        flow = Flow(Transport.UDP, PHONE)
        self.bindings[user] = [
            Binding(
                AddressOfRecord(DOMAIN, user), parse_uri(f"sip:{user}@{PHONE[0]}:{PHONE[1]}"),
                None, (), 1e12, "c", 1, flow, 0, 0,
            )  # fmt: skip
        ]


class Switch:
    def __init__(self, voicemail: bool = True) -> None:
        numbers = itertools.count(1)
        self.endpoint = SipEndpoint(
            EndpointConfig(*SWITCH), random_token=lambda: f"sw{next(numbers)}"
        )
        directory = SnapshotDirectory(SNAPSHOT)
        authenticator = CallerAuthenticator(
            SNAPSHOT, directory, directory, NonceManager(b"k" * 32, 300.0), self.endpoint
        )
        self.registrations = Registrations()
        self.service = CallService(
            self.endpoint, SNAPSHOT, authenticator, self.registrations, lambda: 1e9,
            f"sip:{SWITCH[0]}:{SWITCH[1]}", lambda: f"tok{next(numbers)}",
        )  # fmt: skip
        if voicemail:
            self.service.enable_voicemail()
        self.now = 0.0
        self.sent: list[tuple[Request | Response, Address]] = []

    def deliver(self, text: str, source: Address) -> None:
        self.endpoint.receive_datagram(text.encode(), source, self.now)
        while (event := self.endpoint.next_event()) is not None:
            self.handle(event)
        self.collect()

    def handle(self, event: SipEvent) -> None:
        if (
            isinstance(event, RequestReceived)
            and event.request.method == "INVITE"
            and not event.request.to_address.tag
        ):
            response = self.service.handle_invite(event, self.now)
            if response is not None:
                assert event.transaction_key is not None
                self.endpoint.send_response(response, self.now, event.transaction_key)
        elif not self.service.handle_call_event(event, self.now):
            assert isinstance(event, TransactionTerminated), event

    def collect(self) -> None:
        for data, flow in self.endpoint.data_to_send():
            message = parse_message(data)
            assert isinstance(message, (Request, Response))
            self.sent.append((message, flow.remote))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.service.handle_timer(self.now)
        self.endpoint.handle_timer(self.now)
        while (event := self.endpoint.next_event()) is not None:
            self.handle(event)
        self.collect()

    def effects(self) -> list[VoicemailEffect]:
        found = []
        while (effect := self.service.next_voicemail_effect()) is not None:
            found.append(effect)
        return found

    def to(self, address: Address) -> list[Request | Response]:
        return [message for message, remote in self.sent if remote == address]

    def finals(self) -> list[int]:
        return [
            m.status_code for m in self.to(TRUNK)
            if isinstance(m, Response) and m.status_code >= 200 and m.cseq.method == "INVITE"
        ]  # fmt: skip

    # -- the caller ----------------------------------------------------------------
    def call(self, number: str, call_id: str = "c1", offer: str = OFFER) -> None:
        self.deliver(
            f"INVITE sip:{number}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {TRUNK[0]}:{TRUNK[1]};branch=z9hG4bK-{call_id}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:0312345678@{DOMAIN}>;tag=caller\r\nTo: <sip:{number}@{DOMAIN}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{TRUNK[0]}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}",
            TRUNK,
        )

    def caller_in_dialog(self, method: str, cseq: int, call_id: str = "c1") -> None:
        (final,) = [m for m in self.to(TRUNK) if isinstance(m, Response) and m.status_code == 200
                    and m.cseq.method == "INVITE"]  # fmt: skip
        self.deliver(
            f"{method} sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {TRUNK[0]}:{TRUNK[1]};branch=z9hG4bK-{call_id}-{method}{cseq}\r\n"
            f"Max-Forwards: 70\r\nFrom: {final.headers.get('From')}\r\n"
            f"To: {final.headers.get('To')}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            "Content-Length: 0\r\n\r\n",
            TRUNK,
        )

    # -- the callee phone ----------------------------------------------------------
    def phone_answers(self, status_code: int) -> None:
        (invite,) = [m for m in self.to(PHONE) if isinstance(m, Request) and m.method == "INVITE"]
        lines = [f"SIP/2.0 {status_code} X"]
        for name in ("Via", "From", "Call-ID", "CSeq"):
            lines += [f"{name}: {value}" for value in invite.headers.get_all(name)]
        lines += [f"To: {invite.headers.get('To')};tag=phone", "Content-Length: 0", "", ""]
        self.deliver("\r\n".join(lines), PHONE)


def answer_recording(switch: Switch) -> StartRecording:
    """The voicemail call's media opens, the greeting plays to its end: recording."""
    (opened,) = switch.effects()
    assert opened == OpenRecorder("c1")
    switch.service.voicemail_media_opened("c1", MEDIA, switch.now)
    switch.collect()
    (answer,) = [m for m in switch.to(TRUNK) if isinstance(m, Response) and m.status_code == 200]
    assert b"a=sendrecv" in answer.body and b"m=audio 40000 RTP/AVP 8" in answer.body
    (greeting,) = switch.effects()
    assert isinstance(greeting, PlayGreeting)
    assert greeting.media.codec is Codec.PCMA and greeting.greeting == "voicemail_greeting_ja"
    switch.caller_in_dialog("ACK", 1)
    switch.service.greeting_finished("c1", switch.now)
    (recording,) = switch.effects()
    assert isinstance(recording, StartRecording)
    assert recording.mailbox == MAILBOX and recording.caller == f"sip:0312345678@{DOMAIN}"
    return recording


def test_an_unregistered_voicemail_extension_answers_plays_and_records() -> None:
    switch = Switch()
    switch.call("1001")
    answer_recording(switch)
    switch.caller_in_dialog("BYE", 2)
    assert switch.effects() == [StopRecorder("c1")]  # the message ends with the hang-up
    assert switch.finals() == [200]
    assert len(switch.service) == 0
    record = switch.service.next_record()
    assert record is not None and record.target == "voicemail:1001"
    assert (record.result, record.status_code) == ("answered", 200)


def test_without_voicemail_the_caller_gets_480() -> None:
    for switch, number in ((Switch(voicemail=False), "1001"), (Switch(), "1002")):
        switch.call(number)
        assert switch.finals() == [480]
        assert switch.effects() == []


def test_silence_or_the_maximum_length_hangs_up_with_bye() -> None:
    switch = Switch()
    switch.call("1001")
    answer_recording(switch)
    switch.service.recording_finished("c1", switch.now)
    switch.collect()
    assert switch.effects() == [StopRecorder("c1")]
    (bye,) = [m for m in switch.to(TRUNK) if isinstance(m, Request) and m.method == "BYE"]
    lines = ["SIP/2.0 200 OK"] + [
        f"{name}: {value}"
        for name in ("Via", "From", "To", "Call-ID", "CSeq")
        for value in bye.headers.get_all(name)
    ]
    switch.deliver("\r\n".join([*lines, "Content-Length: 0", "", ""]), TRUNK)
    assert len(switch.service) == 0


def test_no_answer_is_diverted_to_voicemail_with_the_ringing_to_tag() -> None:
    switch = Switch()
    switch.registrations.register("1001")
    switch.call("1001")
    switch.phone_answers(180)
    (ringing,) = [m for m in switch.to(TRUNK) if isinstance(m, Response) and m.status_code == 180]
    switch.advance(10.0)  # the extension's no-answer timeout
    assert switch.finals() == []  # no 480: the caller went to voicemail
    assert [m.method for m in switch.to(PHONE) if isinstance(m, Request)] == ["INVITE", "CANCEL"]
    assert switch.service.counters["diverted.480"] == 1
    answer_recording(switch)
    (answer,) = [m for m in switch.to(TRUNK) if isinstance(m, Response) and m.status_code == 200]
    assert answer.to_address.tag == ringing.to_address.tag  # one dialog for the caller
    switch.phone_answers(487)  # the phone's answer to the CANCEL's INVITE
    assert len(switch.service) == 1  # the voicemail call; the diverted call ended
    switch.caller_in_dialog("BYE", 2)
    assert len(switch.service) == 0
    sizes = switch.service.index_sizes()
    assert (sizes["calls"], sizes["by_call_id"], sizes["by_transaction"]) == (0, 0, 0)
    records = []
    while (record := switch.service.next_record()) is not None:
        records.append(record)
    assert [r.target for r in records] == ["voicemail:1001"]  # one record for the caller


def test_busy_is_diverted_and_a_cancel_then_reaches_the_voicemail_call() -> None:
    switch = Switch()
    switch.registrations.register("1001")
    switch.call("1001")
    switch.phone_answers(486)
    assert switch.finals() == []
    assert switch.service.counters["diverted.486"] == 1
    assert switch.effects() == [OpenRecorder("c1")]
    invite = [m for m in switch.to(PHONE) if isinstance(m, Request)][0]
    assert invite.method == "INVITE"
    switch.deliver(
        f"CANCEL sip:1001@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {TRUNK[0]}:{TRUNK[1]};branch=z9hG4bK-c1\r\nMax-Forwards: 70\r\n"
        f"From: <sip:0312345678@{DOMAIN}>;tag=caller\r\nTo: <sip:1001@{DOMAIN}>\r\n"
        "Call-ID: c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        TRUNK,
    )
    assert switch.finals() == [487]
    assert switch.effects() == [StopRecorder("c1")]
    switch.service.voicemail_media_opened("c1", MEDIA, switch.now)  # too late: stopped
    assert switch.effects() == [StopRecorder("c1")]
    assert len(switch.service) == 0


def test_a_registered_phone_that_answers_is_an_ordinary_call() -> None:
    switch = Switch()
    switch.registrations.register("1001")
    switch.call("1001")
    switch.phone_answers(200)
    assert switch.finals() == [200]
    assert switch.effects() == []


# --- message-summary subscriptions (RFC 3842, RFC 6665) -------------------------------


def subscribe(switch: Switch, user: str, expires: int, *, auth: str = "", cseq: int = 1,
              to_tag: str = "", event: str = "message-summary") -> None:  # fmt: skip
    to = f"<sip:{user}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
    switch.deliver(
        f"SUBSCRIBE sip:{user}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {SUBSCRIBER[0]}:{SUBSCRIBER[1]};branch=z9hG4bK-s{next(BRANCHES)}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=phone\r\nTo: {to}\r\n"
        f"Call-ID: sub1\r\nCSeq: {cseq} SUBSCRIBE\r\n"
        f"Contact: <sip:{user}@{SUBSCRIBER[0]}:{SUBSCRIBER[1]}>\r\nEvent: {event}\r\n"
        f"Expires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n",
        SUBSCRIBER,
    )


def authenticated_subscribe(switch: Switch, user: str, expires: int) -> Response:
    subscribe(switch, user, expires)
    challenge = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]
    assert challenge.status_code == 407
    parsed = DigestChallenge.parse(challenge.headers.get("proxy-authenticate") or "")
    credentials = answer_challenge(
        parsed, username=user, ha1=compute_ha1(user, DOMAIN, f"pass{user}", "MD5"),
        method="SUBSCRIBE", uri=f"sip:{user}@{DOMAIN}", cnonce="0a4f113b",
    )  # fmt: skip
    subscribe(switch, user, expires, auth=f"Proxy-Authorization: {credentials}\r\n", cseq=2)
    responses = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)]
    return responses[-1]


def notifies(switch: Switch) -> list[Request]:
    return [m for m in switch.to(SUBSCRIBER) if isinstance(m, Request) and m.method == "NOTIFY"]


def answer_notify(switch: Switch, notify: Request, status_code: int = 200) -> None:
    lines = [f"SIP/2.0 {status_code} X"] + [
        f"{name}: {value}"
        for name in ("Via", "From", "To", "Call-ID", "CSeq")
        for value in notify.headers.get_all(name)
    ]
    switch.deliver("\r\n".join([*lines, "Content-Length: 0", "", ""]), SUBSCRIBER)


def test_a_subscriber_gets_the_state_at_once_then_on_every_change_then_expiry() -> None:
    switch = Switch()
    counts = {"new": 0}
    switch.service.mwi.counts = lambda mailbox: (counts["new"], 2)
    accepted = authenticated_subscribe(switch, "1001", 600)
    assert (accepted.status_code, accepted.headers.get("expires")) == (200, "600")
    # Counted as SUBSCRIBE outcomes, not as INVITE ones.
    authentication = switch.service.authenticator_counters
    assert authentication["subscribe_challenged"] == authentication["subscribe_auth_ok"] == 1
    assert not any(name.startswith("invite_") for name in authentication), authentication
    (first,) = notifies(switch)
    assert first.headers.get("event") == "message-summary"
    assert first.headers.get("subscription-state") == "active;expires=600"
    assert first.headers.get("content-type") == "application/simple-message-summary"
    assert first.body == (
        f"Messages-Waiting: no\r\nMessage-Account: sip:1001@{DOMAIN}\r\n"
        "Voice-Message: 0/2\r\n"
    ).encode()
    answer_notify(switch, first)
    counts["new"] = 1
    switch.service.mailbox_changed("t", "1002", switch.now)  # another mailbox: nothing
    assert len(notifies(switch)) == 1
    switch.service.mailbox_changed("t", "1001", switch.now)
    switch.collect()
    second = notifies(switch)[-1]
    assert b"Messages-Waiting: yes" in second.body and b"Voice-Message: 1/2" in second.body
    answer_notify(switch, second)
    assert switch.service.next_deadline() == 600.0
    switch.advance(600.0)
    last = notifies(switch)[-1]
    assert last.headers.get("subscription-state") == "terminated;reason=timeout"
    assert len(switch.service.mwi) == 0


def test_refresh_unsubscribe_and_refusals() -> None:
    switch = Switch()
    accepted = authenticated_subscribe(switch, "1001", 600)
    tag = accepted.to_address.tag
    assert tag
    subscribe(switch, "1001", 0, cseq=3, to_tag=tag)  # unsubscribe (RFC 6665 §4.2.1.4)
    assert notifies(switch)[-1].headers.get("subscription-state") == "terminated;reason=timeout"
    assert len(switch.service.mwi) == 0
    subscribe(switch, "1001", 600, cseq=4, to_tag=tag)  # that subscription is gone
    assert [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1].status_code == 481
    subscribe(switch, "1001", 600, cseq=5, event="presence")
    refused = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]
    assert (refused.status_code, refused.headers.get("allow-events")) == (489, "message-summary")
    subscribe(switch, "1001", 30, cseq=6)
    too_brief = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]
    assert (too_brief.status_code, too_brief.headers.get("min-expires")) == (423, "60")
    # 1002 has no voicemail: not a mailbox.
    assert authenticated_subscribe(switch, "1002", 600).status_code == 404


def test_a_notify_answered_481_ends_the_subscription() -> None:
    switch = Switch()
    authenticated_subscribe(switch, "1001", 600)
    answer_notify(switch, notifies(switch)[0], 481)
    assert len(switch.service.mwi) == 0


def test_subscribe_is_not_taken_without_voicemail() -> None:
    switch = Switch(voicemail=False)
    endpoint_events: list[SipEvent] = []
    switch.endpoint.receive_datagram(
        (
            f"SUBSCRIBE sip:1001@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {SUBSCRIBER[0]}:{SUBSCRIBER[1]};branch=z9hG4bK-x\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:1001@{DOMAIN}>;tag=p\r\nTo: <sip:1001@{DOMAIN}>\r\n"
            "Call-ID: x\r\nCSeq: 1 SUBSCRIBE\r\nEvent: message-summary\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode(),
        SUBSCRIBER,
        0.0,
    )
    while (event := switch.endpoint.next_event()) is not None:
        endpoint_events.append(event)
    assert not switch.service.handle_call_event(endpoint_events[0], 0.0)


def test_mailbox_of_needs_a_fixed_phone_with_voicemail() -> None:
    from softswitch.voicemail import mailbox_of

    assert mailbox_of(SNAPSHOT, DOMAIN, "1001") == MAILBOX
    assert mailbox_of(SNAPSHOT, DOMAIN, "1002") is None
    assert mailbox_of(SNAPSHOT, DOMAIN, "9999") is None
    mobile = dataclasses.replace(extension("2001", True), kind=ExtensionKind.MOBILE)
    snapshot = ConfigSnapshot.build([TenantEntry("t", "T", DOMAIN, ("s",))], [mobile], [])
    assert mailbox_of(snapshot, DOMAIN, "2001") is None


# --- the mailbox feature code -------------------------------------------------------

DTMF_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.3\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
)


def dial_feature_code(switch: Switch, user: str, target: str = "*98") -> Response:
    """`user` (authenticated, from SUBSCRIBER's address) dials `target`; the final answer."""

    def invite(cseq: int, auth: str = "") -> None:
        switch.deliver(
            f"INVITE sip:{target}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {SUBSCRIBER[0]}:{SUBSCRIBER[1]};branch=z9hG4bK-f{next(BRANCHES)}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=me\r\n"
            f"To: <sip:{target}@{DOMAIN}>\r\nCall-ID: fc-{user}\r\nCSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:{user}@{SUBSCRIBER[0]}:{SUBSCRIBER[1]}>\r\n{auth}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(DTMF_OFFER)}\r\n\r\n"
            f"{DTMF_OFFER}",
            SUBSCRIBER,
        )

    invite(1)
    challenge = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]
    assert challenge.status_code == 407
    credentials = answer_challenge(
        DigestChallenge.parse(challenge.headers.get("proxy-authenticate") or ""),
        username=user, ha1=compute_ha1(user, DOMAIN, f"pass{user}", "MD5"),
        method="INVITE", uri=f"sip:{target}@{DOMAIN}", cnonce="77",
    )  # fmt: skip
    invite(2, f"Proxy-Authorization: {credentials}\r\n")
    return [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]


def test_the_feature_code_opens_the_callers_own_mailbox_with_dtmf() -> None:
    switch = Switch()
    dial_feature_code(switch, "1001")
    assert switch.effects() == [OpenRecorder("fc-1001")]
    switch.service.voicemail_media_opened("fc-1001", MEDIA, switch.now)
    switch.collect()
    answer = [m for m in switch.to(SUBSCRIBER) if isinstance(m, Response)][-1]
    assert answer.status_code == 200
    assert b"m=audio 40000 RTP/AVP 0 101" in answer.body
    assert b"a=rtpmap:101 telephone-event/8000" in answer.body
    (started,) = switch.effects()
    assert isinstance(started, StartMailbox)
    assert (started.mailbox, started.event_payload_type) == (MAILBOX, 101)
    switch.service.recording_finished("fc-1001", switch.now)  # the menu finished: BYE
    switch.collect()
    assert switch.effects() == [StopRecorder("fc-1001")]
    assert [m.method for m in switch.to(SUBSCRIBER) if isinstance(m, Request)] == ["BYE"]


def test_the_feature_code_needs_a_mailbox_and_a_subscriber() -> None:
    switch = Switch()
    assert dial_feature_code(switch, "1002").status_code == 404  # no voicemail
    switch.call("%2A98")  # a trunk has no mailbox (escaped `*`, RFC 3261 §19.1.2)
    assert switch.finals() == [403]
    assert switch.effects() == []


# -- what a voicemail call shares with announcements (`answered_call` rules) ------------
def caller_ack(switch: Switch, body: str) -> None:
    """The caller's ACK for the 200, carrying `body` (a late offer's answer)."""
    (final,) = [m for m in switch.to(TRUNK) if isinstance(m, Response) and m.status_code == 200
                and m.cseq.method == "INVITE"]  # fmt: skip
    switch.deliver(
        f"ACK sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {TRUNK[0]}:{TRUNK[1]};branch=z9hG4bK-c1-ack\r\n"
        f"Max-Forwards: 70\r\nFrom: {final.headers.get('From')}\r\n"
        f"To: {final.headers.get('To')}\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}",
        TRUNK,
    )


def test_a_late_offer_is_offered_sendrecv_and_greets_on_the_acks_answer() -> None:
    switch = Switch()
    switch.call("1001", offer="")
    assert switch.effects() == [OpenRecorder("c1")]
    switch.service.voicemail_media_opened("c1", MEDIA, switch.now)
    switch.collect()
    (answer,) = [m for m in switch.to(TRUNK) if isinstance(m, Response) and m.status_code == 200]
    assert b"m=audio 40000" in answer.body and b"a=sendrecv" in answer.body
    assert b"a=sendonly" not in answer.body
    assert switch.effects() == []  # the greeting waits for the ACK's answer
    caller_ack(switch, OFFER.replace(" 8 0\r\n", " 8\r\n") + "a=sendrecv\r\n")
    (greeting,) = switch.effects()
    assert isinstance(greeting, PlayGreeting)
    assert greeting.media.codec is Codec.PCMA and greeting.media.send
    assert greeting.media.direction is Direction.SENDRECV  # we offered sendrecv


def test_a_late_offer_without_an_answer_in_the_ack_hangs_up() -> None:
    switch = Switch()
    switch.call("1001", offer="")
    switch.effects()
    switch.service.voicemail_media_opened("c1", MEDIA, switch.now)
    switch.collect()
    switch.caller_in_dialog("ACK", 1)
    assert switch.effects() == [StopRecorder("c1")]
    assert [m.method for m in switch.to(TRUNK) if isinstance(m, Request)] == ["BYE"]


def test_no_socket_in_time_is_500_for_voicemail_too() -> None:
    switch = Switch()
    switch.call("1001")
    assert switch.effects() == [OpenRecorder("c1")]
    assert switch.service.next_deadline() == MEDIA_OPEN_TIMEOUT
    switch.advance(MEDIA_OPEN_TIMEOUT)
    assert switch.finals() == [500]
    assert switch.effects() == [StopRecorder("c1")]
    assert len(switch.service) == 0
    record = switch.service.next_record()
    assert record is not None and (record.result, record.status_code) == ("failed", 500)


def test_in_dialog_requests_get_501_then_481_once_we_said_bye() -> None:
    switch = Switch()
    switch.call("1001")
    answer_recording(switch)
    switch.caller_in_dialog("INFO", 2)
    switch.service.recording_finished("c1", switch.now)
    switch.collect()
    switch.caller_in_dialog("INFO", 3)
    statuses = [
        m.status_code for m in switch.to(TRUNK)
        if isinstance(m, Response) and m.cseq.method == "INFO"
    ]  # fmt: skip
    assert statuses == [501, 481]


def test_no_ack_for_the_200_hangs_up_with_bye() -> None:
    switch = Switch()
    switch.call("1001")
    switch.effects()
    switch.service.voicemail_media_opened("c1", MEDIA, switch.now)
    switch.collect()
    (greeting,) = switch.effects()
    assert isinstance(greeting, PlayGreeting)
    switch.advance(64 * 0.5)  # Timer L (RFC 6026 §8.11), 64*T1: no ACK came
    assert switch.effects() == [StopRecorder("c1")]
    assert [m.method for m in switch.to(TRUNK) if isinstance(m, Request)] == ["BYE"]
