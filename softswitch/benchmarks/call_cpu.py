"""CPU cost of one B2BUA call, without sockets (`make bench`; a profiling aid).

The switch is wired exactly as `softswitch run --config` wires it (config store, registrar,
call service, element, transport driver on a uvloop loop), except that its UDP socket is
replaced by a list: each datagram the switch sends is handed to an in-process peer
instead of the kernel. The peers play SIPp's built-in `uac` (as the trusted `loadgen`
trunk, 127.0.0.2) and `uas` (behind the static-contact extension 1999, 127.0.0.13) with
the same messages SIPp sends, so each call is INVITE / 100 / 180 / 200 / ACK / BYE / 200
on both legs. Only the time spent inside the switch's receive path (parse, transaction,
call logic, serialising and handing over the answers) is measured; the peers' own work is
not. It prints microseconds of switch CPU per call and the implied ceiling in calls/s on
one core (no system-call cost: the socket benchmark `call_load` has that).

`--profile FILE` writes a cProfile of the measured part (`python -m pstats FILE`).
`--hold N` keeps N calls established before hanging up the oldest (memory per call).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvloop

from softswitch.__main__ import _CallTimer, _open_config_store, _start_registrar
from softswitch.benchmarks.harness import (
    BENCH_TOLLFREE_NUMBER,
    CALLEE,
    CALLER,
    SWITCH,
    UacPeer,
    UasPeer,
    write_bench_config,
)
from softswitch.element import Element
from softswitch.runtime import tune_garbage_collector
from softswitch.sip.endpoint import TRYING_DELAY, EndpointConfig, SipEndpoint
from softswitch.sip.flows import Address
from softswitch.transport.driver import SipTransportDriver


class CapturedUdp:
    """Stands in for the switch's `UdpTransport`: what is sent is queued, not written."""

    local_address = SWITCH

    def __init__(self) -> None:
        self.sent: deque[tuple[bytes, Address]] = deque()

    def send(self, data: bytes, remote: Address) -> None:
        self.sent.append((data, remote))

    def close(self) -> None:
        pass


class Bench:
    def __init__(
        self, driver: SipTransportDriver[SipEndpoint], udp: CapturedUdp, target: str = "1999"
    ) -> None:
        self.driver = driver
        self.udp = udp
        self.caller = UacPeer(target)
        self.callee = UasPeer()
        self.peer_ns = 0
        """Time spent in the peers (subtracted from the process's CPU time)."""

    def deliver(self, data: bytes, source: Address) -> None:
        self.driver.datagram_received(data, source)
        self.drain()

    def drain(self) -> None:
        """Hand what the switch sent (on receipt or from a timer) to the peers."""
        while self.udp.sent:
            sent, remote = self.udp.sent.popleft()
            started = time.perf_counter_ns()
            peer = self.callee if remote == CALLEE else self.caller
            answers = peer.receive(sent)
            self.peer_ns += time.perf_counter_ns() - started
            source = CALLEE if remote == CALLEE else CALLER
            for answer in answers:
                self.driver.datagram_received(answer, source)

    def call(self, number: int, hold: int) -> None:
        started = time.perf_counter_ns()
        invite = self.caller.invite(number)
        self.peer_ns += time.perf_counter_ns() - started
        self.deliver(invite, CALLER)
        while len(self.caller.established) > hold:
            started = time.perf_counter_ns()
            bye = self.caller.hang_up_oldest()
            self.peer_ns += time.perf_counter_ns() - started
            self.deliver(bye, CALLER)

    def hang_up_all(self) -> None:
        while self.caller.established:
            self.deliver(self.caller.hang_up_oldest(), CALLER)


async def run(
    rate: int, seconds: float, hold: int, profile: Path | None, rounds: int, target: str = "1999"
) -> None:
    with tempfile.TemporaryDirectory(prefix="softswitch-call-cpu-") as directory:
        workdir = Path(directory)
        config = write_bench_config(workdir, CALLEE[1])
        arguments = argparse.Namespace(config=config, data_dir=str(workdir / "data"),
                                       database=None)
        config_store = _open_config_store(arguments)
        driver = await SipTransportDriver.open(
            SWITCH[0], 0,
            lambda address: SipEndpoint(EndpointConfig(local_host=SWITCH[0],
                                                       local_port=SWITCH[1],
                                                       trying_delay=TRYING_DELAY)),
        )
        real_udp: Any = driver._udp
        udp = CapturedUdp()
        driver._udp = udp  # type: ignore[assignment]
        service, store, call_service = await _start_registrar(config_store, driver)
        element = Element(driver.endpoint, registrar=service, calls=call_service)
        call_timer = _CallTimer(asyncio.get_running_loop(), driver, element, call_service)
        driver.set_event_handler(call_timer.handle_event)
        bench = Bench(driver, udp, target)
        loop = asyncio.get_running_loop()
        number = 0
        per_call: list[float] = []
        tick = 0.01
        try:
            for round_number in range(rounds):
                profiler = cProfile.Profile() if profile and round_number == rounds - 1 else None
                done_before = bench.caller.completed
                bench.peer_ns = 0
                if profiler is not None:
                    profiler.enable()
                cpu_before = time.process_time()
                started = loop.time()
                due = 0.0
                while (elapsed := loop.time() - started) < seconds:
                    due += rate * tick
                    while number < due + round_number * rate * seconds:
                        number += 1
                        bench.call(number, hold)
                    bench.drain()
                    await asyncio.sleep(max(0.0, started + elapsed + tick - loop.time()))
                    bench.drain()  # what timers sent
                peak = _rss()
                bench.hang_up_all()
                # Let the last transactions' timers (Timer K, T4 = 5 s) run out.
                await asyncio.sleep(0)
                switch_cpu = time.process_time() - cpu_before - bench.peer_ns / 1e9
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(str(profile))
                completed = bench.caller.completed - done_before
                microseconds = switch_cpu * 1e6 / max(completed, 1)
                per_call.append(microseconds)
                print(f"  round {round_number + 1}: {completed} calls at {rate}/s, "
                      f"{microseconds:.0f} us of switch CPU per call (ceiling "
                      f"{1e6 / microseconds:.0f} calls/s on one core), RSS {peak / 2**20:.0f} MiB"
                      f"{f' with {hold} calls held' if hold else ''}")
            median = statistics.median(per_call)
            print(f"median: {median:.0f} us per call, ceiling {1e6 / median:.0f} calls/s; "
                  f"unexpected answers {bench.caller.unexpected}; calls in progress "
                  f"{len(call_service)}; internal errors {driver.counters['internal_errors']}")
        finally:
            driver._udp = real_udp
            call_timer.close()
            await driver.close()
            await service.close()
            store.close()
            config_store.engine.dispose()


def _rss() -> int:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=int, default=0,
                        help="calls kept established before the oldest is hung up")
    parser.add_argument("--profile", type=Path, help="cProfile output of the last round")
    parser.add_argument("--tollfree", action="store_true",
                        help="call the bench toll-free number (one destination through a "
                        "trunk, the same uas) instead of extension 1999")
    arguments = parser.parse_args()
    tune_garbage_collector()
    gc.collect()
    print(f"B2BUA call CPU, no sockets: SIPp-like uac -> switch -> uas, "
          f"{arguments.rate} calls/s, {arguments.rounds} rounds of {arguments.seconds:g} s")
    target = BENCH_TOLLFREE_NUMBER if arguments.tollfree else "1999"
    uvloop.run(run(arguments.rate, arguments.seconds, arguments.hold, arguments.profile,
                   arguments.rounds, target))


if __name__ == "__main__":
    main()
