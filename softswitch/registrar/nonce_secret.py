"""The digest nonce key, kept in the config store so nonces survive a restart.

Rules:
- Nonces are stateless HMACs (`softswitch.sip.auth.NonceManager`, RFC 7616 §3.3): a
  process can check a nonce only with the key that issued it. With a key drawn at each
  start, a phone challenged just before a restart answers with a nonce the new process
  calls "not ours": another 401/407 (stale=false, so a phone may take its password for
  wrong and give up). So the key is created once, on the first start against a store, and
  read back by every later start (and by every process sharing that store, as
  `NonceManager` asks of processes that check each other's nonces).
- It lives in the `switch_secret` table, row `digest-nonce` (`cloudpbx.models`), so it
  works for a SQLite data directory and for `--database postgresql://...` alike. It is
  32 random octets (`secrets.token_bytes`), never logged.
- Two processes starting at once on an empty store: both insert, the primary key lets
  one win, the loser rolls back and reads the winner's key. Both end with the same key.
- A stored value shorter than `NonceManager` accepts is refused (ValueError): start-up
  fails rather than run with a weak key. Delete the row to draw a new one (every nonce
  in flight is then answered with a fresh challenge, as after the old behaviour).
- Blocking (SQL): call it before the event loop starts, as `softswitch run` does.
- What this keeps is the key, not the nonce-count memory (RFC 7616 §5.5): a request
  authenticated within the nonce lifetime before a restart can be replayed once after
  it. The registrar's CSeq rule (RFC 3261 §10.3 step 7) refuses a replayed REGISTER of a
  stored binding; an INVITE replay stays possible for that window, as it would be
  across any two processes sharing the key.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloudpbx.models import SwitchSecret

__all__ = ["NONCE_SECRET_LENGTH", "NONCE_SECRET_NAME", "load_or_create_nonce_secret"]

NONCE_SECRET_NAME = "digest-nonce"
NONCE_SECRET_LENGTH = 32
"""Octets drawn for a new key (HMAC-SHA256's block of entropy)."""
_MINIMUM_LENGTH = 16  # `NonceManager` refuses shorter keys


def load_or_create_nonce_secret(
    sessions: sessionmaker[Session],
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> bytes:
    """The stored digest nonce key, created on the first call against a store.

    Args:
        sessions: session factory of the config store (migrated).
        random_bytes: source of a new key; tests pass their own.
        clock: wall clock, for the row's `created_at`.

    Raises:
        ValueError: the stored key is too short to be used.
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read or written.
    """
    with sessions() as session:
        stored = session.get(SwitchSecret, NONCE_SECRET_NAME)
        if stored is None:
            session.add(
                SwitchSecret(
                    name=NONCE_SECRET_NAME,
                    value=random_bytes(NONCE_SECRET_LENGTH),
                    created_at=clock(),
                )
            )
            try:
                session.commit()
            except IntegrityError:
                # Another process created it between our read and our insert.
                session.rollback()
            stored = session.get(SwitchSecret, NONCE_SECRET_NAME, populate_existing=True)
            if stored is None:  # pragma: no cover - deleted between two statements
                raise ValueError("the digest nonce key vanished while it was created")
        value = bytes(stored.value)
    if len(value) < _MINIMUM_LENGTH:
        raise ValueError(
            f"the stored digest nonce key has {len(value)} octets, fewer than {_MINIMUM_LENGTH}"
        )
    return value
