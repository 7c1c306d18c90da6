"""Counting the toll-free call records the switch produces, for `/metrics`.

`CountingSink` sits between the switch and the durable sink (`cloudpbx.recordjournal`):
it counts each record per toll-free number and category, then forwards it. The counts
are exposed as `softswitch_tollfree_calls_total{tollfree_number,category}` by
`softswitch.metrics.tollfree_call_collector`.

Rules:
- The counts are those of the records the switch produced since this process started:
  a record is counted before it is forwarded, so the counters equal what the journal
  received, even if the journal failed to keep it (its own counters say so).
- Plain `collections.Counter`, no metrics library (STYLE.md principle 15; only
  `softswitch.metrics` imports `prometheus_client`). The scrape thread copies the
  counter with one `dict(...)` (see `softswitch.metrics`).
- `record` runs on the event loop and never raises: a failure of the inner sink (which
  must not raise either) is counted in `forward_failures` and logged once.
"""

from __future__ import annotations

import collections
import logging

from cloudpbx.callrecords import CallRecordSink, TollFreeCallRecord, TollFreeCategory

__all__ = ["CountingSink"]

logger = logging.getLogger("softswitch.tollfree_metrics")


class CountingSink:
    """A `CallRecordSink` that counts per number and category, then forwards (rules)."""

    def __init__(self, inner: CallRecordSink | None = None) -> None:
        self._inner = inner
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        """(tollfree_number, category) -> records; live, never replaced."""
        self.counters: collections.Counter[str] = collections.Counter()
        """`forward_failures`."""
        self._numbers: set[str] = set()

    def record(self, call_record: TollFreeCallRecord) -> None:
        """Count `call_record`, then hand it to the inner sink; never raises."""
        number = call_record.tollfree_number
        if number not in self._numbers:
            # Every category of a number from its first record on, so a rate works.
            self._numbers.add(number)
            for category in TollFreeCategory:
                self.calls[(number, category.value)] += 0
        self.calls[(number, TollFreeCategory(call_record.category).value)] += 1
        if self._inner is None:
            return
        try:
            self._inner.record(call_record)
        except Exception as error:  # rule: the call path never sees a sink's failure
            self.counters["forward_failures"] += 1
            if self.counters["forward_failures"] == 1:
                logger.error("call record sink failed: %s: %s", type(error).__name__, error)
