"""HTTP for login, logout and the caller's own account: translation only.

Endpoints:
- `POST /api/v1/auth/token`: the OAuth2 password grant (RFC 6749 §4.3.2), form fields
  `username` and `password` (`grant_type=password` optional). 200 with
  `{"access_token", "token_type": "bearer", "expires_in"}` and `Cache-Control: no-store`
  (RFC 6749 §5.1); 401 on bad credentials, 429 while locked out (`custcon_api.errors`).
- `POST /api/v1/auth/logout`: revokes the presented bearer token; 204.
- `GET /api/v1/me`: the caller's account (`AccountPublic`, never the hash).
- `POST /api/v1/me/password`: change the caller's password; 204, or 422 naming
  `current_password` / `new_password`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from custcon_api.auth import service
from custcon_api.auth.schemas import (
    AccountPublic,
    ErrorBody,
    OAuthErrorBody,
    PasswordChange,
    TokenResponse,
)
from custcon_api.deps import ClientAddress, ContextDep, CurrentPrincipal, SessionDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid, expired or revoked one"}
}


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    tags=["auth"],
    summary="Log in: OAuth2 password grant",
    responses={
        401: {"model": OAuthErrorBody, "description": "Wrong login name or password"},
        429: {"model": OAuthErrorBody, "description": "Locked out; see Retry-After"},
    },
)
def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
    response: Response,
) -> TokenResponse:
    issued = service.login(session, context, form.username, form.password, remote_address)
    # RFC 6749 §5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    summary="Revoke the presented token",
    responses=_UNAUTHORIZED,
)
def logout(
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.logout(session, context, principal, remote_address)


@router.get("/me", tags=["me"], summary="The caller's account", responses=_UNAUTHORIZED)
def read_me(principal: CurrentPrincipal) -> AccountPublic:
    return AccountPublic.of(principal.account)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["me"],
    summary="Change the caller's password",
    responses={
        **_UNAUTHORIZED,
        429: {"model": OAuthErrorBody, "description": "Locked out; see Retry-After"},
    },
)
def change_password(
    body: PasswordChange,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    remote_address: ClientAddress,
) -> None:
    service.change_password(
        session, context, principal, body.current_password, body.new_password, remote_address
    )
