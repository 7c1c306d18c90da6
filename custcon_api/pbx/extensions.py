"""A tenant's extensions and the extension <-> mobile mapping: rules and transactions.

Rules:
- Who: an operator, and the tenant's administrator, manage every extension of the tenant
  (list, create, change, delete, map to a mobile line). A `user` reads and changes only
  the extension they own, and of it only `display_name`, `no_answer_timeout_seconds`
  and `voicemail_enabled` (403 for any other field, before anything is read). A
  `tollfree_viewer` reaches nothing here. Authorization precedes every lookup
  (`custcon_api.pbx.access`).
- Kinds (PRODUCT.md Part B) and the fields each takes; a field of another kind is 422
  naming it:
  - `fixed_ip_phone`: `sip_password` or `static_contact_uri` (it must be reachable),
    `digest_algorithms` (only with a password), `voicemail_enabled`;
  - `mobile`: `mobile_line` (the MSISDN of a line of this tenant, under the tenant's
    contract holder) and `mobile_identity` (`a` by default; `b` needs the line's 2in1
    B number); a mobile number is one extension at most (409);
  - `customer_pbx`: the range `number`..`range_last` (same length, not descending) and
    `trunk`, a `customer_pbx` trunk of this tenant.
  Number and kind never change (delete and create instead).
- Extension numbers form one group per tenant, across sites: a number, or any number of
  a range, that is already an extension or inside a range is 409. Numbers of different
  lengths never collide.
- Unknown references in a body (site, line, trunk) are 422 naming the field; an unknown
  extension in the path is 404. A line or trunk of another tenant is reported exactly like
  an unknown one, so nothing of other tenants leaks.
- SIP passwords are stored as HA1 digests only (MD5 and SHA-256, `cloudpbx.domain
  .compute_ha1`), username = the extension number, realm = the tenant's SIP domain, as
  provisioning does; they are never returned or audited. Null removes the credential.
- Every change writes one audit row (`extension.create` / `.update` / `.delete`; the
  mobile mapping is an `extension.update`) and publishes `cloudpbx.notify.CONFIG` after
  the commit; a request that changes nothing writes and publishes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudpbx.domain import (
    AccountRole,
    DigestAlgorithm,
    ExtensionKind,
    MobileIdentity,
    TrunkKind,
    compute_ha1,
)
from cloudpbx.models import Extension, MobileLine, SipCredential, Site, Tenant, Trunk
from cloudpbx.rules import same_contract_holder
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, Forbidden, InvalidFields, NotFound
from custcon_api.pbx.access import ADMINS, authorize_tenant, commit_change, tenant_by_name
from custcon_api.pbx.schemas import (
    USER_EXTENSION_FIELDS,
    ExtensionCreate,
    ExtensionUpdate,
    MobileMapping,
)
from custcon_api.pbx.views import extension_view

__all__ = [
    "create_extension",
    "delete_extension",
    "get_extension",
    "list_extensions",
    "map_mobile_line",
    "update_extension",
]

_OWNERS = frozenset({AccountRole.OPERATOR, AccountRole.TENANT_ADMIN, AccountRole.USER})

_KIND_FIELDS = {
    ExtensionKind.FIXED_IP_PHONE: frozenset(
        {"sip_password", "digest_algorithms", "static_contact_uri", "voicemail_enabled"}
    ),
    ExtensionKind.MOBILE: frozenset({"mobile_line", "mobile_identity"}),
    ExtensionKind.CUSTOMER_PBX: frozenset({"trunk", "range_last"}),
}
"""The fields only one kind takes (every kind takes site, display_name and the timeout)."""


def _extension_in_tenant(session: Session, tenant: Tenant, number: str) -> Extension:
    extension = session.scalars(
        select(Extension).where(Extension.tenant_id == tenant.id, Extension.number == number)
    ).one_or_none()
    if extension is None:
        raise NotFound("no such extension in this tenant")
    return extension


def list_extensions(session: Session, principal: Principal, tenant_name: str) -> list[Extension]:
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    return list(
        session.scalars(
            select(Extension).where(Extension.tenant_id == tenant.id).order_by(Extension.number)
        )
    )


def get_extension(
    session: Session, principal: Principal, tenant_name: str, number: str
) -> Extension:
    authorize_tenant(principal, tenant_name, _OWNERS, extension_number=number)
    return _extension_in_tenant(session, tenant_by_name(session, tenant_name), number)


@dataclass(slots=True)
class _Problems:
    """The 422 entries found so far."""

    items: list[FieldProblem]

    def add(self, field: str, kind: str, message: str) -> None:
        self.items.append(FieldProblem(field, kind, message))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidFields(self.items)


def _refuse_other_kinds(
    kind: ExtensionKind, values: dict[str, object], problems: _Problems
) -> None:
    """422 for each field given a value that only another kind takes."""
    own = _KIND_FIELDS[kind]
    for other_kind, fields in _KIND_FIELDS.items():
        if other_kind is kind:
            continue
        for field in sorted(fields - own):
            value = values.get(field)
            if value is None or (field == "voicemail_enabled" and value is False):
                continue
            problems.add(field, "not_allowed", f"applies to {other_kind.value} extensions only")


def _site(session: Session, tenant: Tenant, name: str, problems: _Problems) -> Site | None:
    site = session.scalars(
        select(Site).where(Site.tenant_id == tenant.id, Site.name == name)
    ).one_or_none()
    if site is None:
        problems.add("site", "unknown_site", "names no site of this tenant")
    return site


def _mobile_line(
    session: Session,
    tenant: Tenant,
    msisdn: str,
    identity: MobileIdentity,
    problems: _Problems,
    *,
    line_field: str,
    identity_field: str,
) -> MobileLine | None:
    """The tenant's line `msisdn` if it may carry an extension of `identity`."""
    line = session.scalars(
        select(MobileLine).where(MobileLine.tenant_id == tenant.id, MobileLine.msisdn == msisdn)
    ).one_or_none()
    if line is None:
        problems.add(line_field, "unknown_mobile_line", "is no mobile line of this tenant")
        return None
    if not same_contract_holder(line.contract_holder_name, tenant.contract_holder_name):
        problems.add(
            line_field,
            "contract_holder",
            "the line is under another contract holder than the tenant",
        )
        return None
    if identity is MobileIdentity.B and line.b_number is None:
        problems.add(identity_field, "no_b_number", "the line has no 2in1 B number")
        return None
    return line


def _check_mobile_number_free(
    session: Session, line: MobileLine, identity: MobileIdentity, extension_id: int | None
) -> None:
    holder = session.scalars(
        select(Extension.number).where(
            Extension.mobile_line_id == line.id,
            Extension.mobile_identity == identity,
            Extension.id != (extension_id or 0),
        )
    ).first()
    if holder is not None:
        raise Conflict(f"mobile_line: that mobile number is already extension {holder}")


def _pbx_trunk(session: Session, tenant: Tenant, name: str, problems: _Problems) -> Trunk | None:
    trunk = session.scalars(
        select(Trunk).where(
            Trunk.name == name, Trunk.tenant_id == tenant.id, Trunk.kind == TrunkKind.CUSTOMER_PBX
        )
    ).one_or_none()
    if trunk is None:
        problems.add("trunk", "unknown_trunk", "is no customer_pbx trunk of this tenant")
    return trunk


def _range_problem(number: str, range_last: str, problems: _Problems) -> None:
    if len(range_last) != len(number):
        problems.add("range_last", "range", "must have as many digits as number")
    elif range_last < number:
        problems.add("range_last", "range", "must not be below number")


def _check_numbering(
    session: Session, tenant: Tenant, number: str, range_last: str | None, own_id: int | None
) -> None:
    """409 when `number`..`range_last` meets another extension's number or range."""
    last = range_last or number
    rows = session.execute(
        select(Extension.number, Extension.range_last).where(
            Extension.tenant_id == tenant.id, Extension.id != (own_id or 0)
        )
    )
    for other_number, other_last in rows:
        other_end = other_last or other_number
        if len(other_number) != len(number):
            continue
        if number <= other_end and other_number <= last:
            shown = other_number if other_last is None else f"{other_number}-{other_last}"
            raise Conflict(f"number: overlaps extension {shown} of this tenant")


def _credential(number: str, realm: str, password: str) -> SipCredential:
    return SipCredential(
        username=number,
        realm=realm,
        ha1_md5=compute_ha1(number, realm, password, DigestAlgorithm.MD5),
        ha1_sha256=compute_ha1(number, realm, password, DigestAlgorithm.SHA_256),
    )


def _check_fixed_phone(extension: Extension, problems: _Problems) -> None:
    """A fixed phone must be reachable; digest algorithms need a password."""
    if extension.credential is None and extension.static_contact_uri is None:
        problems.add(
            "sip_password",
            "missing",
            "a fixed_ip_phone needs a sip_password (to register) or a static_contact_uri",
        )
    if extension.credential is None and extension.digest_algorithms is not None:
        problems.add("digest_algorithms", "needs_password", "needs a sip_password")


def create_extension(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    body: ExtensionCreate,
    remote_address: str | None,
) -> Extension:
    """Create an extension of any kind (see the module rules).

    Raises:
        Forbidden, NotFound: see `custcon_api.pbx.access`.
        InvalidFields: a field is missing, of another kind, or names nothing of the tenant.
        Conflict: the number (or range) meets another extension; the mobile number is
            already an extension.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    # No autoflush while the row is half built: queries must not write it early.
    with session.no_autoflush:
        problems = _Problems([])
        _refuse_other_kinds(body.kind, body.model_dump(), problems)
        site = _site(session, tenant, body.site, problems)
        extension = Extension(
            tenant=tenant,
            number=body.number,
            kind=body.kind,
            display_name=body.display_name,
            no_answer_timeout_seconds=body.no_answer_timeout_seconds,
            voicemail_enabled=False,
        )
        line: MobileLine | None = None
        if body.kind is ExtensionKind.FIXED_IP_PHONE:
            extension.digest_algorithms = (
                None
                if body.digest_algorithms is None
                else [a.value for a in body.digest_algorithms]
            )
            extension.static_contact_uri = body.static_contact_uri
            extension.voicemail_enabled = body.voicemail_enabled
            if body.sip_password is not None:
                extension.credential = _credential(
                    body.number, tenant.sip_domain, body.sip_password
                )
            _check_fixed_phone(extension, problems)
        elif body.kind is ExtensionKind.MOBILE:
            identity = body.mobile_identity or MobileIdentity.A
            if body.mobile_line is None:
                problems.add("mobile_line", "missing", "is required for a mobile extension")
            else:
                line = _mobile_line(
                    session,
                    tenant,
                    body.mobile_line,
                    identity,
                    problems,
                    line_field="mobile_line",
                    identity_field="mobile_identity",
                )
            extension.mobile_line = line
            extension.mobile_identity = identity
        else:
            if body.range_last is None:
                problems.add("range_last", "missing", "is required for a customer_pbx extension")
            else:
                _range_problem(body.number, body.range_last, problems)
            if body.trunk is None:
                problems.add("trunk", "missing", "is required for a customer_pbx extension")
            else:
                extension.trunk = _pbx_trunk(session, tenant, body.trunk, problems)
            extension.range_last = body.range_last
        problems.raise_any()
        assert site is not None
        extension.site = site
        _check_numbering(session, tenant, body.number, extension.range_last, None)
        if line is not None and extension.mobile_identity is not None:
            _check_mobile_number_free(session, line, extension.mobile_identity, None)
    session.add(extension)
    commit_change(
        session,
        context,
        principal,
        action="extension.create",
        target=f"{tenant.name}/{extension.number}",
        tenant_id=tenant.id,
        before=None,
        after=extension_view(extension),
        remote_address=remote_address,
    )
    return extension


def update_extension(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    number: str,
    body: ExtensionUpdate,
    remote_address: str | None,
) -> Extension:
    """Change an extension's settings (see the module rules).

    Raises:
        Forbidden: not allowed, or a `user` sending a field that is not their own setting.
        NotFound: no such tenant or extension.
        InvalidFields, Conflict: as for `create_extension`.
    """
    fields = body.model_fields_set
    authorize_tenant(principal, tenant_name, _OWNERS, extension_number=number)
    if principal.account.role is AccountRole.USER and not fields <= USER_EXTENSION_FIELDS:
        raise Forbidden(
            "a user can change only display_name, no_answer_timeout_seconds and voicemail_enabled"
        )
    tenant = tenant_by_name(session, tenant_name)
    extension = _extension_in_tenant(session, tenant, number)
    # No autoflush while the row is half built: queries must not write it early.
    with session.no_autoflush:
        before = extension_view(extension)
        problems = _Problems([])
        given = {field: getattr(body, field) for field in fields}
        _refuse_other_kinds(extension.kind, given, problems)
        problems.raise_any()
        if body.site is not None:
            site = _site(session, tenant, body.site, problems)
            if site is not None:
                extension.site = site
        if body.display_name is not None:
            extension.display_name = body.display_name
        if body.no_answer_timeout_seconds is not None:
            extension.no_answer_timeout_seconds = body.no_answer_timeout_seconds
        line: MobileLine | None = None
        if extension.kind is ExtensionKind.FIXED_IP_PHONE:
            if "sip_password" in fields:
                if body.sip_password is None:
                    extension.credential = None
                else:
                    _set_password(extension, tenant, body.sip_password)
            if "digest_algorithms" in fields:
                extension.digest_algorithms = (
                    None
                    if body.digest_algorithms is None
                    else [algorithm.value for algorithm in body.digest_algorithms]
                )
            if "static_contact_uri" in fields:
                extension.static_contact_uri = body.static_contact_uri
            if body.voicemail_enabled is not None:
                extension.voicemail_enabled = body.voicemail_enabled
            _check_fixed_phone(extension, problems)
        elif extension.kind is ExtensionKind.MOBILE:
            if body.mobile_line is not None or body.mobile_identity is not None:
                current = extension.mobile_line
                msisdn = body.mobile_line or (None if current is None else current.msisdn)
                identity = body.mobile_identity or extension.mobile_identity or MobileIdentity.A
                assert msisdn is not None  # a mobile extension always has its line (CHECK)
                line = _mobile_line(
                    session,
                    tenant,
                    msisdn,
                    identity,
                    problems,
                    line_field="mobile_line",
                    identity_field="mobile_identity",
                )
                if line is not None:
                    extension.mobile_line = line
                    extension.mobile_identity = identity
        else:
            if body.range_last is not None:
                _range_problem(extension.number, body.range_last, problems)
                extension.range_last = body.range_last
            if body.trunk is not None:
                trunk = _pbx_trunk(session, tenant, body.trunk, problems)
                if trunk is not None:
                    extension.trunk = trunk
        problems.raise_any()
        if body.range_last is not None:
            _check_numbering(session, tenant, extension.number, extension.range_last, extension.id)
        if line is not None and extension.mobile_identity is not None:
            _check_mobile_number_free(session, line, extension.mobile_identity, extension.id)
    after = extension_view(extension)
    if after != before or body.sip_password is not None:
        commit_change(
            session,
            context,
            principal,
            action="extension.update",
            target=f"{tenant.name}/{extension.number}",
            tenant_id=tenant.id,
            before=before,
            after=after,
            remote_address=remote_address,
        )
    return extension


def _set_password(extension: Extension, tenant: Tenant, password: str) -> None:
    fresh = _credential(extension.number, tenant.sip_domain, password)
    if extension.credential is None:
        extension.credential = fresh
        return
    # Update in place: replacing the row would insert before deleting (unique realm+user).
    extension.credential.username = fresh.username
    extension.credential.realm = fresh.realm
    extension.credential.ha1_md5 = fresh.ha1_md5
    extension.credential.ha1_sha256 = fresh.ha1_sha256


def delete_extension(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    number: str,
    remote_address: str | None,
) -> None:
    """Delete an extension (a `user` owning it keeps their account, owning none).

    Raises:
        Forbidden, NotFound: see `custcon_api.pbx.access`; no such extension.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    extension = _extension_in_tenant(session, tenant, number)
    before = extension_view(extension)
    session.delete(extension)
    commit_change(
        session,
        context,
        principal,
        action="extension.delete",
        target=f"{tenant.name}/{number}",
        tenant_id=tenant.id,
        before=before,
        after=None,
        remote_address=remote_address,
    )


def map_mobile_line(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    number: str,
    body: MobileMapping,
    remote_address: str | None,
) -> Extension:
    """Set which mobile number (line and A/B identity) a mobile extension stands for.

    Raises:
        Forbidden, NotFound: see `custcon_api.pbx.access`; no such extension.
        Conflict: the extension is not a mobile one; the mobile number is another
            extension already.
        InvalidFields: the line is no line of this tenant or its contract holder, or has
            no B number for identity `b`.
    """
    authorize_tenant(principal, tenant_name, ADMINS)
    tenant = tenant_by_name(session, tenant_name)
    extension = _extension_in_tenant(session, tenant, number)
    if extension.kind is not ExtensionKind.MOBILE:
        raise Conflict(
            f"extension {number} is a {extension.kind.value} extension: only a mobile"
            " extension maps to a mobile line"
        )
    problems = _Problems([])
    line = _mobile_line(
        session,
        tenant,
        body.msisdn,
        body.identity,
        problems,
        line_field="msisdn",
        identity_field="identity",
    )
    problems.raise_any()
    assert line is not None
    _check_mobile_number_free(session, line, body.identity, extension.id)
    # No autoflush while the row is half built: queries must not write it early.
    with session.no_autoflush:
        before = extension_view(extension)
        extension.mobile_line = line
        extension.mobile_identity = body.identity
    after = extension_view(extension)
    if after != before:
        commit_change(
            session,
            context,
            principal,
            action="extension.update",
            target=f"{tenant.name}/{extension.number}",
            tenant_id=tenant.id,
            before=before,
            after=after,
            remote_address=remote_address,
        )
    return extension
