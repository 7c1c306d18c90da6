"""The voicemail media adapter over real loopback UDP sockets (STYLE.md pyramid (d)):
greeting out, message in and saved; the mailbox menu driven by RFC 4733 key presses.

The call service is replaced by a recorder of what the adapter reports (the adapter only
calls the five methods below); the store is in memory.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections import deque

from cloudpbx.voicemail import MailboxCounts, MessageInfo
from softswitch.b2bua.voicemail_call import (
    OpenRecorder,
    PlayGreeting,
    StartMailbox,
    StartRecording,
    StopRecorder,
    VoicemailEffect,
)
from softswitch.b2bua.voicemail_media import VoicemailMedia
from softswitch.media import Announcement, Codec, Direction, NegotiatedMedia
from softswitch.media.rtp import RtpPacket
from softswitch.media.wav import PcmAudio
from softswitch.sip.flows import Address
from softswitch.voicemail import Mailbox, RecordingConfig

MAILBOX = Mailbox("t", "1001", "pbx.example.com")


def tone(packets: int, amplitude: int) -> bytes:
    return struct.pack(
        f"<{160 * packets}h",
        *(int(amplitude * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(160 * packets)),
    )


class Calls:
    """What the adapter reports, and the effects it is given."""

    def __init__(self) -> None:
        self.effects: deque[VoicemailEffect] = deque()
        self.opened: dict[str, Address | None] = {}
        self.greetings: list[str] = []
        self.finished: list[str] = []
        self.changed = asyncio.Event()

    def enable_voicemail(self) -> None:
        pass

    def next_voicemail_effect(self) -> VoicemailEffect | None:
        return self.effects.popleft() if self.effects else None

    def voicemail_media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        self.opened[call_id] = address
        self.changed.set()

    def greeting_finished(self, call_id: str, now: float) -> None:
        self.greetings.append(call_id)
        self.changed.set()

    def recording_finished(self, call_id: str, now: float) -> None:
        self.finished.append(call_id)
        self.changed.set()


class Store:
    def __init__(self, messages: dict[str, bytes]) -> None:
        self.audio_of = dict(messages)
        self.saved: list[tuple[MessageInfo, bytes]] = []
        self.heard: list[str] = []
        self.deleted: list[str] = []

    def save(self, message: MessageInfo, pcm: bytes) -> MailboxCounts:
        self.saved.append((message, pcm))
        return MailboxCounts(len(self.saved), 0)

    def messages(self, mailbox: Mailbox) -> list[MessageInfo]:
        return [
            MessageInfo(key, mailbox.tenant_name, mailbox.number, "c", "id", 0.0, 1.0, False, "f")
            for key in self.audio_of
        ]

    def audio(self, message: MessageInfo) -> bytes:
        return self.audio_of[message.message_id]

    def mark_heard(self, mailbox: Mailbox, message_id: str) -> MailboxCounts:
        self.heard.append(message_id)
        return MailboxCounts(0, 1)

    def delete(self, mailbox: Mailbox, message_id: str) -> MailboxCounts:
        self.deleted.append(message_id)
        return MailboxCounts(0, 0)


async def wait_for(condition: object, seconds: float = 5.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Phone:
    """The caller's RTP socket, non-blocking, read from the loop."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.address: Address = ("127.0.0.1", int(self.socket.getsockname()[1]))
        self.received: list[RtpPacket] = []

    def read(self) -> list[RtpPacket]:
        while True:
            try:
                data = self.socket.recv(2048)
            except BlockingIOError:
                return self.received
            self.received.append(RtpPacket.parse(data))

    def media(self) -> NegotiatedMedia:
        return NegotiatedMedia(Codec.PCMU, 0, self.address, True, Direction.SENDRECV)


def test_greeting_then_the_message_is_recorded_until_the_silence_and_saved() -> None:
    async def scenario() -> None:
        calls, store, phone = Calls(), Store({}), Phone()
        saved: list[tuple[Mailbox, MailboxCounts]] = []
        greeting = Announcement.from_audio("voicemail_greeting_ja", PcmAudio(tone(5, 4000)))
        media = VoicemailMedia(
            asyncio.get_running_loop(), calls, {greeting.name: greeting}, "127.0.0.1", None,
            store, lambda: None, on_saved=lambda m, c: saved.append((m, c)),
            config=RecordingConfig(silence_timeout=0.3),
        )  # fmt: skip
        calls.effects.append(OpenRecorder("c"))
        media.pump()
        await wait_for(lambda: "c" in calls.opened)
        switch = calls.opened["c"]
        assert switch is not None
        calls.effects.append(PlayGreeting("c", phone.media(), greeting.name))
        media.pump()
        await wait_for(lambda: calls.greetings == ["c"])
        assert len(phone.read()) == 5  # the greeting's 5 packets
        calls.effects.append(StartRecording("c", MAILBOX, "sip:caller@x"))
        media.pump()
        message = tone(10, 8000)
        for index in range(10):
            chunk = message[320 * index : 320 * index + 320]
            packet = RtpPacket(0, index, 160 * index, 42, payload=Codec.PCMU.encode(chunk))
            phone.socket.sendto(packet.serialize(), switch)
        await wait_for(lambda: calls.finished == ["c"])  # silence ended it
        assert media.counters["recordings_ended.silence"] == 1
        calls.effects.append(StopRecorder("c"))
        media.pump()
        await media.wait_saved()
        ((info, pcm),) = store.saved
        assert (info.tenant_name, info.extension_number) == ("t", "1001")
        assert info.caller == "sip:caller@x"
        assert len(pcm) == len(message) and info.duration_seconds == 0.2
        assert info.file_name == f"t/1001/{info.message_id}.wav"
        assert saved == [(MAILBOX, MailboxCounts(1, 0))]
        assert len(media) == 0

    asyncio.run(scenario())


def test_the_mailbox_menu_follows_the_keys() -> None:
    async def scenario() -> None:
        first, second = tone(10, 8000), tone(15, 2000)
        calls, store, phone = Calls(), Store({"m1": first, "m2": second}), Phone()
        changes: list[MailboxCounts] = []
        media = VoicemailMedia(
            asyncio.get_running_loop(), calls, {}, "127.0.0.1", None, store, lambda: None,
            on_saved=lambda mailbox, counts: changes.append(counts), key_timeout=0.3,
        )  # fmt: skip
        calls.effects.append(OpenRecorder("c"))
        media.pump()
        await wait_for(lambda: "c" in calls.opened)
        switch = calls.opened["c"]
        assert switch is not None
        calls.effects.append(StartMailbox("c", MAILBOX, phone.media(), 101))
        media.pump()
        # Message 1 plays to its end (10 packets), then the key timeout moves to message 2.
        await wait_for(lambda: len(phone.read()) >= 12)
        first_payload = phone.received[0].payload
        assert first_payload == Codec.PCMU.encode(first[:320])
        played = len(phone.received)

        def press(code: int, timestamp: int) -> None:
            for end in (False, True, True):  # RFC 4733 §2.5.1.4: end packets resent
                payload = bytes([code, 0x80 if end else 0, 0, 160])
                phone.socket.sendto(RtpPacket(101, 1, timestamp, 9, payload=payload).serialize(),
                                    switch)  # fmt: skip

        press(3, 1000)  # delete message 2 while it plays: no message left, the end
        await wait_for(lambda: calls.finished == ["c"])
        assert store.deleted == ["m2"]
        assert store.heard == ["m1", "m2"]
        assert Codec.PCMU.encode(second[:320]) in {p.payload for p in phone.read()[played - 2 :]}
        assert media.counters["dtmf_keys"] == 1  # one key press, however many packets
        await media.wait_saved()
        assert changes[-1] == MailboxCounts(0, 0)
        calls.effects.append(StopRecorder("c"))
        media.pump()
        assert len(media) == 0

    asyncio.run(scenario())


def test_the_count_cache_reports_what_a_reload_changed() -> None:
    from softswitch.b2bua.voicemail_media import MailboxCountCache

    cache = MailboxCountCache({("t", "1001"): MailboxCounts(1, 0)})
    assert cache(MAILBOX) == (1, 0)
    assert cache(Mailbox("t", "1002", "x")) == (0, 0)
    reloaded = {("t", "1001"): MailboxCounts(0, 1), ("t", "1003"): MailboxCounts(2, 0)}
    changed = cache.replace(reloaded)
    assert sorted(changed) == [("t", "1001"), ("t", "1003")]
    assert cache.replace({("t", "1003"): MailboxCounts(2, 0)}) == [("t", "1001")]
    cache.update(MAILBOX, MailboxCounts(5, 5))
    assert cache(MAILBOX) == (5, 5)
