"""Overload control for new INVITEs: a pure gate, no I/O, no clock (issue 6 item 7).

Rules:
- Sans-I/O (STYLE.md principles 1, 2): every input has an explicit `now`. The asyncio
  adapter (`softswitch.loop_lag`) reports every 50 ms `report_loop_lag(seconds, now)`
  (how late the event loop ran a timer) and `report_receive_queue(fill, now)` (how full
  the SIP UDP socket's receive buffer is, 0..1); `check(invites_in_progress, now)` is
  asked by the call service for each new INVITE, with the number of INVITEs it holds
  that have no final answer yet (`CallService.invites_in_progress`).
- Only new INVITEs (no To tag) are ever gated. ACK, BYE, CANCEL, re-INVITE and every
  other in-dialog request never come here: refusing them would leave dialogs and
  transactions open longer, which makes the overload worse (RFC 6357's advice: reject
  new work, finish the work already accepted).
- Two reasons to refuse, checked in this order:
  1. `invites_in_progress >= max_invites_in_progress`: a hard bound, no hysteresis
     (the count moves by one per admission and per answer, without noise: admitting up
     to the bound exactly is what is wanted). It bounds the memory and work held for
     calls still being set up, which grows with setup latency (Little's law).
  2. Congestion: each signal is divided by its bound (`max_loop_lag`,
     `max_receive_fill`) and the larger share, from the latest report of each, is the
     load level; the receive-buffer share counts only when two reports in a row
     reached it (a burst the loop drains before the next sample is not overload) or
     the buffer is full (or the kernel dropped datagrams). Congestion starts when the
     level reaches 1 and ends only once every report
     for `recovery_seconds` kept it below `resume_fraction` (hysteresis: one quiet
     sample between two stalls does not reopen the doors). Why two signals: uvloop
     reads a batch of datagrams per loop iteration and runs the timers between
     batches, so a switch that cannot keep up (its CPU taken by other processes, or a
     flood) shows tens of milliseconds of lag while its socket buffer fills and the
     kernel drops datagrams (measured with the flood benchmark); a full buffer is the
     queueing delay itself. A congestion no report refreshed for `stale_after`
     seconds is dropped at the next check (the adapter stopped reporting: fail open
     rather than refuse for ever).
- A refusal is answered by the caller of `check` with 503 Service Unavailable and
  `Retry-After: <retry_after>` (RFC 3261 §21.5.4, §20.33 delta-seconds). §21.5.4 says a
  client receiving it SHOULD NOT send any other request to us for that long, so the
  value is short (5 s): a long one turns every upstream proxy into an on/off switch
  that moves all its load elsewhere at once and back at once (the 503 oscillation RFC
  6357 describes). RFC 7339's loss-based feedback (the Via `oc` parameter asking the
  upstream to shed a percentage) is the better tool between cooperating servers; it is
  not implemented here, but the signals above are what it would be fed from.
- Counters (`counters`): `overload_refused.invites_in_progress`,
  `overload_refused.loop_lag`, `overload_refused.receive_queue` (one per refused INVITE,
  by the reason: for congestion, the signal that was the larger share when it was last
  reported), `overload_congestion_episodes` and `overload_congestion_recoveries`
  (transitions into and out of congestion). `congested`, `last_lag`, `peak_lag`,
  `last_receive_fill`, `peak_receive_fill` and `last_invites_in_progress` are plain
  attributes assigned whole (a scrape thread may read them).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_INVITES_IN_PROGRESS",
    "DEFAULT_MAX_LOOP_LAG",
    "DEFAULT_MAX_RECEIVE_FILL",
    "DEFAULT_OVERLOAD_RETRY_AFTER",
    "OverloadConfig",
    "OverloadGate",
    "OverloadReason",
    "OverloadRefusal",
]

DEFAULT_MAX_INVITES_IN_PROGRESS = 2000
"""INVITEs without a final answer the switch holds at most: at the 1,000 calls/s issue 3
targets, two seconds of setups (a healthy setup takes milliseconds)."""
DEFAULT_MAX_LOOP_LAG = 0.2
"""Seconds of event-loop lag that mean overload: a loop this late delays every
retransmission timer past T1's 500 ms margin soon after (RFC 3261 §17.1.1.2)."""
DEFAULT_MAX_RECEIVE_FILL = 0.5
"""Share of the SIP socket's receive buffer in use that means overload: half of the
1 MiB buffer (`softswitch.transport.udp`) is hundreds of datagrams waiting."""
DEFAULT_OVERLOAD_RETRY_AFTER = 5
"""Retry-After delta-seconds of an overload 503 (module rules: kept short)."""


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    """The gate's bounds (module rules). Invalid values raise `ValueError`."""

    max_invites_in_progress: int = DEFAULT_MAX_INVITES_IN_PROGRESS
    """New INVITEs are refused while this many have no final answer yet."""
    max_loop_lag: float = DEFAULT_MAX_LOOP_LAG
    """Seconds: a reported lag at or above this starts congestion."""
    max_receive_fill: float = DEFAULT_MAX_RECEIVE_FILL
    """Share of the receive buffer in use at or above which congestion starts."""
    resume_fraction: float = 0.5
    """Congestion ends with every signal below this share of its bound ..."""
    recovery_seconds: float = 1.0
    """... once every report for this many seconds was below it. Measured with the
    flood benchmark (1,500 INVITEs/s for 10 s against a switch clean at 500 calls/s,
    with a receive-buffer rule of one sample, not two): 2 s admitted 2,616 calls,
    0.5 s 3,763, both with no failed call, no drop and no retransmission; the shorter,
    the more the switch oscillates (9 congestion episodes in 10 s at 0.5 s)."""
    stale_after: float = 5.0
    """Seconds without a report after which congestion is dropped (fail open)."""
    retry_after: int = DEFAULT_OVERLOAD_RETRY_AFTER
    """Retry-After delta-seconds of the 503 (RFC 3261 §20.33)."""

    def __post_init__(self) -> None:
        if self.max_invites_in_progress < 1:
            raise ValueError("max_invites_in_progress must be at least 1")
        if not self.max_loop_lag > 0:
            raise ValueError("max_loop_lag must be positive")
        if not 0 < self.max_receive_fill <= 1:
            raise ValueError("max_receive_fill must be in (0, 1]")
        if not 0 < self.resume_fraction <= 1:
            raise ValueError("resume_fraction must be in (0, 1]")
        if self.recovery_seconds < 0:
            raise ValueError("recovery_seconds must not be negative")
        if not self.stale_after > 0:
            raise ValueError("stale_after must be positive")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative (RFC 3261 §20.33)")

    @property
    def resume_loop_lag(self) -> float:
        """Seconds of lag below which the loop counts as recovered."""
        return self.max_loop_lag * self.resume_fraction


class OverloadReason(enum.Enum):
    """Why a new INVITE was refused."""

    INVITES_IN_PROGRESS = "invites_in_progress"
    LOOP_LAG = "loop_lag"
    RECEIVE_QUEUE = "receive_queue"


@dataclass(frozen=True, slots=True)
class OverloadRefusal:
    """Answer the INVITE 503 with `Retry-After: retry_after` (RFC 3261 §21.5.4)."""

    reason: OverloadReason
    retry_after: int


class OverloadGate:
    """Decides whether a new INVITE is admitted (see the module rules)."""

    def __init__(self, config: OverloadConfig | None = None) -> None:
        self.config = config if config is not None else OverloadConfig()
        self.counters: Counter[str] = Counter()
        self.congested = False
        """True while new INVITEs are refused for congestion (lag or receive queue)."""
        self.last_lag = 0.0
        """The lag last reported, seconds."""
        self.peak_lag = 0.0
        """The highest lag reported since start, seconds."""
        self.last_receive_fill = 0.0
        """The receive-buffer share last reported."""
        self.peak_receive_fill = 0.0
        """The highest receive-buffer share reported since start."""
        self.last_invites_in_progress = 0
        """The count the last `check` was given."""
        self._lag_level = 0.0
        self._fill_level = 0.0
        self._previous_fill = 0.0
        self._cause = OverloadReason.LOOP_LAG
        self._last_report: float | None = None
        self._calm_since: float | None = None
        """While congested: when the current run of reports below the resume level began."""

    # ================================================================ inputs
    def report_loop_lag(self, seconds: float, now: float) -> None:
        """The event loop ran a timer `seconds` late, measured at `now`."""
        lag = max(0.0, seconds)
        self.last_lag = lag
        if lag > self.peak_lag:
            self.peak_lag = lag
        self._lag_level = lag / self.config.max_loop_lag
        self._update(now)

    def report_receive_queue(self, fill: float, now: float) -> None:
        """The SIP socket's receive buffer was `fill` (0..1) full at `now`."""
        fill = min(1.0, max(0.0, fill))
        self.last_receive_fill = fill
        if fill > self.peak_receive_fill:
            self.peak_receive_fill = fill
        # Module rules, 2: a burst drained before the next sample is not overload; a
        # full buffer (or drops, which the adapter reports as full) is, at once.
        sustained = fill if fill >= 1.0 else min(fill, self._previous_fill)
        self._previous_fill = fill
        self._fill_level = sustained / self.config.max_receive_fill
        self._update(now)

    def check(self, invites_in_progress: int, now: float) -> OverloadRefusal | None:
        """Admit a new INVITE (None), or the refusal to answer it with (module rules).

        Args:
            invites_in_progress: INVITEs held without a final answer, this one excluded.
        """
        self.last_invites_in_progress = invites_in_progress
        config = self.config
        if invites_in_progress >= config.max_invites_in_progress:
            self.counters["overload_refused.invites_in_progress"] += 1
            return OverloadRefusal(OverloadReason.INVITES_IN_PROGRESS, config.retry_after)
        if self.congested:
            if self._last_report is not None and now - self._last_report >= config.stale_after:
                self._recover()  # module rules: no reports any more, fail open
                return None
            self.counters[f"overload_refused.{self._cause.value}"] += 1
            return OverloadRefusal(self._cause, config.retry_after)
        return None

    # ================================================================ internals
    def _update(self, now: float) -> None:
        """Module rules, 2: the congestion state after a report at `now`."""
        self._last_report = now
        level = max(self._lag_level, self._fill_level)
        if level >= 1.0:
            if not self.congested:
                self.congested = True
                self.counters["overload_congestion_episodes"] += 1
            self._cause = (
                OverloadReason.LOOP_LAG
                if self._lag_level >= self._fill_level
                else OverloadReason.RECEIVE_QUEUE
            )
            self._calm_since = None
            return
        if not self.congested:
            return
        if level >= self.config.resume_fraction:
            self._calm_since = None  # hysteresis: between the thresholds, stay congested
            return
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= self.config.recovery_seconds:
            self._recover()

    def _recover(self) -> None:
        self.congested = False
        self._calm_since = None
        self.counters["overload_congestion_recoveries"] += 1
