"""Cloud PBX rows with real baresip instances as the fixed IP phones (issue 6 item 8).

- One switch for the module on the test copy of `configs/demo.yaml` that
  `test_pbx_calls.py` writes (1001 and 1002 offered MD5 only, which baresip 1.0.0
  needs), with its own data directory and the Customer Control API.
- Each phone is a headless baresip (`sip_tests/baresip.py`) on its own 127.x.y.z address
  with its own SIP, control and RTP ports; what a phone saw is what it reported itself:
  over its control socket CALL_PROGRESS / CALL_INCOMING / CALL_ESTABLISHED / CALL_CLOSED
  (whose `param` is the final status, or who hung up) and its received RTP packets
  (`audio_debug`); in its log the message-summary NOTIFY bodies (the `mwi` module, with
  `;mwi=yes` on the account: its first NOTIFY usually comes before the control socket
  is connected, so its MWI_NOTIFY event is lost, the log line is not).
- Emergency: 1001 dials 110 while 1002 dials 119; each gets 183 and the
  `emergency_unavailable` announcement as early media (its RTP counted by the phone)
  and then 403; the switch logs both calls as external refusals with that announcement.
- Voicemail and MWI: 1001 registers with `mwi=yes` and gets `Messages-Waiting: no`
  (0/0); 1002 calls 1001, whose phone rejects the call (486, busy): the switch answers
  with the greeting (its RTP counted by 1002, whose end is when the count stops), 1002's
  aufile tone is recorded for MESSAGE_SECONDS and 1002 hangs up; the WAV under the data
  directory lasts that long (DURATION_TOLERANCE) and is loud all along, the API lists
  it from 1002, the switch logs a voicemail call, and 1001 gets `Messages-Waiting: yes`
  (1/0). 1001 then dials `*98`, hears the message and presses `3` (baresip's `sndcode`:
  an RFC 4733 telephone-event, the only DTMF the mailbox menu takes): the switch deletes
  it and hangs up (BYE); 1001 gets `Messages-Waiting: no` (0/0), the API lists nothing
  and the file is gone.
Every wait has a limit; every process is stopped by its PID.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from softswitch.media.wav import read_wav

from . import sipp
from .baresip import Baresip
from .conftest import RunningElement, free_port, running
from .test_pbx_calls import registered_phones, write_config
from .test_voicemail import api_get, api_token

DOMAIN = "127.0.0.1"
MESSAGE_SECONDS = 2.0
"""How long 1002 speaks after the greeting."""
DURATION_TOLERANCE = 0.3
ANNOUNCEMENT_PACKETS = 300
"""6 s of the emergency announcement's 20 ms packets (8.2 s long), heard before the 403."""
RECORDING_DELAY = 0.1
"""The recording starts this long after the greeting's last packet (the `tail` of the
greeting's `Playout` in `voicemail_media`: the caller's jitter buffer plays it out)."""
GREETING_PACKETS = 250
"""5 s of the voicemail greeting (6.6 s long)."""


@dataclass
class Switch:
    element: RunningElement
    data: Path
    api: str


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    directory = tmp_path_factory.mktemp("pbx-baresip")
    config = directory / "pbx.yaml"
    write_config(config, {})
    data = directory / "data"
    api_port = free_port("127.0.0.1")
    options = (
        "--config", str(config), "--data-dir", str(data), "--api", f"127.0.0.1:{api_port}",
    )  # fmt: skip
    with running(DOMAIN, directory / "softswitch.log", options) as element:
        yield Switch(element, data, f"http://127.0.0.1:{api_port}")


def received_packets(phone: Baresip) -> int:
    """RTP packets the phone's current call received (the `rcvd` of every remote source
    in `audio_debug`; none before the first packet)."""
    return sum(int(value) for value in re.findall(r"rcvd=(\d+)", phone.command("audio_debug")))


def wait_received(phone: Baresip, packets: int, timeout: float = 10.0) -> int:
    """Poll the phone's received RTP packet count until it reaches `packets`."""
    deadline = time.monotonic() + timeout
    while True:
        received = received_packets(phone)
        if received >= packets:
            return received
        if time.monotonic() > deadline:
            raise AssertionError(f"{phone.name} received {received} RTP packets, not {packets}")
        time.sleep(0.1)


def wait_silent(phone: Baresip, quiet: float = 0.3, timeout: float = 10.0) -> float:
    """Poll the phone's received RTP packet count until it has stood still for `quiet`
    seconds; returns when it last grew (the end of what the switch played)."""
    deadline = time.monotonic() + timeout
    last_count, last_change = received_packets(phone), time.monotonic()
    while time.monotonic() - last_change < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"{phone.name}: RTP still arriving after {timeout} s")
        time.sleep(0.02)
        count = received_packets(phone)
        if count != last_count:
            last_count, last_change = count, time.monotonic()
    return last_change


def record(switch: Switch, **fields: str) -> dict[str, str]:
    """The switch's `call ended` record whose fields start with `fields` (waits a
    little)."""
    found = sipp.wait_for(
        lambda: [
            entry
            for entry in sipp.call_records(switch.element)
            if all(entry.get(key, "").startswith(value) for key, value in fields.items())
        ],
        lambda: f"no call record with {fields}:\n" + switch.element.log_text()[-5000:],
    )
    return found[-1]


def test_emergency_calls_from_fixed_phones_get_guidance_then_403(
    switch: Switch, tmp_path: Path
) -> None:
    with registered_phones(
        switch.element.port, tmp_path, ("1001", ""), ("1002", "")
    ) as (phone_1001, phone_1002):
        dialled = [(phone_1001, "110"), (phone_1002, "119")]
        for phone, number in dialled:
            phone.command("dial", f"sip:{number}@{DOMAIN}:{switch.element.port}")
        # Early media: each phone counts the announcement's RTP while its call is still
        # unanswered (183), then gets the 403 the guidance ends with.
        for phone, _ in dialled:
            wait_received(phone, ANNOUNCEMENT_PACKETS)
        for phone, number in dialled:
            progress = phone.wait_event("CALL_PROGRESS", timeout=1)
            assert str(progress.get("peeruri", "")).startswith(f"sip:{number}@"), progress
            closed = phone.wait_event("CALL_CLOSED", timeout=15)
            assert closed.get("param") == "403 Forbidden", closed
            established = [e for e in phone.events if e.get("type") == "CALL_ESTABLISHED"]
            assert established == [], established
    for extension, number in (("1001", "110"), ("1002", "119")):
        caller = f"sip:{extension}@{DOMAIN}"
        entry = record(switch, **{"from": caller}, to=f"sip:{number}@", status="403")
        assert entry["target"] == "announcement:emergency_unavailable_ja", entry
        assert entry["kind"] == "external", entry


def test_voicemail_left_by_a_phone_notified_to_the_owner_and_deleted_with_star98(
    switch: Switch, tmp_path: Path
) -> None:
    base = switch.api
    token = api_token(base)
    listing_path = "/api/v1/tenants/demo/extensions/1001/voicemail/messages"
    mailbox = switch.data / "voicemail" / "demo" / "1001"
    with registered_phones(
        switch.element.port, tmp_path, ("1001", ";mwi=yes"), ("1002", "")
    ) as (owner, caller):
        # The owner's phone subscribed to its message summary: nothing waiting yet.
        seen = owner.wait_mwi("Messages-Waiting: no", "Voice-Message: 0/0")

        # 1002 calls 1001, whose phone is busy (rejects the call): voicemail answers.
        caller.command("dial", f"sip:1001@{DOMAIN}:{switch.element.port}")
        owner.wait_event("CALL_INCOMING", timeout=10)
        owner.command("hangup")
        owner.wait_event("CALL_CLOSED", timeout=10)
        rejection = r"rejecting incoming call from sip:1002@\S+ \(486 "
        assert re.search(rejection, owner.log_text()), owner.log_text()
        caller.wait_event("CALL_ESTABLISHED", timeout=10)
        greeting = wait_received(caller, GREETING_PACKETS)
        greeting_end = wait_silent(caller)
        # The recording starts once the greeting was heard: speak MESSAGE_SECONDS, hang up.
        hang_up = greeting_end + RECORDING_DELAY + MESSAGE_SECONDS
        time.sleep(max(0.0, hang_up - time.monotonic()))
        caller.command("hangup")
        caller.wait_event("CALL_CLOSED", timeout=10)

        seen = owner.wait_mwi("Messages-Waiting: yes", "Voice-Message: 1/0", after=seen)
        files = sorted(mailbox.glob("*.wav"))
        info = f"greeting packets {greeting}\n" + switch.element.log_text()[-4000:]
        assert len(files) == 1, info
        audio = read_wav(files[0])
        assert abs(audio.duration - MESSAGE_SECONDS) <= DURATION_TOLERANCE, (audio.duration, info)
        # baresip's tone (440 Hz, amplitude 8000) all along: loud in every 100 ms.
        samples = struct.unpack(f"<{len(audio.pcm) // 2}h", audio.pcm)
        for start in range(0, len(samples) - 800, 800):
            assert max(abs(value) for value in samples[start : start + 800]) > 4000, start
        _, listing = api_get(base, token, listing_path)
        (message,) = json.loads(listing)
        assert message["caller"].startswith("sip:1002@"), message
        assert abs(message["duration_seconds"] - audio.duration) <= 0.02, message
        entry = record(switch, **{"from": f"sip:1002@{DOMAIN}"}, target="voicemail:1001")
        assert (entry["result"], entry["status"]) == ("answered", "200"), entry

        # The owner dials *98, hears the message and presses 3: deleted, then hung up.
        owner.command("dial", f"sip:*98@{DOMAIN}:{switch.element.port}")
        owner.wait_event("CALL_ESTABLISHED", timeout=10)
        wait_received(owner, 25)  # 0.5 s of the message
        owner.send_digits("3")
        # The switch hangs up after the last message (its BYE: "reset by peer").
        closed = owner.wait_event("CALL_CLOSED", timeout=10)
        assert "reset by peer" in str(closed.get("param", "")), closed
        owner.wait_mwi("Messages-Waiting: no", "Voice-Message: 0/0", after=seen)

    _, listing = api_get(base, token, listing_path)
    assert json.loads(listing) == [], switch.element.log_text()[-4000:]
    assert not files[0].exists()
    entry = record(switch, **{"from": f"sip:1001@{DOMAIN}"}, target="mailbox:1001")
    assert (entry["result"], entry["status"]) == ("answered", "200"), entry
