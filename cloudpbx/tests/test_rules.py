"""The product's pure rules (`cloudpbx.rules`): numbers, destination sets, channels,
times of day, schedule overlaps and the same-contract-holder rule."""

from __future__ import annotations

import datetime

import pytest

from cloudpbx.domain import AreaKind, ScheduleAction, ScheduleRangeKind, TollFreeServiceType
from cloudpbx.rules import (
    PREFECTURE_CODES,
    TOLLFREE_OPTIONS,
    RuleProblem,
    ScheduleRangeValue,
    area_code_problem,
    channel_setting_problem,
    destination_set_problems,
    format_time_of_day,
    normalize_050_number,
    normalize_msisdn,
    normalize_national_number,
    normalize_tollfree_number,
    parse_time_of_day,
    same_contract_holder,
    schedule_overlaps,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0120-000-111", "0120000111"),
        ("0120000111", "0120000111"),
        ("0120 000 111", "0120000111"),
        ("+81120000111", "0120000111"),
        ("+81-120-000-111", "0120000111"),
        ("０１２０－０００－１１１", "0120000111"),  # full-width digits and hyphens
        ("0800-000-0000", "08000000000"),
        ("+818000000000", "08000000000"),
    ],
)
def test_tollfree_numbers_are_normalised(text: str, expected: str) -> None:
    assert normalize_tollfree_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["0120-000-11", "0120-000-1111", "0800-000-000", "0312340001", "0120-ABC-111", "", "０"],
)
def test_bad_tollfree_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        normalize_tollfree_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("03-1234-0001", "0312340001"),
        ("(03) 1234-0001", "0312340001"),
        ("+81-3-1234-0001", "0312340001"),
        ("045-123-4567", "0451234567"),
        ("090-1234-0001", "09012340001"),
    ],
)
def test_national_numbers(text: str, expected: str) -> None:
    assert normalize_national_number(text) == expected


@pytest.mark.parametrize("text", ["312340001", "0012340001", "03-1234-000", "031234000012", "x"])
def test_bad_national_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="Japanese telephone number"):
        normalize_national_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("090-1234-0001", "+819012340001"),
        ("+819012340001", "+819012340001"),
        ("+81 80 1234 0001", "+818012340001"),
        ("070-1234-0001", "+817012340001"),
    ],
)
def test_msisdns_are_stored_in_e164(text: str, expected: str) -> None:
    assert normalize_msisdn(text) == expected


@pytest.mark.parametrize("text", ["03-1234-0001", "050-1234-0001", "090-1234-000", "+1202555"])
def test_bad_msisdns(text: str) -> None:
    with pytest.raises(ValueError, match="mobile number"):
        normalize_msisdn(text)


def test_050_numbers() -> None:
    assert normalize_050_number("050-1234-0001") == "05012340001"
    assert normalize_050_number("+81-50-1234-0001") == "05012340001"
    for text in ("090-1234-0001", "050-1234-000", "0501234000100"):
        with pytest.raises(ValueError, match="050 number"):
            normalize_050_number(text)


def test_area_codes_and_prefectures() -> None:
    assert len(PREFECTURE_CODES) == 47 and {"01", "13", "27", "47"} <= PREFECTURE_CODES
    assert area_code_problem(AreaKind.PREFECTURE, "13") is None
    assert area_code_problem(AreaKind.PREFECTURE, "48") is not None
    assert area_code_problem(AreaKind.PREFECTURE, "1") is not None
    for code in ("03", "06", "045", "0995"):
        assert area_code_problem(AreaKind.AREA_CODE, code) is None, code
    for code in ("3", "0", "012345", "0x", "00"):
        assert area_code_problem(AreaKind.AREA_CODE, code) is not None, code
    for code in ("090", "080", "070", "050", "0120", "0800"):
        problem = area_code_problem(AreaKind.AREA_CODE, code)
        assert problem is not None and "geographic" in problem, code


def test_tollfree_options() -> None:
    assert "distribution" in TOLLFREE_OPTIONS and "after_hours" in TOLLFREE_OPTIONS


def test_a_good_destination_set_has_no_problem() -> None:
    destinations = [("0312340001", 3), ("0612340001", 1), ("0452340001", 0)]
    assert destination_set_problems(TollFreeServiceType.STANDARD, destinations) == []


@pytest.mark.parametrize(
    ("service_type", "weight", "highest"),
    [
        (TollFreeServiceType.STANDARD, 10, 9),
        (TollFreeServiceType.STANDARD, -1, 9),
        (TollFreeServiceType.OFFICE, 33, 32),
    ],
)
def test_weights_outside_the_service_type_range(
    service_type: TollFreeServiceType, weight: int, highest: int
) -> None:
    problems = destination_set_problems(service_type, [("0312340001", 1), ("0612340001", weight)])
    assert problems == [
        RuleProblem(
            "destinations[1].weight",
            f"must be from 0 to {highest} for a {service_type.value} number",
        )
    ]


def test_office_type_allows_32() -> None:
    assert destination_set_problems(TollFreeServiceType.OFFICE, [("0312340001", 32)]) == []


def test_destination_set_sizes_duplicates_and_all_zero() -> None:
    assert destination_set_problems(TollFreeServiceType.STANDARD, []) == [
        RuleProblem("destinations", "must name at least one destination")
    ]
    six = [(f"031234000{index}", 1) for index in range(6)]
    assert destination_set_problems(TollFreeServiceType.STANDARD, six) == [
        RuleProblem("destinations", "must name at most 5 destinations")
    ]
    five = six[:5]
    assert destination_set_problems(TollFreeServiceType.STANDARD, five) == []
    assert destination_set_problems(
        TollFreeServiceType.STANDARD, [("0312340001", 1), ("0312340001", 2)]
    ) == [RuleProblem("destinations[1].number", "appears twice in the set")]
    assert destination_set_problems(
        TollFreeServiceType.STANDARD, [("0312340001", 0), ("0612340001", 0)]
    ) == [RuleProblem("destinations", "at least one destination must have a weight above 0")]


def test_channel_setting() -> None:
    assert channel_setting_problem(10, 10) is None
    assert channel_setting_problem(0, 10) is None
    assert channel_setting_problem(11, 10) == "must not exceed the contracted 10 channels"
    assert channel_setting_problem(-1, 10) == "must be 0 or more"


@pytest.mark.parametrize(
    ("text", "end", "minutes"),
    [("00:00", False, 0), ("09:30", False, 570), ("23:59", False, 1439), ("24:00", True, 1440)],
)
def test_times_of_day(text: str, end: bool, minutes: int) -> None:
    assert parse_time_of_day(text, end=end) == minutes
    assert format_time_of_day(minutes) == text


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("24:00", False),
        ("24:01", True),
        ("25:00", True),
        ("9:00", False),
        ("09:60", False),
        ("0900", False),
        ("09:00\n", False),  # a trailing newline is not a time (fixed: `$` allowed it)
        (" 09:00", False),
    ],
)
def test_bad_times_of_day(text: str, end: bool) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_time_of_day(text, end=end)


def _weekly(
    schedule: str, weekday: int, start: str, end: str, action: ScheduleAction
) -> ScheduleRangeValue:
    return ScheduleRangeValue(
        schedule,
        action,
        ScheduleRangeKind.WEEKLY,
        weekday,
        None,
        parse_time_of_day(start),
        parse_time_of_day(end, end=True),
    )


AFTER = ScheduleAction.AFTER_HOURS
CHANGE = ScheduleAction.DESTINATION_CHANGE


def test_ranges_of_one_schedule_must_not_overlap() -> None:
    first = _weekly("night", 0, "18:00", "24:00", AFTER)
    second = _weekly("night", 0, "23:00", "24:00", AFTER)
    assert schedule_overlaps([first, second]) == [(first, second)]


def test_touching_ranges_do_not_overlap() -> None:
    ranges = [
        _weekly("night", 0, "00:00", "09:00", AFTER),
        _weekly("day", 0, "09:00", "18:00", AFTER),
        _weekly("night", 0, "18:00", "24:00", AFTER),
    ]
    assert schedule_overlaps(ranges) == []


def test_other_days_do_not_overlap() -> None:
    assert (
        schedule_overlaps(
            [
                _weekly("a", 0, "09:00", "18:00", AFTER),
                _weekly("a", 1, "09:00", "18:00", AFTER),
                ScheduleRangeValue("a", AFTER, ScheduleRangeKind.HOLIDAY, None, None, 540, 1080),
                ScheduleRangeValue(
                    "a", AFTER, ScheduleRangeKind.DATE, None, datetime.date(2026, 12, 31), 0, 1440
                ),
            ]
        )
        == []
    )


def test_same_action_in_two_schedules_overlaps_but_different_actions_may() -> None:
    after_hours = _weekly("closed", 5, "00:00", "24:00", AFTER)
    lunch = _weekly("lunch", 5, "12:00", "13:00", AFTER)
    change = _weekly("backup", 5, "10:00", "11:00", CHANGE)
    assert schedule_overlaps([after_hours, lunch, change]) == [(after_hours, lunch)]


def test_a_long_range_overlapping_several() -> None:
    whole_day = _weekly("a", 2, "00:00", "24:00", AFTER)
    morning = _weekly("a", 2, "08:00", "09:00", AFTER)
    evening = _weekly("a", 2, "20:00", "21:00", AFTER)
    assert schedule_overlaps([evening, morning, whole_day]) == [
        (whole_day, morning),
        (whole_day, evening),
    ]


def test_dated_and_holiday_overlaps() -> None:
    day = datetime.date(2026, 12, 31)
    first = ScheduleRangeValue("a", AFTER, ScheduleRangeKind.DATE, None, day, 0, 600)
    second = ScheduleRangeValue("b", AFTER, ScheduleRangeKind.DATE, None, day, 540, 700)
    other_day = ScheduleRangeValue(
        "b", AFTER, ScheduleRangeKind.DATE, None, datetime.date(2027, 1, 1), 0, 700
    )
    assert schedule_overlaps([first, second, other_day]) == [(first, second)]
    holiday = ScheduleRangeValue("a", AFTER, ScheduleRangeKind.HOLIDAY, None, None, 0, 600)
    holiday_too = ScheduleRangeValue("a", AFTER, ScheduleRangeKind.HOLIDAY, None, None, 300, 400)
    assert schedule_overlaps([holiday, holiday_too]) == [(holiday, holiday_too)]
    assert "holidays 00:00-10:00" in holiday.describe()
    assert "date 2026-12-31" in first.describe()


def test_same_contract_holder() -> None:
    assert same_contract_holder("デモ株式会社", "デモ株式会社")
    assert same_contract_holder("デモ株式会社", "デモ 株式会社")
    assert same_contract_holder("デモ株式会社", "デモ　株式会社")  # ideographic space
    assert same_contract_holder("ﾃﾞﾓ株式会社", "デモ株式会社")  # half-width katakana
    assert same_contract_holder("ＡＢＣ Corp", "ABC Corp")
    assert not same_contract_holder("デモ株式会社", "他社株式会社")
    assert not same_contract_holder("ABC Corp", "abc corp")  # case is part of the name
