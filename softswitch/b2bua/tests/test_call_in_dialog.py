"""In-dialog relaying (re-INVITE hold/resume, UPDATE, INFO, 491 glare) and parallel
forking through the B2BUA, on the in-memory harness of `test_call`."""

from __future__ import annotations

from softswitch.b2bua import CallEnded, CallResult
from softswitch.sip.events import RequestReceived, ResponseReceived, SipEvent
from softswitch.sip.flows import Address, Flow, Transport
from softswitch.sip.message import Request

from .test_call import (
    ANSWER,
    CALLEE,
    CALLER,
    OFFER,
    SWITCH,
    Link,
    Phone,
    Switch,
    assert_all_freed,
)

CALLEE_2: Address = ("192.0.2.3", 5060)
HOLD = OFFER.replace(b"o=alice 1 1", b"o=alice 1 2") + b"a=sendonly\r\n"
RESUME = OFFER.replace(b"o=alice 1 1", b"o=alice 1 3") + b"a=sendrecv\r\n"
INACTIVE = ANSWER.replace(b"o=bob 1 1", b"o=bob 1 2") + b"a=inactive\r\n"
DTMF = b"Signal=5\r\nDuration=160\r\n"


def answer_to(offer: bytes, origin: bytes) -> bytes:
    """An SDP answer mirroring the offer's direction (RFC 3264 §6.1)."""
    direction = b"a=sendrecv\r\n"
    if b"a=sendonly" in offer:
        direction = b"a=recvonly\r\n"
    elif b"a=inactive" in offer:
        direction = b"a=inactive\r\n"
    return origin + direction


class DialogPhone(Phone):
    """A `Phone` that also sends and answers requests inside its dialog."""

    def __init__(self, address: Address, prefix: str, peer: Address) -> None:
        super().__init__(address, prefix, peer)
        self.sent: dict[str, Request] = {}
        self.in_dialog_status = 200
        """Final status for in-dialog INVITE and UPDATE (e.g. 491)."""
        self.origin = (
            b"v=0\r\no=" + prefix.encode() + b" 1 9 IN IP4 " + address[0].encode() + b"\r\n"
        )

    def send_in_dialog(self, now: float, method: str, body: bytes, content_type: str) -> None:
        assert self.dialog is not None
        request = self.dialog.create_request(method, body, content_type)
        if method == "INVITE":
            request.headers.add("Session-Expires", "1800;refresher=uac")
            request.headers.add("Supported", "timer")
        if method == "INFO":
            request.headers.add("Info-Package", "dtmf")
        self.sent[self.endpoint.send_request(request, now, self.peer)] = request

    def on_event(self, event: SipEvent, now: float) -> None:
        if isinstance(event, RequestReceived) and event.request.to_address.tag is not None:
            self.events.append(event)
            self._answer_in_dialog(event, now)
        elif isinstance(event, ResponseReceived) and event.transaction_key in self.sent:
            self.events.append(event)
            request = self.sent[event.transaction_key]
            if request.method == "INVITE" and event.response.is_success:
                assert self.dialog is not None
                ack = self.dialog.create_ack(request.cseq.number)
                self.endpoint.send_ack_for_2xx(ack, now, self.peer)
        else:
            super().on_event(event, now)

    def _answer_in_dialog(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if event.transaction_key is None:
            return  # the ACK of a 2xx
        status = 200
        if request.method in ("INVITE", "UPDATE"):
            status = self.in_dialog_status
        response = self.endpoint.create_response(request, status)
        if status == 200 and request.method in ("INVITE", "UPDATE"):
            response.headers.add("Contact", f"<{self.contact}>")
            if request.body:
                response.headers.add("Content-Type", "application/sdp")
                response.body = answer_to(request.body, self.origin)
            session_expires = request.headers.get("session-expires")
            if session_expires is not None:
                response.headers.add("Session-Expires", session_expires)
                response.headers.add("Require", "timer")
        self.endpoint.send_response(response, now, event.transaction_key)


def setup(
    *callees: Address, **switch_options: object
) -> tuple[DialogPhone, Switch, list[DialogPhone], Link]:
    caller = DialogPhone(CALLER, "alice", SWITCH)
    phones = [DialogPhone(address, f"bob{n}", SWITCH) for n, address in enumerate(callees)]
    targets = [(f"sip:1002@{a[0]}:{a[1]}", Flow(Transport.UDP, a)) for a in callees]
    switch = Switch(targets=targets, **switch_options)  # type: ignore[arg-type]
    return caller, switch, phones, Link([caller, switch, *phones])


def responses_to(phone: DialogPhone, method: str) -> list[tuple[int, bytes]]:
    return [
        (r.status_code, r.body)
        for r in phone.responses()
        if r.cseq.method == method and r.status_code >= 200
    ]


# ========================================================================= in-dialog


def test_hold_and_resume_by_the_caller_pass_sdp_end_to_end() -> None:
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(2.0, lambda now: caller.send_in_dialog(now, "INVITE", HOLD, "application/sdp"))
    link.at(3.0, lambda now: caller.send_in_dialog(now, "INVITE", RESUME, "application/sdp"))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    hold, resume = callee.requests("INVITE")[1:]
    assert hold.body == HOLD and resume.body == RESUME
    assert (
        hold.to_address.tag == callee.tag and hold.call_id == callee.requests("INVITE")[0].call_id
    )
    assert hold.headers.get("session-expires") == "1800;refresher=uac"
    assert hold.headers.get("supported") == "timer"
    replies = [
        r
        for r in caller.responses()
        if r.cseq.method == "INVITE" and r.cseq.number > 1 and r.status_code >= 200
    ]
    assert [(r.status_code, r.body) for r in replies] == [
        (200, answer_to(HOLD, callee.origin)),
        (200, answer_to(RESUME, callee.origin)),
    ]
    assert b"a=recvonly" in replies[0].body and b"a=sendrecv" in replies[1].body
    assert replies[0].headers.get("session-expires") == "1800;refresher=uac"
    assert replies[0].headers.get("require") == "timer"
    assert len(callee.requests("ACK")) == 3  # the answer's and one per re-INVITE
    assert [a.cseq.number for a in callee.requests("ACK")] == [1, 2, 3]
    assert switch.ended == [CallEnded("call-1@192.0.2.1", CallResult.ANSWERED, 4.0, 200)]
    assert_all_freed(caller, switch, callee)


def test_hold_inactive_by_the_callee_and_resume() -> None:
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(2.0, lambda now: callee.send_in_dialog(now, "INVITE", INACTIVE, "application/sdp"))
    link.at(3.0, lambda now: callee.send_in_dialog(now, "INVITE", ANSWER, "application/sdp"))
    link.at(5.0, lambda now: callee.hang_up(now))
    link.run()
    hold, resume = caller.requests("INVITE")
    assert hold.body == INACTIVE and resume.body == ANSWER
    assert hold.call_id == "call-1@192.0.2.1" and hold.to_address.tag == "alice-tag"
    assert hold.uri_text == caller.contact  # the caller's Contact is the remote target
    assert responses_to(callee, "INVITE")[-2:] == [
        (200, answer_to(INACTIVE, caller.origin)),
        (200, answer_to(ANSWER, caller.origin)),
    ]
    assert [a.cseq.number for a in caller.requests("ACK")] == [1, 2]
    assert len(caller.requests("BYE")) == 1
    assert switch.ended[0].result is CallResult.ANSWERED
    assert_all_freed(caller, switch, callee)


def test_update_and_info_both_ways() -> None:
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(2.0, lambda now: caller.send_in_dialog(now, "UPDATE", HOLD, "application/sdp"))
    link.at(2.5, lambda now: callee.send_in_dialog(now, "UPDATE", ANSWER, "application/sdp"))
    link.at(3.0, lambda now: caller.send_in_dialog(now, "INFO", DTMF, "application/dtmf-relay"))
    link.at(3.5, lambda now: callee.send_in_dialog(now, "INFO", DTMF, "application/dtmf-relay"))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    [update] = callee.requests("UPDATE")
    assert update.body == HOLD and update.headers.get("contact") == "<sip:switch@192.0.2.10:5060>"
    assert responses_to(caller, "UPDATE") == [(200, answer_to(HOLD, callee.origin))]
    assert [r.body for r in caller.requests("UPDATE")] == [ANSWER]
    assert responses_to(callee, "UPDATE") == [(200, answer_to(ANSWER, caller.origin))]
    for phone, other in ((callee, caller), (caller, callee)):
        [info] = phone.requests("INFO")
        assert info.body == DTMF
        assert info.headers.get("content-type") == "application/dtmf-relay"
        assert info.headers.get("info-package") == "dtmf"
        assert responses_to(other, "INFO") == [(200, b"")]
    assert switch.ended[0].result is CallResult.ANSWERED
    assert_all_freed(caller, switch, callee)


def send_bare(phone: DialogPhone, now: float, method: str) -> None:
    """A request without body inside `phone`'s dialog."""
    assert phone.dialog is not None
    request = phone.dialog.create_request(method)
    phone.sent[phone.endpoint.send_request(request, now, phone.peer)] = request


def test_options_in_the_dialog_is_answered_by_the_switch_itself() -> None:
    """§11.2: OPTIONS inside the dialog gets our 200 with Allow (it was 501, though the
    element lists OPTIONS in Allow and answers it outside dialogs); not relayed. A
    method the call neither relays nor consumes still gets 501."""
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(2.0, lambda now: send_bare(caller, now, "OPTIONS"))
    link.at(2.5, lambda now: send_bare(callee, now, "OPTIONS"))
    link.at(3.0, lambda now: send_bare(caller, now, "REFER"))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    for phone, other in ((caller, callee), (callee, caller)):
        [options] = [r for r in phone.responses() if r.cseq.method == "OPTIONS"]
        assert options.status_code == 200
        allow = options.headers.get("allow") or ""
        assert {"OPTIONS", "INFO", "UPDATE", "INVITE", "BYE"} <= set(allow.split(", "))
        assert other.requests("OPTIONS") == []
    assert responses_to(caller, "REFER") == [(501, b"")]
    assert callee.requests("REFER") == []
    assert switch.ended[0].result is CallResult.ANSWERED
    assert_all_freed(caller, switch, callee)


def test_491_from_the_callee_is_relayed_to_the_caller() -> None:
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(1.5, lambda now: setattr(callee, "in_dialog_status", 491))
    link.at(2.0, lambda now: caller.send_in_dialog(now, "INVITE", HOLD, "application/sdp"))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    assert responses_to(caller, "INVITE")[-1] == (491, b"")
    assert [a.cseq.number for a in callee.requests("ACK")] == [1]  # the 491's is hop by hop
    assert_all_freed(caller, switch, callee)


def test_crossing_reinvites_get_491_on_both_sides() -> None:
    caller, switch, [callee], link = setup(CALLEE)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(2.0, lambda now: caller.send_in_dialog(now, "INVITE", HOLD, "application/sdp"))
    link.at(2.0, lambda now: callee.send_in_dialog(now, "INVITE", INACTIVE, "application/sdp"))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    # The callee's re-INVITE reaches the switch while the relayed one is pending on
    # its dialog: 491 (§14.2). The caller's re-INVITE crossed nothing at the switch,
    # so the callee's own glare answer (here: it accepts) is what gets relayed.
    assert responses_to(callee, "INVITE")[-1][0] == 491
    assert responses_to(caller, "INVITE")[-1][0] == 200
    assert_all_freed(caller, switch, callee)


def test_follow_dialog_targets_sends_in_dialog_requests_to_the_contact() -> None:
    caller, switch, [callee, other], link = setup(CALLEE, CALLEE_2, follow_dialog_targets=True)
    link.at(0.0, lambda now: caller.call(now))
    # The callee answers with a Contact on another host: the BYE goes there (§12.2.1.1).
    link.at(0.5, lambda now: setattr(callee, "contact", "sip:bob@192.0.2.3:5060"))
    link.at(1.0, lambda now: callee.answer(now))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    assert len(other.requests("BYE")) == 1 and callee.requests("BYE") == []
    assert_all_freed(caller, switch, callee, other)
