"""RTP packets and the packetizer (RFC 3550 §5.1), pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.announcement import DEFAULT_DIRECTORY, load_announcement
from softswitch.media.g711 import Codec
from softswitch.media.rtp import RtpError, RtpPacket, RtpPacketizer, is_rtcp

# V=2 P=0 X=0 CC=0 | M=1 PT=0 | seq 0x1234 | ts 0x00010203 | SSRC 0xdeadbeef | payload
GOLDEN = bytes.fromhex("8080123400010203deadbeef") + b"\xff" * 4


def test_serialize_golden_header() -> None:
    packet = RtpPacket(
        payload_type=0, sequence_number=0x1234, timestamp=0x00010203, ssrc=0xDEADBEEF,
        marker=True, payload=b"\xff" * 4,
    )
    assert packet.serialize() == GOLDEN


def test_parse_golden_header() -> None:
    packet = RtpPacket.parse(GOLDEN)
    assert packet.payload_type == 0
    assert packet.marker is True
    assert packet.sequence_number == 0x1234
    assert packet.timestamp == 0x00010203
    assert packet.ssrc == 0xDEADBEEF
    assert packet.payload == b"\xff" * 4
    assert packet.serialize() == GOLDEN


def test_round_trip_with_csrcs_extension_and_padding() -> None:
    packet = RtpPacket(
        payload_type=8, sequence_number=1, timestamp=2, ssrc=3, payload=b"abc",
        csrcs=(10, 11), extension=(0xBEDE, b"\x10\x01\x00\x00"),
    )
    assert RtpPacket.parse(packet.serialize()) == packet
    padded = packet.serialize() + b"\x00\x00\x03"
    padded = bytes([padded[0] | 0x20]) + padded[1:]
    parsed = RtpPacket.parse(padded)
    assert parsed.payload == b"abc"
    assert parsed.padding == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00", "RTP packet length is less than 12 bytes"),
        (bytes.fromhex("4000000000000000000000000000"), "RTP packet has invalid version 1"),
        (bytes.fromhex("8200000000000000000000000000"), "RTP packet has truncated CSRC"),
        (bytes.fromhex("900000000000000000000000"), "truncated extension profile"),
        (bytes.fromhex("900000000000000000000000beDE0001"), "truncated extension value"),
        (bytes.fromhex("a00000000000000000000000ff"), "padding length is invalid"),
        (bytes.fromhex("a00000000000000000000000aa00"), "padding length is invalid"),
        (bytes.fromhex("80c800000000000000000000"), "is RTCP"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


@given(st.binary(max_size=200))
def test_parse_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert 0 <= packet.payload_type <= 127


def test_is_rtcp() -> None:
    sender_report = bytes.fromhex("80c80006") + bytes(24)
    receiver_report = bytes.fromhex("81c90007") + bytes(28)
    assert is_rtcp(sender_report) and is_rtcp(receiver_report)
    assert not is_rtcp(GOLDEN)
    assert not is_rtcp(bytes.fromhex("8008") + bytes(10))  # PCMA, no marker


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=65536, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=2**32, ssrc=0),
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=0, csrcs=(0,) * 16),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet: RtpPacket) -> None:
    with pytest.raises(RtpError):
        packet.serialize()


def test_packetizer_cuts_20_ms_packets_and_pads_the_last() -> None:
    packetizer = RtpPacketizer(8, silence=Codec.PCMA.silence, ssrc=7, sequence_number=100,
                               timestamp=1000)
    packets = [RtpPacket.parse(data) for data in packetizer.packetize(b"\x01" * 330)]
    assert len(packets) == 3
    assert [p.sequence_number for p in packets] == [100, 101, 102]
    assert [p.timestamp for p in packets] == [1000, 1160, 1320]
    assert [p.marker for p in packets] == [True, False, False]
    assert {p.ssrc for p in packets} == {7}
    assert {p.payload_type for p in packets} == {8}
    assert [len(p.payload) for p in packets] == [160, 160, 160]
    assert packets[2].payload == b"\x01" * 10 + b"\xd5" * 150
    # the stream goes on after the talkspurt; the next one is marked again
    assert (packetizer.sequence_number, packetizer.timestamp) == (103, 1480)
    following = list(packetizer.talkspurt(b"\x02" * 160))
    assert following[0].marker and following[0].sequence_number == 103


def test_sequence_and_timestamp_wrap() -> None:
    packetizer = RtpPacketizer(0, ssrc=1, sequence_number=65534, timestamp=2**32 - 160)
    packets = list(packetizer.talkspurt(b"\xff" * 480))
    assert [p.sequence_number for p in packets] == [65534, 65535, 0]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160]


def test_initial_values_are_random() -> None:
    # RFC 3550 §5.1: random initial sequence number and timestamp, random SSRC (§8)
    requests: list[int] = []

    def fake_random(bits: int) -> int:
        requests.append(bits)
        return (1 << bits) - 3

    packetizer = RtpPacketizer(0, random_bits=fake_random)
    assert sorted(requests) == [16, 32, 32]
    assert packetizer.sequence_number == 65533
    streams = {(RtpPacketizer(0).ssrc, RtpPacketizer(0).sequence_number) for _ in range(20)}
    assert len(streams) > 1


@pytest.mark.parametrize("codec", list(Codec))
def test_whole_announcement_is_continuous(codec: Codec) -> None:
    announcement = load_announcement(DEFAULT_DIRECTORY / "after_hours_en.wav")
    payload = announcement.payload(codec)
    packetizer = RtpPacketizer(codec.payload_type, silence=codec.silence)
    first_sequence, first_timestamp, ssrc = (
        packetizer.sequence_number, packetizer.timestamp, packetizer.ssrc
    )
    packets = [RtpPacket.parse(data) for data in packetizer.packetize(payload)]
    assert len(packets) == math.ceil(announcement.audio.sample_count / 160)
    for index, packet in enumerate(packets):
        assert packet.sequence_number == (first_sequence + index) % 2**16
        assert packet.timestamp == (first_timestamp + 160 * index) % 2**32
        assert packet.marker is (index == 0)
        assert packet.ssrc == ssrc
        assert packet.payload_type == codec.payload_type
        assert len(packet.payload) == 160
    assert b"".join(p.payload for p in packets)[: len(payload)] == payload
