"""Process-level settings for a long-running switch: the cyclic garbage collector.

Rules:
- The call path creates no reference cycles: every message, transaction, dialog and
  call is freed by reference counting the moment it is no longer used
  (`softswitch/b2bua/tests/test_memory.py` proves it: thousands of calls with the
  collector disabled leave nothing for it to find). The cyclic collector therefore has
  nothing to do for calls, and everything it does costs: measured with the sans-I/O
  harness at 1,000 calls/s, CPython's collector with a raised first threshold
  (50,000, 20, 100) spent about 150 us per call and stopped the loop for up to 0.5 s
  at a time (a full scan of the tens of thousands of transactions that live 32 s,
  Timer J/L/M) -- long enough for SIPp to retransmit and for calls to fail.
- So automatic collection is off (`tune_garbage_collector`, once at start-up, after
  `gc.freeze()` moved everything allocated while importing and configuring into the
  permanent generation).
- Cycles may still come from elsewhere (an exception kept with its traceback, library
  code). `CollectorPacer` runs on the event loop every `interval` seconds: one young
  collection (only the objects allocated since the last pass: a few milliseconds),
  then `gc.freeze()` again, so the next pass never looks at them. Four passes a
  second keep each pass short (about 5 ms at 1,000 calls/s). What a pass finds is
  counted (`unreachable_found`): a number growing with the traffic means a cycle bug.
- Cycles among objects already frozen are not collected; that is the price of never
  scanning the whole heap. `collect_everything()` does a full collection on demand
  (tests, diagnostics).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter

__all__ = ["CollectorPacer", "collect_everything", "tune_garbage_collector"]

DEFAULT_COLLECTION_INTERVAL = 0.25
"""Seconds between two young collections of the pacer."""


def tune_garbage_collector() -> None:
    """Freeze start-up objects and turn automatic collection off (see module rules)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def collect_everything() -> int:
    """A full collection of every object, frozen or not; returns what was unreachable."""
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found


class CollectorPacer:
    """Young collections on a loop timer instead of on allocation counts (module rules)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float = DEFAULT_COLLECTION_INTERVAL
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self.counters: Counter[str] = Counter()
        self.longest_pause = 0.0
        """Seconds of the longest pass so far."""

    def start(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._run)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def run_once(self) -> int:
        """One pass: collect the young objects, freeze the survivors."""
        started = time.perf_counter()
        found = gc.collect(0)
        gc.freeze()
        pause = time.perf_counter() - started
        self.longest_pause = max(self.longest_pause, pause)
        self.counters["collections"] += 1
        self.counters["unreachable_found"] += found
        return found

    def _run(self) -> None:
        self._handle = self._loop.call_later(self._interval, self._run)
        self.run_once()
