"""The asyncio adapter that carries out the call service's media effects (issue 5 step 5).

One of the modules of `b2bua/` that touch an event loop (with `voicemail_media` and
their common part `answered_media`), kept as thin as `softswitch.media.player` (STYLE.md
principle 6): every decision is the sans-I/O `AnnouncementCall`'s; this module opens,
plays and stops `AnnouncementPlayer`s and hands the outcomes back to the `CallService`.

Rules:
- `AnnouncementMedia(loop, calls, library, host, ports, after)` enables announcements
  on `calls` (`CallService.enable_announcements`). `pump()` must run after every input
  the service handled (the `softswitch run` call timer calls it from its `_after`): it
  drains `calls.next_media_effect()`.
- `OpenMedia`: a task binds a player on `host` (an RTP port from `ports`); then
  `calls.media_opened(call_id, player.local_address, now)`, or `None` on an `OSError`
  (`answered_media` rules). A `StopMedia` that arrives while the socket is being bound
  is remembered, and the player is stopped as soon as it exists.
- `PlayAnnouncement`: `player.play(media, announcement)`; a task waits for the end and
  reports `calls.playback_finished(call_id, now)` when it COMPLETED or FAILED (a FAILED
  socket ends the call the same way: BYE). STOPPED is our own doing: nothing to report.
  An unknown announcement name plays the library's announcement of the same kind in
  Japanese (`<kind>_ja`), else the call is reported finished at once (BYE).
- `StopMedia`: `player.stop()` (idempotent) and the player is forgotten.
- After each report the `after` callback runs (the caller's shell collects records,
  re-arms its timer and transmits what the endpoint queued). `now` is `loop.time()`,
  the SIP core's clock in `softswitch run`.
- `close()` stops every player (shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from softswitch.media import (
    Announcement,
    AnnouncementLibrary,
    AnnouncementPlayer,
    PlaybackOutcome,
    RtpPortAllocator,
)
from softswitch.sip.flows import Address

from .announcement_call import OpenMedia, PlayAnnouncement, StopMedia
from .answered_media import AnsweredCallMedia
from .service import CallService

__all__ = ["AnnouncementMedia"]

logger = logging.getLogger(__name__)


class AnnouncementMedia(AnsweredCallMedia[AnnouncementPlayer]):
    """Players of the announcement calls of one `CallService` (see the module rules)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        calls: CallService,
        library: AnnouncementLibrary,
        host: str,
        ports: RtpPortAllocator | None,
        after: Callable[[], None],
    ) -> None:
        super().__init__(loop, host, ports, after)
        self._calls = calls
        self._announcements = {announcement.name: announcement for announcement in library.all()}
        calls.enable_announcements()

    def pump(self) -> None:
        """Carry out every pending media effect of the call service."""
        while (effect := self._calls.next_media_effect()) is not None:
            if isinstance(effect, OpenMedia):
                self._open(effect.call_id)
            elif isinstance(effect, PlayAnnouncement):
                self._play(effect)
            elif isinstance(effect, StopMedia):
                self._stop(effect.call_id)

    async def _bind(self) -> AnnouncementPlayer:
        return await AnnouncementPlayer.open(self._host, self._ports)

    def _open_failed(self, call_id: str, error: OSError) -> None:
        logger.warning("cannot open an RTP socket for %s: %s", call_id, error)

    def _media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        self._calls.media_opened(call_id, address, now)

    def _play(self, effect: PlayAnnouncement) -> None:
        player = self._sessions.get(effect.call_id)
        if player is None:
            return
        announcement = self._announcement(effect.announcement)
        if announcement is None:
            logger.warning("no announcement %r for %s", effect.announcement, effect.call_id)
            self._report(lambda: self._calls.playback_finished(effect.call_id, self._now()))
            return
        player.play(effect.media, announcement)
        self._spawn(self._wait(effect.call_id, player))

    async def _wait(self, call_id: str, player: AnnouncementPlayer) -> None:
        result = await player.wait()
        if self._sessions.get(call_id) is player:
            del self._sessions[call_id]
        if result.outcome is not PlaybackOutcome.STOPPED:
            self._report(lambda: self._calls.playback_finished(call_id, self._now()))

    def _announcement(self, name: str) -> Announcement | None:
        found = self._announcements.get(name)
        if found is None:
            kind = name.rsplit("_", 1)[0]
            found = self._announcements.get(f"{kind}_ja")
        return found
