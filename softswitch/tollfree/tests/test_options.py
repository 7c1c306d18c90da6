"""Option contracts: `contracted_view` keeps only the contracted routing features."""

from __future__ import annotations

from cloudpbx.domain import ScheduleAction
from cloudpbx.snapshot import TollFreeEntry
from softswitch.tollfree.options import ROUTING_OPTIONS, contracted_view
from softswitch.tollfree.tests.factories import destination_set, schedule, tollfree, weekly

CHANGE = schedule(
    "change",
    ScheduleAction.DESTINATION_CHANGE,
    [weekly(0, "09:00", "18:00")],
    destination_set_name="night",
)
CLOSED = schedule("closed", ScheduleAction.AFTER_HOURS, [weekly(6, "00:00", "24:00")])


def numbered(options: tuple[str, ...]) -> TollFreeEntry:
    return tollfree(
        sets=[destination_set([0, 2, 1]), destination_set([1], name="night")],
        schedules=[CHANGE, CLOSED],
        whole_country=False,
        prefectures=["13"],
        allow_mobile=False,
        options=options,
    )


def test_a_full_contract_is_the_entry_itself() -> None:
    entry = numbered(tuple(ROUTING_OPTIONS))
    assert contracted_view(entry) is entry


def test_without_distribution_a_set_is_its_first_weighted_destination() -> None:
    view = contracted_view(numbered(("destination_change", "after_hours", "area_designation")))
    (only,) = view.destination_sets["default"].destinations
    assert (only.number, only.weight) == ("0312340001", 1)  # index 0 has weight 0
    assert [s.name for s in view.schedules] == ["change", "closed"]


def test_without_schedule_options_their_schedules_are_ignored() -> None:
    view = contracted_view(numbered(("distribution", "area_designation")))
    assert view.schedules == ()
    view = contracted_view(numbered(("distribution", "after_hours", "area_designation")))
    assert [s.name for s in view.schedules] == ["closed"]


def test_without_area_designation_the_whole_country_and_every_type_connect() -> None:
    view = contracted_view(numbered(("distribution",)))
    assert view.designated_whole_country
    assert view.allow_fixed and view.allow_mobile and view.allow_withheld
    assert [d.weight for d in view.destination_sets["default"].destinations] == [0, 2, 1]
