"""RFC 3261 transaction timers: their names, their values, and a deadline heap.

Rules:
- Every duration the transaction layer uses is derived here from T1, T2 and T4
  (RFC 3261 §17, Table 4; RFC 6026 §8.11 for Timers L and M). No other module of the
  core writes a number of seconds.
- Timers are absolute deadlines in the caller's clock: a transaction stores
  `now + duration`, never reads a clock itself (STYLE.md principle 2).
- `TimerValues.duration(timer, reliable=...)` is the value a timer starts with:
  - `None` for a retransmission timer that does not run on a reliable transport
    (A, E, G: §17.1.1.2, §17.1.2.2, §17.2.1);
  - `0.0` for a wait that reliable transports do not need (D, I, J, K): the
    transaction acts at once, as if the timer had fired.
- `TimerValues.next_interval(timer, interval)` is the retransmission back-off:
  Timer A doubles without a cap (§17.1.1.2); Timers E and G double up to T2
  (§17.1.2.2, §17.2.1).
- `DeadlineHeap` is what the endpoint uses to answer "what is the earliest deadline of
  everything" in O(log n): one current deadline per key, stale heap entries skipped
  lazily.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from .enums import IdentityEnum

__all__ = ["TimerName", "TimerValues", "DeadlineHeap"]


class TimerName(IdentityEnum):
    """The timers of RFC 3261 Table 4 (A to K), RFC 6026 §8.11 (L and M), and the
    deferred 100 Trying of §17.2.1 (`TRYING`)."""

    A = "A"
    """INVITE request retransmission interval, unreliable transports only (§17.1.1.2)."""
    B = "B"
    """INVITE client transaction timeout: 64*T1 (§17.1.1.2)."""
    C = "C"
    """Proxy INVITE transaction timeout, more than 3 minutes (§16.6 item 11).

    A proxy timer: a UA (and so a B2BUA leg) never starts it. Named for completeness.
    """
    D = "D"
    """Wait time for response retransmissions in the INVITE client transaction's
    Completed state: at least 32 s over UDP, 0 over reliable transports (§17.1.1.2)."""
    E = "E"
    """Non-INVITE request retransmission interval, UDP only: T1 doubling up to T2
    (§17.1.2.2)."""
    F = "F"
    """Non-INVITE client transaction timeout: 64*T1 (§17.1.2.2)."""
    G = "G"
    """INVITE final response retransmission interval: T1 doubling up to T2 (§17.2.1)."""
    H = "H"
    """Wait time for ACK receipt: 64*T1 (§17.2.1)."""
    I = "I"  # noqa: E741 - the RFC's name; an Enum member, never a loop variable
    """Wait time for ACK retransmissions: T4 over UDP, 0 over reliable transports
    (§17.2.1)."""
    J = "J"
    """Wait time for non-INVITE request retransmissions: 64*T1 over UDP, 0 over
    reliable transports (§17.2.2)."""
    K = "K"
    """Wait time for non-INVITE response retransmissions: T4 over UDP, 0 over
    reliable transports (§17.1.2.2)."""
    L = "L"
    """Wait time for accepted INVITE request retransmissions: 64*T1 (RFC 6026 §8.11)."""
    M = "M"
    """Wait time for retransmissions of 2xx responses: 64*T1 (RFC 6026 §8.11)."""
    TRYING = "Trying"
    """Not in Table 4: how long an INVITE server transaction waits for the TU's first
    response before it sends 100 Trying itself (RFC 3261 §17.2.1: it MUST, "unless it
    knows that the TU will generate a provisional or final response within 200 ms").
    Started only when the endpoint defers the 100 (`EndpointConfig.trying_delay`)."""


# RFC 3261 §17.1.1.2: "Timer D ... MUST be set to a value of at least 32 seconds for
# unreliable transports", so that it covers the server's Timer H.
_TIMER_D_MINIMUM = 32.0
# RFC 3261 §16.6 item 11: "Timer C MUST be set for each client transaction ... greater
# than 3 minutes".
_TIMER_C_MINIMUM = 180.0


@dataclass(frozen=True, slots=True)
class TimerValues:
    """T1, T2 and T4 (RFC 3261 §17.1.1.1, Table 4); every timer derives from them.

    Attributes:
        t1: round-trip time estimate, 500 ms by default.
        t2: maximum retransmission interval for non-INVITE requests and INVITE
            responses, 4 s by default.
        t4: maximum duration a message will remain in the network, 5 s by default.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def transaction_timeout(self) -> float:
        """64*T1: Timers B, F, H, L, M and Timer J over UDP."""
        return 64 * self.t1

    def duration(self, timer: TimerName, *, reliable: bool) -> float | None:
        """The value `timer` starts with.

        Args:
            timer: which timer.
            reliable: True over TCP (and any reliable transport).

        Returns:
            Seconds; `None` when the timer does not run on this transport (A, E and G
            on a reliable transport) or has no Table 4 value (TRYING); `0.0` when it
            expires at once (D, I, J and K on a reliable transport).
        """
        if timer in (TimerName.A, TimerName.E, TimerName.G):
            # §17.1.1.2, §17.1.2.2, §17.2.1: retransmissions only on unreliable transports.
            return None if reliable else self.t1
        if timer in (TimerName.B, TimerName.F, TimerName.H, TimerName.L, TimerName.M):
            return self.transaction_timeout
        if timer is TimerName.C:
            return max(_TIMER_C_MINIMUM, self.transaction_timeout)
        if timer is TimerName.TRYING:
            return None  # not a Table 4 value: `EndpointConfig.trying_delay` sets it
        if timer is TimerName.D:
            return 0.0 if reliable else max(_TIMER_D_MINIMUM, self.transaction_timeout)
        if timer is TimerName.J:
            return 0.0 if reliable else self.transaction_timeout
        # Timers I and K: T4 over UDP, zero over reliable transports.
        return 0.0 if reliable else self.t4

    def next_interval(self, timer: TimerName, interval: float) -> float:
        """The retransmission interval after one of `interval` has elapsed.

        RFC 3261 §17.1.1.2: Timer A doubles each time, with no cap (its sequence is
        bounded by Timer B). §17.1.2.2 and §17.2.1: Timers E and G double up to T2.
        The 2xx retransmissions of §13.3.1.4 follow the same rule as Timer G.

        Raises:
            ValueError: `timer` is not a retransmission timer.
        """
        if timer is TimerName.A:
            return 2 * interval
        if timer in (TimerName.E, TimerName.G):
            return min(2 * interval, self.t2)
        raise ValueError(f"Timer {timer.value} is not a retransmission timer")


class DeadlineHeap:
    """Absolute deadlines by key, with the earliest available in O(log n).

    `set(key, deadline)` replaces the key's deadline (None removes it). Replaced heap
    entries are left in place and skipped when they reach the top: every deadline comes,
    so they leave on their own, and in the transaction layer (deadlines at most 64*T1
    ahead, two or three per transaction) the heap holds about three entries per key.
    Only when stale entries pass `COMPACT_FACTOR` times the live ones (plus
    `COMPACT_SLACK`) is the heap rebuilt, in one linear pass: a rebuild that sorted
    60,000 entries on every doubling stopped a switch with 30,000 transactions for
    about 90 ms.
    """

    COMPACT_FACTOR = 4
    COMPACT_SLACK = 4096

    __slots__ = ("_current", "_heap", "_sequence")

    def __init__(self) -> None:
        self._current: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        """Keys with a deadline."""
        return len(self._current)

    @property
    def entries(self) -> int:
        """Heap entries, stale ones included (for leak checks)."""
        return len(self._heap)

    def set(self, key: str, deadline: float | None) -> None:
        current = self._current
        if deadline == current.get(key):
            return
        if deadline is None:
            del current[key]
        else:
            current[key] = deadline
            heapq.heappush(self._heap, (deadline, next(self._sequence), key))
        if len(self._heap) > self.COMPACT_FACTOR * len(current) + self.COMPACT_SLACK:
            self._rebuild()

    def earliest(self) -> float | None:
        """The earliest deadline of every key, or None when there is none."""
        self._discard_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        """Remove and return every key whose deadline is at or before `now`, earliest
        first (keys with equal deadlines in the order they were set)."""
        due: list[str] = []
        while True:
            self._discard_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._current[key]
            due.append(key)

    def _discard_stale(self) -> None:
        heap = self._heap
        current = self._current
        while heap and current.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def _rebuild(self) -> None:
        current = self._current
        # One live entry per key; a key set back and forth to the same deadline has
        # several, and the earliest set (smallest sequence) keeps its place.
        live: dict[str, tuple[float, int, str]] = {}
        for entry in self._heap:
            key = entry[2]
            if current.get(key) == entry[0]:
                kept = live.get(key)
                if kept is None or entry[1] < kept[1]:
                    live[key] = entry
        self._heap = list(live.values())
        heapq.heapify(self._heap)
