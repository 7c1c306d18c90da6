"""Value types shared by the store, the snapshot, provisioning and the API: pure, no I/O.

Stdlib only, except argon2-cffi for account password hashes (a computation like HA1).

Rules:
- Enum values are the strings stored in the database and written in provisioning files;
  renaming a value needs a migration.
- `DigestAlgorithm` values are spelled as RFC 7616 §6.1 names them in the `algorithm`
  parameter ("MD5", "SHA-256"); only the non-session variants are offered.
- HA1 (RFC 7616 §3.4.2, RFC 2617 §3.2.2.2) is the hex digest of `username:realm:password`
  with the algorithm's hash, lower case. It is the only secret we store: a plain password
  is hashed at the edge (provisioning, API) and never persisted.
- The username and realm are hashed exactly as given (UTF-8, no case folding), because the
  client hashes the strings it puts in its Authorization header.
- Customer Control accounts (not SIP devices) store an argon2id hash of the password
  (RFC 9106; argon2-cffi's default parameters, the RFC's second recommended option:
  t=3, m=64 MiB, p=4), in its PHC string form, so parameters and salt travel with it.
- Account login names: an operator's has no `@`; every other account's is
  `LOCAL@TENANT` with TENANT its tenant's name, so the tenants' name spaces are disjoint
  (creating an account never tells one tenant which names another uses). LOCAL is lower
  case: letters, digits and `._+-`, starting with a letter or digit.
- The password policy (`password_policy_violations`) applies to every password the API
  accepts: at least 12 characters; characters of at least 3 of the 4 classes lower case,
  upper case, digit, symbol (anything else, spaces included); not containing the login
  name, nor its part before `@` when that has 3 or more characters, compared
  case-insensitively; not equal to the account's current password. Provisioning files,
  written by operators, are held to the first two rules only (the demo operator's
  password, fixed by issue 4, contains its login name in another case).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "TENANT_CARRIER_TRUNK_SETTINGS",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PRODUCTION_PASSWORD_HASHER",
    "MAX_ACCOUNTS_PER_TOLLFREE_NUMBER",
    "MAX_TOLLFREE_DESTINATIONS",
    "AccountRole",
    "AnnouncementLanguage",
    "AreaKind",
    "DigestAlgorithm",
    "ExtensionKind",
    "MobileIdentity",
    "PasswordRuleViolation",
    "RefusalAction",
    "ScheduleAction",
    "ScheduleRangeKind",
    "TollFreeServiceType",
    "Transport",
    "TrunkKind",
    "max_destination_weight",
    "account_login_problem",
    "compute_ha1",
    "hash_account_password",
    "password_policy_violations",
    "use_password_hasher",
    "verify_account_password",
]


class ExtensionKind(enum.StrEnum):
    """What answers for an extension number (PRODUCT.md, Part B)."""

    FIXED_IP_PHONE = "fixed_ip_phone"
    """A SIP device that registers to the switch (or has a static contact)."""
    MOBILE = "mobile"
    """A mobile line's A or B number, reached through the mobile-network trunk."""
    CUSTOMER_PBX = "customer_pbx"
    """A range of numbers behind a customer's PBX, reached over the PBX's trunk."""


class AnnouncementLanguage(enum.StrEnum):
    """The language of the recordings the switch plays for a tenant's cloud PBX calls
    (refusal announcements, the voicemail greeting): `<kind>_<language>.wav`."""

    JA = "ja"
    """Japanese, the default."""
    EN = "en"
    """English."""


class MobileIdentity(enum.StrEnum):
    """Which number of a mobile line an extension stands for (2in1, PRODUCT.md Part B 5)."""

    A = "a"
    """The line's own MSISDN."""
    B = "b"
    """The 2in1 B number."""


class TrunkKind(enum.StrEnum):
    """What a SIP peer is (PRODUCT.md, Who uses it)."""

    MOBILE_NETWORK = "mobile_network"
    """The mobile carrier's core: calls from and to mobile lines."""
    PSTN = "pstn"
    """The fixed network: toll-free calls arrive here, external calls leave here."""
    CUSTOMER_PBX = "customer_pbx"
    """A customer's on-premise PBX (through its VoIP/SIP gateway)."""
    EXTERNAL_GATEWAY = "external_gateway"
    """A customer's external-line gateway (the gateway outbound option)."""


TENANT_CARRIER_TRUNK_SETTINGS: Mapping[str, TrunkKind] = MappingProxyType(
    {"pstn_trunk": TrunkKind.PSTN, "mobile_trunk": TrunkKind.MOBILE_NETWORK}
)
"""A tenant's outbound carrier trunk settings (operator settings naming a carrier-wide
trunk) and the kind of trunk each must name; checked by provisioning and the API."""


class TollFreeServiceType(enum.StrEnum):
    """The contract type of a toll-free number: it bounds the distribution weights."""

    STANDARD = "standard"
    """Weights 0-9."""
    OFFICE = "office"
    """The office type (ひかり電話オフィスタイプ): weights 0-32."""


class ScheduleAction(enum.StrEnum):
    """What a toll-free schedule does while one of its ranges is in force."""

    AFTER_HOURS = "after_hours"
    """The switch answers and plays the after-hours announcement (時間外案内機能)."""
    DESTINATION_CHANGE = "destination_change"
    """Calls go to another destination set (受付先変更機能; also ratio sets)."""


class ScheduleRangeKind(enum.StrEnum):
    """How a schedule range picks its days (Asia/Tokyo)."""

    WEEKLY = "weekly"
    """Every week on `weekday` (0 = Monday ... 6 = Sunday)."""
    DATE = "date"
    """One calendar date (a dated exception)."""
    HOLIDAY = "holiday"
    """Every Japanese public holiday (jpholiday)."""


class AreaKind(enum.StrEnum):
    """How an originating-area designation names its area."""

    PREFECTURE = "prefecture"
    """A prefecture by its JIS X 0401 code, "01" (Hokkaido) to "47" (Okinawa)."""
    AREA_CODE = "area_code"
    """A charging area by its area code, national form with the leading 0 ("03")."""


class RefusalAction(enum.StrEnum):
    """What a caller outside the designated areas gets."""

    ANNOUNCEMENT = "announcement"
    """The switch answers, plays the refusal announcement and hangs up."""
    REJECT = "reject"
    """A 403 final response, no media."""


MAX_TOLLFREE_DESTINATIONS = 5
"""Destinations in one destination set of a toll-free number."""
MAX_ACCOUNTS_PER_TOLLFREE_NUMBER = 50
"""Customer Control accounts granted one toll-free number (seed 000, 提供条件)."""


def max_destination_weight(service_type: TollFreeServiceType) -> int:
    """The highest distribution weight a number of `service_type` may give."""
    return 32 if service_type is TollFreeServiceType.OFFICE else 9


class DigestAlgorithm(enum.StrEnum):
    """Digest algorithms an extension may be challenged with (RFC 7616 §6.1 names)."""

    SHA_256 = "SHA-256"
    MD5 = "MD5"


class Transport(enum.StrEnum):
    """SIP transport towards a peer (RFC 3261 §18)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


_HASH_NAME = {DigestAlgorithm.MD5: "md5", DigestAlgorithm.SHA_256: "sha256"}


def compute_ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm) -> str:
    """HA1 = H(username ":" realm ":" password), as lower-case hex (RFC 7616 §3.4.2).

    Returns:
        32 hex digits for MD5, 64 for SHA-256.
    """
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.new(_HASH_NAME[algorithm], text).hexdigest()


# --- Customer Control accounts ---------------------------------------------------------


class AccountRole(enum.StrEnum):
    """What a Customer Control account may do (issue 4)."""

    OPERATOR = "operator"
    """Carrier staff: provisions every tenant; belongs to no tenant."""
    TENANT_ADMIN = "tenant_admin"
    """A tenant's system administrator: everything in the tenant, its accounts included."""
    USER = "user"
    """A tenant's user: their own extension only."""
    TOLLFREE_VIEWER = "tollfree_viewer"
    """A tenant's user who sees the toll-free numbers granted to them (issue 5)."""


MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
"""Longer input is refused as invalid before it is hashed: a bound on the work per request."""

_LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")
_LOGIN_MAX_LENGTH = 128


def account_login_problem(login: str, role: AccountRole, tenant_name: str | None) -> str | None:
    """Why `login` cannot name an account of `role` in `tenant_name`, or None if it can.

    See the module rules: operators have no `@`, tenant accounts are `LOCAL@TENANT`.
    """
    if len(login) > _LOGIN_MAX_LENGTH:
        return f"must be at most {_LOGIN_MAX_LENGTH} characters long"
    if role is AccountRole.OPERATOR:
        if tenant_name is not None:
            return "an operator account belongs to no tenant"
        if not _LOCAL_PART.match(login):
            return (
                "must be lower-case letters, digits and ._+- (starting with a letter or"
                " digit), without @"
            )
        return None
    if tenant_name is None:
        return "an account of this role belongs to a tenant"
    local, at, tenant_part = login.rpartition("@")
    if not at or tenant_part != tenant_name:
        return f"must end with @{tenant_name}"
    if not _LOCAL_PART.match(local):
        return (
            "the part before @ must be lower-case letters, digits and ._+- (starting with a"
            " letter or digit)"
        )
    return None


@dataclass(frozen=True, slots=True)
class PasswordRuleViolation:
    """One broken rule of the password policy."""

    rule: str
    """Stable identifier: `min_length`, `character_classes`, `contains_login`, `reused`."""
    message: str
    """What the rule requires, in words; never repeats the password."""


def _character_classes(password: str) -> int:
    lower = any(character.islower() for character in password)
    upper = any(character.isupper() for character in password)
    digit = any(character.isdigit() for character in password)
    symbol = any(
        not (character.islower() or character.isupper() or character.isdigit())
        for character in password
    )
    return lower + upper + digit + symbol


def password_policy_violations(
    password: str,
    login: str | None = None,
    current_password: str | None = None,
) -> list[PasswordRuleViolation]:
    """Every rule of the password policy that `password` breaks (empty when it passes).

    Args:
        password: the candidate.
        login: the account's login name; None skips the login-name rule (provisioning).
        current_password: the password being replaced, if any.
    """
    violations: list[PasswordRuleViolation] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        violations.append(
            PasswordRuleViolation(
                "min_length", f"must be at least {MIN_PASSWORD_LENGTH} characters long"
            )
        )
    if _character_classes(password) < 3:
        violations.append(
            PasswordRuleViolation(
                "character_classes",
                "must contain characters of at least 3 of the 4 classes lower-case letter,"
                " upper-case letter, digit, symbol",
            )
        )
    if login is not None:
        folded = password.casefold()
        local = login.partition("@")[0]
        names = [login] + ([local] if len(local) >= 3 and local != login else [])
        if any(name.casefold() in folded for name in names):
            violations.append(
                PasswordRuleViolation("contains_login", "must not contain the login name")
            )
    if current_password is not None and password == current_password:
        violations.append(PasswordRuleViolation("reused", "must differ from the current password"))
    return violations


# One hasher for the process: argon2-cffi's defaults are RFC 9106's second recommended
# option (argon2id, t=3, m=64 MiB, p=4), about 0.1 s per hash on one core.
PRODUCTION_PASSWORD_HASHER = PasswordHasher()
_PASSWORD_HASHER = PRODUCTION_PASSWORD_HASHER


def use_password_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash new passwords with `hasher` from now on; returns the one it replaces.

    For test suites that create and log in hundreds of accounts: a cheaper argon2id (its
    parameters travel in every hash, so verification follows them). The product never
    calls it: it runs with `PRODUCTION_PASSWORD_HASHER`.
    """
    global _PASSWORD_HASHER
    previous, _PASSWORD_HASHER = _PASSWORD_HASHER, hasher
    return previous


def hash_account_password(password: str) -> str:
    """The argon2id PHC string for `password`, with a fresh random salt."""
    return _PASSWORD_HASHER.hash(password)


def verify_account_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash` (constant work for a wrong password).

    A malformed stored hash is a mismatch, never an exception.
    """
    try:
        return _PASSWORD_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
