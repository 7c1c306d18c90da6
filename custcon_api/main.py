"""The application factory: `create_app(session_factory, clock=..., settings=..., notifier=...)`.

Rules:
- The app is built over the config store's SQLAlchemy session factory
  (`cloudpbx.db.create_session_factory`); it neither migrates nor provisions (the
  command line does, `custcon_api.__main__`), and opens no connection until a request.
- The clock is injected (unix seconds): token expiry and lockouts read only it, so tests
  step time instead of sleeping.
- OpenAPI at `/openapi.json` declares the OAuth2 password flow (token URL
  `/api/v1/auth/token`) as the security scheme of every protected route; interactive docs
  at `/docs` log in through it.
- Every committed change is published on the `notifier` (`cloudpbx.notify`): in
  `softswitch run --api` it is the switch's, which rebuilds its snapshot on it; by
  default a notifier of the app's own with no subscriber.
- Endpoints are synchronous `def`s: FastAPI runs them on a worker thread, so their SQL
  and argon2 work never blocks the event loop the API shares with the SIP switch.
- Routers translate HTTP only; services hold the rules (`custcon_api.*.service`); errors
  become responses in one place (`custcon_api.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.notify import ChangeNotifier
from custcon_api import errors
from custcon_api.accounts.router import router as accounts_router
from custcon_api.auditlog.router import router as auditlog_router
from custcon_api.auth.lockout import UnknownLogins
from custcon_api.auth.router import router as auth_router
from custcon_api.deps import AppContext
from custcon_api.operator.router import router as operator_router
from custcon_api.pbx.router import router as pbx_router
from custcon_api.settings import CustconSettings
from custcon_api.statistics.router import router as statistics_router
from custcon_api.tollfree.router import router as tollfree_router
from custcon_api.voicemail.router import router as voicemail_router

__all__ = ["create_app"]

_DESCRIPTION = """\
Customer Control API of the softswitch: customers and operators change their own
settings, in real time (issue 4). Log in with the OAuth2 password flow at
`/api/v1/auth/token` and send the token as `Authorization: Bearer ...`.
"""


def create_app(
    session_factory: sessionmaker[Session],
    clock: Callable[[], float] = time.time,
    settings: CustconSettings | None = None,
    notifier: ChangeNotifier | None = None,
) -> FastAPI:
    """A FastAPI application over the config store.

    Args:
        session_factory: sessions on the (migrated) config store.
        clock: unix time in seconds; tests inject a fake one.
        settings: token lifetime and lockout rule; the defaults of `CustconSettings`.
        notifier: where committed changes are published (default: a new one).
    """
    settings = settings or CustconSettings()
    app = FastAPI(
        title="Customer Control API",
        version="0.1.0",
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.custcon = AppContext(
        session_factory=session_factory,
        clock=clock,
        settings=settings,
        unknown_logins=UnknownLogins(settings.unknown_login_capacity),
        notifier=notifier if notifier is not None else ChangeNotifier(),
    )
    errors.install(app)
    app.include_router(auth_router)
    app.include_router(accounts_router)
    app.include_router(operator_router)
    app.include_router(pbx_router)
    app.include_router(tollfree_router)
    app.include_router(auditlog_router)
    app.include_router(statistics_router)
    app.include_router(voicemail_router)
    return app
