"""Voicemail (issue 6 item 4) end to end: a message left over RTP, its WAV file, the
message-waiting NOTIFY and the API.

- The switch runs on a test copy of `configs/demo.yaml` with extension 1999 (MD5 only,
  so SIPp can authenticate as it; voicemail on; never registered), its own data
  directory and API port.
- A SIPp phone as 1999 SUBSCRIBEs to its message-summary (407, then credentials): the
  first NOTIFY says `Messages-Waiting: no`; the scenario then waits for one saying
  `yes` with `Voice-Message: 1/0`.
- A SIPp caller on the trusted trunk address 127.0.0.2 calls 1999, which is not
  registered: instead of 480 the switch answers, with SDP pointing at its RTP port, and
  plays the greeting to a UDP socket of this test. Once the greeting's packets stop,
  the test sends 3 s of a 1 kHz tone (PCMU, 150 packets of 20 ms) from that socket to
  where the greeting came from, then stays silent: after the silence timeout the switch
  hangs up (BYE, which the caller answers).
- Checked: both SIPp scenarios succeed; one WAV file under `data/voicemail/demo/1999/`,
  8 kHz mono, 3.0 s (a 20 ms tolerance), holding the tone; the API lists the message
  (1999's mailbox, as the tenant administrator) and serves the same bytes as audio/wav;
  that download makes the message old, and the subscriber's last NOTIFY says
  `Messages-Waiting: no` with `Voice-Message: 0/1`.
- Then the owner dials the feature code `*98` (SIPp as 1999, challenged, offering
  telephone-event): the switch plays the message to the test's RTP socket, the test
  presses `3` (RFC 4733 events, end packets repeated), the message is deleted and the
  switch hangs up; the API lists nothing and the file is gone.
- The busy and no-answer diversions: 1997's phone (SIPp behind a static contact)
  answers 486, 1998's rings past its 5 s no-answer timeout; each caller gets the
  switch's own 200 (PCMA, as offered), the greeting's RTP, and hangs up.
Every process has a time limit and is stopped by its PID. No timing assertions.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from softswitch.media.g711 import Codec
from softswitch.media.wav import read_wav

from . import sipp
from .conftest import REPO_ROOT, RunningElement, free_port, random_loopback_host, running

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
TRUNK_SOURCE = "127.0.0.2"
"""The demo's `loadgen` trunk trusts this source address."""
MAILBOX = "1999"
PASSWORD = "pass1999"
SIPP_LIMIT = 45
TONE_PACKETS = 150
"""3 s of audio in 20 ms packets."""
ADMIN = ("admin@demo", "Demo-Admin-2026!")


def write_config(path: Path) -> None:
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    tenant = document["tenants"][0]
    tenant["extensions"].append(
        {
            "number": MAILBOX,
            "site": tenant["sites"][0]["name"],
            "display_name": "voicemail test",
            "password": PASSWORD,
            "digest_algorithms": ["MD5"],
            "voicemail": True,
        }
    )
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")


def start_sipp(
    switch: RunningElement, tmp_path: Path, scenario: str, host: str, *extra: str
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """SIPp `scenario` once from a free port of `host`, in the background; stopped by its
    PID at the end if it still runs."""
    command = sipp.command(
        switch, tmp_path, scenario, host, free_port(host), *extra,
        limit=SIPP_LIMIT, traces=("err",), scenario_timeout="40s",
    )  # fmt: skip
    return sipp.background(command, tmp_path, scenario)


def tone_payload(index: int) -> bytes:
    """Packet `index` of a 1 kHz sine at about -12 dBFS, PCMU (160 samples)."""
    samples = [
        int(8000 * math.sin(2 * math.pi * 1000 * (index * 160 + n) / 8000)) for n in range(160)
    ]
    return Codec.PCMU.encode(struct.pack("<160h", *samples))


class Caller(sipp.RtpSocket):
    """The caller's RTP socket: hears the greeting, then speaks the message."""

    poll = 0.1

    def __init__(self) -> None:
        super().__init__(TRUNK_SOURCE)
        self.greeting_packets = 0
        self.switch_rtp: tuple[str, int] | None = None
        self.sent = 0
        self._last = 0.0

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        if sipp.is_rtp(data):
            self.greeting_packets += 1
            self.switch_rtp = source
            self._last = time.monotonic()

    def idle(self) -> bool:
        """The greeting is over once its packets stop: speak, then stop reading."""
        if self.greeting_packets >= 50 and time.monotonic() - self._last > 0.4:
            self._speak()
            return True
        return False

    def _speak(self) -> None:
        assert self.switch_rtp is not None
        ssrc, sequence, timestamp = 0x1234ABCD, 1000, 50_000
        start = time.monotonic()
        for index in range(TONE_PACKETS):
            header = struct.pack(
                "!BBHII", 0x80, (0x80 if index == 0 else 0) | 0, sequence + index,
                timestamp + 160 * index, ssrc,
            )  # fmt: skip
            self.socket.sendto(header + tone_payload(index), self.switch_rtp)
            self.sent += 1
            delay = start + (index + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)


class Listener(sipp.RtpSocket):
    """The owner's RTP socket: hears the message, then presses `3` (delete)."""

    poll = 0.1

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.loud_packets = 0
        self.pressed = False

    def received(self, data: bytes, source: tuple[str, int]) -> None:
        if not sipp.is_rtp(data) or data[1] & 0x7F != 0:
            return
        samples = Codec.PCMU.decode(data[12:])
        if max(abs(value) for value in struct.unpack(f"<{len(samples) // 2}h", samples)) > 4000:
            self.loud_packets += 1
        if self.loud_packets >= 25 and not self.pressed:
            self.pressed = True
            for index, end in enumerate((False, False, True, True, True)):
                # RFC 4733 §2.5: one event, one timestamp; E set on the last three.
                payload = bytes([3, 0x80 if end else 0]) + struct.pack("!H", 160 * (index + 1))
                header = struct.pack("!BBHII", 0x80, 101, 7000 + index, 90_000, 0x5EED)
                self.socket.sendto(header + payload, source)
                time.sleep(0.02)


def api_token(base: str) -> str:
    form = urllib.parse.urlencode({"username": ADMIN[0], "password": ADMIN[1]}).encode()
    with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=10) as reply:
        token = json.load(reply)["access_token"]
        assert isinstance(token, str)
        return token


def api_get(base: str, token: str, path: str) -> tuple[str, bytes]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read()


def test_a_message_left_over_rtp_is_stored_notified_and_served(tmp_path: Path) -> None:
    config = tmp_path / "voicemail.yaml"
    write_config(config)
    data = tmp_path / "data"
    api_port = free_port("127.0.0.1")
    options = (
        "--config", str(config), "--data-dir", str(data), "--api", f"127.0.0.1:{api_port}",
    )  # fmt: skip
    with running("127.0.0.1", tmp_path / "softswitch.log", options) as switch:
        phone_host = random_loopback_host()
        with start_sipp(
            switch, tmp_path, "voicemail_subscribe.xml", phone_host,
            "-s", MAILBOX, "-au", MAILBOX, "-ap", PASSWORD,
        ) as subscriber:  # fmt: skip
            time.sleep(1.0)  # subscribed (the first NOTIFY) before the message is left
            with (
                sipp.receiving(Caller()) as media,
                start_sipp(
                    switch, tmp_path, "voicemail_uac.xml", TRUNK_SOURCE,
                    "-s", MAILBOX, "-key", "caller", "0312345678",
                    "-key", "rtp_port", str(media.port),
                ) as caller,
            ):  # fmt: skip
                caller_status = caller.wait(SIPP_LIMIT + 5)
            info = sipp.diagnostics(tmp_path, switch)
            assert media.greeting_packets >= 50, info
            assert media.sent == TONE_PACKETS, info
            assert caller_status == 0, info

            files = sorted((data / "voicemail" / "demo" / MAILBOX).glob("*.wav"))
            assert len(files) == 1, info
            audio = read_wav(files[0])
            assert abs(audio.duration - TONE_PACKETS * 0.02) <= 0.02, (audio.duration, info)
            # The tone, decoded: loud all along (no gap of lost packets at this rate).
            middle = struct.unpack("<160h", audio.pcm[16000:16320])
            assert max(abs(sample) for sample in middle) > 4000

            base = f"http://127.0.0.1:{api_port}"
            token = api_token(base)
            path = f"/api/v1/tenants/demo/extensions/{MAILBOX}/voicemail/messages"
            _, listing = api_get(base, token, path)
            (message,) = json.loads(listing)
            assert message["caller"].startswith("sip:0312345678@"), message
            assert abs(message["duration_seconds"] - 3.0) <= 0.02, message
            content_type, wav = api_get(base, token, message["audio_url"])
            assert content_type == "audio/wav"
            assert wav == files[0].read_bytes()
            # The subscriber saw "yes" (1/0), then "no" (0/1) once the download made the
            # message old (the API's notification reached the switch's MWI).
            subscriber_status = subscriber.wait(SIPP_LIMIT + 5)
        assert subscriber_status == 0, sipp.diagnostics(tmp_path, switch)

        # The owner dials the feature code, hears the message and deletes it (key 3).
        owner_host = random_loopback_host()
        with (
            sipp.receiving(Listener(owner_host)) as listener,
            start_sipp(
                switch, tmp_path, "voicemail_uac_mailbox.xml", owner_host,
                "-s", "*98", "-key", "caller", MAILBOX, "-au", MAILBOX, "-ap", PASSWORD,
                "-key", "rtp_port", str(listener.port),
            ) as owner,
        ):  # fmt: skip
            owner_status = owner.wait(SIPP_LIMIT + 5)
        info = sipp.diagnostics(tmp_path, switch)
        assert owner_status == 0, info
        assert listener.pressed and listener.loud_packets >= 25, info
        _, listing = api_get(base, token, path)
        assert json.loads(listing) == [], info
        assert not files[0].exists()


def options_allow(switch: RunningElement) -> list[str]:
    """The methods in the Allow of the switch's answer to an OPTIONS (RFC 3261 §11)."""
    host = random_loopback_host()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        probe.settimeout(5.0)
        port = probe.getsockname()[1]
        probe.sendto(
            (
                f"OPTIONS sip:{switch.host}:{switch.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-allow-probe\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{host}>;tag=probe\r\n"
                f"To: <sip:{switch.host}>\r\n"
                "Call-ID: allow-probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            switch.address,
        )
        answer = probe.recv(65535).decode()
    assert answer.startswith("SIP/2.0 200 "), answer
    (allow,) = [line for line in answer.split("\r\n") if line.lower().startswith("allow:")]
    return [method.strip() for method in allow.split(":", 1)[1].split(",")]


def voicemail_records(switch: RunningElement, number: str) -> list[dict[str, str]]:
    """The `call ended` records of voicemail calls to `number`'s mailbox."""
    target = f"voicemail:{number}"
    return [fields for fields in sipp.call_records(switch) if fields.get("target") == target]


BUSY_MAILBOX = "1997"
RINGING_MAILBOX = "1998"


def test_busy_and_unanswered_calls_are_diverted_to_voicemail(tmp_path: Path) -> None:
    """The other two diversions through real sockets: 1997's phone (a SIPp UAS behind a
    static contact) answers 486, 1998's rings past its 5 s no-answer timeout (the switch
    CANCELs it). Each time the caller (SIPp on the trunk, offering PCMA only) gets 200
    from the switch itself, hears the greeting over RTP (PCMA) and hangs up one second
    in; the call is logged as a voicemail call, answered."""
    phones = {number: random_loopback_host() for number in (BUSY_MAILBOX, RINGING_MAILBOX)}
    ports = {number: free_port(host) for number, host in phones.items()}
    document = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    tenant = document["tenants"][0]
    for number, timeout in ((BUSY_MAILBOX, 30), (RINGING_MAILBOX, 5)):
        tenant["extensions"].append(
            {
                "number": number,
                "site": tenant["sites"][0]["name"],
                "static_contact_uri": f"sip:{number}@{phones[number]}:{ports[number]}",
                "no_answer_timeout_seconds": timeout,
                "voicemail": True,
            }
        )
    config = tmp_path / "voicemail.yaml"
    config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    options = ("--config", str(config), "--data-dir", str(tmp_path / "data"))
    phone_scenarios = {BUSY_MAILBOX: "call_uas_busy.xml", RINGING_MAILBOX: "call_uas_ringing.xml"}
    with running("127.0.0.1", tmp_path / "softswitch.log", options) as switch:
        # With voicemail the switch takes SUBSCRIBE (MWI): its OPTIONS answer says so.
        assert "SUBSCRIBE" in options_allow(switch)
        for number, scenario in phone_scenarios.items():
            phone_command = sipp.command(
                switch, tmp_path, scenario, phones[number], ports[number],
                limit=SIPP_LIMIT, name=f"phone-{number}", traces=("err",),
            )  # fmt: skip
            with (
                sipp.background(phone_command, tmp_path, f"phone-{number}", settle=0.3) as phone,
                sipp.receiving(sipp.RtpSink(TRUNK_SOURCE)) as rtp,
            ):
                caller = sipp.run(
                    sipp.command(
                        switch, tmp_path, "tollfree_uac_announcement_hangup.xml",
                        TRUNK_SOURCE, free_port(TRUNK_SOURCE),
                        "-s", number, "-key", "caller", "0312345678",
                        "-key", "rtp_port", str(rtp.port),
                        limit=SIPP_LIMIT, name=f"caller-{number}", traces=("err",),
                    ),
                    tmp_path,
                    SIPP_LIMIT + 5,
                )  # fmt: skip
                phone_status = sipp.exit_status(phone, 10)
                time.sleep(0.3)  # any packet still coming would arrive by now
            info = sipp.diagnostics(tmp_path, switch, caller)
            assert caller.returncode == 0, info  # 200 with a PCMA answer, then BYE/200
            assert phone_status == 0, info  # 486 and its ACK / 180, CANCEL, 487, ACK
            assert len(rtp.payload_types) >= 30, (len(rtp.payload_types), info)
            assert set(rtp.payload_types) == {8}, info
            record = sipp.wait_for(
                functools.partial(voicemail_records, switch, number),
                functools.partial(str, info),
            )
            assert (record[0]["result"], record[0]["status"]) == ("answered", "200"), record
