"""G.711 µ-law (PCMU) and A-law (PCMA) from 16-bit linear PCM, by lookup tables.

Rules:
- ITU-T G.711 as the classic reference code (Sun Microsystems' g711.c, the algorithm
  CPython's `audioop` uses) computes it: µ-law works on the 14 most significant bits with
  a bias of 33 and 8 segments; A-law on the 13 most significant bits, segments 0 and 1
  sharing one step, even bits inverted (XOR 0x55). Both are bit-exact with `audioop`
  (a test compares all 65,536 inputs where `audioop` still exists).
- The tables are built once, at import: 65,536 entries per law for encoding (indexed by
  the sample as an unsigned 16-bit number) and 256 per law for decoding. Encoding a
  10-second announcement is then one `bytes(map(...))` pass.
- Input is little-endian signed 16-bit PCM, as a RIFF WAV stores it (RFC 2361); an odd
  byte count is an error, never a silently dropped byte.
- `Codec` ties each law to its RTP static payload type (RFC 3551 §6, table 4: PCMU 0,
  PCMA 8, both 8000 Hz, one channel) and its silence byte (the code for a zero sample).
- Standard library only; no I/O.
"""

from __future__ import annotations

import enum
import sys
from array import array

__all__ = [
    "Codec",
    "ULAW_SILENCE",
    "ALAW_SILENCE",
    "linear_to_ulaw",
    "linear_to_alaw",
    "ulaw_to_linear",
    "alaw_to_linear",
    "encode_ulaw",
    "encode_alaw",
    "decode_ulaw",
    "decode_alaw",
]

ULAW_SILENCE = 0xFF
"""µ-law code of a zero sample (all bits inverted: sign +, segment 0, step 0)."""
ALAW_SILENCE = 0xD5
"""A-law code of a zero sample (0x80 sign bit XOR the 0x55 even-bit inversion)."""

_ULAW_BIAS = 0x84  # 132 = 33 << 2: the µ-law bias, applied to the 14-bit magnitude as 33
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _compute_ulaw(sample: int) -> int:
    # G.711 µ-law: 14-bit magnitude plus bias, segment number and 4-bit step; all bits
    # inverted on the wire.
    value = sample >> 2
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value += _ULAW_BIAS >> 2
    segment = _segment(value, _ULAW_SEGMENT_ENDS)
    if segment >= 8:  # beyond the top segment: clip to the largest magnitude
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _compute_alaw(sample: int) -> int:
    # G.711 A-law: 13-bit magnitude (one's complement for negatives), segment number and
    # 4-bit step; even bits inverted (0x55) on the wire, sign bit 1 for positive.
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = _segment(value, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    step = (value >> 1) if segment < 2 else (value >> segment)
    return ((segment << 4) | (step & 0x0F)) ^ mask


def _compute_ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _compute_alaw_decode(code: int) -> int:
    code ^= 0x55
    step = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        step += 8
    elif segment == 1:
        step += 0x108
    else:
        step = (step + 0x108) << (segment - 1)
    return step if code & 0x80 else -step


# Encoding tables indexed by the sample as unsigned 16 bits (two's complement).
_ULAW_ENCODE = bytes(_compute_ulaw(index - 0x10000 if index & 0x8000 else index)
                     for index in range(0x10000))
_ALAW_ENCODE = bytes(_compute_alaw(index - 0x10000 if index & 0x8000 else index)
                     for index in range(0x10000))
_ULAW_DECODE = tuple(_compute_ulaw_decode(code) for code in range(256))
_ALAW_DECODE = tuple(_compute_alaw_decode(code) for code in range(256))


def linear_to_ulaw(sample: int) -> int:
    """µ-law code of one signed 16-bit sample (-32768..32767)."""
    return _ULAW_ENCODE[sample & 0xFFFF]


def linear_to_alaw(sample: int) -> int:
    """A-law code of one signed 16-bit sample (-32768..32767)."""
    return _ALAW_ENCODE[sample & 0xFFFF]


def ulaw_to_linear(code: int) -> int:
    """The signed 16-bit sample a µ-law code stands for."""
    return _ULAW_DECODE[code & 0xFF]


def alaw_to_linear(code: int) -> int:
    """The signed 16-bit sample an A-law code stands for."""
    return _ALAW_DECODE[code & 0xFF]


def _unsigned_samples(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM needs an even number of octets, got {len(pcm)}")
    samples = array("H")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()  # the input is little-endian (WAV)
    return samples


def encode_ulaw(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM -> µ-law, one octet per sample.

    Raises:
        ValueError: `pcm` has an odd number of octets.
    """
    return bytes(map(_ULAW_ENCODE.__getitem__, _unsigned_samples(pcm)))


def encode_alaw(pcm: bytes) -> bytes:
    """Little-endian signed 16-bit PCM -> A-law, one octet per sample.

    Raises:
        ValueError: `pcm` has an odd number of octets.
    """
    return bytes(map(_ALAW_ENCODE.__getitem__, _unsigned_samples(pcm)))


def _decode(codes: bytes, table: tuple[int, ...]) -> bytes:
    samples = array("h", map(table.__getitem__, codes))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def decode_ulaw(codes: bytes) -> bytes:
    """µ-law -> little-endian signed 16-bit PCM."""
    return _decode(codes, _ULAW_DECODE)


def decode_alaw(codes: bytes) -> bytes:
    """A-law -> little-endian signed 16-bit PCM."""
    return _decode(codes, _ALAW_DECODE)


class Codec(enum.Enum):
    """The two G.711 laws, valued by their RTP static payload type (RFC 3551 §6)."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        """RTP static payload type (RFC 3551 table 4)."""
        return int(self.value)

    @property
    def encoding_name(self) -> str:
        """The name in `a=rtpmap` (RFC 4566 §6; registered in RFC 3551 §6/RFC 4856)."""
        return self.name

    @property
    def clock_rate(self) -> int:
        """RTP timestamp clock rate in Hz (RFC 3551 §4.5.14)."""
        return 8000

    @property
    def silence(self) -> int:
        """The code of a zero sample, used to pad the last packet to full length."""
        return ULAW_SILENCE if self is Codec.PCMU else ALAW_SILENCE

    def encode(self, pcm: bytes) -> bytes:
        """Little-endian signed 16-bit PCM -> this law."""
        return encode_ulaw(pcm) if self is Codec.PCMU else encode_alaw(pcm)

    def decode(self, codes: bytes) -> bytes:
        """This law -> little-endian signed 16-bit PCM."""
        return decode_ulaw(codes) if self is Codec.PCMU else decode_alaw(codes)

    @classmethod
    def from_payload_type(cls, payload_type: int) -> Codec | None:
        """The codec of a static payload type, or None."""
        for codec in cls:
            if codec.value == payload_type:
                return codec
        return None
