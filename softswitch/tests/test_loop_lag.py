"""The load sampler (`softswitch.loop_lag`) on a real event loop and a real socket: a
loop blocked for 0.3 s is reported at least 0.25 s late (a lower bound the block
guarantees, never an upper one); a UDP socket with unread datagrams reads as partly
full; reports go on after a report that raised, and `close()` stops them."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from softswitch.b2bua.overload import OverloadConfig, OverloadGate
from softswitch.loop_lag import LoopLagSampler, ReceiveQueueGauge


class Recorder:
    """Records the reports and passes them on to a gate."""

    def __init__(self, gate: OverloadGate | None = None, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.lags: list[float] = []
        self.fills: list[float] = []

    def report_loop_lag(self, seconds: float, now: float) -> None:
        self.lags.append(seconds)
        if self.fail:
            raise RuntimeError("broken gate")
        if self.gate is not None:
            self.gate.report_loop_lag(seconds, now)

    def report_receive_queue(self, fill: float, now: float) -> None:
        self.fills.append(fill)
        if self.gate is not None:
            self.gate.report_receive_queue(fill, now)


def test_a_blocked_loop_is_reported_late_and_feeds_the_gate() -> None:
    gate = OverloadGate(OverloadConfig(max_loop_lag=0.2))
    recorder = Recorder(gate)

    async def scenario() -> None:
        sampler = LoopLagSampler(asyncio.get_running_loop(), recorder, interval=0.01)
        sampler.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the loop is blocked: the due sample waits behind it
        await asyncio.sleep(0.05)
        sampler.close()
        count = len(recorder.lags)
        await asyncio.sleep(0.05)
        assert len(recorder.lags) == count  # closed: no more samples

    asyncio.run(scenario())
    assert max(recorder.lags) >= 0.25
    assert all(lag >= 0.0 for lag in recorder.lags)
    assert recorder.fills == []  # no receive-queue gauge given
    assert gate.congested
    assert gate.counters["overload_congestion_episodes"] == 1


def test_a_report_that_raises_does_not_stop_the_sampling() -> None:
    recorder = Recorder(fail=True)

    async def scenario() -> int:
        sampler = LoopLagSampler(asyncio.get_running_loop(), recorder, interval=0.01)
        sampler.start()
        for _ in range(500):  # bounded: at most 5 s on a very busy machine
            await asyncio.sleep(0.01)
            if sampler.samples >= 3:
                break
        sampler.close()
        return sampler.samples

    samples = asyncio.run(scenario())
    assert samples >= 3
    assert len(recorder.lags) == samples


def test_unread_datagrams_fill_the_receive_queue_gauge() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        gauge = ReceiveQueueGauge(receiver)
        empty = gauge.read()
        if empty is None:
            pytest.skip("SO_MEMINFO is not available here")
        assert empty == 0.0
        for _ in range(20):
            sender.sendto(b"x" * 1000, receiver.getsockname())
        deadline = time.monotonic() + 5
        fill = gauge.read()
        while fill == 0.0 and time.monotonic() < deadline:  # loopback delivery is quick
            time.sleep(0.01)
            fill = gauge.read()
        assert fill is not None
        assert 0.0 < fill <= 1.0


class FakeSocket:
    """getsockopt(SO_MEMINFO) answers from a list of (queued, size, drops)."""

    def __init__(self, readings: list[tuple[int, int, int]]) -> None:
        self.readings = readings

    def getsockopt(self, level: int, option: int, length: int) -> bytes:
        queued, size, drops = self.readings.pop(0)
        return struct.pack("9I", queued, size, 0, 0, 0, 0, 0, 0, drops)


def test_drops_since_the_last_read_read_as_a_full_buffer() -> None:
    gauge = ReceiveQueueGauge(FakeSocket([(100, 1000, 5), (100, 1000, 5), (0, 1000, 9)]))
    assert gauge.read() == 0.1  # drops before the first read: not news
    assert gauge.read() == 0.1
    assert gauge.read() == 1.0


def test_a_socket_without_the_option_turns_the_gauge_off() -> None:
    class Refusing:
        def getsockopt(self, level: int, option: int, length: int) -> bytes:
            raise OSError(92, "Protocol not available")

    gauge = ReceiveQueueGauge(Refusing())
    assert gauge.read() is None
    assert not gauge.enabled
    assert ReceiveQueueGauge(None).read() is None


def test_the_interval_must_be_positive() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError):
            LoopLagSampler(asyncio.get_running_loop(), Recorder(), interval=0)

    asyncio.run(scenario())
