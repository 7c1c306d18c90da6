"""The registrar in the running switch: the pure `Registrar` plus its clock, timer and store.

Rules:
- The registrar's clock is the WALL clock (`time.time`, seconds since the epoch),
  because bindings are persisted and outlive the process (see `bindings`); the SIP core
  keeps `loop.time()`. `handle_register` ignores the loop time the element passes.
- Start-up (`start`): the persisted bindings are loaded through the `BindingStore` and
  handed to `Registrar.load_bindings` before any REGISTER is handled; the duplicates
  and lapsed ones it reports are deleted from the store.
- Binding changes are written behind: `handle_register` answers at once and queues the
  changes; one writer task hands everything queued so far to the store as one batch,
  then the next, so the store sees changes in order and at most one batch is in flight.
  A failed batch is logged as one line and counted (`store_batches_failed`), never
  retried: the phone's next refresh writes the binding again.
- Expiry (RFC 3261 §10.2.1): one loop timer is armed for `Registrar.next_expiry()`;
  when it fires, `expire(now)` runs and its REMOVED changes are queued like any other.
  A timer that fires a little early runs at its deadline (as the transport driver
  does), so it never spins.
- `close` cancels the timer and waits for the queued writes (shutdown loses nothing
  that was answered 200).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from softswitch.sip.flows import Flow
from softswitch.sip.message import Request, Response
from softswitch.transport.driver import describe_exception

from .bindings import BindingChange, BindingStore
from .registrar import Registrar

__all__ = ["RegistrarService"]

logger = logging.getLogger("softswitch.registrar")


class RegistrarService:
    """Runs a `Registrar` on the event loop (see the module rules).

    Implements the element's `RegisterHandler` hook.
    """

    def __init__(
        self,
        registrar: Registrar,
        store: BindingStore,
        clock: Callable[[], float],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.registrar = registrar
        self.counters: Counter[str] = Counter()
        self._store = store
        self._clock = clock
        self._loop = loop
        self._pending: list[BindingChange] = []
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None

    async def start(self) -> None:
        """Load the persisted bindings into the registrar and arm the expiry timer."""
        bindings = await self._store.load_bindings()
        removed = self.registrar.load_bindings(bindings, self._clock())
        self.counters["bindings_loaded"] += len(bindings) - len(removed)
        self._queue(removed)
        self._arm_timer()

    def handle_register(self, request: Request, flow: Flow, now: float) -> Response:
        """The registrar's answer to a REGISTER (the element's hook); `now` is the
        loop's clock and is not used: the registrar runs on the wall clock."""
        result = self.registrar.handle_register(request, flow, self._clock())
        if result.changes:
            self._queue(result.changes)
            self._arm_timer()
        return result.response

    async def close(self) -> None:
        """Stop the timer and wait until every queued change reached the store."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._writer is not None and not self._writer.done():
            await self._writer

    # --- write-behind ---------------------------------------------------------------------
    def _queue(self, changes: Iterable[BindingChange]) -> None:
        self._pending.extend(changes)
        if self._pending and (self._writer is None or self._writer.done()):
            self._writer = self._loop.create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._store.apply_changes(batch)
            except Exception as error:  # one line, and the writer never dies
                self.counters["store_batches_failed"] += 1
                logger.error(
                    "lost %d binding changes: %s", len(batch), describe_exception(error)
                )
            else:
                self.counters["store_batches"] += 1
                self.counters["store_changes"] += len(batch)

    # --- expiry ---------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        deadline = self.registrar.next_expiry()
        if deadline is None:
            return
        if self._timer is not None and self._timer_deadline is not None:
            if self._timer_deadline <= deadline:
                return  # already armed early enough; it re-arms when it fires
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = self._loop.call_later(
            max(0.0, deadline - self._clock()), self._expire
        )

    def _expire(self) -> None:
        deadline = self._timer_deadline
        self._timer = None
        self._timer_deadline = None
        now = self._clock()
        if deadline is not None:
            now = max(now, deadline)
        changes = self.registrar.expire(now)
        self._queue(changes)
        self._arm_timer()
