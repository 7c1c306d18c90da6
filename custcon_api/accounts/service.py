"""A tenant's accounts: who may see and change them, and the transaction of each change.

Rules:
- Authorization comes first, before the tenant is even looked up, so a refusal says
  nothing about other tenants (not whether one exists): an operator may manage any
  tenant; a tenant administrator only their own tenant (403 for any other name);
  `user` and `tollfree_viewer` accounts may not manage accounts at all (403).
- An operator naming a tenant that does not exist gets 404.
- Only accounts of the tenant in the path are listed, created or deleted: a login of
  another tenant (or an operator) is 404 under this tenant, whoever asks.
- Creating: the login must be `LOCAL@TENANT` (so names of different tenants never
  collide, and a 409 for a taken name only ever concerns the caller's own tenant), the
  password must meet the policy (its login-name rule against the new login), a `user`
  must own an extension of this tenant and no other role may. Every broken rule is one
  422 entry naming its field. The password is stored as an argon2id hash only.
- Nobody deletes their own account through this endpoint (409): a tenant must not lose
  its last administrator by accident; deleting an account deletes its tokens with it.
- Every change writes its audit row (`account.create` with `after`, `account.delete`
  with `before`) in the same transaction; after the commit the change is published
  (`cloudpbx.notify.ACCOUNTS`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloudpbx.domain import (
    AccountRole,
    account_login_problem,
    hash_account_password,
    password_policy_violations,
)
from cloudpbx.models import Account, Extension, Tenant
from cloudpbx.notify import ACCOUNTS
from custcon_api import audit
from custcon_api.accounts.schemas import AccountCreate
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, Forbidden, InvalidFields, NotFound

__all__ = ["create_account", "delete_account", "list_accounts"]


def _authorized_tenant(session: Session, principal: Principal, tenant_name: str) -> Tenant:
    """The tenant the caller may manage the accounts of (see the module rules)."""
    account = principal.account
    if account.role is AccountRole.OPERATOR:
        pass
    elif account.role is AccountRole.TENANT_ADMIN:
        if account.tenant is None or account.tenant.name != tenant_name:
            raise Forbidden("only your own tenant's accounts can be managed")
    else:
        raise Forbidden("your role cannot manage accounts")
    tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one_or_none()
    if tenant is None:
        raise NotFound("no such tenant")
    return tenant


def list_accounts(session: Session, principal: Principal, tenant_name: str) -> list[Account]:
    """The tenant's accounts, by login name."""
    tenant = _authorized_tenant(session, principal, tenant_name)
    return list(
        session.scalars(
            select(Account)
            .where(Account.tenant_id == tenant.id)
            .options(selectinload(Account.tenant), selectinload(Account.extension))
            .order_by(Account.login)
        )
    )


def create_account(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    body: AccountCreate,
    remote_address: str | None,
) -> Account:
    """Create an account in the tenant.

    Raises:
        Forbidden, NotFound: see `_authorized_tenant`.
        InvalidFields: a rule on login, password or extension is broken (422).
        Conflict: the login name is taken (409).
    """
    tenant = _authorized_tenant(session, principal, tenant_name)
    role = AccountRole(body.role)
    problems: list[FieldProblem] = []
    login_problem = account_login_problem(body.login, role, tenant.name)
    if login_problem is not None:
        problems.append(FieldProblem("login", "login_name", login_problem))
    problems.extend(
        FieldProblem("password", f"password_policy.{violation.rule}", violation.message)
        for violation in password_policy_violations(body.password, body.login)
    )
    extension = None
    if role is AccountRole.USER:
        if body.extension is None:
            problems.append(FieldProblem("extension", "missing", "is required for role user"))
        else:
            extension = session.scalars(
                select(Extension).where(
                    Extension.tenant_id == tenant.id, Extension.number == body.extension
                )
            ).one_or_none()
            if extension is None:
                problems.append(
                    FieldProblem("extension", "unknown_extension", "is no extension of the tenant")
                )
    elif body.extension is not None:
        problems.append(
            FieldProblem("extension", "not_allowed", "only a user account owns an extension")
        )
    if problems:
        raise InvalidFields(problems)
    if session.scalars(select(Account.id).where(Account.login == body.login)).first() is not None:
        raise Conflict("an account with this login name exists")
    now = context.clock()
    account = Account(
        login=body.login,
        password_hash=hash_account_password(body.password),
        role=role,
        tenant=tenant,
        extension=extension,
        failed_login_count=0,
        password_changed_at=now,
        created_at=now,
        disabled=False,
    )
    session.add(account)
    session.flush()
    audit.record(
        session,
        at=now,
        action="account.create",
        actor=principal.account,
        target=account.login,
        tenant_id=tenant.id,
        after=account.audit_view(),
        remote_address=remote_address,
    )
    session.commit()
    # cloudpbx.notify: published after the commit, so a subscriber reads the change.
    context.notifier.publish(ACCOUNTS)
    return account


def delete_account(
    session: Session,
    context: AppContext,
    principal: Principal,
    tenant_name: str,
    login_name: str,
    remote_address: str | None,
) -> None:
    """Delete the tenant's account `login_name` and its tokens.

    Raises:
        Forbidden, NotFound: see `_authorized_tenant`; NotFound also for a login that is
            not an account of this tenant.
        Conflict: the caller's own account (409).
    """
    tenant = _authorized_tenant(session, principal, tenant_name)
    account = session.scalars(
        select(Account).where(Account.tenant_id == tenant.id, Account.login == login_name)
    ).one_or_none()
    if account is None:
        raise NotFound("no such account in this tenant")
    if account.id == principal.account.id:
        raise Conflict("you cannot delete your own account")
    now = context.clock()
    audit.record(
        session,
        at=now,
        action="account.delete",
        actor=principal.account,
        target=account.login,
        tenant_id=tenant.id,
        before=account.audit_view(),
        remote_address=remote_address,
    )
    session.delete(account)
    session.commit()
    # cloudpbx.notify: published after the commit, so a subscriber reads the change.
    context.notifier.publish(ACCOUNTS)
