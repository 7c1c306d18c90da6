"""Schedules (スケジュール): what a toll-free number does at a given moment.

Pure: `decide(entry, now)` takes the time as an argument and never reads a clock (the
switch passes its injectable clock's value; STYLE.md principle 2). Japanese public
holidays come from jpholiday's built-in rules (no I/O). The only file read is the
system tz database entry for Asia/Tokyo, once, when the module is imported.

Rules:
- Times are Asia/Tokyo (zoneinfo). `now` must be timezone-aware; it is converted, so a
  UTC instant and its JST wall time decide alike. Japan has no daylight saving time.
- A range [start_minute, end_minute) is in force when the JST minute of the day (seconds
  dropped: 17:59:59 is minute 1079) is at least `start_minute` and below `end_minute`;
  1440 as the end covers the day's last minute. A range never crosses midnight (a
  night band is two ranges, one on each day).
- The days of a range: `weekly` every week on its weekday (0 = Monday); `date` one
  calendar date; `holiday` every Japanese public holiday (jpholiday: 国民の祝日,
  振替休日 substitute holidays and 国民の休日 bridge days).
- Ranges add up: on a day, every range naming that day (its weekday's weekly ranges,
  that date's dated ranges, the holiday ranges if it is a holiday) applies. A dated
  range (a dated exception) or a holiday range adds a period to the day; it does not
  suppress the weekly ranges of that day, of its own schedule or of others. (Schedules
  say when an action is in force, not when the office is open, so an extra closure is
  an extra range; opening on a day a weekly range closes means editing that range.)
- Disabled schedules are ignored.
- After-hours wins: when any after-hours range is in force, the call gets the after-hours
  announcement, whatever destination change is also in force (NTT West: "受付先変更 and
  時間外案内 overlap: 時間外案内 wins", PEERS.md §0).
- Otherwise a destination change in force selects its destination set. Provisioning
  refuses two destination-change ranges on the same days at once; should two still
  apply (a dated or holiday range over a weekly one), the more specific range wins
  (`date`, then `holiday`, then `weekly`), then the schedule stored first.
- A destination change naming a set the number lacks is skipped (the next one applies,
  else `default`); provisioning refuses such a schedule.
- Otherwise the `default` destination set is in force.
- Option contracts (`after_hours`, `destination_change` in `TollFreeEntry.options`) are
  enforced where settings are written; this function applies the schedules the snapshot
  holds.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import jpholiday

from cloudpbx.domain import ScheduleAction, ScheduleRangeKind
from cloudpbx.snapshot import ScheduleRangeEntry, TollFreeEntry

__all__ = [
    "DEFAULT_DESTINATION_SET",
    "TOKYO",
    "ScheduleDecision",
    "decide",
    "is_public_holiday",
    "range_in_force",
]

TOKYO = ZoneInfo("Asia/Tokyo")
DEFAULT_DESTINATION_SET = "default"

# More specific day kinds win between destination changes (module rules).
_SPECIFICITY = {
    ScheduleRangeKind.DATE: 0,
    ScheduleRangeKind.HOLIDAY: 1,
    ScheduleRangeKind.WEEKLY: 2,
}


@dataclass(frozen=True, slots=True)
class ScheduleDecision:
    """What the schedules say for one call."""

    after_hours: bool
    """True: answer and play `announcement`, then hang up (時間外案内; counts as
    `after_hours`)."""
    announcement: str | None
    """The after-hours announcement's name when `after_hours`, else None."""
    destination_set_name: str
    """The destination set in force (`default` unless a destination change applies);
    meaningful when not `after_hours`."""
    schedule_name: str | None
    """The schedule that decided (after-hours or destination change); None: default."""


def is_public_holiday(day: datetime.date) -> bool:
    """True on a Japanese public holiday, substitute holiday or bridge day (jpholiday)."""
    return jpholiday.is_holiday(day)


def range_in_force(
    schedule_range: ScheduleRangeEntry, day: datetime.date, minute: int, holiday: bool
) -> bool:
    """True when `schedule_range` covers `minute` (0-1439) of the JST date `day`.

    Args:
        holiday: whether `day` is a public holiday (`is_public_holiday(day)`).
    """
    if not schedule_range.start_minute <= minute < schedule_range.end_minute:
        return False
    if schedule_range.kind is ScheduleRangeKind.WEEKLY:
        return schedule_range.weekday == day.weekday()
    if schedule_range.kind is ScheduleRangeKind.DATE:
        return schedule_range.day == day
    return holiday


def decide(entry: TollFreeEntry, now: datetime.datetime) -> ScheduleDecision:
    """What the schedules of `entry` say at `now` (see the module rules).

    Args:
        entry: the toll-free number.
        now: the moment of the call, timezone-aware.

    Raises:
        ValueError: `now` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(TOKYO)
    day = local.date()
    minute = local.hour * 60 + local.minute
    holiday = is_public_holiday(day)

    best_change: tuple[int, int, str, str] | None = None
    for order, schedule in enumerate(entry.schedules):
        if not schedule.enabled:
            continue
        in_force = [
            schedule_range
            for schedule_range in schedule.ranges
            if range_in_force(schedule_range, day, minute, holiday)
        ]
        if not in_force:
            continue
        if schedule.action is ScheduleAction.AFTER_HOURS:
            return ScheduleDecision(
                after_hours=True,
                announcement=entry.after_hours_announcement,
                destination_set_name=DEFAULT_DESTINATION_SET,
                schedule_name=schedule.name,
            )
        set_name = schedule.destination_set_name
        if set_name is None or set_name not in entry.destination_sets:
            continue
        specificity = min(_SPECIFICITY[schedule_range.kind] for schedule_range in in_force)
        candidate = (specificity, order, schedule.name, set_name)
        if best_change is None or candidate[:2] < best_change[:2]:
            best_change = candidate
    if best_change is not None:
        _specificity, _order, schedule_name, set_name = best_change
        return ScheduleDecision(False, None, set_name, schedule_name)
    return ScheduleDecision(False, None, DEFAULT_DESTINATION_SET, None)
