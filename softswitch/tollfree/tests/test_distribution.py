"""Smooth weighted round-robin distribution: exact ratios, skipping, strict mode, state."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.tollfree import (
    Distributor,
    NoDestinationReason,
    SmoothWeightedRotation,
    is_failover_status,
)

from .factories import destination_set, tollfree


def _first_choices(
    distributor: Distributor, weights: list[int], calls: int, excluded: frozenset[str] = frozenset()
) -> list[str]:
    entry = tollfree(sets=[destination_set(weights)])
    chosen: list[str] = []
    for _ in range(calls):
        plan = distributor.plan(entry, entry.destination_sets["default"], excluded=excluded)
        chosen.append(plan.candidates[0].number)
    return chosen


def _number(index: int) -> str:
    return destination_set([0] * (index + 1)).destinations[index].number


def _assert_exact_windows(chosen: list[str], weights: list[int]) -> None:
    window = sum(weights)
    for start in range(len(chosen) - window + 1):
        counts = Counter(chosen[start : start + window])
        for index, weight in enumerate(weights):
            assert counts[_number(index)] == weight, (start, counts)


def test_three_to_one_over_400_calls() -> None:
    chosen = _first_choices(Distributor(), [3, 1], 400)
    assert Counter(chosen) == {_number(0): 300, _number(1): 100}
    _assert_exact_windows(chosen, [3, 1])


def test_five_three_two_exact_in_every_window_of_ten() -> None:
    chosen = _first_choices(Distributor(), [5, 3, 2], 200)
    _assert_exact_windows(chosen, [5, 3, 2])
    letters = "".join("ABC"[[_number(0), _number(1), _number(2)].index(c)] for c in chosen[:10])
    assert letters == "ABCAABACBA"  # nginx's smooth interleaving (PEERS.md §1.4)


def test_weight_zero_is_never_chosen_not_even_as_failover() -> None:
    distributor = Distributor()
    entry = tollfree(sets=[destination_set([2, 0, 1])])
    for _ in range(30):
        plan = distributor.plan(entry, entry.destination_sets["default"])
        assert _number(1) not in [candidate.number for candidate in plan.candidates]
    chosen = _first_choices(Distributor(), [2, 0, 1], 30)
    assert Counter(chosen) == {_number(0): 20, _number(2): 10}


def test_all_zero_weights_give_no_destination() -> None:
    entry = tollfree(sets=[destination_set([0, 0])])
    plan = Distributor().plan(entry, entry.destination_sets["default"])
    assert plan.candidates == ()
    assert plan.no_destination_reason is NoDestinationReason.NO_WEIGHT


def test_skipping_a_capped_destination_renormalises_exactly() -> None:
    distributor = Distributor()
    weights = [3, 3, 4]
    # 30:30:40 with the third at its cap splits 50:50, exactly in every window of 6.
    _first_choices(distributor, weights, 7)  # the main rotation is mid-cycle
    capped = frozenset({_number(2)})
    chosen = _first_choices(distributor, weights, 60, excluded=capped)
    assert Counter(chosen) == {_number(0): 30, _number(1): 30}
    _assert_exact_windows(chosen, [3, 3])


def test_the_main_rotation_resumes_after_an_outage() -> None:
    weights = [5, 3, 2]
    undisturbed = _first_choices(Distributor(), weights, 20)
    distributor = Distributor()
    before = _first_choices(distributor, weights, 7)
    _first_choices(distributor, weights, 5, excluded=frozenset({_number(0)}))
    after = _first_choices(distributor, weights, 13)
    assert before + after == undisturbed


def test_failover_order_lists_every_available_destination_once() -> None:
    distributor = Distributor()
    entry = tollfree(sets=[destination_set([5, 3, 2])])
    for _ in range(20):
        plan = distributor.plan(
            entry, entry.destination_sets["default"], excluded=frozenset({_number(1)})
        )
        numbers = [candidate.number for candidate in plan.candidates]
        assert sorted(numbers) == [_number(0), _number(2)]


def test_failover_order_follows_the_rotation() -> None:
    rotation = SmoothWeightedRotation([5, 3, 2])
    chosen = rotation.choose()
    assert chosen == 0
    # After A: current weights 0, 3, 2 -> next scores B 6, C 4.
    assert rotation.order_after(chosen) == [1, 2]


def test_everything_excluded_is_busy() -> None:
    entry = tollfree(sets=[destination_set([1, 1])])
    plan = Distributor().plan(
        entry, entry.destination_sets["default"], excluded=frozenset({_number(0), _number(1)})
    )
    assert plan.candidates == ()
    assert plan.no_destination_reason is NoDestinationReason.ALL_UNAVAILABLE


def test_strict_mode_has_no_failover_and_keeps_the_ratio() -> None:
    distributor = Distributor()
    entry = tollfree(sets=[destination_set([3, 1])], strict=True)
    busy = 0
    chosen: list[str] = []
    for _ in range(40):
        plan = distributor.plan(
            entry, entry.destination_sets["default"], excluded=frozenset({_number(1)})
        )
        assert len(plan.candidates) <= 1
        if plan.candidates:
            chosen.append(plan.candidates[0].number)
        else:
            busy += 1
            assert plan.no_destination_reason is NoDestinationReason.STRICT_CHOICE_UNAVAILABLE
    # The capped destination's turns are refused, not given to the other one.
    assert busy == 10
    assert chosen == [_number(0)] * 30


def test_state_survives_an_equal_snapshot_and_resets_on_a_weight_change() -> None:
    distributor = Distributor()
    first = _first_choices(distributor, [3, 1], 2)
    # A new snapshot with the same set: the rotation continues.
    entry = tollfree(sets=[destination_set([3, 1])])
    distributor.retain([entry])
    rest = _first_choices(distributor, [3, 1], 6)
    assert first + rest == _first_choices(Distributor(), [3, 1], 8)
    _first_choices(distributor, [3, 1], 1)
    assert distributor.current_weights(entry.number, "default") != (0, 0)
    # New weights: the rotation restarts and is exact from the next call.
    changed = _first_choices(distributor, [1, 1], 10)
    _assert_exact_windows(changed, [1, 1])
    assert changed[0] == _number(0)


def test_retain_drops_numbers_that_are_gone() -> None:
    distributor = Distributor()
    _first_choices(distributor, [3, 1], 1)
    distributor.retain([])
    assert distributor.current_weights("0120000111", "default") is None


def test_each_destination_set_keeps_its_own_rotation() -> None:
    distributor = Distributor()
    day = destination_set([1, 1], name="default")
    night = destination_set([1, 1, 1], name="night")
    entry = tollfree(sets=[day, night])
    picks = [distributor.plan(entry, day).candidates[0].number]
    distributor.plan(entry, night)
    picks.append(distributor.plan(entry, day).candidates[0].number)
    assert picks == [_number(0), _number(1)]


def test_failover_statuses() -> None:
    assert is_failover_status(None)
    assert is_failover_status(408)
    assert is_failover_status(503)
    assert not is_failover_status(486)
    assert not is_failover_status(404)
    assert not is_failover_status(603)


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=5).filter(
        lambda weights: sum(weights) > 0
    ),
    cycles=st.integers(min_value=1, max_value=4),
)
def test_property_every_window_is_exact(weights: list[int], cycles: int) -> None:
    chosen = _first_choices(Distributor(), weights, sum(weights) * (cycles + 1))
    _assert_exact_windows(chosen, weights)


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=32), min_size=2, max_size=32).filter(
        lambda weights: sum(weights) > 0
    ),
    warm_up=st.integers(min_value=0, max_value=50),
    data=st.data(),
)
def test_property_remaining_destinations_keep_an_exact_ratio(
    weights: list[int], warm_up: int, data: st.DataObject
) -> None:
    distributor = Distributor()
    _first_choices(distributor, weights, warm_up)
    excluded_positions = data.draw(
        st.sets(st.integers(min_value=0, max_value=len(weights) - 1), max_size=len(weights) - 1)
    )
    remaining = [w if i not in excluded_positions else 0 for i, w in enumerate(weights)]
    if sum(remaining) == 0:
        return
    excluded = frozenset(_number(index) for index in excluded_positions)
    chosen = _first_choices(distributor, weights, sum(remaining) * 3, excluded=excluded)
    _assert_exact_windows(chosen, remaining)
