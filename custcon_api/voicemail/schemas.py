"""The voicemail message as the API shows it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["VoicemailMessagePublic"]


class VoicemailMessagePublic(BaseModel):
    """One message of a mailbox (the audio is at `audio_url`, audio/wav)."""

    model_config = ConfigDict(extra="forbid")

    message_id: str
    caller: str
    """The caller's From URI."""
    received_at: float
    """Unix time in seconds."""
    duration_seconds: float
    heard: bool
    """Downloaded (or played from the phone) at least once: an old message."""
    audio_url: str
