"""Overload: a SIPp flood at 3x the clean call rate (issue 6 item 7; `make bench`).

The switch and its SIPp `uas` callee run as `call_load` runs them (switch pinned to CPU
0, SIPp to CPU 1, calls from the trusted `loadgen` trunk 127.0.0.2 to extension 1999),
with `--metrics` and the overload options. Then:

1. The clean rate: `--clean-rate`, or measured with `call_load`'s steps (`--probe-rates`,
   `--probe-seconds` each): the highest rate with zero failed calls and zero
   unexpected messages.
2. An idle OPTIONS probe (`--idle-probe-seconds`): the response latency to compare with.
3. The flood: SIPp calls at `--factor` (3) times the clean rate for `--flood-seconds`
   (20 s) with `sip_tests/scenarios/overload_uac_flood.xml`, where a 503 is an
   expected answer (RFC 3261 §21.5.4). Meanwhile a UDP socket on 127.0.0.14 sends an
   OPTIONS every 20 ms and times the switch's 200 (responsiveness: p50, p99, and
   those unanswered within 2 s), and the switch's RSS is read from /proc every 0.25 s.
   Reported: INVITEs sent, 503s received, calls answered (accepted) and completed (the
   BYE's 200), failed calls with SIPp's causes, and the switch's own counters from
   `/metrics` (503s sent for overload by reason, lag episodes, peak lag, calls started
   and ended). Every accepted call must complete: answered == completed, and the
   switch's calls in progress fall back to 0.
4. Recovery: after `--pause` seconds a clean step at the clean rate
   (`--recovery-seconds`) must have zero failed calls; RSS after it.

Figures, never assertions. Every wait is bounded in time, every loop in count; only
the processes started here are stopped, by PID.
"""

from __future__ import annotations

import argparse
import csv
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from softswitch.b2bua.overload import DEFAULT_MAX_INVITES_IN_PROGRESS, DEFAULT_MAX_LOOP_LAG
from softswitch.benchmarks.call_load import (
    SIPP_BUFFER,
    RunningSwitch,
    failure_causes,
    open_many_files,
    percentile,
    print_step,
    process_times,
    read_stats,
    run_step,
    running_switch,
)
from softswitch.benchmarks.harness import CALLEE_HOST, LOADGEN_HOST, REPOSITORY
from softswitch.benchmarks.options_load import free_port, pinned

SCENARIO = REPOSITORY / "sip_tests" / "scenarios" / "overload_uac_flood.xml"
PROBE_HOST = "127.0.0.14"
"""The OPTIONS probe's own loopback address (no other peer uses it)."""
PROBE_INTERVAL = 0.02
PROBE_TIMEOUT = 2.0
"""Seconds after which a probe without an answer counts as unanswered."""
RSS_INTERVAL = 0.25
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", re.MULTILINE)
MIB = 2**20


def scrape(url: str) -> dict[str, float]:
    """Every sample of the exposition at `url`, by name with its labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in _SAMPLE.findall(text)}


@dataclass
class OptionsProbe:
    """OPTIONS every `PROBE_INTERVAL` s from `PROBE_HOST` on a thread; the latency of
    each 200 (module docstring, step 3)."""

    switch: tuple[str, int]
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _run_id: int = field(default_factory=time.monotonic_ns)
    """In every branch and Call-ID: each probe's transactions are new to the switch."""
    _thread: threading.Thread | None = None

    def start(self, limit: float) -> None:
        """Probe until `stop()`, or `limit` seconds at most."""
        self._thread = threading.Thread(target=self._run, args=(limit,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PROBE_TIMEOUT + 5)

    @property
    def unanswered(self) -> int:
        return self.sent - len(self.latencies)

    def _request(self, number: int, port: int) -> bytes:
        host, switch_port = self.switch
        return (
            f"OPTIONS sip:{host}:{switch_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PROBE_HOST}:{port};branch=z9hG4bK-probe-{self._run_id}-{number}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{PROBE_HOST}>;tag=probe{number}\r\n"
            f"To: <sip:{host}>\r\n"
            f"Call-ID: probe-{self._run_id}-{number}@{PROBE_HOST}\r\n"
            f"CSeq: {number} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _run(self, limit: float) -> None:
        pending: dict[int, float] = {}
        call_id = re.compile(rb"\r\nCall-ID: *probe-\d+-(\d+)@", re.IGNORECASE)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((PROBE_HOST, 0))
            port = udp.getsockname()[1]
            started = time.monotonic()
            next_send = started
            stopping_at: float | None = None
            while True:
                now = time.monotonic()
                if stopping_at is None and (self._stop.is_set() or now - started > limit):
                    stopping_at = now  # no more probes; wait for the last answers
                if stopping_at is not None and (not pending or now - stopping_at > PROBE_TIMEOUT):
                    return
                if stopping_at is None and now >= next_send:
                    self.sent += 1
                    pending[self.sent] = now
                    udp.sendto(self._request(self.sent, port), self.switch)
                    next_send += PROBE_INTERVAL
                    continue
                wait = max(0.0, min(next_send - now, 0.05))
                readable, _, _ = select.select([udp], [], [], wait)
                if not readable:
                    continue
                data = udp.recv(65535)
                arrived = time.monotonic()
                match = call_id.search(data)
                if match is None or not data.startswith(b"SIP/2.0 200"):
                    continue
                sent_at = pending.pop(int(match.group(1)), None)
                if sent_at is not None and arrived - sent_at <= PROBE_TIMEOUT:
                    self.latencies.append(arrived - sent_at)

    def summary(self) -> str:
        if not self.latencies:
            return f"{self.sent} sent, none answered"
        return (
            f"{self.sent} sent, p50 {percentile(self.latencies, 0.5) * 1000:.1f} ms, p99 "
            f"{percentile(self.latencies, 0.99) * 1000:.1f} ms, max "
            f"{max(self.latencies) * 1000:.1f} ms, unanswered within "
            f"{PROBE_TIMEOUT:g} s: {self.unanswered}"
        )


class RssSampler:
    """The switch's RSS every `RSS_INTERVAL` s on a thread; the peak since `start`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = process_times(pid)[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            try:
                self.peak = max(self.peak, process_times(self._pid)[1])
            except OSError:
                return  # the switch is gone


def udp_drops(host: str, port: int | None = None) -> int:
    """Datagrams the kernel dropped for the UDP sockets bound to `host` (and `port`, if
    given) since they were opened: their receive buffer was full (/proc/net/udp)."""
    local = "".join(f"{int(part):02X}" for part in reversed(host.split(".")))
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        address, _, port_hex = fields[1].partition(":")
        if address == local and (port is None or int(port_hex, 16) == port):
            total += int(fields[-1])
    return total


def all_drops(switch_port: int) -> dict[str, int]:
    """Kernel drops of the switch's socket and of the SIPp callers' and callee's."""
    return {
        "switch": udp_drops("127.0.0.1", switch_port),
        "callers": udp_drops(LOADGEN_HOST),
        "callee": udp_drops(CALLEE_HOST),
    }


def count_columns(counts_file: Path) -> dict[str, int]:
    """From SIPp's `-trace_counts` file of the flood scenario: INVITEs sent, 503s,
    INVITE 200s (answered) and BYE 200s (completed), from its last row."""
    with counts_file.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last, strict=False))
    ok = [name for name in header if name.endswith("_200_Recv")]

    def value(name: str) -> int:
        text = values.get(name, "0").strip()
        return int(text) if text.isdigit() else 0

    invite = next(name for name in header if name.endswith("_INVITE_Sent"))
    refused = next(name for name in header if name.endswith("_503_Recv"))
    return {
        "invites": value(invite),
        "invite_retransmissions": value(invite.replace("_Sent", "_Retrans")),
        "refused_503": value(refused),
        "answered": value(ok[0]),
        "completed": value(ok[1]),
    }


def calls_counters(samples: dict[str, float]) -> dict[str, float]:
    """The switch's call and overload counters in a scrape."""
    return {
        name: value
        for name, value in samples.items()
        if name.startswith(("softswitch_calls_", "softswitch_overload_"))
    }


def wait_no_call_in_progress(url: str, limit: float) -> float:
    """Seconds until the switch has no call in progress (at most `limit`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if scrape(url).get("softswitch_calls_in_progress", 0.0) == 0.0:
            break
        time.sleep(0.25)
    return time.monotonic() - started


@dataclass
class FloodResult:
    """What the flood step measured (module docstring, step 3)."""

    rate: int
    count: int
    elapsed: float
    counts: dict[str, int]
    """SIPp's per-message counts (`count_columns`)."""
    failed: int
    causes: str
    unexpected: int
    probe: OptionsProbe
    cpu: float
    rss_before: int
    rss_peak: int
    rss_ended: int
    drained_after: float
    """Seconds from the flood's end until the switch had no call in progress."""
    calls_in_progress: float
    switch: dict[str, float]
    """The switch's call and overload counters: how much each grew during the flood."""
    peak_lag: float
    peak_receive_fill: float
    drops: dict[str, int]
    """Datagrams the kernel dropped during the flood, by socket (`all_drops`)."""


def run_flood(lab: RunningSwitch, rate: int, seconds: float, metrics_url: str) -> FloodResult:
    """The flood step (module docstring, step 3)."""
    step = lab.workdir / f"flood-{rate}-{time.monotonic_ns()}"
    step.mkdir()
    stat_file = step / "stat.csv"
    count = int(rate * seconds)
    timeout = seconds + 60
    command = pinned(
        [
            "sipp", f"127.0.0.1:{lab.port}", "-sf", str(SCENARIO), "-s", "1999",
            "-key", "caller", "0312345678", "-buff_size", SIPP_BUFFER,
            "-i", LOADGEN_HOST, "-p", str(free_port(LOADGEN_HOST)),
            "-r", str(rate), "-m", str(count), "-l", str(rate * 30),
            "-nostdin", "-timeout", f"{int(timeout)}s", "-recv_timeout", "20000",
            "-trace_stat", "-stf", str(stat_file), "-fd", "1", "-trace_counts",
        ],
        1,
    )  # fmt: skip
    before = scrape(metrics_url)
    drops_before = all_drops(lab.port)
    cpu_before, rss_before = process_times(lab.pid)
    probe = OptionsProbe(("127.0.0.1", lab.port))
    rss = RssSampler(lab.pid)
    rss.start()
    probe.start(timeout + 30)
    started = time.monotonic()
    try:
        with subprocess.Popen(
            command,
            cwd=step,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=open_many_files,
        ) as sipp:
            try:
                sipp.wait(timeout + 30)
            except subprocess.TimeoutExpired:
                sipp.kill()
                sipp.wait(10)
    finally:
        elapsed = time.monotonic() - started
        probe.stop()
    cpu_after, rss_ended = process_times(lab.pid)
    drops_after = all_drops(lab.port)
    drained = wait_no_call_in_progress(metrics_url, 40)
    peak = max(rss.stop(), rss_ended)
    after = scrape(metrics_url)
    rows = read_stats(stat_file)
    last = rows[-1] if rows else {}
    counts_files = sorted(step.glob("*_counts.csv"))
    return FloodResult(
        rate=rate,
        count=count,
        elapsed=elapsed,
        counts=count_columns(counts_files[-1]) if counts_files else {},
        failed=int(last.get("FailedCall(C)", 0)),
        causes=failure_causes(last),
        unexpected=int(last.get("FailedUnexpectedMessage(C)", 0))
        + int(last.get("OutOfCallMsgs(C)", 0)),
        probe=probe,
        cpu=(cpu_after - cpu_before) / elapsed,
        rss_before=rss_before,
        rss_peak=peak,
        rss_ended=rss_ended,
        drained_after=drained,
        calls_in_progress=after.get("softswitch_calls_in_progress", float("nan")),
        switch={
            name: value - before.get(name, 0.0)
            for name, value in calls_counters(after).items()
            if name.endswith("_total") or "_total{" in name
        },
        peak_lag=after.get("softswitch_overload_loop_lag_peak_seconds", float("nan")),
        peak_receive_fill=after.get("softswitch_overload_receive_queue_fill_peak", float("nan")),
        drops={name: drops_after[name] - drops_before.get(name, 0) for name in drops_after},
    )


def _labelled(samples: dict[str, float], family: str) -> str:
    """`a 1, b 2` for the samples `family{label="a"}` ..."""
    return ", ".join(
        f"{name.split(chr(34))[1]} {value:.0f}"
        for name, value in samples.items()
        if name.startswith(family + "{") and value
    )


def print_flood(result: FloodResult) -> None:
    counts, switch = result.counts, result.switch
    print(
        f"  flood {result.rate} calls/s for {result.elapsed:.0f} s ({result.count} calls): "
        f"INVITEs sent {counts.get('invites', '?')} "
        f"(+{counts.get('invite_retransmissions', '?')} retransmissions), 503 received "
        f"{counts.get('refused_503', '?')}, answered (accepted) {counts.get('answered', '?')}, "
        f"completed (BYE 200) {counts.get('completed', '?')}, failed {result.failed} "
        f"(causes: {result.causes}), unexpected {result.unexpected}, "
        f"switch CPU {result.cpu * 100:.0f}%"
    )
    print(f"  OPTIONS probe during the flood: {result.probe.summary()}")
    print(
        "  datagrams dropped by the kernel (receive buffer full): "
        + ", ".join(f"{name} {count}" for name, count in result.drops.items())
    )
    print(
        "  switch: 503 for overload "
        f"{switch.get('softswitch_calls_invites_refused_overload_total', 0):.0f} "
        f"({_labelled(switch, 'softswitch_overload_refused_total') or 'none'}), "
        "congestion episodes "
        f"{switch.get('softswitch_overload_congestion_episodes_total', 0):.0f}, "
        f"peak loop lag {result.peak_lag * 1000:.0f} ms, peak receive queue "
        f"{result.peak_receive_fill * 100:.0f}%, calls started "
        f"{switch.get('softswitch_calls_started_total', 0):.0f}, ended "
        f"({_labelled(switch, 'softswitch_calls_ended_total') or 'none'}); calls in "
        f"progress {result.calls_in_progress:.0f} {result.drained_after:.1f} s after the flood"
    )
    answered, completed = counts.get("answered"), counts.get("completed")
    verdict = (
        "all accepted calls completed"
        if answered == completed
        else f"{answered} accepted, only {completed} completed"
    )
    print(
        f"  {verdict}; RSS before {result.rss_before / MIB:.0f} MiB, peak "
        f"{result.rss_peak / MIB:.0f} MiB, when the flood ended {result.rss_ended / MIB:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clean-rate",
        type=int,
        help="calls/s known to be clean (default: measured with --probe-rates)",
    )
    parser.add_argument(
        "--probe-rates",
        default="300,500,700,900",
        help="rates tried to find the clean rate, calls/s",
    )
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=3.0, help="flood = factor x clean")
    parser.add_argument("--flood-seconds", type=float, default=20.0)
    parser.add_argument("--idle-probe-seconds", type=float, default=3.0)
    parser.add_argument(
        "--pause",
        type=float,
        default=5.0,
        help="seconds between the flood's end and the recovery step",
    )
    parser.add_argument("--recovery-seconds", type=float, default=20.0)
    parser.add_argument("--overload-max-invites", type=int, default=DEFAULT_MAX_INVITES_IN_PROGRESS)
    parser.add_argument("--overload-max-lag-ms", type=float, default=DEFAULT_MAX_LOOP_LAG * 1000)
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="keep the switch's log, config and SIPp files under DIR (default: a temporary "
        "directory, removed at the end)",
    )
    arguments = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: run `make bench` (it installs sip-tester)")
    metrics_port = free_port("127.0.0.1")
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    options = [
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--overload-max-invites",
        str(arguments.overload_max_invites),
        "--overload-max-lag-ms",
        str(arguments.overload_max_lag_ms),
    ]
    rates = [int(text) for text in arguments.probe_rates.split(",") if text.strip()]
    with tempfile.TemporaryDirectory(prefix="softswitch-flood-bench-") as temporary:
        directory = Path(arguments.keep or temporary)
        directory.mkdir(parents=True, exist_ok=True)
        print(
            f"flood: SIPp (trunk {LOADGEN_HOST}) -> softswitch -> SIPp uas ({CALLEE_HOST}); "
            f"overload bounds: {arguments.overload_max_invites} INVITEs in progress, "
            f"{arguments.overload_max_lag_ms:g} ms loop lag"
        )
        flood_guess = int((arguments.clean_rate or max(rates)) * arguments.factor)
        with running_switch(
            directory / f"switch-{time.time_ns()}", flood_guess * 40 + 10_000, None, options
        ) as lab:
            clean = arguments.clean_rate
            if clean is None:
                clean = 0
                for rate in rates:
                    result = run_step(lab.port, rate, arguments.probe_seconds, lab.workdir, lab.pid)
                    print_step("clean-rate step", rate, result)
                    if result["failed"] == 0 and result["unexpected"] == 0:
                        clean = rate
                    else:
                        break
                if clean == 0:
                    print("no clean rate found: nothing to flood against")
                    return
                print(f"  clean rate: {clean} calls/s")
                time.sleep(arguments.pause)
            idle = OptionsProbe(("127.0.0.1", lab.port))
            idle.start(arguments.idle_probe_seconds)
            time.sleep(arguments.idle_probe_seconds)
            idle.stop()
            print(f"  OPTIONS probe, idle: {idle.summary()}")
            flood_rate = int(clean * arguments.factor)
            print_flood(run_flood(lab, flood_rate, arguments.flood_seconds, metrics_url))
            time.sleep(arguments.pause)
            before = scrape(metrics_url)
            drops_before = all_drops(lab.port)
            recovery = run_step(lab.port, clean, arguments.recovery_seconds, lab.workdir, lab.pid)
            after = scrape(metrics_url)
            drops = all_drops(lab.port)
            print_step("recovery", clean, recovery)
            refused = after.get(
                "softswitch_calls_invites_refused_overload_total", 0.0
            ) - before.get("softswitch_calls_invites_refused_overload_total", 0.0)
            clean_again = recovery["failed"] == 0 and recovery["unexpected"] == 0
            print(
                f"  recovered: {'yes' if clean_again else 'NO'} ({recovery['failed']:.0f} "
                f"failed, {refused:.0f} refused 503 during the recovery step, kernel drops "
                f"{', '.join(f'{k} {v - drops_before[k]}' for k, v in drops.items())}); "
                f"RSS after {process_times(lab.pid)[1] / MIB:.0f} MiB"
            )


if __name__ == "__main__":
    main()
