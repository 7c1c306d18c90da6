"""The JSON body of the traffic statistics (`custcon_api.statistics.service` fills it)."""

from __future__ import annotations

import datetime

from pydantic import BaseModel, Field

from cloudpbx.statistics import Granularity, Grouping

__all__ = ["StatisticsPublic", "TrafficRowPublic"]


class TrafficRowPublic(BaseModel):
    """The calls of one hour or day (and destination), by category (PRODUCT.md Part A)."""

    period_start: datetime.datetime
    """Start of the hour or day, in Asia/Tokyo (`+09:00`)."""
    date: datetime.date
    """The day (Asia/Tokyo)."""
    hour: int | None
    """The hour of the day, 0-23 (hourly); null (daily)."""
    destination: str | None
    """The destination number (`by=destination`); null (`by=number`)."""
    total: int
    """総呼数: every call (the sum of the six categories)."""
    connected: int
    """接続呼数."""
    after_hours: int
    """時間外案内呼数."""
    busy: int
    """話中呼数 (busy, or the channel limit)."""
    out_of_area: int
    """指定地域外発信呼数."""
    abandoned: int
    """呼出中放棄呼数."""
    other: int
    """その他."""


class StatisticsPublic(BaseModel):
    """A toll-free number's traffic over a range of days."""

    tollfree_number: str
    granularity: Granularity
    by: Grouping
    first_day: datetime.date = Field(serialization_alias="from")
    last_day: datetime.date = Field(serialization_alias="to")
    time_zone: str
    """Always `Asia/Tokyo`: the days and hours are Japan's."""
    rows: list[TrafficRowPublic]
    """Every hour or day of the range, zeros included (by destination: for every
    destination with a call in the range), by period then destination."""
