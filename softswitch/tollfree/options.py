"""Option contracts (オプション機能契約内容): what a toll-free number's contract switches on.

Pure: a view of a `TollFreeEntry` with only the contracted features in force, no I/O.

Rules (`contracted_view()`; option names are `cloudpbx.rules.TOLLFREE_OPTIONS`):
- The stored settings are kept whatever the contract (an operator may provision them
  before the option is sold, a customer may prepare them); the switch routes on what
  the contract pays for, so a setting without its option has no effect on calls.
- `distribution` (着信振分接続機能): ratio distribution over a set's destinations.
  Without it a set has one destination, its first one with a weight above 0, with
  weight 1; the others are neither dialled nor tried on failover.
- `destination_change` (受付先変更機能): schedules that select another destination
  set. Without it those schedules are ignored and the `default` set is in force.
- `after_hours` (時間外案内機能): after-hours schedules. Without it they are ignored and
  calls are routed as at any other time.
- `area_designation` (発信地域指定機能): the designated areas and the phone-type
  toggles. Without it the number takes calls from the whole country and every phone
  type; 050 and international callers still never connect (`check_area` rule 1: the
  carrier's network refuses them, whatever is contracted).
- `statistics` is enforced by the statistics API, not here: calls are recorded
  whatever the contract, so a statistics contract taken later covers past calls.
- A number whose contract holds every routing option gets `entry` itself back (the
  common case costs one set comparison).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from cloudpbx.domain import ScheduleAction
from cloudpbx.snapshot import DestinationSetEntry, TollFreeEntry

__all__ = ["ROUTING_OPTIONS", "contracted_view"]

ROUTING_OPTIONS = frozenset(
    {"distribution", "destination_change", "after_hours", "area_designation"}
)
"""The options that change how calls are routed (module rules)."""


def _single_destination(destination_set: DestinationSetEntry) -> DestinationSetEntry:
    """Module rules, `distribution`: the first destination with a weight, weight 1."""
    for destination in destination_set.destinations:
        if destination.weight > 0:
            return dataclasses.replace(
                destination_set, destinations=(dataclasses.replace(destination, weight=1),)
            )
    return dataclasses.replace(destination_set, destinations=())


def contracted_view(entry: TollFreeEntry) -> TollFreeEntry:
    """`entry` with only its contracted routing features in force (module rules)."""
    options = entry.options
    if ROUTING_OPTIONS <= options:
        return entry
    changes: dict[str, object] = {}
    if "distribution" not in options:
        changes["destination_sets"] = MappingProxyType(
            {name: _single_destination(each) for name, each in entry.destination_sets.items()}
        )
    ignored_actions = set()
    if "destination_change" not in options:
        ignored_actions.add(ScheduleAction.DESTINATION_CHANGE)
    if "after_hours" not in options:
        ignored_actions.add(ScheduleAction.AFTER_HOURS)
    if ignored_actions:
        changes["schedules"] = tuple(
            schedule for schedule in entry.schedules if schedule.action not in ignored_actions
        )
    if "area_designation" not in options:
        changes.update(
            designated_whole_country=True, allow_fixed=True, allow_mobile=True, allow_withheld=True
        )
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]
