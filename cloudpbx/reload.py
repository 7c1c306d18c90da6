"""Rebuilding a config snapshot on change notifications, off the event loop, and
installing it on the loop in one step.

Rules:
- `notify(topic)` runs on the event loop (it is the `ChangeNotifier` callback). A topic
  in `ignored_topics` (data no snapshot holds, `cloudpbx.notify.TOPICS_NOT_IN_SNAPSHOT`)
  is only counted (`reload_notifications_ignored`). Any other topic starts
  a rebuild, or, while one is running, only marks that another is needed: any number of
  notifications during a rebuild cause exactly ONE more rebuild after it (coalescing),
  because each rebuild reads the whole store and so includes every change committed
  before it started.
- `build()` (SQL: `cloudpbx.repository.load_snapshot` plus any derived indexes) runs on
  one worker thread of its own, never on the loop: the SIP loop never waits for the
  database. Rebuilds never overlap.
- `install(value)` runs on the loop, synchronously, with no `await` between the parts it
  swaps: a request handled on the loop sees the whole old configuration or the whole
  new one, never a mix.
- A rebuild that raises keeps the configuration in force, is counted (`reload_failures`)
  and logged as one line without a traceback; the next notification tries again.
  Each installed rebuild is counted (`snapshot_reloads`) and logged as one line with
  how long it took from the first notification it answers to the swap.
- `close()` stops taking notifications and waits (bounded) for a rebuild in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["SnapshotReloader"]

logger = logging.getLogger("cloudpbx.reload")

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0
"""Seconds `close()` waits for a rebuild in flight (a store that hangs must not hang a
shutdown)."""


def _describe(error: BaseException) -> str:
    """One line: the exception's type and its message's first line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class SnapshotReloader(Generic[T]):
    """Coalescing rebuild-and-swap of a configuration (see the module rules)."""

    def __init__(
        self,
        build: Callable[[], T],
        install: Callable[[T], None],
        loop: asyncio.AbstractEventLoop,
        name: str = "config snapshot",
        ignored_topics: frozenset[str] = frozenset(),
    ) -> None:
        """
        Args:
            build: reads the store and returns the new configuration (runs on a thread).
            install: swaps it in (runs on `loop`; must not fail half-way).
            name: what the log lines call the configuration.
            ignored_topics: topics that do not make it rebuild.
        """
        self.counters: Counter[str] = Counter()
        self.last_reload_seconds: float | None = None
        """Seconds from the first notification a rebuild answered to its swap."""
        self._build = build
        self._install = install
        self._loop = loop
        self._name = name
        self._ignored_topics = ignored_topics
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="snapshot-reload"
        )
        self._task: asyncio.Task[None] | None = None
        self._pending_since: float | None = None
        """When (`time.perf_counter`) the first notification the next rebuild must answer
        came: uvloop's `loop.time()` has only millisecond steps, too coarse to measure."""
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> bool:
        """True while a rebuild is in flight or queued."""
        return self._task is not None

    async def wait_idle(self) -> None:
        """Return once no rebuild is in flight or queued (tests, shutdown)."""
        await self._idle.wait()

    def notify(self, topic: str) -> None:
        """A change of `topic` was committed: rebuild (coalesced). Call on the loop."""
        if self._closed:
            return
        if topic in self._ignored_topics:
            self.counters["reload_notifications_ignored"] += 1
            return
        self.counters["reload_notifications"] += 1
        if self._task is not None:
            # Rule: the rebuild after the one running covers this one too.
            if self._pending_since is None:
                self._pending_since = time.perf_counter()
            self.counters["reload_notifications_coalesced"] += 1
            return
        self._idle.clear()
        self._task = self._loop.create_task(self._run(time.perf_counter()))

    async def close(self) -> None:
        """Take no more notifications; wait (at most 5 s) for a rebuild in flight."""
        self._closed = True
        self._pending_since = None
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), _CLOSE_TIMEOUT)
            except TimeoutError:
                logger.warning("%s: stopping with a rebuild still running", self._name)
                task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, first_notified: float) -> None:
        try:
            while True:
                try:
                    value = await self._loop.run_in_executor(self._executor, self._build)
                except Exception as error:  # rule: keep the old one, one line, no traceback
                    self.counters["reload_failures"] += 1
                    logger.error(
                        "%s: rebuild failed, keeping the one in force: %s",
                        self._name,
                        _describe(error),
                    )
                else:
                    # Rule: the swap is one synchronous step on the loop.
                    self._install(value)
                    self.counters["snapshot_reloads"] += 1
                    self.last_reload_seconds = time.perf_counter() - first_notified
                    logger.info(
                        "%s reloaded in %.1f ms",
                        self._name,
                        self.last_reload_seconds * 1000,
                    )
                if self._pending_since is None or self._closed:
                    return
                first_notified, self._pending_since = self._pending_since, None
        finally:
            self._task = None
            self._idle.set()
