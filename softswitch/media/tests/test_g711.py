"""G.711 encoders and decoders: known values, the whole input range, and `audioop`."""

from __future__ import annotations

import struct
import warnings

import pytest

from softswitch.media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    Codec,
    alaw_to_linear,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    linear_to_alaw,
    linear_to_ulaw,
    ulaw_to_linear,
)

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),  # zero: the silence codes
        (-1, 0x7E, 0x55),  # -1 >> 2 is still -1 in 14 bits: not zero
        (32767, 0x80, 0xAA),  # full scale positive, clipped to the top code
        (-32768, 0x00, 0x2A),  # full scale negative
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_known_codes(sample: int, ulaw: int, alaw: int) -> None:
    assert linear_to_ulaw(sample) == ulaw
    assert linear_to_alaw(sample) == alaw
    assert encode_ulaw(struct.pack("<h", sample)) == bytes([ulaw])
    assert encode_alaw(struct.pack("<h", sample)) == bytes([alaw])


def test_silence_constants() -> None:
    assert ULAW_SILENCE == linear_to_ulaw(0) == 0xFF
    assert ALAW_SILENCE == linear_to_alaw(0) == 0xD5
    assert Codec.PCMU.silence == 0xFF
    assert Codec.PCMA.silence == 0xD5


@pytest.mark.parametrize(
    ("code", "sample"), [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988)]
)
def test_known_ulaw_decoded_values(code: int, sample: int) -> None:
    assert ulaw_to_linear(code) == sample


@pytest.mark.parametrize(
    ("code", "sample"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xFA, 1008)]
)
def test_known_alaw_decoded_values(code: int, sample: int) -> None:
    assert alaw_to_linear(code) == sample


def test_round_trip_error_is_within_one_quantisation_step() -> None:
    # G.711 keeps 4 mantissa bits: the error is below 1/8 of the magnitude (truncation), or
    # a few units near zero, where the smallest steps are.
    for encode, decode, floor in ((encode_ulaw, decode_ulaw, 8), (encode_alaw, decode_alaw, 16)):
        decoded = struct.unpack("<65536h", decode(encode(ALL_SAMPLES)))
        for sample, value in zip(range(-32768, 32768), decoded, strict=True):
            if abs(sample) < 32000:
                assert abs(sample - value) <= max(floor, abs(sample) // 8), (sample, value)


def test_encoding_is_monotonic() -> None:
    for decode, encode in ((decode_ulaw, encode_ulaw), (decode_alaw, encode_alaw)):
        decoded = struct.unpack("<65536h", decode(encode(ALL_SAMPLES)))
        assert all(a <= b for a, b in zip(decoded, decoded[1:], strict=False))


def test_decoding_all_codes_reencodes_to_the_same_code() -> None:
    codes = bytes(range(256))
    # µ-law has two zeros (0x7F and 0xFF): -0 encodes as +0
    assert encode_ulaw(decode_ulaw(codes)) == codes.replace(b"\x7f", b"\xff")
    assert encode_alaw(decode_alaw(codes)) == codes


def test_bit_exact_with_audioop_where_it_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    assert encode_ulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert encode_alaw(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    codes = bytes(range(256))
    assert decode_ulaw(codes) == audioop.ulaw2lin(codes, 2)
    assert decode_alaw(codes) == audioop.alaw2lin(codes, 2)


def test_odd_length_is_an_error() -> None:
    with pytest.raises(ValueError, match="even number of octets"):
        encode_ulaw(b"\x00\x00\x00")


def test_codec_properties() -> None:
    assert (Codec.PCMU.payload_type, Codec.PCMA.payload_type) == (0, 8)
    assert (Codec.PCMU.encoding_name, Codec.PCMA.encoding_name) == ("PCMU", "PCMA")
    assert Codec.PCMU.clock_rate == Codec.PCMA.clock_rate == 8000
    assert Codec.from_payload_type(8) is Codec.PCMA
    assert Codec.from_payload_type(3) is None
    pcm = struct.pack("<4h", 0, 100, -100, 20000)
    assert Codec.PCMU.encode(pcm) == encode_ulaw(pcm)
    assert Codec.PCMA.decode(Codec.PCMA.encode(pcm)) == decode_alaw(encode_alaw(pcm))
