"""The authorization matrix covers every endpoint: each operation `/openapi.json` lists
is called by every role, on its own and on another tenant's (or number's) objects, in
one of the matrix tests, so a new endpoint without its row fails here.

Where each part of the matrix lives:
- Cloud PBX (tenants, sites, mobile lines, extensions, trunks): `test_pbx_roles.py`
  (`custcon_api.pbx.ENDPOINT_ROLES`: every role x own / other tenant).
- Toll-free numbers: `test_tollfree.py` (`OPERATIONS`: every caller of both tenants x
  every endpoint on a number; the list and the creation have tests of their own).
- Accounts: `test_accounts.py` (`MATRIX`: every role x own / other tenant x list /
  create / delete).
- The audit log: `test_audit_log.py`; the operator's reload: `test_notifications.py`.
- Voicemail messages: `test_voicemail_api.py` (`custcon_api.voicemail.ENDPOINT_ROLES`:
  every role x own / other tenant x own / other extension).
- The caller's own session (login, logout, `/me`, own password): `test_auth.py`; these
  act only on the token's own account, so there is no "other" to reach.
"""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from custcon_api import create_app
from custcon_api.pbx import ENDPOINT_ROLES
from custcon_api.voicemail import ENDPOINT_ROLES as VOICEMAIL_ENDPOINT_ROLES

from .test_tollfree import BASE as TOLLFREE_BASE
from .test_tollfree import OPERATIONS as TOLLFREE_OPERATIONS

OWN_SESSION = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/me/password"),
}
ACCOUNTS = {
    ("GET", "/api/v1/tenants/{tenant}/accounts"),
    ("POST", "/api/v1/tenants/{tenant}/accounts"),
    ("DELETE", "/api/v1/tenants/{tenant}/accounts/{login}"),
}
SEPARATELY_TESTED = {
    ("GET", "/api/v1/audit-log"),
    ("POST", "/api/v1/operator/reload"),
    ("GET", TOLLFREE_BASE),
    ("POST", TOLLFREE_BASE),
    ("GET", TOLLFREE_BASE + "/{number}/statistics"),  # test_statistics.py: test_who_may_read
}


def test_every_operation_is_in_a_role_matrix() -> None:
    document = create_app(sessionmaker()).openapi()
    served = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    covered = (
        OWN_SESSION
        | ACCOUNTS
        | SEPARATELY_TESTED
        | set(ENDPOINT_ROLES)
        | set(VOICEMAIL_ENDPOINT_ROLES)
        | {(operation.method, operation.route) for operation in TOLLFREE_OPERATIONS.values()}
    )
    assert served - covered == set(), "endpoints without a row in any authorization matrix"
    assert covered - served == set(), "matrix rows for endpoints that are not served"
