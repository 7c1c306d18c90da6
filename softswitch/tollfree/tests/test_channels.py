"""Channel counting: limits, busy refusal, no leaks."""

from __future__ import annotations

from types import MappingProxyType

from cloudpbx.domain import Transport
from cloudpbx.snapshot import TrunkEntry
from softswitch.tollfree import ChannelCounter, saturated_destinations, tollfree_channel_limit

from .factories import destination_set, tollfree


def test_the_call_over_the_limit_is_refused() -> None:
    counter = ChannelCounter()
    entry = tollfree(contracted_channels=3, channel_setting=2)
    limit = tollfree_channel_limit(entry)
    assert limit == 2
    first = counter.acquire(entry.number, limit)
    second = counter.acquire(entry.number, limit)
    assert first is not None and second is not None
    assert counter.acquire(entry.number, limit) is None
    assert counter.in_use(entry.number) == 2
    first.release()
    assert counter.acquire(entry.number, limit) is not None


def test_the_setting_never_exceeds_the_contract() -> None:
    assert tollfree_channel_limit(tollfree(contracted_channels=2, channel_setting=5)) == 2
    assert tollfree_channel_limit(tollfree(contracted_channels=2, channel_setting=0)) == 0
    counter = ChannelCounter()
    assert counter.acquire("0120000111", 0) is None
    assert counter.in_use("0120000111") == 0


def test_double_release_releases_once() -> None:
    counter = ChannelCounter()
    tokens = [counter.acquire("0120000111", 5) for _ in range(3)]
    assert all(token is not None for token in tokens)
    token = tokens[0]
    assert token is not None
    assert token.release() is True
    assert token.release() is False
    assert token.released
    assert counter.in_use("0120000111") == 2
    for other in tokens[1:]:
        assert other is not None
        other.release()
        other.release()
    assert counter.in_use("0120000111") == 0
    assert counter.total() == 0


def test_release_after_reset_does_not_touch_new_counts() -> None:
    counter = ChannelCounter()
    old = counter.acquire("trunk", 2)
    assert old is not None
    counter.reset()
    assert counter.in_use("trunk") == 0
    new = counter.acquire("trunk", 2)
    assert new is not None
    old.release()
    assert counter.in_use("trunk") == 1
    new.release()
    assert counter.in_use("trunk") == 0


def test_a_lowered_limit_refuses_until_calls_end() -> None:
    counter = ChannelCounter()
    tokens = [counter.acquire("n", 3) for _ in range(3)]
    assert counter.acquire("n", 1) is None
    for token in tokens[:2]:
        assert token is not None
        token.release()
    assert counter.acquire("n", 1) is None
    assert tokens[2] is not None
    tokens[2].release()
    assert counter.acquire("n", 1) is not None


def test_no_limit_still_counts() -> None:
    counter = ChannelCounter()
    tokens = [counter.acquire("trunk", None) for _ in range(100)]
    assert counter.in_use("trunk") == 100
    assert not counter.at_limit("trunk", None)
    for token in tokens:
        assert token is not None
        token.release()
    assert counter.in_use("trunk") == 0


def _trunk(name: str, capacity: int | None) -> TrunkEntry:
    return TrunkEntry(name, None, "192.0.2.1", 5060, Transport.UDP, (), capacity=capacity)


def test_destinations_behind_a_full_trunk_are_saturated() -> None:
    counter = ChannelCounter()
    trunks = MappingProxyType({"east": _trunk("east", 1), "west": _trunk("west", None)})
    east = destination_set([1], trunk_name="east").destinations
    west = destination_set([0, 1], trunk_name="west").destinations
    both = destination_set([1, 1])
    mixed = type(both)("default", (east[0], west[1]))
    assert saturated_destinations(mixed, trunks, counter) == frozenset()
    token = counter.acquire("east", trunks["east"].capacity)
    assert token is not None
    assert saturated_destinations(mixed, trunks, counter) == {east[0].number}
    token.release()
    assert saturated_destinations(mixed, trunks, counter) == frozenset()
    # A destination whose trunk is missing from the snapshot cannot be reached.
    assert saturated_destinations(both, trunks, counter) == {
        destination.number for destination in both.destinations
    }
