"""The toll-free service's decisions (issue 5), pure: no I/O, no asyncio, no clock.

The B2BUA drives one toll-free INVITE through these, in this order (PRODUCT.md Part A;
NTT's feature interaction: after-hours before everything, forwarded legs do not
re-enter the options):

1. `parse_caller(identity, privacy_requested=...)` then `check_area(entry, caller,
   asserted_area_code=..., asserted_prefecture=...)`: refuse when not
   `AreaDecision.connect` (category `out_of_area`, `entry.refusal_action`).
2. `decide(entry, now)`: when `after_hours`, play `announcement` (category
   `after_hours`); else use `destination_set_name`.
3. `ChannelCounter.acquire(entry.number, tollfree_channel_limit(entry))`: None is busy.
4. `Distributor.plan(entry, destination_set, excluded=saturated_destinations(...) |
   failed)`: try `candidates` in order, holding a trunk channel for each attempt, moving
   on while `is_failover_status(status)`; no candidate is busy.
5. Release every `ChannelToken` on every path that ends the call (release is idempotent).

Which check runs first between 1 and 2 is the B2BUA's choice; PRODUCT.md counts a call
in one category only, and NTT plays the after-hours guidance before any area check.

Modules: `caller` (number parsing and typing), `areas` (generated prefix table),
`designation` (area check), `schedule`, `distribution`, `channels`;
`generate_areas` is the build tool that writes `areas.py`.
"""

from .caller import (
    SHOW_PREFIX,
    WITHHOLD_PREFIX,
    CallerKind,
    CallerNumber,
    charging_area_of_number,
    parse_caller,
    prefecture_of_area_code,
    split_presentation_prefix,
)
from .channels import (
    ChannelCounter,
    ChannelToken,
    saturated_destinations,
    tollfree_channel_limit,
)
from .designation import AreaDecision, AreaReason, check_area
from .distribution import (
    DistributionPlan,
    Distributor,
    NoDestinationReason,
    SmoothWeightedRotation,
    is_failover_status,
)
from .schedule import ScheduleDecision, decide, is_public_holiday

__all__ = [
    "SHOW_PREFIX",
    "WITHHOLD_PREFIX",
    "AreaDecision",
    "AreaReason",
    "CallerKind",
    "CallerNumber",
    "ChannelCounter",
    "ChannelToken",
    "DistributionPlan",
    "Distributor",
    "NoDestinationReason",
    "ScheduleDecision",
    "SmoothWeightedRotation",
    "charging_area_of_number",
    "check_area",
    "decide",
    "is_failover_status",
    "is_public_holiday",
    "parse_caller",
    "prefecture_of_area_code",
    "saturated_destinations",
    "split_presentation_prefix",
    "tollfree_channel_limit",
]
