"""Call load through the B2BUA (issue 3's benchmark; `make bench`).

SIPp's built-in `uac` scenario plays the trusted `loadgen` trunk (source 127.0.0.2, not
challenged), calling extension 1999 of the demo tenant, whose static contact is a SIPp
`uas` on 127.0.0.13. Each call is INVITE / 100 / 180 / 200 / ACK / BYE / 200 on both
legs. The switch is pinned to CPU 0 and both SIPp processes to CPU 1 (when there are two
CPUs). For each stepped rate it prints: calls offered, successful and failed, SIPp
retransmissions and unexpected messages, INVITE-to-200 setup latency (p50 and p99 from
SIPp's per-call response times) and the switch's CPU share and RSS. It ends with the
highest rate that had zero failed calls and zero unexpected messages.

Then the hold test (alone with `--hold-only`, skipped with `--no-hold`), against a fresh
switch and callee (the overloaded steps leave RSS behind): SIPp places
`--hold-calls` calls (10,000) at `--hold-rate` (500 calls/s), each held `--hold-seconds`
(30 s, SIPp's `-d` pause between ACK and BYE), with `-l` above the call count so that
all of them are open at once. The switch's RSS is sampled from /proc every 0.5 s. It
prints calls completed and failed, the concurrent calls reached (peak CurrentCall in the
stat files of both SIPp processes), the switch's RSS before, at peak, when the last call
ended and `--settle` seconds later (35 s: every transaction timer has run out), and the
switch's CPU share during the test. Figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from softswitch.benchmarks.harness import (
    BENCH_TOLLFREE_NUMBER,
    CALLEE_HOST,
    LOADGEN_HOST,
    write_bench_config,
)
from softswitch.benchmarks.options_load import free_port, pinned, wait_for_options

SIPP_BUFFER = str(4 * 1024 * 1024)
"""SIPp's socket buffers (`-buff_size`): as large as the switch's, so neither side drops
datagrams in a burst and what is measured is the switch."""

def process_times(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return cpu, rss_pages * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def open_many_files() -> None:
    """preexec_fn for SIPp: raise the soft limit of open files to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_stats(stat_file: Path) -> list[dict[str, str]]:
    """The rows of a SIPp statistics file (`-trace_stat`), oldest first."""
    if not stat_file.exists():
        return []
    with stat_file.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def peak_current_calls(stat_file: Path) -> int:
    return max((int(row["CurrentCall"]) for row in read_stats(stat_file)), default=0)


def failure_causes(row: dict[str, str]) -> str:
    """SIPp's non-zero Failed* counters of a stat row, e.g. 'MaxUDPRetrans 12'."""
    causes = [
        f"{name[len('Failed'):-len('(C)')]} {value}"
        for name, value in row.items()
        if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
        and value.strip() not in ("", "0")
    ]
    return ", ".join(causes) or "none"


def run_step(switch_port: int, rate: int, seconds: float, workdir: Path,
             switch_pid: int, target: str = "1999") -> dict[str, float]:
    count = int(rate * seconds)
    step = workdir / f"rate-{rate}-{time.monotonic_ns()}"
    step.mkdir()
    stat_file = step / "stat.csv"
    command = pinned([
        "sipp", f"127.0.0.1:{switch_port}", "-sn", "uac", "-s", target, "-buff_size", SIPP_BUFFER,
        "-i", LOADGEN_HOST, "-p", str(free_port(LOADGEN_HOST)),
        "-r", str(rate), "-m", str(count), "-l", str(max(rate * 4, 100)),
        "-nostdin", "-timeout", f"{int(seconds) + 60}s", "-recv_timeout", "10000",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
    ], 1)
    cpu_before, _ = process_times(switch_pid)
    started = time.monotonic()
    subprocess.run(command, cwd=step, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds + 120, check=False, preexec_fn=open_many_files)
    elapsed = time.monotonic() - started
    cpu_after, rss = process_times(switch_pid)
    with stat_file.open(newline="") as handle:
        last = list(csv.DictReader(handle, delimiter=";"))[-1]
    setup_times: list[float] = []
    for rtt_file in step.glob("*_rtt.csv"):
        with rtt_file.open(newline="") as handle:
            for row in csv.reader(handle, delimiter=";"):
                try:
                    setup_times.append(float(row[1]))
                except (IndexError, ValueError):
                    continue  # the header line
    return {
        "count": count,
        "successful": int(last["SuccessfulCall(C)"]),
        "failed": int(last["FailedCall(C)"]),
        "unexpected": int(last["FailedUnexpectedMessage(C)"]) + int(last["OutOfCallMsgs(C)"]),
        "retransmissions": int(last["Retransmissions(C)"]),
        "p50": percentile(setup_times, 0.50) if setup_times else float("nan"),
        "p99": percentile(setup_times, 0.99) if setup_times else float("nan"),
        "cpu": (cpu_after - cpu_before) / elapsed,
        "rss": rss,
    }


def run_hold(switch_port: int, rate: int, calls: int, hold: float, settle: float,
             workdir: Path, switch_pid: int, callee_stat: Path) -> dict[str, Any]:
    """`calls` calls at `rate`, each held `hold` s; the switch's RSS every 0.5 s."""
    step = workdir / f"hold-{time.monotonic_ns()}"
    step.mkdir()
    stat_file = step / "stat.csv"
    ramp = calls / rate
    timeout = ramp + hold + 60
    command = pinned([
        "sipp", f"127.0.0.1:{switch_port}", "-sn", "uac", "-s", "1999", "-buff_size", SIPP_BUFFER,
        "-i", LOADGEN_HOST, "-p", str(free_port(LOADGEN_HOST)),
        "-r", str(rate), "-m", str(calls), "-l", str(calls + max(calls // 20, 10)),
        "-d", str(int(hold * 1000)),
        "-nostdin", "-timeout", f"{int(timeout)}s", "-recv_timeout", "10000",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
    ], 1)
    cpu_before, rss_before = process_times(switch_pid)
    peak_rss = rss_before
    started = time.monotonic()
    with subprocess.Popen(command, cwd=step, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, preexec_fn=open_many_files) as sipp:
        try:
            while sipp.poll() is None:
                if time.monotonic() - started > timeout + 30:
                    raise subprocess.TimeoutExpired(command, timeout + 30)
                peak_rss = max(peak_rss, process_times(switch_pid)[1])
                time.sleep(0.5)
        finally:
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait(timeout=10)
    elapsed = time.monotonic() - started
    cpu_after, rss_ended = process_times(switch_pid)
    peak_rss = max(peak_rss, rss_ended)
    settle_until = time.monotonic() + settle
    while (left := settle_until - time.monotonic()) > 0:
        peak_rss = max(peak_rss, process_times(switch_pid)[1])
        time.sleep(min(0.5, left))
    _, rss_after = process_times(switch_pid)
    rows = read_stats(stat_file)
    last = rows[-1] if rows else {}
    return {
        "count": calls,
        "successful": int(last.get("SuccessfulCall(C)", 0)),
        "failed": int(last.get("FailedCall(C)", 0)),
        "unexpected": int(last.get("FailedUnexpectedMessage(C)", 0))
        + int(last.get("OutOfCallMsgs(C)", 0)),
        "retransmissions": int(last.get("Retransmissions(C)", 0)),
        "causes": failure_causes(last),
        "concurrent": max((int(row["CurrentCall"]) for row in rows), default=0),
        "callee_concurrent": peak_current_calls(callee_stat),
        "elapsed": elapsed,
        "cpu": (cpu_after - cpu_before) / elapsed,
        "rss_before": rss_before,
        "rss_peak": peak_rss,
        "rss_ended": rss_ended,
        "rss_after": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="200,400,600,800,1000", help="calls per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each step")
    parser.add_argument("--profile", metavar="FILE", help="record the switch with py-spy "
                        "(collapsed stacks) into FILE; the figures then include its cost")
    parser.add_argument("--targets", default="extension",
                        help="what the calls dial, comma-separated: `extension` (1999, a "
                        "static contact) and/or `tollfree` (0120999999, one destination "
                        "through a trunk); with both, each rate runs for each target back "
                        "to back on the same switch, so their figures compare side by side")
    parser.add_argument("--hold-only", action="store_true", help="only the hold test")
    parser.add_argument("--no-hold", action="store_true", help="skip the hold test")
    parser.add_argument("--hold-calls", type=int, default=10_000,
                        help="calls of the hold test, all open at once")
    parser.add_argument("--hold-rate", type=int, default=500,
                        help="calls per second placed by the hold test")
    parser.add_argument("--hold-seconds", type=float, default=30.0,
                        help="how long each call of the hold test is held")
    parser.add_argument("--settle", type=float, default=35.0,
                        help="wait after the last call of the hold test before the RSS after")
    arguments = parser.parse_args()
    if arguments.hold_only and arguments.no_hold:
        parser.error("--hold-only and --no-hold exclude each other")
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: run `make bench` (it installs sip-tester)")
    rates = [] if arguments.hold_only else [
        int(text) for text in arguments.rates.split(",") if text.strip()]
    hold = not arguments.no_hold and arguments.hold_calls > 0
    profile = arguments.profile
    targets = [TARGETS[name.strip()] for name in arguments.targets.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="softswitch-call-bench-") as directory:
        print(f"calls: SIPp uac (trunk {LOADGEN_HOST}) -> softswitch -> SIPp uas "
              f"({CALLEE_HOST}); {arguments.seconds:g} s per step")
        if rates:
            with running_switch(Path(directory) / "steps", max(rates) * 20 + 1000,
                                profile) as lab:
                profile = None
                run_steps(lab, rates, arguments.seconds, targets)
        if hold:
            # A switch of its own: the overloaded steps leave their RSS behind.
            with running_switch(Path(directory) / "hold", arguments.hold_calls * 2 + 1000,
                                profile) as lab:
                print(f"hold (a fresh switch): {arguments.hold_calls} calls at "
                      f"{arguments.hold_rate} calls/s, each held {arguments.hold_seconds:g} s; "
                      f"RSS sampled every 0.5 s, RSS after = {arguments.settle:g} s after "
                      f"the last call ended")
                held = run_hold(lab.port, arguments.hold_rate, arguments.hold_calls,
                                arguments.hold_seconds, arguments.settle, lab.workdir,
                                lab.pid, lab.callee_stat)
                print_hold(held, arguments.hold_rate, arguments.hold_calls)


class RunningSwitch(NamedTuple):
    """A running switch and its SIPp callee."""

    workdir: Path
    port: int
    pid: int
    callee_stat: Path


@contextlib.contextmanager
def running_switch(workdir: Path, callee_calls: int,
                   profile: str | None,
                   switch_options: Sequence[str] = ()) -> Iterator[RunningSwitch]:
    """The switch (CPU 0) and the SIPp uas callee (CPU 1, up to `callee_calls` calls),
    both stopped by PID on the way out; py-spy on the switch when `profile` is a path.
    `switch_options` are added to `softswitch run` (the flood benchmark's)."""
    workdir.mkdir()
    switch_port = free_port("127.0.0.1")
    callee_port = free_port(CALLEE_HOST)
    config = write_bench_config(workdir, callee_port)
    log = (workdir / "switch.log").open("w")
    switch = subprocess.Popen(
        pinned([sys.executable, "-m", "softswitch", "run", "--sip",
                f"127.0.0.1:{switch_port}", "--config", str(config), "--data-dir",
                str(workdir / "data"), "--log-level", "WARNING", *switch_options], 0),
        stdout=log, stderr=subprocess.STDOUT,
    )
    callee_stat = workdir / "callee-stat.csv"
    callee = subprocess.Popen(
        pinned(["sipp", "-sn", "uas", "-buff_size", SIPP_BUFFER, "-i", CALLEE_HOST, "-p",
                    str(callee_port),
                "-l", str(callee_calls), "-nostdin",
                "-trace_stat", "-stf", str(callee_stat), "-fd", "1"], 1),
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=open_many_files,
    )
    profiler: subprocess.Popen[bytes] | None = None
    try:
        wait_for_options("127.0.0.1", switch_port, time.monotonic() + 30)
        if profile:
            profiler = subprocess.Popen(
                ["py-spy", "record", "--format", "raw", "--rate", "200", "--pid",
                 str(switch.pid), "--output", str(Path(profile).resolve())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        yield RunningSwitch(workdir, switch_port, switch.pid, callee_stat)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
    finally:
        for process in (profiler, switch, callee):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (profiler, switch, callee):
            if process is None:
                continue
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
        if "Traceback" in (workdir / "switch.log").read_text(errors="replace"):
            print("the switch logged a traceback:")
            print((workdir / "switch.log").read_text(errors="replace")[-3000:])


TARGETS = {"extension": ("extension", "1999"), "tollfree": ("tollfree", BENCH_TOLLFREE_NUMBER)}
"""`--targets` names: (label, the Request-URI user SIPp dials)."""


def run_steps(lab: RunningSwitch, rates: list[int], seconds: float,
              targets: list[tuple[str, str]]) -> None:
    highest_clean = {label: 0 for label, _ in targets}
    for rate in rates:
        for label, target in targets:
            result = run_step(lab.port, rate, seconds, lab.workdir, lab.pid, target)
            clean = result["failed"] == 0 and result["unexpected"] == 0
            if clean:
                highest_clean[label] = max(highest_clean[label], rate)
            print_step(label if len(targets) > 1 else "", rate, result)
    for label, highest in highest_clean.items():
        print(f"highest rate with zero failed calls and zero unexpected messages"
              f"{' (' + label + ')' if len(targets) > 1 else ''}: {highest} calls/s")
    if len(targets) > 1 and highest_clean[targets[0][0]]:
        first = targets[0][0]
        for label, highest in highest_clean.items():
            if label != first:
                print(f"{label} / {first}: {highest / highest_clean[first] * 100:.0f}% of the "
                      f"clean calls/s, measured side by side")


def print_step(label: str, rate: int, result: dict[str, float]) -> None:
    print(f"  {label + ' ' if label else ''}{rate:5d} calls/s: "
          f"{result['successful']:.0f}/{result['count']:.0f} "
          f"ok, failed {result['failed']:.0f}, unexpected "
          f"{result['unexpected']:.0f}, retransmissions "
          f"{result['retransmissions']:.0f}, setup p50 {result['p50']:.1f} ms "
          f"p99 {result['p99']:.1f} ms, switch CPU {result['cpu'] * 100:.0f}% "
          f"RSS {result['rss'] / 2**20:.0f} MiB")


def print_hold(held: dict[str, Any], rate: int, calls: int) -> None:
    mib = 2**20
    print(f"  {rate:5d} calls/s: {held['successful']:.0f}/{held['count']:.0f} ok, failed "
          f"{held['failed']:.0f} (causes: {held['causes']}), unexpected "
          f"{held['unexpected']:.0f}, retransmissions {held['retransmissions']:.0f}, "
          f"concurrent calls {held['concurrent']:.0f} (callee "
          f"{held['callee_concurrent']:.0f} incl. its 4 s wait after BYE), switch CPU "
          f"{held['cpu'] * 100:.0f}% over {held['elapsed']:.0f} s")
    grown = held["rss_peak"] - held["rss_before"]
    per_call = grown / max(held["concurrent"], 1) / 1024
    print(f"         RSS before {held['rss_before'] / mib:.0f} MiB, peak "
          f"{held['rss_peak'] / mib:.0f} MiB (+{grown / mib:.0f} MiB, {per_call:.1f} KiB "
          f"per concurrent call), when the last call ended {held['rss_ended'] / mib:.0f} "
          f"MiB, after {held['rss_after'] / mib:.0f} MiB")
    if held["concurrent"] < calls:
        print(f"         only {held['concurrent']:.0f} of the {calls} calls were open at once")

if __name__ == "__main__":
    main()
