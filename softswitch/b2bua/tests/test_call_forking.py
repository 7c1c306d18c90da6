"""Parallel forking through the B2BUA: one uac branch per contact (RFC 3261 §16.7 as a
B2BUA applies it), first 2xx wins, the others are CANCELled; a late 2xx gets ACK and
BYE (§13.2.2.4); when all fail, the best final response is relayed."""

from __future__ import annotations

import pytest

from softswitch.b2bua import CallEnded, CallResult
from softswitch.sip.events import CancelReceived

from .test_call import CALLEE, assert_all_freed, statuses
from .test_call_in_dialog import CALLEE_2, setup

CALL_ID = "call-1@192.0.2.1"


def test_first_answer_wins_and_the_other_branch_is_cancelled() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: first.answer(now))
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    first_invite, second_invite = first.requests("INVITE")[0], second.requests("INVITE")[0]
    assert first_invite.body == second_invite.body
    assert first_invite.call_id != second_invite.call_id  # no merged request (§8.2.2.2)
    assert statuses(caller) == [100, 180, 180, 200, 200]  # the last 200 is the BYE's
    tags = {r.to_address.tag for r in caller.responses() if r.status_code > 100}
    assert len(tags) == 1  # one To tag toward the caller whatever branch rang
    assert any(isinstance(e, CancelReceived) for e in second.events)
    from_second = [data.split(b"\r\n", 1)[0] for src, _, data in link.delivered if src == CALLEE_2]
    assert from_second == [
        b"SIP/2.0 100 Trying",
        b"SIP/2.0 180 Ringing",
        b"SIP/2.0 200 OK",
        b"SIP/2.0 487 Request Terminated",
    ]
    assert second.requests("ACK") == [] and second.requests("BYE") == []
    assert len(first.requests("ACK")) == 1 and len(first.requests("BYE")) == 1
    assert switch.ended == [CallEnded(CALL_ID, CallResult.ANSWERED, 4.0, 200)]
    assert_all_freed(caller, switch, first, second)


def test_cancelled_branch_answers_487() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: first.answer(now))
    link.at(5.0, lambda now: first.hang_up(now))
    link.run()
    # The 487 went from the second callee's INVITE server transaction (its ACK is
    # the switch's transaction layer's, §17.1.1.3); the caller never sees it.
    assert 487 not in statuses(caller)
    assert any(
        src == CALLEE_2 and data.startswith(b"SIP/2.0 487") for src, _, data in link.delivered
    )
    assert len(caller.requests("BYE")) == 1
    assert switch.ended[0].result is CallResult.ANSWERED
    assert_all_freed(caller, switch, first, second)


def test_both_busy_relays_486() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    first.on_invite = second.on_invite = 486
    link.at(0.0, lambda now: caller.call(now))
    link.run()
    assert statuses(caller)[-1] == 486 and statuses(caller).count(486) == 1
    assert switch.ended == [CallEnded(CALL_ID, CallResult.REJECTED, 0.0, 486)]
    assert_all_freed(caller, switch, first, second)


@pytest.mark.parametrize(
    ("first_status", "second_status", "relayed"),
    [
        (480, 486, 486),  # 486 over 480
        (486, 603, 603),  # a 6xx first
        (404, 302, 302),  # the lowest class
        (503, 503, 500),  # a 503 becomes 500
        (500, 407, 407),  # 4xx before 5xx; 407 helps a retry
    ],
)
def test_best_final_response_when_all_fail(
    first_status: int, second_status: int, relayed: int
) -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    first.on_invite, second.on_invite = first_status, second_status
    link.at(0.0, lambda now: caller.call(now))
    link.run()
    assert statuses(caller)[-1] == relayed
    assert switch.ended[0].status_code == relayed
    assert_all_freed(caller, switch, first, second)


def test_late_2xx_after_cancel_gets_ack_and_bye() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: first.answer(now))
    link.at(1.0, lambda now: second.answer(now))  # crosses the switch's CANCEL
    link.at(5.0, lambda now: caller.hang_up(now))
    link.run()
    assert statuses(caller).count(200) == 2  # the call's 200 and the BYE's
    [ack] = second.requests("ACK")
    [bye] = second.requests("BYE")
    assert ack.cseq.number == 1 and bye.call_id == ack.call_id
    assert bye.to_address.tag == second.tag
    assert len(first.requests("BYE")) == 1  # at 5.0, from the caller's hang-up
    assert switch.ended == [CallEnded(CALL_ID, CallResult.ANSWERED, 4.0, 200)]
    assert_all_freed(caller, switch, first, second)


def test_caller_cancel_cancels_every_branch() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2)
    link.at(0.0, lambda now: caller.call(now))
    link.at(1.0, lambda now: caller.cancel(now))
    link.run()
    assert statuses(caller)[-1] == 487
    for phone in (first, second):
        assert any(isinstance(e, CancelReceived) for e in phone.events)
    assert switch.ended == [CallEnded(CALL_ID, CallResult.CANCELLED, 0.0, 487)]
    assert_all_freed(caller, switch, first, second)


def test_no_answer_cancels_every_branch() -> None:
    caller, switch, [first, second], link = setup(CALLEE, CALLEE_2, no_answer_timeout=10.0)
    link.at(0.0, lambda now: caller.call(now))
    link.run()
    assert statuses(caller)[-1] == 480
    for phone in (first, second):
        assert any(isinstance(e, CancelReceived) for e in phone.events)
    assert switch.ended == [CallEnded(CALL_ID, CallResult.NO_ANSWER, 0.0, 480)]
    assert_all_freed(caller, switch, first, second)
