"""Prometheus exposition of the switch (`softswitch run --metrics HOST:PORT`).

Rules:
- Only this module imports `prometheus_client` (STYLE.md principle 15). The switch's
  parts keep their plain `collections.Counter` counters, as they did; nothing on the
  SIP path calls a metrics library. A custom collector (`SwitchCollector`) reads those
  counters when Prometheus scrapes, so between scrapes metrics cost nothing.
- `/metrics` is served by a small WSGI server on a thread of its own (`MetricsServer`),
  never on the SIP event loop: a slow or stuck scraper cannot delay a SIP message. Any
  other path is 404. The bind happens in `MetricsServer.start` (an address that cannot
  be bound raises `OSError` there, before serving).
- Scrapes run on that thread while the loop updates the counters, so the collector
  never iterates a live counter: it copies each with `dict(counter)` (one C-level step
  under the GIL: the loop cannot insert a key mid-copy) and reads only attributes the
  loop assigns whole (`InstalledSnapshot` keeps its snapshot and install time in one
  tuple). Counter keys become metrics as `softswitch_<subsystem>_<name>_total`; a key
  `base.value` (`requests.INVITE`, `responses.200`, `calls_ended.answered`,
  `dropped.<reason>`) becomes the family `softswitch_<subsystem>_<base>_total` with the
  label named in `_LABELS` (default `key`); a name that starts with the subsystem's
  drops that start (`calls_started` of `calls`: `softswitch_calls_started_total`).
  The names in a source's `always` are exposed from 0 on, so a rate works from the
  first scrape.
- Gauges computed from the snapshot in force come from `snapshot_collectors`: functions
  `(ConfigSnapshot) -> Iterable[Metric]` (add one with
  `SwitchCollector.add_snapshot_collector`, or to `DEFAULT_SNAPSHOT_COLLECTORS` for
  every switch). They run on the scrape thread over the immutable snapshot, once per
  installed snapshot (cached until the next install). One that raises is logged once per
  snapshot and counted (`softswitch_metrics_snapshot_collector_errors_total`); the rest
  of the scrape is served.
- Other families come from `collectors`: functions `() -> Iterable[Metric]` run at each
  scrape (e.g. `tollfree_call_collector`, over the live counter of
  `softswitch.tollfree_metrics.CountingSink`, copied once like every counter).
"""

from __future__ import annotations

import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from cloudpbx.snapshot import ConfigSnapshot

__all__ = [
    "DEFAULT_SNAPSHOT_COLLECTORS",
    "Collector",
    "CounterSource",
    "GaugeSource",
    "InstalledSnapshot",
    "MetricsServer",
    "SnapshotCollector",
    "SwitchCollector",
    "config_size_gauges",
    "tollfree_call_collector",
    "tollfree_gauges",
    "switch_registry",
]

logger = logging.getLogger("softswitch.metrics")

NAMESPACE = "softswitch"
SnapshotCollector = Callable[[ConfigSnapshot], Iterable[Metric]]
"""Gauges (or any metric) computed from the snapshot in force (module rules)."""
Collector = Callable[[], Iterable[Metric]]
"""Any metric, computed at each scrape (module rules)."""

_LABELS = {
    "requests": "method",
    "responses": "status",
    "rejected": "status",
    "calls_ended": "result",
    "calls_by_kind": "kind",  # issue 6: internal (flat-rate) or external call records
    "dropped": "reason",
    "overload_refused": "reason",
}
"""Label name of the counter keys `base.value`, by base."""
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_]")
_SERVER_STOP_TIMEOUT = 5.0


def _metric_name(*parts: str) -> str:
    return "_".join(_NOT_IN_NAME.sub("_", part) for part in (NAMESPACE, *parts) if part)


@dataclass(frozen=True, slots=True)
class CounterSource:
    """One part's counters, exposed as `softswitch_<subsystem>_*_total`."""

    subsystem: str
    counters: Mapping[str, int]
    """The live counter (never replaced by its owner); copied at each scrape."""
    always: tuple[str, ...] = ()
    """Keys exposed even while they are 0."""


@dataclass(frozen=True, slots=True)
class GaugeSource:
    """A gauge read at scrape time; `read` returning None leaves it out."""

    name: str
    """Full metric name."""
    documentation: str
    read: Callable[[], float | None]


class InstalledSnapshot:
    """The snapshot in force and when it was installed (unix seconds).

    The switch calls `installed(snapshot)` right after each install on the loop; the
    scrape thread reads `state` (one tuple, assigned whole).
    """

    def __init__(self, snapshot: ConfigSnapshot, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.state: tuple[ConfigSnapshot, float] = (snapshot, clock())

    def installed(self, snapshot: ConfigSnapshot) -> None:
        self.state = (snapshot, self._clock())


def config_size_gauges(snapshot: ConfigSnapshot) -> Iterator[Metric]:
    """How many tenants, extensions and trunks the snapshot in force holds."""
    yield GaugeMetricFamily(
        _metric_name("config_tenants"), "Tenants in the snapshot in force", len(snapshot.tenants)
    )
    yield GaugeMetricFamily(
        _metric_name("config_extensions"),
        "Extensions in the snapshot in force",
        len(snapshot.extensions),
    )
    yield GaugeMetricFamily(
        _metric_name("config_trunks"), "Trunks in the snapshot in force", len(snapshot.trunks)
    )


def tollfree_gauges(snapshot: ConfigSnapshot) -> Iterator[Metric]:
    """The distribution weights and channel settings in force, per toll-free number.

    A Grafana panel of these shows when a customer changed a ratio and that every switch
    applied it (issue 4 measures the propagation by reading them).
    """
    weights = GaugeMetricFamily(
        _metric_name("tollfree_destination_weight"),
        "Distribution weight of a destination of a toll-free number's destination set",
        labels=["tollfree_number", "destination_set", "destination"],
    )
    channels = GaugeMetricFamily(
        _metric_name("tollfree_channel_setting"),
        "Concurrent calls a toll-free number allows now (at most its contract)",
        labels=["tollfree_number"],
    )
    for number, entry in sorted(snapshot.tollfree_numbers.items()):
        channels.add_metric([number], entry.channel_setting)
        for set_name, destination_set in entry.destination_sets.items():
            for destination in destination_set.destinations:
                weights.add_metric([number, set_name, destination.number], destination.weight)
    yield weights
    yield channels


def tollfree_call_collector(calls: Mapping[tuple[str, str], int]) -> Collector:
    """`softswitch_tollfree_calls_total{tollfree_number,category}` from the live counter
    `calls` ((number, category) -> records; `CountingSink.calls`)."""

    def collect() -> Iterator[Metric]:
        family = CounterMetricFamily(
            _metric_name("tollfree_calls"),
            "Toll-free calls ended since start, by toll-free number and category",
            labels=["tollfree_number", "category"],
        )
        for (number, category), value in sorted(dict(calls).items()):  # one atomic copy
            family.add_metric([number, category], value)
        yield family

    return collect


DEFAULT_SNAPSHOT_COLLECTORS: tuple[SnapshotCollector, ...] = (config_size_gauges, tollfree_gauges)
"""Snapshot gauges every switch exposes (append new ones here)."""


class SwitchCollector:
    """The switch's metrics, read at scrape time (see the module rules)."""

    def __init__(
        self,
        counters: Sequence[CounterSource],
        gauges: Sequence[GaugeSource] = (),
        installed: InstalledSnapshot | None = None,
        snapshot_collectors: Sequence[SnapshotCollector] = DEFAULT_SNAPSHOT_COLLECTORS,
        collectors: Sequence[Collector] = (),
    ) -> None:
        self._counters = tuple(counters)
        self._collectors = tuple(collectors)
        self._gauges = tuple(gauges)
        self._installed = installed
        self._snapshot_collectors = list(snapshot_collectors)
        self._lock = threading.Lock()
        """Scrapes may run concurrently (one thread each): guards the cache below."""
        self._cache: tuple[ConfigSnapshot, list[Metric]] | None = None
        self.snapshot_collector_errors = 0

    def add_snapshot_collector(self, collector: SnapshotCollector) -> None:
        """Also expose what `collector` computes from each installed snapshot."""
        with self._lock:
            self._snapshot_collectors.append(collector)
            self._cache = None

    def describe(self) -> list[Metric]:
        """Nothing: the registry must not run a scrape when the collector is registered."""
        return []

    def collect(self) -> Iterator[Metric]:
        for source in self._counters:
            yield from _counter_families(source)
        for collector in self._collectors:
            yield from collector()
        for gauge in self._gauges:
            value = gauge.read()
            if value is not None:
                yield GaugeMetricFamily(gauge.name, gauge.documentation, value)
        if self._installed is not None:
            snapshot, installed_at = self._installed.state
            yield GaugeMetricFamily(
                _metric_name("config_snapshot_installed_timestamp_seconds"),
                "Unix time the configuration snapshot in force was installed",
                installed_at,
            )
            yield from self._snapshot_metrics(snapshot)
            yield CounterMetricFamily(
                _metric_name("metrics_snapshot_collector_errors"),
                "Snapshot collectors that raised (each counted once per snapshot)",
                self.snapshot_collector_errors,
            )

    def _snapshot_metrics(self, snapshot: ConfigSnapshot) -> list[Metric]:
        with self._lock:
            if self._cache is not None and self._cache[0] is snapshot:
                return self._cache[1]
            metrics: list[Metric] = []
            for collector in self._snapshot_collectors:
                try:
                    metrics.extend(collector(snapshot))
                except Exception as error:  # rule: one line, the scrape goes on
                    self.snapshot_collector_errors += 1
                    logger.error(
                        "metrics: snapshot collector %s failed: %s: %s",
                        getattr(collector, "__name__", collector),
                        type(error).__name__,
                        error,
                    )
            self._cache = (snapshot, metrics)
            return metrics


def _counter_families(source: CounterSource) -> Iterator[Metric]:
    values = dict.fromkeys(source.always, 0)
    values.update(dict(source.counters))  # rule: one atomic copy of the live counter
    groups: dict[str, list[tuple[str, int]]] = {}
    label_names: dict[str, str] = {}  # per base with `base.value` keys: its label name
    for key in sorted(values):
        base, dot, label_value = key.partition(".")
        if dot:
            label_names[base] = _LABELS.get(base, "key")
        groups.setdefault(base, []).append((label_value, values[key]))
    for base, samples in groups.items():
        # `calls_started` of the `calls` subsystem: softswitch_calls_started_total.
        short = base.removeprefix(f"{source.subsystem}_") or base
        name = _metric_name(source.subsystem, short)
        documentation = f"{source.subsystem} counter {base}"
        label = label_names.get(base)
        if label is not None:
            # A bare `base` key next to `base.x` keys is the sample with an empty label.
            family = CounterMetricFamily(name, documentation, labels=[label])
            for label_value, value in samples:
                family.add_metric([label_value], value)
        else:
            family = CounterMetricFamily(name, documentation, value=samples[0][1])
        yield family


def switch_registry(collector: SwitchCollector) -> CollectorRegistry:
    """A registry with the switch's collector and the process's CPU/memory/fds."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No access log on stderr for every scrape."""


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves our own name (getfqdn): a DNS lookup at start.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """`/metrics` over HTTP on a thread of its own (module rules)."""

    def __init__(self, server: _ThreadingServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-http", daemon=True
        )

    @classmethod
    def start(cls, host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
        """Bind `host:port` and serve `registry` at `/metrics`.

        Raises:
            OSError: the address cannot be bound.
        """
        exposition = make_wsgi_app(registry)

        def application(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: the metrics are at /metrics\n"]
            body: Iterable[bytes] = exposition(environ, start_response)
            return body

        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        server = make_server(
            host, port, application, server_class=server_class, handler_class=_QuietHandler
        )
        assert isinstance(server, _ThreadingServer)
        metrics_server = cls(server)
        metrics_server._thread.start()
        return metrics_server

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving (bounded); scrapes in progress finish on their daemon threads."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_SERVER_STOP_TIMEOUT)
