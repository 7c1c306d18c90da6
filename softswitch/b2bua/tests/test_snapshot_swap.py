"""A configuration swap (`softswitch.wiring.SwitchCore.install`) changes where NEW calls
go and who may register, at once; a call in progress keeps the route it started with,
through its answer and its BYE (a `Call` never reads a snapshot after its start).

The core is built by `build_switch_core`, as `softswitch run` builds it; INVITEs and the
callee's answers go through a real `SipEndpoint` as datagrams.
"""

from __future__ import annotations

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.registrar.snapshot_adapter import SnapshotDirectory
from softswitch.sip.events import RequestReceived
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request, Response
from softswitch.wiring import SwitchConfig, build_switch_core

from .test_routing import (
    CALLEE,
    DOMAIN,
    SNAPSHOT,
    SWITCH,
    TRUNK,
    drain,
    extension,
    invite,
    sent,
    switch_endpoint,
)

MOVED = ("192.0.2.3", 5080)
"""Where extension 2001's static contact is after the swap."""

NEW_SNAPSHOT = ConfigSnapshot.build(
    SNAPSHOT.tenants.values(),
    [
        # 1002 is gone, 2001 moved, 3001 is new.
        *(entry for (_, number), entry in SNAPSHOT.extensions.items() if number in ("1001",)),
        extension("2001", static_contact=f"sip:2001@{MOVED[0]}:{MOVED[1]}"),
        extension("3001", static_contact=f"sip:3001@{MOVED[0]}:{MOVED[1]}"),
    ],
    SNAPSHOT.trunks.values(),
)


def answer_200(request: Request) -> bytes:
    """The callee's 200 OK to the switch's INVITE, with its Contact."""
    lines = ["SIP/2.0 200 OK"]
    for name in ("Via", "From", "Call-ID", "CSeq"):
        lines.extend(f"{name}: {value}" for value in request.headers.get_all(name))
    lines.append(f"To: {request.headers.get('To')};tag=callee")
    lines += [f"Contact: <sip:2001@{CALLEE[0]}:{CALLEE[1]}>", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def in_dialog(method: str, cseq: int, to_tag: str, branch: str) -> bytes:
    """The trunk caller's request inside the call (its dialog with the switch)."""
    return (
        f"{method} sip:{SWITCH[0]}:{SWITCH[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {TRUNK.remote[0]}:{TRUNK.remote[1]};branch=z9hG4bK-{branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:0312345678@{DOMAIN}>;tag=a\r\n"
        f"To: <sip:2001@{DOMAIN}>;tag={to_tag}\r\n"
        f"Call-ID: c1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_a_call_in_progress_keeps_its_route_and_new_calls_use_the_new_snapshot() -> None:
    endpoint = switch_endpoint()
    core = build_switch_core(SNAPSHOT, endpoint, SWITCH, lambda: 0.0, nonce_secret=b"n" * 32)
    calls = core.calls

    # A call to 2001 starts under the old snapshot: to its old static contact.
    endpoint.receive_datagram(bytes(invite("2001", caller="0312345678")), TRUNK.remote, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert calls.handle_invite(event, 0.0) is None
    ((uac_invite, flow),) = [(m, f) for m, f in sent(endpoint) if isinstance(m, Request)]
    assert flow.remote == CALLEE

    core.install(SwitchConfig.of(NEW_SNAPSHOT))

    # The call in progress: the old callee's answer reaches the caller ...
    endpoint.receive_datagram(answer_200(uac_invite), CALLEE, 0.5)
    assert drain(endpoint, calls, 0.5) == []
    answered = sent(endpoint)
    ((ok, _),) = [(m, f) for m, f in answered if isinstance(m, Response)]
    assert ok.status_code == 200 and ok.to_address.tag is not None
    to_tag = ok.to_address.tag
    # ... the switch ACKs the callee where the call started ...
    assert [(m.method, f.remote) for m, f in answered if isinstance(m, Request)] == [
        ("ACK", CALLEE)
    ]
    # ... and the caller's BYE goes there too, not to 2001's new contact.
    endpoint.receive_datagram(in_dialog("ACK", 1, to_tag, "ack1"), TRUNK.remote, 0.6)
    endpoint.receive_datagram(in_dialog("BYE", 2, to_tag, "bye1"), TRUNK.remote, 0.7)
    assert drain(endpoint, calls, 0.7) == []
    relayed = [(m.method, f.remote) for m, f in sent(endpoint) if isinstance(m, Request)]
    assert relayed == [("BYE", CALLEE)]
    assert len(calls) == 1  # waiting for the callee's 200 to the BYE

    # New calls route on the new snapshot: 2001 moved, 1002 gone, 3001 new.
    def new_call(callee: str, call_id: str) -> tuple[int | None, Flow | None]:
        request = invite(callee, caller="0312345678", call_id=call_id)
        endpoint.receive_datagram(bytes(request), TRUNK.remote, 1.0)
        event = endpoint.next_event()
        assert isinstance(event, RequestReceived)
        answer = calls.handle_invite(event, 1.0)
        invites = [f for m, f in sent(endpoint) if isinstance(m, Request)]
        return (None if answer is None else answer.status_code), (
            invites[0] if invites else None
        )

    assert new_call("2001", "c2") == (None, Flow(Transport.UDP, MOVED))
    assert new_call("3001", "c3") == (None, Flow(Transport.UDP, MOVED))
    assert new_call("1002", "c4") == (404, None)


def test_install_replaces_the_directory_in_place() -> None:
    core = build_switch_core(SNAPSHOT, switch_endpoint(), SWITCH, lambda: 0.0)
    directory = core.directory
    assert directory.lookup(DOMAIN, "1002") is not None
    core.install(SwitchConfig.of(NEW_SNAPSHOT))
    # The registrar and the authenticator hold this very object: they see the change.
    assert core.directory is directory
    assert directory.lookup(DOMAIN, "1002") is None
    assert directory.lookup(DOMAIN, "3001") is not None
    assert SnapshotDirectory(NEW_SNAPSHOT).lookup(DOMAIN, "3001") == directory.lookup(
        DOMAIN, "3001"
    )
