"""Overload control for new INVITEs: a pure gate, no I/O, no clock (issue 6 item 7).

Rules:
- Sans-I/O (STYLE.md principles 1, 2): every input has an explicit `now`. The asyncio
  adapter (`softswitch.loop_lag`) reports every 50 ms `report_loop_lag(seconds, now)`
  (how late the event loop ran a timer) and `report_receive_queue(fill, now)` (how full
  the SIP UDP socket's receive buffer is, 0..1); `check(invites_in_progress, now,
  draw)` is asked by the call service for each new INVITE, with the number of INVITEs
  it holds that have no final answer yet (`CallService.invites_in_progress`) and the
  INVITE's draw: a number in [0, 1) the service derives from the request by a keyed
  hash of its Call-ID, uniform over requests and the same for each retransmission.
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
     the buffer is full (or the kernel dropped datagrams). While congested, a share
     `refusal_fraction` of the new INVITEs is refused, not all of them (loss-based
     shedding, the RFC 7339 §5.5.1 algorithm applied at our own door): every report
     at level 1 or more raises it, by the time since the previous report over
     `rise_seconds` (0 to 1 in that time) and at least by `minimum_step`; every report
     below `resume_fraction` of the bounds lowers it, by the time since the previous
     report over `recovery_seconds`; a report in between keeps it (hysteresis). It
     settles where the admitted INVITEs are what the switch can take: at the edge of
     capacity a few percent, under a 3x flood about two thirds; refusing everything
     for a second at each stall (an on/off gate) throws away calls the switch could
     have served. An INVITE is refused when its draw is below the fraction: RFC
     7339 §5.5.1's random draw, made a function of the request so that a
     retransmission of a refused INVITE is refused again (the refusal is stateless,
     `SipEndpoint.new_invite_gate`: no transaction remembers it) and one of an
     admitted INVITE is not refused while the fraction holds. Congestion ends when
     the fraction is back to 0. Why two signals: uvloop
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
- `congested` is True while the fraction is above 0. Counters (`counters`):
  `overload_refused.invites_in_progress`,
  `overload_refused.loop_lag`, `overload_refused.receive_queue` (one per refused INVITE,
  by the reason: for congestion, the signal that was the larger share when it was last
  reported), `overload_congestion_episodes` and `overload_congestion_recoveries`
  (transitions into and out of congestion). `congested`, `last_lag`, `peak_lag`,
  `last_receive_fill`, `peak_receive_fill`, `refusal_fraction` and
  `last_invites_in_progress` are plain attributes assigned whole (a scrape thread may
  read them).
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
2 MiB buffer (`softswitch.transport.udp`) is hundreds of datagrams waiting."""
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
    """Reports with every signal below this share of its bound lower the refused share."""
    rise_seconds: float = 0.5
    """Seconds of reports at or above the bounds that take the refused share from 0 to 1."""
    minimum_step: float = 0.05
    """The least a report at or above the bounds raises the refused share by."""
    recovery_seconds: float = 1.0
    """Seconds of calm reports that take the refused share from 1 back to 0."""
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
        if not self.rise_seconds > 0:
            raise ValueError("rise_seconds must be positive")
        if not 0 < self.minimum_step <= 1:
            raise ValueError("minimum_step must be in (0, 1]")
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
        self.refusal_fraction = 0.0
        """The share of new INVITEs refused for congestion (module rules, 2)."""
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

    @property
    def congested(self) -> bool:
        """True while some new INVITEs are refused for congestion (lag or receive queue)."""
        return self.refusal_fraction > 0.0

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

    def check(
        self, invites_in_progress: int, now: float, draw: float
    ) -> OverloadRefusal | None:
        """Admit a new INVITE (None), or the refusal to answer it with (module rules).

        Args:
            invites_in_progress: INVITEs held without a final answer, this one excluded.
            draw: the INVITE's number in [0, 1) (module rules: the same for every
                retransmission); refused while congested when below the fraction.
        """
        self.last_invites_in_progress = invites_in_progress
        config = self.config
        if invites_in_progress >= config.max_invites_in_progress:
            self.counters["overload_refused.invites_in_progress"] += 1
            return OverloadRefusal(OverloadReason.INVITES_IN_PROGRESS, config.retry_after)
        if self.refusal_fraction > 0.0:
            if self._last_report is not None and now - self._last_report >= config.stale_after:
                self._recover()  # module rules: no reports any more, fail open
                return None
            if draw < self.refusal_fraction:
                self.counters[f"overload_refused.{self._cause.value}"] += 1
                return OverloadRefusal(self._cause, config.retry_after)
        return None

    # ================================================================ internals
    def _update(self, now: float) -> None:
        """Module rules, 2: the refused share after a report at `now`."""
        config = self.config
        elapsed = 0.0 if self._last_report is None else max(0.0, now - self._last_report)
        self._last_report = now
        level = max(self._lag_level, self._fill_level)
        if level >= 1.0:
            if self.refusal_fraction == 0.0:
                self.counters["overload_congestion_episodes"] += 1
            step = max(elapsed / config.rise_seconds, config.minimum_step)
            self.refusal_fraction = min(1.0, self.refusal_fraction + step)
            self._cause = (
                OverloadReason.LOOP_LAG
                if self._lag_level >= self._fill_level
                else OverloadReason.RECEIVE_QUEUE
            )
            return
        if self.refusal_fraction == 0.0 or level >= config.resume_fraction:
            return  # hysteresis: between the thresholds the share is kept
        if config.recovery_seconds == 0.0:
            self._recover()
            return
        self.refusal_fraction = max(0.0, self.refusal_fraction - elapsed / config.recovery_seconds)
        if self.refusal_fraction == 0.0:
            self._recover()

    def _recover(self) -> None:
        self.refusal_fraction = 0.0
        self.counters["overload_congestion_recoveries"] += 1
