"""Request and response bodies of login, logout and `/me`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloudpbx.domain import MAX_PASSWORD_LENGTH, AccountRole
from cloudpbx.models import Account

__all__ = ["AccountPublic", "ErrorBody", "OAuthErrorBody", "PasswordChange", "TokenResponse"]

Password = Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]


def unix_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class TokenResponse(BaseModel):
    """A successful access token response (RFC 6749 §5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    """Seconds the token is valid for from now."""


class OAuthErrorBody(BaseModel):
    """A failed token request (RFC 6749 §5.2)."""

    error: str
    error_description: str


class ErrorBody(BaseModel):
    """Any other error but 422."""

    detail: str


class AccountPublic(BaseModel):
    """An account as the API shows it: never the password hash, nor lockout counters."""

    login: str
    role: AccountRole
    tenant: str | None
    """The tenant's name; null for an operator."""
    extension: str | None
    """The extension a `user` account owns."""
    disabled: bool
    created_at: datetime
    password_changed_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountPublic:
        return cls(
            login=account.login,
            role=account.role,
            tenant=None if account.tenant is None else account.tenant.name,
            extension=None if account.extension is None else account.extension.number,
            disabled=account.disabled,
            created_at=unix_to_datetime(account.created_at),
            password_changed_at=unix_to_datetime(account.password_changed_at),
        )


class PasswordChange(BaseModel):
    """`POST /api/v1/me/password`: the current password proves it is the owner."""

    model_config = ConfigDict(extra="forbid")

    current_password: Password
    new_password: Password
    """Must meet the password policy (`cloudpbx.domain.password_policy_violations`)."""
