"""The config store's tables, as SQLAlchemy 2.0 declarative models.

Rules:
- Every constraint and index is named by `NAMING_CONVENTION`, so migrations can drop and
  alter them by name on every backend (SQLite batch mode needs the names).
- The schema changes only through a migration in `cloudpbx/migrations/versions/`; a test
  compares the migrated schema with this metadata and fails on any difference.
- Secrets are stored as HA1 digests only (`SipCredential`), never as plain passwords.
- Extension numbers are unique per tenant across all its sites (one numbering group).
- A tenant's SIP domain is unique: it is how a request's domain finds its tenant.
- A tenant's outbound carrier trunks (`pstn_trunk`, `mobile_trunk`) are trunk names, not
  foreign keys: a tenant -> trunk key would close a cycle with `trunk.tenant_id` (which
  every backend then needs as an ALTER-added constraint). Trunk names never change, and
  both writers (the Customer Control API, provisioning) check that the name is a
  carrier-wide trunk of the right kind and refuse to delete or re-kind a named trunk.
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
- `TollFreeCallRecordRow` rows are switch output, not configuration: one per finished
  toll-free call (`cloudpbx.callrecords`), written off the call path by
  `cloudpbx.recordjournal`. `call_id` is unique, so ingesting a record twice (a replay
  after a crash) writes it once. They keep the number, tenant and destination as text (no
  foreign key): deleting a number or tenant keeps its statistics history.
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
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false

from cloudpbx.callrecords import TollFreeCategory
from cloudpbx.domain import (
    AccountRole,
    AnnouncementLanguage,
    AreaKind,
    ExtensionKind,
    MobileIdentity,
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
    Transport,
    TrunkKind,
)

__all__ = [
    "NAMING_CONVENTION",
    "Account",
    "ApiToken",
    "AuditLog",
    "Base",
    "Extension",
    "MobileLine",
    "Registration",
    "SipCredential",
    "Site",
    "SwitchSecret",
    "Tenant",
    "TollFreeAccountGrant",
    "TollFreeCallRecordRow",
    "TollFreeDesignatedArea",
    "TollFreeDestination",
    "TollFreeDestinationSet",
    "TollFreeNumber",
    "TollFreeSchedule",
    "TollFreeScheduleRange",
    "Trunk",
    "TrunkSourceAddress",
    "VoicemailMessage",
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
    address: Mapped[str] = mapped_column(Text, default="", server_default="")
    """The contract holder's postal address (contract information, 住所等)."""
    basic_contract: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The basic contract's identifier (one per tenant, PRODUCT.md Part B)."""
    announcement_language: Mapped[AnnouncementLanguage] = mapped_column(
        _string_enum(AnnouncementLanguage, "announcement_language"),
        default=AnnouncementLanguage.JA,
        server_default=AnnouncementLanguage.JA.value,
    )
    """The language of the refusal announcements and voicemail greeting the tenant's
    cloud PBX calls play (a customer setting; `ja` by default)."""
    pstn_trunk: Mapped[str | None] = mapped_column(String(64), default=None)
    """The carrier-wide `pstn` trunk the tenant's outbound calls leave on (050 external
    calls, emergency calls from its mobile lines), by trunk name; null: the carrier-wide
    default (an operator setting, the carrier's interconnect choice)."""
    mobile_trunk: Mapped[str | None] = mapped_column(String(64), default=None)
    """The carrier-wide `mobile_network` trunk calls to the tenant's mobile extensions
    leave on, by trunk name; null: the carrier-wide default."""

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
    """An extension number of a tenant, at one of its sites.

    A `mobile` extension points at a mobile line and says which of its numbers (A, or
    the 2in1 B) it stands for; a `customer_pbx` extension is the range `number` ..
    `range_last` (same length, inclusive) behind the PBX trunk `trunk_id`; the named
    CHECKs keep those columns null for the other kinds.
    """

    __tablename__ = "extension"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        UniqueConstraint("mobile_line_id", "mobile_identity"),
        CheckConstraint(
            "(kind = 'mobile' AND mobile_line_id IS NOT NULL AND mobile_identity IS NOT NULL)"
            " OR (kind <> 'mobile' AND mobile_line_id IS NULL AND mobile_identity IS NULL)",
            name="mobile_line_only_for_mobile",
        ),
        CheckConstraint(
            "(kind = 'customer_pbx' AND trunk_id IS NOT NULL AND range_last IS NOT NULL)"
            " OR (kind <> 'customer_pbx' AND trunk_id IS NULL AND range_last IS NULL)",
            name="trunk_only_for_customer_pbx",
        ),
    )

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
    voicemail_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The voicemail option of a fixed IP phone (PRODUCT.md Part B 4)."""
    mobile_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("mobile_line.id", ondelete="CASCADE"), index=True, default=None
    )
    mobile_identity: Mapped[MobileIdentity | None] = mapped_column(
        _string_enum(MobileIdentity, "mobile_identity"), default=None
    )
    trunk_id: Mapped[int | None] = mapped_column(
        ForeignKey("trunk.id", ondelete="CASCADE"), index=True, default=None
    )
    """The customer PBX's trunk, for a `customer_pbx` range."""
    range_last: Mapped[str | None] = mapped_column(String(32), default=None)
    """Last number of a `customer_pbx` range (as long as `number`)."""

    tenant: Mapped[Tenant] = relationship(back_populates="extensions")
    site: Mapped[Site] = relationship(back_populates="extensions")
    mobile_line: Mapped[MobileLine | None] = relationship(back_populates="extensions")
    trunk: Mapped[Trunk | None] = relationship()
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


class MobileLine(Base):
    """A mobile line of a tenant and its options (PRODUCT.md Part B).

    Numbers are E.164 with `+`. The line's contract holder must be the tenant's (the
    same-contract-holder rule, checked where lines are written). The 050 option needs its
    050 number (named CHECK); `abroad` is state the mobile trunk or the operator sets.
    """

    __tablename__ = "mobile_line"
    __table_args__ = (
        CheckConstraint(
            "(option_050 AND number_050 IS NOT NULL) OR (NOT option_050 AND number_050 IS NULL)",
            name="number_050_with_option",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    msisdn: Mapped[str] = mapped_column(String(16), unique=True)
    """The A number, E.164 (`+819012340001`)."""
    contract_holder_name: Mapped[str] = mapped_column(String(256))
    b_number: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    """The 2in1 B number, E.164; null without the 2in1 option."""
    option_050: Mapped[bool] = mapped_column(Boolean, default=False)
    number_050: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    """The line's 050 number in national form (`05012340001`), shown on 050 outbound calls."""
    option_gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    """External calls leave through the tenant's external gateway."""
    option_roaming: Mapped[bool] = mapped_column(Boolean, default=False)
    """Extension calls still reach the line while it is abroad."""
    abroad: Mapped[bool] = mapped_column(Boolean, default=False)

    tenant: Mapped[Tenant] = relationship()
    extensions: Mapped[list[Extension]] = relationship(back_populates="mobile_line")


class Trunk(Base):
    """A SIP peer: mobile network, PSTN, customer PBX or external gateway.

    Requests from a trunk are recognised by a trusted source address and/or by digest
    credentials (HA1 only, as for extensions); `capacity` bounds its concurrent calls.
    """

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
    kind: Mapped[TrunkKind] = mapped_column(
        _string_enum(TrunkKind, "trunk_kind"), default=TrunkKind.PSTN, server_default="pstn"
    )
    capacity: Mapped[int | None] = mapped_column(Integer, default=None)
    """Concurrent calls the peer takes; null: no limit."""
    auth_username: Mapped[str | None] = mapped_column(String(128), default=None)
    """Digest username the peer authenticates with; null: source address only."""
    auth_realm: Mapped[str | None] = mapped_column(String(256), default=None)
    """The realm its HA1s were computed with (and we challenge it with)."""
    auth_ha1_md5: Mapped[str | None] = mapped_column(String(32), default=None)
    auth_ha1_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    caller_area_header: Mapped[str | None] = mapped_column(String(64), default=None)
    """Header in which this trusted trunk asserts the caller's charging area code
    (issue 5 part 5, e.g. `X-Caller-Area: 03`); null: the area comes from the number."""
    abroad_header: Mapped[str | None] = mapped_column(String(64), default=None)
    """Header whose presence on a mobile trunk's request says the line is abroad
    (issue 6 part 6, e.g. `P-Visited-Network-ID`); null: only the stored state counts."""
    identity_trusted: Mapped[bool | None] = mapped_column(Boolean, default=None)
    """Whether the peer is inside our trust domain for the identities we send it (RFC 3325
    §2 Spec(T)): a withheld call then gets P-Asserted-Identity with `Privacy: id`, else
    no P-Asserted-Identity. Null: by kind (PSTN and mobile network trusted, customer PBXs
    and gateways not); true/false overrides."""

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
    contact_parameters: Mapped[list[list[str | None]] | None] = mapped_column(JSON, default=None)
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
    """What was done: `<entity>.create|update|delete` for tenant, site, mobile_line,
    extension, trunk, account, tollfree (and `tollfree.channels`, `tollfree.weights`...;
    the list is in `custcon_api.audit`), `account.password_change`,
    `account.lockout`, `login.success`, `login.failure`, `auth.logout`."""
    target: Mapped[str | None] = mapped_column(String(256))
    """What was acted on: an account's login name (as typed, for a failed login)."""
    before: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """Null (SQL NULL, not JSON null) when the target did not exist before."""
    after: Mapped[dict[str, object] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """Null when the target no longer exists (or the event changed nothing stored)."""
    remote_address: Mapped[str | None] = mapped_column(String(_ADDRESS_LENGTH), default=None)
    """The client's address for API events; null for provisioning."""


class TollFreeNumber(Base):
    """A toll-free number contract (PRODUCT.md Part A), owned by a tenant.

    `number` is the national form without separators (`0120000111`). The channel setting
    never exceeds the contracted channels (named CHECK). Destination sets: the one named
    `default` is in force unless a schedule selects another.
    """

    __tablename__ = "tollfree_number"
    __table_args__ = (
        CheckConstraint(
            "channel_setting >= 0 AND channel_setting <= contracted_channels",
            name="channels_within_contract",
        ),
        CheckConstraint(
            "no_answer_timeout_seconds BETWEEN 5 AND 300", name="no_answer_timeout_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    service_type: Mapped[TollFreeServiceType] = mapped_column(
        _string_enum(TollFreeServiceType, "tollfree_service_type")
    )
    contracted_channels: Mapped[int] = mapped_column(Integer)
    channel_setting: Mapped[int] = mapped_column(Integer)
    strict_distribution: Mapped[bool] = mapped_column(Boolean, default=False)
    """No failover to other destinations (the carrier's own behaviour)."""
    no_answer_timeout_seconds: Mapped[int] = mapped_column(
        Integer, default=30, server_default="30"
    )
    """Seconds the destinations ring in all before the caller gets 480 (issue 5)."""
    after_hours_announcement: Mapped[str] = mapped_column(String(64), default="after_hours_ja")
    """Announcement played during after-hours schedules (a file name under configs/)."""
    refusal_action: Mapped[RefusalAction] = mapped_column(
        _string_enum(RefusalAction, "refusal_action"), default=RefusalAction.ANNOUNCEMENT
    )
    refusal_announcement: Mapped[str] = mapped_column(String(64), default="out_of_area_ja")
    designated_whole_country: Mapped[bool] = mapped_column(Boolean, default=True)
    """True: every domestic area is designated (the designated-area rows are ignored)."""
    allow_fixed: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_mobile: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_withheld: Mapped[bool] = mapped_column(Boolean, default=True)
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Option contracts (オプション機能契約内容), e.g. `distribution`, `after_hours`."""

    tenant: Mapped[Tenant] = relationship()
    destination_sets: Mapped[list[TollFreeDestinationSet]] = relationship(
        back_populates="tollfree_number",
        cascade="all, delete-orphan",
        order_by="TollFreeDestinationSet.id",
    )
    schedules: Mapped[list[TollFreeSchedule]] = relationship(
        back_populates="tollfree_number",
        cascade="all, delete-orphan",
        order_by="TollFreeSchedule.id",
    )
    designated_areas: Mapped[list[TollFreeDesignatedArea]] = relationship(
        back_populates="tollfree_number",
        cascade="all, delete-orphan",
        order_by="TollFreeDesignatedArea.id",
    )
    grants: Mapped[list[TollFreeAccountGrant]] = relationship(
        back_populates="tollfree_number", cascade="all, delete-orphan"
    )


class TollFreeDestinationSet(Base):
    """A named set of up to 5 destinations with their distribution weights."""

    __tablename__ = "tollfree_destination_set"
    __table_args__ = (UniqueConstraint("tollfree_number_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tollfree_number_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_number.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))

    tollfree_number: Mapped[TollFreeNumber] = relationship(back_populates="destination_sets")
    destinations: Mapped[list[TollFreeDestination]] = relationship(
        back_populates="destination_set",
        cascade="all, delete-orphan",
        order_by="TollFreeDestination.position",
    )


class TollFreeDestination(Base):
    """One destination number of a set, its weight and the trunk that reaches it."""

    __tablename__ = "tollfree_destination"
    __table_args__ = (
        UniqueConstraint("destination_set_id", "position"),
        UniqueConstraint("destination_set_id", "number"),
        CheckConstraint("weight >= 0 AND weight <= 32", name="weight_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    destination_set_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_destination_set.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    """1-based order in the set (round-robin ties go to the lower position)."""
    number: Mapped[str] = mapped_column(String(32))
    """National form without separators (`0312340001`)."""
    weight: Mapped[int] = mapped_column(Integer)
    trunk_id: Mapped[int] = mapped_column(ForeignKey("trunk.id", ondelete="RESTRICT"), index=True)

    destination_set: Mapped[TollFreeDestinationSet] = relationship(back_populates="destinations")
    trunk: Mapped[Trunk] = relationship()


class TollFreeSchedule(Base):
    """A named schedule of a toll-free number: when its ranges apply, its action does."""

    __tablename__ = "tollfree_schedule"
    __table_args__ = (
        UniqueConstraint("tollfree_number_id", "name"),
        CheckConstraint(
            "(action = 'destination_change' AND destination_set_id IS NOT NULL)"
            " OR (action <> 'destination_change' AND destination_set_id IS NULL)",
            name="destination_set_for_change",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tollfree_number_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_number.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    action: Mapped[ScheduleAction] = mapped_column(_string_enum(ScheduleAction, "schedule_action"))
    destination_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("tollfree_destination_set.id", ondelete="RESTRICT"), index=True, default=None
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    tollfree_number: Mapped[TollFreeNumber] = relationship(back_populates="schedules")
    destination_set: Mapped[TollFreeDestinationSet | None] = relationship()
    ranges: Mapped[list[TollFreeScheduleRange]] = relationship(
        back_populates="schedule", cascade="all, delete-orphan", order_by="TollFreeScheduleRange.id"
    )


class TollFreeScheduleRange(Base):
    """A time range [start, end) in minutes of the day, Asia/Tokyo, on the days it names."""

    __tablename__ = "tollfree_schedule_range"
    __table_args__ = (
        CheckConstraint(
            "start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440",
            name="minutes_of_day",
        ),
        CheckConstraint(
            "(kind = 'weekly' AND weekday BETWEEN 0 AND 6 AND day IS NULL)"
            " OR (kind = 'date' AND day IS NOT NULL AND weekday IS NULL)"
            " OR (kind = 'holiday' AND day IS NULL AND weekday IS NULL)",
            name="day_fits_kind",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_schedule.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ScheduleRangeKind] = mapped_column(
        _string_enum(ScheduleRangeKind, "schedule_range_kind")
    )
    weekday: Mapped[int | None] = mapped_column(Integer, default=None)
    """0 = Monday ... 6 = Sunday, for `weekly`."""
    day: Mapped[str | None] = mapped_column(String(10), default=None)
    """ISO date (`2026-12-31`), for `date`."""
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)
    """Exclusive; 1440 is midnight at the end of the day."""

    schedule: Mapped[TollFreeSchedule] = relationship(back_populates="ranges")


class TollFreeDesignatedArea(Base):
    """An area whose callers are connected (originating-area designation)."""

    __tablename__ = "tollfree_designated_area"
    __table_args__ = (UniqueConstraint("tollfree_number_id", "kind", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tollfree_number_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_number.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[AreaKind] = mapped_column(_string_enum(AreaKind, "area_kind"))
    code: Mapped[str] = mapped_column(String(8))
    """JIS prefecture code (`13`) or area code (`03`)."""

    tollfree_number: Mapped[TollFreeNumber] = relationship(back_populates="designated_areas")


class TollFreeAccountGrant(Base):
    """A Customer Control account may see and set a toll-free number (at most 50 each)."""

    __tablename__ = "tollfree_account_grant"
    __table_args__ = (UniqueConstraint("tollfree_number_id", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tollfree_number_id: Mapped[int] = mapped_column(
        ForeignKey("tollfree_number.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )

    tollfree_number: Mapped[TollFreeNumber] = relationship(back_populates="grants")
    account: Mapped[Account] = relationship()


class TollFreeCallRecordRow(Base):
    """One finished toll-free call (`cloudpbx.callrecords.TollFreeCallRecord`), as stored.

    The traffic statistics (`cloudpbx.statistics`) are computed from these rows only.
    """

    __tablename__ = "tollfree_call_record"
    __table_args__ = (
        Index(
            "ix_tollfree_call_record_tollfree_number_arrival_time",
            "tollfree_number",
            "arrival_time",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(256), unique=True)
    """The caller leg's Call-ID: the key that makes a replayed record harmless."""
    tollfree_number: Mapped[str] = mapped_column(String(16))
    """National form, `0120000111`."""
    tenant_name: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str | None] = mapped_column(String(64), default=None)
    """The destination connected or tried last; null when none was tried."""
    category: Mapped[TollFreeCategory] = mapped_column(
        _string_enum(TollFreeCategory, "tollfree_call_category")
    )
    final_status: Mapped[int] = mapped_column(Integer)
    arrival_time: Mapped[float] = mapped_column(Float)
    """Unix time in seconds."""
    answer_time: Mapped[float | None] = mapped_column(Float, default=None)
    end_time: Mapped[float] = mapped_column(Float)


class VoicemailMessage(Base):
    """One voicemail message left for a fixed IP phone's extension (issue 6 item 4).

    The audio is a WAV file (8 kHz mono 16-bit PCM) under the store's voicemail
    directory (`cloudpbx.voicemail.voicemail_directory`); `file_name` is its path relative
    to that directory. Deleting the extension deletes its rows (the files are removed by
    `cloudpbx.voicemail.delete_message`, or left for the operator after a cascade).
    """

    __tablename__ = "voicemail_message"
    __table_args__ = (
        Index("ix_voicemail_message_extension_id_received_at", "extension_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    """Random hex identifier, used in the API's URLs and the file name."""
    extension_id: Mapped[int] = mapped_column(ForeignKey("extension.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(256))
    """The caller's Call-ID."""
    caller: Mapped[str] = mapped_column(String(_URI_LENGTH))
    """The caller's From URI."""
    received_at: Mapped[float] = mapped_column(Float)
    """Unix time in seconds when the recording started."""
    duration_seconds: Mapped[float] = mapped_column(Float)
    file_name: Mapped[str] = mapped_column(String(256))
    heard: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Played from the mailbox or downloaded: an old message (RFC 3842 new/old counts)."""

    extension: Mapped[Extension] = relationship()
