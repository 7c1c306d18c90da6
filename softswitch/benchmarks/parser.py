"""Parser and serializer speed on a typical 900-byte INVITE with SDP (issue 2, item 10).

Measures, on one core, messages per second for:
- parse: `parse_message(data)` plus the typed access a transaction layer and B2BUA do
  on every message (top Via branch, From tag, To, CSeq, Call-ID);
- serialize: `message.to_bytes()` of an already parsed message;
- a naive baseline: split lines and headers on ':' (what "parsing" costs at the least).

Each figure is the median of several rounds, printed with the ratio to the baseline
measured in the same run, since the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from softswitch.runtime import tune_garbage_collector
from softswitch.sip import parse_message

SDP = (
    "v=0\r\n"
    "o=- 3912345678 3912345678 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:1002@192.0.2.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-524287-1---b3e1a9f0c2d4e6f8;rport\r\n"
    "Max-Forwards: 70\r\n"
    "Contact: <sip:1001@192.0.2.10:5062;transport=udp>\r\n"
    'To: "Extension 1002" <sip:1002@192.0.2.1>\r\n'
    'From: "Extension 1001" <sip:1001@192.0.2.1>;tag=7f3a9c21\r\n'
    "Call-ID: 4b6d8e0f1a2c3e5g7i9k1m3o5q7s9u1w@192.0.2.10\r\n"
    "CSeq: 2 INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    "Content-Type: application/sdp\r\n"
    "Supported: replaces, norefersub, extended-refer, timer, outbound, path\r\n"
    "User-Agent: Zoiper rv2.10.19.6\r\n"
    "Allow-Events: presence, kpml, talk\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n" + SDP
).encode()


def naive_split(data: bytes) -> dict[str, str]:
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_and_access(data: bytes) -> tuple[object, ...]:
    message = parse_message(data)
    return (
        message.top_via.branch,
        message.from_address.tag,
        message.to_address,
        message.cseq,
        message.call_id,
    )


def rate(function: Callable[[Any], object], argument: object, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        function(argument)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--default-gc", action="store_true",
                        help="keep CPython's default collector thresholds instead of the "
                             "switch's tuning (softswitch.runtime)")
    arguments = parser.parse_args()
    if not arguments.default_gc:
        tune_garbage_collector()  # as `softswitch run` does
    message = parse_message(INVITE)
    results: dict[str, list[float]] = {
        "naive split": [], "parse + typed access": [], "serialize": []
    }
    for _ in range(arguments.rounds):
        results["naive split"].append(rate(naive_split, INVITE, arguments.count))
        results["parse + typed access"].append(rate(parse_and_access, INVITE, arguments.count))
        results["serialize"].append(rate(lambda m: m.to_bytes(), message, arguments.count))
    baseline = statistics.median(results["naive split"])
    collector = "default" if arguments.default_gc else "switch-tuned"
    print(f"message: {len(INVITE)}-byte INVITE with SDP; {arguments.rounds} rounds of "
          f"{arguments.count} (median, messages/s, ratio to naive split; "
          f"{collector} garbage collector)")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:22s} {median:10,.0f} msg/s   x{median / baseline:.2f}")


if __name__ == "__main__":
    main()
