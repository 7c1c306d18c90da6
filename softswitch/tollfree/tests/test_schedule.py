"""Schedules with an explicit clock: weekly boundaries, midnight, holidays, exceptions."""

from __future__ import annotations

import datetime

import pytest

from cloudpbx.domain import ScheduleAction
from cloudpbx.snapshot import TollFreeEntry
from softswitch.tollfree import decide, is_public_holiday

from .factories import dated, destination_set, holidays, schedule, tollfree, weekly

JST = datetime.timezone(datetime.timedelta(hours=9))
FRIDAY = datetime.date(2026, 1, 9)
AFTER_HOURS = ScheduleAction.AFTER_HOURS
CHANGE = ScheduleAction.DESTINATION_CHANGE


def at(day: datetime.date, hour: int, minute: int = 0, second: int = 0) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=JST)


def _office_hours_number() -> TollFreeEntry:
    # Closed weekdays 18:00-24:00 and 00:00-09:00, and all day on holidays.
    closed = [weekly(day, "18:00", "24:00") for day in range(5)]
    closed += [weekly(day, "00:00", "09:00") for day in range(5)]
    return tollfree(
        sets=[destination_set([1]), destination_set([1], name="lunch")],
        schedules=[
            schedule("closed", AFTER_HOURS, [*closed, holidays()]),
            schedule(
                "lunch",
                CHANGE,
                [weekly(day, "12:00", "13:00") for day in range(5)],
                destination_set_name="lunch",
            ),
        ],
    )


def test_friday_evening_boundary() -> None:
    entry = _office_hours_number()
    open_ = decide(entry, at(FRIDAY, 17, 59, 59))
    assert not open_.after_hours
    assert open_.destination_set_name == "default"
    assert open_.announcement is None
    closed = decide(entry, at(FRIDAY, 18))
    assert closed.after_hours
    assert closed.announcement == "after_hours_ja"
    assert closed.schedule_name == "closed"


def test_midnight_between_friday_and_saturday() -> None:
    entry = _office_hours_number()
    assert decide(entry, at(FRIDAY, 23, 59, 59)).after_hours
    # Saturday has no range at all: the default set, not after-hours.
    saturday = decide(entry, at(FRIDAY + datetime.timedelta(days=1), 0))
    assert not saturday.after_hours
    # Monday 00:00-09:00 is closed, 09:00 opens (not the next Monday: 成人の日).
    monday = FRIDAY + datetime.timedelta(days=10)
    assert not is_public_holiday(monday)
    assert is_public_holiday(FRIDAY + datetime.timedelta(days=3))
    assert decide(entry, at(FRIDAY + datetime.timedelta(days=3), 9)).after_hours
    assert decide(entry, at(monday, 8, 59, 59)).after_hours
    assert not decide(entry, at(monday, 9)).after_hours


def test_a_utc_instant_is_judged_in_tokyo() -> None:
    entry = _office_hours_number()
    # 09:00 UTC on Friday is 18:00 JST.
    utc = datetime.datetime(2026, 1, 9, 9, 0, tzinfo=datetime.UTC)
    assert decide(entry, utc).after_hours


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(tollfree(), datetime.datetime(2026, 1, 9, 12, 0))


def test_new_year_holiday() -> None:
    entry = _office_hours_number()
    new_year = datetime.date(2026, 1, 1)  # a Thursday, 元日
    assert is_public_holiday(new_year)
    assert decide(entry, at(new_year, 11)).after_hours
    assert not decide(entry, at(new_year + datetime.timedelta(days=1), 11)).after_hours


def test_substitute_holiday() -> None:
    entry = _office_hours_number()
    substitute = datetime.date(2026, 5, 6)  # Wednesday, 憲法記念日 振替休日
    assert substitute.weekday() == 2
    assert is_public_holiday(substitute)
    assert decide(entry, at(substitute, 11)).after_hours
    assert not decide(entry, at(datetime.date(2026, 5, 7), 11)).after_hours


def test_dated_exception_adds_to_the_day() -> None:
    closing_day = datetime.date(2026, 12, 28)  # a Monday
    entry = tollfree(
        sets=[destination_set([1]), destination_set([1], name="lunch")],
        schedules=[
            schedule("year end", AFTER_HOURS, [dated(closing_day, "15:00", "24:00")]),
            schedule(
                "lunch", CHANGE, [weekly(0, "12:00", "13:00")], destination_set_name="lunch"
            ),
        ],
    )
    # The weekly range of the same day still applies: the dated range adds, not replaces.
    assert decide(entry, at(closing_day, 12, 30)).destination_set_name == "lunch"
    assert not decide(entry, at(closing_day, 14, 59, 59)).after_hours
    assert decide(entry, at(closing_day, 15)).after_hours
    # Only on that date.
    next_monday = closing_day + datetime.timedelta(days=7)
    assert not decide(entry, at(next_monday, 15)).after_hours


def test_after_hours_wins_over_destination_change() -> None:
    entry = tollfree(
        sets=[destination_set([1]), destination_set([1], name="osaka")],
        schedules=[
            schedule(
                "evening", CHANGE, [weekly(4, "17:00", "22:00")], destination_set_name="osaka"
            ),
            schedule("closed", AFTER_HOURS, [weekly(4, "18:00", "24:00")]),
        ],
    )
    early = decide(entry, at(FRIDAY, 17, 30))
    assert (early.after_hours, early.destination_set_name) == (False, "osaka")
    late = decide(entry, at(FRIDAY, 18))
    assert late.after_hours
    assert late.schedule_name == "closed"


def test_disabled_schedules_are_ignored() -> None:
    entry = tollfree(
        schedules=[schedule("closed", AFTER_HOURS, [weekly(4, "00:00", "24:00")], enabled=False)]
    )
    assert not decide(entry, at(FRIDAY, 12)).after_hours


def test_a_dated_destination_change_is_more_specific_than_a_weekly_one() -> None:
    entry = tollfree(
        sets=[
            destination_set([1]),
            destination_set([1], name="weekly"),
            destination_set([1], name="special"),
        ],
        schedules=[
            schedule(
                "weekly", CHANGE, [weekly(4, "09:00", "18:00")], destination_set_name="weekly"
            ),
            schedule(
                "special", CHANGE, [dated(FRIDAY, "10:00", "11:00")], destination_set_name="special"
            ),
        ],
    )
    assert decide(entry, at(FRIDAY, 9, 30)).destination_set_name == "weekly"
    assert decide(entry, at(FRIDAY, 10, 30)).destination_set_name == "special"


def test_a_change_to_a_missing_set_falls_back_to_default() -> None:
    entry = tollfree(
        schedules=[
            schedule("x", CHANGE, [weekly(4, "00:00", "24:00")], destination_set_name="gone")
        ]
    )
    decision = decide(entry, at(FRIDAY, 12))
    assert decision.destination_set_name == "default"
    assert decision.schedule_name is None
