"""Call load through the B2BUA (issue 3's benchmark; `make bench`).

SIPp's built-in `uac` scenario plays the trusted `loadgen` trunk (source 127.0.0.2, not
challenged), calling extension 2001 of the demo tenant, whose static contact is a SIPp
`uas` on 127.0.0.3. Each call is INVITE / 100 / 180 / 200 / ACK / BYE / 200 on both
legs. The switch is pinned to CPU 0 and both SIPp processes to CPU 1 (when there are two
CPUs). For each stepped rate it prints: calls offered, successful and failed, SIPp
retransmissions and unexpected messages, INVITE-to-200 setup latency (p50 and p99 from
SIPp's per-call response times) and the switch's CPU share and RSS. It ends with the
highest rate that had zero failed calls and zero unexpected messages. Figures only.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from softswitch.benchmarks.harness import CALLEE_HOST, LOADGEN_HOST, write_bench_config
from softswitch.benchmarks.options_load import free_port, pinned, wait_for_options


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


def run_step(switch_port: int, rate: int, seconds: float, workdir: Path,
             switch_pid: int) -> dict[str, float]:
    count = int(rate * seconds)
    step = workdir / f"rate-{rate}-{time.monotonic_ns()}"
    step.mkdir()
    stat_file = step / "stat.csv"
    command = pinned([
        "sipp", f"127.0.0.1:{switch_port}", "-sn", "uac", "-s", "2001",
        "-i", LOADGEN_HOST, "-p", str(free_port(LOADGEN_HOST)),
        "-r", str(rate), "-m", str(count), "-l", str(max(rate * 4, 100)),
        "-nostdin", "-timeout", f"{int(seconds) + 60}s", "-recv_timeout", "10000",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
    ], 1)
    cpu_before, _ = process_times(switch_pid)
    started = time.monotonic()
    subprocess.run(command, cwd=step, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds + 120, check=False)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="100,250,500,750,1000", help="calls per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each step")
    parser.add_argument("--profile", metavar="FILE", help="record the switch with py-spy "
                        "(collapsed stacks) into FILE; the figures then include its cost")
    arguments = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: run `make bench` (it installs sip-tester)")
    switch_port = free_port("127.0.0.1")
    callee_port = free_port(CALLEE_HOST)
    with tempfile.TemporaryDirectory(prefix="softswitch-call-bench-") as directory:
        workdir = Path(directory)
        config = write_bench_config(workdir, callee_port)
        log = (workdir / "switch.log").open("w")
        switch = subprocess.Popen(
            pinned([sys.executable, "-m", "softswitch", "run", "--sip",
                    f"127.0.0.1:{switch_port}", "--config", str(config), "--data-dir",
                    str(workdir / "data"), "--log-level", "WARNING"], 0),
            stdout=log, stderr=subprocess.STDOUT,
        )
        callee = subprocess.Popen(
            pinned(["sipp", "-sn", "uas", "-i", CALLEE_HOST, "-p", str(callee_port),
                    "-nostdin"], 1),
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_options("127.0.0.1", switch_port, time.monotonic() + 30)
            profiler = subprocess.Popen(
                ["py-spy", "record", "--format", "raw", "--rate", "200", "--pid",
                 str(switch.pid), "--output", str(Path(arguments.profile).resolve())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ) if arguments.profile else None
            print(f"calls: SIPp uac (trunk {LOADGEN_HOST}) -> softswitch -> SIPp uas "
                  f"({CALLEE_HOST}); {arguments.seconds:g} s per step")
            highest_clean = 0
            for rate in (int(text) for text in arguments.rates.split(",")):
                result = run_step(switch_port, rate, arguments.seconds, workdir, switch.pid)
                clean = result["failed"] == 0 and result["unexpected"] == 0
                if clean:
                    highest_clean = max(highest_clean, rate)
                print(f"  {rate:5d} calls/s: {result['successful']:.0f}/{result['count']:.0f} "
                      f"ok, failed {result['failed']:.0f}, unexpected "
                      f"{result['unexpected']:.0f}, retransmissions "
                      f"{result['retransmissions']:.0f}, setup p50 {result['p50']:.1f} ms "
                      f"p99 {result['p99']:.1f} ms, switch CPU {result['cpu'] * 100:.0f}% "
                      f"RSS {result['rss'] / 2**20:.0f} MiB")
            print(f"highest rate with zero failed calls and zero unexpected messages: "
                  f"{highest_clean} calls/s")
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
        finally:
            for process in (switch, callee):
                process.terminate()
            for process in (switch, callee):
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()
            if "Traceback" in (workdir / "switch.log").read_text(errors="replace"):
                print("the switch logged a traceback:")
                print((workdir / "switch.log").read_text(errors="replace")[-3000:])


if __name__ == "__main__":
    main()
