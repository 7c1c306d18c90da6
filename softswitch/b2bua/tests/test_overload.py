"""Overload control (issue 6 item 7): the pure gate on an explicit clock, then the call
service behind it, wired as `softswitch run` wires it (`SansIoSwitch`) between
SIPp-like peers: a gated INVITE gets 503 with Retry-After (RFC 3261 §21.5.4, §20.33)
and leaves no call, while the calls in progress go on to their BYE."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.b2bua.overload import (
    OverloadConfig,
    OverloadGate,
    OverloadReason,
    OverloadRefusal,
)
from softswitch.benchmarks.harness import CALLER, Lab, SansIoSwitch, load_bench_snapshot

WALL_CLOCK = 1_800_000_000.0


# --- the gate -------------------------------------------------------------------------


def test_admits_below_the_bound_and_refuses_at_it() -> None:
    gate = OverloadGate(OverloadConfig(max_invites_in_progress=3, retry_after=7))
    assert gate.check(0, 10.0, 0.0) is None
    assert gate.check(2, 10.0, 0.0) is None
    assert gate.check(3, 10.0, 0.9) == OverloadRefusal(OverloadReason.INVITES_IN_PROGRESS, 7)
    assert gate.check(4, 10.0, 0.9) is not None
    # No hysteresis on the count: one answer below the bound admits again.
    assert gate.check(2, 10.1, 0.0) is None
    assert gate.counters["overload_refused.invites_in_progress"] == 2
    assert gate.last_invites_in_progress == 2


def refused_of(gate: OverloadGate, invites: int, now: float) -> int:
    """How many of `invites` new INVITEs checked at `now` the gate refuses: their draws
    spread evenly over [0, 1), as the keyed hashes of many Call-IDs are."""
    return sum(gate.check(0, now, (index + 0.5) / invites) is not None for index in range(invites))


def test_lag_at_the_bound_refuses_a_rising_share_until_calm_brings_it_to_zero() -> None:
    gate = OverloadGate(
        OverloadConfig(
            max_loop_lag=0.2, resume_fraction=0.5, rise_seconds=0.5, recovery_seconds=2.0
        )
    )
    gate.report_loop_lag(0.19, 0.0)
    assert not gate.congested
    assert gate.check(0, 0.0, 0.0) is None
    gate.report_loop_lag(0.2, 0.05)  # 0.05 s of overload over 0.5 s: a tenth refused
    assert gate.congested
    assert gate.refusal_fraction == pytest.approx(0.1)
    assert gate.check(0, 0.06, 0.1) is None  # a draw at or above the share: admitted
    refusal = gate.check(0, 0.06, 0.09)  # below it: refused
    assert refusal == OverloadRefusal(OverloadReason.LOOP_LAG, 5)
    assert gate.check(0, 0.07, 0.09) == refusal  # its retransmission: refused again
    assert refused_of(gate, 100, 0.07) == 10  # exactly the share of spread draws
    gate.report_loop_lag(0.3, 0.25)  # 0.2 s more: +0.4
    assert gate.refusal_fraction == pytest.approx(0.5)
    assert refused_of(gate, 100, 0.25) == 50
    gate.report_loop_lag(0.3, 1.0)  # capped: everything refused
    assert gate.refusal_fraction == 1.0
    assert refused_of(gate, 10, 1.0) == 10
    # Calm: down by 1 per 2 s.
    gate.report_loop_lag(0.01, 2.0)
    assert gate.refusal_fraction == pytest.approx(0.5)
    assert gate.congested
    gate.report_loop_lag(0.01, 3.0)
    assert not gate.congested
    assert gate.check(0, 3.0, 0.0) is None
    assert gate.counters == {
        "overload_refused.loop_lag": 2 + 10 + 50 + 10,
        "overload_congestion_episodes": 1,
        "overload_congestion_recoveries": 1,
    }
    assert gate.peak_lag == 0.3
    assert gate.last_lag == 0.01


def test_lag_between_the_thresholds_keeps_the_share_it_found() -> None:
    """Hysteresis: 0.1 <= lag < 0.2 neither raises nor lowers the refused share."""
    gate = OverloadGate(
        OverloadConfig(
            max_loop_lag=0.2, resume_fraction=0.5, rise_seconds=1.0, recovery_seconds=1.0
        )
    )
    gate.report_loop_lag(0.15, 0.0)
    assert not gate.congested
    gate.report_loop_lag(0.3, 0.5)  # +0.5
    gate.report_loop_lag(0.15, 1.5)
    gate.report_loop_lag(0.15, 2.5)
    assert gate.refusal_fraction == pytest.approx(0.5)
    gate.report_loop_lag(0.05, 2.75)  # calm: -0.25
    assert gate.refusal_fraction == pytest.approx(0.25)
    gate.report_loop_lag(0.05, 3.0)
    assert not gate.congested


def test_a_new_stall_after_recovery_is_a_new_episode() -> None:
    gate = OverloadGate(OverloadConfig(max_loop_lag=0.1, recovery_seconds=0.5))
    for now, lag in [(0.0, 0.5), (0.1, 0.0), (0.2, 0.4), (0.3, 0.0), (0.9, 0.0)]:
        gate.report_loop_lag(lag, now)
    assert not gate.congested
    assert gate.counters["overload_congestion_episodes"] == 2
    assert gate.counters["overload_congestion_recoveries"] == 2
    gate.report_loop_lag(1.0, 1.0)
    assert gate.counters["overload_congestion_episodes"] == 3


def test_under_sustained_overload_the_share_settles_where_the_load_fits() -> None:
    """A toy switch that can take 1,000 INVITEs/s, offered 3,000/s: the lag is over its
    bound while more than 1,000/s are admitted, calm below 800/s; after a few seconds
    the admitted rate stays between the two (about two thirds refused)."""
    gate = OverloadGate(OverloadConfig(max_loop_lag=0.2))
    admitted_rates = []
    for tick in range(200):  # 10 s of 50 ms samples
        now = tick * 0.05
        admitted = 150 - refused_of(gate, 150, now)  # 3,000/s: 150 per sample
        rate = admitted / 0.05
        admitted_rates.append(rate)
        gate.report_loop_lag(0.3 if rate > 1000 else 0.15 if rate > 800 else 0.01, now)
    settled = admitted_rates[100:]
    assert 700 <= min(settled) and max(settled) <= 1100
    assert 0.55 <= gate.refusal_fraction <= 0.8


def test_a_lagging_state_no_report_refreshes_is_dropped() -> None:
    """Fail open: the adapter stopped reporting (module rules)."""
    gate = OverloadGate(OverloadConfig(max_loop_lag=0.1, stale_after=5.0))
    gate.report_loop_lag(1.0, 100.0)
    assert gate.check(0, 104.9, 0.0) is not None
    assert gate.check(0, 105.0, 0.0) is None
    assert not gate.congested
    assert gate.counters["overload_congestion_recoveries"] == 1


def test_a_filling_receive_queue_congests_until_both_signals_are_calm() -> None:
    gate = OverloadGate(
        OverloadConfig(max_receive_fill=0.5, max_loop_lag=0.2, recovery_seconds=1.0)
    )
    gate.report_receive_queue(0.4, 0.0)
    gate.report_loop_lag(0.01, 0.0)
    assert not gate.congested
    gate.report_receive_queue(0.5, 0.05)
    assert not gate.congested  # one sample: maybe a burst
    gate.report_receive_queue(0.6, 0.07)
    assert gate.congested  # two in a row: sustained
    refusal = gate.check(0, 0.08, 0.0)
    assert refusal is not None
    assert refusal.reason is OverloadReason.RECEIVE_QUEUE
    # The queue empties, but the lag is between its thresholds: the share is kept.
    gate.report_loop_lag(0.15, 0.1)
    gate.report_receive_queue(0.0, 0.1)
    share = gate.refusal_fraction
    gate.report_loop_lag(0.15, 1.5)
    assert gate.refusal_fraction == share > 0
    gate.report_loop_lag(0.01, 1.6)
    gate.report_loop_lag(0.01, 2.6)
    assert not gate.congested
    assert gate.counters["overload_refused.receive_queue"] == 1
    assert gate.peak_receive_fill == 0.6
    assert gate.last_receive_fill == 0.0


def test_a_burst_is_not_congestion_but_a_full_buffer_is() -> None:
    gate = OverloadGate(OverloadConfig(max_receive_fill=0.5))
    for now, fill in [(0.0, 0.9), (0.05, 0.1), (0.1, 0.8), (0.15, 0.0)]:
        gate.report_receive_queue(fill, now)
    assert not gate.congested
    gate.report_receive_queue(1.0, 0.2)  # full, or datagrams dropped: at once
    assert gate.congested


def test_the_larger_share_names_the_cause() -> None:
    gate = OverloadGate(OverloadConfig(max_receive_fill=0.5, max_loop_lag=0.2))
    gate.report_receive_queue(0.6, 0.0)  # 1.2 of its bound
    gate.report_loop_lag(0.3, 0.0)  # 1.5 of its bound
    refusal = gate.check(0, 0.0, 0.0)
    assert refusal is not None
    assert refusal.reason is OverloadReason.LOOP_LAG
    gate.report_receive_queue(1.5, 0.05)  # clipped to 1.0: 2.0 of its bound
    assert gate.last_receive_fill == 1.0
    refusal = gate.check(0, 0.05, 0.0)
    assert refusal is not None
    assert refusal.reason is OverloadReason.RECEIVE_QUEUE


def test_the_count_bound_is_checked_first() -> None:
    gate = OverloadGate(OverloadConfig(max_invites_in_progress=1, max_loop_lag=0.1))
    gate.report_loop_lag(0.5, 0.0)
    refusal = gate.check(1, 0.0, 0.9)
    assert refusal is not None
    assert refusal.reason is OverloadReason.INVITES_IN_PROGRESS


def test_negative_lag_is_zero() -> None:
    gate = OverloadGate()
    gate.report_loop_lag(-0.001, 0.0)
    assert gate.last_lag == 0.0


@pytest.mark.parametrize(
    "settings",
    [
        {"max_invites_in_progress": 0},
        {"max_loop_lag": 0.0},
        {"max_receive_fill": 0.0},
        {"max_receive_fill": 1.1},
        {"resume_fraction": 0.0},
        {"resume_fraction": 1.5},
        {"recovery_seconds": -1.0},
        {"stale_after": 0.0},
        {"rise_seconds": 0.0},
        {"minimum_step": 0.0},
        {"minimum_step": 1.5},
        {"retry_after": -1},
    ],
)
def test_invalid_configuration_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OverloadConfig(**settings)  # type: ignore[arg-type]


# --- the call service behind the gate ---------------------------------------------------


@pytest.fixture(scope="module")
def snapshot_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("overload"))


@pytest.fixture
def lab(snapshot_directory: Path) -> Lab:
    snapshot = load_bench_snapshot(snapshot_directory / str(id(object())))
    return Lab(SansIoSwitch(snapshot, lambda: WALL_CLOCK))


def send_invite(lab: Lab, number: int, now: float) -> list[bytes]:
    """The caller's INVITE of call `number`; what the switch sent back to the caller
    (then everything is exchanged, as `Lab.call` does)."""
    lab.switch.receive(lab.caller.invite(number), CALLER, now)
    to_caller = [data for data, remote in lab.switch.sent if remote == CALLER]
    lab.exchange(now)
    return to_caller


def final_responses(sent: list[bytes]) -> list[bytes]:
    return [data for data in sent if data.startswith(b"SIP/2.0 ") and data[8:9] != b"1"]


def test_the_bound_refuses_new_invites_and_serves_the_calls_in_progress(lab: Lab) -> None:
    calls = lab.switch.core.calls
    calls.overload = OverloadGate(OverloadConfig(max_invites_in_progress=1))
    now = 1000.0
    lab.call(1, now)  # answered at once
    assert lab.caller.established
    assert calls.invites_in_progress == 0
    lab.callee.final = None  # rings until cancelled
    lab.call(2, now)
    assert calls.invites_in_progress == 1
    assert len(calls) == 2

    refused = final_responses(send_invite(lab, 3, now + 0.01))
    assert len(refused) == 1
    assert refused[0].startswith(b"SIP/2.0 503 ")
    assert b"\r\nRetry-After: 5\r\n" in refused[0]
    assert lab.caller.rejected == {503: 1}  # and ACKed (§17.1.1.3)
    assert calls.counters["invites_refused_overload"] == 1
    assert calls.overload.counters["overload_refused.invites_in_progress"] == 1
    assert len(calls) == 2  # no call, no record for the refused INVITE
    assert calls.next_record() is None

    # In-dialog requests are served while new INVITEs are refused: BYE of call 1,
    # CANCEL of call 2 (which ends its INVITE with 487).
    lab.hang_up_oldest(now + 0.02)
    assert lab.caller.completed == 1
    lab.cancel(2, now + 0.03)
    assert lab.caller.rejected == {503: 1, 487: 1}
    assert calls.invites_in_progress == 0
    assert len(calls) == 0

    lab.callee.final = "200 OK"
    lab.call(4, now + 0.04)
    lab.hang_up_oldest(now + 0.05)
    assert lab.caller.completed == 2
    assert lab.caller.unexpected == 0
    assert calls.counters["calls_started"] == 3
    assert calls.counters["invites_refused_overload"] == 1


def test_loop_lag_refuses_new_invites_until_it_recovers(lab: Lab) -> None:
    calls = lab.switch.core.calls
    # A step of 1: everything is refused from the first report on, whatever the draw.
    calls.overload = OverloadGate(
        OverloadConfig(max_loop_lag=0.2, recovery_seconds=2.0, minimum_step=1.0)
    )
    now = 2000.0
    lab.call(1, now)
    calls.overload.report_loop_lag(0.35, now + 0.05)

    refused = final_responses(send_invite(lab, 2, now + 0.1))
    assert refused and refused[0].startswith(b"SIP/2.0 503 ")
    assert calls.overload.counters["overload_refused.loop_lag"] == 1
    lab.hang_up_oldest(now + 0.2)  # the call in progress still ends normally
    assert lab.caller.completed == 1

    for step in range(1, 23):  # 2.2 s of calm reports, every 0.1 s
        calls.overload.report_loop_lag(0.001, now + 0.2 + step * 0.1)
    assert not calls.overload.congested
    lab.call(3, now + 2.5)
    lab.hang_up_oldest(now + 2.6)
    assert lab.caller.completed == 2
    assert lab.caller.rejected == {503: 1}
    assert calls.counters["invites_refused_overload"] == 1


def test_invites_in_progress_counts_only_calls_without_a_final_answer(lab: Lab) -> None:
    calls = lab.switch.core.calls
    now = 3000.0
    lab.callee.final = None
    for number in range(1, 4):
        lab.call(number, now)
    assert calls.invites_in_progress == 3
    lab.cancel(1, now + 0.1)  # 487 to the caller: settled, then ended
    assert calls.invites_in_progress == 2
    lab.callee.final = "486 Busy Here"
    lab.call(4, now + 0.2)  # refused by the callee at once: never in progress after
    assert calls.invites_in_progress == 2
    lab.cancel(2, now + 0.3)
    lab.cancel(3, now + 0.3)
    assert calls.invites_in_progress == 0
    assert len(calls) == 0
    lab.run_until(now + 100.0)
    assert calls.index_sizes() == {
        "calls": 0,
        "by_call_id": 0,
        "by_transaction": 0,
        "deadlines": 0,
    }
