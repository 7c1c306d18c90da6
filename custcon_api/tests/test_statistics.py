"""The traffic statistics endpoint: JSON and CSV (the same numbers; BOM; Japanese
headers), who may read them (exactly who may see the number), and the 422s.

The demo file's number 0120-000-111 (tenant `demo`) is granted to tf@demo; the records
are written straight into the store, as the switch's ingester does.
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.callrecords import TollFreeCategory
from cloudpbx.models import TollFreeCallRecordRow
from cloudpbx.statistics import TIME_ZONE

from .conftest import bearer, token_for

NUMBER = "0120000111"
PATH = f"/api/v1/tollfree-numbers/{NUMBER}/statistics"
DAY = datetime.date(2027, 1, 15)
ENGLISH = ["total", "connected", "after_hours", "busy", "out_of_area", "abandoned", "other"]
JAPANESE = [
    "総呼数",
    "接続呼数",
    "時間外案内呼数",
    "話中呼数",
    "指定地域外発信呼数",
    "呼出中放棄呼数",
    "その他",
]


def _tokyo(day: datetime.date, hour: int) -> float:
    return datetime.datetime.combine(day, datetime.time(hour), TIME_ZONE).timestamp()


@pytest.fixture
def records(session_factory: sessionmaker[Session]) -> None:
    rows = [
        (9, TollFreeCategory.CONNECTED, "0312340001"),
        (9, TollFreeCategory.CONNECTED, "0612340001"),
        (9, TollFreeCategory.BUSY, "0312340001"),
        (10, TollFreeCategory.ABANDONED, "0312340001"),
        (20, TollFreeCategory.AFTER_HOURS, None),
        (20, TollFreeCategory.OUT_OF_AREA, None),
        (23, TollFreeCategory.OTHER, "0612340001"),
    ]
    with session_factory() as session:
        for index, (hour, category, destination) in enumerate(rows):
            arrival = _tokyo(DAY, hour) + index
            session.add(
                TollFreeCallRecordRow(
                    call_id=f"call-{index}",
                    tollfree_number=NUMBER,
                    tenant_name="demo",
                    caller="0312345678",
                    destination=destination,
                    category=category,
                    final_status=200,
                    arrival_time=arrival,
                    answer_time=None,
                    end_time=arrival + 5,
                )
            )
        session.commit()


def _query(**extra: str) -> dict[str, str]:
    return {"granularity": "hourly", "from": DAY.isoformat(), "to": DAY.isoformat(), **extra}


def _csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))


@pytest.mark.usefixtures("records")
def test_hourly_json(client: TestClient) -> None:
    response = client.get(PATH, params=_query(), headers=bearer(token_for(client, "tf@demo")))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tollfree_number"] == NUMBER
    assert body["from"] == body["to"] == DAY.isoformat()
    assert body["time_zone"] == "Asia/Tokyo"
    rows = body["rows"]
    assert len(rows) == 24
    assert rows[9]["period_start"] == "2027-01-15T09:00:00+09:00"
    assert (rows[9]["hour"], rows[9]["total"], rows[9]["connected"], rows[9]["busy"]) == (
        9,
        3,
        2,
        1,
    )
    assert rows[20]["after_hours"] == rows[20]["out_of_area"] == 1
    assert sum(row["total"] for row in rows) == 7
    for row in rows:
        assert row["total"] == sum(row[name] for name in ENGLISH[1:])


@pytest.mark.usefixtures("records")
@pytest.mark.parametrize("granularity", ["hourly", "daily"])
@pytest.mark.parametrize("by", ["number", "destination"])
def test_the_csv_has_the_json_numbers(client: TestClient, granularity: str, by: str) -> None:
    headers = bearer(token_for(client, "admin@demo"))
    query = _query(granularity=granularity, by=by)
    json_rows: list[dict[str, Any]] = client.get(PATH, params=query, headers=headers).json()["rows"]
    response = client.get(PATH, params={**query, "format": "csv"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and ".csv" in disposition
    header, *lines = _csv_rows(response.content)
    expected_header = ["tollfree_number", "date"]
    expected_header += ["hour"] if granularity == "hourly" else []
    expected_header += ["destination"] if by == "destination" else []
    assert header == expected_header + ENGLISH
    assert len(lines) == len(json_rows)
    for line, row in zip(lines, json_rows, strict=True):
        values = dict(zip(header, line, strict=True))
        assert values["tollfree_number"] == NUMBER
        assert values["date"] == row["date"]
        if granularity == "hourly":
            assert int(values["hour"]) == row["hour"]
        if by == "destination":
            assert values["destination"] == row["destination"]
        assert [int(values[name]) for name in ENGLISH] == [row[name] for name in ENGLISH]
    if by == "destination":
        assert sum(int(dict(zip(header, line, strict=True))["total"]) for line in lines) == 5


@pytest.mark.usefixtures("records")
def test_japanese_headers_and_accept(client: TestClient) -> None:
    headers = {**bearer(token_for(client, "operator")), "Accept": "text/csv"}
    response = client.get(PATH, params=_query(granularity="daily", lang="ja"), headers=headers)
    assert response.status_code == 200
    header, line = _csv_rows(response.content)
    assert header == ["着信課金番号", "日付", *JAPANESE]
    assert line[:2] == [NUMBER, DAY.isoformat()]
    assert line[2:] == ["7", "2", "1", "1", "1", "1", "1"]


# Who may read and what is refused do not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("login", "status"),
    [
        ("operator", 200),
        ("admin@demo", 200),
        ("tf@demo", 200),  # a viewer granted the number
        ("user1001@demo", 403),  # not granted
        ("admin@other", 403),  # another tenant
        ("user1001@other", 403),
        ("tf@other", 403),
    ],
)
def test_who_may_read(client: TestClient, login: str, status: int) -> None:
    response = client.get(PATH, params=_query(), headers=bearer(token_for(client, login)))
    assert response.status_code == status, response.text


def test_the_refusals(client: TestClient) -> None:
    assert client.get(PATH, params=_query()).status_code == 401
    operator = bearer(token_for(client, "operator"))
    unknown = "/api/v1/tollfree-numbers/0120999999/statistics"
    assert client.get(unknown, params=_query(), headers=operator).status_code == 404
    viewer = bearer(token_for(client, "tf@demo"))
    hidden = client.get(unknown, params=_query(), headers=viewer)
    assert hidden.status_code == 403  # the same 403 as for a number that exists


# Who may read and what is refused do not depend on the database: SQLite only.
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2027-01-15", "to": "2027-01-14"}, "to"),
        ({"from": "2026-01-01", "to": "2027-01-15"}, "to"),
        ({"from": "2027-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"granularity": "weekly"}, "granularity"),
        ({"by": "caller"}, "by"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: TestClient, query: dict[str, str], field: str
) -> None:
    response = client.get(
        PATH, params=_query(**query), headers=bearer(token_for(client, "operator"))
    )
    assert response.status_code == 422, response.text
    assert [detail["loc"] for detail in response.json()["detail"]] == [["query", field]]


def test_a_366_day_range_is_allowed(client: TestClient) -> None:
    query = _query(granularity="daily", **{"from": "2028-01-01", "to": "2028-12-31"})
    response = client.get(PATH, params=query, headers=bearer(token_for(client, "operator")))
    assert response.status_code == 200
    assert len(response.json()["rows"]) == 366


@pytest.mark.usefixtures("records")
def test_without_the_statistics_option_only_the_operator_reads_them(client: TestClient) -> None:
    operator = bearer(token_for(client, "operator"))
    contract = client.patch(
        f"/api/v1/tollfree-numbers/{NUMBER}/contract",
        json={"options": ["distribution", "after_hours"]},
        headers=operator,
    )
    assert contract.status_code == 200, contract.text
    for login in ("tf@demo", "admin@demo"):
        refused = client.get(PATH, params=_query(), headers=bearer(token_for(client, login)))
        assert refused.status_code == 403, refused.text
        assert "statistics option" in refused.json()["detail"]
    allowed = client.get(PATH, params=_query(), headers=operator)
    assert allowed.status_code == 200, allowed.text
    assert sum(row["total"] for row in allowed.json()["rows"]) == 7
