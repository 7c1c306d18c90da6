"""Bearer tokens: how they are made, stored and read from a request.

Rules:
- A token is 32 bytes from `secrets` (256 bits), base64url without padding: it is opaque
  and carries no claims, so revoking it (a database row) takes effect at once. Its
  characters fit RFC 6750 §2.1's b64token.
- The store keeps only the lower-case hex SHA-256 of the token (`token_digest`). A fast
  hash is enough here: unlike a password the token has 256 bits of entropy, so no
  dictionary applies, and lookups stay one indexed equality.
- Tokens are accepted only in the `Authorization: Bearer` header (RFC 6750 §2.1), never
  in a form body or the query string (§2.2, §2.3 are optional and leak into logs).
- `bearer_scheme` is what declares the OAuth2 password flow, with token URL `TOKEN_URL`,
  in the OpenAPI document's security schemes; it never answers by itself
  (`auto_error=False`), so every 401 comes from `custcon_api.errors`.
"""

from __future__ import annotations

import hashlib
import secrets

from fastapi.security import OAuth2PasswordBearer

__all__ = ["TOKEN_URL", "bearer_scheme", "new_token", "token_digest"]

TOKEN_URL = "/api/v1/auth/token"
_TOKEN_BYTES = 32

bearer_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    scheme_name="OAuth2PasswordBearer",
    description=(
        "OAuth2 resource owner password credentials flow (RFC 6749 §4.3): POST the form"
        f" fields username and password to {TOKEN_URL}, then send"
        " `Authorization: Bearer <access_token>` (RFC 6750 §2.1)."
    ),
    auto_error=False,
)


def new_token() -> str:
    """A fresh random access token (256 bits, base64url)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """The stored form of `token`: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
