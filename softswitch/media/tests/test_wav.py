"""Reading announcement WAV files, and the committed announcements themselves."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest

from softswitch.media.announcement import (
    DEFAULT_DIRECTORY,
    AnnouncementKind,
    AnnouncementLibrary,
    Language,
    announcement_filename,
    load_announcement,
)
from softswitch.media.g711 import Codec
from softswitch.media.wav import WavFormatError, read_wav

ANNOUNCEMENT_FILES = sorted(
    announcement_filename(kind, language) for kind in AnnouncementKind for language in Language
)


def write_wav(path: Path, *, rate: int = 8000, channels: int = 1, width: int = 2,
              frames: int = 800) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(b"\x00" * frames * channels * width)
    return path


@pytest.mark.parametrize("name", ANNOUNCEMENT_FILES)
def test_each_committed_announcement_loads_and_lasts_2_to_15_s(name: str) -> None:
    announcement = load_announcement(DEFAULT_DIRECTORY / name)
    assert 2.0 <= announcement.duration <= 15.0
    assert announcement.audio.sample_rate == 8000
    assert len(announcement.pcmu) == len(announcement.pcma) == announcement.audio.sample_count
    # not silence: a speech prompt has a real level
    samples = struct.unpack(f"<{announcement.audio.sample_count}h", announcement.audio.pcm)
    assert max(abs(sample) for sample in samples) > 8000


def test_the_generator_script_is_committed_beside_the_files() -> None:
    script = DEFAULT_DIRECTORY / "make_announcements.sh"
    text = script.read_text(encoding="utf-8")
    assert "espeak-ng" in text and "sox" in text
    for name in ANNOUNCEMENT_FILES:
        assert name.removesuffix(".wav") in text


def test_library_loads_every_kind_and_language() -> None:
    library = AnnouncementLibrary.load()
    assert len(library.all()) == len(AnnouncementKind) * len(Language)
    after_hours = library.get(AnnouncementKind.AFTER_HOURS, Language.JA)
    assert after_hours.name == "after_hours_ja"
    assert after_hours.payload(Codec.PCMU) == Codec.PCMU.encode(after_hours.audio.pcm)
    assert after_hours.payload(Codec.PCMA) == Codec.PCMA.encode(after_hours.audio.pcm)


def test_library_names_a_missing_file(tmp_path: Path) -> None:
    write_wav(tmp_path / "after_hours_ja.wav")
    with pytest.raises(WavFormatError, match="after_hours_en.wav: no such file"):
        AnnouncementLibrary.load(tmp_path)


def test_reads_a_good_file(tmp_path: Path) -> None:
    audio = read_wav(write_wav(tmp_path / "ok.wav", frames=8000))
    assert audio.duration == 1.0
    assert audio.sample_count == 8000
    assert audio.source.endswith("ok.wav")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"rate": 16000}, "16000 Hz (need 8000 Hz)"),
        ({"rate": 44100, "channels": 2}, "44100 Hz (need 8000 Hz); 2 channels (need mono)"),
        ({"width": 1}, "8-bit samples (need 16-bit PCM)"),
        ({"frames": 0}, "no samples"),
    ],
)
def test_wrong_format_names_the_file_and_the_problem(
    tmp_path: Path, options: dict[str, int], problem: str
) -> None:
    path = write_wav(tmp_path / "bad.wav", **options)
    with pytest.raises(WavFormatError) as raised:
        read_wav(path)
    assert str(path) in str(raised.value)
    assert problem in str(raised.value)


def test_not_a_wav_file(tmp_path: Path) -> None:
    path = tmp_path / "text.wav"
    path.write_bytes(b"this is not RIFF at all")
    with pytest.raises(WavFormatError, match="text.wav: not a readable PCM WAV file"):
        read_wav(path)


def test_compressed_wav_is_refused(tmp_path: Path) -> None:
    # a µ-law WAV (format tag 7), as sox -e u-law writes it: `wave` does not read it
    path = tmp_path / "ulaw.wav"
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    data = b"\xff" * 800
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(WavFormatError, match="ulaw.wav"):
        read_wav(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError, match="nothing.wav: no such file"):
        read_wav(tmp_path / "nothing.wav")
