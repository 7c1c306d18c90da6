"""The asyncio player over real UDP on 127.0.0.1 (bounded waits, generous timing bounds)."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from softswitch.media.announcement import Announcement
from softswitch.media.g711 import Codec
from softswitch.media.player import (
    AnnouncementPlayer,
    PlaybackOutcome,
    RtpPortAllocator,
    RtpPortsExhausted,
)
from softswitch.media.rtp import RtpPacket
from softswitch.media.sdp import Direction, LocalMedia, NegotiatedMedia, answer_offer
from softswitch.media.wav import PcmAudio

HOST = "127.0.0.1"
T = TypeVar("T")


def tone(seconds: float) -> Announcement:
    samples = round(seconds * 8000)
    pcm = b"".join(((i * 37) % 2000 - 1000).to_bytes(2, "little", signed=True)
                   for i in range(samples))
    return Announcement.from_audio("tone", PcmAudio(pcm=pcm, source="test"))


class Receiver(asyncio.DatagramProtocol):
    """The caller's phone: records every datagram with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append((asyncio.get_running_loop().time(), data, (addr[0], addr[1])))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(data) for _, data, _ in self.received]


async def receiver() -> Receiver:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Receiver, local_addr=(HOST, 0)
    )
    return protocol


def media_to(port: int, *, send: bool = True, codec: Codec = Codec.PCMU) -> NegotiatedMedia:
    return NegotiatedMedia(codec=codec, payload_type=codec.payload_type, remote=(HOST, port),
                           send=send, direction=Direction.SENDONLY)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout=20)

    return asyncio.run(bounded())


def assert_continuous(packets: list[RtpPacket], payload_type: int) -> None:
    first = packets[0]
    for index, packet in enumerate(packets):
        assert packet.sequence_number == (first.sequence_number + index) % 2**16
        assert packet.timestamp == (first.timestamp + 160 * index) % 2**32
        assert packet.marker is (index == 0)
        assert packet.ssrc == first.ssrc
        assert packet.payload_type == payload_type


@pytest.mark.parametrize("codec", list(Codec))
def test_plays_the_whole_announcement_at_20_ms(codec: Codec) -> None:
    announcement = tone(1.01)  # 8,080 samples: 50.5 packets -> 51

    async def scenario() -> tuple[Receiver, Any]:
        phone = await receiver()
        player = await AnnouncementPlayer.open(HOST, tail=0.0)
        player.play(media_to(phone.port, codec=codec), announcement)
        result = await asyncio.wait_for(player.wait(), timeout=10)
        await asyncio.sleep(0.05)  # the last datagram crosses the loopback
        assert phone.transport is not None
        phone.transport.close()
        with pytest.raises(RuntimeError):
            _ = player.local_address  # the socket is closed at the end
        return phone, result

    phone, result = run(scenario)
    expected = math.ceil(announcement.duration / 0.020)
    assert expected == 51
    assert result.outcome is PlaybackOutcome.COMPLETED
    assert result.packets_sent == expected
    packets = phone.packets()
    assert abs(len(packets) - expected) <= 1
    assert_continuous(packets, codec.payload_type)
    assert b"".join(p.payload for p in packets)[: len(announcement.payload(codec))] == (
        announcement.payload(codec)
    )
    times = [arrival for arrival, _, _ in phone.received]
    span = times[-1] - times[0]
    # 50 intervals of 20 ms = 1.0 s; generous bounds for a loaded CI machine
    assert 0.8 <= span <= 2.0
    mean_gap = span / (len(times) - 1)
    assert 0.016 <= mean_gap <= 0.040


def test_stop_midway_ends_cleanly() -> None:
    async def scenario() -> tuple[Receiver, Any, int]:
        phone = await receiver()
        player = await AnnouncementPlayer.open(HOST)
        player.play(media_to(phone.port), tone(3.0))
        await asyncio.sleep(0.3)
        assert player.playing
        player.stop()  # the caller sent BYE
        player.stop()  # idempotent
        result = await asyncio.wait_for(player.wait(), timeout=2)
        count = len(phone.received)
        await asyncio.sleep(0.2)
        assert len(phone.received) == count  # nothing after stop
        assert not player.playing
        assert phone.transport is not None
        phone.transport.close()
        return phone, result, count

    phone, result, count = run(scenario)
    assert result.outcome is PlaybackOutcome.STOPPED
    assert 5 <= result.packets_sent <= 40
    assert count == result.packets_sent
    assert_continuous(phone.packets(), 0)


def test_stop_before_play_and_play_after_stop() -> None:
    async def scenario() -> Any:
        player = await AnnouncementPlayer.open(HOST)
        player.stop()  # CANCEL before the ACK
        player.play(media_to(9), tone(0.1))  # ignored
        return await asyncio.wait_for(player.wait(), timeout=1)

    result = run(scenario)
    assert result.outcome is PlaybackOutcome.STOPPED
    assert result.packets_sent == 0


def test_play_twice_is_a_bug() -> None:
    async def scenario() -> None:
        player = await AnnouncementPlayer.open(HOST)
        player.play(media_to(9), tone(0.1))
        with pytest.raises(RuntimeError):
            player.play(media_to(9), tone(0.1))
        player.stop()

    run(scenario)


def test_cancelling_a_waiter_does_not_stop_playback() -> None:
    async def scenario() -> Any:
        player = await AnnouncementPlayer.open(HOST, tail=0.0)
        player.play(media_to(9), tone(0.2))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(player.wait(), timeout=0.05)
        return await asyncio.wait_for(player.wait(), timeout=2)

    assert run(scenario).outcome is PlaybackOutcome.COMPLETED


def test_not_sending_takes_the_time_and_sends_nothing() -> None:
    async def scenario() -> tuple[Receiver, Any, float]:
        phone = await receiver()
        player = await AnnouncementPlayer.open(HOST, tail=0.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        player.play(media_to(phone.port, send=False), tone(0.3))
        result = await asyncio.wait_for(player.wait(), timeout=3)
        return phone, result, loop.time() - started

    phone, result, elapsed = run(scenario)
    assert result.outcome is PlaybackOutcome.COMPLETED
    assert phone.received == [] and result.packets_sent == 0
    assert 0.25 <= elapsed <= 2.0


def test_latches_onto_the_callers_real_source() -> None:
    """The caller's SDP names one port, its RTP comes from another (NAT): we follow it."""

    async def scenario() -> tuple[Receiver, Receiver, Any]:
        advertised = await receiver()  # what the SDP said
        real = await receiver()  # where the caller's packets really come from
        player = await AnnouncementPlayer.open(HOST, tail=0.0)
        player.play(media_to(advertised.port), tone(1.0))
        await asyncio.sleep(0.1)
        caller_rtp = RtpPacket(payload_type=0, sequence_number=1, timestamp=0, ssrc=5,
                               payload=b"\xff" * 160).serialize()
        assert real.transport is not None
        real.transport.sendto(caller_rtp, player.local_address)
        result = await asyncio.wait_for(player.wait(), timeout=5)
        await asyncio.sleep(0.05)
        for phone in (advertised, real):
            assert phone.transport is not None
            phone.transport.close()
        return advertised, real, result

    advertised, real, result = run(scenario)
    assert result.latched_remote == (HOST, real.port)
    assert result.packets_received == 1
    assert 2 <= len(advertised.received) <= 15
    assert len(advertised.received) + len(real.received) == 50
    # one stream, continuous across the switch of destination
    assert_continuous(advertised.packets() + real.packets(), 0)


def test_answer_and_play_end_to_end() -> None:
    """The B2BUA's sequence: open, answer the offer with our port, play, wait."""

    async def scenario() -> tuple[Receiver, bytes, Any]:
        phone = await receiver()
        offer = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                 f"m=audio {phone.port} RTP/AVP 8 0\r\na=sendrecv\r\n").encode()
        player = await AnnouncementPlayer.open(HOST, tail=0.0)
        answer = answer_offer(offer, LocalMedia(HOST, player.local_address[1]))
        player.play(answer.media, tone(0.2))
        result = await asyncio.wait_for(player.wait(), timeout=3)
        await asyncio.sleep(0.05)
        return phone, answer.sdp, result

    phone, sdp, result = run(scenario)
    assert result.outcome is PlaybackOutcome.COMPLETED
    assert b"a=rtpmap:8 PCMA/8000" in sdp
    assert [p.payload_type for p in phone.packets()] == [8] * 10


def free_even_port_pair() -> int:
    """An even port p with p and p + 2 free right now (best effort)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        port += port % 2
        if port + 2 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind((HOST, port))
                b.bind((HOST, port + 2))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def test_port_range_skips_ports_in_use_and_uses_even_ports() -> None:
    first = free_even_port_pair()
    allocator = RtpPortAllocator(first, first + 3, start=0)
    assert allocator.size == 2 and allocator.candidates() == [first, first + 2]

    async def scenario() -> tuple[int, str]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind((HOST, first))  # someone else holds the first port
            player = await AnnouncementPlayer.open(HOST, allocator)
            port = player.local_address[1]
            with pytest.raises(RtpPortsExhausted) as raised:
                await AnnouncementPlayer.open(HOST, allocator)
            player.stop()
            return port, str(raised.value)

    port, message = run(scenario)
    assert port == first + 2
    assert f"{first}-{first + 3}" in message


def test_allocator_round_robin() -> None:
    allocator = RtpPortAllocator(10001, 10010, start=0)  # odd first: rounded up to even
    assert allocator.candidates() == [10002, 10004, 10006, 10008, 10010]
    allocator.taken(10004)
    assert allocator.candidates()[0] == 10006
    allocator.taken(10010)
    assert allocator.candidates()[0] == 10002
    with pytest.raises(ValueError):
        RtpPortAllocator(20000, 10000)
