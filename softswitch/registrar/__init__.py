"""The registrar (RFC 3261 §10): bindings, REGISTER processing and expiry. Pure.

No I/O and no clock (STYLE.md principles 1-2): `now` is a parameter, subscribers and
domains come through ports (`CredentialLookup`, `DomainLookup`), and binding changes are
returned for a `BindingStore` adapter to persist.

The I/O shell lives in modules this package does not re-export, so importing it loads
no database code: `snapshot_adapter` (the ports over a `cloudpbx` config snapshot),
`store` (the database `BindingStore`), `nonce_secret` (the digest nonce key kept in the
config store) and `service` (clock, expiry timer, write-behind).
"""

from .bindings import (
    AddressOfRecord,
    Binding,
    BindingChange,
    BindingStore,
    BindingTable,
    ChangeKind,
    RemovalReason,
)
from .registrar import (
    AuthenticationFailureTracker,
    CredentialLookup,
    DomainLookup,
    Registrar,
    RegistrarConfig,
    RegistrationResult,
    ResponseFactory,
    SubscriberCredentials,
)

__all__ = [
    "AddressOfRecord",
    "AuthenticationFailureTracker",
    "Binding",
    "BindingChange",
    "BindingStore",
    "BindingTable",
    "ChangeKind",
    "CredentialLookup",
    "DomainLookup",
    "Registrar",
    "RegistrarConfig",
    "RegistrationResult",
    "RemovalReason",
    "ResponseFactory",
    "SubscriberCredentials",
]
