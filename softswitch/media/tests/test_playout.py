"""The announcement stream's pacing and latching, with explicit time (no sockets)."""

from __future__ import annotations

from softswitch.media.g711 import Codec
from softswitch.media.playout import Playout, PlayoutState
from softswitch.media.rtp import RtpPacket, RtpPacketizer
from softswitch.media.sdp import Direction, NegotiatedMedia

MEDIA = NegotiatedMedia(
    codec=Codec.PCMU, payload_type=0, remote=("127.0.0.1", 4000), send=True,
    direction=Direction.SENDONLY,
)
PAYLOAD = b"\x7f" * 1600  # 200 ms: 10 packets
CALLER_RTP = RtpPacket(payload_type=0, sequence_number=5, timestamp=0, ssrc=99,
                       payload=b"\xff" * 160).serialize()


def new_playout(media: NegotiatedMedia = MEDIA, *, tail: float = 0.0) -> Playout:
    packetizer = RtpPacketizer(0, ssrc=1, sequence_number=0, timestamp=0)
    return Playout(media, PAYLOAD, start=100.0, tail=tail, packetizer=packetizer)


def test_packets_are_due_on_absolute_deadlines() -> None:
    playout = new_playout()
    assert playout.packet_count == 10
    assert playout.get_timer() == 100.0
    sent = playout.datagrams_to_send(100.0)
    assert [remote for _, remote in sent] == [("127.0.0.1", 4000)]
    assert playout.get_timer() == 100.02
    assert playout.datagrams_to_send(100.019) == []
    # a timer that fires 65 ms late gets the four packets that became due, at once
    late = playout.datagrams_to_send(100.085)
    assert [RtpPacket.parse(data).sequence_number for data, _ in late] == [1, 2, 3, 4]
    # the next deadline is still on the original grid: no drift
    assert playout.get_timer() == 100.0 + 5 * 0.02


def test_finishes_after_the_last_packet_and_the_tail() -> None:
    playout = new_playout(tail=0.3)
    now = 100.0
    sequence: list[int] = []
    while (deadline := playout.get_timer()) is not None:
        now = deadline
        sequence += [RtpPacket.parse(data).sequence_number
                     for data, _ in playout.datagrams_to_send(now)]
    assert sequence == list(range(10))
    assert abs(now - (100.0 + 10 * 0.02 + 0.3)) < 1e-9
    assert playout.state is PlayoutState.FINISHED
    assert playout.packets_sent == 10
    assert playout.datagrams_to_send(200.0) == []


def test_not_sending_still_takes_the_announcement_time() -> None:
    held = NegotiatedMedia(codec=Codec.PCMU, payload_type=0, remote=("127.0.0.1", 4000),
                           send=False, direction=Direction.INACTIVE)
    playout = new_playout(held)
    assert playout.datagrams_to_send(100.1) == []
    assert playout.get_timer() == 100.2  # no packet deadlines: only the end
    assert playout.datagrams_to_send(100.2) == []
    assert playout.state is PlayoutState.FINISHED
    assert playout.packets_sent == 0


def test_latches_once_onto_the_first_rtp_source() -> None:
    playout = new_playout()
    playout.receive_datagram(b"garbage", ("203.0.113.9", 1))
    playout.receive_datagram(bytes.fromhex("80c80006") + bytes(24), ("203.0.113.9", 2))
    assert not playout.latched and playout.remote == ("127.0.0.1", 4000)
    playout.receive_datagram(CALLER_RTP, ("127.0.0.1", 5555))
    assert playout.latched and playout.remote == ("127.0.0.1", 5555)
    # RTP bleed: a later packet from elsewhere does not redirect the stream
    playout.receive_datagram(CALLER_RTP, ("127.0.0.1", 6666))
    assert playout.remote == ("127.0.0.1", 5555)
    assert (playout.packets_received, playout.rtcp_received, playout.invalid_received) == (2, 1, 1)
    sent = playout.datagrams_to_send(100.0)
    assert [remote for _, remote in sent] == [("127.0.0.1", 5555)]


def test_stop_ends_the_stream() -> None:
    playout = new_playout()
    playout.datagrams_to_send(100.0)
    playout.stop()
    assert playout.state is PlayoutState.FINISHED
    assert playout.get_timer() is None
    assert playout.datagrams_to_send(101.0) == []
