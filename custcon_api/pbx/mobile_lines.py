"""A tenant's mobile lines and their options: the rules and the transaction of each change.

Rules:
- Lines are provisioned by operators (create, change, delete); the tenant's
  administrator may read them (their own tenant only, 403 otherwise, before any lookup).
- Numbers are stored normalised (`cloudpbx.rules`): MSISDN and 2in1 B number in E.164,
  the 050 number in national form. The path's `{msisdn}` may be given in either form;
  one that is no mobile number is simply not found (404).
- The same-contract-holder rule: a line's `contract_holder_name` must name the tenant's
  contract holder (`cloudpbx.rules.same_contract_holder`), else 422 naming it.
- A mobile number is one line's A or B number, never two (409, whichever tenant has it;
  only operators write lines, so this tells a tenant nothing); the B number differs from
  the line's own MSISDN (422). An 050 number belongs to one line (409).
- The 050 option is the presence of `options.number_050`; null removes it.
- A line an extension points at cannot be deleted, nor lose the B number an extension
  stands for (409): the extension is changed or deleted first.
- Every change writes its audit row (`mobile_line.create` / `.update` / `.delete`) and
  publishes `cloudpbx.notify.CONFIG` after the commit.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloudpbx.domain import MobileIdentity
from cloudpbx.models import Extension, MobileLine, Tenant
from cloudpbx.rules import normalize_msisdn, same_contract_holder
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, InvalidFields, NotFound
from custcon_api.pbx.access import (
    ADMINS,
    authorize_tenant,
    commit_change,
    require_operator,
    tenant_by_name,
)
from custcon_api.pbx.schemas import MobileLineCreate, MobileLineUpdate
from custcon_api.pbx.views import mobile_line_view

__all__ = [
    "create_mobile_line",
    "delete_mobile_line",
    "get_mobile_line",
    "list_mobile_lines",
    "update_mobile_line",
]


def _line_in_tenant(session: Session, tenant: Tenant, msisdn_text: str) -> MobileLine:
    try:
        msisdn = normalize_msisdn(msisdn_text)
    except ValueError:
        raise NotFound("no such mobile line in this tenant") from None
    line = session.scalars(
        select(MobileLine).where(MobileLine.tenant_id == tenant.id, MobileLine.msisdn == msisdn)
    ).one_or_none()
    if line is None:
        raise NotFound("no such mobile line in this tenant")
    return line


def _number_taken(session: Session, number: str, line_id: int | None) -> bool:
    """True when `number` is the A or B number of a line other than `line_id`."""
    statement = select(MobileLine.id).where(
        or_(MobileLine.msisdn == number, MobileLine.b_number == number),
        MobileLine.id != (line_id or 0),
    )
    return session.scalars(statement).first() is not None


def _number_050_taken(session: Session, number_050: str, line_id: int | None) -> bool:
    statement = select(MobileLine.id).where(
        MobileLine.number_050 == number_050, MobileLine.id != (line_id or 0)
    )
    return session.scalars(statement).first() is not None


def _holder_problem(tenant: Tenant, holder: str) -> FieldProblem | None:
    if same_contract_holder(holder, tenant.contract_holder_name):
        return None
    return FieldProblem(
        "contract_holder_name",
        "contract_holder",
        "must be the tenant's contract holder (every line of a tenant is under its contract)",
    )


def list_mobile_lines(session: Session, principal: Principal, tenant_name: str) -> list[MobileLine]:
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    return list(
        session.scalars(
            select(MobileLine).where(MobileLine.tenant_id == tenant.id).order_by(MobileLine.msisdn)
        )
    )


def get_mobile_line(
    session: Session, principal: Principal, tenant_name: str, msisdn: str
) -> MobileLine:
    authorize_tenant(principal, tenant_name, ADMINS)
    return _line_in_tenant(session, tenant_by_name(session, tenant_name), msisdn)


def create_mobile_line(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    body: MobileLineCreate,
    remote_address: str | None,
) -> MobileLine:
    """Provision a mobile line in the tenant (see the module rules).

    Raises:
        Forbidden, NotFound: not an operator; no such tenant.
        InvalidFields: another contract holder, or B number = MSISDN.
        Conflict: a number is already a line's.
    """
    require_operator(principal, "provision mobile lines")
    tenant = tenant_by_name(session, tenant_name)
    problems: list[FieldProblem] = []
    holder_problem = _holder_problem(tenant, body.contract_holder_name)
    if holder_problem is not None:
        problems.append(holder_problem)
    if body.b_number is not None and body.b_number == body.msisdn:
        problems.append(FieldProblem("b_number", "b_number", "must differ from the msisdn"))
    if problems:
        raise InvalidFields(problems)
    if _number_taken(session, body.msisdn, None):
        raise Conflict("the msisdn is already a mobile line's number")
    if body.b_number is not None and _number_taken(session, body.b_number, None):
        raise Conflict("the b_number is already a mobile line's number")
    number_050 = body.options.number_050
    if number_050 is not None and _number_050_taken(session, number_050, None):
        raise Conflict("the 050 number is already a mobile line's")
    line = MobileLine(
        tenant=tenant,
        msisdn=body.msisdn,
        contract_holder_name=body.contract_holder_name,
        b_number=body.b_number,
        option_050=number_050 is not None,
        number_050=number_050,
        option_gateway=body.options.gateway,
        option_roaming=body.options.roaming,
        abroad=body.abroad,
    )
    session.add(line)
    commit_change(
        session,
        context,
        principal,
        action="mobile_line.create",
        target=line.msisdn,
        tenant_id=tenant.id,
        before=None,
        after=mobile_line_view(line),
        remote_address=remote_address,
    )
    return line


def update_mobile_line(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    msisdn: str,
    body: MobileLineUpdate,
    remote_address: str | None,
) -> MobileLine:
    """Change a line's contract holder, B number, options or abroad state.

    Raises:
        Forbidden, NotFound: not an operator; no such tenant or line.
        InvalidFields: another contract holder, or B number = MSISDN.
        Conflict: a number is already a line's; removing a B number an extension uses.
    """
    require_operator(principal, "change mobile lines")
    tenant = tenant_by_name(session, tenant_name)
    line = _line_in_tenant(session, tenant, msisdn)
    before = mobile_line_view(line)
    fields = body.model_fields_set
    problems: list[FieldProblem] = []
    if body.contract_holder_name is not None:
        holder_problem = _holder_problem(tenant, body.contract_holder_name)
        if holder_problem is not None:
            problems.append(holder_problem)
    if body.b_number is not None and body.b_number == line.msisdn:
        problems.append(FieldProblem("b_number", "b_number", "must differ from the msisdn"))
    if problems:
        raise InvalidFields(problems)
    if "b_number" in fields and body.b_number != line.b_number:
        if body.b_number is None:
            used = session.scalars(
                select(Extension.number).where(
                    Extension.mobile_line_id == line.id,
                    Extension.mobile_identity == MobileIdentity.B,
                )
            ).first()
            if used is not None:
                raise Conflict(f"extension {used} stands for the B number: change it first")
        elif _number_taken(session, body.b_number, line.id):
            raise Conflict("the b_number is already a mobile line's number")
        line.b_number = body.b_number
    if body.contract_holder_name is not None:
        line.contract_holder_name = body.contract_holder_name
    if body.options is not None:
        options = body.options
        if "number_050" in options.model_fields_set and options.number_050 != line.number_050:
            if options.number_050 is not None and _number_050_taken(
                session, options.number_050, line.id
            ):
                raise Conflict("the 050 number is already a mobile line's")
            line.number_050 = options.number_050
            line.option_050 = options.number_050 is not None
        if options.gateway is not None:
            line.option_gateway = options.gateway
        if options.roaming is not None:
            line.option_roaming = options.roaming
    if body.abroad is not None:
        line.abroad = body.abroad
    after = mobile_line_view(line)
    if after != before:
        commit_change(
            session,
            context,
            principal,
            action="mobile_line.update",
            target=line.msisdn,
            tenant_id=tenant.id,
            before=before,
            after=after,
            remote_address=remote_address,
        )
    return line


def delete_mobile_line(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    msisdn: str,
    remote_address: str | None,
) -> None:
    """Delete a line no extension points at.

    Raises:
        Forbidden, NotFound: not an operator; no such tenant or line.
        Conflict: an extension points at the line.
    """
    require_operator(principal, "delete mobile lines")
    tenant = tenant_by_name(session, tenant_name)
    line = _line_in_tenant(session, tenant, msisdn)
    used = session.scalars(
        select(Extension.number).where(Extension.mobile_line_id == line.id)
    ).first()
    if used is not None:
        raise Conflict(f"extension {used} points at this line: change or delete it first")
    before = mobile_line_view(line)
    session.delete(line)
    commit_change(
        session,
        context,
        principal,
        action="mobile_line.delete",
        target=line.msisdn,
        tenant_id=tenant.id,
        before=before,
        after=None,
        remote_address=remote_address,
    )
