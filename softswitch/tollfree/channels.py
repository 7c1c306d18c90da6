"""Channel limits (ch数): concurrent calls per toll-free number and per trunk.

Pure: counters in memory, no I/O, no clock. One `ChannelCounter` per kind of key
(toll-free numbers, trunks), kept by the switch across snapshot swaps.

Rules:
- A call holds one channel of its toll-free number from admission to its end, and one
  channel of the trunk towards the destination while an attempt (then the answered
  call) uses it. The limit of a toll-free number is its channel setting, never more
  than the contract (`tollfree_channel_limit`); the limit of a trunk is
  `TrunkEntry.capacity` (None: no limit).
- `acquire()` at the limit returns None: the call is refused as busy (話中, PRODUCT.md
  Part A 2); nothing is counted for it.
- Counts never leak: every successful `acquire()` returns a `ChannelToken` whose
  `release()` gives the channel back exactly once, however often it is called (a call
  that ends twice, a leg that vanishes and is cleaned up again). Keep the token with the
  call and release it from every path that ends the call.
- `reset()` forgets every count (a test or a resynchronisation); tokens issued before it
  belong to the old generation and their release changes nothing, so they never drive a
  count below what the new generation holds.
- A limit lowered below the calls in progress refuses new calls until enough end; the
  calls in progress are never cut.
"""

from __future__ import annotations

from collections.abc import Mapping

from cloudpbx.snapshot import DestinationSetEntry, TollFreeEntry, TrunkEntry

__all__ = [
    "ChannelCounter",
    "ChannelToken",
    "saturated_destinations",
    "tollfree_channel_limit",
]


def tollfree_channel_limit(entry: TollFreeEntry) -> int:
    """Concurrent calls `entry` admits: its channel setting, capped by the contract."""
    return max(0, min(entry.channel_setting, entry.contracted_channels))


class ChannelToken:
    """One held channel. `release()` it when the call (or the attempt) ends."""

    __slots__ = ("_counter", "_generation", "_released", "key")

    def __init__(self, counter: ChannelCounter, key: str, generation: int) -> None:
        self.key = key
        """What the channel is counted against (a toll-free number, a trunk name)."""
        self._counter = counter
        self._generation = generation
        self._released = False

    @property
    def released(self) -> bool:
        """True once `release()` was called."""
        return self._released

    def release(self) -> bool:
        """Give the channel back.

        Returns:
            True the first time (the count went down, unless a `reset()` came in
            between); False on every later call, which changes nothing.
        """
        if self._released:
            return False
        self._released = True
        self._counter._give_back(self.key, self._generation)
        return True

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"ChannelToken({self.key!r}, {state})"


class ChannelCounter:
    """Concurrent channels in use, per key."""

    __slots__ = ("_counts", "_generation")

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._generation = 0

    def acquire(self, key: str, limit: int | None) -> ChannelToken | None:
        """Take a channel of `key` if fewer than `limit` are in use.

        Args:
            key: a toll-free number or a trunk name.
            limit: the most concurrent channels of `key`; None: no limit (counted all
                the same).

        Returns:
            The token to release when the call ends, or None at the limit.
        """
        in_use = self._counts.get(key, 0)
        if limit is not None and in_use >= limit:
            return None
        self._counts[key] = in_use + 1
        return ChannelToken(self, key, self._generation)

    def in_use(self, key: str) -> int:
        """Channels of `key` held now."""
        return self._counts.get(key, 0)

    def at_limit(self, key: str, limit: int | None) -> bool:
        """True when `acquire(key, limit)` would be refused."""
        return limit is not None and self.in_use(key) >= limit

    def total(self) -> int:
        """Channels held over all keys."""
        return sum(self._counts.values())

    def reset(self) -> None:
        """Forget every count; tokens issued so far no longer count (see module rules)."""
        self._counts.clear()
        self._generation += 1

    def _give_back(self, key: str, generation: int) -> None:
        if generation != self._generation:
            return
        remaining = self._counts.get(key, 0) - 1
        if remaining > 0:
            self._counts[key] = remaining
        else:
            self._counts.pop(key, None)


def saturated_destinations(
    destination_set: DestinationSetEntry,
    trunks: Mapping[str, TrunkEntry],
    trunk_channels: ChannelCounter,
) -> frozenset[str]:
    """Numbers of the destinations whose trunk is at its capacity (or unknown to
    `trunks`, the snapshot's trunks by name): pass them as `excluded` to
    `Distributor.plan()`."""
    saturated: set[str] = set()
    for destination in destination_set.destinations:
        trunk = trunks.get(destination.trunk_name)
        if trunk is None or trunk_channels.at_limit(trunk.name, trunk.capacity):
            saturated.add(destination.number)
    return frozenset(saturated)
