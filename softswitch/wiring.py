"""How the switch's pure parts are put together: one place, used by `softswitch run`,
the sans-I/O harness of the tests and the CPU benchmark.

Rules:
- No I/O and no clock reading here: the wall clock (`wall_clock`, for digest nonces and
  bindings) and the token source are arguments, so a test passes its own.
- One nonce manager serves 401 (registrar) and 407 (calls): both run on the wall clock.
  Its secret is an argument: `softswitch run` passes the one kept in the config store
  (`softswitch.registrar.nonce_secret`), so nonces survive a restart.
- One `AuthenticationFailureTracker` serves both too: wrong REGISTER and INVITE digests
  from one address count toward one lockout, which refuses both methods (the
  registrar's rule 0, `caller_auth` rule 2).
- Toll-free call records (issue 5) go to the `call_record_sink` given here (None: not
  recorded); the toll-free schedules run on `wall_clock` too (Asia/Tokyo wall time).
  The toll-free router (rotation state, channel counts) is built once with the call
  service and survives every `SwitchCore.install()`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cloudpbx.callrecords import CallRecordSink
from cloudpbx.snapshot import ConfigSnapshot
from softswitch.b2bua.caller_auth import CallerAuthenticator
from softswitch.b2bua.service import CallService
from softswitch.registrar import AuthenticationFailureTracker, Registrar, RegistrarConfig
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.auth import NonceManager
from softswitch.sip.endpoint import RandomTokens, SipEndpoint
from softswitch.sip.flows import Address

__all__ = [
    "NONCE_LIFETIME",
    "SwitchConfig",
    "SwitchCore",
    "build_switch_core",
    "format_address",
]

NONCE_LIFETIME = 300.0
"""Seconds a digest nonce stays valid (RFC 7616 §3.3); longer than any re-challenge."""


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    """A snapshot with the tables derived from it, ready to install (module rules)."""

    snapshot: ConfigSnapshot
    directory: SnapshotDirectory

    @classmethod
    def of(cls, snapshot: ConfigSnapshot) -> SwitchConfig:
        """Derive the registrar's directory from `snapshot` (no I/O; may run on a thread)."""
        return cls(snapshot, SnapshotDirectory(snapshot))


@dataclass(frozen=True, slots=True)
class SwitchCore:
    """The registrar and the call service of one switch, over one endpoint."""

    registrar: Registrar
    calls: CallService
    directory: SnapshotDirectory
    """The credential and domain lookup the registrar and authenticator share."""
    authenticator: CallerAuthenticator

    def install(self, config: SwitchConfig) -> None:
        """Route on `config` from the next request on (module rules: one step)."""
        self.directory.replace_with(config.directory)
        self.authenticator.replace_snapshot(config.snapshot)
        self.calls.replace_snapshot(config.snapshot)


def format_address(address: Address) -> str:
    """`host:port`, with an IPv6 host in brackets (RFC 3261 §19.1.1 hostport)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_switch_core(
    snapshot: ConfigSnapshot,
    endpoint: SipEndpoint,
    local_address: Address,
    wall_clock: Callable[[], float],
    new_token: Callable[[], str] | None = None,
    nonce_secret: bytes | None = None,
    call_record_sink: CallRecordSink | None = None,
) -> SwitchCore:
    """Registrar and call service over `snapshot`, answering through `endpoint`.

    Args:
        local_address: the switch's SIP address (its Contact in calls).
        wall_clock: seconds since the epoch (nonces, bindings, Date).
        new_token: tags for the calls' outgoing legs (default: 64 random bits, hex).
        nonce_secret: the digest nonce key (default: 32 random octets, so the nonces
            die with the process; `softswitch run` passes the stored one).
        call_record_sink: where toll-free call records go (default: not recorded).
    """
    directory = SnapshotDirectory(snapshot)
    nonces = NonceManager(
        nonce_secret if nonce_secret is not None else secrets.token_bytes(32), NONCE_LIFETIME
    )
    # Wall-clock `now`, so the 200 may carry Date (RFC 3261 §10.3 step 8).
    registrar_config = RegistrarConfig(date_header=True)
    failures = AuthenticationFailureTracker.for_config(registrar_config)
    registrar = Registrar(registrar_config, directory, directory, nonces, endpoint, failures)
    authenticator = CallerAuthenticator(
        snapshot,
        directory,
        directory,
        nonces,
        endpoint,
        registrar_config.default_algorithms,
        failures,
    )
    calls = CallService(
        endpoint,
        snapshot,
        authenticator,
        registrar,
        wall_clock,
        f"sip:{format_address(local_address)}",
        new_token if new_token is not None else RandomTokens(),
        call_record_sink,
    )
    return SwitchCore(registrar, calls, directory, authenticator)
