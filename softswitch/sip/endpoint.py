"""SipEndpoint: the one sans-I/O object the asyncio adapters drive (aioquic's pattern).

Rules:
- Inputs are method calls, each taking `now` (the caller's clock, seconds): received
  datagrams and stream bytes, connection open/close, the TU's requests and responses,
  and `handle_timer(now)` once `get_timer()`'s deadline has passed. Outputs are pulled:
  `data_to_send()` (bytes and the `Flow` to send them on), `next_event()`,
  `connections_to_close()`. After any input, drain all three and re-arm the timer.
  Nothing here touches a socket, a clock, or calls back into the application.
- Receiving (RFC 3261 §18.2.1, §18.1.2): each message is parsed and `validate()`d.
  A request gets `received=` on its top Via when the sent-by host is not the source
  address, and `rport=<source port>` (with `received=`) when it asked for it (RFC 3581
  §4). Each received message ends in exactly one event: `RequestReceived`,
  `ResponseReceived`, `CancelReceived` or `MessageDropped` (with `counters[reason]`
  incremented by one). Drop reasons: `malformed`, `no_usable_via`, `stray_response`,
  `via_mismatch`, `retransmission_absorbed`, `ack_absorbed`, `stray_ack`,
  `cancel_unmatched`, `cancel_after_final_response`, `unframable_stream`.
- Malformed requests (§8.2.6, RFC 4475): the top Via, From, To, Call-ID and CSeq lines
  are recovered from the raw bytes and the request is answered statelessly with the
  error's status (400, 505, 513) and the reason "<standard phrase> (<detail>)". The
  answer needs a usable top Via (to route it) and a CSeq (for the client to match it);
  From, To and Call-ID are copied when present (RFC 4475 §3.3.1 insuf lacks all three
  and still gets its 400). With no usable Via, or no CSeq, the request is dropped.
  A malformed ACK and a malformed response are never answered.
- Transaction matching (§17.1.3, §17.2.3): responses by top Via branch and CSeq method;
  requests by branch, sent-by and method (an ACK looks for its INVITE); a branch
  without the `z9hG4bK` cookie (or the bare cookie, RFC 4475 §3.2.1) falls back to the
  RFC 2543 rule: Request-URI, To tag, From tag, Call-ID, CSeq number and top Via.
  A matched request is a retransmission: absorbed, the last response sent again.
- CANCEL (§9.2) is answered here: 481 when no INVITE server transaction matches, else
  200 (with the INVITE's To tag) and `CancelReceived` while the INVITE is still in
  Proceeding; the TU then answers the INVITE, normally with 487.
- An INVITE server transaction answers 100 Trying at once (§17.2.1 allows it whenever
  the TU may take over 200 ms), so INVITE retransmissions always get a response; with
  `EndpointConfig.trying_delay` above 0 (the running switch: `TRYING_DELAY`) the 100 is
  deferred that long and sent only if the TU has not answered by then or the INVITE
  is retransmitted first (§17.2.1's "unless it knows that the TU will generate a
  provisional or final response within 200 ms"; `ServerInviteTransaction.defer_trying`).
- 2xx to INVITE: the server transaction retransmits it for the TU until the ACK comes
  (§13.3.1.4; see transaction.py; `EndpointConfig.retransmit_success_responses`).
  The ACK of a 2xx has its own branch (§13.2.2.4), so it is matched by Call-ID, CSeq
  number, From tag and To tag, stops the retransmissions and goes up as
  `RequestReceived(transaction_key=None)`. The TU sends it with `send_ack_for_2xx`.
- Response routing (§18.2.2, RFC 3581 §4): over TCP the connection the request came on
  (if it closed, a new one to `received` and the sent-by port); over UDP `maddr` if
  present, else `received` (or the sent-by host) with `rport` if present, else the
  sent-by port (5060 by default). A request that came over UDP is answered over UDP
  whatever its Via says.
- Sending (§8.1.1, §18.1.1): `send_request` completes the request in place: our top Via
  `SIP/2.0/<transport> host:port;branch=z9hG4bK...;rport` unless the TU put a Via with
  a branch, and `Max-Forwards: 70` if missing. A UDP request over
  `udp_size_threshold` bytes goes over TCP, with the top Via's transport changed.
- Stateless refusal of new INVITEs (§8.2.7; issue 6 item 7, overload control): the TU
  may install `new_invite_gate`, asked about every INVITE without a To tag that matches
  no transaction, before any transaction exists. A response it returns (503 to an
  overloaded or draining switch) is sent at once, with no server transaction, no 100
  Trying, no retransmission and no timer: a refusal costs a parse and one datagram,
  which is what lets an overloaded switch keep refusing cheaply. Its To tag is a keyed
  hash of the request (Call-ID, From tag, top Via branch, CSeq number), so a
  retransmission of the INVITE gets the same tag (§8.2.7: "the same tag for the same
  request consistently"), and starts with `STATELESS_TAG_PREFIX` (never in our random
  hex tags): the ACK of such a response is absorbed here and counted
  (`stateless_acks_absorbed`; §8.2.7: a stateless UAS MUST ignore ACK), a CANCEL finds
  no INVITE transaction and gets 481 (§9.2).
- Every transaction is freed when it reaches Terminated (`TransactionTerminated` is
  emitted); `table_sizes()` shows what is held, for leak checks and gauges.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CancelReceived,
    MessageDropped,
    RequestReceived,
    SipEvent,
    TransactionTerminated,
)
from .flows import Address, Flow, Transport
from .framing import KEEPALIVE_PING, PONG, StreamFramer
from .headers import (
    Via,
    canonical_key,
    parse_parameters,
    parse_via_values,
    remember_via,
    split_comma_values,
)
from .message import REASON_PHRASES, Headers, ParserLimits, Request, Response, parse_message
from .timers import DeadlineHeap, TimerValues
from .transaction import (
    MAGIC_COOKIE,
    ClientInviteState,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteState,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Transmit,
)
from .uri import format_host_port

__all__ = [
    "STATELESS_TAG_PREFIX",
    "TRYING_DELAY",
    "EndpointConfig",
    "RandomTokens",
    "SipEndpoint",
    "client_transaction_key",
    "server_transaction_key",
]

DEFAULT_PORT = 5060  # RFC 3261 §18.1.1, §19.1.2
_UDP_FLOW_CACHE_SIZE = 4096
_DEFAULT_MAX_FORWARDS = "70"  # RFC 3261 §8.1.1.6
_MAXIMUM_REASON_DETAIL = 120
TRYING_DELAY = 0.2
"""The running switch's `EndpointConfig.trying_delay`: §17.2.1's 200 ms."""
STATELESS_TAG_PREFIX = "sl."
"""Starts the To tag of every stateless response (module rules); `.` is a token
character (§25.1) our hex random tags never contain."""

ClientTransactionType = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransactionType = ServerInviteTransaction | ServerNonInviteTransaction


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What the endpoint needs to know about itself.

    Attributes:
        local_host: our address for Via sent-by, e.g. "127.0.0.1"; responses whose
            top Via names another sent-by are dropped (§18.1.2).
        local_port: our port for Via sent-by.
        timers: T1, T2, T4.
        limits: parser size limits (513 beyond them).
        udp_size_threshold: RFC 3261 §18.1.1: a request larger than this goes over TCP.
        retransmit_success_responses: retransmit the TU's 2xx to INVITE until the ACK
            arrives (§13.3.1.4). Set False only if the TU does it itself.
        trying_delay: seconds a new INVITE waits for the TU's first response before
            its 100 Trying (module rules); 0: the 100 goes at once.
    """

    local_host: str
    local_port: int
    timers: TimerValues = TimerValues()
    limits: ParserLimits = ParserLimits()
    udp_size_threshold: int = 1300
    retransmit_success_responses: bool = True
    trying_delay: float = 0.0


class RandomTokens:
    """64-bit random tokens in hex, for branches, tags and Call-IDs (RFC 3261 §8.1.1.7,
    §19.3: at least 32 bits of cryptographic randomness).

    The bytes come from `os.urandom` 4 KiB at a time: one system call per 512 tokens
    instead of one per token (a call needs about six).
    """

    __slots__ = ("_pool", "_position")

    _POOL_SIZE = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._position = 0

    def __call__(self) -> str:
        position = self._position
        if position + 8 > len(self._pool):
            self._pool = os.urandom(self._POOL_SIZE)
            position = 0
        self._position = position + 8
        return self._pool[position:position + 8].hex()


_default_random_token = RandomTokens()


# ------------------------------------------------------------------- transaction keys


_RESPONSE_COPIED = {
    "via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"
}
"""The headers a response copies from its request (§8.2.6.2), with their written names."""
_TO_PLACEHOLDER = ("to", "To", "")


def _has_rfc3261_branch(via: Via) -> bool:
    """§17.2.3: a branch beginning with the magic cookie identifies the transaction.
    The bare cookie (RFC 4475 §3.2.1 badbranch) identifies nothing: RFC 2543 rules."""
    branch = via.branch
    return branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(
        MAGIC_COOKIE
    )


def _sent_by_key(via: Via) -> str:
    return f"{via.host.lower()}:{via.port or DEFAULT_PORT}"


def _via_key(via: Via) -> str:
    """The top Via for RFC 2543 matching, without what the receiver adds (§18.2.1)."""
    parameters = sorted(
        (name, value or "")
        for name, value in via.parameters.items()
        if name not in ("received", "rport")
    )
    return f"{via.transport} {_sent_by_key(via)} {parameters}"


def client_transaction_key(branch: str | None, method: str) -> str:
    """§17.1.3: the top Via branch and the CSeq method identify a client transaction."""
    return f"client|{(branch or '').lower()}|{method}"


def server_transaction_key(
    request: Request, method: str | None = None, to_tag: str | None = None
) -> str:
    """The key of the server transaction `request` belongs to (§17.2.3).

    Args:
        request: a validated request.
        method: the transaction's method; by default the request's, INVITE for ACK.
        to_tag: RFC 2543 matching only: the To tag to match instead of the request's.
    """
    via = request.top_via
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    branch = via.parameters.get("branch")
    if branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(MAGIC_COOKIE):
        # _has_rfc3261_branch and _sent_by_key, inlined (a key per received request and
        # per response built).
        return f"server|{branch.lower()}|{via.host.lower()}:{via.port or DEFAULT_PORT}|{method}"
    if to_tag is None:
        to_tag = request.to_address.tag or ""
    return "|".join(
        (
            "server-2543",
            method,
            request.uri_text,
            to_tag,
            request.from_address.tag or "",
            request.call_id,
            str(request.cseq.number),
            _via_key(via),
        )
    )


# -------------------------------------------------------------- routing and Via helpers


def _unreliable_response_address(via: Via) -> Address:
    """§18.2.2 for unreliable transports, with RFC 3581 §4's rport."""
    maddr = via.maddr
    if maddr:
        return (maddr, via.port or DEFAULT_PORT)
    host = via.received or via.host
    rport = via.rport
    if rport is None or isinstance(rport, bool):
        return (host, via.port or DEFAULT_PORT)
    return (host, rport)


def _reconnect_address(via: Via) -> Address:
    """§18.2.2: a closed connection is reopened to `received` and the sent-by port."""
    return (via.received or via.host, via.port or DEFAULT_PORT)


def _same_host(via_host: str, address: str) -> bool:
    return via_host.lower().strip("[]") == address.lower().strip("[]")


def _stamped_via(via: Via, source: Address) -> Via | None:
    """The top Via with `received`/`rport` as §18.2.1 and RFC 3581 §4 want, or None when
    nothing changes."""
    parameters = dict(via.parameters)
    if via.rport is True:
        parameters["rport"] = str(source[1])
        parameters["received"] = source[0]
    elif not _same_host(via.host, source[0]):
        parameters["received"] = source[0]
    else:
        return None
    return Via(via.transport, via.host, via.port, parameters, via.protocol)


_LENIENT_VIA_RE = re.compile(
    r"[ \t]*([A-Za-z]+[ \t]*/[ \t]*[^/ \t]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


def _lenient_via(text: str) -> Via | None:
    """The top Via of a malformed request, parsed well enough to route a response:
    any protocol version (RFC 4475 badvers), parameters kept if they parse."""
    try:
        return parse_via_values(text)[0]
    except RemoteProtocolError:
        pass
    first = text.split(",", 1)[0]
    match = _LENIENT_VIA_RE.match(first)
    if match is None:
        return None
    protocol, transport, host, port_text = match.groups()
    port = int(port_text) if port_text is not None else None
    if port is not None and port > 65535:
        return None
    try:
        rest = first[match.end():].strip(" \t")
        parameters = parse_parameters(rest) if rest else {}
        rport = parameters.get("rport")
        if rport and not rport.isdigit():
            del parameters["rport"]
    except RemoteProtocolError:
        parameters = {}
    return Via(transport.upper(), host.strip("[]"), port, parameters, protocol.replace(" ", ""))


_RECOVERED_KEYS = ("via", "from", "to", "call-id", "cseq")
_FOLDED_LINE_RE = re.compile(r"\r?\n[ \t]+")
_LINE_BREAK_RE = re.compile(r"\r?\n")
_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


@dataclass(slots=True)
class _RecoveredRequest:
    """What could be read of a message that failed to parse or validate."""

    is_response: bool
    method: str
    fields: dict[str, list[str]]


def _recover(data: bytes, limits: ParserLimits) -> _RecoveredRequest:
    text = data[: limits.max_message_size].decode("utf-8", "surrogateescape").lstrip("\r\n")
    end = text.find("\r\n\r\n")
    if end < 0:
        end = text.find("\n\n")
    head = text if end < 0 else text[:end]
    lines = _LINE_BREAK_RE.split(_FOLDED_LINE_RE.sub(" ", head))
    start = lines[0]
    fields: dict[str, list[str]] = {}
    for line in lines[1 : limits.max_headers + 1]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        try:
            key = canonical_key(name.strip(" \t"))
        except RemoteProtocolError:
            continue
        if key in _RECOVERED_KEYS:
            fields.setdefault(key, []).append(value.strip(" \t"))
    return _RecoveredRequest(start[:4].upper() == "SIP/", start.split(" ", 1)[0], fields)


def _reason_detail(detail: str) -> str:
    """A reason-phrase-safe rendering of an error detail: printable ASCII, bounded."""
    cleaned = "".join(character if " " <= character <= "~" else "?" for character in detail)
    return cleaned[:_MAXIMUM_REASON_DETAIL]


@dataclass(slots=True)
class _Connection:
    remote: Address
    framer: StreamFramer | None
    """None once the stream could not be framed: the rest of it is ignored."""


# ------------------------------------------------------------------------- the endpoint


class SipEndpoint:
    """The SIP transport and transaction layers of one listening address, sans-I/O.

    Args:
        config: our address, timers and limits.
        random_token: returns a fresh random token for branches and tags (`RandomTokens`
            by default; tests pass a deterministic one).

    Attributes:
        counters: `MessageDropped` reasons (one per dropped message) and a few other
            things worth a metric (`keepalive_pings`).
    """

    def __init__(
        self, config: EndpointConfig, random_token: Callable[[], str] | None = None
    ) -> None:
        self.config = config
        self._random_token = random_token or _default_random_token
        self._via_sent_by = format_host_port(config.local_host, config.local_port)
        # Our Via's host and port exactly as parsing our sent-by gives them back (IPv6
        # brackets off), or None if it would not parse: then _prepare_request lets the
        # parser read (and refuse) the Via it wrote, as it always did.
        self._via_host_port: tuple[str, int | None] | None = None
        try:
            parsed = parse_via_values(f"SIP/2.0/UDP {self._via_sent_by};rport")
        except RemoteProtocolError:
            pass
        else:
            if len(parsed) == 1:
                self._via_host_port = (parsed[0].host, parsed[0].port)
        self.counters: Counter[str] = Counter()
        self._client: dict[str, ClientTransactionType] = {}
        self._server: dict[str, ServerTransactionType] = {}
        # §8.2.2.2: (From tag, Call-ID, CSeq number, CSeq method) -> server keys.
        self._merge_index: dict[tuple[str, str, int, str], set[str]] = {}
        # §13.2.2.4: (Call-ID, CSeq number, From tag, To tag) of a 2xx -> server key.
        self._success_ack_index: dict[tuple[str, int, str, str], str] = {}
        self._success_ack_keys: dict[str, tuple[str, int, str, str]] = {}
        # INVITE client key -> (CANCEL client key, CANCEL) waiting for a provisional.
        self._pending_cancels: dict[str, tuple[str, Request]] = {}
        self._deadlines = DeadlineHeap()
        # remote address -> its UDP Flow: flows are frozen values, and a switch talks
        # to the same peers all the time (building one costs a microsecond).
        self._udp_flows: dict[Address, Flow] = {}
        self._connections: dict[int, _Connection] = {}
        self._connections_to_close: list[int] = []
        self._outbound: list[tuple[bytes, Flow]] = []
        self._events: deque[SipEvent] = deque()
        self._stateless_tag_key = os.urandom(16)
        self.new_invite_gate: Callable[[Request, float], Response | None] | None = None
        """Asked about each new INVITE before a transaction exists; a response it
        returns is sent statelessly (module rules: stateless refusal)."""

    # ================================================================== pulled outputs
    def data_to_send(self) -> list[tuple[bytes, Flow]]:
        """Drain the outbound queue: each item is one whole message (or a CRLF pong)
        and the flow to send it on. A `Flow(TCP, remote, None)` means any connection
        to `remote`, opening one if needed."""
        outbound = self._outbound
        self._outbound = []
        return outbound

    def next_event(self) -> SipEvent | None:
        """The next event for the TU, or None when there is none."""
        return self._events.popleft() if self._events else None

    def connections_to_close(self) -> list[int]:
        """Connections the adapter should close (their stream could not be framed,
        RFC 3261 §18.3); drained by the call."""
        connection_ids = self._connections_to_close
        self._connections_to_close = []
        return connection_ids

    def get_timer(self) -> float | None:
        """The earliest absolute deadline of every transaction, or None."""
        return self._deadlines.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`; then drain the outputs."""
        for key in self._deadlines.pop_due(now):
            transaction: ClientTransactionType | ServerTransactionType | None = (
                self._client.get(key) or self._server.get(key)
            )
            if transaction is not None:
                transaction.handle_timer(now)
                self._after(transaction, now)

    # ================================================================ received bytes
    def receive_datagram(self, data: bytes, remote: Address, now: float) -> None:
        """One UDP datagram from `remote`. Then drain the outputs."""
        if not data.strip(b"\r\n \t\x00"):
            # CRLF keep-alives some UAs send over UDP: nothing to answer (RFC 5626
            # §3.5.1 uses STUN on UDP, and the adapter never hands us STUN).
            self.counters["keepalive_pings"] += 1
            return
        self._receive_message(data, self._udp_flow(remote), False, now)

    def connection_opened(self, connection_id: int, remote: Address, now: float) -> None:
        """A TCP connection (accepted or opened by the adapter) is ready."""
        self._connections[connection_id] = _Connection(remote, StreamFramer(self.config.limits))

    def receive_stream_data(self, connection_id: int, data: bytes, now: float) -> None:
        """Bytes read from a TCP connection; framed by Content-Length (§18.3).

        A double-CRLF keep-alive ping is answered with a CRLF pong (RFC 5626 §4.4.1).
        A stream that cannot be framed is reported (`MessageDropped`,
        `unframable_stream`) and listed in `connections_to_close()`.

        Raises:
            LocalProtocolError: `connection_opened` was never called for this id.
        """
        connection = self._connections.get(connection_id)
        if connection is None:
            raise LocalProtocolError(f"data on unknown connection {connection_id}")
        framer = connection.framer
        if framer is None:
            return
        flow = Flow(Transport.TCP, connection.remote, connection_id)
        try:
            items = framer.feed(data)
        except RemoteProtocolError as error:
            connection.framer = None
            self._connections_to_close.append(connection_id)
            self._emit(MessageDropped("unframable_stream", error.reason, None, flow))
            return
        for item in items:
            if item is KEEPALIVE_PING:
                self.counters["keepalive_pings"] += 1
                self._outbound.append((PONG, flow))
            elif isinstance(item, bytes):
                self._receive_message(item, flow, True, now)

    def connection_closed(self, connection_id: int, now: float) -> None:
        """A TCP connection is gone. Server transactions that answered on it will open
        a new one to the request's `received` address and sent-by port (§18.2.2)."""
        self._connections.pop(connection_id, None)
        if connection_id in self._connections_to_close:
            self._connections_to_close.remove(connection_id)
        for transaction in self._server.values():
            flow = transaction.response_flow
            if flow.connection_id == connection_id:
                transaction.response_flow = Flow(
                    Transport.TCP, _reconnect_address(transaction.top_via)
                )

    def transport_error(self, flow: Flow, now: float, reason: str) -> None:
        """The adapter could not send on `flow` (connection refused, ICMP error).

        Every transaction sending on it reports `TransportError` and terminates
        (§17.1.4, §17.2.4). A flow without a connection id matches any connection to
        its remote address.
        """
        transactions: list[ClientTransactionType | ServerTransactionType] = [
            *self._client.values(),
            *self._server.values(),
        ]
        for transaction in transactions:
            if transaction.terminated:
                continue
            used = (
                transaction.flow
                if isinstance(transaction, ClientInviteTransaction | ClientNonInviteTransaction)
                else transaction.response_flow
            )
            if used.transport is not flow.transport or used.remote != flow.remote:
                continue
            if flow.connection_id is not None and used.connection_id not in (
                None,
                flow.connection_id,
            ):
                continue
            transaction.transport_error(reason, now)
            self._after(transaction, now)

    # ================================================================= the TU's calls
    def send_request(self, request: Request, now: float, destination: Flow) -> str:
        """Send a request (not ACK) through a new client transaction (§17.1).

        The request is completed in place (module rules): read its top Via for the
        branch. To send it again (e.g. with credentials), copy it, remove its Via
        and give it a new CSeq.

        Returns:
            The client transaction key: responses come as `ResponseReceived` with it.

        Raises:
            LocalProtocolError: an ACK (use `send_ack_for_2xx`; the ACK of a non-2xx is
                the transaction's), a request that fails `validate()`, or a branch
                already in use.
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK has no client transaction: use send_ack_for_2xx")
        flow, data = self._prepare_request(request, destination)
        key = client_transaction_key(request.top_via.branch, request.method)
        if key in self._client or (
            self._pending_cancels
            and any(key == cancel_key for cancel_key, _ in self._pending_cancels.values())
        ):
            raise LocalProtocolError(f"branch already in use: {key}")
        self._start_client_transaction(key, request, flow, now, data)
        return key

    def send_ack_for_2xx(self, ack: Request, now: float, destination: Flow) -> None:
        """Send the ACK of a 2xx statelessly (§13.2.2.4): it has a branch of its own,
        ours unless the TU put a Via with a branch (for resending the same ACK to a
        retransmitted 2xx, resend the same object)."""
        if ack.method != "ACK":
            raise LocalProtocolError(f"send_ack_for_2xx got a {ack.method}")
        self._outbound.append(self._prepare_request(ack, destination)[::-1])

    def send_cancel(self, invite_transaction_key: str, now: float) -> str:
        """Cancel a pending INVITE (§9.1) through a non-INVITE client transaction.

        The CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq number,
        top Via (so it has the INVITE's branch) and Route headers. §9.1 forbids sending
        it before a provisional response has arrived: in Calling it is held and sent
        when the first 1xx arrives. If a final response or a timeout ends the INVITE
        first, the held CANCEL is never sent and `TransactionTerminated` is emitted for
        its key. Calling this again for the same INVITE returns the same key.

        Returns:
            The CANCEL's client transaction key.

        Raises:
            LocalProtocolError: no such INVITE client transaction, or it already
                received a final response (a CANCEL would be a no-op, §9.1).
        """
        invite = self._client.get(invite_transaction_key)
        if not isinstance(invite, ClientInviteTransaction):
            raise LocalProtocolError(f"no INVITE client transaction {invite_transaction_key}")
        if invite.state not in (ClientInviteState.CALLING, ClientInviteState.PROCEEDING):
            raise LocalProtocolError(
                f"the INVITE is {invite.state.name}: it has a final response (RFC 3261 §9.1)"
            )
        cancel = self._build_cancel(invite.request)
        key = client_transaction_key(cancel.top_via.branch, "CANCEL")
        pending = self._pending_cancels.get(invite_transaction_key)
        if key in self._client or pending is not None:
            return key
        if invite.state is ClientInviteState.CALLING:
            self._pending_cancels[invite_transaction_key] = (key, cancel)
        else:
            self._start_client_transaction(key, cancel, invite.flow, now)
        return key

    def send_response(
        self, response: Response, now: float, transaction_key: str | None = None
    ) -> None:
        """Send a response through its server transaction, or statelessly (§18.2.2).

        With `transaction_key` None the flow comes from the top Via alone: a TCP Via
        gets `Flow(TCP, (received or host, port), None)`, anything else UDP as §18.2.2
        and RFC 3581 say.

        Raises:
            LocalProtocolError: a response without valid Via, From, To, Call-ID and
                CSeq; a response to ACK; an unknown or terminated transaction; a
                response for another method; or one the transaction's state forbids
                (a second final response).
        """
        try:
            # The headers routing and matching read (§8.2.6.2); a full validate() of
            # every response we build ourselves would double the cost of sending.
            response.top_via  # noqa: B018
            response.from_address  # noqa: B018
            response.to_address  # noqa: B018
            response.call_id  # noqa: B018
            response.cseq  # noqa: B018
        except RemoteProtocolError as error:
            raise LocalProtocolError(
                f"invalid {response.status_code} response: {error.reason}"
            ) from error
        if response.cseq.method == "ACK":
            raise LocalProtocolError("an ACK is never answered (RFC 3261 §17.1.1.3)")
        if transaction_key is None:
            self._outbound.append((response.to_bytes(), self._stateless_flow(response.top_via)))
            return
        transaction = self._server.get(transaction_key)
        if transaction is None:
            raise LocalProtocolError(f"no server transaction {transaction_key}")
        if response.cseq.method != transaction.method:
            raise LocalProtocolError(
                f"a response to {response.cseq.method} sent on a {transaction.method} transaction"
            )
        transaction.send_response(response, now)
        self._after(transaction, now)

    def create_response(
        self,
        request: Request,
        status_code: int,
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> Response:
        """Build a response to `request` as RFC 3261 §8.2.6 says.

        Copies every Via (in order), From, To, Call-ID and CSeq; adds a To tag to
        responses above 100 when the request's To has none: `to_tag` if given, else the
        tag this server transaction already uses, else a new one (§8.2.6.2: every
        response of a transaction carries the same tag). Copies Timestamp into a 100
        (§8.2.6.1). Record-Route (§12.1.1) is the dialog layer's to copy.

        Raises:
            LocalProtocolError: `request` is an ACK, or the status is not 100-699.
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK is never answered (RFC 3261 §17.1.1.3)")
        if not 100 <= status_code <= 699:
            raise LocalProtocolError(f"status code {status_code} out of range")
        source = request.headers
        fields: list[tuple[str, str, str]] = []
        to_value = ""
        to_positions: list[int] = []
        for key, _, value in source._fields:
            written = _RESPONSE_COPIED.get(key)
            if written is not None:
                if key == "to":
                    to_value = value
                    to_positions.append(len(fields))
                    fields.append(_TO_PLACEHOLDER)
                else:
                    fields.append((key, written, value))
        to_address = request.to_address
        if status_code > 100 and to_address.tag is None:
            transaction = self._server.get(server_transaction_key(request))
            if to_tag is None and transaction is not None:
                to_tag = transaction.local_tag
            if to_tag is None:
                to_tag = self._random_token()
            if transaction is not None and transaction.local_tag is None:
                transaction.local_tag = to_tag
            to_value = f"{to_value};tag={to_tag}"
            to_address = to_address.copy()
            to_address.parameters["tag"] = to_tag
        to_field = ("to", "To", to_value)
        for position in to_positions:
            fields[position] = to_field
        if status_code == 100:
            timestamp = source.get("timestamp")
            if timestamp is not None:
                fields.append(("timestamp", "Timestamp", timestamp))
        headers = Headers(fields)
        # The copied values are the request's: so are their parsed forms, which the send
        # path reads at once (§8.2.6.2 matching headers).
        typed = headers._typed
        typed["via"] = request.vias
        typed["from"] = request.from_address
        typed["to"] = to_address
        typed["call-id"] = request.call_id
        typed["cseq"] = request.cseq
        return Response(status_code, reason, headers)

    def _trying_response(self, request: Request) -> Response:
        return self.create_response(request, 100)

    def create_stateless_response(
        self, request: Request, status_code: int, reason: str | None = None
    ) -> Response:
        """A final response to `request` for `new_invite_gate` to return: built as
        `create_response` does, with the stateless To tag (module rules: §8.2.7, the
        same tag for every retransmission of the request)."""
        via = request.top_via
        identity = "\n".join(
            (
                request.call_id,
                request.from_address.tag or "",
                via.branch or "",
                str(request.cseq.number),
            )
        )
        digest = hashlib.blake2b(
            identity.encode("utf-8", "surrogateescape"),
            key=self._stateless_tag_key,
            digest_size=8,
        ).hexdigest()
        return self.create_response(
            request, status_code, reason, STATELESS_TAG_PREFIX + digest
        )

    def is_merged_request(self, request: Request) -> bool:
        """§8.2.2.2: a request without To tag whose From tag, Call-ID and CSeq match an
        ongoing server transaction that it does not match itself (it came by another
        path, e.g. a forking proxy): the TU should answer 482 (Loop Detected)."""
        if request.to_address.tag is not None:
            return False
        cseq = request.cseq
        keys = self._merge_index.get(
            (request.from_address.tag or "", request.call_id, cseq.number, cseq.method)
        )
        if not keys:
            return False
        own = server_transaction_key(request)
        return any(key != own for key in keys)

    # ================================================================ introspection
    def transaction_state(self, transaction_key: str) -> enum.Enum | None:
        """The state Enum of a live transaction, or None once it is terminated."""
        transaction: ClientTransactionType | ServerTransactionType | None = (
            self._client.get(transaction_key) or self._server.get(transaction_key)
        )
        return None if transaction is None else transaction.state

    def table_sizes(self) -> dict[str, int]:
        """How much the endpoint holds: all zero once every transaction ended and
        every connection closed (for leak tests and gauges)."""
        return {
            "client_transactions": len(self._client),
            "server_transactions": len(self._server),
            "merge_index": len(self._merge_index),
            "success_ack_index": len(self._success_ack_index),
            "pending_cancels": len(self._pending_cancels),
            "timers": len(self._deadlines),
            "connections": len(self._connections),
        }

    # ================================================================ receive path
    def _receive_message(self, data: bytes, flow: Flow, stream: bool, now: float) -> None:
        try:
            message = parse_message(data, stream=stream, limits=self.config.limits)
            message.validate()
        except RemoteProtocolError as error:
            self._reject_malformed(data, flow, error)
            return
        # parse_message returns exactly a Request or a Response: an exact type test
        # answers as isinstance() would, without ABCMeta.__instancecheck__ (Message is
        # an ABC, whose isinstance is a Python call whenever the answer is False).
        if type(message) is Response:
            self._receive_response(message, flow, now)
        else:
            self._receive_request(cast(Request, message), flow, now)

    def _receive_response(self, response: Response, flow: Flow, now: float) -> None:
        via = response.top_via
        key = client_transaction_key(via.branch, response.cseq.method)
        transaction = self._client.get(key)
        ours = _same_host(via.host, self.config.local_host) and (
            (via.port or DEFAULT_PORT) == self.config.local_port
        )
        if not ours and (
            transaction is None or _sent_by_key(transaction.top_via) != _sent_by_key(via)
        ):
            # §18.1.2: "the response MUST be silently discarded".
            self._emit(
                MessageDropped(
                    "via_mismatch", f"top Via sent-by {via.sent_by} is not ours", None, flow
                )
            )
            return
        if transaction is None:
            self._emit(
                MessageDropped(
                    "stray_response",
                    f"{response.status_code} to {response.cseq.method} matches no transaction",
                    None,
                    flow,
                )
            )
            return
        transaction.receive_response(response, flow, now)
        self._after(transaction, now)

    def _receive_request(self, request: Request, flow: Flow, now: float) -> None:
        method = request.method
        key = server_transaction_key(request)
        invite: ServerInviteTransaction | None = None
        transaction: ServerTransactionType | None
        if method == "ACK":
            transaction = self._match_ack(request)
        else:
            transaction = self._server.get(key)
            if transaction is None and method == "CANCEL":
                invite = self._match_cancelled_invite(request)
        stamped = _stamped_via(request.top_via, flow.remote)
        if stamped is not None:
            request.replace_top_via(stamped)

        if transaction is not None:
            # A retransmission, or an ACK of the INVITE transaction (§17.2.3).
            transaction.receive_request(request, flow, now)
            self._after(transaction, now)
            return
        if method == "ACK":
            self._receive_ack_of_success(request, flow, now)
            return
        response_flow = self._response_flow(request.top_via, flow)
        gate = self.new_invite_gate
        if gate is not None and method == "INVITE" and request.to_address.tag is None:
            refusal = gate(request, now)
            if refusal is not None:
                # Module rules: stateless refusal (§8.2.7), no transaction at all.
                self.counters["stateless_responses"] += 1
                self._outbound.append((refusal.to_bytes(), response_flow))
                return
        server: ServerTransactionType
        if method == "INVITE":
            server = ServerInviteTransaction(
                key,
                request,
                response_flow,
                self.config.timers,
                self.config.retransmit_success_responses,
            )
        else:
            server = ServerNonInviteTransaction(key, request, response_flow, self.config.timers)
        self._register_server(server)
        if method == "CANCEL":
            self._answer_cancel(server, invite, flow, now)
            return
        if type(server) is ServerInviteTransaction:  # exact type test, as in _after
            delay = self.config.trying_delay
            if delay > 0.0:
                # §17.2.1: the 100 only if the TU is slower than `delay` (module rules).
                server.defer_trying(delay, self._trying_response, now)
            else:
                # §17.2.1: 100 Trying at once, so INVITE retransmissions get a response.
                server.send_response(self.create_response(request, 100), now)
        self._after(server, now)
        self._emit(RequestReceived(request, flow, key))

    def _match_ack(self, ack: Request) -> ServerTransactionType | None:
        """The INVITE server transaction an ACK belongs to (§17.2.3), if any."""
        if _has_rfc3261_branch(ack.top_via):
            return self._server.get(server_transaction_key(ack))
        # RFC 2543: the ACK's To tag is the one of our response, which the INVITE
        # (outside a dialog) did not have.
        to_tag = ack.to_address.tag
        for candidate_tag in ("", to_tag or ""):
            transaction = self._server.get(server_transaction_key(ack, "INVITE", candidate_tag))
            if transaction is not None and (transaction.local_tag or "") == (to_tag or ""):
                return transaction
        return None

    def _match_cancelled_invite(self, cancel: Request) -> ServerInviteTransaction | None:
        """§9.2: the INVITE server transaction a CANCEL is for (§17.2.3 rules, with
        method INVITE)."""
        transaction = self._server.get(server_transaction_key(cancel, "INVITE"))
        return transaction if isinstance(transaction, ServerInviteTransaction) else None

    def _receive_ack_of_success(self, ack: Request, flow: Flow, now: float) -> None:
        """An ACK matching no transaction: the ACK of a 2xx (§13.2.2.4, §17.2.1) or a
        stray one; the TU decides. Stops our 2xx retransmissions if it is theirs. The ACK
        of a stateless response is absorbed (module rules: §8.2.7)."""
        to_tag = ack.to_address.tag
        if to_tag is not None and to_tag.startswith(STATELESS_TAG_PREFIX):
            self.counters["stateless_acks_absorbed"] += 1
            return
        cseq = ack.cseq
        index_key = (
            ack.call_id,
            cseq.number,
            ack.from_address.tag or "",
            to_tag or "",
        )
        server_key = self._success_ack_index.get(index_key)
        transaction = None if server_key is None else self._server.get(server_key)
        if (
            type(transaction) is ServerInviteTransaction  # exact type test, as in _after
            and transaction.state is ServerInviteState.ACCEPTED
        ):
            transaction.acknowledge_success(now)
            self._after(transaction, now)
        self._emit(RequestReceived(ack, flow, None))

    def _answer_cancel(
        self,
        cancel_transaction: ServerTransactionType,
        invite: ServerInviteTransaction | None,
        flow: Flow,
        now: float,
    ) -> None:
        cancel = cancel_transaction.request
        if invite is None:
            # §9.2: "the UAS SHOULD respond to the CANCEL with a 481".
            cancel_transaction.send_response(self.create_response(cancel, 481), now)
            self._after(cancel_transaction, now)
            self._emit(
                MessageDropped(
                    "cancel_unmatched", "CANCEL matches no INVITE transaction", 481, flow
                )
            )
            return
        # §9.2: the To tag of the 200 SHOULD be the one of the INVITE's responses.
        if invite.local_tag is None:
            invite.local_tag = self._random_token()
        response = self.create_response(cancel, 200, to_tag=invite.local_tag)
        cancel_transaction.send_response(response, now)
        self._after(cancel_transaction, now)
        if invite.state is ServerInviteState.PROCEEDING:
            self._emit(CancelReceived(invite.key, cancel))
        else:
            # §9.2: "If the UAS has already sent a final response ... no effect".
            self._emit(
                MessageDropped(
                    "cancel_after_final_response",
                    f"CANCEL for {invite.key} in {invite.state.name}",
                    200,
                    flow,
                )
            )

    def _reject_malformed(self, data: bytes, flow: Flow, error: RemoteProtocolError) -> None:
        """Answer a request that failed to parse or validate, if at all possible."""
        detail = error.reason
        recovered = _recover(data, self.config.limits)
        if recovered.is_response or recovered.method == "ACK":
            # Never answer a response, nor an ACK (§17.1.1.3).
            self._emit(MessageDropped("malformed", detail, None, flow))
            return
        fields = recovered.fields
        via_lines = fields.get("via", [])
        top_via = _lenient_via(via_lines[0]) if via_lines else None
        if top_via is None:
            self._emit(MessageDropped("no_usable_via", detail, None, flow))
            return
        if "cseq" not in fields:
            # Without CSeq the client could not match the answer (§17.1.3).
            self._emit(MessageDropped("malformed", f"{detail}; no CSeq to answer", None, flow))
            return
        status_code = error.status_code
        phrase = REASON_PHRASES.get(status_code, "Bad Request")
        headers = Headers()
        for line in via_lines:
            headers.add("Via", line)
        # §8.2.6.2 copies From, To and Call-ID; one missing (RFC 4475 §3.3.1 insuf) is
        # left out rather than leaving the request unanswered.
        if "from" in fields:
            headers.add("From", fields["from"][0])
        if "to" in fields:
            to_value = fields["to"][0]
            if not _TAG_RE.search(to_value):
                to_value = f"{to_value};tag={self._random_token()}"
            headers.add("To", to_value)
        if "call-id" in fields:
            headers.add("Call-ID", fields["call-id"][0])
        headers.add("CSeq", fields["cseq"][0])
        response = Response(status_code, f"{phrase} ({_reason_detail(detail)})", headers)
        stamped = _stamped_via(top_via, flow.remote) or top_via
        response.replace_top_via(stamped)
        self._outbound.append((response.to_bytes(), self._response_flow(stamped, flow)))
        self._emit(MessageDropped("malformed", detail, status_code, flow))

    # ================================================================ send path
    def _prepare_request(self, request: Request, destination: Flow) -> tuple[Flow, bytes]:
        """Complete a request the TU hands us and choose its transport (module rules).

        Returns:
            The flow to send on and the request's wire form.

        Raises:
            LocalProtocolError: the Request-URI, Via, From, To, Call-ID or CSeq is
                missing or malformed, or the CSeq method is not the request's.
        """
        headers = request.headers
        has_branch = False
        had_via = headers.first_value("via") is not None
        if had_via:
            try:
                has_branch = request.top_via.branch is not None
            except RemoteProtocolError as error:
                raise LocalProtocolError(f"malformed top Via: {error.reason}") from error
        if not has_branch:
            branch = MAGIC_COOKIE + self._random_token()
            via_text = (
                f"SIP/2.0/{destination.transport.value} {self._via_sent_by};branch={branch};rport"
            )
            headers.insert_first("Via", via_text)
            if not had_via and self._via_host_port is not None:
                # Our Via is the only one: its parsed form is known without parsing
                # the text just written (the same transport, host, port and parameters
                # the parser would return for it; `_via_host_port` was read by the
                # parser from the same sent-by in __init__). The responses copy this
                # text (§8.2.6.2), so the Via cache hands them the same value.
                host, port = self._via_host_port
                parameters: dict[str, str | None] = {"branch": branch, "rport": None}
                own = Via(destination.transport.value, host, port, parameters)
                headers._typed["via"] = [own]
                remember_via(via_text, own)
        if "max-forwards" not in headers:
            headers.add("Max-Forwards", _DEFAULT_MAX_FORWARDS)
        try:
            # The headers matching, routing and the peer's §8.2 checks depend on, as
            # send_response checks them: a full validate() of every request the TU built
            # from parts it already parsed would cost more than the rest of sending.
            _ = request.uri, request.top_via, request.from_address, request.to_address
            if request.call_id and request.cseq.method != request.method:
                raise RemoteProtocolError("the CSeq method is not the request's")
        except RemoteProtocolError as error:
            raise LocalProtocolError(f"invalid {request.method}: {error.reason}") from error
        data = request.to_bytes()
        if destination.transport is Transport.UDP and len(data) > self.config.udp_size_threshold:
            # §18.1.1: a request over 1300 bytes (MTU unknown) goes over a congestion-
            # controlled transport, and the top Via says so.
            destination = Flow(Transport.TCP, destination.remote, None)
            via = request.top_via
            if via.transport != Transport.TCP.value:
                parameters = dict(via.parameters)
                tcp_via = Via(Transport.TCP.value, via.host, via.port, parameters, via.protocol)
                request.replace_top_via(tcp_via)
                data = request.to_bytes()
        return destination, data

    def _build_cancel(self, invite: Request) -> Request:
        """§9.1: the CANCEL of `invite`."""
        headers = Headers()
        headers.add("Via", split_comma_values(invite.headers.get_all("via")[0])[0])
        for route in invite.headers.get_all("route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", _DEFAULT_MAX_FORWARDS)
        headers.add("From", invite.headers.get("from") or "")
        headers.add("To", invite.headers.get("to") or "")
        headers.add("Call-ID", invite.headers.get("call-id") or "")
        headers.add("CSeq", f"{invite.cseq.number} CANCEL")
        return Request("CANCEL", invite.uri_text, headers)

    def _start_client_transaction(
        self, key: str, request: Request, flow: Flow, now: float, data: bytes | None = None
    ) -> None:
        transaction: ClientTransactionType
        timers = self.config.timers
        if request.method == "INVITE":
            transaction = ClientInviteTransaction(key, request, flow, timers, now, data)
        else:
            transaction = ClientNonInviteTransaction(key, request, flow, timers, now, data)
        self._client[key] = transaction
        self._after(transaction, now)

    def _response_flow(self, via: Via, request_flow: Flow) -> Flow:
        """§18.2.2: where the responses to a request received on `request_flow` go."""
        if request_flow.transport.reliable:
            return request_flow
        return self._udp_flow(_unreliable_response_address(via))

    def _stateless_flow(self, via: Via) -> Flow:
        if via.transport == Transport.TCP.value:
            return Flow(Transport.TCP, _reconnect_address(via))
        return self._udp_flow(_unreliable_response_address(via))

    def _udp_flow(self, remote: Address) -> Flow:
        """`Flow(Transport.UDP, remote)`, shared (frozen, so equal in every use)."""
        flow = self._udp_flows.get(remote)
        if flow is None:
            if len(self._udp_flows) >= _UDP_FLOW_CACHE_SIZE:
                self._udp_flows.clear()
            flow = self._udp_flows[remote] = Flow(Transport.UDP, remote)
        return flow

    # ================================================================ bookkeeping
    def _emit(self, event: SipEvent) -> None:
        if isinstance(event, MessageDropped):
            self.counters[event.reason] += 1
        self._events.append(event)

    def _register_server(self, transaction: ServerTransactionType) -> None:
        self._server[transaction.key] = transaction
        self._merge_index.setdefault(transaction.merge_key, set()).add(transaction.key)

    def _after(
        self, transaction: ClientTransactionType | ServerTransactionType, now: float
    ) -> None:
        """Collect a transaction's outputs, then re-arm or free it."""
        for output in transaction.take_outputs():
            if isinstance(output, Transmit):
                self._outbound.append((output.data, output.flow))
            else:
                self._emit(output)
        # Exact type tests: the four transaction classes have no subclasses, and
        # isinstance() on these ABCs is a Python call whenever the answer is False.
        if type(transaction) is ClientInviteTransaction:
            self._release_pending_cancel(transaction, now)
        elif (
            type(transaction) is ServerInviteTransaction
            and transaction.state is ServerInviteState.ACCEPTED
            and transaction.key not in self._success_ack_keys
        ):
            self._index_success(transaction)
        if transaction.terminated:
            self._forget(transaction)
        else:
            self._deadlines.set(transaction.key, transaction.deadline)

    def _index_success(self, transaction: ServerInviteTransaction) -> None:
        from_tag, call_id, cseq_number, _ = transaction.merge_key
        index_key = (call_id, cseq_number, from_tag, transaction.local_tag or "")
        self._success_ack_index[index_key] = transaction.key
        self._success_ack_keys[transaction.key] = index_key

    def _release_pending_cancel(self, invite: ClientInviteTransaction, now: float) -> None:
        """§9.1: send a held CANCEL once a provisional arrived; forget it if the INVITE
        ended first."""
        pending = self._pending_cancels.get(invite.key)
        if pending is None or invite.state is ClientInviteState.CALLING:
            return
        del self._pending_cancels[invite.key]
        cancel_key, cancel = pending
        if invite.state is ClientInviteState.PROCEEDING:
            self._start_client_transaction(cancel_key, cancel, invite.flow, now)
        else:
            self._emit(TransactionTerminated(cancel_key, True))

    def _forget(self, transaction: ClientTransactionType | ServerTransactionType) -> None:
        key = transaction.key
        self._deadlines.set(key, None)
        if not (
            type(transaction) is ServerInviteTransaction
            or type(transaction) is ServerNonInviteTransaction
        ):
            # A client transaction (exact type tests, as in _after).
            del self._client[key]
        else:
            del self._server[key]
            merge_key = transaction.merge_key
            keys = self._merge_index.get(merge_key)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._merge_index[merge_key]
            index_key = self._success_ack_keys.pop(key, None)
            if index_key is not None and self._success_ack_index.get(index_key) == key:
                del self._success_ack_index[index_key]
        self._emit(TransactionTerminated(key, transaction.is_client))
