"""OPTIONS load against the running element, driven by SIPp (`make bench`).

Starts `python -m softswitch run` on a free loopback port (pinned to CPU 0 when the
machine has two or more), then runs SIPp (pinned to CPU 1) sending OPTIONS at a fixed
rate for a bounded number of transactions, several rounds per rate, and prints the
median answered, failed and retransmitted counts (SIPp retransmits after 500 ms without
an answer, so retransmissions show latency spikes before failures do) and the highest
rate every round of which completed without a failure. Figures, never assertions.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options-load">
  <send>
    <![CDATA[
      OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:bench@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, 0))
        port: int = udp.getsockname()[1]
    return port


def pinned(command: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return command


def wait_for_options(host: str, port: int, deadline: float) -> None:
    probe = (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{{port}};branch=z9hG4bKprobe"
        f"\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=1\r\nTo: <sip:{host}>\r\n"
        "Call-ID: probe@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, 0))
        udp.settimeout(0.2)
        own_port = udp.getsockname()[1]
        while time.monotonic() < deadline:
            udp.sendto(probe.replace("{port}", str(own_port)).encode(), (host, port))
            try:
                if udp.recv(65535).startswith(b"SIP/2.0 200"):
                    return
            except TimeoutError:
                continue
    raise RuntimeError("the switch did not answer OPTIONS within the start-up deadline")


def run_sipp(host: str, port: int, rate: int, count: int, workdir: Path) -> tuple[int, int, int]:
    """One SIPp run; returns (successful, failed, retransmissions) from its statistics."""
    scenario = workdir / "options.xml"
    scenario.write_text(SCENARIO)
    stat_file = workdir / f"stat-{rate}-{time.monotonic_ns()}.csv"
    sipp_port = free_port("127.0.0.2")
    command = pinned(
        ["sipp", f"{host}:{port}", "-sf", str(scenario), "-i", "127.0.0.2", "-p", str(sipp_port),
         "-r", str(rate), "-m", str(count), "-l", str(max(rate, 100)), "-nostdin",
         "-timeout", "60s", "-trace_stat", "-stf", str(stat_file), "-fd", "1",
         "-recv_timeout", "5000"],
        1,
    )
    subprocess.run(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=90, check=False)
    with stat_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    last = rows[-1]
    return (
        int(last["SuccessfulCall(C)"]),
        int(last["FailedCall(C)"]),
        int(last["Retransmissions(C)"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="1000,2000,3000,4000", help="OPTIONS per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each round")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: run `make bench` (it installs sip-tester)")
    host = "127.0.0.1"
    port = free_port(host)
    with tempfile.TemporaryDirectory(prefix="softswitch-bench-") as directory:
        workdir = Path(directory)
        log = (workdir / "switch.log").open("w")
        switch = subprocess.Popen(
            pinned([sys.executable, "-m", "softswitch", "run", "--sip", f"{host}:{port}",
                    "--log-level", "WARNING"], 0),
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_options(host, port, time.monotonic() + 15)
            print(f"OPTIONS over UDP, SIPp -> softswitch on {host}:{port}; "
                  f"{arguments.rounds} rounds of {arguments.seconds:g} s per rate (median)")
            highest_clean = 0
            for rate in (int(text) for text in arguments.rates.split(",")):
                count = int(rate * arguments.seconds)
                outcomes = [run_sipp(host, port, rate, count, workdir)
                            for _ in range(arguments.rounds)]
                successful = statistics.median(outcome[0] for outcome in outcomes)
                failed = statistics.median(outcome[1] for outcome in outcomes)
                retransmitted = statistics.median(outcome[2] for outcome in outcomes)
                if all(outcome[1] == 0 for outcome in outcomes):
                    highest_clean = max(highest_clean, rate)
                print(f"  offered {rate:6d}/s x {count}: answered {successful:.0f}, "
                      f"failed {failed:.0f}, SIPp retransmissions {retransmitted:.0f}")
            print(f"highest offered rate with no failed transaction in any round: "
                  f"{highest_clean}/s")
        finally:
            switch.terminate()
            try:
                switch.wait(timeout=10)
            except subprocess.TimeoutExpired:
                switch.kill()
            log.close()


if __name__ == "__main__":
    main()
