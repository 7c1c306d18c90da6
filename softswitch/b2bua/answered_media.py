"""What the asyncio media adapters of the calls the switch answers itself share.

`announcement_media.AnnouncementMedia` (players) and `voicemail_media.VoicemailMedia`
(voicemail sessions) carry out the effects of `answered_call.AnsweredCall`s. Both stay
thin (STYLE.md principle 6); `AnsweredCallMedia` is their common part: one RTP session
per call, bound in a task, stopped on the call's stop effect, and the reports back to
the `CallService`.

Rules:
- One session per Call-ID. `_open(call_id)` (the open effect) binds one in a task
  (`_bind()`: on `host`, an RTP port from `ports`); then `_media_opened(call_id,
  address, now)` reports it to the call service, or None on an `OSError`
  (`_open_failed` logs it).
- `_stop(call_id)` (the stop effect) stops the session (`session.stop()`, then the
  subclass's `_session_stopped`) and forgets it. A stop that arrives while the socket is
  being bound is remembered, and the session is stopped as soon as it exists (the call
  service is not told: the call is gone). Without a session it does nothing
  (idempotent).
- After each report, `pump()` carries out the effects it caused and then, even when it
  raised, the `after` callback runs (the caller's shell collects records, re-arms its
  timer and transmits what the endpoint queued). `now` is `loop.time()`, the SIP core's
  clock in `softswitch run`.
- `close()` stops every session (shutdown) and cancels the tasks in progress.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from softswitch.media import RtpPortAllocator
from softswitch.sip.flows import Address

__all__ = ["AnsweredCallMedia", "MediaSession"]


class MediaSession(Protocol):
    """One call's RTP socket, as the adapters hold it."""

    @property
    def local_address(self) -> Address:
        """The bound `(host, port)`."""
        ...

    def stop(self) -> object:
        """Stop whatever it does and close the socket (idempotent)."""
        ...


SessionT = TypeVar("SessionT", bound=MediaSession)


class AnsweredCallMedia(ABC, Generic[SessionT]):
    """The sessions of one kind of answered call (see the module rules).

    Subclasses give `pump()`, `_bind()`, `_open_failed()` and `_media_opened()`, and may
    override `_session_stopped()`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        ports: RtpPortAllocator | None,
        after: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._host = host
        self._ports = ports
        self._after = after
        self._sessions: dict[str, SessionT] = {}
        self._opening: set[str] = set()
        self._stopped_while_opening: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Sessions held or being bound now (0 once every call ended)."""
        return len(self._sessions) + len(self._opening)

    @abstractmethod
    def pump(self) -> None:
        """Carry out every pending effect of the call service."""

    def close(self) -> None:
        """Stop every session (shutdown) and cancel the tasks in progress."""
        for call_id in list(self._sessions):
            self._stop(call_id)
        for task in self._tasks:
            task.cancel()

    # -- subclass parts ------------------------------------------------------------
    @abstractmethod
    async def _bind(self) -> SessionT:
        """A new session on `host`, a port of `ports`.

        Raises:
            OSError: nothing could be bound.
        """

    @abstractmethod
    def _open_failed(self, call_id: str, error: OSError) -> None:
        """Log that no socket could be bound for `call_id`."""

    @abstractmethod
    def _media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        """Report the bound socket (None: none) to the call service."""

    def _session_stopped(self, call_id: str) -> None:
        """The call's session was stopped and forgotten (default: nothing more)."""

    # -- sessions ------------------------------------------------------------------
    def _open(self, call_id: str) -> None:
        self._opening.add(call_id)
        self._spawn(self._bind_and_report(call_id))

    async def _bind_and_report(self, call_id: str) -> None:
        try:
            session: SessionT | None = await self._bind()
        except OSError as error:
            self._open_failed(call_id, error)
            session = None
        self._opening.discard(call_id)
        if call_id in self._stopped_while_opening:
            self._stopped_while_opening.discard(call_id)
            if session is not None:
                session.stop()
            return
        if session is not None:
            self._sessions[call_id] = session
        address = None if session is None else session.local_address
        self._report(lambda: self._media_opened(call_id, address, self._now()))

    def _stop(self, call_id: str) -> None:
        session = self._sessions.pop(call_id, None)
        if session is None:
            if call_id in self._opening:
                self._stopped_while_opening.add(call_id)
            return
        session.stop()
        self._session_stopped(call_id)

    # -- plumbing ------------------------------------------------------------------
    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _now(self) -> float:
        return self._loop.time()

    def _report(self, action: Callable[[], None]) -> None:
        try:
            action()
            self.pump()
        finally:
            self._after()
