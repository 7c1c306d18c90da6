"""HTTP for the Cloud PBX settings: translation only (rules in the service modules).

Endpoints (roles in `custcon_api.pbx.ENDPOINT_ROLES`; "admin" = the tenant's own):
- `GET/POST /api/v1/tenants` (operator); `GET /api/v1/tenants/{tenant}` (operator,
  admin); `PATCH /api/v1/tenants/{tenant}` (operator; admin: `announcement_language`
  only); `DELETE /api/v1/tenants/{tenant}` (operator).
- `GET/POST /api/v1/tenants/{tenant}/sites`, `DELETE .../sites/{site}` (operator, admin).
- `GET /api/v1/tenants/{tenant}/mobile-lines[/{msisdn}]` (operator, admin);
  `POST`, `PATCH`, `DELETE` (operator).
- `GET/POST /api/v1/tenants/{tenant}/extensions` (operator, admin);
  `GET/PATCH .../extensions/{number}` (operator, admin, the owning user: PATCH of their
  own settings only); `DELETE .../extensions/{number}` (operator, admin).
- `PUT .../extensions/{number}/mobile-line`: the extension <-> mobile mapping
  (operator, admin).
- `GET /api/v1/trunks[/{name}]` (operator; admin: their tenant's trunks only);
  `POST`, `PATCH`, `DELETE` (operator).
Creating answers 201 with `Location`; deleting 204; everything else 200 with the object.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response, status

from cloudpbx.models import Extension, MobileLine, Site, Tenant, Trunk
from custcon_api.auth.schemas import ErrorBody
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep
from custcon_api.pbx import extensions, mobile_lines, tenants, trunks
from custcon_api.pbx.schemas import (
    ExtensionCreate,
    ExtensionPublic,
    ExtensionUpdate,
    MobileLineCreate,
    MobileLinePublic,
    MobileLineUpdate,
    MobileMapping,
    SiteCreate,
    SitePublic,
    TenantCreate,
    TenantPublic,
    TenantUpdate,
    TrunkCreate,
    TrunkPublic,
    TrunkUpdate,
)
from custcon_api.pbx.views import (
    extension_view,
    mobile_line_view,
    site_view,
    tenant_view,
    trunk_view,
)

__all__ = ["router"]

router = APIRouter()

_TENANTS = "/api/v1/tenants"
_TRUNKS = "/api/v1/trunks"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"},
    403: {"model": ErrorBody, "description": "The caller's role or tenant does not allow it"},
    404: {"model": ErrorBody, "description": "No such object in the path"},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorBody, "description": "Conflicts with the stored settings"},
}


def _path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def _tenant(tenant: Tenant) -> TenantPublic:
    return TenantPublic.model_validate(tenant_view(tenant))


def _site(site: Site) -> SitePublic:
    return SitePublic.model_validate(site_view(site))


def _line(line: MobileLine) -> MobileLinePublic:
    return MobileLinePublic.model_validate(mobile_line_view(line))


def _extension(extension: Extension) -> ExtensionPublic:
    return ExtensionPublic.model_validate(extension_view(extension))


def _trunk(trunk: Trunk) -> TrunkPublic:
    return TrunkPublic.model_validate(trunk_view(trunk))


# --- tenants ---------------------------------------------------------------------------


@router.get(_TENANTS, tags=["tenants"], summary="List tenants", responses=_ERRORS)
def list_tenants(principal: CurrentPrincipal, session: SessionDep) -> list[TenantPublic]:
    return [_tenant(tenant) for tenant in tenants.list_tenants(session, principal)]


@router.post(
    _TENANTS,
    tags=["tenants"],
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant",
    responses=_WRITE_ERRORS,
)
def create_tenant(
    body: TenantCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> TenantPublic:
    tenant = tenants.create_tenant(session, context, principal, body, remote_address)
    response.headers["Location"] = f"{_TENANTS}/{_path(tenant.name)}"
    return _tenant(tenant)


@router.get(_TENANTS + "/{tenant}", tags=["tenants"], summary="Read a tenant", responses=_ERRORS)
def get_tenant(tenant: str, principal: CurrentPrincipal, session: SessionDep) -> TenantPublic:
    return _tenant(tenants.get_tenant(session, principal, tenant))


@router.patch(
    _TENANTS + "/{tenant}", tags=["tenants"], summary="Change a tenant", responses=_WRITE_ERRORS
)
def update_tenant(
    tenant: str,
    body: TenantUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> TenantPublic:
    return _tenant(tenants.update_tenant(session, context, principal, tenant, body, remote_address))


@router.delete(
    _TENANTS + "/{tenant}",
    tags=["tenants"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an empty tenant",
    responses=_WRITE_ERRORS,
)
def delete_tenant(
    tenant: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    tenants.delete_tenant(session, context, principal, tenant, remote_address)


# --- sites -----------------------------------------------------------------------------


@router.get(_TENANTS + "/{tenant}/sites", tags=["sites"], summary="List sites", responses=_ERRORS)
def list_sites(tenant: str, principal: CurrentPrincipal, session: SessionDep) -> list[SitePublic]:
    return [_site(site) for site in tenants.list_sites(session, principal, tenant)]


@router.post(
    _TENANTS + "/{tenant}/sites",
    tags=["sites"],
    status_code=status.HTTP_201_CREATED,
    summary="Add a site",
    responses=_WRITE_ERRORS,
)
def create_site(
    tenant: str,
    body: SiteCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> SitePublic:
    site = tenants.create_site(session, context, principal, tenant, body, remote_address)
    response.headers["Location"] = f"{_TENANTS}/{_path(tenant, 'sites', site.name)}"
    return _site(site)


@router.delete(
    _TENANTS + "/{tenant}/sites/{site}",
    tags=["sites"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a site no extension is at",
    responses=_WRITE_ERRORS,
)
def delete_site(
    tenant: str,
    site: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    tenants.delete_site(session, context, principal, tenant, site, remote_address)


# --- mobile lines ----------------------------------------------------------------------


@router.get(
    _TENANTS + "/{tenant}/mobile-lines",
    tags=["mobile lines"],
    summary="List a tenant's mobile lines",
    responses=_ERRORS,
)
def list_mobile_lines(
    tenant: str, principal: CurrentPrincipal, session: SessionDep
) -> list[MobileLinePublic]:
    return [_line(line) for line in mobile_lines.list_mobile_lines(session, principal, tenant)]


@router.post(
    _TENANTS + "/{tenant}/mobile-lines",
    tags=["mobile lines"],
    status_code=status.HTTP_201_CREATED,
    summary="Provision a mobile line",
    responses=_WRITE_ERRORS,
)
def create_mobile_line(
    tenant: str,
    body: MobileLineCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> MobileLinePublic:
    line = mobile_lines.create_mobile_line(
        session, context, principal, tenant, body, remote_address
    )
    response.headers["Location"] = f"{_TENANTS}/{_path(tenant, 'mobile-lines', line.msisdn)}"
    return _line(line)


@router.get(
    _TENANTS + "/{tenant}/mobile-lines/{msisdn}",
    tags=["mobile lines"],
    summary="Read a mobile line",
    responses=_ERRORS,
)
def get_mobile_line(
    tenant: str, msisdn: str, principal: CurrentPrincipal, session: SessionDep
) -> MobileLinePublic:
    return _line(mobile_lines.get_mobile_line(session, principal, tenant, msisdn))


@router.patch(
    _TENANTS + "/{tenant}/mobile-lines/{msisdn}",
    tags=["mobile lines"],
    summary="Change a mobile line's options or state",
    responses=_WRITE_ERRORS,
)
def update_mobile_line(
    tenant: str,
    msisdn: str,
    body: MobileLineUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> MobileLinePublic:
    return _line(
        mobile_lines.update_mobile_line(
            session, context, principal, tenant, msisdn, body, remote_address
        )
    )


@router.delete(
    _TENANTS + "/{tenant}/mobile-lines/{msisdn}",
    tags=["mobile lines"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a mobile line no extension points at",
    responses=_WRITE_ERRORS,
)
def delete_mobile_line(
    tenant: str,
    msisdn: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    mobile_lines.delete_mobile_line(session, context, principal, tenant, msisdn, remote_address)


# --- extensions ------------------------------------------------------------------------


@router.get(
    _TENANTS + "/{tenant}/extensions",
    tags=["extensions"],
    summary="List a tenant's extensions",
    responses=_ERRORS,
)
def list_extensions(
    tenant: str, principal: CurrentPrincipal, session: SessionDep
) -> list[ExtensionPublic]:
    return [
        _extension(extension)
        for extension in extensions.list_extensions(session, principal, tenant)
    ]


@router.post(
    _TENANTS + "/{tenant}/extensions",
    tags=["extensions"],
    status_code=status.HTTP_201_CREATED,
    summary="Create an extension",
    responses=_WRITE_ERRORS,
)
def create_extension(
    tenant: str,
    body: ExtensionCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> ExtensionPublic:
    extension = extensions.create_extension(
        session, context, principal, tenant, body, remote_address
    )
    response.headers["Location"] = f"{_TENANTS}/{_path(tenant, 'extensions', extension.number)}"
    return _extension(extension)


@router.get(
    _TENANTS + "/{tenant}/extensions/{number}",
    tags=["extensions"],
    summary="Read an extension",
    responses=_ERRORS,
)
def get_extension(
    tenant: str, number: str, principal: CurrentPrincipal, session: SessionDep
) -> ExtensionPublic:
    return _extension(extensions.get_extension(session, principal, tenant, number))


@router.patch(
    _TENANTS + "/{tenant}/extensions/{number}",
    tags=["extensions"],
    summary="Change an extension's settings",
    responses=_WRITE_ERRORS,
)
def update_extension(
    tenant: str,
    number: str,
    body: ExtensionUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> ExtensionPublic:
    return _extension(
        extensions.update_extension(
            session, context, principal, tenant, number, body, remote_address
        )
    )


@router.delete(
    _TENANTS + "/{tenant}/extensions/{number}",
    tags=["extensions"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an extension",
    responses=_ERRORS,
)
def delete_extension(
    tenant: str,
    number: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    extensions.delete_extension(session, context, principal, tenant, number, remote_address)


@router.put(
    _TENANTS + "/{tenant}/extensions/{number}/mobile-line",
    tags=["extensions"],
    summary="Map an extension to a mobile number",
    responses=_WRITE_ERRORS,
)
def map_mobile_line(
    tenant: str,
    number: str,
    body: MobileMapping,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> ExtensionPublic:
    return _extension(
        extensions.map_mobile_line(
            session, context, principal, tenant, number, body, remote_address
        )
    )


# --- trunks ----------------------------------------------------------------------------


@router.get(_TRUNKS, tags=["trunks"], summary="List trunks", responses=_ERRORS)
def list_trunks(principal: CurrentPrincipal, session: SessionDep) -> list[TrunkPublic]:
    return [_trunk(trunk) for trunk in trunks.list_trunks(session, principal)]


@router.post(
    _TRUNKS,
    tags=["trunks"],
    status_code=status.HTTP_201_CREATED,
    summary="Create a trunk",
    responses=_WRITE_ERRORS,
)
def create_trunk(
    body: TrunkCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> TrunkPublic:
    trunk = trunks.create_trunk(session, context, principal, body, remote_address)
    response.headers["Location"] = f"{_TRUNKS}/{_path(trunk.name)}"
    return _trunk(trunk)


@router.get(_TRUNKS + "/{name}", tags=["trunks"], summary="Read a trunk", responses=_ERRORS)
def get_trunk(name: str, principal: CurrentPrincipal, session: SessionDep) -> TrunkPublic:
    return _trunk(trunks.get_trunk(session, principal, name))


@router.patch(
    _TRUNKS + "/{name}", tags=["trunks"], summary="Change a trunk", responses=_WRITE_ERRORS
)
def update_trunk(
    name: str,
    body: TrunkUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> TrunkPublic:
    return _trunk(trunks.update_trunk(session, context, principal, name, body, remote_address))


@router.delete(
    _TRUNKS + "/{name}",
    tags=["trunks"],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a trunk no extension routes to",
    responses=_WRITE_ERRORS,
)
def delete_trunk(
    name: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    trunks.delete_trunk(session, context, principal, name, remote_address)
