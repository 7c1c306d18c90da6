"""Provisioning from a YAML file: tenants, their sites and extensions, trunks, and the
Customer Control accounts.

Rules:
- The file is validated whole before anything is written: shape and types by the pydantic
  models below, then the rules across entries (`_cross_check`). Any problem refuses the
  whole file with `ProvisioningError`, which names the file and, for each problem, the key
  path (`tenants[0].extensions[3].number`) and the reason. Nothing is written then.
- Writing is one transaction: `provision` commits once on success and rolls back on any
  error, including a conflict with rows already in the store.
- Provisioning is idempotent: entries are matched by their natural keys (tenant name, site
  name within the tenant, extension number within the tenant, trunk name) and only the
  attributes that differ are written, so a second run with the same file changes nothing.
  Entries the file does not mention are left alone: the file adds and updates, it never
  deletes (the Customer Control API writes the same store).
- A trunk's `tenant` must name a tenant in the same file.
- A trunk's trusted sources are part of its value: the file's list replaces the stored one.
- Plain passwords exist only in the file and in memory: the store gets HA1 digests for
  MD5 and SHA-256 (`cloudpbx.domain.compute_ha1`), with realm = the tenant's SIP domain and
  username = the extension number unless `username` is given. Error messages never repeat
  input values that could be passwords.
- Extension numbers must be YAML strings (`"1001"`): YAML reads an unquoted `0120` as the
  octal number 80, so numbers as integers are refused rather than guessed.
- Accounts (`accounts:`) are matched by login name. An account's `tenant` must name a
  tenant in the same file (none for an operator), a `user` must name an `extension` of
  that tenant (no other role may), and the login name must fit its role and tenant
  (`cloudpbx.domain.account_login_problem`). Passwords must meet the policy's strength
  rules (length, character classes; `cloudpbx.domain.password_policy_violations`) and are
  stored as argon2id hashes only. A hash is salted, so a re-run does not rehash: the file's
  password is verified against the stored hash and only a mismatch writes a new hash
  (and revokes the account's API tokens, as a password change through the API does).
- Every account created or updated writes an `audit_log` row (actor `(provisioning)`)
  in the same transaction; an unchanged account writes nothing.
- Only `fixed_ip_phone` extensions can be provisioned yet; `mobile` and `customer_pbx` need
  fields (mobile number, PBX trunk) that later issues add.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
)
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cloudpbx.domain import (
    MAX_PASSWORD_LENGTH,
    AccountRole,
    DigestAlgorithm,
    ExtensionKind,
    Transport,
    account_login_problem,
    compute_ha1,
    hash_account_password,
    password_policy_violations,
    verify_account_password,
)
from cloudpbx.models import (
    Account,
    ApiToken,
    AuditLog,
    Extension,
    SipCredential,
    Site,
    Tenant,
    Trunk,
    TrunkSourceAddress,
)
from cloudpbx.snapshot import TrunkSource, canonical_address

__all__ = [
    "ChangeCounts",
    "PROVISIONING_ACTOR",
    "ProvisioningError",
    "ProvisioningIssue",
    "ProvisioningResult",
    "load_provisioning_file",
    "provision",
]

# --- the file's shape ------------------------------------------------------------------

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _check_sip_domain(text: str) -> str:
    address = canonical_address(text)
    if address is not None:
        return address
    lowered = text.lower()
    if not _HOSTNAME.match(lowered):
        raise ValueError("must be a host name or an IP address")
    return lowered


def _check_ip(text: str) -> str:
    address = canonical_address(text)
    if address is None:
        raise ValueError("must be an IP address (the switch does not resolve names)")
    return address


def _parse_source(value: object) -> TrunkSource:
    """`ADDRESS`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT`."""
    if not isinstance(value, str):
        raise ValueError("must be a string: an IP address with an optional :port")
    text = value.strip()
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
        raise ValueError(f"{host!r} is not an IP address") from None
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{port_text!r} is not a port number (1-65535)")
        port = int(port_text)
    return TrunkSource(address=address, port=port)


def _check_algorithms(algorithms: list[DigestAlgorithm] | None) -> list[DigestAlgorithm] | None:
    if algorithms is not None and len(set(algorithms)) != len(algorithms):
        raise ValueError("lists an algorithm twice")
    return algorithms


def _check_kind(kind: ExtensionKind) -> ExtensionKind:
    if kind is not ExtensionKind.FIXED_IP_PHONE:
        raise ValueError(f"kind {kind.value!r} cannot be provisioned yet (only fixed_ip_phone)")
    return kind


def _check_account_password(password: str) -> str:
    violations = password_policy_violations(password)
    if violations:
        raise ValueError("; ".join(violation.message for violation in violations))
    return password


Text = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[
    str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]
ExtensionNumber = Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9]{1,32}$")]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSpec(_Spec):
    """A site (拠点) of a tenant."""

    name: Annotated[
        str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=128)
    ]


class ExtensionSpec(_Spec):
    """An extension, at one of its tenant's sites."""

    number: ExtensionNumber
    site: Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1)]
    kind: Annotated[ExtensionKind, AfterValidator(_check_kind)] = ExtensionKind.FIXED_IP_PHONE
    display_name: Annotated[str, Strict(), StringConstraints(max_length=128)] = ""
    username: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)] | None = (
        None
    )
    password: Annotated[str, Strict(), StringConstraints(min_length=1)] | None = None
    digest_algorithms: Annotated[
        list[DigestAlgorithm] | None, Field(min_length=1), AfterValidator(_check_algorithms)
    ] = None
    no_answer_timeout_seconds: Annotated[int, Strict(), Field(ge=1, le=3600)] = 30
    static_contact_uri: (
        Annotated[str, Strict(), StringConstraints(pattern=r"^sips?:\S+$", max_length=1024)] | None
    ) = None


class TenantSpec(_Spec):
    """A tenant: one basic contract."""

    name: Name
    contract_holder_name: Annotated[
        str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=256)
    ]
    sip_domain: Annotated[str, Strict(), AfterValidator(_check_sip_domain)]
    sites: list[SiteSpec] = []
    extensions: list[ExtensionSpec] = []


class TrunkSpec(_Spec):
    """A SIP peer and the source addresses its requests are trusted from."""

    name: Name
    tenant: Name | None = None
    host: Annotated[str, Strict(), AfterValidator(_check_ip)]
    port: Port = 5060
    transport: Transport = Transport.UDP
    trusted_sources: list[Annotated[TrunkSource, PlainValidator(_parse_source)]] = []


class AccountSpec(_Spec):
    """A Customer Control account (an API login, not a SIP device)."""

    login: Annotated[str, Strict(), StringConstraints(min_length=1)]
    role: AccountRole
    tenant: Name | None = None
    extension: ExtensionNumber | None = None
    password: Annotated[
        str,
        Strict(),
        StringConstraints(max_length=MAX_PASSWORD_LENGTH),
        AfterValidator(_check_account_password),
    ]
    disabled: Annotated[bool, Strict()] = False


class ProvisioningFile(_Spec):
    """The whole file."""

    tenants: list[TenantSpec] = []
    trunks: list[TrunkSpec] = []
    accounts: list[AccountSpec] = []


# --- errors ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvisioningIssue:
    """One problem in a provisioning file."""

    key_path: str
    """Where: `tenants[0].extensions[3].number`, or `line 4, column 7` for YAML syntax."""
    reason: str


class ProvisioningError(Exception):
    """A provisioning file was refused whole; nothing was written."""

    def __init__(self, path: Path | str, issues: Sequence[ProvisioningIssue]) -> None:
        self.path = Path(path)
        self.issues = tuple(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {issue.key_path}: {issue.reason}" for issue in self.issues)


def _key_path(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _issues_from_validation(error: ValidationError) -> list[ProvisioningIssue]:
    issues = []
    for detail in error.errors(include_url=False, include_input=True):
        reason = str(detail["msg"]).removeprefix("Value error, ")
        if detail["type"] == "string_type" and isinstance(detail.get("input"), int):
            reason += " (quote it: YAML reads 0120 as the number 80)"
        issues.append(ProvisioningIssue(_key_path(detail["loc"]), reason))
    return issues


# --- reading ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _cross_check(document: ProvisioningFile) -> list[ProvisioningIssue]:
    """The rules that span entries: uniqueness and references by name."""
    issues: list[ProvisioningIssue] = []

    def first_seen(seen: dict[Any, str], key: object, path: str, what: Callable[[], str]) -> None:
        if key in seen:
            issues.append(ProvisioningIssue(path, f"duplicate {what()} (also at {seen[key]})"))
        else:
            seen[key] = path

    tenant_names: dict[Any, str] = {}
    domains: dict[Any, str] = {}
    for tenant_index, tenant in enumerate(document.tenants):
        prefix = f"tenants[{tenant_index}]"
        first_seen(tenant_names, tenant.name, f"{prefix}.name", lambda: "tenant name")
        first_seen(domains, tenant.sip_domain, f"{prefix}.sip_domain", lambda: "SIP domain")
        site_names: dict[Any, str] = {}
        for site_index, site in enumerate(tenant.sites):
            path = f"{prefix}.sites[{site_index}].name"
            first_seen(site_names, site.name, path, lambda: "site name")
        numbers: dict[Any, str] = {}
        usernames: dict[Any, str] = {}
        for extension_index, extension in enumerate(tenant.extensions):
            path = f"{prefix}.extensions[{extension_index}]"
            first_seen(numbers, extension.number, f"{path}.number", lambda: "extension number")
            if extension.site not in site_names:
                issues.append(ProvisioningIssue(f"{path}.site", "names no site of this tenant"))
            if extension.password is not None:
                username = extension.username or extension.number
                key_path = f"{path}.username" if extension.username else f"{path}.number"
                if numbers.get(extension.number) == f"{path}.number":
                    first_seen(usernames, username, key_path, lambda: "SIP username")
            elif extension.username is not None or extension.digest_algorithms is not None:
                issues.append(
                    ProvisioningIssue(
                        f"{path}.password", "is required with username or digest_algorithms"
                    )
                )
            if extension.password is None and extension.static_contact_uri is None:
                issues.append(
                    ProvisioningIssue(
                        path, "needs a password (to register) or a static_contact_uri"
                    )
                )

    trunk_names: dict[Any, str] = {}
    sources: dict[Any, str] = {}
    for trunk_index, trunk in enumerate(document.trunks):
        prefix = f"trunks[{trunk_index}]"
        first_seen(trunk_names, trunk.name, f"{prefix}.name", lambda: "trunk name")
        if trunk.tenant is not None and trunk.tenant not in tenant_names:
            issues.append(ProvisioningIssue(f"{prefix}.tenant", "names no tenant in this file"))
        for source_index, source in enumerate(trunk.trusted_sources):
            first_seen(
                sources,
                (source.address, source.port),
                f"{prefix}.trusted_sources[{source_index}]",
                lambda: "trusted source",
            )

    tenant_extensions = {
        tenant.name: {extension.number for extension in tenant.extensions}
        for tenant in document.tenants
    }
    logins: dict[Any, str] = {}
    for account_index, account in enumerate(document.accounts):
        prefix = f"accounts[{account_index}]"
        first_seen(logins, account.login, f"{prefix}.login", lambda: "login name")
        if account.role is AccountRole.OPERATOR:
            if account.tenant is not None:
                issues.append(
                    ProvisioningIssue(f"{prefix}.tenant", "an operator belongs to no tenant")
                )
        elif account.tenant is None:
            issues.append(
                ProvisioningIssue(f"{prefix}.tenant", f"is required for role {account.role}")
            )
        elif account.tenant not in tenant_extensions:
            issues.append(ProvisioningIssue(f"{prefix}.tenant", "names no tenant in this file"))
        login_problem = account_login_problem(
            account.login,
            account.role,
            None if account.role is AccountRole.OPERATOR else account.tenant,
        )
        if login_problem is not None and (
            account.role is AccountRole.OPERATOR or account.tenant is not None
        ):
            issues.append(ProvisioningIssue(f"{prefix}.login", login_problem))
        if account.role is AccountRole.USER:
            if account.extension is None:
                issues.append(ProvisioningIssue(f"{prefix}.extension", "is required for role user"))
            elif account.extension not in tenant_extensions.get(account.tenant or "", set()):
                issues.append(
                    ProvisioningIssue(f"{prefix}.extension", "names no extension of its tenant")
                )
        elif account.extension is not None:
            issues.append(
                ProvisioningIssue(f"{prefix}.extension", "only a user account owns an extension")
            )
    return issues


def load_provisioning_file(path: Path | str) -> ProvisioningFile:
    """Read and validate a provisioning file without touching the store.

    Raises:
        ProvisioningError: unreadable, not YAML, or any rule broken; lists every problem
            found in that stage.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        issue = ProvisioningIssue("(file)", f"unreadable: {reason}")
        raise ProvisioningError(path, [issue]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        reason = error.problem or error.context or "not valid YAML"
        raise ProvisioningError(path, [ProvisioningIssue(where, reason)]) from None
    except yaml.YAMLError as error:
        raise ProvisioningError(path, [ProvisioningIssue("(file)", str(error))]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProvisioningError(
            path,
            [
                ProvisioningIssue(
                    "(top level)", "must be a mapping with tenants, trunks and accounts"
                )
            ],
        )
    try:
        document = ProvisioningFile.model_validate(data)
    except ValidationError as error:
        raise ProvisioningError(path, _issues_from_validation(error)) from None
    issues = _cross_check(document)
    if issues:
        raise ProvisioningError(path, issues)
    return document


# --- writing ---------------------------------------------------------------------------


@dataclass(slots=True)
class ChangeCounts:
    """What provisioning did to one kind of entry."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def count(self, created: bool, changed: bool) -> None:
        if created:
            self.created += 1
        elif changed:
            self.updated += 1
        else:
            self.unchanged += 1

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass(slots=True)
class ProvisioningResult:
    """Counts per kind of entry, for the command line and tests."""

    tenants: ChangeCounts = field(default_factory=ChangeCounts)
    sites: ChangeCounts = field(default_factory=ChangeCounts)
    extensions: ChangeCounts = field(default_factory=ChangeCounts)
    trunks: ChangeCounts = field(default_factory=ChangeCounts)
    accounts: ChangeCounts = field(default_factory=ChangeCounts)

    @property
    def changed(self) -> bool:
        """True when anything was created or updated."""
        return any(
            counts.created or counts.updated
            for counts in (self.tenants, self.sites, self.extensions, self.trunks, self.accounts)
        )

    def __str__(self) -> str:
        return "; ".join(
            f"{name}: {counts}"
            for name, counts in (
                ("tenants", self.tenants),
                ("sites", self.sites),
                ("extensions", self.extensions),
                ("trunks", self.trunks),
                ("accounts", self.accounts),
            )
        )


def _assign(row: object, values: dict[str, object]) -> bool:
    """Set the attributes that differ; True when any did."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _apply_credential(extension: Extension, spec: ExtensionSpec, realm: str) -> bool:
    if spec.password is None:
        if extension.credential is None:
            return False
        extension.credential = None
        return True
    username = spec.username or spec.number
    values: dict[str, object] = {
        "username": username,
        "realm": realm,
        "ha1_md5": compute_ha1(username, realm, spec.password, DigestAlgorithm.MD5),
        "ha1_sha256": compute_ha1(username, realm, spec.password, DigestAlgorithm.SHA_256),
    }
    if extension.credential is None:
        extension.credential = SipCredential(**values)
        return True
    return _assign(extension.credential, values)


def _apply_tenant(session: Session, spec: TenantSpec, result: ProvisioningResult) -> Tenant:
    tenant = session.scalars(
        select(Tenant)
        .where(Tenant.name == spec.name)
        .options(
            selectinload(Tenant.sites),
            selectinload(Tenant.extensions).selectinload(Extension.credential),
        )
    ).one_or_none()
    created = tenant is None
    if tenant is None:
        tenant = Tenant(name=spec.name)
        session.add(tenant)
    changed = _assign(
        tenant,
        {"contract_holder_name": spec.contract_holder_name, "sip_domain": spec.sip_domain},
    )
    result.tenants.count(created, changed)

    sites = {site.name: site for site in tenant.sites}
    for site_spec in spec.sites:
        site_created = site_spec.name not in sites
        if site_created:
            sites[site_spec.name] = Site(name=site_spec.name, tenant=tenant)
        result.sites.count(site_created, changed=False)

    extensions = {extension.number: extension for extension in tenant.extensions}
    for extension_spec in spec.extensions:
        extension = extensions.get(extension_spec.number)
        extension_created = extension is None
        if extension is None:
            extension = Extension(number=extension_spec.number, tenant=tenant)
            session.add(extension)
        site = sites[extension_spec.site]
        changed = extension.site is not site
        if changed:
            extension.site = site
        changed |= _assign(
            extension,
            {
                "kind": extension_spec.kind,
                "display_name": extension_spec.display_name,
                "digest_algorithms": (
                    None
                    if extension_spec.digest_algorithms is None
                    else [algorithm.value for algorithm in extension_spec.digest_algorithms]
                ),
                "no_answer_timeout_seconds": extension_spec.no_answer_timeout_seconds,
                "static_contact_uri": extension_spec.static_contact_uri,
            },
        )
        changed |= _apply_credential(extension, extension_spec, realm=spec.sip_domain)
        result.extensions.count(extension_created, changed)
    return tenant


def _apply_trunk(
    session: Session, spec: TrunkSpec, tenants: dict[str, Tenant], result: ProvisioningResult
) -> None:
    trunk = session.scalars(
        select(Trunk).where(Trunk.name == spec.name).options(selectinload(Trunk.source_addresses))
    ).one_or_none()
    created = trunk is None
    if trunk is None:
        trunk = Trunk(name=spec.name)
        session.add(trunk)
    tenant = None if spec.tenant is None else tenants[spec.tenant]
    changed = trunk.tenant is not tenant
    if changed:
        trunk.tenant = tenant
    changed |= _assign(trunk, {"host": spec.host, "port": spec.port, "transport": spec.transport})
    stored = [(source.address, source.port) for source in trunk.source_addresses]
    wanted = [(source.address, source.port) for source in spec.trusted_sources]
    if stored != wanted:
        trunk.source_addresses = [
            TrunkSourceAddress(address=address, port=port) for address, port in wanted
        ]
        changed = True
    result.trunks.count(created, changed)


PROVISIONING_ACTOR = "(provisioning)"
"""The audit log's actor for rows written by a provisioning file (no login has brackets)."""


def _apply_account(
    session: Session,
    spec: AccountSpec,
    tenants: dict[str, Tenant],
    now: float,
    result: ProvisioningResult,
) -> None:
    account = session.scalars(select(Account).where(Account.login == spec.login)).one_or_none()
    tenant = None if spec.tenant is None else tenants[spec.tenant]
    extension = None
    if tenant is not None and spec.extension is not None:
        extension = next(item for item in tenant.extensions if item.number == spec.extension)
    created = account is None
    before = None
    if account is None:
        account = Account(
            login=spec.login,
            role=spec.role,
            password_hash=hash_account_password(spec.password),
            password_changed_at=now,
            created_at=now,
            failed_login_count=0,
        )
        session.add(account)
        changed = True
    else:
        before = account.audit_view()
        changed = False
        if not verify_account_password(account.password_hash, spec.password):
            account.password_hash = hash_account_password(spec.password)
            account.password_changed_at = now
            # A new password ends every session of the old one (as the API's change does).
            session.execute(
                update(ApiToken)
                .where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            changed = True
    # No flush between these: a half-applied role change would break the account CHECKs.
    with session.no_autoflush:
        if account.tenant is not tenant:
            account.tenant = tenant
            changed = True
        if account.extension is not extension:
            account.extension = extension
            changed = True
        changed |= _assign(account, {"role": spec.role, "disabled": spec.disabled})
    result.accounts.count(created, changed)
    if changed:
        session.flush()
        session.add(
            AuditLog(
                at=now,
                actor=PROVISIONING_ACTOR,
                tenant_id=account.tenant_id,
                action="account.create" if created else "account.update",
                target=account.login,
                before=before,
                after=account.audit_view(),
            )
        )


def provision(
    session: Session, path: Path | str, *, clock: Callable[[], float] = time.time
) -> ProvisioningResult:
    """Validate the file at `path`, then write it to the store in one transaction.

    Commits on success. On any error the session is rolled back and nothing is written.

    Returns:
        Counts of created, updated and unchanged entries per kind.

    Raises:
        ProvisioningError: the file is refused (see `load_provisioning_file`), or it
            conflicts with rows already stored (e.g. a SIP domain another tenant holds).
    """
    document = load_provisioning_file(path)
    result = ProvisioningResult()
    try:
        tenants: dict[str, Tenant] = {}
        for tenant_spec in document.tenants:
            tenants[tenant_spec.name] = _apply_tenant(session, tenant_spec, result)
        for trunk_spec in document.trunks:
            _apply_trunk(session, trunk_spec, tenants, result)
        now = clock()
        for account_spec in document.accounts:
            _apply_account(session, account_spec, tenants, now, result)
        session.commit()
    except IntegrityError as error:
        session.rollback()
        reason = f"conflicts with the stored configuration: {error.orig}"
        raise ProvisioningError(path, [ProvisioningIssue("(store)", reason)]) from None
    except BaseException:
        session.rollback()
        raise
    return result
