"""Registration bindings: values, changes, the in-memory table and the persistence port.

Rules:
- A binding maps an address-of-record (user, domain) to one contact URI (RFC 3261
  §10.2, §10.3). Within an address-of-record a contact is identified by its URI compared
  as RFC 3261 §19.1.4 says (`SipUri.__eq__`); its other Contact parameters are data.
- A binding is a frozen value. Every change to the table is reported as a
  `BindingChange` (ADDED, REFRESHED, REMOVED with a reason) so that an adapter can
  persist it asynchronously through a `BindingStore`; the table itself does no I/O.
- Times are absolute values on the caller's clock (`now`). Bindings that are persisted
  must use a clock that survives restarts (the wall clock), not `loop.time()`.
- A binding is live while `now < expires_at`. `expire(now)` removes the others and
  `next_expiry()` is the earliest deadline (a heap with lazy deletion: refreshes leave
  stale entries that are skipped, and the heap is rebuilt when they outnumber the
  live ones, so memory stays proportional to the number of bindings).
- `lookup(aor, now)` orders live bindings by q, highest first (an absent q ranks as
  1.0, the top of RFC 3261 §20.10's range), then most recently updated first: the
  order a B2BUA tries them in (RFC 3261 §16.6 step 1 forks by q too).
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from softswitch.sip.flows import Flow
from softswitch.sip.uri import Uri

__all__ = [
    "AddressOfRecord",
    "Binding",
    "BindingChange",
    "BindingStore",
    "BindingTable",
    "ChangeKind",
    "RemovalReason",
]

# RFC 3261 §20.10: q ranges 0..1; a contact without q ranks with the highest.
_DEFAULT_Q = 1.0


@dataclass(frozen=True, slots=True, order=True)
class AddressOfRecord:
    """`sip:user@domain` (RFC 3261 §10.1). `domain` is lower-case; `user` is
    case-sensitive (§19.1.4)."""

    domain: str
    user: str

    def __str__(self) -> str:
        return f"sip:{self.user}@{self.domain}"


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact registered for an address-of-record.

    Attributes:
        address_of_record: whose binding this is.
        contact_uri: the Contact URI; the key of the binding within its AOR.
        q: the Contact `q` parameter (RFC 3261 §20.10), None when absent.
        contact_parameters: the other Contact header parameters as received (without
            `expires` and `q`), e.g. `+sip.instance`, echoed in the 200 (§10.3 step 8).
        expires_at: absolute time the binding lapses, on the registrar's clock.
        call_id: Call-ID of the REGISTER that last wrote it (§10.3 step 7).
        cseq: CSeq number of that REGISTER (§10.3 step 7).
        flow: where that REGISTER came from (transport, received address and port,
            connection): requests for a phone behind NAT go back on this flow, not to
            the private address in the Contact (RFC 5626 §5.3 uses the same idea).
        registered_at: when the binding was first added.
        updated_at: when it was last added or refreshed; the tie-break of `lookup`.
        user_agent: the User-Agent header of that REGISTER, for operators.
    """

    address_of_record: AddressOfRecord
    contact_uri: Uri
    q: float | None
    contact_parameters: tuple[tuple[str, str | None], ...]
    expires_at: float
    call_id: str
    cseq: int
    flow: Flow
    registered_at: float
    updated_at: float
    user_agent: str | None = None

    def remaining(self, now: float) -> float:
        """Seconds until `expires_at` (negative once lapsed)."""
        return self.expires_at - now

    def is_live(self, now: float) -> bool:
        return now < self.expires_at

    @property
    def priority(self) -> float:
        """q for ordering: an absent q ranks as 1.0."""
        return _DEFAULT_Q if self.q is None else self.q


class ChangeKind(enum.Enum):
    """What happened to a binding."""

    ADDED = "added"
    """A contact not bound before (§10.3 step 7 "If the binding does not exist")."""
    REFRESHED = "refreshed"
    """An existing contact rewritten: new expiry, Call-ID, CSeq, flow or parameters."""
    REMOVED = "removed"
    """The binding is gone; see `RemovalReason`."""


class RemovalReason(enum.Enum):
    UNREGISTERED = "unregistered"
    """Expires 0 for this contact, or `Contact: *` (§10.2.2)."""
    EXPIRED = "expired"
    """Its expiry time passed without a refresh (§10.2.1)."""
    REPLACED = "replaced"
    """Dropped while loading because a later persisted binding has the same key."""


@dataclass(frozen=True, slots=True)
class BindingChange:
    """One change for the persistence adapter, in the order it happened.

    Attributes:
        kind: ADDED, REFRESHED or REMOVED.
        binding: the binding as it now is (for REMOVED: as it was).
        reason: why it was removed; None unless `kind` is REMOVED.
    """

    kind: ChangeKind
    binding: Binding
    reason: RemovalReason | None = None


class BindingStore(Protocol):
    """Persistence port, implemented by an adapter over the database (not in this package).

    The registrar never calls it: it returns `BindingChange`s and the adapter applies
    them in order, in the background; at start-up the adapter loads the persisted
    bindings and hands them to `Registrar.load_bindings()`. A lost write costs at most
    one registration interval: the phone re-registers.
    """

    async def load_bindings(self) -> Sequence[Binding]:
        """Every persisted binding (expired ones are dropped by the registrar)."""
        ...

    async def apply_changes(self, changes: Sequence[BindingChange]) -> None:
        """Persist changes: ADDED / REFRESHED upsert by (AOR, contact URI), REMOVED
        deletes."""
        ...


class BindingTable:
    """All bindings, by address-of-record; pure data structure, no policy.

    The registrar computes the new binding list of one AOR and installs it with
    `replace()` in one step, which is what makes a REGISTER all-or-nothing (§10.3
    step 8).
    """

    __slots__ = ("_by_aor", "_heap", "_sequence", "_count")

    def __init__(self) -> None:
        self._by_aor: dict[AddressOfRecord, list[Binding]] = {}
        # (expires_at, sequence, aor): the AOR holds a binding lapsing then, or held one.
        self._heap: list[tuple[float, int, AddressOfRecord]] = []
        self._sequence = itertools.count()
        self._count = 0

    def __len__(self) -> int:
        """Number of bindings (live or not yet expired by `expire()`)."""
        return self._count

    def __iter__(self) -> Iterator[Binding]:
        for bindings in self._by_aor.values():
            yield from bindings

    def address_count(self) -> int:
        return len(self._by_aor)

    def get(self, aor: AddressOfRecord) -> list[Binding]:
        """The stored bindings of `aor`, live or not (a copy)."""
        return list(self._by_aor.get(aor, ()))

    def replace(self, aor: AddressOfRecord, bindings: Iterable[Binding]) -> None:
        """Install `bindings` as the whole binding set of `aor` (empty removes it)."""
        new = list(bindings)
        old = self._by_aor.pop(aor, [])
        self._count -= len(old)
        if new:
            self._by_aor[aor] = new
            self._count += len(new)
            old_deadlines = {binding.expires_at for binding in old}
            for binding in new:
                if binding.expires_at not in old_deadlines:
                    self._push(binding.expires_at, aor)
        self._compact()

    def lookup(self, aor: AddressOfRecord, now: float) -> list[Binding]:
        """Live bindings of `aor`, highest q first, then most recently updated first."""
        live = [binding for binding in self._by_aor.get(aor, ()) if binding.is_live(now)]
        live.sort(key=lambda binding: (-binding.priority, -binding.updated_at))
        return live

    def expire(self, now: float) -> list[BindingChange]:
        """Remove every binding with `expires_at <= now`; return them as REMOVED/EXPIRED."""
        changes: list[BindingChange] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, aor = heapq.heappop(heap)
            bindings = self._by_aor.get(aor)
            if not bindings:
                continue  # a stale entry: the AOR was emptied since
            kept = [binding for binding in bindings if binding.is_live(now)]
            if len(kept) == len(bindings):
                continue  # a stale entry: refreshed since
            changes.extend(
                BindingChange(ChangeKind.REMOVED, binding, RemovalReason.EXPIRED)
                for binding in bindings
                if not binding.is_live(now)
            )
            self._count -= len(bindings) - len(kept)
            if kept:
                self._by_aor[aor] = kept
            else:
                del self._by_aor[aor]
        return changes

    def next_expiry(self) -> float | None:
        """The earliest `expires_at` of any binding, or None when there is none."""
        heap = self._heap
        while heap:
            deadline, _, aor = heap[0]
            bindings = self._by_aor.get(aor, ())
            if any(binding.expires_at == deadline for binding in bindings):
                return deadline
            heapq.heappop(heap)  # stale entry
        return None

    def _push(self, deadline: float, aor: AddressOfRecord) -> None:
        heapq.heappush(self._heap, (deadline, next(self._sequence), aor))

    def _compact(self) -> None:
        # Refreshes leave stale heap entries; rebuild once they dominate so the heap
        # stays O(number of bindings).
        if len(self._heap) <= 2 * self._count + 64:
            return
        self._heap = [
            (binding.expires_at, next(self._sequence), aor)
            for aor, bindings in self._by_aor.items()
            for binding in bindings
        ]
        heapq.heapify(self._heap)

    def heap_size(self) -> int:
        """Entries in the expiry heap, live and stale (exposed for the memory-bound test)."""
        return len(self._heap)
