"""SDP parsing and RFC 3264 offer/answer for the announcement side."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.media.g711 import Codec
from softswitch.media.sdp import (
    Direction,
    LocalMedia,
    SdpError,
    SdpNotAcceptable,
    SdpParseError,
    accept_answer,
    answer_offer,
    build_offer,
    parse_sdp,
)

LOCAL = LocalMedia(address="127.0.0.1", port=20000, session_id=42)


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


# What baresip 3.x (g711 module, rtcp-mux off) puts in its INVITE.
BARESIP_OFFER = crlf("""
v=0
o=- 1409934862 3212452373 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10008 RTP/AVP 0 8 101
b=AS:64
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:2856321513 cname:4a2d1bd0-3c2f-4b8c-a8c6-bf1a4f4e2d2c
a=rtcp-rsize
a=ptime:20
""")

# pjsua 2.14 (default codec list: speex, iLBC, GSM, G.711, G.722), IP behind NAT.
PJSUA_OFFER = crlf("""
v=0
o=- 3911539573 3911539573 IN IP4 192.168.1.23
s=pjmedia
b=AS:117
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 120 121 122
c=IN IP4 192.168.1.23
b=TIAS:96000
a=rtcp:4001 IN IP4 192.168.1.23
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:98 speex/32000
a=rtpmap:99 iLBC/8000
a=fmtp:99 mode=30
a=rtpmap:3 GSM/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:120 telephone-event/16000
a=fmtp:120 0-16
a=rtpmap:121 telephone-event/8000
a=fmtp:121 0-16
a=rtpmap:122 telephone-event/32000
a=fmtp:122 0-16
a=ssrc:1739282591 cname:4e1e4e4e0f0a6ee8
""")

# SIPp's built-in uac scenario ([media_ip_type], [media_port] filled in).
SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")


def simple_offer(media_lines: str, session_extra: str = "", connection: str = "IN IP4 10.0.0.5",
                 ) -> bytes:
    return crlf(f"""
v=0
o=alice 1 1 IN IP4 10.0.0.5
s=call
c={connection}
t=0 0
{session_extra}{media_lines}
""".replace("\n\n", "\n"))


# -- real offers --------------------------------------------------------------------------
def test_baresip_offer() -> None:
    answer = answer_offer(BARESIP_OFFER, LOCAL)
    assert answer.media.codec is Codec.PCMU
    assert answer.media.payload_type == 0
    assert answer.media.remote == ("127.0.0.1", 10008)
    assert answer.media.send is True
    assert answer.media.direction is Direction.SENDONLY
    assert answer.sdp == crlf("""
v=0
o=- 42 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 20000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
a=sendonly
""")


def test_pjsua_offer_picks_the_first_g711_in_the_offerers_order() -> None:
    answer = answer_offer(PJSUA_OFFER, LOCAL)
    assert (answer.media.codec, answer.media.payload_type) == (Codec.PCMU, 0)
    assert answer.media.remote == ("192.168.1.23", 4000)  # media-level c=
    parsed = parse_sdp(answer.sdp)
    assert parsed.media[0].formats == ("0",)
    assert parsed.media[0].direction is Direction.SENDONLY


def test_sipp_offer() -> None:
    answer = answer_offer(SIPP_OFFER, LOCAL)
    assert answer.media.codec is Codec.PCMU
    assert answer.media.remote == ("127.0.0.1", 6000)


def test_parse_keeps_the_fields() -> None:
    description = parse_sdp(PJSUA_OFFER)
    assert description.origin.session_id == "3911539573"
    assert description.session_name == "pjmedia"
    assert description.connection is None
    (audio,) = description.media
    assert audio.port == 4000 and audio.proto == "RTP/AVP"
    assert audio.rtpmaps[97].encoding_name == "speex"
    assert audio.rtpmaps[0].codec() is Codec.PCMU
    assert audio.connection is not None and audio.connection.address == "192.168.1.23"
    assert description.other_lines == ("b=AS:117",)
    # a parsed description serialises back to what it came from (same lines, CRLF)
    assert parse_sdp(description.to_bytes()) == description


def test_bare_lf_line_ends_are_accepted() -> None:
    # RFC 4566 §5: parsers SHOULD accept a bare newline
    answer = answer_offer(SIPP_OFFER.replace(b"\r\n", b"\n"), LOCAL)
    assert answer.media.remote == ("127.0.0.1", 6000)


# -- codec choice (RFC 3264 §6.1) ---------------------------------------------------------
def test_offerers_order_wins_over_ours() -> None:
    answer = answer_offer(simple_offer("m=audio 5000 RTP/AVP 18 8 0\n"), LOCAL)
    assert answer.media.codec is Codec.PCMA
    assert b"m=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n" in answer.sdp


def test_dynamic_payload_type_mapped_to_g711_keeps_the_offers_number() -> None:
    offer = simple_offer("m=audio 5000 RTP/AVP 96 97\na=rtpmap:96 opus/48000/2\n"
                         "a=rtpmap:97 pcma/8000\n")
    answer = answer_offer(offer, LOCAL)
    assert (answer.media.codec, answer.media.payload_type) == (Codec.PCMA, 97)
    assert b"m=audio 20000 RTP/AVP 97\r\na=rtpmap:97 PCMA/8000\r\n" in answer.sdp


def test_rtpmap_overrides_the_static_meaning() -> None:
    offer = simple_offer("m=audio 5000 RTP/AVP 0 8\na=rtpmap:0 PCMU/16000\n")
    assert answer_offer(offer, LOCAL).media.codec is Codec.PCMA


def test_local_codec_restriction() -> None:
    only_pcma = LocalMedia(address="127.0.0.1", port=20000, codecs=(Codec.PCMA,))
    assert answer_offer(BARESIP_OFFER, only_pcma).media.codec is Codec.PCMA
    with pytest.raises(SdpNotAcceptable):
        answer_offer(SIPP_OFFER, only_pcma)


def test_no_common_codec_is_488() -> None:
    offer = simple_offer("m=audio 5000 RTP/AVP 9 18\na=rtpmap:9 G722/8000\n")
    with pytest.raises(SdpNotAcceptable) as raised:
        answer_offer(offer, LOCAL)
    assert raised.value.status_code == 488
    assert "no common codec" in raised.value.reason


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 5000 RTP/SAVP 0\n",  # SRTP only
        "m=audio 0 RTP/AVP 0\n",  # the offerer itself disabled the stream
        "m=video 5002 RTP/AVP 31\n",  # no audio
        "m=audio 5000 udptl t38\n",  # fax
    ],
)
def test_nothing_acceptable_is_488(media: str) -> None:
    with pytest.raises(SdpNotAcceptable) as raised:
        answer_offer(simple_offer(media), LOCAL)
    assert raised.value.status_code == 488


# -- m-line handling (RFC 3264 §6) --------------------------------------------------------
def test_other_streams_are_rejected_in_place_with_port_0() -> None:
    offer = simple_offer(
        "m=audio 5000 RTP/SAVP 0\n"
        "m=video 5002 RTP/AVP 96 97\na=rtpmap:96 H264/90000\n"
        "m=audio 5004 RTP/AVP 8\n"
        "m=audio 5006 RTP/AVP 0\n"
    )
    answer = answer_offer(offer, LOCAL)
    assert answer.media.media_index == 2
    assert answer.media.remote == ("10.0.0.5", 5004)
    lines = [line for line in answer.sdp.decode().split("\r\n") if line.startswith("m=")]
    assert lines == [
        "m=audio 0 RTP/SAVP 0",
        "m=video 0 RTP/AVP 96 97",
        "m=audio 20000 RTP/AVP 8",
        "m=audio 0 RTP/AVP 0",  # one stream is enough to play an announcement
    ]


def test_answer_copies_the_offers_time() -> None:
    offer = SIPP_OFFER.replace(b"t=0 0", b"t=3034423619 3042462419")
    assert b"\r\nt=3034423619 3042462419\r\n" in answer_offer(offer, LOCAL).sdp


def test_ipv6() -> None:
    offer = simple_offer("m=audio 5000 RTP/AVP 0\n", connection="IN IP6 2001:DB8::1")
    local = LocalMedia(address="::1", port=20002)
    answer = answer_offer(offer, local)
    assert answer.media.remote == ("2001:db8::1", 5000)
    assert b"c=IN IP6 ::1\r\n" in answer.sdp
    assert answer.sdp.split(b"\r\n")[1].endswith(b" 1 IN IP6 ::1")


# -- directions (RFC 3264 §6.1) -----------------------------------------------------------
@pytest.mark.parametrize(
    ("offered", "answered", "send"),
    [
        ("a=sendrecv\n", Direction.SENDONLY, True),
        ("", Direction.SENDONLY, True),  # sendrecv is the default (§5.1)
        ("a=recvonly\n", Direction.SENDONLY, True),
        ("a=sendonly\n", Direction.INACTIVE, False),
        ("a=inactive\n", Direction.INACTIVE, False),
    ],
)
def test_direction_is_mirrored(offered: str, answered: Direction, send: bool) -> None:
    answer = answer_offer(simple_offer("m=audio 5000 RTP/AVP 0\n" + offered), LOCAL)
    assert answer.media.direction is answered
    assert answer.media.send is send
    assert f"a={answered.value}\r\n".encode() in answer.sdp


def test_session_level_direction_applies_and_media_level_overrides() -> None:
    session_sendonly = simple_offer("m=audio 5000 RTP/AVP 0\n", session_extra="a=sendonly\n")
    assert answer_offer(session_sendonly, LOCAL).media.direction is Direction.INACTIVE
    overridden = simple_offer("m=audio 5000 RTP/AVP 0\na=recvonly\n",
                              session_extra="a=sendonly\n")
    assert answer_offer(overridden, LOCAL).media.direction is Direction.SENDONLY


def test_answer_sendrecv_option_for_symmetric_rtp() -> None:
    local = LocalMedia(address="127.0.0.1", port=20000, answer_sendrecv=True)
    answer = answer_offer(SIPP_OFFER, local)
    assert answer.media.direction is Direction.SENDRECV and answer.media.send
    # only a sendrecv offer gets a sendrecv answer
    recvonly = simple_offer("m=audio 5000 RTP/AVP 0\na=recvonly\n")
    assert answer_offer(recvonly, local).media.direction is Direction.SENDONLY


def test_legacy_hold_address_means_do_not_send() -> None:
    offer = simple_offer("m=audio 5000 RTP/AVP 0\n", connection="IN IP4 0.0.0.0")
    answer = answer_offer(offer, LOCAL)
    assert answer.media.send is False
    assert answer.media.direction is Direction.INACTIVE


# -- malformed offers ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"hello world", 400),
        (b"\xff\xfe\x00v=0", 400),  # not UTF-8
        (crlf("o=- 1 1 IN IP4 1.2.3.4\nv=0"), 400),  # v= not first
        (crlf("v=1\no=- 1 1 IN IP4 1.2.3.4\ns=-"), 400),
        (crlf("v=0\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 5000 RTP/AVP 0"), 400),  # no o=
        (SIPP_OFFER.replace(b"m=audio 6000", b"m=audio 70000"), 400),
        (SIPP_OFFER.replace(b"m=audio 6000 RTP/AVP 0", b"m=audio 6000 RTP/AVP"), 400),
        (SIPP_OFFER.replace(b"m=audio 6000", b"m=audio six"), 400),
        (SIPP_OFFER + b"x=unknown\r\n", 400),  # RFC 4566 §5: unknown type letter
        (SIPP_OFFER + b"a=rtpmap:0 PCMU\r\n", 400),
        (SIPP_OFFER + b"a=ptime:fast\r\n", 400),
        (SIPP_OFFER + b"s=again\r\n", 400),  # session-only field inside m=
        (SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4"), 400),
        (SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=ATM NSAP 47.0091"), 400),
        (SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1\r\n", b""), 400),  # no c= at all
        (SIPP_OFFER.replace(b"o=user1 53655765 2353687637 IN IP4", b"o=user1 5"), 400),
        (SIPP_OFFER.replace(b"t=0 0", b"t=now"), 400),
        (SIPP_OFFER.replace(b"127.0.0.1", b"media.example.com"), 488),  # a name, not IP
        (SIPP_OFFER.replace(b"IN IP4 127.0.0.1", b"IN IP6 127.0.0.1"), 488),
        (SIPP_OFFER.replace(b"127.0.0.1", b"224.2.1.1/127"), 488),  # multicast
        (crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0"), 488),  # no m= line
        (b"v=0\r\n" + b"a=x\r\n" * 20000, 400),  # over the size limit
    ],
)
def test_malformed_or_unusable_offers_raise_typed_errors(body: bytes, status: int) -> None:
    with pytest.raises(SdpError) as raised:
        answer_offer(body, LOCAL)
    assert raised.value.status_code == status
    assert isinstance(raised.value, SdpParseError if status == 400 else SdpNotAcceptable)


@given(st.binary(max_size=300))
def test_any_bytes_raise_only_sdp_error(body: bytes) -> None:
    try:
        answer_offer(body, LOCAL)
    except SdpError:
        pass


@given(st.lists(st.sampled_from(PJSUA_OFFER.split(b"\r\n") + BARESIP_OFFER.split(b"\r\n")
                                + [b"m=", b"c=IN IP6 ::", b"a=rtpmap:", b"v=0", b"t=1",
                                   b"m=audio 1/x RTP/AVP 0", b"a=ptime:0", b"\xc3"]),
                max_size=30))
def test_shuffled_real_lines_raise_only_sdp_error(lines: list[bytes]) -> None:
    try:
        answer_offer(b"\r\n".join(lines), LOCAL)
    except SdpError:
        pass


# -- late offer: we offer in the 200, the ACK answers -------------------------------------
def test_build_offer() -> None:
    offer = build_offer(LOCAL)
    assert offer == crlf("""
v=0
o=- 42 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 20000 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=ptime:20
a=sendonly
""")
    assert parse_sdp(offer).media[0].direction is Direction.SENDONLY


def ack_answer(media: str, connection: str = "IN IP4 127.0.0.1") -> bytes:
    return crlf(f"v=0\no=- 7 7 IN IP4 127.0.0.1\ns=-\nc={connection}\nt=0 0\n{media}")


def test_accept_answer_uses_the_answered_codec() -> None:
    media = accept_answer(ack_answer("m=audio 7000 RTP/AVP 8\na=recvonly"), LOCAL)
    assert (media.codec, media.payload_type) == (Codec.PCMA, 8)
    assert media.remote == ("127.0.0.1", 7000)
    assert media.send is True and media.direction is Direction.SENDONLY


def test_accept_answer_tolerates_sendrecv_and_respects_inactive() -> None:
    assert accept_answer(ack_answer("m=audio 7000 RTP/AVP 0"), LOCAL).send is True
    inactive = accept_answer(ack_answer("m=audio 7000 RTP/AVP 0\na=inactive"), LOCAL)
    assert inactive.send is False and inactive.direction is Direction.INACTIVE


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 0 RTP/AVP 0",  # rejected our stream
        "m=audio 7000 RTP/AVP 9",  # not one of ours
        "m=video 7000 RTP/AVP 0",
        "m=audio 7000 RTP/AVP 0\nm=audio 7002 RTP/AVP 0",  # more m-lines than offered
    ],
)
def test_unusable_answers(media: str) -> None:
    with pytest.raises(SdpNotAcceptable):
        accept_answer(ack_answer(media), LOCAL)


def test_malformed_answer() -> None:
    with pytest.raises(SdpParseError):
        accept_answer(b"v=0\r\nnonsense\r\n", LOCAL)


def test_session_version_and_id_are_ours() -> None:
    local = LocalMedia(address="127.0.0.1", port=20000, session_id=9, session_version=3)
    assert b"o=- 9 3 IN IP4 127.0.0.1\r\n" in answer_offer(SIPP_OFFER, local).sdp
    assert LocalMedia("127.0.0.1", 1).session_id != LocalMedia("127.0.0.1", 1).session_id
