"""Read an announcement WAV file: 8 kHz, mono, 16-bit linear PCM, nothing else.

Rules:
- The standard library's `wave` reads the RIFF container; this module only checks that
  the audio is what G.711 telephony needs (8000 samples/s, one channel, 16-bit, RFC 3551
  §4.5.14) and never resamples or mixes: a wrong file is the operator's mistake, reported
  by a `WavFormatError` that names the file and what is wrong with it, at load time (the
  switch loads its announcements at start, not in the middle of a call).
- Every failure to read (missing file, not RIFF, a compressed format `wave` does not know,
  a truncated data chunk, no samples at all) is a `WavFormatError`.
- `write_wav` writes the same format (voicemail messages), whole or not at all.
- This is the only module of `softswitch.media` that touches the file system.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLE_RATE", "PcmAudio", "WavFormatError", "read_wav", "wav_bytes", "write_wav"]

SAMPLE_RATE = 8000
"""G.711's sampling rate (ITU-T G.711; RFC 3551 §4.5.14)."""


class WavFormatError(ValueError):
    """A WAV file that cannot be played as an announcement; the message names the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Linear audio ready to encode.

    Attributes:
        pcm: little-endian signed 16-bit samples, mono.
        sample_rate: always `SAMPLE_RATE` once read by `read_wav`.
        source: where it came from (file path), for messages and logs.
    """

    pcm: bytes
    sample_rate: int = SAMPLE_RATE
    source: str = ""

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.sample_count / self.sample_rate


def read_wav(path: Path | str) -> PcmAudio:
    """Read `path`, check it is 8 kHz mono 16-bit PCM, and return its samples.

    Raises:
        WavFormatError: the file is missing, unreadable, or in another format.
    """
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            frames = reader.getnframes()
            pcm = reader.readframes(frames)
    except FileNotFoundError:
        raise WavFormatError(path, "no such file") from None
    except (wave.Error, EOFError, OSError) as error:
        # wave.Error: not RIFF/WAVE, or a format it does not read (e.g. 7 = µ-law).
        raise WavFormatError(path, f"not a readable PCM WAV file ({error})") from None
    problems = []
    if rate != SAMPLE_RATE:
        problems.append(f"{rate} Hz (need {SAMPLE_RATE} Hz)")
    if channels != 1:
        problems.append(f"{channels} channels (need mono)")
    if width != 2:
        problems.append(f"{8 * width}-bit samples (need 16-bit PCM)")
    if problems:
        raise WavFormatError(
            path,
            "; ".join(problems)
            + ": convert with `sox IN -r 8000 -c 1 -b 16 -e signed-integer OUT.wav`",
        )
    if len(pcm) != frames * 2:
        raise WavFormatError(path, f"data chunk truncated ({len(pcm)} of {frames * 2} octets)")
    if not pcm:
        raise WavFormatError(path, "no samples")
    return PcmAudio(pcm=pcm, sample_rate=rate, source=str(path))


def wav_bytes(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A whole WAV file (RIFF, PCM format 1, mono, 16-bit) holding `pcm`.

    Built in memory so a writer can put it on disk with one write (voicemail messages:
    `write_wav`); `read_wav` reads it back unchanged.

    Raises:
        ValueError: `pcm` has an odd number of octets.
    """
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM needs an even number of octets, got {len(pcm)}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def write_wav(path: Path | str, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    """Write `pcm` (little-endian 16-bit mono) as a WAV file at `path`, creating its
    directory; the file appears whole (written to a temporary name, then renamed).

    Raises:
        OSError: the file cannot be written.
        ValueError: `pcm` has an odd number of octets.
    """
    target = Path(path)
    data = wav_bytes(pcm, sample_rate)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.part")
    temporary.write_bytes(data)
    os.replace(temporary, target)
