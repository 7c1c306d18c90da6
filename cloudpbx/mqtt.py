"""Change notification between processes: a process's `ChangeNotifier` bridged to MQTT.

Rules:
- One `MqttBridge` per process notifier, on that process's event loop. Every topic
  published on the notifier (after a commit, `cloudpbx.notify`) is sent to the MQTT
  topic `<prefix>/changes/<topic>` (prefix default `softswitch`) with QoS 1; every
  message received there from another process is re-published on the local notifier,
  so local subscribers (the switch's `SnapshotReloader`) react exactly as to a change
  made in their own process.
- A process does not react twice to its own change. The payload is JSON
  `{"origin": ID}` with a random per-process (per-bridge) origin id; a message carrying
  our own id is dropped (`own_messages_skipped`). We use the origin id rather than MQTT
  v5's no_local subscription option because it works with any broker and MQTT 3.1.1,
  and a message with no (or an unreadable) payload counts as another process's change:
  `mosquitto_pub -t softswitch/changes/config -n` makes every bridged switch rebuild.
  What the bridge re-publishes locally is not sent back to MQTT: it counts the
  re-publications its own notifier subscription has still to see per topic and skips
  that many (which of two equal topics is skipped does not matter: a topic names data,
  never a row).
- `publish` on the notifier may come from any thread (the API's worker threads) and
  never blocks or raises: the notifier schedules the bridge's callback on the bridge's
  loop (`call_soon_threadsafe`); the callback only adds the topic to an ordered set of
  topics to send (so the queue is bounded by the number of topic names: several
  changes of one topic before it is sent leave as one message) and wakes the sender.
- A topic published locally while the broker is unreachable stays queued and is sent
  once connected again: other processes that stayed connected then learn of it. A send
  interrupted by a loss is queued again (QoS 1: a duplicate is harmless, a loss is not).
- Reconnection: on a failed connection attempt or a lost connection the bridge retries
  after a delay that starts at `retry_initial` seconds and doubles up to `retry_max`
  (with +-20% jitter, so a fleet does not reconnect in lock step), for ever, until
  `close()`. A loss is logged once as a warning; failed retries after it at debug level;
  the next connection as info, with how many attempts failed.
- Catch-up: MQTT notifications are at most once (the broker keeps nothing for us: clean
  sessions, no persistence), so whatever was published while this process was not
  subscribed is lost to it. Therefore EVERY connection, the first included, is
  followed by one local `config` publication (`catch_up_notifications`): the switch
  rebuilds its snapshot from the store and so catches anything it missed before its
  first connection (the snapshot was read at start-up, before the bridge connected) or
  during a loss. This catch-up is local only, never sent to MQTT.
- `close()` stops taking local changes, gives the topics still queued up to
  `flush_timeout` seconds to leave when connected, then disconnects (MQTT DISCONNECT)
  and ends the bridge's task; bounded, never raises.
- Counters (`counters`, read by the switch's `/metrics`): `connections`,
  `connect_failures`, `connection_losses`, `messages_sent`, `send_failures`,
  `messages_received`, `own_messages_skipped`, `invalid_topics`,
  `catch_up_notifications`. `connected` is True while a session is up.
- `cloudpbx` imports neither `softswitch` nor `custcon_api`: both processes use this.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import re
import secrets
from collections import Counter
from dataclasses import dataclass

import aiomqtt

from cloudpbx.notify import CONFIG, ChangeNotifier, Subscription

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "MqttBridge",
    "MqttBridgeConfig",
    "parse_broker_address",
]

logger = logging.getLogger("cloudpbx.mqtt")

DEFAULT_PORT = 1883
"""The IANA port of MQTT without TLS."""
DEFAULT_PREFIX = "softswitch"
_CHANGES = "changes"
"""The topic level between the prefix and the notifier topic."""
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
"""Plain topic levels: no wildcard (`+`, `#`), no empty level, no `$` (broker topics)."""
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""The notifier's topic names (`cloudpbx.notify`)."""


def parse_broker_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `HOST` (port 1883) -> (host, port).

    The host may be a name (a broker's service name in a compose file): the MQTT client
    resolves it when it connects, on a worker thread.

    Raises:
        ValueError: not a host with an optional port.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, str(DEFAULT_PORT)
        if ":" in host:
            raise ValueError(f"an IPv6 broker address goes in brackets: [{host}]:{port_text}")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"{host!r} is not a host name or IP address")
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"{port_text!r} is not a port number")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class MqttBridgeConfig:
    """Where the broker is and how the bridge behaves towards it."""

    host: str
    port: int = DEFAULT_PORT
    prefix: str = DEFAULT_PREFIX
    """First topic level(s): `<prefix>/changes/<topic>`; one per deployment."""
    client_name: str = "cloudpbx"
    """The MQTT client identifier starts with it (`<client_name>-<origin id>`)."""
    retry_initial: float = 0.2
    """Seconds before the first retry after a loss or a failed attempt."""
    retry_max: float = 2.0
    """Longest delay between two attempts (the backoff's bound)."""
    keepalive: int = 15
    """Seconds of MQTT keepalive: a broker gone silent is noticed within 1.5 times it."""
    timeout: float = 5.0
    """Seconds for connecting, subscribing and each QoS 1 acknowledgement."""
    flush_timeout: float = 1.0
    """Seconds `close()` gives queued topics to leave."""

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(f"{self.prefix!r} is not an MQTT topic prefix (levels of A-Za-z0-9_-)")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ValueError("expected 0 < retry_initial <= retry_max")

    @property
    def subscription(self) -> str:
        """The MQTT filter of every change topic."""
        return f"{self.prefix}/{_CHANGES}/+"

    def mqtt_topic(self, topic: str) -> str:
        """The MQTT topic of the notifier `topic`."""
        return f"{self.prefix}/{_CHANGES}/{topic}"

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class MqttBridge:
    """A process's change notifier connected to an MQTT broker (see the module rules).

    Use: `bridge = MqttBridge(notifier, config)`, `bridge.start()` on the running loop
    (it returns at once: the connection is made in the background, so a process starts
    and serves with its broker down), and `await bridge.close()` at shutdown.
    """

    def __init__(self, notifier: ChangeNotifier, config: MqttBridgeConfig) -> None:
        self.config = config
        self.origin = secrets.token_hex(8)
        """This bridge's id in the payloads it sends (rule: no echo)."""
        self.counters: Counter[str] = Counter()
        self.connected = False
        """True while a session with the broker is up (read by `/metrics`)."""
        self._notifier = notifier
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._queued: dict[str, None] = {}
        """Topics to send, in order of first publication (an ordered set)."""
        self._wakeup = asyncio.Event()
        self._sent_all = asyncio.Event()
        self._sent_all.set()
        self._echoes: Counter[str] = Counter()
        """Per topic, re-publications of ours the notifier has yet to hand back to us."""
        self._connected_event = asyncio.Event()
        self._closing = False

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the notifier and start connecting (call on the running loop)."""
        if self._task is not None:
            raise RuntimeError("the bridge is started already")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._subscription = self._notifier.subscribe(self._on_local_change, loop)
        self._task = loop.create_task(self._run(), name="mqtt-bridge")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) for a session with the broker; True if up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        return self.connected

    async def close(self) -> None:
        """Flush (bounded), disconnect and stop; never raises (module rules)."""
        if self._closing:
            return
        self._closing = True
        if self._subscription is not None:
            self._notifier.unsubscribe(self._subscription)
            self._subscription = None
        task = self._task
        if task is None:
            return
        if self.connected and self._queued:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sent_all.wait(), self.config.flush_timeout)
        task.cancel()
        try:
            # The DISCONNECT waits for the broker at most `timeout`; this bounds the rest.
            await asyncio.wait_for(task, self.config.timeout + 1)
        except (asyncio.CancelledError, TimeoutError):
            pass
        except Exception as error:  # a close never raises
            logger.warning("MQTT bridge stopping: %s", _describe(error))
        if self._queued:
            logger.warning(
                "MQTT bridge stopped with changes not sent: %s", ", ".join(sorted(self._queued))
            )
        self.connected = False

    # --- the notifier side (on the loop) --------------------------------------------------

    def _on_local_change(self, topic: str) -> None:
        """The notifier's callback: a local change, or our own re-publication back."""
        if self._echoes[topic] > 0:
            self._echoes[topic] -= 1
            return
        if self._closing:
            return
        self._queued[topic] = None
        self._sent_all.clear()
        self._wakeup.set()

    def _publish_locally(self, topic: str) -> None:
        """Re-publish `topic` on the notifier without sending it back to MQTT."""
        self._echoes[topic] += 1
        try:
            self._notifier.publish(topic)
        except ValueError:  # cannot happen for a topic that passed _TOPIC; be safe
            self._echoes[topic] -= 1
            self.counters["invalid_topics"] += 1

    # --- the broker side -------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve, and reconnect with bounded backoff until cancelled."""
        config = self.config
        delay = config.retry_initial
        failures = 0
        while True:
            client = aiomqtt.Client(
                config.host,
                config.port,
                identifier=f"{config.client_name}-{self.origin}",
                clean_session=True,
                keepalive=config.keepalive,
                timeout=config.timeout,
                logger=logging.getLogger("cloudpbx.mqtt.client"),
            )
            try:
                async with client:
                    await client.subscribe(config.subscription, qos=1)
                    self.connected = True
                    self._connected_event.set()
                    self.counters["connections"] += 1
                    logger.info(
                        "connected to the MQTT broker %s (subscribed to %s)%s",
                        config.describe(),
                        config.subscription,
                        f" after {failures} failed attempts" if failures else "",
                    )
                    failures = 0
                    delay = config.retry_initial
                    # Rule (catch-up): whatever we missed while not subscribed.
                    self.counters["catch_up_notifications"] += 1
                    self._publish_locally(CONFIG)
                    await self._serve(client)
            except Exception as error:  # MqttError, or a bug of ours: never end the task
                if not isinstance(error, aiomqtt.MqttError):
                    logger.error("MQTT bridge: unexpected error: %s", _describe(error))
                if self.connected:
                    self.counters["connection_losses"] += 1
                    logger.warning(
                        "connection to the MQTT broker %s lost (%s); reconnecting",
                        config.describe(),
                        _describe(error),
                    )
                else:
                    self.counters["connect_failures"] += 1
                    failures += 1
                    log = logger.warning if failures == 1 else logger.debug
                    log(
                        "cannot connect to the MQTT broker %s (%s); retrying for ever",
                        config.describe(),
                        _describe(error),
                    )
            finally:
                self.connected = False
                self._connected_event.clear()
            # Rule: bounded exponential backoff with jitter.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, config.retry_max)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Receive and send until the session ends (raises `MqttError` then)."""
        sender = asyncio.get_running_loop().create_task(self._send(client))
        try:
            async for message in client.messages:
                self._receive(message)
            raise aiomqtt.MqttError("the broker ended the session")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await sender

    async def _send(self, client: aiomqtt.Client) -> None:
        payload = json.dumps({"origin": self.origin}).encode()
        while True:
            # Topics queued while disconnected go first (rule: sent once connected).
            while self._queued:
                topic = next(iter(self._queued))
                del self._queued[topic]
                try:
                    await client.publish(self.config.mqtt_topic(topic), payload, qos=1)
                except BaseException as error:
                    # Rule: an interrupted send is queued again (before anything queued
                    # after it); `_run` handles the session's end.
                    self._queued = {topic: None, **self._queued}
                    if not isinstance(error, asyncio.CancelledError):
                        self.counters["send_failures"] += 1
                    raise
                self.counters["messages_sent"] += 1
            self._sent_all.set()
            # No await between the check above and this clear: nothing is missed.
            self._wakeup.clear()
            await self._wakeup.wait()

    def _receive(self, message: aiomqtt.Message) -> None:
        self.counters["messages_received"] += 1
        topic = message.topic.value.rsplit("/", 1)[-1]
        if not _TOPIC.fullmatch(topic):
            self.counters["invalid_topics"] += 1
            return
        if _origin_of(message.payload) == self.origin:
            self.counters["own_messages_skipped"] += 1
            return
        self._publish_locally(topic)


def _origin_of(payload: object) -> str | None:
    """The `origin` of a change message, or None (rule: unreadable = another's change)."""
    if not isinstance(payload, bytes | bytearray):
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    origin = document.get("origin") if isinstance(document, dict) else None
    return origin if isinstance(origin, str) else None


def _describe(error: BaseException) -> str:
    """One line: the exception's type and its message's first line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
