"""The lockout rule for failed logins, as pure functions over a small state value.

Rules (issue 4; the numbers come from `CustconSettings`):
- Failures are counted in a window that opens at the first failure: a failure more than
  `lockout_window_seconds` after the window opened starts a new window with count 1.
- The failure that brings the count to `lockout_threshold` (5) locks the login out for
  `lockout_seconds` (15 min) from that moment; the count and window restart then, so
  after the lockout the login has 5 attempts again.
- While locked out every attempt is refused without checking the password (so a correct
  guess is neither rewarded nor revealed) and does not extend the lockout: nobody can keep
  an account locked out longer than by failing 5 times again after it ends.
- A successful login clears the count, the window and any lockout.
- The same rule runs for stored accounts (state in the `account` row) and for unknown
  login names (state in memory, `UnknownLogins`), so an attacker cannot tell them apart by
  locking them out.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from custcon_api.settings import CustconSettings

__all__ = ["FailureState", "UnknownLogins", "after_failure", "retry_after"]


@dataclass(frozen=True, slots=True)
class FailureState:
    """Failed-login bookkeeping of one login name."""

    count: int = 0
    window_start: float | None = None
    locked_until: float | None = None


def retry_after(state: FailureState, now: float) -> int | None:
    """Whole seconds until the lockout ends (at least 1), or None when not locked out."""
    if state.locked_until is None or now >= state.locked_until:
        return None
    return max(1, math.ceil(state.locked_until - now))


def after_failure(
    state: FailureState, now: float, settings: CustconSettings
) -> tuple[FailureState, bool]:
    """The state after one more failed login at `now` (not locked out at `now`).

    Returns:
        The new state, and True when this failure started a lockout.
    """
    if state.window_start is None or now - state.window_start > settings.lockout_window_seconds:
        count, window_start = 1, now
    else:
        count, window_start = state.count + 1, state.window_start
    if count >= settings.lockout_threshold:
        return FailureState(0, None, now + settings.lockout_seconds), True
    return FailureState(count, window_start, state.locked_until), False


class UnknownLogins:
    """Failure states of login names that name no account, in memory, bounded.

    Least recently failed names are forgotten beyond `capacity`. Per process: with several
    API processes an unknown name's count is split between them, which only makes its
    lockout come later, never reveals anything.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._states: OrderedDict[str, FailureState] = OrderedDict()
        self._lock = threading.Lock()  # sync routes run on a thread pool

    def get(self, login: str) -> FailureState:
        with self._lock:
            return self._states.get(login, FailureState())

    def put(self, login: str, state: FailureState) -> None:
        with self._lock:
            self._states[login] = state
            self._states.move_to_end(login)
            while len(self._states) > self._capacity:
                self._states.popitem(last=False)
