"""Settings of the Customer Control API: one frozen value passed to `create_app`.

Rules:
- No global configuration: the app reads only the `CustconSettings` it was built with.
- Every duration is in seconds. Defaults are issue 4's: tokens live 15 minutes; 5 failed
  logins within 15 minutes lock the login out for 15 minutes.
- Values are checked when the object is built; a non-positive duration or threshold is a
  `ValueError`, so a bad setting stops the process at start-up, not at the first login.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CustconSettings"]


@dataclass(frozen=True, slots=True)
class CustconSettings:
    """What the API's security rules are parameterised by."""

    token_lifetime_seconds: int = 15 * 60
    """Lifetime of an access token: short-lived, reported as `expires_in` (RFC 6749 §5.1)."""
    lockout_threshold: int = 5
    """Failed logins within `lockout_window_seconds` that lock the login out."""
    lockout_window_seconds: float = 15 * 60.0
    """How long after the first counted failure further failures add up."""
    lockout_seconds: float = 15 * 60.0
    """How long a locked-out login is refused, whatever password it sends."""
    unknown_login_capacity: int = 10_000
    """Unknown login names whose failures are tracked in memory (see `custcon_api.auth`)."""

    def __post_init__(self) -> None:
        for name in (
            "token_lifetime_seconds",
            "lockout_threshold",
            "lockout_window_seconds",
            "lockout_seconds",
            "unknown_login_capacity",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
