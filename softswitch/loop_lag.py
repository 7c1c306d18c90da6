"""The load sampler of `softswitch run`: the asyncio side of overload control.

Rules:
- Every `interval` (50 ms) one `loop.call_at` callback measures how late the loop ran
  it (`loop.time()` minus the time it was due: the time the loop spent on everything
  else, which every SIP timer and datagram waits behind too) and reports it with the
  loop's `now` (`report_loop_lag`); with a `ReceiveQueueGauge` it also reports how full
  the SIP UDP socket's receive buffer is (`report_receive_queue`). The reports go to
  the overload gate (`softswitch.b2bua.overload`, which says why both). The next
  sample is due `interval` after this one ran, so a long stall gives one large sample,
  not a burst of catching-up ones.
- A chain of callbacks, not a task: one timer handle, no coroutine frame per sample
  (the same shape as the call timer in `softswitch.__main__`). An error in a report is
  logged once per kind and the sampling goes on: the sampler must not die quietly, or
  the gate would keep the last state (it fails open after `stale_after` anyway).
- `ReceiveQueueGauge` reads the socket's memory with one `getsockopt(SO_MEMINFO)`
  (Linux): the bytes queued for reading (with their kernel overhead) over the receive
  buffer's size. Datagrams the kernel dropped since the last read (the buffer was full
  in between) read as a full buffer. Where the option is missing it reads None once
  and is off from then on (the lag alone feeds the gate).
- `close()` cancels the pending callback; nothing else is held.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["DEFAULT_LAG_INTERVAL", "LoadReports", "LoopLagSampler", "ReceiveQueueGauge"]

logger = logging.getLogger("softswitch.overload")

DEFAULT_LAG_INTERVAL = 0.05
"""Seconds between two samples."""
SO_MEMINFO = 55
"""Linux <asm-generic/socket.h>; not in Python's `socket` module."""
_MEMINFO = struct.Struct("9I")
"""SK_MEMINFO_RMEM_ALLOC, _RCVBUF, _WMEM_ALLOC, _SNDBUF, _FWD_ALLOC, _WMEM_QUEUED,
_OPTMEM, _BACKLOG, _DROPS (<linux/sock_diag.h>)."""


class LoadReports(Protocol):
    """Where the samples go (`OverloadGate`)."""

    def report_loop_lag(self, seconds: float, now: float) -> None: ...

    def report_receive_queue(self, fill: float, now: float) -> None: ...


class ReceiveQueueGauge:
    """How full a socket's receive buffer is, 0..1 (module rules)."""

    def __init__(self, sock: Any) -> None:
        self._socket = sock
        self._drops: int | None = None
        self.enabled = sock is not None

    def read(self) -> float | None:
        """The share of the receive buffer in use (1.0 after drops), or None when off."""
        if not self.enabled:
            return None
        try:
            data = self._socket.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
            values: tuple[int, ...] = _MEMINFO.unpack(data)
        except (OSError, struct.error, AttributeError):
            self.enabled = False
            return None
        queued, size, drops = values[0], values[1], values[8]
        dropped = self._drops is not None and drops > self._drops
        self._drops = drops
        if dropped or size <= 0:
            return 1.0
        return min(1.0, queued / size)


class LoopLagSampler:
    """Measures the loop's lag (and the receive queue) every `interval` s (module rules)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        reports: LoadReports,
        interval: float = DEFAULT_LAG_INTERVAL,
        receive_queue: ReceiveQueueGauge | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError("interval must be positive")
        self._loop = loop
        self._reports = reports
        self._interval = interval
        self._receive_queue = receive_queue
        self._due: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._failed: set[str] = set()
        self.samples = 0
        """Samples taken since start."""

    def start(self) -> None:
        """Take the first sample `interval` s from now, and every `interval` s after."""
        if self._handle is None:
            self._arm(self._loop.time())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, now: float) -> None:
        self._due = now + self._interval
        self._handle = self._loop.call_at(self._due, self._sample)

    def _sample(self) -> None:
        now = self._loop.time()
        due = self._due if self._due is not None else now
        self.samples += 1
        self._guarded(lambda: self._reports.report_loop_lag(max(0.0, now - due), now))
        if self._receive_queue is not None:
            fill = self._receive_queue.read()
            if fill is not None:
                self._guarded(lambda: self._reports.report_receive_queue(fill, now))
        self._arm(now)

    def _guarded(self, report: Callable[[], None]) -> None:
        try:
            report()
        except Exception as error:  # module rules: logged once per kind, sampling goes on
            kind = type(error).__name__
            if kind not in self._failed:
                self._failed.add(kind)
                logger.error("overload report failed: %s: %s", kind, error)
