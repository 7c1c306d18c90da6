"""What a toll-free call leaves behind: one record, in exactly one category.

The switch builds a `TollFreeCallRecord` when a toll-free call ends (issue 5 part 6) and
hands it to a `CallRecordSink`; statistics (hourly and daily totals per toll-free number
and per destination, Prometheus counters) are computed from these records only.

Rules:
- Every toll-free call that arrived ends in exactly one `TollFreeCategory`, so
  total = connected + after_hours + busy + out_of_area + abandoned + other, always
  (PRODUCT.md Part A, the traffic statistics table).
- Times are unix seconds (floats), as everywhere in the store; `answer_time` is None for
  a call that was never answered (by a destination or, for an announcement, by the
  switch itself).
- `call_id` is the caller leg's Call-ID: unique per call, the key that makes writing a
  record twice (a replay after a crash) harmless.
- Values only: no ORM object, no I/O. `cloudpbx` imports neither `softswitch` nor
  `custcon_api`; both meet here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CallRecordSink", "TollFreeCallRecord", "TollFreeCategory"]


class TollFreeCategory(enum.StrEnum):
    """The traffic statistics categories of seed 000 (the Japanese names are the seed's)."""

    CONNECTED = "connected"
    """接続呼数: answered by a destination."""
    AFTER_HOURS = "after_hours"
    """時間外案内呼数: arrived while an after-hours schedule applied (announcement)."""
    BUSY = "busy"
    """話中呼数: the destination was busy, or the channel limit was reached."""
    OUT_OF_AREA = "out_of_area"
    """指定地域外発信呼数: the caller was outside the designated areas (or of a refused
    type: 050, international, withheld when not allowed)."""
    ABANDONED = "abandoned"
    """呼出中放棄呼数: the caller hung up (CANCEL) while it was ringing."""
    OTHER = "other"
    """その他: any other end (no answer, unreachable, 5xx, ...)."""


@dataclass(frozen=True, slots=True)
class TollFreeCallRecord:
    """One toll-free call, from arrival to end."""

    call_id: str
    """The caller leg's Call-ID."""
    tollfree_number: str
    """National form, `0120000111`."""
    tenant_name: str
    caller: str
    """The caller's number as normalised (`0312345678`, `+12025550100`), or
    `anonymous` when withheld, `unknown` when there was none."""
    destination: str | None
    """The destination number the call was connected to, or tried last; None when none
    was tried (after hours, out of area, channel limit)."""
    category: TollFreeCategory
    final_status: int
    """The final SIP status the caller got (200 for an answered call or announcement)."""
    arrival_time: float
    answer_time: float | None
    end_time: float


class CallRecordSink(Protocol):
    """Where the switch puts finished records. `record` is called on the event loop: it
    must not block (no SQL, no fsync) and must not raise."""

    def record(self, call_record: TollFreeCallRecord) -> None:
        """Keep `call_record` (durably against a crash of the process)."""
        ...
