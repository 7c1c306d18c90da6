"""Traffic statistics over the call records: Asia/Tokyo hours and days, every category
and the total, per number and per destination, contiguous zero rows (both backends)."""

from __future__ import annotations

import datetime

from sqlalchemy.orm import Session

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.models import TollFreeCallRecordRow
from cloudpbx.statistics import CATEGORIES, TIME_ZONE, Granularity, Grouping, traffic

DAY = datetime.date(2027, 1, 15)


def tokyo(day: datetime.date, hour: int, minute: int = 0, second: float = 0) -> float:
    moment = datetime.datetime.combine(day, datetime.time(hour, minute), TIME_ZONE)
    return moment.timestamp() + second


def add(
    session: Session,
    call_id: str,
    arrival: float,
    category: TollFreeCategory,
    destination: str | None = None,
    number: str = "0120000111",
) -> None:
    record = TollFreeCallRecord(
        call_id=call_id,
        tollfree_number=number,
        tenant_name="demo",
        caller="0312345678",
        destination=destination,
        category=category,
        final_status=200,
        arrival_time=arrival,
        answer_time=None,
        end_time=arrival + 10,
    )
    session.add(
        TollFreeCallRecordRow(
            call_id=record.call_id,
            tollfree_number=record.tollfree_number,
            tenant_name=record.tenant_name,
            caller=record.caller,
            destination=record.destination,
            category=record.category,
            final_status=record.final_status,
            arrival_time=record.arrival_time,
            answer_time=record.answer_time,
            end_time=record.end_time,
        )
    )


def test_hours_are_asia_tokyo_hours(session: Session) -> None:
    add(session, "a", tokyo(DAY, 0, 0, 0), TollFreeCategory.CONNECTED)  # first instant
    add(session, "b", tokyo(DAY, 0, 59, 59.9), TollFreeCategory.BUSY)
    add(session, "c", tokyo(DAY, 1), TollFreeCategory.BUSY)
    add(session, "d", tokyo(DAY, 23, 59, 59.9), TollFreeCategory.OTHER)
    add(session, "before", tokyo(DAY, 0) - 0.1, TollFreeCategory.CONNECTED)  # the day before
    add(session, "after", tokyo(DAY + datetime.timedelta(days=1), 0), TollFreeCategory.OTHER)
    add(session, "another number", tokyo(DAY, 5), TollFreeCategory.OTHER, number="0120000222")
    session.commit()
    rows = traffic(session, "0120000111", DAY, DAY, Granularity.HOURLY)
    assert len(rows) == 24
    assert [row.period_start.hour for row in rows] == list(range(24))
    assert rows[0].period_start == datetime.datetime.combine(DAY, datetime.time(), TIME_ZONE)
    assert rows[0].period_start.utcoffset() == datetime.timedelta(hours=9)
    assert rows[0].total == 2
    assert rows[0].counts[TollFreeCategory.CONNECTED] == 1
    assert rows[0].counts[TollFreeCategory.BUSY] == 1
    assert rows[1].total == 1
    assert rows[23].counts[TollFreeCategory.OTHER] == 1
    assert sum(row.total for row in rows) == 4
    assert all(row.total == 0 for row in rows[2:23])  # contiguous zero rows


def test_days_are_asia_tokyo_days_and_categories_sum_to_the_total(session: Session) -> None:
    # 2027-01-15 08:59 JST is still 2027-01-14 in UTC: counted on the 15th.
    second = DAY + datetime.timedelta(days=1)
    for index, category in enumerate(CATEGORIES):
        add(session, f"first-{index}", tokyo(DAY, 8, 59), category)
        add(session, f"second-{index}", tokyo(second, 12), category)
        add(session, f"second-extra-{index}", tokyo(second, 13), TollFreeCategory.CONNECTED)
    session.commit()
    rows = traffic(
        session, "0120000111", DAY, second + datetime.timedelta(days=1), Granularity.DAILY
    )
    assert [row.period_start.date() for row in rows] == [
        DAY,
        second,
        second + datetime.timedelta(days=1),
    ]
    assert rows[0].counts == dict.fromkeys(CATEGORIES, 1)
    assert rows[0].total == len(CATEGORIES)
    assert rows[1].counts[TollFreeCategory.CONNECTED] == 1 + len(CATEGORIES)
    assert rows[1].total == 2 * len(CATEGORIES)
    assert rows[2].total == 0
    for row in rows:
        assert row.total == sum(row.counts[category] for category in CATEGORIES)


def test_by_destination_counts_the_calls_tried_there(session: Session) -> None:
    add(session, "tokyo-1", tokyo(DAY, 10), TollFreeCategory.CONNECTED, "0312340001")
    add(session, "tokyo-2", tokyo(DAY, 10, 30), TollFreeCategory.BUSY, "0312340001")
    add(session, "osaka-1", tokyo(DAY, 11), TollFreeCategory.ABANDONED, "0612340001")
    add(session, "none", tokyo(DAY, 10), TollFreeCategory.AFTER_HOURS, None)
    session.commit()
    by_number = traffic(session, "0120000111", DAY, DAY, Granularity.DAILY)
    assert [row.total for row in by_number] == [4]
    rows = traffic(session, "0120000111", DAY, DAY, Granularity.DAILY, Grouping.DESTINATION)
    assert [(row.destination, row.total) for row in rows] == [
        ("0312340001", 2),
        ("0612340001", 1),
    ]
    assert rows[0].counts[TollFreeCategory.BUSY] == 1
    hourly = traffic(session, "0120000111", DAY, DAY, Granularity.HOURLY, Grouping.DESTINATION)
    assert len(hourly) == 48  # every hour for each destination with calls
    assert [(row.period_start.hour, row.destination) for row in hourly[:2]] == [
        (0, "0312340001"),
        (0, "0612340001"),
    ]
    assert sum(row.total for row in hourly) == 3


def test_an_empty_range_has_zero_rows_and_a_reversed_one_none(session: Session) -> None:
    rows = traffic(session, "0120000111", DAY, DAY + datetime.timedelta(days=6), Granularity.DAILY)
    assert len(rows) == 7 and all(row.total == 0 for row in rows)
    assert traffic(session, "0120000111", DAY, DAY, Granularity.DAILY, Grouping.DESTINATION) == []
    assert (
        traffic(session, "0120000111", DAY, DAY - datetime.timedelta(days=1), Granularity.DAILY)
        == []
    )
