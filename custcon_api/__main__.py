"""`python -m custcon_api`: serve the Customer Control API with uvicorn. Wiring only.

Rules:
- `python -m custcon_api --database URL --listen HOST:PORT [--token-lifetime SECONDS]`
  migrates the store at URL to the newest schema (idempotent), then serves the API on
  HOST:PORT (an IP literal; `[::1]:8080` for IPv6) until SIGTERM or SIGINT, and exits 0.
  Without `--database`, the store is `data/softswitch.sqlite3`, the switch's default.
- `--mqtt HOST:PORT [--mqtt-prefix PREFIX]` bridges the API's change notifier to that
  MQTT broker (`cloudpbx.mqtt`): every committed change reaches the switches run with
  the same `--mqtt` (and prefix), which rebuild their configuration snapshot on it. The
  API starts and serves with the broker down: the bridge connects in the background and
  sends what was committed meanwhile once connected. Without `--mqtt` the API's
  notifications reach no other process (a switch then needs the operator's reload).
- Provisioning (accounts included) stays with `softswitch provision FILE`.
- Exit status 2 for a usage error, an address that is not IP:PORT, or a store that cannot
  be opened or migrated (one line on stderr, no traceback), as `softswitch` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from collections.abc import Iterator, Sequence

import uvicorn

from cloudpbx.db import (
    create_engine_for,
    create_session_factory,
    database_url_for_directory,
    upgrade,
)
from cloudpbx.mqtt import DEFAULT_PREFIX, MqttBridge, MqttBridgeConfig, parse_broker_address
from cloudpbx.notify import ChangeNotifier
from custcon_api.main import create_app
from custcon_api.settings import CustconSettings

__all__ = ["main", "parse_listen"]

EXIT_OK = 0
EXIT_TROUBLE = 2
DEFAULT_LISTEN = "127.0.0.1:8080"

logger = logging.getLogger("custcon_api")


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:8080` or `[::1]:8080` -> (host, port).

    Raises:
        ValueError: not an IP literal with a port.
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
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{port_text!r} is not a port number")
    return str(address), int(port_text)


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT stop is a normal exit (status 0).

    uvicorn shuts down gracefully on those signals, then re-raises the signal so the
    process dies of it (status -15); a service manager should see a clean stop instead,
    as `softswitch run` gives.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        stop_signals = (signal.SIGTERM, signal.SIGINT)
        previous = {number: signal.signal(number, self.handle_exit) for number in stop_signals}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m custcon_api", description="Serve the Customer Control API."
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL of the config store (default: data/softswitch.sqlite3)",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to serve HTTP on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--token-lifetime",
        metavar="SECONDS",
        type=int,
        default=CustconSettings().token_lifetime_seconds,
        help="lifetime of access tokens (default 900)",
    )
    parser.add_argument(
        "--mqtt",
        metavar="HOST:PORT",
        help="publish committed changes to the switches through this MQTT broker "
        "(default port 1883)",
    )
    parser.add_argument(
        "--mqtt-prefix",
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"first MQTT topic level(s) of the notifications (default: {DEFAULT_PREFIX})",
    )
    return parser.parse_args(argv)


async def _serve(
    server: uvicorn.Server, notifier: ChangeNotifier, mqtt: MqttBridgeConfig | None
) -> None:
    """The API server, with the notifier bridged to MQTT while it serves."""
    bridge: MqttBridge | None = None
    if mqtt is not None:
        bridge = MqttBridge(notifier, mqtt)
        bridge.start()
    try:
        await server.serve()
    finally:
        if bridge is not None:
            # After the server: the changes committed last still leave (bounded).
            await bridge.close()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        host, port = parse_listen(arguments.listen)
        settings = CustconSettings(token_lifetime_seconds=arguments.token_lifetime)
        mqtt: MqttBridgeConfig | None = None
        if arguments.mqtt is not None:
            broker_host, broker_port = parse_broker_address(arguments.mqtt)
            mqtt = MqttBridgeConfig(
                broker_host, broker_port, prefix=arguments.mqtt_prefix, client_name="custcon"
            )
    except ValueError as error:
        sys.stderr.write(f"python -m custcon_api: {error}\n")
        return EXIT_TROUBLE
    database_url = arguments.database or database_url_for_directory()
    try:
        upgrade(database_url)
    except Exception as error:  # any driver or migration error: one line, exit 2
        sys.stderr.write(f"python -m custcon_api: cannot open or migrate the store: {error}\n")
        return EXIT_TROUBLE
    engine = create_engine_for(database_url)
    try:
        notifier = ChangeNotifier()
        app = create_app(create_session_factory(engine), settings=settings, notifier=notifier)
        # On SIGTERM/SIGINT: stop accepting, finish the requests in progress, return.
        config = uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False)
        # uvicorn's own `Server.run`, with the MQTT bridge on the same event loop.
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_serve(_Server(config), notifier, mqtt))
    finally:
        engine.dispose()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
