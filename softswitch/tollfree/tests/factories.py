"""Builders of snapshot entries for the toll-free tests (plain values, no store)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from cloudpbx.domain import (
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
)
from cloudpbx.snapshot import (
    DestinationEntry,
    DestinationSetEntry,
    ScheduleEntry,
    ScheduleRangeEntry,
    TollFreeEntry,
)

TOLLFREE_NUMBER = "0120000111"


def destination_set(
    weights: Sequence[int], name: str = "default", trunk_name: str = "pstn"
) -> DestinationSetEntry:
    """A set of destinations 031234000N with `weights`, in order."""
    return DestinationSetEntry(
        name,
        tuple(
            DestinationEntry(f"03123400{index:02d}", weight, trunk_name)
            for index, weight in enumerate(weights)
        ),
    )


def weekly(weekday: int, start: str, end: str) -> ScheduleRangeEntry:
    return ScheduleRangeEntry(
        ScheduleRangeKind.WEEKLY, weekday, None, _minutes(start), _minutes(end)
    )


def dated(day: datetime.date, start: str, end: str) -> ScheduleRangeEntry:
    return ScheduleRangeEntry(ScheduleRangeKind.DATE, None, day, _minutes(start), _minutes(end))


def holidays(start: str = "00:00", end: str = "24:00") -> ScheduleRangeEntry:
    return ScheduleRangeEntry(
        ScheduleRangeKind.HOLIDAY, None, None, _minutes(start), _minutes(end)
    )


def schedule(
    name: str,
    action: ScheduleAction,
    ranges: Iterable[ScheduleRangeEntry],
    *,
    destination_set_name: str | None = None,
    enabled: bool = True,
) -> ScheduleEntry:
    return ScheduleEntry(name, action, destination_set_name, enabled, tuple(ranges))


ALL_OPTIONS = ("distribution", "destination_change", "after_hours", "area_designation")
"""Every routing option contract (`softswitch.tollfree.options`)."""


def tollfree(
    *,
    number: str = TOLLFREE_NUMBER,
    sets: Iterable[DestinationSetEntry] = (),
    schedules: Iterable[ScheduleEntry] = (),
    strict: bool = False,
    contracted_channels: int = 10,
    channel_setting: int = 10,
    whole_country: bool = True,
    prefectures: Iterable[str] = (),
    area_codes: Iterable[str] = (),
    allow_fixed: bool = True,
    allow_mobile: bool = True,
    allow_withheld: bool = True,
    options: Iterable[str] = ALL_OPTIONS,
    no_answer_timeout_seconds: int = 30,
) -> TollFreeEntry:
    set_list = list(sets) or [destination_set([1])]
    return TollFreeEntry(
        number=number,
        tenant_name="demo",
        service_type=TollFreeServiceType.STANDARD,
        contracted_channels=contracted_channels,
        channel_setting=channel_setting,
        strict_distribution=strict,
        after_hours_announcement="after_hours_ja",
        refusal_announcement="out_of_area_ja",
        refusal_action=RefusalAction.ANNOUNCEMENT,
        designated_whole_country=whole_country,
        designated_prefectures=frozenset(prefectures),
        designated_area_codes=frozenset(area_codes),
        allow_fixed=allow_fixed,
        allow_mobile=allow_mobile,
        allow_withheld=allow_withheld,
        options=frozenset(options),
        destination_sets=MappingProxyType({entry.name: entry for entry in set_list}),
        schedules=tuple(schedules),
        no_answer_timeout_seconds=no_answer_timeout_seconds,
    )


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)
