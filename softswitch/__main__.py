"""The `softswitch` command: wiring only, no SIP logic.

Rules:
- `softswitch run --sip HOST:PORT` listens on UDP and TCP on one address (`[::1]:5060`
  for IPv6), on a uvloop event loop, answers with `softswitch.element`, and runs until
  SIGTERM or SIGINT, then exits 0. With calls in progress, that first signal drains
  instead of stopping: new INVITEs get 503 with Retry-After (RFC 3261 §21.5.4,
  `softswitch.b2bua.service`), calls in progress and their in-dialog requests are
  served, and the switch stops once the last call ended or after `--drain-seconds`
  (default 30), whichever comes first. A second SIGTERM or SIGINT cuts the drain
  short; the signals stay handled until the loop is closed, and any signal after that
  ends the process by the default action: never a traceback. It logs one line when it
  is listening and one line of counters when it stops. Malformed input is logged by
  the transport driver as one warning line without a traceback, and counted; so is
  any error in our own code on the receive path (the loop's exception handler also
  logs one line, never a traceback).
- `softswitch run --sip HOST:PORT --config FILE.yaml | --data-dir DIR | --database URL`
  also runs the registrar (RFC 3261 §10.3) over the config store (default directory
  `data` when only --config is given). Before the event loop starts: the store is
  migrated to the newest schema, FILE.yaml is provisioned into it (idempotent), and the
  configuration snapshot is loaded once: no SQL runs on the request path. Then the
  persisted bindings are loaded; binding changes are written behind, on one worker
  thread (`softswitch.registrar.service`, `.store`). A refused file exits 1, a store
  that cannot be opened 2, as `provision` does. Without any of the three options the
  element answers REGISTER 404, as before.
- With the config store the switch also runs calls (`softswitch.b2bua.service`): new
  INVITEs are authenticated (407, with the registrar's credentials and nonce manager)
  and routed to the callee's registered contact or static contact. The calls'
  deadlines run on one `loop.call_at` re-armed after every event (STYLE.md principle
  6), and each finished call is logged as one line
  `call ended call_id=... from=... to=... target=... result=... status=... duration=...`
  on the `softswitch.calls` logger.
- Configuration changes take effect without a restart (issue 4 part 4): the switch
  subscribes to the process's change notifier (`cloudpbx.notify`); on a notification
  whose topic the snapshot holds, it re-reads the store on a worker thread and installs
  the new snapshot into the registrar's directory, the caller authenticator and the
  call service in one step on the loop (`cloudpbx.reload`, `softswitch.wiring`); calls
  in progress keep the routes they started with. Notifications during a rebuild cause
  one more rebuild, not one each. A failed rebuild keeps the snapshot in force and
  logs one line. Each reload logs `config snapshot reloaded in X ms`; the counters
  (`snapshot_reloads`, `reload_failures`, ...) are logged at shutdown.
- `--api HOST:PORT` (needs the config store) also serves the Customer Control API
  (`custcon_api`) over the same store, in the same process and on the same uvloop event
  loop: a uvicorn server started as a task, on a socket bound before it (an address
  that cannot be bound exits 2 like `--sip`). It installs no signal handlers: the
  switch's SIGTERM/SIGINT handling stays in charge, and the first signal also stops
  the API (requests in progress get up to 5 s). The API's endpoints are synchronous and
  run on worker threads, so their SQL and argon2 hashing never stall SIP on the loop.
  The API publishes its committed changes on the switch's notifier, so they reach the
  switch in-process (`POST /api/v1/operator/reload` is the operator's manual reload).
- `--mqtt HOST:PORT` (needs the config store; `[IPv6]:PORT`, a host name, or HOST for
  port 1883) bridges the process's change notifier to that MQTT broker
  (`cloudpbx.mqtt`): the changes this process's API commits go to every other process on
  the broker, and theirs (another switch's `--api`, `python -m custcon_api --mqtt`) make
  this switch rebuild as an in-process change does. Topics are
  `<--mqtt-prefix>/changes/<topic>` (default prefix `softswitch`; one per deployment).
  The switch starts and serves SIP with its broker down; it connects in the background,
  retries with bounded backoff for ever, and rebuilds its snapshot once after each
  connection, the first included (what it missed while not subscribed). Without
  `--mqtt` notifications stay in the process, as before.
- `--metrics HOST:PORT` serves Prometheus text exposition at `http://HOST:PORT/metrics`
  (`softswitch.metrics`), on a thread of its own, never on the SIP loop: the counters
  logged at shutdown (transport, endpoint, element, calls, registrar, reload, MQTT, gc),
  read at scrape time, plus gauges (calls in progress, the snapshot's install time and
  size, the last reload's duration, the MQTT session). An address that cannot be bound
  exits 2 like `--sip`; it needs no config store.
- Overload control (issue 6 item 7, with the config store): new INVITEs get 503 with
  Retry-After (`--overload-retry-after`, 5 s; RFC 3261 §21.5.4) while
  `--overload-max-invites` (2000) INVITEs have no final answer, or while the switch is
  congested: from an event-loop lag of `--overload-max-lag-ms` (200) or a SIP UDP
  receive buffer half full, until both stayed below half that for 1 s
  (`softswitch.b2bua.overload`). Both are sampled every 50 ms by `softswitch.loop_lag`;
  in-dialog requests are never refused. `/metrics` shows the gate
  (`softswitch_overload_*`) and the refusals.
- `softswitch check-message FILE...` parses each file's bytes as one datagram with
  `parse_message` and `validate()`, and prints `FILE: valid` or
  `FILE: invalid (STATUS reason)`. Exit status: 0 when every file is valid, 1 when any
  is invalid, 2 when any file cannot be read (printed as `FILE: unreadable (error)`), as
  grep and diff use 2 for trouble.
- `softswitch provision FILE [--database URL | --data-dir DIR]` migrates the config store
  (default: `data/softswitch.sqlite3`) to the newest schema and writes the provisioning
  file to it (`cloudpbx.provisioning`). Exit 0 printing the counts; 1 when the file is
  refused, printing every problem as `FILE: KEY.PATH: reason` on stderr (nothing is
  written then); 2 when the store cannot be opened or migrated.
- Exit status 2 also for a usage error (argparse), an address that is not an IP
  literal or is unspecified (0.0.0.0, ::: it goes into our Via headers), or one that
  cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from softswitch.b2bua.overload import (
    DEFAULT_MAX_INVITES_IN_PROGRESS,
    DEFAULT_MAX_LOOP_LAG,
    DEFAULT_OVERLOAD_RETRY_AFTER,
    OverloadConfig,
    OverloadGate,
)
from softswitch.element import ALLOWED_METHODS, DEFAULT_POLICY, Element, ElementPolicy
from softswitch.loop_lag import LoopLagSampler, ReceiveQueueGauge
from softswitch.runtime import CollectorPacer, tune_garbage_collector
from softswitch.sip.endpoint import TRYING_DELAY, EndpointConfig, SipEndpoint
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.events import MessageDropped, SipEvent, TransactionTerminated
from softswitch.sip.flows import Address
from softswitch.sip.message import parse_message
from softswitch.transport.driver import SipTransportDriver, describe_exception
from softswitch.wiring import format_address

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy import Engine

    from cloudpbx.callrecords import CallRecordSink
    from cloudpbx.mqtt import MqttBridge, MqttBridgeConfig
    from cloudpbx.notify import ChangeNotifier
    from cloudpbx.recordjournal import JournalIngester, JournalSink
    from cloudpbx.reload import SnapshotReloader
    from cloudpbx.snapshot import ConfigSnapshot
    from softswitch.b2bua.announcement_media import AnnouncementMedia
    from softswitch.b2bua.service import CallService
    from softswitch.b2bua.voicemail_media import VoicemailMedia
    from softswitch.metrics import InstalledSnapshot, MetricsServer
    from softswitch.registrar.service import RegistrarService
    from softswitch.registrar.store import DatabaseBindingStore
    from softswitch.tollfree_metrics import CountingSink
    from softswitch.wiring import SwitchConfig, SwitchCore

__all__ = ["main", "parse_host_port"]

logger = logging.getLogger("softswitch")
call_logger = logging.getLogger("softswitch.calls")

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_TROUBLE = 2

# Seconds a SIGTERM waits for the calls in progress to end (issue 3: a bounded wait).
DEFAULT_DRAIN_SECONDS = 30.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_UNUSED_EVENTS = frozenset({TransactionTerminated, MessageDropped})
"""Endpoint events no part of the application acts on (see `_CallTimer.handle_event`)."""
_CALL_TIMER_TICK = 0.1
"""Seconds between the ticks call deadlines are served on (see `_CallTimer`)."""
_API_GRACEFUL_SECONDS = 5
"""Seconds the API's requests in progress get once a stop was requested."""
_API_START_TIMEOUT = 10.0
"""Seconds the API server may take to start serving."""


def parse_host_port(text: str) -> Address:
    """`127.0.0.1:5060` or `[::1]:5060` -> (host, port); the host must be an IP literal.

    Raises:
        ValueError: anything else (a name would need resolving; the core never resolves).
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"expected HOST:PORT or [IPv6]:PORT, got {text!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError as error:
        raise ValueError(f"{host!r} is not an IP address") from error
    if text.startswith("[") and address.version != 6:
        raise ValueError(f"{host!r} in brackets is not an IPv6 address")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{port_text!r} is not a port number")
    return (str(address), int(port_text))


def _format_counters(counters: dict[str, int]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(counters.items())) or "none"


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """One line for an exception asyncio caught for us: never a traceback in the log."""
    error = context.get("exception")
    detail = describe_exception(error) if isinstance(error, BaseException) else ""
    logger.error("event loop: %s %s", context.get("message", ""), detail)


@dataclass
class _ConfigStore:
    """What start-up read from the config store for the registrar."""

    engine: Engine
    snapshot: ConfigSnapshot
    nonce_secret: bytes
    """The digest nonce key kept in the store (`softswitch.registrar.nonce_secret`)."""


class _StartupError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _open_config_store(arguments: argparse.Namespace) -> _ConfigStore:
    """Migrate, provision and snapshot the store named by the run options (blocking).

    Raises:
        _StartupError: with the exit status to use.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        # Alembic logs every plugin and step at INFO: start-up noise, not news.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    # Imported here so a plain `run` and `check-message` load no SQLAlchemy or Alembic.
    from sqlalchemy.exc import SQLAlchemyError

    from cloudpbx.db import (
        create_engine_for,
        create_session_factory,
        database_url_for_directory,
        upgrade,
    )
    from cloudpbx.provisioning import ProvisioningError, provision
    from cloudpbx.repository import load_snapshot
    from softswitch.registrar.nonce_secret import load_or_create_nonce_secret

    database_url = arguments.database or database_url_for_directory(
        arguments.data_dir or "data"
    )
    try:
        upgrade(database_url)
        engine = create_engine_for(database_url)
    except (SQLAlchemyError, OSError) as error:
        raise _StartupError(
            f"cannot open the config store: {describe_exception(error)}", EXIT_TROUBLE
        ) from error
    try:
        sessions = create_session_factory(engine)
        with sessions() as session:
            if arguments.config is not None:
                result = provision(session, arguments.config)
                logger.info("%s: provisioned; %s", arguments.config, result)
            snapshot = load_snapshot(session)
        # Created on the first start, then reused: nonces outlive a restart.
        nonce_secret = load_or_create_nonce_secret(sessions)
    except ProvisioningError as error:
        engine.dispose()
        raise _StartupError(str(error), EXIT_INVALID) from error
    except (SQLAlchemyError, OSError, ValueError) as error:
        engine.dispose()
        raise _StartupError(
            f"cannot read the config store: {describe_exception(error)}", EXIT_TROUBLE
        ) from error
    return _ConfigStore(engine, snapshot, nonce_secret)


async def _start_registrar(
    config_store: _ConfigStore, driver: SipTransportDriver[SipEndpoint]
) -> tuple[RegistrarService, DatabaseBindingStore, CallService]:
    """Registrar and call service over the store (the CPU benchmark starts them so)."""
    service, store, core = await _start_switch_core(config_store, driver)
    return service, store, core.calls


async def _start_switch_core(
    config_store: _ConfigStore,
    driver: SipTransportDriver[SipEndpoint],
    call_record_sink: CallRecordSink | None = None,
) -> tuple[RegistrarService, DatabaseBindingStore, SwitchCore]:
    """The switch core over the store. `time.time` is its wall clock: registrar, nonces
    and the toll-free schedules (converted to Asia/Tokyo by `softswitch.tollfree`).
    `call_record_sink` receives the toll-free call records (None: not recorded)."""
    from cloudpbx.db import create_session_factory
    from softswitch.registrar.service import RegistrarService
    from softswitch.registrar.store import DatabaseBindingStore
    from softswitch.wiring import build_switch_core

    core = build_switch_core(
        config_store.snapshot,
        driver.endpoint,
        driver.local_address,
        time.time,
        nonce_secret=config_store.nonce_secret,
        call_record_sink=call_record_sink,
    )
    registrar = core.registrar
    store = DatabaseBindingStore(create_session_factory(config_store.engine), time.time)
    service = RegistrarService(registrar, store, time.time, asyncio.get_running_loop())
    try:
        await service.start()
    except Exception:
        store.close()
        raise
    logger.info(
        "registrar serving %d domains; %d bindings loaded",
        len(config_store.snapshot.tenants),
        service.counters["bindings_loaded"],
    )
    return service, store, core


# --- toll-free call records (issue 5 part 6) -------------------------------------------


@dataclass
class _CallRecords:
    """The toll-free call records' path out of the switch: the counting sink the call
    service writes to, the journal behind it and the ingester into the store."""

    sink: CountingSink
    """What the switch core gets as `call_record_sink`; its counts are `/metrics`'."""
    journal: JournalSink
    ingester: JournalIngester


def _call_records_journal_path(engine: Engine) -> Path:
    """Next to the store's SQLite file; `data/` for another database."""
    from cloudpbx.db import DEFAULT_DATA_DIRECTORY
    from cloudpbx.recordjournal import JOURNAL_FILE_NAME

    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        return Path(str(database)).resolve().parent / JOURNAL_FILE_NAME
    return DEFAULT_DATA_DIRECTORY.resolve() / JOURNAL_FILE_NAME


def _start_call_records(config_store: _ConfigStore) -> _CallRecords:
    """Open the journal and start its ingester (`cloudpbx.recordjournal`): records are
    appended on the loop with one `os.write` and copied into the store on a thread; the
    ingester's first pass replays what a killed switch left in the journal.

    Raises:
        OSError: the journal cannot be opened.
    """
    from cloudpbx.recordjournal import JournalIngester, JournalSink
    from softswitch.tollfree_metrics import CountingSink

    path = _call_records_journal_path(config_store.engine)
    journal = JournalSink(path)
    ingester = JournalIngester(path, config_store.engine, journal)
    ingester.start()
    logger.info("toll-free call records journalled to %s", path)
    return _CallRecords(CountingSink(journal), journal, ingester)


async def _stop_call_records(records: _CallRecords) -> None:
    """After the last call ended: a final ingest (on a worker thread), then close."""
    await asyncio.to_thread(records.ingester.stop)
    records.journal.close()
    counters = records.journal.counters + records.ingester.counters
    logger.info("softswitch stopped; call record counters: %s", _format_counters(counters))


def _start_reloader(
    config_store: _ConfigStore,
    core: SwitchCore,
    notifier: ChangeNotifier,
    installed: InstalledSnapshot | None = None,
) -> SnapshotReloader[SwitchConfig]:
    """Rebuild and install the snapshot on every change notification (module rules)."""
    from cloudpbx.db import create_session_factory
    from cloudpbx.notify import TOPICS_NOT_IN_SNAPSHOT
    from cloudpbx.reload import SnapshotReloader
    from cloudpbx.repository import load_snapshot
    from softswitch.wiring import SwitchConfig

    sessions = create_session_factory(config_store.engine)

    def build() -> SwitchConfig:
        # On the reloader's worker thread: SQL and the derived tables, off the loop.
        with sessions() as session:
            return SwitchConfig.of(load_snapshot(session))

    def install(config: SwitchConfig) -> None:
        # On the loop: the swap, then the time /metrics reports it was installed.
        core.install(config)
        if installed is not None:
            installed.installed(config.snapshot)

    loop = asyncio.get_running_loop()
    reloader = SnapshotReloader(build, install, loop, ignored_topics=TOPICS_NOT_IN_SNAPSHOT)
    notifier.subscribe(reloader.notify, loop)
    return reloader


def _bind_api_socket(address: Address) -> socket.socket:
    """A TCP socket bound to `address` for the API (uvicorn listens on it).

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def _start_api(
    address: Address, config_store: _ConfigStore, notifier: ChangeNotifier
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """The Customer Control API as a task on the running loop (module rules).

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server did not start.
    """
    import uvicorn

    from cloudpbx.db import create_session_factory
    from custcon_api.main import create_app

    class EmbeddedServer(uvicorn.Server):
        """uvicorn's server without its signal handlers: the switch owns SIGTERM and
        SIGINT (`_Shutdown`) and stops the API by setting `should_exit`."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = _bind_api_socket(address)
    app = create_app(create_session_factory(config_store.engine), notifier=notifier)
    # FastAPI builds the OpenAPI document on the first GET /openapi.json (or /docs), in
    # the event loop: ~300 ms of CPU that stalled SIP and made the overload gate refuse
    # INVITEs (measured: a 301 ms loop lag). Built here, before SIP is served; cached.
    app.openapi()
    config = uvicorn.Config(
        app,
        # The switch's loop is already running: uvicorn must not create or pick one.
        loop="none",
        # create_app has no lifespan handlers; "off" also avoids uvicorn's sys.exit path.
        lifespan="off",
        # Our logging configuration stays: uvicorn's loggers propagate to it.
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=_API_GRACEFUL_SECONDS,
    )
    server = EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + _API_START_TIMEOUT
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            # uvicorn ends a failed start-up with sys.exit: one line from us instead.
            with contextlib.suppress(Exception, SystemExit):
                await task
            raise RuntimeError("the API server did not start")
        await asyncio.sleep(0.01)
    return server, task


async def _stop_api(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Ask the API server to stop and wait for it (bounded)."""
    server.should_exit = True
    try:
        await asyncio.wait_for(task, _API_GRACEFUL_SECONDS + 5)
    except TimeoutError:
        logger.warning("the API did not stop in time")
    except Exception as error:
        logger.error("the API stopped with an error: %s", describe_exception(error))


_RELOAD_COUNTERS = (
    "snapshot_reloads",
    "reload_failures",
    "reload_notifications",
    "reload_notifications_coalesced",
    "reload_notifications_ignored",
)
_MQTT_COUNTERS = (
    "connections",
    "connect_failures",
    "connection_losses",
    "messages_sent",
    "messages_received",
    "catch_up_notifications",
)
_OVERLOAD_COUNTERS = (
    "overload_refused.invites_in_progress",
    "overload_refused.loop_lag",
    "overload_refused.receive_queue",
    "overload_congestion_episodes",
    "overload_congestion_recoveries",
)


@dataclass
class _Parts:
    """What `/metrics` reads (None: that part does not run)."""

    driver: SipTransportDriver[SipEndpoint]
    element: Element
    pacer: CollectorPacer
    calls: CallService | None = None
    service: RegistrarService | None = None
    reloader: SnapshotReloader[SwitchConfig] | None = None
    bridge: MqttBridge | None = None
    installed: InstalledSnapshot | None = None
    call_records: _CallRecords | None = None


def _start_metrics(address: Address, parts: _Parts) -> MetricsServer:
    """Serve the parts' counters at /metrics on a thread (module rules).

    Raises:
        OSError: the address cannot be bound.
    """
    from softswitch.metrics import (
        CounterSource,
        GaugeSource,
        MetricsServer,
        SwitchCollector,
        switch_registry,
        tollfree_call_collector,
    )

    counters = [
        CounterSource("transport", parts.driver.counters),
        CounterSource("endpoint", parts.driver.endpoint.counters),
        CounterSource("element", parts.element.counters),
        CounterSource("gc", parts.pacer.counters, always=("collections",)),
    ]
    gauges = [
        GaugeSource(
            "softswitch_gc_longest_pause_seconds",
            "Longest young collection pass since start",
            lambda: parts.pacer.longest_pause,
        )
    ]
    calls, service, reloader, bridge = parts.calls, parts.service, parts.reloader, parts.bridge
    if calls is not None:
        counters += [
            CounterSource(
                "calls",
                calls.counters,
                always=("invites", "calls_started", "invites_refused_overload"),
            ),
            CounterSource("caller_auth", calls.authenticator_counters),
        ]
        gauges.append(
            GaugeSource("softswitch_calls_in_progress", "Calls in progress", lambda: len(calls))
        )
        # Issue 6 item 7: the overload gate (module rules: overload control).
        gate = calls.overload
        counters.append(CounterSource("overload", gate.counters, always=_OVERLOAD_COUNTERS))
        gauges += [
            GaugeSource(
                "softswitch_overload_active",
                "1 while new INVITEs are refused for congestion (loop lag, receive queue)",
                lambda: float(gate.congested),
            ),
            GaugeSource(
                "softswitch_overload_invites_in_progress",
                "INVITEs without a final answer (refused at the bound)",
                lambda: float(calls.invites_in_progress),
            ),
            GaugeSource(
                "softswitch_overload_max_invites_in_progress",
                "The bound of INVITEs without a final answer (--overload-max-invites)",
                lambda: float(gate.config.max_invites_in_progress),
            ),
            GaugeSource(
                "softswitch_overload_loop_lag_seconds",
                "Event-loop lag of the last sample (every 50 ms)",
                lambda: gate.last_lag,
            ),
            GaugeSource(
                "softswitch_overload_loop_lag_peak_seconds",
                "Highest event-loop lag sampled since start",
                lambda: gate.peak_lag,
            ),
            GaugeSource(
                "softswitch_overload_receive_queue_fill",
                "Share of the SIP UDP socket's receive buffer in use (last sample)",
                lambda: gate.last_receive_fill,
            ),
            GaugeSource(
                "softswitch_overload_receive_queue_fill_peak",
                "Highest share of the SIP UDP receive buffer in use since start",
                lambda: gate.peak_receive_fill,
            ),
        ]
    if service is not None:
        counters += [
            CounterSource("registrar", service.registrar.counters),
            CounterSource("registrar_store", service.counters),
        ]
    if reloader is not None:
        counters.append(CounterSource("config", reloader.counters, always=_RELOAD_COUNTERS))
        gauges.append(
            GaugeSource(
                "softswitch_config_last_reload_seconds",
                "Seconds from the first notification the last reload answered to its swap",
                lambda: reloader.last_reload_seconds,
            )
        )
    if bridge is not None:
        counters.append(CounterSource("mqtt", bridge.counters, always=_MQTT_COUNTERS))
        gauges.append(
            GaugeSource(
                "softswitch_mqtt_connected",
                "1 while a session with the MQTT broker is up",
                lambda: float(bridge.connected),
            )
        )
    collectors = []
    if parts.call_records is not None:
        collectors.append(tollfree_call_collector(parts.call_records.sink.calls))
        counters += [
            CounterSource(
                "call_record_journal",
                parts.call_records.journal.counters,
                always=("records", "write_failures"),
            ),
            CounterSource(
                "call_record_ingester",
                parts.call_records.ingester.counters,
                always=("ingested", "store_failures", "malformed"),
            ),
        ]
    collector = SwitchCollector(counters, gauges, parts.installed, collectors=collectors)
    return MetricsServer.start(address[0], address[1], switch_registry(collector))


class _Shutdown:
    """SIGTERM and SIGINT: the first asks for a graceful stop, any later one for a
    prompt one (module rules)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.prompt = asyncio.Event()

    def on_signal(self) -> None:
        if self.requested.is_set():
            if not self.prompt.is_set():
                logger.warning("second stop signal: stopping now")
            self.prompt.set()
        else:
            self.requested.set()


async def _drain(
    calls: CallService, call_timer: _CallTimer, shutdown: _Shutdown, drain_seconds: float
) -> None:
    """Refuse new calls and wait for the calls in progress to end (bounded)."""
    calls.stop_accepting()
    logger.info(
        "stop requested: draining %d calls in progress (at most %.0f s); new INVITEs get 503",
        len(calls),
        drain_seconds,
    )
    waits = {
        asyncio.ensure_future(call_timer.idle.wait()),
        asyncio.ensure_future(shutdown.prompt.wait()),
    }
    try:
        await asyncio.wait(waits, timeout=drain_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if len(calls):
        logger.warning("stopping with %d calls still in progress", len(calls))
    else:
        logger.info("drained: no call in progress")


async def _serve(
    host: str,
    port: int,
    config_store: _ConfigStore | None = None,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    api_address: Address | None = None,
    mqtt: MqttBridgeConfig | None = None,
    metrics_address: Address | None = None,
    overload: OverloadConfig | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_exception)
    try:
        driver = await SipTransportDriver.open(
            host,
            port,
            lambda address: SipEndpoint(
                EndpointConfig(
                    local_host=address[0], local_port=address[1], trying_delay=TRYING_DELAY
                )
            ),
        )
    except OSError as error:
        logger.error("cannot listen on %s: %s", format_address((host, port)), error)
        return EXIT_TROUBLE
    service: RegistrarService | None = None
    store: DatabaseBindingStore | None = None
    calls: CallService | None = None
    reloader: SnapshotReloader[SwitchConfig] | None = None
    api: tuple[uvicorn.Server, asyncio.Task[None]] | None = None
    bridge: MqttBridge | None = None
    installed: InstalledSnapshot | None = None
    call_records: _CallRecords | None = None
    if config_store is not None:
        from cloudpbx.notify import ChangeNotifier

        try:
            call_records = _start_call_records(config_store)
        except OSError as error:
            logger.error("cannot open the call record journal: %s", error)
            await driver.close()
            return EXIT_TROUBLE
        try:
            service, store, core = await _start_switch_core(
                config_store, driver, call_record_sink=call_records.sink
            )
        except Exception as error:
            logger.error("cannot load the registrations: %s", describe_exception(error))
            await driver.close()
            await _stop_call_records(call_records)
            return EXIT_TROUBLE
        calls = core.calls
        notifier = ChangeNotifier()
        if metrics_address is not None:
            from softswitch.metrics import InstalledSnapshot

            installed = InstalledSnapshot(config_store.snapshot)
        reloader = _start_reloader(config_store, core, notifier, installed)
        if api_address is not None:
            try:
                api = await _start_api(api_address, config_store, notifier)
            except (OSError, RuntimeError) as error:
                logger.error(
                    "cannot serve the API on %s: %s", format_address(api_address), error
                )
                await reloader.close()
                await driver.close()
                await service.close()
                store.close()
                await _stop_call_records(call_records)
                return EXIT_TROUBLE
            # softswitch.runtime: the API's imports and app were allocated after the
            # start-up freeze; freezing them now spares the collector's first young pass
            # a scan of them all (measured: a 19 ms pass on the loop otherwise).
            gc.freeze()
            logger.info(
                "customer control API listening on http://%s", format_address(api_address)
            )
        if mqtt is not None:
            from cloudpbx.mqtt import MqttBridge

            # Module rules: connects in the background; SIP is served with the broker down.
            bridge = MqttBridge(notifier, mqtt)
            bridge.start()
    # Issue 6 item 4: voicemail needs the store and an RTP address to bind.
    voicemail = (
        calls is not None
        and config_store is not None
        and not ipaddress.ip_address(driver.local_address[0]).is_unspecified
    )
    # With voicemail, every SUBSCRIBE is the MWI's (`softswitch.b2bua.mwi`: 200, 489 for
    # another package, 404 ...), so OPTIONS advertises it (RFC 3261 §20.5, RFC 6665 §3.1).
    policy = (
        ElementPolicy(allowed_methods=(*ALLOWED_METHODS, "SUBSCRIBE"))
        if voicemail
        else DEFAULT_POLICY
    )
    element = Element(driver.endpoint, registrar=service, calls=calls, policy=policy)
    if calls is None:
        driver.set_event_handler(element.handle_event)
        call_timer: _CallTimer | None = None
        lag_sampler: LoopLagSampler | None = None
    else:
        call_timer = _CallTimer(loop, driver, element, calls)
        driver.set_event_handler(call_timer.handle_event)
        # Issue 5 step 5: toll-free announcements (after hours, area refusal) over RTP.
        call_timer.media = _start_announcements(
            loop, calls, driver.local_address[0], call_timer.after_media
        )
        # Issue 6 item 4: voicemail (greeting, message recording, MWI) over RTP.
        if voicemail:
            assert config_store is not None  # `voicemail` says so
            from softswitch.b2bua.voicemail_media import start_voicemail

            call_timer.voicemail = start_voicemail(
                loop,
                calls,
                driver.local_address[0],
                config_store.engine,
                call_timer.after_media,
                notifier,
            )
        # Issue 6 item 7 (module rules: overload control): the gate of new INVITEs and
        # the loop-lag samples it is fed.
        if overload is not None:
            calls.overload = OverloadGate(overload)
        lag_sampler = LoopLagSampler(
            loop, calls.overload, receive_queue=ReceiveQueueGauge(driver.udp_socket)
        )
        lag_sampler.start()

    pacer = CollectorPacer(loop)  # softswitch.runtime: young collections on a timer
    pacer.start()
    shutdown = _Shutdown()
    # Left installed through the closing below (a second signal must not raise
    # KeyboardInterrupt there); closing the loop removes them.
    for signal_number in _STOP_SIGNALS:
        loop.add_signal_handler(signal_number, shutdown.on_signal)
    status = EXIT_OK
    metrics: MetricsServer | None = None
    try:
        if metrics_address is not None:
            parts = _Parts(
                driver, element, pacer, calls, service, reloader, bridge, installed, call_records
            )
            try:
                metrics = _start_metrics(metrics_address, parts)
            except OSError as error:
                logger.error(
                    "cannot serve metrics on %s: %s", format_address(metrics_address), error
                )
                status = EXIT_TROUBLE
                return status
            logger.info(
                "metrics served at http://%s/metrics", format_address(metrics.address)
            )
        logger.info("softswitch listening on udp+tcp %s", format_address(driver.local_address))
        await shutdown.requested.wait()
        if api is not None:
            # Module rules: the first stop signal stops the API too; it finishes its
            # requests in progress while the calls drain.
            api[0].should_exit = True
        if calls is not None and call_timer is not None and len(calls):
            await _drain(calls, call_timer, shutdown, drain_seconds)
    finally:
        if metrics is not None:
            await asyncio.to_thread(metrics.close)
        if api is not None:
            await _stop_api(*api)
        if bridge is not None:
            # After the API: the changes it committed last still leave (bounded).
            await bridge.close()
        if reloader is not None:
            await reloader.close()
        pacer.close()
        if lag_sampler is not None:
            lag_sampler.close()
        if call_timer is not None:
            call_timer.close()
            if call_timer.voicemail is not None:
                # The messages of calls cut by the stop are saved before the store closes.
                await call_timer.voicemail.wait_saved()
        await driver.close()
        if service is not None:
            await service.close()
        if store is not None:
            store.close()
        if call_records is not None:
            # After the driver: no call can end (and write a record) any more.
            await _stop_call_records(call_records)
    logger.info("softswitch stopped; transport counters: %s", _format_counters(driver.counters))
    logger.info(
        "softswitch stopped; garbage collector: %s, longest pass %.1f ms",
        _format_counters(pacer.counters),
        pacer.longest_pause * 1000,
    )
    logger.info(
        "softswitch stopped; endpoint counters: %s", _format_counters(driver.endpoint.counters)
    )
    logger.info("softswitch stopped; element counters: %s", _format_counters(element.counters))
    if calls is not None:
        counters = calls.counters + calls.authenticator_counters
        logger.info("softswitch stopped; call counters: %s", _format_counters(counters))
        logger.info(
            "softswitch stopped; overload counters: %s",
            _format_counters(calls.overload.counters),
        )
        logger.info(
            "softswitch stopped; peak event-loop lag %.1f ms, peak receive queue %.0f%%",
            calls.overload.peak_lag * 1000,
            calls.overload.peak_receive_fill * 100,
        )
    if service is not None:
        counters = service.registrar.counters + service.counters
        logger.info("softswitch stopped; registrar counters: %s", _format_counters(counters))
    if reloader is not None:
        logger.info(
            "softswitch stopped; reload counters: %s", _format_counters(reloader.counters)
        )
    if bridge is not None:
        logger.info("softswitch stopped; mqtt counters: %s", _format_counters(bridge.counters))
    return status


def _start_announcements(
    loop: asyncio.AbstractEventLoop,
    calls: CallService,
    host: str,
    after: Callable[[], None],
) -> AnnouncementMedia | None:
    """The announcement players on the SIP address (issue 5 step 5), or None when the
    address cannot go in SDP (unspecified) or the announcement files cannot be read:
    toll-free calls then get 480/403 instead (`softswitch.b2bua.tollfree_routing`)."""
    import ipaddress

    from softswitch.b2bua.announcement_media import AnnouncementMedia
    from softswitch.media import AnnouncementLibrary, RtpPortAllocator, WavFormatError

    if ipaddress.ip_address(host).is_unspecified:
        logger.warning("announcements disabled: the SIP address %s cannot go in SDP", host)
        return None
    try:
        library = AnnouncementLibrary.load()
    except WavFormatError as error:
        logger.warning("announcements disabled: %s", error)
        return None
    return AnnouncementMedia(loop, calls, library, host, RtpPortAllocator(), after)


class _CallTimer:
    """The asyncio shell of the call service: feeds it events, logs its records and
    keeps one `loop.call_at` armed at its next deadline (STYLE.md principle 6)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        driver: SipTransportDriver[SipEndpoint],
        element: Element,
        calls: CallService,
    ) -> None:
        self._loop = loop
        self._driver = driver
        self._element = element
        self._calls = calls
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self.idle = asyncio.Event()
        """Set whenever no call is in progress (for draining)."""
        self.media: AnnouncementMedia | None = None
        """The announcement players, driven from `_after` (None: no announcements)."""
        self.voicemail: VoicemailMedia | None = None
        """The voicemail sessions, driven from `_after` (None: no voicemail)."""

    def handle_event(self, event: SipEvent, now: float) -> None:
        if type(event) in _UNUSED_EVENTS:
            # Four transactions end per call: neither the element nor a call acts on
            # their ends (the driver has counted any drop), so they stop here.
            return
        try:
            self._element.handle_event(event, now)
        finally:
            self._after()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.media is not None:
            self.media.close()
        if self.voicemail is not None:
            self.voicemail.close()

    def _fire(self) -> None:
        deadline = self._armed_for
        self._handle = None
        self._armed_for = None
        # call_at may run up to one clock resolution early: never go back in time.
        now = self._loop.time() if deadline is None else max(self._loop.time(), deadline)
        try:
            self._calls.handle_timer(now)
        finally:
            self._after()
            self._driver.transmit()

    def after_media(self) -> None:
        """After the announcement players reported to the call service."""
        self._after()
        self._driver.transmit()

    def _after(self) -> None:
        if self.media is not None:
            self.media.pump()
        if self.voicemail is not None:
            self.voicemail.pump()
        while (record := self._calls.next_record()) is not None:
            if record.error:
                call_logger.error("%s", record.log_text())
            elif call_logger.isEnabledFor(logging.INFO):
                call_logger.info("%s", record.log_text())
        if len(self._calls):
            self.idle.clear()
        else:
            self.idle.set()
        deadline = self._calls.next_deadline()
        if deadline is not None:
            # Call deadlines (no answer within seconds) need no millisecond accuracy:
            # on 0.1 s ticks the timer is re-armed a few times a second, not per call.
            deadline = math.ceil(deadline / _CALL_TIMER_TICK) * _CALL_TIMER_TICK
        if deadline == self._armed_for:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = deadline
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._fire)


def _run(arguments: argparse.Namespace) -> int:
    try:
        host, port = parse_host_port(arguments.sip)
    except ValueError as error:
        logger.error("--sip: %s", error)
        return EXIT_TROUBLE
    if ipaddress.ip_address(host).is_unspecified:
        # The address is written in our Via headers (RFC 3261 §18.1.1): peers must be
        # able to answer to it.
        logger.error("--sip: %s is not an address peers can reach; name a specific one", host)
        return EXIT_TROUBLE
    api_address: Address | None = None
    if arguments.api is not None:
        try:
            api_address = parse_host_port(arguments.api)
        except ValueError as error:
            logger.error("--api: %s", error)
            return EXIT_TROUBLE
        if not (arguments.config or arguments.data_dir or arguments.database):
            logger.error("--api: needs the config store (--config, --data-dir or --database)")
            return EXIT_TROUBLE
    has_store = bool(arguments.config or arguments.data_dir or arguments.database)
    mqtt: MqttBridgeConfig | None = None
    if arguments.mqtt is not None:
        from cloudpbx.mqtt import MqttBridgeConfig, parse_broker_address

        if not has_store:
            logger.error("--mqtt: needs the config store (--config, --data-dir or --database)")
            return EXIT_TROUBLE
        try:
            broker_host, broker_port = parse_broker_address(arguments.mqtt)
            mqtt = MqttBridgeConfig(
                broker_host, broker_port, prefix=arguments.mqtt_prefix, client_name="softswitch"
            )
        except ValueError as error:
            logger.error("--mqtt: %s", error)
            return EXIT_TROUBLE
    metrics_address: Address | None = None
    if arguments.metrics is not None:
        try:
            metrics_address = parse_host_port(arguments.metrics)
        except ValueError as error:
            logger.error("--metrics: %s", error)
            return EXIT_TROUBLE
    try:
        overload = OverloadConfig(
            max_invites_in_progress=arguments.overload_max_invites,
            max_loop_lag=arguments.overload_max_lag_ms / 1000,
            retry_after=arguments.overload_retry_after,
        )
    except ValueError as error:
        logger.error("--overload-*: %s", error)
        return EXIT_TROUBLE
    config_store: _ConfigStore | None = None
    if has_store:
        try:
            config_store = _open_config_store(arguments)
        except _StartupError as error:
            logger.error("%s", error)
            return error.status
    tune_garbage_collector()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(
                _serve(
                    host,
                    port,
                    config_store,
                    arguments.drain_seconds,
                    api_address,
                    mqtt,
                    metrics_address,
                    overload,
                )
            )
    finally:
        # Module rules: the loop is closed; a late signal ends the process by the
        # default action, not with a KeyboardInterrupt traceback.
        for signal_number in _STOP_SIGNALS:
            signal.signal(signal_number, signal.SIG_DFL)
        if config_store is not None:
            config_store.engine.dispose()


def _check_messages(arguments: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in arguments.files:
        try:
            data = Path(name).read_bytes()
        except OSError as error:
            sys.stdout.write(f"{name}: unreadable ({error.strerror or error})\n")
            status = EXIT_TROUBLE
            continue
        try:
            message = parse_message(data)
            message.validate()
        except RemoteProtocolError as error:
            sys.stdout.write(f"{name}: invalid ({error.status_code} {error.reason})\n")
            status = max(status, EXIT_INVALID)
            continue
        sys.stdout.write(f"{name}: valid\n")
    return status


def _provision(arguments: argparse.Namespace) -> int:
    # Imported here so `run` and `check-message` do not load SQLAlchemy and Alembic.
    from sqlalchemy.exc import SQLAlchemyError

    from cloudpbx.db import (
        create_engine_for,
        create_session_factory,
        database_url_for_directory,
        upgrade,
    )
    from cloudpbx.provisioning import ProvisioningError, provision

    database_url = arguments.database or database_url_for_directory(arguments.data_dir)
    try:
        upgrade(database_url)
        engine = create_engine_for(database_url)
    except (SQLAlchemyError, OSError) as error:
        sys.stderr.write(f"cannot open the config store: {describe_exception(error)}\n")
        return EXIT_TROUBLE
    try:
        with create_session_factory(engine)() as session:
            result = provision(session, arguments.file)
    except ProvisioningError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_INVALID
    except SQLAlchemyError as error:
        sys.stderr.write(f"cannot write the config store: {describe_exception(error)}\n")
        return EXIT_TROUBLE
    finally:
        engine.dispose()
    sys.stdout.write(f"{arguments.file}: provisioned; {result}\n")
    return EXIT_OK


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softswitch", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the SIP element")
    run.add_argument(
        "--sip",
        required=True,
        metavar="HOST:PORT",
        help="address to listen on, UDP and TCP (IPv6: [::1]:5060)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging threshold (default INFO)",
    )
    run.add_argument(
        "--drain-seconds",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        metavar="SECONDS",
        help="on SIGTERM, wait at most this long for calls in progress to end "
        f"(default {DEFAULT_DRAIN_SECONDS:.0f})",
    )
    run.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="provisioning file written to the config store at start-up (idempotent)",
    )
    run_store = run.add_mutually_exclusive_group()
    run_store.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    run_store.add_argument(
        "--data-dir",
        metavar="DIR",
        help="directory of the SQLite store softswitch.sqlite3 (default with --config: data)",
    )
    run.add_argument(
        "--api",
        metavar="HOST:PORT",
        help="also serve the Customer Control API over HTTP here, in this process "
        "(needs the config store)",
    )
    run.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="bridge configuration change notifications through this MQTT broker, "
        "between processes (needs the config store; default port 1883)",
    )
    run.add_argument(
        "--mqtt-prefix",
        default="softswitch",
        metavar="PREFIX",
        help="first MQTT topic level(s) of the notifications (default: softswitch)",
    )
    run.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )
    run.add_argument(
        "--overload-max-invites",
        type=int,
        default=DEFAULT_MAX_INVITES_IN_PROGRESS,
        metavar="N",
        help="answer new INVITEs 503 while N INVITEs have no final answer "
        f"(default {DEFAULT_MAX_INVITES_IN_PROGRESS})",
    )
    run.add_argument(
        "--overload-max-lag-ms",
        type=float,
        default=DEFAULT_MAX_LOOP_LAG * 1000,
        metavar="MS",
        help="answer new INVITEs 503 from an event-loop lag of MS until it stayed below "
        f"half that for 1 s (default {DEFAULT_MAX_LOOP_LAG * 1000:.0f})",
    )
    run.add_argument(
        "--overload-retry-after",
        type=int,
        default=DEFAULT_OVERLOAD_RETRY_AFTER,
        metavar="SECONDS",
        help="Retry-After of those 503s, RFC 3261 §20.33 "
        f"(default {DEFAULT_OVERLOAD_RETRY_AFTER})",
    )
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check-message", help="parse and validate raw SIP messages, one per file"
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(handler=_check_messages)

    provision = commands.add_parser(
        "provision", help="write a YAML provisioning file to the config store"
    )
    provision.add_argument("file", metavar="FILE.yaml")
    store = provision.add_mutually_exclusive_group()
    store.add_argument("--database", metavar="URL", help="SQLAlchemy database URL")
    store.add_argument(
        "--data-dir",
        metavar="DIR",
        default="data",
        help="directory of the SQLite store softswitch.sqlite3 (default: data)",
    )
    provision.set_defaults(handler=_provision)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`softswitch`, `python -m softswitch`)."""
    arguments = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(arguments, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = arguments.handler
    result: int = handler(arguments)
    return result


if __name__ == "__main__":
    sys.exit(main())
