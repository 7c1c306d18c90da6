"""HTTP for the traffic statistics: translation only (rules in `service`).

Endpoint:
- `GET /api/v1/tollfree-numbers/{number}/statistics?granularity=hourly|daily
  &from=YYYY-MM-DD&to=YYYY-MM-DD&by=number|destination&format=json|csv&lang=en|ja`
  (O A U V: whoever may see the number). JSON by default; CSV with `format=csv`, or
  without `format` when `Accept` names `text/csv`, as an attachment.
"""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from cloudpbx.statistics import Granularity, Grouping
from custcon_api.auth.schemas import ErrorBody
from custcon_api.deps import CurrentPrincipal, SessionDep
from custcon_api.statistics import service
from custcon_api.statistics.schemas import StatisticsPublic

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/tollfree-numbers", tags=["statistics"])


class OutputFormat(enum.StrEnum):
    """The response's form."""

    JSON = "json"
    CSV = "csv"


_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The statistics (JSON), or the same rows as CSV",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "The number is not visible to the caller"},
    404: {"model": ErrorBody, "description": "No such number (operators)"},
}


@router.get(
    "/{number}/statistics",
    summary="Traffic statistics (利用状況(トラヒック)の照会), hourly or daily, JSON or CSV",
    response_model=StatisticsPublic,
    responses=_ERRORS,
)
def get_statistics(
    number: Annotated[
        str, Path(max_length=32, description="Toll-free number, national form (`0120000111`)")
    ],
    granularity: Annotated[Granularity, Query(description="One row per hour or per day")],
    first_day: Annotated[
        datetime.date, Query(alias="from", description="First day (Asia/Tokyo), YYYY-MM-DD")
    ],
    last_day: Annotated[
        datetime.date, Query(alias="to", description="Last day, inclusive, YYYY-MM-DD")
    ],
    principal: CurrentPrincipal,
    session: SessionDep,
    by: Annotated[Grouping, Query(description="Per toll-free number or per destination")] = (
        Grouping.NUMBER
    ),
    output_format: Annotated[
        OutputFormat | None, Query(alias="format", description="Default: by `Accept`, JSON")
    ] = None,
    lang: Annotated[service.Language, Query(description="CSV header language")] = (
        service.Language.EN
    ),
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    statistics = service.number_statistics(
        session, principal, number, granularity, first_day, last_day, by
    )
    if output_format is None:
        wants_csv = accept is not None and "text/csv" in accept
        output_format = OutputFormat.CSV if wants_csv else OutputFormat.JSON
    if output_format is OutputFormat.JSON:
        return Response(statistics.model_dump_json(by_alias=True), media_type="application/json")
    return Response(
        service.csv_document(statistics, lang),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (f'attachment; filename="{service.csv_file_name(statistics)}"')
        },
    )
