"""The product's rules on numbers, toll-free settings and contracts: pure functions.

Provisioning files and the Customer Control API both validate with these, so a value
one of them accepts the other accepts too. Each checker returns problems as
`RuleProblem(field, message)` with `field` a path relative to what was checked
(`destinations[2].weight`), or raises `ValueError` with the message for single values;
the caller prefixes its own key path and turns them into its error format.

Rules:
- Toll-free numbers are stored in national form without separators: `0120` + 6 digits
  or `0800` + 7 digits. Input may carry hyphens, spaces or the E.164 form (`+81120...`).
- Destination and other Japanese numbers are stored in national form (`0312340001`):
  a leading 0 and 10 or 11 digits; E.164 `+81...` input is converted.
- Mobile line numbers (MSISDN, 2in1 B numbers) are stored in E.164 (`+819012340001`);
  national `070`/`080`/`090` input is converted. 050 numbers are stored in national form.
- A destination set has 1 to 5 destinations, distinct numbers, weights 0-9 (0-32 for the
  office type) and at least one weight above 0 (a set nobody is reached by is refused).
- Times of day are `HH:MM`, 00:00 to 24:00 (24:00 only as an end); a range is
  [start, end) with start before end.
- Schedule ranges overlap when they name the same days (the same weekday, the same date,
  or both "holidays") and their times intersect. Ranges of one schedule must not overlap,
  nor ranges of two schedules with the same action (two destination changes at once
  would be ambiguous). An after-hours range may overlap a destination-change range:
  after-hours wins (issue 5).
- The channel setting is 0 to the contracted channels.
- A SIP domain is a host name (lower case) or an IP literal (canonical); a trunk's host
  and trusted sources are IP literals (the switch does not resolve names), a source
  optionally with a port: `ADDRESS`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT`.
- A trunk's `caller_area_header` and `abroad_header` are SIP header names: RFC 3261
  §25.1 tokens of at most 64 characters.
- Same contract holder: names compare after Unicode NFKC normalisation with all white
  space removed (`デモ株式会社` == `デモ 株式会社`; full-width and half-width forms match).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloudpbx.domain import (
    MAX_TOLLFREE_DESTINATIONS,
    AreaKind,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
    max_destination_weight,
)

__all__ = [
    "PREFECTURE_CODES",
    "TOLLFREE_OPTIONS",
    "RuleProblem",
    "ScheduleRangeValue",
    "area_code_problem",
    "channel_setting_problem",
    "destination_set_problems",
    "format_time_of_day",
    "check_header_name",
    "normalize_ip_address",
    "normalize_sip_domain",
    "parse_source_address",
    "normalize_050_number",
    "normalize_msisdn",
    "normalize_national_number",
    "normalize_tollfree_number",
    "parse_time_of_day",
    "same_contract_holder",
    "schedule_overlaps",
]

TOLLFREE_OPTIONS = frozenset(
    {"distribution", "destination_change", "after_hours", "area_designation", "statistics"}
)
"""Option contracts a toll-free number may hold (オプション機能契約内容)."""

PREFECTURE_CODES = frozenset(f"{code:02d}" for code in range(1, 48))
"""JIS X 0401 prefecture codes, 01 Hokkaido ... 13 Tokyo ... 27 Osaka ... 47 Okinawa."""

_SEPARATORS = re.compile(r"[\s\-()]")


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One broken rule: where (relative path, "" for the value itself) and why."""

    field: str
    message: str


def _digits(text: str) -> str:
    """`text` without hyphens, spaces and parentheses; full-width digits made ASCII."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))


def normalize_tollfree_number(text: str) -> str:
    """The national form of a toll-free number (`0120000111`).

    Raises:
        ValueError: not a 0120 (10 digits) or 0800 (11 digits) number.
    """
    digits = _digits(text)
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("must be a toll-free number such as 0120-000-111 or 0800-000-0000")
    if (digits.startswith("0120") and len(digits) == 10) or (
        digits.startswith("0800") and len(digits) == 11
    ):
        return digits
    raise ValueError("must be a 0120 number of 10 digits or a 0800 number of 11 digits")


def normalize_national_number(text: str) -> str:
    """The national form of a Japanese telephone number (`0312340001`).

    Raises:
        ValueError: not 10 or 11 digits starting with 0 (after converting `+81`).
    """
    digits = _digits(text)
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    if (
        not digits.isascii()
        or not digits.isdigit()
        or not digits.startswith("0")
        or digits.startswith("00")
        or len(digits) not in (10, 11)
    ):
        raise ValueError("must be a Japanese telephone number: 0 and 9 or 10 more digits")
    return digits


def normalize_msisdn(text: str) -> str:
    """The E.164 form of a Japanese mobile number (`+819012340001`).

    Raises:
        ValueError: not a 070/080/090 number of 11 digits (national) or its E.164 form.
    """
    digits = _digits(text)
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    if (
        digits.isascii()
        and digits.isdigit()
        and len(digits) == 11
        and digits[:3] in ("070", "080", "090")
    ):
        return "+81" + digits[1:]
    raise ValueError("must be a mobile number: 070, 080 or 090 and 8 digits, or +8170/80/90")


def normalize_050_number(text: str) -> str:
    """The national form of an 050 IP-phone number (`05012340001`).

    Raises:
        ValueError: not 050 followed by 8 digits (or `+8150...`).
    """
    digits = _digits(text)
    if digits.startswith("+81"):
        digits = "0" + digits[3:]
    if digits.isascii() and digits.isdigit() and len(digits) == 11 and digits.startswith("050"):
        return digits
    raise ValueError("must be an 050 number: 050 and 8 digits")


def area_code_problem(kind: AreaKind, code: str) -> str | None:
    """Why `code` is not a designated area of `kind`, or None."""
    if kind is AreaKind.PREFECTURE:
        if code not in PREFECTURE_CODES:
            return "must be a JIS prefecture code from 01 to 47"
        return None
    if not (code.isascii() and code.isdigit() and code.startswith("0") and 2 <= len(code) <= 5):
        return "must be an area code: 0 and 1 to 4 digits, such as 03 or 06"
    if code.startswith(("00", "050", "070", "080", "090", "0120", "0800")):
        return "must be a geographic area code (not a mobile, 050 or toll-free prefix)"
    return None


def destination_set_problems(
    service_type: TollFreeServiceType, destinations: Sequence[tuple[str, int]]
) -> list[RuleProblem]:
    """Problems of a destination set given as (national number, weight) pairs."""
    problems: list[RuleProblem] = []
    if not destinations:
        problems.append(RuleProblem("destinations", "must name at least one destination"))
    if len(destinations) > MAX_TOLLFREE_DESTINATIONS:
        problems.append(
            RuleProblem(
                "destinations", f"must name at most {MAX_TOLLFREE_DESTINATIONS} destinations"
            )
        )
    highest = max_destination_weight(service_type)
    seen: set[str] = set()
    for index, (number, weight) in enumerate(destinations):
        if not 0 <= weight <= highest:
            problems.append(
                RuleProblem(
                    f"destinations[{index}].weight",
                    f"must be from 0 to {highest} for a {service_type.value} number",
                )
            )
        if number in seen:
            problems.append(
                RuleProblem(f"destinations[{index}].number", "appears twice in the set")
            )
        seen.add(number)
    if destinations and all(weight <= 0 for _number, weight in destinations):
        problems.append(
            RuleProblem("destinations", "at least one destination must have a weight above 0")
        )
    return problems


def channel_setting_problem(channel_setting: int, contracted_channels: int) -> str | None:
    """Why `channel_setting` is not allowed under `contracted_channels`, or None."""
    if channel_setting < 0:
        return "must be 0 or more"
    if channel_setting > contracted_channels:
        return f"must not exceed the contracted {contracted_channels} channels"
    return None


_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def parse_time_of_day(text: str, *, end: bool = False) -> int:
    """Minutes since midnight of `HH:MM` (24:00 = 1440, allowed only when `end`).

    Raises:
        ValueError: not a time of day.
    """
    # fullmatch: `$` alone would also accept a trailing newline ("09:00\n").
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError("must be a time of day HH:MM, 00:00 to 23:59 (24:00 as an end)")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 1440 or (minutes == 1440 and not end):
        raise ValueError("must be 00:00 to 23:59 (24:00 only as an end)")
    return minutes


def format_time_of_day(minutes: int) -> str:
    """`HH:MM` of minutes since midnight (1440 is `24:00`)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class ScheduleRangeValue:
    """A schedule range as the overlap rule sees it."""

    schedule: str
    """The schedule's name."""
    action: ScheduleAction
    kind: ScheduleRangeKind
    weekday: int | None
    day: datetime.date | None
    start_minute: int
    end_minute: int

    @property
    def days_key(self) -> tuple[ScheduleRangeKind, int | datetime.date | None]:
        """Ranges with equal keys name the same days."""
        return (self.kind, self.weekday if self.kind is ScheduleRangeKind.WEEKLY else self.day)

    def describe(self) -> str:
        """`weekday 0 09:00-18:00` and the like, for messages."""
        if self.kind is ScheduleRangeKind.WEEKLY:
            days = f"weekday {self.weekday}"
        elif self.kind is ScheduleRangeKind.DATE:
            days = f"date {self.day}"
        else:
            days = "holidays"
        times = f"{format_time_of_day(self.start_minute)}-{format_time_of_day(self.end_minute)}"
        return f"{self.schedule!r} {days} {times}"


def schedule_overlaps(
    ranges: Iterable[ScheduleRangeValue],
) -> list[tuple[ScheduleRangeValue, ScheduleRangeValue]]:
    """Pairs of ranges that must not overlap but do (see the module rules)."""
    ordered = sorted(
        ranges, key=lambda value: (str(value.days_key), value.start_minute, value.end_minute)
    )
    found: list[tuple[ScheduleRangeValue, ScheduleRangeValue]] = []
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            # Sorted by days, then start: the rest start later or name other days.
            if second.days_key != first.days_key or second.start_minute >= first.end_minute:
                break
            same_schedule = first.schedule == second.schedule
            if same_schedule or first.action is second.action:
                found.append((first, second))
    return found


def _holder_key(name: str) -> str:
    return "".join(unicodedata.normalize("NFKC", name).split())


def same_contract_holder(first: str, second: str) -> bool:
    """True when two contract holder names name the same holder (see the module rules)."""
    return _holder_key(first) == _holder_key(second)


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]{1,64}$")
"""RFC 3261 §25.1 `token` (header names are tokens, §7.3.1), at most 64 characters (the
column's length)."""


def check_header_name(text: str) -> str:
    """A SIP header name a trunk asserts something in (`P-Visited-Network-ID`), unchanged.

    Raises:
        ValueError: not an RFC 3261 §25.1 token of 1 to 64 characters.
    """
    if not _TOKEN.match(text):
        raise ValueError("must be a SIP header name (an RFC 3261 token, at most 64 characters)")
    return text


def normalize_ip_address(text: str) -> str:
    """The canonical text of an IP literal (brackets allowed for IPv6).

    Raises:
        ValueError: not an IP literal.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("must be an IP address (the switch does not resolve names)") from None


def normalize_sip_domain(text: str) -> str:
    """A tenant's SIP domain: a canonical IP literal or a lower-case host name.

    Raises:
        ValueError: neither.
    """
    try:
        return normalize_ip_address(text)
    except ValueError:
        pass
    lowered = text.lower()
    if not _HOSTNAME.match(lowered):
        raise ValueError("must be a host name or an IP address")
    return lowered


def parse_source_address(text: str) -> tuple[str, int | None]:
    """(canonical address, port or None) of `ADDRESS`, `IPv4:PORT`, `[IPv6]` or
    `[IPv6]:PORT`.

    Raises:
        ValueError: none of these forms.
    """
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("must be ADDRESS, IPv4:PORT or [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError("must be an IP address with an optional :port") from None
    if port_text is None:
        return address, None
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    return address, int(port_text)
