"""Dependencies shared by the routers, as `Annotated` aliases.

Rules:
- One `AppContext` per app (built by `create_app`, kept on `app.state`): the session
  factory, the clock, the settings, the in-memory unknown-login lockouts and the change
  notifier every committed change is published on (`cloudpbx.notify`). Nothing is
  global, so two apps in one process (tests) never share state.
- One database session per request (`SessionDep`); services commit it themselves.
- `CurrentPrincipal` authenticates the bearer token on every request (RFC 6750 §2.1):
  unknown, expired (clock at or after `expires_at`), revoked, or of a disabled account are
  all the same 401 `invalid_token`; no token at all is 401 without an error code (RFC 6750
  §3.1). The account is read fresh each time, so role and tenant changes apply at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from cloudpbx.models import Account, ApiToken
from cloudpbx.notify import ChangeNotifier
from custcon_api.auth.lockout import UnknownLogins
from custcon_api.errors import AuthenticationRequired, InvalidToken
from custcon_api.security import bearer_scheme, token_digest
from custcon_api.settings import CustconSettings

__all__ = [
    "AppContext",
    "ClientAddress",
    "ContextDep",
    "CurrentPrincipal",
    "Principal",
    "SessionDep",
]


@dataclass(frozen=True, slots=True)
class AppContext:
    """What every request of one app shares."""

    session_factory: sessionmaker[Session]
    clock: Callable[[], float]
    """Unix time in seconds; tests inject a fake one."""
    settings: CustconSettings
    unknown_logins: UnknownLogins
    notifier: ChangeNotifier
    """Where services publish committed changes (`softswitch run --api` subscribes)."""


def _context(request: Request) -> AppContext:
    context = request.app.state.custcon
    assert isinstance(context, AppContext)
    return context


ContextDep = Annotated[AppContext, Depends(_context)]


def _session(context: ContextDep) -> Iterator[Session]:
    with context.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _client_address(request: Request) -> str | None:
    return None if request.client is None else request.client.host


ClientAddress = Annotated[str | None, Depends(_client_address)]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: its account and the token it presented."""

    account: Account
    token: ApiToken


def _principal(
    token: Annotated[str | None, Depends(bearer_scheme)],
    session: SessionDep,
    context: ContextDep,
) -> Principal:
    if token is None:
        raise AuthenticationRequired()
    row = session.scalars(
        select(ApiToken)
        .where(ApiToken.token_sha256 == token_digest(token))
        .options(joinedload(ApiToken.account))
    ).one_or_none()
    now = context.clock()
    if row is None or row.revoked_at is not None or now >= row.expires_at or row.account.disabled:
        raise InvalidToken()
    return Principal(account=row.account, token=row)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
