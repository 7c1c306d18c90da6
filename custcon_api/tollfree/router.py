"""HTTP for toll-free numbers: translation only (rules in `service`).

Endpoints, under `/api/v1/tollfree-numbers` (roles: O operator, A tenant administrator
of the number's tenant, U user granted the number, V tollfree_viewer granted it; who may
see which number, and 403 versus 404, in `custcon_api.tollfree.service`):
- `GET ""` (O A U V: the numbers the caller may see); `POST ""` (O): create, 201.
- `GET /{number}` (O A U V); `DELETE /{number}` (O): 204.
- `PATCH /{number}/contract` (O): service type, contracted channels, options.
- `GET /{number}/contract-information` (O A U V): the read-only contract view.
- `PUT /{number}/channels` (O A U): the channel setting.
- `PUT /{number}/after-hours` (O A U): the after-hours announcement.
- `GET /{number}/destination-sets` (O A U V); `PUT /{number}/destination-sets/{set}` (O):
  the whole set, 201 when new; `PATCH .../destination-sets/{set}/weights` (O A U).
- `GET /{number}/schedules` (O A U V); `PUT /{number}/schedules/{name}` (O A U), 201
  when new; `DELETE /{number}/schedules/{name}` (O A U): 204.
- `GET`/`PUT /{number}/designated-areas` (read: O A U V; write: O A U).
- `GET /{number}/accounts` (O A); `PUT /{number}/accounts/{login}` (O A): 201 for a new
  grant, 200 when it existed; `DELETE /{number}/accounts/{login}` (O A): 204.
`{number}` is a toll-free number in national form (`0120000111`, hyphens allowed).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Response, status

from custcon_api.auth.schemas import ErrorBody
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep
from custcon_api.tollfree import service
from custcon_api.tollfree.schemas import (
    NAME_PATTERN,
    AfterHoursPublic,
    AfterHoursUpdate,
    ChannelSettingUpdate,
    ChannelsPublic,
    ContractInformation,
    ContractUpdate,
    DesignatedAreas,
    DestinationSetPublic,
    DestinationSetUpdate,
    GrantPublic,
    ScheduleIn,
    SchedulePublic,
    TollFreeNumberCreate,
    TollFreeNumberPublic,
    WeightsUpdate,
)

__all__ = ["router"]

_PREFIX = "/api/v1/tollfree-numbers"

router = APIRouter(prefix=_PREFIX, tags=["tollfree"])

NumberPath = Annotated[
    str,
    Path(
        max_length=32,
        description="Toll-free number, national form (`0120000111`; hyphens allowed)",
    ),
]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="Name (letters, digits, _.-)")]
LoginPath = Annotated[str, Path(min_length=1, max_length=128, description="Login name")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {
        "model": ErrorBody,
        "description": "The caller's role may not do this, or the number is not visible to it",
    },
    404: {"model": ErrorBody, "description": "No such number (operators), set, schedule or grant"},
}


def _location(*parts: str) -> str:
    return "/".join([_PREFIX, *(quote(part, safe="@") for part in parts)])


# --- numbers and contracts ------------------------------------------------------------


@router.get("", summary="List the toll-free numbers the caller may see", responses=_ERRORS)
def list_numbers(principal: CurrentPrincipal, session: SessionDep) -> list[TollFreeNumberPublic]:
    return [TollFreeNumberPublic.of(number) for number in service.list_numbers(session, principal)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a toll-free number contract (operator)",
    responses={**_ERRORS, 409: {"model": ErrorBody, "description": "The number exists"}},
)
def create_number(
    body: TollFreeNumberCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> TollFreeNumberPublic:
    number = service.create_number(session, context, principal, body, remote_address)
    response.headers["Location"] = _location(number.number)
    return TollFreeNumberPublic.of(number)


@router.get("/{number}", summary="A toll-free number and its settings", responses=_ERRORS)
def get_number(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> TollFreeNumberPublic:
    return TollFreeNumberPublic.of(
        service.authorized_number(session, principal, number, service.Access.READ)
    )


@router.delete(
    "/{number}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a toll-free number contract and all its settings (operator)",
    responses=_ERRORS,
)
def delete_number(
    number: NumberPath,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.delete_number(session, context, principal, number, remote_address)


@router.patch(
    "/{number}/contract",
    summary="Change the contract: service type, contracted channels, options (operator)",
    responses=_ERRORS,
)
def update_contract(
    number: NumberPath,
    body: ContractUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> TollFreeNumberPublic:
    return TollFreeNumberPublic.of(
        service.update_contract(session, context, principal, number, body, remote_address)
    )


@router.get(
    "/{number}/contract-information",
    summary="Contract information (ご契約内容の確認), read only",
    responses=_ERRORS,
)
def get_contract_information(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> ContractInformation:
    return ContractInformation.of(
        service.authorized_number(session, principal, number, service.Access.READ)
    )


# --- channels and after-hours announcement --------------------------------------------


@router.put(
    "/{number}/channels",
    summary="Set the channel count (ch数), at most the contracted channels",
    responses=_ERRORS,
)
def set_channels(
    number: NumberPath,
    body: ChannelSettingUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> ChannelsPublic:
    return ChannelsPublic.of(
        service.set_channels(session, context, principal, number, body, remote_address)
    )


@router.put(
    "/{number}/after-hours",
    summary="Choose the after-hours announcement (時間外案内)",
    responses=_ERRORS,
)
def set_after_hours(
    number: NumberPath,
    body: AfterHoursUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> AfterHoursPublic:
    return AfterHoursPublic.of(
        service.set_after_hours(session, context, principal, number, body, remote_address)
    )


# --- destination sets -----------------------------------------------------------------


@router.get("/{number}/destination-sets", summary="Destination sets and weights", responses=_ERRORS)
def list_destination_sets(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> list[DestinationSetPublic]:
    row = service.authorized_number(session, principal, number, service.Access.READ)
    return [DestinationSetPublic.of(item) for item in row.destination_sets]


@router.put(
    "/{number}/destination-sets/{set_name}",
    summary="Create or replace a destination set: numbers, weights, trunks (operator)",
    responses=_ERRORS,
)
def put_destination_set(
    number: NumberPath,
    set_name: NamePath,
    body: DestinationSetUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> DestinationSetPublic:
    destination_set, created = service.put_destination_set(
        session, context, principal, number, set_name, body, remote_address
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return DestinationSetPublic.of(destination_set)


@router.patch(
    "/{number}/destination-sets/{set_name}/weights",
    summary="Change distribution weights (振分比率の変更)",
    responses=_ERRORS,
)
def update_weights(
    number: NumberPath,
    set_name: NamePath,
    body: WeightsUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> DestinationSetPublic:
    return DestinationSetPublic.of(
        service.update_weights(session, context, principal, number, set_name, body, remote_address)
    )


# --- schedules ------------------------------------------------------------------------


@router.get("/{number}/schedules", summary="Schedules (スケジュール)", responses=_ERRORS)
def list_schedules(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> list[SchedulePublic]:
    row = service.authorized_number(session, principal, number, service.Access.READ)
    return [SchedulePublic.of(item) for item in row.schedules]


@router.put(
    "/{number}/schedules/{name}",
    summary="Create or replace a schedule: after-hours or destination-change times",
    responses=_ERRORS,
)
def put_schedule(
    number: NumberPath,
    name: NamePath,
    body: ScheduleIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> SchedulePublic:
    schedule, created = service.put_schedule(
        session, context, principal, number, name, body, remote_address
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return SchedulePublic.of(schedule)


@router.delete(
    "/{number}/schedules/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a schedule",
    responses=_ERRORS,
)
def delete_schedule(
    number: NumberPath,
    name: NamePath,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.delete_schedule(session, context, principal, number, name, remote_address)


# --- designated areas -----------------------------------------------------------------


@router.get(
    "/{number}/designated-areas",
    summary="Originating-area designation (発信地域指定)",
    responses=_ERRORS,
)
def get_designated_areas(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> DesignatedAreas:
    return DesignatedAreas.of(
        service.authorized_number(session, principal, number, service.Access.READ)
    )


@router.put(
    "/{number}/designated-areas",
    summary="Replace the originating-area designation (発信地域指定)",
    responses=_ERRORS,
)
def set_designated_areas(
    number: NumberPath,
    body: DesignatedAreas,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> DesignatedAreas:
    return DesignatedAreas.of(
        service.set_designated_areas(session, context, principal, number, body, remote_address)
    )


# --- account grants -------------------------------------------------------------------


@router.get("/{number}/accounts", summary="Accounts granted the number", responses=_ERRORS)
def list_grants(
    number: NumberPath, principal: CurrentPrincipal, session: SessionDep
) -> list[GrantPublic]:
    return [GrantPublic.of(account) for account in service.list_grants(session, principal, number)]


@router.put(
    "/{number}/accounts/{login}",
    summary="Grant the number to an account of its tenant (user or tollfree_viewer)",
    responses=_ERRORS,
)
def put_grant(
    number: NumberPath,
    login: LoginPath,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> GrantPublic:
    account, created = service.put_grant(session, context, principal, number, login, remote_address)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return GrantPublic.of(account)


@router.delete(
    "/{number}/accounts/{login}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an account's grant on the number",
    responses=_ERRORS,
)
def delete_grant(
    number: NumberPath,
    login: LoginPath,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.delete_grant(session, context, principal, number, login, remote_address)
