"""The switch's Prometheus collector and server (`softswitch.metrics`): counters read at
scrape time, snapshot gauges through the hook, and `/metrics` over a real loopback socket."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.metrics import (
    CounterSource,
    GaugeSource,
    InstalledSnapshot,
    MetricsServer,
    SwitchCollector,
    switch_registry,
)


def exposition(collector: SwitchCollector) -> str:
    return generate_latest(switch_registry(collector)).decode()


def test_counters_are_read_at_scrape_time_with_labels_and_zeros() -> None:
    element: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    collector = SwitchCollector(
        [
            CounterSource("element", element),
            CounterSource("calls", calls, always=("calls_started",)),
        ]
    )
    assert "softswitch_calls_started_total 0.0" in exposition(collector)
    element["requests.INVITE"] += 2
    element["responses.200"] += 1
    calls["calls_started"] += 1
    calls["calls_ended.answered"] += 1
    text = exposition(collector)
    assert 'softswitch_element_requests_total{method="INVITE"} 2.0' in text
    assert 'softswitch_element_responses_total{status="200"} 1.0' in text
    assert "softswitch_calls_started_total 1.0" in text
    assert 'softswitch_calls_ended_total{result="answered"} 1.0' in text


def test_gauges_the_install_time_and_snapshot_collectors() -> None:
    snapshot = ConfigSnapshot()
    installed = InstalledSnapshot(snapshot, clock=lambda: 1000.0)
    runs: list[ConfigSnapshot] = []

    def weights(current: ConfigSnapshot) -> Iterator[Metric]:
        runs.append(current)
        yield GaugeMetricFamily("softswitch_test_weight", "a snapshot gauge", 3)

    def broken(current: ConfigSnapshot) -> Iterator[Metric]:
        raise RuntimeError("bug")

    last: list[float | None] = [None]
    collector = SwitchCollector(
        [],
        [GaugeSource("softswitch_test_last", "left out while None", lambda: last[0])],
        installed,
    )
    collector.add_snapshot_collector(weights)
    collector.add_snapshot_collector(broken)
    text = exposition(collector)
    assert "softswitch_config_snapshot_installed_timestamp_seconds 1000.0" in text
    assert "softswitch_config_extensions 0.0" in text  # the default snapshot collector
    assert "softswitch_test_weight 3.0" in text
    assert "softswitch_test_last" not in text
    assert "softswitch_metrics_snapshot_collector_errors_total 1.0" in text
    last[0] = 0.25
    text = exposition(collector)
    assert "softswitch_test_last 0.25" in text
    assert len(runs) == 1  # computed once per installed snapshot
    assert "softswitch_metrics_snapshot_collector_errors_total 1.0" in text
    installed.installed(ConfigSnapshot())
    exposition(collector)
    assert len(runs) == 2


def test_the_server_serves_metrics_only_at_slash_metrics() -> None:
    element: Counter[str] = Counter({"requests.OPTIONS": 1})
    collector = SwitchCollector([CounterSource("element", element)])
    server = MetricsServer.start("127.0.0.1", 0, switch_registry(collector))
    try:
        host, port = server.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        assert 'softswitch_element_requests_total{method="OPTIONS"} 1.0' in text
        assert "process_cpu_seconds_total" in text
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=5)
        assert refused.value.code == 404
    finally:
        server.close()
