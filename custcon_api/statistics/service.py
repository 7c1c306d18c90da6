"""Traffic statistics: who may read them, the range rules, the JSON and CSV forms.

Rules:
- Who may read a number's statistics is exactly who may see the number
  (`custcon_api.tollfree.service.authorized_number` with `Access.READ`): the operator,
  the administrator of the number's tenant, and users and toll-free viewers granted the
  number. Everyone else gets the toll-free endpoints' 403 (the same whether or not the
  number exists); an operator gets 404 for an unknown number; a path that is no
  toll-free number is a 422 naming `number`.
- The statistics are an option contract (`statistics` in the number's options): without
  it everyone but the operator gets 403 naming the missing option (the calls are
  recorded all the same, so a contract taken later covers past calls).
- The range is whole days of Asia/Tokyo, `from` to `to` inclusive, at most
  `MAX_RANGE_DAYS` days: `to` before `from`, or a longer range, is a 422 naming `to`
  (in the query). A malformed date is pydantic's 422 naming the parameter.
- The counting rules (categories, contiguous zero rows, per destination) are
  `cloudpbx.statistics`'s.
- CSV: the same rows and numbers as the JSON, one line per row, UTF-8 with a byte order
  mark (so Excel opens the Japanese text right) and CRLF line ends. Columns:
  `tollfree_number, date, [hour,] [destination,] total, connected, after_hours, busy,
  out_of_area, abandoned, other` (hour only hourly, destination only by destination);
  `lang=ja` gives the seed's Japanese headers (総呼数, 接続呼数, ...) instead.
"""

from __future__ import annotations

import csv
import datetime
import enum
import io

from sqlalchemy.orm import Session

from cloudpbx.callrecords import TollFreeCategory
from cloudpbx.domain import AccountRole
from cloudpbx.statistics import TIME_ZONE, Granularity, Grouping, traffic
from custcon_api.deps import Principal
from custcon_api.errors import FieldProblem, Forbidden, InvalidFields
from custcon_api.statistics.schemas import StatisticsPublic, TrafficRowPublic
from custcon_api.tollfree.service import Access, authorized_number

__all__ = [
    "MAX_RANGE_DAYS",
    "Language",
    "csv_document",
    "csv_file_name",
    "number_statistics",
]

MAX_RANGE_DAYS = 366
"""The longest range one request may ask for (a leap year)."""


class Language(enum.StrEnum):
    """The language of the CSV headers."""

    EN = "en"
    JA = "ja"


_HEADERS: dict[str, tuple[str, str]] = {
    "tollfree_number": ("tollfree_number", "着信課金番号"),
    "date": ("date", "日付"),
    "hour": ("hour", "時"),
    "destination": ("destination", "着信先番号"),
    "total": ("total", "総呼数"),
    TollFreeCategory.CONNECTED: ("connected", "接続呼数"),
    TollFreeCategory.AFTER_HOURS: ("after_hours", "時間外案内呼数"),
    TollFreeCategory.BUSY: ("busy", "話中呼数"),
    TollFreeCategory.OUT_OF_AREA: ("out_of_area", "指定地域外発信呼数"),
    TollFreeCategory.ABANDONED: ("abandoned", "呼出中放棄呼数"),
    TollFreeCategory.OTHER: ("other", "その他"),
}
"""Column -> (English header, Japanese header); the categories' are PRODUCT.md's."""
_COUNT_COLUMNS = ("total", *(category.value for category in TollFreeCategory))


def _check_range(first_day: datetime.date, last_day: datetime.date) -> None:
    if last_day < first_day:
        raise InvalidFields(
            [FieldProblem("to", "date_range.reversed", "`to` is before `from`")],
            location="query",
        )
    days = (last_day - first_day).days + 1
    if days > MAX_RANGE_DAYS:
        raise InvalidFields(
            [
                FieldProblem(
                    "to",
                    "date_range.too_long",
                    f"the range is {days} days; at most {MAX_RANGE_DAYS}",
                )
            ],
            location="query",
        )


def number_statistics(
    session: Session,
    principal: Principal,
    number_text: str,
    granularity: Granularity,
    first_day: datetime.date,
    last_day: datetime.date,
    grouping: Grouping,
) -> StatisticsPublic:
    """The number's traffic, if the caller may see the number (module rules).

    Raises:
        Forbidden, NotFound, InvalidFields: see `authorized_number`; InvalidFields also
            for a reversed or too long range (naming `to`).
    """
    number = authorized_number(session, principal, number_text, Access.READ)
    if "statistics" not in number.options and principal.account.role is not AccountRole.OPERATOR:
        raise Forbidden("the statistics option is not contracted for this number")
    _check_range(first_day, last_day)
    rows = traffic(session, number.number, first_day, last_day, granularity, grouping)
    hourly = granularity is Granularity.HOURLY
    return StatisticsPublic(
        tollfree_number=number.number,
        granularity=granularity,
        by=grouping,
        first_day=first_day,
        last_day=last_day,
        time_zone=str(TIME_ZONE),
        rows=[
            TrafficRowPublic(
                period_start=row.period_start,
                date=row.period_start.date(),
                hour=row.period_start.hour if hourly else None,
                destination=row.destination,
                total=row.total,
                connected=row.counts[TollFreeCategory.CONNECTED],
                after_hours=row.counts[TollFreeCategory.AFTER_HOURS],
                busy=row.counts[TollFreeCategory.BUSY],
                out_of_area=row.counts[TollFreeCategory.OUT_OF_AREA],
                abandoned=row.counts[TollFreeCategory.ABANDONED],
                other=row.counts[TollFreeCategory.OTHER],
            )
            for row in rows
        ],
    )


def csv_document(statistics: StatisticsPublic, language: Language = Language.EN) -> bytes:
    """The statistics as CSV: UTF-8 with a byte order mark, CRLF (module rules)."""
    columns: list[str] = ["tollfree_number", "date"]
    if statistics.granularity is Granularity.HOURLY:
        columns.append("hour")
    if statistics.by is Grouping.DESTINATION:
        columns.append("destination")
    columns += _COUNT_COLUMNS
    index = 1 if language is Language.JA else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_HEADERS[column][index] for column in columns])
    for row in statistics.rows:
        values = row.model_dump(mode="json")
        values["tollfree_number"] = statistics.tollfree_number
        writer.writerow(["" if values[column] is None else values[column] for column in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def csv_file_name(statistics: StatisticsPublic) -> str:
    """`tollfree-0120000111-hourly-20261101-20261130.csv` (ASCII only)."""
    return (
        f"tollfree-{statistics.tollfree_number}-{statistics.granularity.value}"
        f"{'-by-destination' if statistics.by is Grouping.DESTINATION else ''}"
        f"-{statistics.first_day:%Y%m%d}-{statistics.last_day:%Y%m%d}.csv"
    )
