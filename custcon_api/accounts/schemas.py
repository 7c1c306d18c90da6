"""Request bodies of the accounts endpoints (responses are `AccountPublic`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloudpbx.domain import MAX_PASSWORD_LENGTH

__all__ = ["AccountCreate"]


class AccountCreate(BaseModel):
    """A new account of the tenant named in the path."""

    model_config = ConfigDict(extra="forbid")

    login: Annotated[str, Field(min_length=1, max_length=128)]
    """`LOCAL@TENANT` (`cloudpbx.domain.account_login_problem`), e.g. `user1002@demo`."""
    role: Literal["tenant_admin", "user", "tollfree_viewer"]
    """Operators are not created through a tenant."""
    password: Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]
    """Initial password; must meet the password policy."""
    extension: Annotated[str, Field(pattern=r"^[0-9]{1,32}$")] | None = None
    """The extension a `user` owns (required for `user`, refused for other roles)."""
