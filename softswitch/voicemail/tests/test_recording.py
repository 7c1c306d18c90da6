"""The recorder, DTMF parsing and the message-summary body: pure, time as an argument."""

from __future__ import annotations

import math
import struct

import pytest

from softswitch.media.g711 import Codec
from softswitch.media.rtp import RtpPacket
from softswitch.media.wav import read_wav, wav_bytes, write_wav
from softswitch.voicemail import (
    DtmfReceiver,
    Mailbox,
    Recorder,
    RecordingConfig,
    RecordingEnd,
    message_summary,
    parse_telephone_event,
)

CONFIG = RecordingConfig(max_length=10.0, silence_timeout=2.0, voice_level=500, silence_tail=0.5)


def tone(index: int, amplitude: int = 8000) -> bytes:
    samples = [
        int(amplitude * math.sin(2 * math.pi * 1000 * (index * 160 + n) / 8000))
        for n in range(160)
    ]
    return struct.pack("<160h", *samples)


def packet(index: int, codec: Codec = Codec.PCMU, *, loud: bool = True, ssrc: int = 7,
           payload_type: int | None = None, base: int = 4_294_967_000) -> bytes:  # fmt: skip
    """Packet `index` of a stream whose timestamps wrap around 2^32 early on."""
    pcm = tone(index) if loud else bytes(320)
    return RtpPacket(
        payload_type=codec.payload_type if payload_type is None else payload_type,
        sequence_number=(100 + index) % 65536,
        timestamp=(base + 160 * index) % 2**32,
        ssrc=ssrc,
        payload=codec.encode(pcm),
    ).serialize()


def feed(recorder: Recorder, indexes: range, start: float = 0.0, **options: object) -> float:
    """Deliver packets at their 20 ms times from `start`; the last time."""
    now = start
    for index in indexes:
        now = start + 0.02 * (index - indexes.start)
        recorder.receive_datagram(packet(index, **options), now)  # type: ignore[arg-type]
    return now


def test_a_hang_up_keeps_everything_received_in_timestamp_order() -> None:
    recorder = Recorder(Codec.PCMU, 0, start=0.0, config=CONFIG)
    feed(recorder, range(100))
    recorder.stop(2.0)
    assert recorder.ended is RecordingEnd.HANG_UP and recorder.has_voice
    assert recorder.duration == pytest.approx(2.0)
    assert recorder.pcm()[:320] == Codec.PCMU.decode(Codec.PCMU.encode(tone(0)))
    assert recorder.get_timer() is None


def test_a_lost_packet_leaves_silence_and_a_late_one_fills_its_place() -> None:
    recorder = Recorder(Codec.PCMA, 8, start=0.0, config=CONFIG)
    for index in (0, 1, 3, 4):
        recorder.receive_datagram(packet(index, Codec.PCMA), 0.02 * index)
    assert recorder.pcm()[2 * 320 : 3 * 320] == bytes(320)  # packet 2 lost: silence
    recorder.receive_datagram(packet(2, Codec.PCMA), 0.1)  # late
    assert recorder.pcm()[2 * 320 : 3 * 320] == Codec.PCMA.decode(Codec.PCMA.encode(tone(2)))
    recorder.receive_datagram(packet(2, Codec.PCMA), 0.12)  # duplicate: no growth
    assert recorder.duration == pytest.approx(0.1)


def test_silence_ends_the_message_and_its_tail_is_cut() -> None:
    recorder = Recorder(Codec.PCMU, 0, start=0.0, config=CONFIG)
    last = feed(recorder, range(50))  # 1 s of voice
    feed(recorder, range(50, 100), start=last + 0.02, loud=False)  # then 1 s of silence
    assert recorder.get_timer() == pytest.approx(last + 2.0)
    recorder.handle_timer(last + 1.9)
    assert recorder.ended is None
    recorder.handle_timer(last + 2.0)
    assert recorder.ended is RecordingEnd.SILENCE
    assert recorder.duration == pytest.approx(1.5)  # 1 s of voice and a 0.5 s tail


def test_a_caller_who_never_speaks_is_not_a_message() -> None:
    recorder = Recorder(Codec.PCMU, 0, start=5.0, config=CONFIG)
    feed(recorder, range(20), start=5.0, loud=False)
    recorder.handle_timer(7.0)
    assert recorder.ended is RecordingEnd.SILENCE and not recorder.has_voice


def test_the_maximum_length_ends_by_audio_or_by_time() -> None:
    recorder = Recorder(Codec.PCMU, 0, start=0.0, config=CONFIG)
    feed(recorder, range(600))  # 12 s offered
    assert recorder.ended is RecordingEnd.MAX_LENGTH
    assert recorder.duration == pytest.approx(10.0)
    by_time = Recorder(Codec.PCMU, 0, start=0.0, config=RecordingConfig(max_length=3.0))
    feed(by_time, range(10))
    by_time.handle_timer(3.0)
    assert by_time.ended is RecordingEnd.MAX_LENGTH


def test_only_the_negotiated_stream_is_recorded() -> None:
    recorder = Recorder(Codec.PCMU, 0, start=0.0, config=CONFIG)
    recorder.receive_datagram(packet(0), 0.0)
    recorder.receive_datagram(packet(1, ssrc=99), 0.02)  # another source
    recorder.receive_datagram(packet(1, payload_type=101), 0.02)  # telephone-event
    recorder.receive_datagram(b"\x80\xc8\x00\x06" + bytes(24), 0.02)  # RTCP SR
    recorder.receive_datagram(b"junk", 0.02)
    recorder.receive_datagram(packet(-5), 0.02)  # before the first packet
    assert recorder.counters == {
        "packets": 1, "other_ssrc": 1, "other_payload_type": 1, "rtcp": 1, "malformed": 1,
        "too_old": 1,
    }  # fmt: skip
    assert recorder.duration == pytest.approx(0.02)


def test_wav_written_is_read_back_unchanged(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    pcm = b"".join(tone(index) for index in range(25))
    path = tmp_path / "a" / "b" / "message.wav"
    write_wav(path, pcm)
    audio = read_wav(path)
    assert (audio.pcm, audio.duration) == (pcm, 0.5)
    assert not list(path.parent.glob(".*.part"))
    assert wav_bytes(b"")[:4] == b"RIFF"
    with pytest.raises(ValueError, match="even number"):
        wav_bytes(b"\x00")


def test_telephone_events_are_parsed_and_reported_once_per_key_press() -> None:
    event = parse_telephone_event(bytes([11, 0x80 | 10, 0x03, 0x20]))
    assert (event.event, event.end, event.volume, event.duration, event.key) == (
        11, True, 10, 800, "#"
    )  # fmt: skip
    with pytest.raises(ValueError, match="needs 4"):
        parse_telephone_event(b"\x01\x02")
    receiver = DtmfReceiver(101)

    def press(key_code: int, timestamp: int, end: bool = False) -> str | None:
        payload = bytes([key_code, 0x80 if end else 0, 0, 160])
        return receiver.receive(RtpPacket(101, 1, timestamp, 5, payload=payload))

    assert press(1, 1000) == "1"
    assert press(1, 1000) is None and press(1, 1000, end=True) is None  # same event
    assert press(1, 2000) == "1"  # pressed again
    assert press(10, 3000) == "*" and press(20, 4000) is None  # 20: not DTMF
    assert receiver.receive(RtpPacket(0, 1, 5000, 5, payload=b"\xff" * 160)) is None


def test_the_message_summary_body() -> None:
    mailbox = Mailbox("demo", "1001", "127.0.0.1")
    assert message_summary(mailbox, 2, 1) == (
        b"Messages-Waiting: yes\r\nMessage-Account: sip:1001@127.0.0.1\r\nVoice-Message: 2/1\r\n"
    )
    assert message_summary(mailbox, 0, 3).startswith(b"Messages-Waiting: no\r\n")


# --- the mailbox menu and the SDP answer with telephone-event --------------------------


def drain(menu: object) -> list[object]:
    from softswitch.voicemail.menu import MailboxMenu

    assert isinstance(menu, MailboxMenu)
    actions: list[object] = []
    while (action := menu.next_action()) is not None:
        actions.append(action)
    return actions


def test_the_menu_plays_replays_deletes_and_moves_on() -> None:
    from softswitch.voicemail.menu import (
        DeleteMessage,
        Finish,
        MailboxMenu,
        MarkHeard,
        PlayMessage,
    )

    menu = MailboxMenu(["a", "b", "c"], key_timeout=5.0)
    menu.start(0.0)
    assert drain(menu) == [PlayMessage("a"), MarkHeard("a")]
    menu.press("1", 1.0)  # replay: heard already
    assert drain(menu) == [PlayMessage("a")]
    menu.press("3", 2.0)  # delete, then the next one
    assert drain(menu) == [DeleteMessage("a"), PlayMessage("b"), MarkHeard("b")]
    menu.playback_finished(3.0)
    assert menu.get_timer() == 8.0
    menu.handle_timer(8.0)  # no key: the next one
    assert drain(menu) == [PlayMessage("c"), MarkHeard("c")]
    menu.press("#", 9.0)
    assert drain(menu) == [Finish()] and menu.finished
    menu.press("1", 10.0)
    assert drain(menu) == []
    empty = MailboxMenu([])
    empty.start(0.0)
    assert drain(empty) == [Finish()]
    hang_up = MailboxMenu(["a"])
    hang_up.start(0.0)
    hang_up.press("*", 1.0)
    assert drain(hang_up)[-1] == Finish()


def test_the_answer_keeps_the_offered_telephone_event() -> None:
    from softswitch.media import LocalMedia, answer_offer
    from softswitch.voicemail.events_sdp import with_telephone_event

    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"
    )
    answer = answer_offer(offer, LocalMedia("192.0.2.10", 5000, answer_sendrecv=True))
    body, payload_type = with_telephone_event(offer, answer)
    assert payload_type == 96
    assert b"m=audio 5000 RTP/AVP 0 96\r\n" in body
    assert b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n" in body
    plain = offer.replace(b" 96\r\n", b"\r\n").replace(b"a=rtpmap:96 telephone-event/8000\r\n", b"")
    answer = answer_offer(plain, LocalMedia("192.0.2.10", 5000))
    assert with_telephone_event(plain, answer) == (answer.sdp, None)
