"""The config store's tables, as SQLAlchemy 2.0 declarative models.

Rules:
- Every constraint and index is named by `NAMING_CONVENTION`, so migrations can drop and
  alter them by name on every backend (SQLite batch mode needs the names).
- The schema changes only through a migration in `cloudpbx/migrations/versions/`; a test
  compares the migrated schema with this metadata and fails on any difference.
- Secrets are stored as HA1 digests only (`SipCredential`), never as plain passwords.
- Extension numbers are unique per tenant across all its sites (one numbering group).
- A tenant's SIP domain is unique: it is how a request's domain finds its tenant.
- Enums are stored as their string values (`native_enum=False`), so SQLite and PostgreSQL
  hold the same text and adding a value needs no `ALTER TYPE`.
- `Registration` rows are switch state, not configuration: the registrar writes them so a
  restarted switch still reaches its phones. Nothing else in this package reads them on
  the call path.
- A `Registration` row holds the whole binding: everything the registrar lists in the
  200 to a REGISTER (contact URI, q, every other Contact parameter in order; RFC 3261
  §10.3 step 8) and everything the switch needs to reach the phone (the received
  address, port and transport of the REGISTER), so a restart changes neither. Columns
  added after the first schema are nullable: rows written before them load with the
  older defaults (see `softswitch.registrar.store`).
- `SwitchSecret` rows are switch state too: keys the switch creates on first start and
  keeps across restarts (the digest nonce key, RFC 7616 §3.3). They are as sensitive as
  the HA1s next to them; they are never logged and never provisioned.
- `Account` rows are Customer Control API logins (not SIP devices). The password is kept
  only as an argon2id hash (`cloudpbx.domain.hash_account_password`). An operator account
  has no tenant and every other role has one (a named CHECK); only a `user` account owns
  an extension (CHECK too). Times are unix seconds (floats), as everywhere in the store.
- `ApiToken` rows are bearer tokens (RFC 6750): only the SHA-256 hex digest of the random
  token is stored, so a copy of the store grants no access. A token is valid while
  `revoked_at` is null and the clock is before `expires_at`; revoking sets `revoked_at`
  and never deletes, so the audit trail can name it.
- `AuditLog` rows are written, in the same transaction, for every account change (API or
  provisioning) and every login success, failure and lockout. They keep the actor's and
  target's login names as text, so deleting an account keeps its history; `before` and
  `after` are JSON views of the account without its hash.
- These classes never leave the store: the switch reads `cloudpbx.snapshot` values built by
  `cloudpbx.repository.load_snapshot`.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from cloudpbx.domain import AccountRole, ExtensionKind, Transport

__all__ = [
    "NAMING_CONVENTION",
    "Account",
    "ApiToken",
    "AuditLog",
    "Base",
    "Extension",
    "Registration",
    "SipCredential",
    "Site",
    "SwitchSecret",
    "Tenant",
    "Trunk",
    "TrunkSourceAddress",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Long enough for any IPv6 literal (45 characters) plus brackets.
_ADDRESS_LENGTH = 64
_URI_LENGTH = 1024


def _string_enum(enum_class: type[enum.StrEnum], name: str) -> Enum:
    """A VARCHAR column holding the enum's values, with a named CHECK constraint."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base carrying the named-constraint metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    """An enterprise with one basic contract (PRODUCT.md Part B)."""

    __tablename__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    """Short identifier used by provisioning files and operators, e.g. `demo`."""
    contract_holder_name: Mapped[str] = mapped_column(String(256))
    """Legal name of the contract holder, e.g. デモ株式会社 (the same-name rule)."""
    sip_domain: Mapped[str] = mapped_column(String(256), unique=True)
    """Host part of the tenant's SIP URIs, lower case; also the digest realm."""

    sites: Mapped[list[Site]] = relationship(back_populates="tenant")
    extensions: Mapped[list[Extension]] = relationship(back_populates="tenant")


class Site(Base):
    """A location (拠点) of a tenant."""

    __tablename__ = "site"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))

    tenant: Mapped[Tenant] = relationship(back_populates="sites")
    extensions: Mapped[list[Extension]] = relationship(back_populates="site")


class Extension(Base):
    """An extension number of a tenant, at one of its sites."""

    __tablename__ = "extension"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(32))
    """Digits as dialled, kept as text: leading zeros matter."""
    kind: Mapped[ExtensionKind] = mapped_column(_string_enum(ExtensionKind, "extension_kind"))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    digest_algorithms: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """Algorithms to challenge with, in order of preference (`DigestAlgorithm` values);
    null means the switch's global default."""
    no_answer_timeout_seconds: Mapped[int] = mapped_column(Integer, default=30)
    static_contact_uri: Mapped[str | None] = mapped_column(String(_URI_LENGTH), default=None)
    """Where to send calls for a device that does not register."""

    tenant: Mapped[Tenant] = relationship(back_populates="extensions")
    site: Mapped[Site] = relationship(back_populates="extensions")
    credential: Mapped[SipCredential | None] = relationship(
        back_populates="extension", cascade="all, delete-orphan"
    )


class SipCredential(Base):
    """Digest credentials of an extension: HA1 per algorithm, never the password."""

    __tablename__ = "sip_credential"
    __table_args__ = (UniqueConstraint("realm", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    extension_id: Mapped[int] = mapped_column(
        ForeignKey("extension.id", ondelete="CASCADE"), unique=True
    )
    username: Mapped[str] = mapped_column(String(128))
    realm: Mapped[str] = mapped_column(String(256))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))

    extension: Mapped[Extension] = relationship(back_populates="credential")


class Trunk(Base):
    """A SIP peer: carrier network, PSTN gateway, customer PBX or test load generator."""

    __tablename__ = "trunk"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    """Owning tenant for a customer PBX trunk; null for carrier-wide trunks."""
    host: Mapped[str] = mapped_column(String(_ADDRESS_LENGTH))
    """IP literal requests to the peer are sent to (the core does not resolve names)."""
    port: Mapped[int] = mapped_column(Integer, default=5060)
    transport: Mapped[Transport] = mapped_column(_string_enum(Transport, "transport"))

    tenant: Mapped[Tenant | None] = relationship()
    source_addresses: Mapped[list[TrunkSourceAddress]] = relationship(
        back_populates="trunk", cascade="all, delete-orphan", order_by="TrunkSourceAddress.id"
    )


class TrunkSourceAddress(Base):
    """A source address whose requests are trusted as coming from the trunk."""

    __tablename__ = "trunk_source_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    trunk_id: Mapped[int] = mapped_column(ForeignKey("trunk.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(_ADDRESS_LENGTH))
    """IP literal in its canonical text form (`ipaddress` compressed)."""
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    """Null: any source port from the address."""

    trunk: Mapped[Trunk] = relationship(back_populates="source_addresses")


class Registration(Base):
    """One binding of an address-of-record to a contact (RFC 3261 §10.3), persisted."""

    __tablename__ = "registration"
    __table_args__ = (UniqueConstraint("address_of_record", "contact_uri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address_of_record: Mapped[str] = mapped_column(String(_URI_LENGTH))
    contact_uri: Mapped[str] = mapped_column(String(_URI_LENGTH))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    """Absolute expiry as a unix time in seconds."""
    # Text: RFC 3261 bounds neither Call-ID nor User-Agent nor +sip.instance, and
    # PostgreSQL refuses (with the whole batch) a value longer than a VARCHAR's length.
    call_id: Mapped[str] = mapped_column(Text)
    cseq: Mapped[int] = mapped_column(Integer)
    received_host: Mapped[str] = mapped_column(String(_ADDRESS_LENGTH))
    """Source address of the REGISTER, where requests to the contact are sent (NAT)."""
    received_port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[Transport] = mapped_column(_string_enum(Transport, "transport"))
    instance_id: Mapped[str | None] = mapped_column(Text, default=None)
    """The Contact's `+sip.instance` parameter (RFC 5626 §4.1), if any."""
    user_agent: Mapped[str | None] = mapped_column(Text, default=None)
    q: Mapped[float | None] = mapped_column(Float, default=None)
    """The Contact's `q` parameter (RFC 3261 §20.10); null when it had none."""
    contact_parameters: Mapped[list[list[str | None]] | None] = mapped_column(
        JSON, default=None
    )
    """Every other Contact parameter as received, in order, as [name, value-or-null]
    pairs (`+sip.instance`, `reg-id`, ...; without `expires` and `q`). Null for rows
    written before this column existed."""
    registered_at: Mapped[float | None] = mapped_column(Float, default=None)
    """When the binding was first added, unix time in seconds."""
    updated_at: Mapped[float | None] = mapped_column(Float, default=None)
    """When it was last added or refreshed: the tie-break between equal q values."""


class SwitchSecret(Base):
    """A key the switch generates once and keeps (see the module rules)."""

    __tablename__ = "switch_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    """What the key is for, e.g. `digest-nonce`."""
    value: Mapped[bytes] = mapped_column(LargeBinary(256))
    created_at: Mapped[float] = mapped_column(Float)
    """Unix time in seconds."""


class Account(Base):
    """A Customer Control login: an operator, or a tenant's administrator or user."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint(
            "(role = 'operator' AND tenant_id IS NULL)"
            " OR (role <> 'operator' AND tenant_id IS NOT NULL)",
            name="tenant_unless_operator",
        ),
        CheckConstraint("extension_id IS NULL OR role = 'user'", name="extension_only_for_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(128), unique=True)
    """Login name (`operator`, `admin@demo`; see `cloudpbx.domain.account_login_problem`)."""
    password_hash: Mapped[str] = mapped_column(String(256))
    """argon2id PHC string; never the password, never shown by the API."""
    role: Mapped[AccountRole] = mapped_column(_string_enum(AccountRole, "account_role"))
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    """Null exactly for operators."""
    extension_id: Mapped[int | None] = mapped_column(
        ForeignKey("extension.id", ondelete="SET NULL"), index=True, default=None
    )
    """The extension a `user` account owns; a deleted extension leaves it owning none."""
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    """Failed logins since `failed_login_window_start` (reset by a success or a lockout)."""
    failed_login_window_start: Mapped[float | None] = mapped_column(Float, default=None)
    """Time of the first failed login counted in `failed_login_count`."""
    locked_until: Mapped[float | None] = mapped_column(Float, default=None)
    """Logins are refused until then (the lockout rule is in `custcon_api.auth`)."""
    password_changed_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """A disabled account cannot log in and its tokens are refused."""

    tenant: Mapped[Tenant | None] = relationship()
    extension: Mapped[Extension | None] = relationship()

    def audit_view(self) -> dict[str, object]:
        """The account as the audit log's `before` / `after` records it: never the hash."""
        return {
            "login": self.login,
            "role": self.role.value,
            "tenant": None if self.tenant is None else self.tenant.name,
            "extension": None if self.extension is None else self.extension.number,
            "disabled": self.disabled,
            "password_changed_at": self.password_changed_at,
        }

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiToken(Base):
    """An issued bearer token (RFC 6750), stored as the SHA-256 of its value."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    """Lower-case hex SHA-256 of the token as sent in `Authorization: Bearer`."""
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)

    account: Mapped[Account] = relationship(back_populates="tokens")


class AuditLog(Base):
    """One audited event: who, when, what, to what, and the target before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    """Unix time in seconds."""
    actor: Mapped[str | None] = mapped_column(String(128))
    """Login name of the account that acted; `(provisioning)` for a provisioning file;
    null for an unauthenticated attempt (a failed login)."""
    actor_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="SET NULL"), index=True, default=None
    )
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="SET NULL"), index=True, default=None
    )
    """The tenant the target belongs to, for per-tenant views; null for operators."""
    action: Mapped[str] = mapped_column(String(64))
    """`account.create`, `account.update`, `account.delete`, `account.password_change`,
    `account.lockout`, `login.success`, `login.failure`, `auth.logout`."""
    target: Mapped[str | None] = mapped_column(String(256))
    """What was acted on: an account's login name (as typed, for a failed login)."""
    before: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """Null (SQL NULL, not JSON null) when the target did not exist before."""
    after: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """Null when the target no longer exists (or the event changed nothing stored)."""
    remote_address: Mapped[str | None] = mapped_column(String(_ADDRESS_LENGTH), default=None)
    """The client's address for API events; null for provisioning."""
