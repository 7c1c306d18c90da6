"""Traffic statistics of toll-free numbers (利用状況(トラヒック)の照会, seed 000).

Hourly and daily counts per category, per toll-free number or per destination number
of one toll-free number, over a range of days, computed from `tollfree_call_record`.

Rules:
- Days and hours are those of Asia/Tokyo (`TIME_ZONE`). Japan keeps no daylight saving
  time, so an hour or a day is a fixed-length bucket of unix time shifted by +09:00:
  the grouping is one SQL `GROUP BY` over `floor((arrival_time + 32400) / length)`, the
  same on SQLite and PostgreSQL. A call belongs to the hour and day it arrived in.
- The range is whole days, `first_day` to `last_day` inclusive.
- Every category of `TollFreeCategory` is counted, and `total` is their sum (a call is
  in exactly one category, so it is also the number of calls).
- Rows are contiguous: every hour (or day) of the range has its row, zeros included, so
  a spreadsheet of the download has no gaps. By destination, every destination that
  had at least one call in the range has a row for every hour (or day); rows are ordered
  by period, then destination.
- By destination counts the calls connected to or tried on that destination (the
  record's `destination`): a call that tried none (after hours, out of area, channel
  limit) counts only in the number's totals.
- Read only: the SQL aggregates; this module only fills in the zero rows.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, select
from sqlalchemy.orm import Session

from cloudpbx.callrecords import TollFreeCategory
from cloudpbx.models import TollFreeCallRecordRow

__all__ = [
    "CATEGORIES",
    "TIME_ZONE",
    "Granularity",
    "Grouping",
    "TrafficRow",
    "traffic",
]

TIME_ZONE = ZoneInfo("Asia/Tokyo")
_UTC_OFFSET_SECONDS = 9 * 3600
"""Asia/Tokyo is UTC+09:00 all year (no daylight saving time since 1951)."""
CATEGORIES: tuple[TollFreeCategory, ...] = tuple(TollFreeCategory)


class Granularity(enum.StrEnum):
    """The length of one row's period."""

    HOURLY = "hourly"
    DAILY = "daily"

    @property
    def seconds(self) -> int:
        return 3600 if self is Granularity.HOURLY else 86400


class Grouping(enum.StrEnum):
    """What one row counts the calls of."""

    NUMBER = "number"
    """The toll-free number's calls."""
    DESTINATION = "destination"
    """The calls connected to or tried on one destination number."""


@dataclass(frozen=True, slots=True)
class TrafficRow:
    """The calls of one period (and destination), by category."""

    period_start: datetime.datetime
    """Start of the hour or day, in Asia/Tokyo."""
    destination: str | None
    """The destination number (by destination); None by number."""
    counts: Mapping[TollFreeCategory, int]
    """Every category, zeros included."""

    @property
    def total(self) -> int:
        """総呼数: all calls of the row."""
        return sum(self.counts.values())


def _bucket(session: Session, granularity: Granularity) -> ColumnElement[int]:
    shifted = (TollFreeCallRecordRow.arrival_time + _UTC_OFFSET_SECONDS) / granularity.seconds
    if session.get_bind().dialect.name == "sqlite":
        # CAST truncates towards zero: the floor for the (positive) unix times we store.
        return cast(shifted, Integer)
    return cast(func.floor(shifted), BigInteger)


def _day_start(day: datetime.date) -> float:
    return datetime.datetime.combine(day, datetime.time(), TIME_ZONE).timestamp()


def traffic(
    session: Session,
    tollfree_number: str,
    first_day: datetime.date,
    last_day: datetime.date,
    granularity: Granularity,
    grouping: Grouping = Grouping.NUMBER,
) -> list[TrafficRow]:
    """The rows of `tollfree_number` (national form) from `first_day` to `last_day`
    inclusive (module rules); none when `last_day` is before `first_day`."""
    if last_day < first_day:
        return []
    start = _day_start(first_day)
    end = _day_start(last_day + datetime.timedelta(days=1))
    bucket = _bucket(session, granularity).label("bucket")
    row = TollFreeCallRecordRow
    by_destination = grouping is Grouping.DESTINATION
    columns = [bucket, row.category, func.count().label("calls")]
    statement = select(*columns, row.destination) if by_destination else select(*columns)
    statement = statement.where(
        row.tollfree_number == tollfree_number,
        row.arrival_time >= start,
        row.arrival_time < end,
    )
    if by_destination:
        statement = statement.where(row.destination.is_not(None)).group_by(
            bucket, row.category, row.destination
        )
    else:
        statement = statement.group_by(bucket, row.category)
    counts: dict[tuple[int, str | None], dict[TollFreeCategory, int]] = {}
    destinations: set[str | None] = set() if by_destination else {None}
    for result in session.execute(statement):
        values: tuple[Any, ...] = tuple(result)
        key_destination: str | None = values[3] if by_destination else None
        destinations.add(key_destination)
        per_category = counts.setdefault((int(values[0]), key_destination), {})
        per_category[TollFreeCategory(values[1])] = int(values[2])
    length = granularity.seconds
    first_bucket = (int(start) + _UTC_OFFSET_SECONDS) // length
    last_bucket = (int(end) + _UTC_OFFSET_SECONDS) // length  # exclusive
    ordered_destinations = sorted(destinations, key=lambda value: value or "")
    rows: list[TrafficRow] = []
    for bucket_number in range(first_bucket, last_bucket):
        period_start = datetime.datetime.fromtimestamp(
            bucket_number * length - _UTC_OFFSET_SECONDS, TIME_ZONE
        )
        for each_destination in ordered_destinations:
            found = counts.get((bucket_number, each_destination), {})
            rows.append(
                TrafficRow(
                    period_start=period_start,
                    destination=each_destination,
                    counts={category: found.get(category, 0) for category in CATEGORIES},
                )
            )
    return rows
