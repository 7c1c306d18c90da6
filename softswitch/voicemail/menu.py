"""The mailbox menu a phone reaches with the feature code: messages played, DTMF keys
(RFC 4733) choose what next. Pure: keys, playback ends and `now` in, actions out.

Rules:
- Messages are played oldest first. Keys (RFC 4733 §3.2 DTMF events): `1` replays the
  current message, `2` or `#` goes to the next one, `3` deletes the current message and
  goes to the next one, `*` ends the session. A key interrupts the message being played
  (the adapter stops it when the next `PlayMessage` or `Finish` comes).
- A message counts as heard (RFC 3842: old) once its playback started: `MarkHeard`,
  once per message.
- After a message was played to its end, the menu waits `key_timeout` seconds for a key,
  then goes to the next message on its own.
- After the last message (or with none) the session ends: `Finish`; the SIP side hangs up.
- Actions leave through `next_action()`; the deadline through `get_timer()`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_KEY_TIMEOUT",
    "DeleteMessage",
    "Finish",
    "MailboxMenu",
    "MarkHeard",
    "MenuAction",
    "PlayMessage",
]

DEFAULT_KEY_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class PlayMessage:
    """Play the message (from its start, stopping whatever plays)."""

    message_id: str


@dataclass(frozen=True, slots=True)
class MarkHeard:
    message_id: str


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    message_id: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The session is over: stop playing; the call hangs up."""


MenuAction = PlayMessage | MarkHeard | DeleteMessage | Finish


class MailboxMenu:
    """One listening session (see the module rules)."""

    def __init__(self, message_ids: Sequence[str], key_timeout: float = DEFAULT_KEY_TIMEOUT):
        self._messages = list(message_ids)
        self._key_timeout = key_timeout
        self._index = 0
        self._heard: set[str] = set()
        self._deadline: float | None = None
        self._actions: deque[MenuAction] = deque()
        self.finished = False

    @property
    def current(self) -> str | None:
        """The message being played or waited after, None once past the last."""
        return self._messages[self._index] if self._index < len(self._messages) else None

    def next_action(self) -> MenuAction | None:
        return self._actions.popleft() if self._actions else None

    def get_timer(self) -> float | None:
        return self._deadline

    def start(self, now: float) -> None:
        self._play_current()

    def playback_finished(self, now: float) -> None:
        """The current message was played to its end: wait for a key."""
        if not self.finished:
            self._deadline = now + self._key_timeout

    def handle_timer(self, now: float) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._next()

    def press(self, key: str, now: float) -> None:
        """A DTMF key (module rules)."""
        if self.finished:
            return
        self._deadline = None
        if key == "1":
            self._play_current()
        elif key in ("2", "#"):
            self._next()
        elif key == "3":
            current = self.current
            if current is not None:
                self._actions.append(DeleteMessage(current))
                del self._messages[self._index]
            self._play_current()
        elif key == "*":
            self._finish()

    def _next(self) -> None:
        self._index += 1
        self._play_current()

    def _play_current(self) -> None:
        current = self.current
        if current is None:
            self._finish()
            return
        self._actions.append(PlayMessage(current))
        if current not in self._heard:
            self._heard.add(current)
            self._actions.append(MarkHeard(current))

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._deadline = None
            self._actions.append(Finish())
