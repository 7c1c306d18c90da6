"""Tenants and their sites: the rules and the transaction of each change.

Rules:
- Tenants are the operator's: only an operator lists, creates, changes or deletes them;
  a tenant administrator may read their own tenant (403 for any other name, existing or
  not) and change its customer settings only (`TENANT_ADMIN_TENANT_FIELDS`:
  `announcement_language`; a PATCH with any other field is 403, before any lookup).
  Sites are the operator's and the tenant administrator's (their own tenant).
- `announcement_language` (`ja` | `en`, default `ja`; anything else is 422 naming the
  field) picks the recordings the switch plays on the tenant's cloud PBX calls (refusal
  announcements, voicemail greeting; `softswitch.b2bua.pbx_routing` rule 8). Like every
  change it is audited (`tenant.update`) and reaches the switches at once (`CONFIG`).
- `pstn_trunk` and `mobile_trunk` (the operator's: the carrier's interconnect choice)
  name the carrier-wide `pstn` / `mobile_network` trunk the tenant's outbound calls leave
  on (`softswitch.b2bua.pbx_routing`, outbound trunks); null is the carrier-wide default.
  A name that is no trunk, a trunk of another kind or a tenant's own trunk is 422 naming
  the field. A trunk a tenant names is not deleted nor changed to another kind or tenant
  (409, `custcon_api.pbx.trunks`).
- A tenant's name and SIP domain are unique (409). The name is its identifier (account
  logins are `LOCAL@TENANT`), so it never changes.
- The SIP domain is the digest realm of every SIP password of the tenant: the stored
  HA1s cover it, so it cannot change while an extension has a SIP password (409; the
  passwords must be removed or the extensions deleted first).
- The same-contract-holder rule (`cloudpbx.rules.same_contract_holder`): a new contract
  holder name must still name the holder of every mobile line of the tenant (422 naming
  `contract_holder_name`).
- A tenant is deleted only when it has no extension, mobile line, trunk or account left
  (409): each of those is deleted, and audited, through its own endpoint first. Its empty
  sites go with it. A site is deleted only when no extension is at it (409).
- Every change writes its audit row (`tenant.create` / `tenant.update` / `tenant.delete`,
  `site.create` / `site.delete`) and publishes `cloudpbx.notify.CONFIG` after the commit
  (`custcon_api.pbx.access.commit_change`).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from cloudpbx.domain import TENANT_CARRIER_TRUNK_SETTINGS, AccountRole
from cloudpbx.models import Account, Base, Extension, MobileLine, SipCredential, Site, Tenant, Trunk
from cloudpbx.rules import same_contract_holder
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, Forbidden, InvalidFields, NotFound
from custcon_api.pbx.access import (
    ADMINS,
    authorize_tenant,
    commit_change,
    require_operator,
    tenant_by_name,
)
from custcon_api.pbx.schemas import (
    TENANT_ADMIN_TENANT_FIELDS,
    SiteCreate,
    TenantCreate,
    TenantUpdate,
)
from custcon_api.pbx.views import site_view, tenant_view

__all__ = [
    "create_site",
    "create_tenant",
    "delete_site",
    "delete_tenant",
    "get_tenant",
    "list_sites",
    "list_tenants",
    "update_tenant",
]

_READERS = frozenset({AccountRole.OPERATOR, AccountRole.TENANT_ADMIN})


def _count(session: Session, model: type[Base], condition: ColumnElement[bool]) -> int:
    return session.scalar(select(func.count()).select_from(model).where(condition)) or 0


def list_tenants(session: Session, principal: Principal) -> list[Tenant]:
    """Every tenant, by name (operators only)."""
    require_operator(principal, "list tenants")
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def get_tenant(session: Session, principal: Principal, tenant_name: str) -> Tenant:
    authorize_tenant(principal, tenant_name, _READERS)
    return tenant_by_name(session, tenant_name)


def _domain_taken(session: Session, sip_domain: str, tenant_id: int | None) -> bool:
    return (
        session.scalars(
            select(Tenant.id).where(Tenant.sip_domain == sip_domain, Tenant.id != (tenant_id or 0))
        ).first()
        is not None
    )




def _carrier_trunk_problems(session: Session, values: dict[str, str | None]) -> list[FieldProblem]:
    """422 problems of the `pstn_trunk` / `mobile_trunk` values given (None: the default)."""
    problems: list[FieldProblem] = []
    for field, name in values.items():
        if name is None:
            continue
        kind = TENANT_CARRIER_TRUNK_SETTINGS[field]
        trunk = session.scalars(select(Trunk).where(Trunk.name == name)).one_or_none()
        if trunk is None:
            problems.append(FieldProblem(field, "unknown_trunk", "names no trunk"))
        elif trunk.tenant_id is not None:
            problems.append(
                FieldProblem(field, "tenant_trunk", "must name a carrier-wide trunk (no tenant)")
            )
        elif trunk.kind is not kind:
            problems.append(FieldProblem(field, "trunk_kind", f"must name a {kind.value} trunk"))
    return problems


def create_tenant(
    session: Session,
    context: AppContext,
    principal: Principal,
    body: TenantCreate,
    remote_address: str | None,
) -> Tenant:
    """Create a tenant (no sites yet).

    Raises:
        Forbidden: not an operator. Conflict: name or SIP domain taken.
        InvalidFields: `pstn_trunk` / `mobile_trunk` names no carrier-wide trunk of its kind.
    """
    require_operator(principal, "create tenants")
    problems = _carrier_trunk_problems(
        session, {"pstn_trunk": body.pstn_trunk, "mobile_trunk": body.mobile_trunk}
    )
    if problems:
        raise InvalidFields(problems)
    if session.scalars(select(Tenant.id).where(Tenant.name == body.name)).first() is not None:
        raise Conflict("a tenant with this name exists")
    if _domain_taken(session, body.sip_domain, None):
        raise Conflict("another tenant has this SIP domain")
    tenant = Tenant(
        name=body.name,
        contract_holder_name=body.contract_holder_name,
        address=body.address,
        basic_contract=body.basic_contract,
        sip_domain=body.sip_domain,
        announcement_language=body.announcement_language,
        pstn_trunk=body.pstn_trunk,
        mobile_trunk=body.mobile_trunk,
    )
    session.add(tenant)
    session.flush()
    commit_change(
        session,
        context,
        principal,
        action="tenant.create",
        target=tenant.name,
        tenant_id=tenant.id,
        before=None,
        after=tenant_view(tenant),
        remote_address=remote_address,
    )
    return tenant


def update_tenant(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    body: TenantUpdate,
    remote_address: str | None,
) -> Tenant:
    """Change a tenant's contract information, SIP domain, announcement language or outbound
    carrier trunks (see the module rules).

    Raises:
        Forbidden, NotFound: not an operator (nor the tenant's administrator changing
            only its own settings); no such tenant.
        InvalidFields: the new contract holder is not the holder of its mobile lines;
            `pstn_trunk` / `mobile_trunk` names no carrier-wide trunk of its kind.
        Conflict: SIP domain taken, or it cannot change while SIP passwords use it.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    if principal.account.role is not AccountRole.OPERATOR and not (
        body.model_fields_set <= TENANT_ADMIN_TENANT_FIELDS
    ):
        raise Forbidden(
            "a tenant administrator can change only the tenant's own settings: "
            + ", ".join(sorted(TENANT_ADMIN_TENANT_FIELDS))
        )
    tenant = tenant_by_name(session, tenant_name)
    before = tenant_view(tenant)
    trunk_settings: dict[str, str | None] = {
        field: getattr(body, field)
        for field in TENANT_CARRIER_TRUNK_SETTINGS
        if field in body.model_fields_set
    }
    problems = _carrier_trunk_problems(session, trunk_settings)
    if problems:
        raise InvalidFields(problems)
    holder = body.contract_holder_name
    if holder is not None and holder != tenant.contract_holder_name:
        lines = session.scalars(select(MobileLine).where(MobileLine.tenant_id == tenant.id))
        if any(not same_contract_holder(holder, line.contract_holder_name) for line in lines):
            raise InvalidFields(
                [
                    FieldProblem(
                        "contract_holder_name",
                        "contract_holder",
                        "must name the contract holder of the tenant's mobile lines",
                    )
                ]
            )
        tenant.contract_holder_name = holder
    if body.sip_domain is not None and body.sip_domain != tenant.sip_domain:
        if _domain_taken(session, body.sip_domain, tenant.id):
            raise Conflict("another tenant has this SIP domain")
        with_password = _count(
            session,
            SipCredential,
            SipCredential.extension_id.in_(
                select(Extension.id).where(Extension.tenant_id == tenant.id)
            ),
        )
        if with_password:
            raise Conflict(
                "the SIP domain is the digest realm of the tenant's SIP passwords: remove"
                " them before changing it"
            )
        tenant.sip_domain = body.sip_domain
    if body.address is not None:
        tenant.address = body.address
    if body.basic_contract is not None:
        tenant.basic_contract = body.basic_contract
    if body.announcement_language is not None:
        tenant.announcement_language = body.announcement_language
    if "pstn_trunk" in trunk_settings:
        tenant.pstn_trunk = trunk_settings["pstn_trunk"]
    if "mobile_trunk" in trunk_settings:
        tenant.mobile_trunk = trunk_settings["mobile_trunk"]
    after = tenant_view(tenant)
    if after != before:
        commit_change(
            session,
            context,
            principal,
            action="tenant.update",
            target=tenant.name,
            tenant_id=tenant.id,
            before=before,
            after=after,
            remote_address=remote_address,
        )
    return tenant


def delete_tenant(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    remote_address: str | None,
) -> None:
    """Delete an empty tenant and its sites (see the module rules).

    Raises:
        Forbidden, NotFound: not an operator; no such tenant.
        Conflict: the tenant still has extensions, mobile lines, trunks or accounts.
    """
    require_operator(principal, "delete tenants")
    tenant = tenant_by_name(session, tenant_name)
    remaining = [
        what
        for what, model, condition in (
            ("extensions", Extension, Extension.tenant_id == tenant.id),
            ("mobile lines", MobileLine, MobileLine.tenant_id == tenant.id),
            ("trunks", Trunk, Trunk.tenant_id == tenant.id),
            ("accounts", Account, Account.tenant_id == tenant.id),
        )
        if _count(session, model, condition)
    ]
    if remaining:
        raise Conflict(f"the tenant still has {', '.join(remaining)}: delete them first")
    before = tenant_view(tenant)
    before["sites"] = sorted(site.name for site in tenant.sites)
    # The sites go by the database's ON DELETE CASCADE, with the tenant row.
    session.execute(delete(Tenant).where(Tenant.id == tenant.id))
    commit_change(
        session,
        context,
        principal,
        action="tenant.delete",
        target=tenant_name,
        tenant_id=None,
        before=before,
        after=None,
        remote_address=remote_address,
    )


# --- sites -----------------------------------------------------------------------------


def list_sites(session: Session, principal: Principal, tenant_name: str) -> list[Site]:
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    return list(session.scalars(select(Site).where(Site.tenant_id == tenant.id).order_by(Site.id)))


def create_site(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    body: SiteCreate,
    remote_address: str | None,
) -> Site:
    """Add a site to the tenant.

    Raises:
        Forbidden, NotFound: see `custcon_api.pbx.access`. Conflict: the name is taken.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    taken = session.scalars(
        select(Site.id).where(Site.tenant_id == tenant.id, Site.name == body.name)
    ).first()
    if taken is not None:
        raise Conflict("the tenant has a site with this name")
    site = Site(tenant=tenant, name=body.name)
    session.add(site)
    commit_change(
        session,
        context,
        principal,
        action="site.create",
        target=f"{tenant.name}/{site.name}",
        tenant_id=tenant.id,
        before=None,
        after=site_view(site),
        remote_address=remote_address,
    )
    return site


def delete_site(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    site_name: str,
    remote_address: str | None,
) -> None:
    """Delete a site no extension is at.

    Raises:
        Forbidden, NotFound: see `custcon_api.pbx.access`; NotFound also for no such site.
        Conflict: extensions are at the site.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    site = session.scalars(
        select(Site).where(Site.tenant_id == tenant.id, Site.name == site_name)
    ).one_or_none()
    if site is None:
        raise NotFound("no such site in this tenant")
    if _count(session, Extension, Extension.site_id == site.id):
        raise Conflict("extensions are at this site: move or delete them first")
    before = site_view(site)
    session.delete(site)
    commit_change(
        session,
        context,
        principal,
        action="site.delete",
        target=f"{tenant.name}/{site.name}",
        tenant_id=tenant.id,
        before=before,
        after=None,
        remote_address=remote_address,
    )
