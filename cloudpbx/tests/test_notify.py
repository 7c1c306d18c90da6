"""Change notification (`cloudpbx.notify`) and the coalescing snapshot reloader
(`cloudpbx.reload`), each on a real event loop; no database (the build is a function the
test controls)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from cloudpbx.notify import ACCOUNTS, CONFIG, TOPICS_NOT_IN_SNAPSHOT, ChangeNotifier
from cloudpbx.reload import SnapshotReloader


def test_publish_from_a_worker_thread_runs_the_callbacks_on_the_loop_in_order() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        notifier = ChangeNotifier()
        received: list[tuple[str, int]] = []
        done = asyncio.Event()

        def on_change(topic: str) -> None:
            received.append((topic, threading.get_ident()))
            if len(received) == 3:
                done.set()

        notifier.subscribe(on_change, loop)
        assert len(notifier) == 1

        def writer() -> None:  # as the API's endpoints do, on a worker thread
            for topic in (ACCOUNTS, CONFIG, ACCOUNTS):
                notifier.publish(topic)

        await asyncio.to_thread(writer)
        await asyncio.wait_for(done.wait(), 5)
        assert [topic for topic, _ in received] == [ACCOUNTS, CONFIG, ACCOUNTS]
        assert {thread for _, thread in received} == {threading.get_ident()}

    asyncio.run(scenario())


def test_unsubscribed_and_closed_loop_subscribers_get_nothing_and_publish_never_raises() -> None:
    notifier = ChangeNotifier()
    closed_loop = asyncio.new_event_loop()
    closed_loop.close()
    notifier.subscribe(lambda topic: None, closed_loop)
    notifier.publish(CONFIG)  # the closed loop's subscriber is dropped, no error
    assert len(notifier) == 0

    loop = asyncio.new_event_loop()
    try:
        received: list[str] = []
        subscription = notifier.subscribe(received.append, loop)
        notifier.unsubscribe(subscription)
        notifier.publish(CONFIG)
        loop.run_until_complete(asyncio.sleep(0))
        assert received == []
    finally:
        loop.close()


def test_a_topic_must_be_a_short_name() -> None:
    with pytest.raises(ValueError):
        ChangeNotifier().publish("config/extensions")


def test_accounts_are_not_in_the_snapshot() -> None:
    assert ACCOUNTS in TOPICS_NOT_IN_SNAPSHOT and CONFIG not in TOPICS_NOT_IN_SNAPSHOT


def test_notifications_during_a_rebuild_cause_exactly_one_more() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        release = threading.Event()
        build_threads: list[int] = []
        installed: list[int] = []

        def build() -> int:
            build_threads.append(threading.get_ident())
            release.wait(5)
            return len(build_threads)

        reloader = SnapshotReloader(build, installed.append, loop)
        reloader.notify(CONFIG)
        await asyncio.sleep(0.05)  # the first rebuild is running, blocked in build()
        for _ in range(10):
            reloader.notify(CONFIG)
        release.set()
        await asyncio.wait_for(reloader.wait_idle(), 5)
        assert installed == [1, 2]
        assert threading.get_ident() not in build_threads  # rule: never on the loop
        assert reloader.counters["snapshot_reloads"] == 2
        assert reloader.counters["reload_notifications"] == 11
        assert reloader.counters["reload_notifications_coalesced"] == 10
        assert reloader.last_reload_seconds is not None
        await reloader.close()

    asyncio.run(scenario())


def test_a_failed_rebuild_keeps_the_configuration_and_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        installed: list[str] = []
        outcomes: list[str | Exception] = [
            RuntimeError("database is locked\nmore detail"),
            "second",
        ]

        def build() -> str:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        reloader = SnapshotReloader(build, installed.append, loop)
        reloader.notify(CONFIG)
        await asyncio.wait_for(reloader.wait_idle(), 5)
        assert installed == [] and reloader.counters["reload_failures"] == 1
        reloader.notify(CONFIG)  # the next notification tries again
        await asyncio.wait_for(reloader.wait_idle(), 5)
        assert installed == ["second"] and reloader.counters["snapshot_reloads"] == 1
        await reloader.close()

    with caplog.at_level(logging.INFO, logger="cloudpbx.reload"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].getMessage() == (
        "config snapshot: rebuild failed, keeping the one in force: "
        "RuntimeError: database is locked"
    )
    assert failures[0].exc_info is None


def test_ignored_topics_and_a_closed_reloader_rebuild_nothing() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        reloader = SnapshotReloader(
            lambda: 1, installed.append, loop, ignored_topics=TOPICS_NOT_IN_SNAPSHOT
        )
        reloader.notify(ACCOUNTS)
        assert not reloader.running
        assert reloader.counters["reload_notifications_ignored"] == 1
        await reloader.close()
        reloader.notify(CONFIG)
        assert not reloader.running and installed == []

    asyncio.run(scenario())
