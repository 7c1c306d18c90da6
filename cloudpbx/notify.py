"""Change notification inside one process: who changed the config store tells who routes on it.

Rules:
- A writer calls `ChangeNotifier.publish(topic)` AFTER its transaction committed (never
  before: a subscriber that reads the store on the notification must find the change)
  and only when something was committed. The topic names what kind of data changed
  (`ACCOUNTS`, `CONFIG`, ...), never which row: subscribers re-read what they need, so a
  lost or merged notification cannot leave a subscriber with half a change.
- `publish` may be called from any thread (the API's synchronous endpoints run on a
  worker thread) and never blocks or raises: each subscriber's callback is scheduled
  on the subscriber's own event loop with `call_soon_threadsafe`, so callbacks run on
  that loop, one at a time, in publication order. A subscriber whose loop is closed is
  dropped (its process part has stopped).
- Delivery is at most once and in process only; between processes the same topics will
  travel over MQTT (issue 4 part 4), so a topic is a short name safe as an MQTT topic
  level (letters, digits, `-`, `_`).
- `cloudpbx` imports neither `softswitch` nor `custcon_api` (STYLE.md import rules):
  both sides meet here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ACCOUNTS",
    "CONFIG",
    "TOPICS_NOT_IN_SNAPSHOT",
    "VOICEMAIL",
    "ChangeNotifier",
    "Subscription",
]

logger = logging.getLogger("cloudpbx.notify")

ACCOUNTS = "accounts"
"""Customer Control accounts changed (created, deleted, password changed)."""
CONFIG = "config"
"""Something the switch routes on changed (`cloudpbx.snapshot`): extensions, trunks, ...
Also the operator's manual reload (`POST /api/v1/operator/reload`)."""

VOICEMAIL = "voicemail"
"""Voicemail messages changed (deleted or heard through the API): switches recount the
mailboxes and NOTIFY their message-summary subscribers (`softswitch.b2bua.mwi`)."""

TOPICS_NOT_IN_SNAPSHOT = frozenset({ACCOUNTS, VOICEMAIL})
"""Topics whose data no `ConfigSnapshot` holds: a switch need not rebuild for them. Any
other topic, including one added later, makes it rebuild (the safe default)."""

_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    """One subscriber: its callback and the loop the callback runs on."""

    callback: Callable[[str], None]
    loop: asyncio.AbstractEventLoop


class ChangeNotifier:
    """Publish/subscribe of committed changes within one process (see the module rules)."""

    def __init__(self) -> None:
        # publish() runs on API worker threads while subscribe() runs on the loop.
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()

    def subscribe(
        self, callback: Callable[[str], None], loop: asyncio.AbstractEventLoop
    ) -> Subscription:
        """Call `callback(topic)` on `loop` for every later publication.

        Returns:
            The subscription, for `unsubscribe`.
        """
        subscription = Subscription(callback, loop)
        with self._lock:
            self._subscriptions += (subscription,)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription` (no error if it is gone already)."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def __len__(self) -> int:
        """Subscribers."""
        return len(self._subscriptions)

    def publish(self, topic: str) -> None:
        """Tell every subscriber that data of `topic` changed (after the commit).

        Raises:
            ValueError: `topic` is not a valid topic name (a programming error, caught by
                tests: it is raised before anything is scheduled).
        """
        if not _TOPIC.fullmatch(topic):
            raise ValueError(f"{topic!r} is not a topic name")
        closed: list[Subscription] = []
        for subscription in self._subscriptions:  # a tuple: safe against concurrent changes
            try:
                subscription.loop.call_soon_threadsafe(subscription.callback, topic)
            except RuntimeError:
                # The loop is closed: that part of the process has stopped.
                closed.append(subscription)
        for subscription in closed:
            logger.debug("dropping a subscriber whose event loop is closed")
            self.unsubscribe(subscription)
