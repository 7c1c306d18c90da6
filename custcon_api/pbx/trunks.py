"""SIP trunks: who may see them, the rules on their settings, the transaction of each change.

Rules:
- Trunks are the operator's: only an operator creates, changes or deletes one. A tenant
  administrator may read the trunks of their own tenant (a customer PBX or external
  gateway); any other trunk, carrier-wide ones included, is 404 to them exactly like a
  missing one. `user` and `tollfree_viewer` accounts get 403.
- `customer_pbx` and `external_gateway` trunks belong to a tenant (`tenant` required);
  `mobile_network` and `pstn` trunks are carrier-wide (`tenant` refused). An unknown
  tenant is 422 naming `tenant`.
- A trunk's name is unique (409) and never changes. `host` and every trusted source are
  IP literals (the switch does not resolve names). A source address (with its port, or
  any port) is trusted as one trunk only: listing it twice is 422, claiming another
  trunk's is 409.
- Digest authentication is all of `auth_username`, `auth_password` and `auth_realm`, or
  none: the password is stored as HA1 digests (MD5, SHA-256) only, never returned or
  audited. Changing the username or realm needs the password again (the HA1 covers
  them); `auth_username: null` removes authentication.
- A trunk that customer PBX extensions route to cannot be deleted, leave its tenant or
  stop being a `customer_pbx` trunk (409): those extensions change first.
- A `pstn` or `mobile_network` trunk a tenant names as its `pstn_trunk` /
  `mobile_trunk` (`custcon_api.pbx.tenants`) cannot be deleted, change kind or get a
  tenant (409): the tenant's setting changes first.
- `identity_trusted` (true, false, or null: by kind) says whether the peer is in our trust
  domain for the identities we send it (RFC 3325 §2; `softswitch.b2bua.pbx_routing`
  rule 7): a customer's gateway or PBX inside the trust domain can be marked trusted, a
  carrier trunk untrusted. It does not change what we accept from the trunk.
- `caller_area_header` and `abroad_header` are SIP header names (RFC 3261 §25.1 tokens,
  422 naming the field otherwise); null (or absent at creation) means none.
- Every change writes its audit row (`trunk.create` / `.update` / `.delete`) and
  publishes `cloudpbx.notify.CONFIG` after the commit.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cloudpbx.domain import AccountRole, DigestAlgorithm, TrunkKind, compute_ha1
from cloudpbx.models import Extension, Tenant, Trunk, TrunkSourceAddress
from cloudpbx.rules import parse_source_address
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, Forbidden, InvalidFields, NotFound
from custcon_api.pbx.access import commit_change, require_operator
from custcon_api.pbx.schemas import TrunkCreate, TrunkUpdate
from custcon_api.pbx.views import trunk_view

__all__ = ["create_trunk", "delete_trunk", "get_trunk", "list_trunks", "update_trunk"]

_TENANT_KINDS = frozenset({TrunkKind.CUSTOMER_PBX, TrunkKind.EXTERNAL_GATEWAY})


def _readable_tenant_id(principal: Principal) -> int | None:
    """None for an operator (every trunk); the tenant of an administrator; else 403."""
    account = principal.account
    if account.role is AccountRole.OPERATOR:
        return None
    if account.role is AccountRole.TENANT_ADMIN and account.tenant_id is not None:
        return account.tenant_id
    raise Forbidden("your role cannot read trunks")


def list_trunks(session: Session, principal: Principal) -> list[Trunk]:
    """Every trunk (operators) or the caller's tenant's trunks (administrators), by name."""
    tenant_id = _readable_tenant_id(principal)
    statement = select(Trunk).order_by(Trunk.name)
    if tenant_id is not None:
        statement = statement.where(Trunk.tenant_id == tenant_id)
    return list(session.scalars(statement))


def _trunk_by_name(session: Session, name: str) -> Trunk:
    trunk = session.scalars(select(Trunk).where(Trunk.name == name)).one_or_none()
    if trunk is None:
        raise NotFound("no such trunk")
    return trunk


def get_trunk(session: Session, principal: Principal, name: str) -> Trunk:
    tenant_id = _readable_tenant_id(principal)
    trunk = _trunk_by_name(session, name)
    if tenant_id is not None and trunk.tenant_id != tenant_id:
        raise NotFound("no such trunk")
    return trunk


def _tenant(
    session: Session, kind: TrunkKind, tenant_name: str | None, problems: list[FieldProblem]
) -> Tenant | None:
    if kind in _TENANT_KINDS:
        if tenant_name is None:
            problems.append(
                FieldProblem("tenant", "missing", f"is required for a {kind.value} trunk")
            )
            return None
        tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one_or_none()
        if tenant is None:
            problems.append(FieldProblem("tenant", "unknown_tenant", "names no tenant"))
        return tenant
    if tenant_name is not None:
        problems.append(
            FieldProblem("tenant", "not_allowed", f"a {kind.value} trunk belongs to no tenant")
        )
    return None


def _sources(
    session: Session, trunk_id: int | None, texts: list[str], problems: list[FieldProblem]
) -> list[tuple[str, int | None]]:
    """The parsed sources; 422 for a repeat, 409 for another trunk's."""
    parsed: list[tuple[str, int | None]] = []
    for index, text in enumerate(texts):
        source = parse_source_address(text)  # the schema validated the text already
        if source in parsed:
            problems.append(
                FieldProblem(f"trusted_sources[{index}]", "duplicate", "is listed twice")
            )
        parsed.append(source)
    for address, port in parsed:
        owner = session.scalars(
            select(Trunk.name)
            .join(TrunkSourceAddress.trunk)
            .where(
                TrunkSourceAddress.address == address,
                TrunkSourceAddress.port.is_(None)
                if port is None
                else TrunkSourceAddress.port == port,
                Trunk.id != (trunk_id or 0),
            )
        ).first()
        if owner is not None:
            raise Conflict(f"trusted_sources: {address} is already trusted as trunk {owner}")
    return parsed


def _set_auth(trunk: Trunk, username: str, realm: str, password: str) -> None:
    trunk.auth_username = username
    trunk.auth_realm = realm
    trunk.auth_ha1_md5 = compute_ha1(username, realm, password, DigestAlgorithm.MD5)
    trunk.auth_ha1_sha256 = compute_ha1(username, realm, password, DigestAlgorithm.SHA_256)


def _clear_auth(trunk: Trunk) -> None:
    trunk.auth_username = None
    trunk.auth_realm = None
    trunk.auth_ha1_md5 = None
    trunk.auth_ha1_sha256 = None


def _routed_extension(session: Session, trunk: Trunk) -> str | None:
    return session.scalars(select(Extension.number).where(Extension.trunk_id == trunk.id)).first()


def _naming_tenant(session: Session, trunk: Trunk) -> str | None:
    """`TENANT's pstn_trunk` (or mobile_trunk) of a tenant that names the trunk, else None."""
    row = session.execute(
        select(Tenant.name, Tenant.pstn_trunk == trunk.name)
        .where(or_(Tenant.pstn_trunk == trunk.name, Tenant.mobile_trunk == trunk.name))
        .order_by(Tenant.name)
    ).first()
    if row is None:
        return None
    name, as_pstn = row
    return f"tenant {name}'s {'pstn_trunk' if as_pstn else 'mobile_trunk'}"


def create_trunk(
    session: Session,
    context: AppContext,
    principal: Principal,
    body: TrunkCreate,
    remote_address: str | None,
) -> Trunk:
    """Create a trunk (see the module rules).

    Raises:
        Forbidden: not an operator.
        InvalidFields: tenant missing, refused or unknown; partial authentication;
            a source listed twice.
        Conflict: the name is taken, or a source is another trunk's.
    """
    require_operator(principal, "create trunks")
    problems: list[FieldProblem] = []
    tenant = _tenant(session, body.kind, body.tenant, problems)
    auth = {
        "auth_username": body.auth_username,
        "auth_password": body.auth_password,
        "auth_realm": body.auth_realm,
    }
    if any(value is not None for value in auth.values()):
        problems.extend(
            FieldProblem(field, "missing", "digest authentication needs all three auth_ fields")
            for field, value in auth.items()
            if value is None
        )
    sources = _sources(session, None, body.trusted_sources, problems)
    if problems:
        raise InvalidFields(problems)
    if session.scalars(select(Trunk.id).where(Trunk.name == body.name)).first() is not None:
        raise Conflict("a trunk with this name exists")
    trunk = Trunk(
        name=body.name,
        kind=body.kind,
        tenant=tenant,
        host=body.host,
        port=body.port,
        transport=body.transport,
        capacity=body.capacity,
        caller_area_header=body.caller_area_header,
        abroad_header=body.abroad_header,
        identity_trusted=body.identity_trusted,
        source_addresses=[
            TrunkSourceAddress(address=address, port=port) for address, port in sources
        ],
    )
    if body.auth_username is not None and body.auth_realm is not None and body.auth_password:
        _set_auth(trunk, body.auth_username, body.auth_realm, body.auth_password)
    session.add(trunk)
    commit_change(
        session,
        context,
        principal,
        action="trunk.create",
        target=trunk.name,
        tenant_id=None if tenant is None else tenant.id,
        before=None,
        after=trunk_view(trunk),
        remote_address=remote_address,
    )
    return trunk


def update_trunk(
    session: Session,
    context: AppContext,
    principal: Principal,
    name: str,
    body: TrunkUpdate,
    remote_address: str | None,
) -> Trunk:
    """Change a trunk's settings (see the module rules).

    Raises:
        Forbidden, NotFound: not an operator; no such trunk.
        InvalidFields: as for `create_trunk`; a new username or realm without password.
        Conflict: a source is another trunk's; extensions route to the trunk and it
            would stop being their tenant's customer PBX trunk; a tenant names it as its
            `pstn_trunk` / `mobile_trunk` and it would change kind or get a tenant.
    """
    require_operator(principal, "change trunks")
    trunk = _trunk_by_name(session, name)
    before = trunk_view(trunk)
    fields = body.model_fields_set
    problems: list[FieldProblem] = []
    with session.no_autoflush:
        kind = body.kind or trunk.kind
        if "kind" in fields or "tenant" in fields:
            tenant_name = (
                body.tenant
                if "tenant" in fields
                else (None if trunk.tenant is None else trunk.tenant.name)
            )
            tenant = _tenant(session, kind, tenant_name, problems)
            if (kind is not TrunkKind.CUSTOMER_PBX or tenant is not trunk.tenant) and (
                routed := _routed_extension(session, trunk)
            ) is not None:
                raise Conflict(
                    f"customer_pbx extension {routed} routes to this trunk: change it first"
                )
            if (kind is not trunk.kind or tenant is not None) and (
                naming := _naming_tenant(session, trunk)
            ) is not None:
                raise Conflict(f"this trunk is {naming}: change the tenant first")
        else:
            tenant = trunk.tenant
        sources = None
        if body.trusted_sources is not None:
            sources = _sources(session, trunk.id, body.trusted_sources, problems)
        username = body.auth_username if "auth_username" in fields else trunk.auth_username
        realm = body.auth_realm if "auth_realm" in fields else trunk.auth_realm
        if username is None:
            for field in ("auth_password", "auth_realm"):
                if getattr(body, field) is not None:
                    problems.append(FieldProblem(field, "not_allowed", "needs auth_username"))
        elif realm is None:
            problems.append(
                FieldProblem("auth_realm", "missing", "digest authentication needs a realm")
            )
        elif body.auth_password is None and (
            username != trunk.auth_username or realm != trunk.auth_realm
        ):
            problems.append(
                FieldProblem(
                    "auth_password",
                    "missing",
                    "is needed again when auth_username or auth_realm changes",
                )
            )
        if problems:
            raise InvalidFields(problems)
        trunk.kind = kind
        trunk.tenant = tenant
        if body.host is not None:
            trunk.host = body.host
        if body.port is not None:
            trunk.port = body.port
        if body.transport is not None:
            trunk.transport = body.transport
        if "capacity" in fields:
            trunk.capacity = body.capacity
        if "caller_area_header" in fields:
            trunk.caller_area_header = body.caller_area_header
        if "abroad_header" in fields:
            trunk.abroad_header = body.abroad_header
        if "identity_trusted" in fields:
            trunk.identity_trusted = body.identity_trusted
        if sources is not None and sources != [
            (source.address, source.port) for source in trunk.source_addresses
        ]:
            trunk.source_addresses = [
                TrunkSourceAddress(address=address, port=port) for address, port in sources
            ]
        if username is None:
            _clear_auth(trunk)
        elif realm is not None and body.auth_password is not None:
            _set_auth(trunk, username, realm, body.auth_password)
    after = trunk_view(trunk)
    if after != before or body.auth_password is not None:
        commit_change(
            session,
            context,
            principal,
            action="trunk.update",
            target=trunk.name,
            tenant_id=None if tenant is None else tenant.id,
            before=before,
            after=after,
            remote_address=remote_address,
        )
    return trunk


def delete_trunk(
    session: Session,
    context: AppContext,
    principal: Principal,
    name: str,
    remote_address: str | None,
) -> None:
    """Delete a trunk no extension routes to and no tenant names.

    Raises:
        Forbidden, NotFound: not an operator; no such trunk.
        Conflict: customer PBX extensions route to it, or a tenant names it as its
            `pstn_trunk` / `mobile_trunk`.
    """
    require_operator(principal, "delete trunks")
    trunk = _trunk_by_name(session, name)
    routed = _routed_extension(session, trunk)
    if routed is not None:
        raise Conflict(f"customer_pbx extension {routed} routes to this trunk: delete it first")
    naming = _naming_tenant(session, trunk)
    if naming is not None:
        raise Conflict(f"this trunk is {naming}: change the tenant first")
    before = trunk_view(trunk)
    tenant_id = trunk.tenant_id
    session.delete(trunk)
    commit_change(
        session,
        context,
        principal,
        action="trunk.delete",
        target=name,
        tenant_id=tenant_id,
        before=before,
        after=None,
        remote_address=remote_address,
    )
