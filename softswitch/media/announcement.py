"""The switch's announcements: loaded once, kept encoded in both G.711 laws.

Rules:
- An announcement is a kind (after-hours, out-of-area refusal; issue 5) in a language
  (Japanese, English) that the customer chooses. Its file is
  `configs/announcements/<kind>_<language>.wav`, made by `make_announcements.sh` there.
- `AnnouncementLibrary.load` reads every kind in every language at start-up and fails
  there, naming the file (`WavFormatError`), never in the middle of a call.
- Each announcement is encoded to PCMU and PCMA once at load (about 8 KB per second of
  audio each), so answering a call costs no encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .g711 import Codec
from .wav import PcmAudio, read_wav

__all__ = [
    "DEFAULT_DIRECTORY",
    "Announcement",
    "AnnouncementKind",
    "AnnouncementLibrary",
    "Language",
    "announcement_filename",
    "load_announcement",
]

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[2] / "configs" / "announcements"
"""`configs/announcements/` of the repository (this file is softswitch/media/...)."""


class AnnouncementKind(enum.Enum):
    AFTER_HOURS = "after_hours"
    """時間外案内: the switch answers outside business hours, plays this, hangs up."""
    OUT_OF_AREA = "out_of_area"
    """Refusal for a caller outside the number's designated areas."""
    CALL_RESTRICTED = "call_restricted"
    """Cloud PBX (issue 6): a call the caller may not make (no external-call option,
    extension dialing from abroad)."""
    EMERGENCY_UNAVAILABLE = "emergency_unavailable"
    """Cloud PBX (issue 6): 110/118/119 from a phone without a callback number."""


class Language(enum.Enum):
    JA = "ja"
    EN = "en"


def announcement_filename(kind: AnnouncementKind, language: Language) -> str:
    return f"{kind.value}_{language.value}.wav"


@dataclass(frozen=True, slots=True)
class Announcement:
    """One prompt, ready to send.

    Attributes:
        name: e.g. "after_hours_ja" (the file name without .wav), for logs and metrics.
        audio: the linear samples as read.
        pcmu, pcma: the samples encoded in each G.711 law.
    """

    name: str
    audio: PcmAudio
    pcmu: bytes
    pcma: bytes

    @classmethod
    def from_audio(cls, name: str, audio: PcmAudio) -> Announcement:
        return cls(name, audio, Codec.PCMU.encode(audio.pcm), Codec.PCMA.encode(audio.pcm))

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.audio.duration

    def payload(self, codec: Codec) -> bytes:
        """The whole announcement in `codec`, one octet per 8 kHz sample."""
        return self.pcmu if codec is Codec.PCMU else self.pcma


def load_announcement(path: Path | str) -> Announcement:
    """Read and encode one WAV file.

    Raises:
        WavFormatError: missing, unreadable, or not 8 kHz mono 16-bit PCM.
    """
    return Announcement.from_audio(Path(path).stem, read_wav(path))


class AnnouncementLibrary:
    """Every announcement kind in every language, by `(kind, language)`."""

    def __init__(self, announcements: Mapping[tuple[AnnouncementKind, Language], Announcement]):
        self._announcements = dict(announcements)

    @classmethod
    def load(cls, directory: Path | str = DEFAULT_DIRECTORY) -> AnnouncementLibrary:
        """Load `<kind>_<language>.wav` for every kind and language from `directory`.

        Raises:
            WavFormatError: a file is missing or not playable (the message names it).
        """
        base = Path(directory)
        return cls(
            {
                (kind, language): load_announcement(base / announcement_filename(kind, language))
                for kind in AnnouncementKind
                for language in Language
            }
        )

    def get(self, kind: AnnouncementKind, language: Language) -> Announcement:
        """The announcement of `kind` in `language`.

        Raises:
            KeyError: the library was built without it.
        """
        return self._announcements[(kind, language)]

    def all(self) -> list[Announcement]:
        return list(self._announcements.values())
