"""Distribution by ratio (着信振分接続機能): which destination takes the next call.

Pure: no I/O, no clock, no randomness. The state is the rotation position per toll-free
number, held by a `Distributor` the switch keeps across snapshot swaps.

Rules:
- The algorithm is smooth weighted round-robin as nginx implements it
  (`ngx_http_upstream_get_peer`, ngx_http_upstream_round_robin.c): every candidate's
  current weight grows by its weight, the largest current weight wins (ties: the
  destination stored first), and the winner's current weight drops by the sum of the
  weights. Over every run of sum-of-weights consecutive calls each destination is
  chosen exactly `weight` times (the state returns to all zeros after each cycle, so
  the sequence is periodic), and choices interleave as evenly as integers allow
  (5:3:2 -> A B C A A B A C B A; PEERS.md §1.4).
- Weight 0 never takes a call, not even as failover (NTT: "ratio 0 = never connected").
- State is kept per (toll-free number, destination set name): a schedule switching to
  another set and back resumes each set's rotation where it stopped. The state survives
  snapshot swaps while the set's destinations and weights are unchanged (compared by
  value, in stored order); any change of numbers, weights or order restarts the set's
  rotation from all zeros, so the new ratio is exact from the next call on.
- Unavailable destinations (`excluded`: at their channel cap, or failed with 5xx, 408
  or no answer from the transport) are skipped and the others' weights renormalised for
  that call: the rotation runs over the remaining destinations only. Each distinct set
  of remaining destinations keeps a rotation of its own (the full set included), so the
  ratio is exact within every run of calls that see the same destinations, and a short
  outage does not disturb the main rotation's position (30:30:40 with the third down
  splits 50:50, not 70:30; kamailio PR 219, PEERS.md §2). At most
  `MAX_PARTIAL_ROTATIONS` partial rotations are kept per set (least recently used go).
- Failover order: the chosen destination first, then the other remaining destinations
  in the order the rotation would choose them next (largest current weight plus
  weight first, ties by stored order). Only the first choice advances the rotation: a
  failover attempt is not a new call.
- Strict distribution (`TollFreeEntry.strict_distribution`): no failover and no
  skipping. The full rotation chooses as if every destination were available, so the
  ratio stays exact; when the chosen one is excluded the call gets no destination
  (`NoDestinationReason.STRICT_CHOICE_UNAVAILABLE`: refuse it as busy).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from cloudpbx.snapshot import DestinationEntry, DestinationSetEntry, TollFreeEntry

__all__ = [
    "MAX_PARTIAL_ROTATIONS",
    "DistributionPlan",
    "Distributor",
    "NoDestinationReason",
    "SmoothWeightedRotation",
    "is_failover_status",
]

MAX_PARTIAL_ROTATIONS = 16
"""Rotations over a subset of a destination set kept per set (least recently used go)."""


def is_failover_status(status: int | None) -> bool:
    """True when a destination's answer lets the call try the next destination.

    Args:
        status: the final response status of the uac_leg INVITE; None when the
            destination could not be reached at all (transport error, RFC 3261 §8.1.3.1,
            or Timer B, which the core reports as 408, RFC 3261 §17.1.1.2).

    5xx (the destination's server failed, RFC 3261 §21.5) and 408 fail over; a 4xx other
    than 408 and a 6xx are the callee's answer and end the call (§21.6: 6xx is global).
    """
    return status is None or status == 408 or 500 <= status <= 599


class SmoothWeightedRotation:
    """nginx's smooth weighted round-robin over a fixed list of weights.

    Positions index the weights list. Only positive weights are ever chosen.
    """

    __slots__ = ("_current", "_weights")

    def __init__(self, weights: Sequence[int]) -> None:
        if any(weight < 0 for weight in weights):
            raise ValueError("weights must be 0 or more")
        self._weights = tuple(weights)
        self._current = [0] * len(self._weights)

    @property
    def weights(self) -> tuple[int, ...]:
        """The weights, in position order."""
        return self._weights

    @property
    def current_weights(self) -> tuple[int, ...]:
        """The current weights (all zero at the start of every cycle)."""
        return tuple(self._current)

    def choose(self, eligible: Collection[int] | None = None) -> int | None:
        """Advance the rotation and return the chosen position.

        Args:
            eligible: the positions that may be chosen; None: all. The rotation runs
                over the eligible positions only (the others keep their current
                weight untouched).

        Returns:
            The position, or None when no eligible position has a positive weight.
        """
        positions = [
            position
            for position, weight in enumerate(self._weights)
            if weight > 0 and (eligible is None or position in eligible)
        ]
        if not positions:
            return None
        total = 0
        best = positions[0]
        for position in positions:
            self._current[position] += self._weights[position]
            total += self._weights[position]
            if self._current[position] > self._current[best]:
                best = position
        self._current[best] -= total
        return best

    def order_after(self, chosen: int, eligible: Collection[int] | None = None) -> list[int]:
        """The eligible positions other than `chosen`, in the order the rotation would
        choose them next (largest current weight plus weight first, ties by position).
        Does not advance the rotation."""
        others = [
            position
            for position, weight in enumerate(self._weights)
            if weight > 0 and position != chosen and (eligible is None or position in eligible)
        ]
        return sorted(
            others, key=lambda position: -(self._current[position] + self._weights[position])
        )


class NoDestinationReason(enum.StrEnum):
    """Why a plan has no candidate: the call is refused as busy (話中)."""

    ALL_UNAVAILABLE = "all_unavailable"
    """Every destination with a positive weight is excluded."""
    STRICT_CHOICE_UNAVAILABLE = "strict_choice_unavailable"
    """Strict distribution chose a destination that is excluded."""
    NO_WEIGHT = "no_weight"
    """The set has no destination with a positive weight (provisioning refuses this)."""


@dataclass(frozen=True, slots=True)
class DistributionPlan:
    """The destinations to try for one call, in failover order."""

    destination_set_name: str
    candidates: tuple[DestinationEntry, ...]
    """First the rotation's choice, then the failover order; one at most when strict;
    empty when no destination can take the call."""
    strict: bool
    no_destination_reason: NoDestinationReason | None = None
    """Why `candidates` is empty; None when it is not."""


_Signature = tuple[tuple[str, int], ...]


class _SetState:
    """The rotations of one destination set of one toll-free number."""

    __slots__ = ("full", "partial", "signature")

    def __init__(self, signature: _Signature) -> None:
        self.signature = signature
        self.full = SmoothWeightedRotation([weight for _number, weight in signature])
        self.partial: OrderedDict[frozenset[int], SmoothWeightedRotation] = OrderedDict()

    def rotation_for(self, eligible: frozenset[int]) -> SmoothWeightedRotation:
        rotation = self.partial.get(eligible)
        if rotation is None:
            rotation = SmoothWeightedRotation(self.full.weights)
            self.partial[eligible] = rotation
            while len(self.partial) > MAX_PARTIAL_ROTATIONS:
                self.partial.popitem(last=False)
        else:
            self.partial.move_to_end(eligible)
        return rotation


class Distributor:
    """Rotation state of every toll-free number; keep one per switch process.

    Call `plan()` once per call (after the schedule chose the destination set and the
    channel limit admitted the call); try `candidates` in order while the attempts fail
    with `is_failover_status()`. Call `retain()` after each snapshot swap to drop the
    state of numbers and sets that no longer exist.
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _SetState] = {}

    def plan(
        self,
        entry: TollFreeEntry,
        destination_set: DestinationSetEntry,
        *,
        excluded: Collection[str] = frozenset(),
    ) -> DistributionPlan:
        """Choose the destinations for the next call to `entry` (see the module rules).

        Args:
            entry: the toll-free number (its `number` keys the state; its
                `strict_distribution` selects strict mode).
            destination_set: the set in force (`ScheduleDecision.destination_set_name`
                looked up in `entry.destination_sets`).
            excluded: numbers of destinations that cannot take the call now.

        Returns:
            The plan; its `candidates` are empty when the call is to be refused as busy.
        """
        state = self._state(entry.number, destination_set)
        destinations = destination_set.destinations
        name = destination_set.name
        strict = entry.strict_distribution
        if not any(destination.weight > 0 for destination in destinations):
            return DistributionPlan(name, (), strict, NoDestinationReason.NO_WEIGHT)
        available = frozenset(
            position
            for position, destination in enumerate(destinations)
            if destination.weight > 0 and destination.number not in excluded
        )
        if strict:
            chosen = state.full.choose()
            if chosen is None or chosen not in available:
                return DistributionPlan(
                    name, (), strict, NoDestinationReason.STRICT_CHOICE_UNAVAILABLE
                )
            return DistributionPlan(name, (destinations[chosen],), strict)
        if not available:
            return DistributionPlan(name, (), strict, NoDestinationReason.ALL_UNAVAILABLE)
        everyone = len(available) == sum(1 for d in destinations if d.weight > 0)
        rotation = state.full if everyone else state.rotation_for(available)
        chosen = rotation.choose(available)
        if chosen is None:  # not reached: `available` holds positive weights only
            return DistributionPlan(name, (), strict, NoDestinationReason.ALL_UNAVAILABLE)
        order = [chosen, *rotation.order_after(chosen, available)]
        return DistributionPlan(name, tuple(destinations[p] for p in order), strict)

    def retain(self, entries: Iterable[TollFreeEntry]) -> None:
        """Forget the state of numbers and sets not in `entries` (the new snapshot's
        toll-free numbers), and of sets whose destinations or weights changed."""
        keep: dict[tuple[str, str], _SetState] = {}
        for entry in entries:
            for name, destination_set in entry.destination_sets.items():
                key = (entry.number, name)
                state = self._states.get(key)
                if state is not None and state.signature == _signature(destination_set):
                    keep[key] = state
        self._states = keep

    def current_weights(self, number: str, destination_set_name: str) -> tuple[int, ...] | None:
        """The full rotation's current weights of a set (for diagnostics), or None."""
        state = self._states.get((number, destination_set_name))
        return state.full.current_weights if state is not None else None

    def _state(self, number: str, destination_set: DestinationSetEntry) -> _SetState:
        key = (number, destination_set.name)
        signature = _signature(destination_set)
        state = self._states.get(key)
        if state is None or state.signature != signature:
            state = _SetState(signature)
            self._states[key] = state
        return state


def _signature(destination_set: DestinationSetEntry) -> _Signature:
    return tuple(
        (destination.number, destination.weight) for destination in destination_set.destinations
    )
