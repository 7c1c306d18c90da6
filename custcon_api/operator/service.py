"""Operator maintenance: the rules and the transaction of each.

Rules:
- Only an `operator` account may use these (403 for every other role, before anything
  is read or written).
- `request_reload`: the operator's manual reload. It writes the audit row `config.reload`,
  commits it, and then publishes `cloudpbx.notify.CONFIG`, which makes every switch
  subscribed to this process's notifier rebuild its config snapshot from the store and
  swap it in. It is how a change written to the store by another process (`softswitch
  provision FILE`) takes effect without a restart until notifications travel between
  processes (MQTT, issue 4 part 4). The reload itself is asynchronous: the answer
  (202) means "requested", not "done"; the switch logs `config snapshot reloaded in ...`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from cloudpbx.domain import AccountRole
from cloudpbx.notify import CONFIG
from custcon_api import audit
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Forbidden

__all__ = ["request_reload"]


def request_reload(
    session: Session, context: AppContext, principal: Principal, remote_address: str | None
) -> None:
    """Audit and publish a manual configuration reload (see the module rules).

    Raises:
        Forbidden: the caller is not an operator (403).
    """
    if principal.account.role is not AccountRole.OPERATOR:
        raise Forbidden("only an operator can reload the configuration")
    audit.record(
        session,
        at=context.clock(),
        action="config.reload",
        actor=principal.account,
        target=CONFIG,
        remote_address=remote_address,
    )
    session.commit()
    # cloudpbx.notify: published after the commit, like every change.
    context.notifier.publish(CONFIG)
