"""Every leg, dialog and transaction is freed when the call ends (issue 3, part 4).

The switch's pure part (`softswitch.benchmarks.harness.SansIoSwitch`, wired as
`softswitch run --config` wires it) runs thousands of calls between SIPp-like peers on an
explicit clock; time then runs past every RFC 3261 §17 timer (Timer J, L, M: 64*T1).
Afterwards the endpoint's tables, the call service's indexes and heap are empty, the
number of live SIP objects (messages, calls, dialogs, transactions) is what it was before
the calls, and the number of memory blocks Python has allocated is back within a small margin.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from pathlib import Path

import pytest

from softswitch.benchmarks.harness import Lab, SansIoSwitch, load_bench_snapshot
from softswitch.sip.headers import clear_parse_caches
from softswitch.sip.timers import TimerValues

CALLS = 2000
WALL_CLOCK = 1_800_000_000.0
AFTER_EVERY_TIMER = 64 * TimerValues().t1 + 5.0
TRACKED = {
    "Request", "Response", "Headers", "Call", "Dialog", "_Entry", "NameAddress", "Via",
    "SipUri", "ClientInviteTransaction", "ClientNonInviteTransaction",
    "ServerInviteTransaction", "ServerNonInviteTransaction", "RequestReceived",
    "ResponseReceived", "CallRecord", "CallEnded",
}


def live_objects() -> Counter[str]:
    gc.collect()
    return Counter(
        name for name in (type(item).__name__ for item in gc.get_objects()) if name in TRACKED
    )


def run_calls(lab: Lab, first: int, count: int, now: float) -> float:
    for number in range(first, first + count):
        lab.call(number, now)
        now += 0.001
        lab.hang_up_oldest(now)
        now += 0.001
        lab.run_until(now)
    lab.run_until(now + AFTER_EVERY_TIMER)
    return now + AFTER_EVERY_TIMER


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    snapshot = load_bench_snapshot(Path(tmp_path_factory.mktemp("memory")))
    return Lab(SansIoSwitch(snapshot, lambda: WALL_CLOCK))


def test_thousands_of_calls_leave_nothing_behind(lab: Lab) -> None:
    # Warm-up with as many calls: caches fill, and the tables (dicts, which never give
    # back the room their busiest moment took) reach the size this load needs.
    now = run_calls(lab, 1, CALLS, 1000.0)
    switch = lab.switch
    clear_parse_caches()  # bounded caches: their size is not per call
    baseline_objects = live_objects()
    baseline_blocks = sys.getallocatedblocks()
    run_calls(lab, CALLS + 1, CALLS, now)
    clear_parse_caches()
    gc.collect()
    grown = sys.getallocatedblocks() - baseline_blocks

    assert lab.caller.completed == 2 * CALLS
    assert lab.caller.unexpected == 0
    assert switch.records == 2 * CALLS
    calls = switch.core.calls
    assert len(calls) == 0
    assert calls.counters["calls_ended.answered"] == 2 * CALLS
    assert calls.index_sizes() == {"calls": 0, "by_call_id": 0, "by_transaction": 0,
                                   "deadlines": 0}
    assert all(size == 0 for size in switch.endpoint.table_sizes().values()), (
        switch.endpoint.table_sizes()
    )
    assert live_objects() == baseline_objects
    # Every small object (strings, bytes, tuples, ...) is one allocated block; the big
    # tables are not (their size follows the load, not the number of calls). What may
    # remain is a few entries of bounded caches: nothing per call.
    assert grown < CALLS // 10, f"{grown} more allocated blocks after {CALLS} calls"


def test_calls_create_no_reference_cycles(lab: Lab) -> None:
    """softswitch.runtime turns the cyclic collector off: it relies on this."""
    gc.collect()
    gc.disable()
    try:
        run_calls(lab, 100_000, 500, 1_000_000.0)
        found = gc.collect()
    finally:
        gc.enable()
    assert lab.caller.unexpected == 0
    assert found == 0, f"{found} objects were only collectable by the cyclic collector"


@pytest.mark.parametrize("outcome", ["busy", "no_answer", "cancelled"])
def test_unsuccessful_calls_leave_nothing_behind_and_make_no_cycles(
    lab: Lab, outcome: str
) -> None:
    """The failure paths too: busy (486 relayed), no answer (480 to the caller, CANCEL to
    the callee), cancelled by the caller while ringing (487). Every transaction of them
    ends, and nothing needed the cyclic collector."""
    switch = lab.switch
    calls = switch.core.calls
    lab.callee.final = "486 Busy Here" if outcome == "busy" else None
    expected_status = {"busy": 486, "no_answer": 480, "cancelled": 487}[outcome]
    before = lab.caller.rejected[expected_status]
    start = {"busy": 2_000_000.0, "no_answer": 3_000_000.0, "cancelled": 4_000_000.0}[outcome]
    gc.collect()
    gc.disable()
    try:
        now = start
        for number in range(200_000, 200_100):
            lab.call(number, now)
            if outcome == "cancelled":
                lab.cancel(number, now + 0.5)
            now += 0.01
            lab.run_until(now)
        # Past the no-answer timeout (30 s) and then every transaction timer.
        lab.run_until(now + 31.0)
        lab.run_until(now + 31.0 + AFTER_EVERY_TIMER)
        found = gc.collect()
    finally:
        gc.enable()
        lab.callee.final = "200 OK"
    assert lab.caller.rejected[expected_status] - before == 100
    assert lab.caller.unexpected == 0
    assert len(calls) == 0
    assert calls.index_sizes() == {"calls": 0, "by_call_id": 0, "by_transaction": 0,
                                   "deadlines": 0}
    assert all(size == 0 for size in switch.endpoint.table_sizes().values()), (
        switch.endpoint.table_sizes()
    )
    assert found == 0, f"{found} objects were only collectable by the cyclic collector"
