"""Toll-free calls (issue 5): admission, destinations and the one record per call. No I/O.

A `TollFreeRouter` (one per switch process, owned by the `CallService`) decides what a
new INVITE to a toll-free number gets, through the pure decisions of
`softswitch.tollfree` in the order its docstring gives; a `TollFreeCall` (one per
admitted call) holds the call's channels and builds its `TollFreeCallRecord`.

Rules, in the order `TollFreeRouter.admit()` applies them:
- Option contracts: every rule below applies `contracted_view(entry)`
  (`softswitch.tollfree.options`): a feature the number has not contracted is not in
  force, whatever its stored settings (cached per entry object, so once per snapshot).
0. A toll-free INVITE is one whose Request-URI user is a 0120/0800 number, national
   (`0120000111`) or E.164 (`+81120000111`), normalised by
   `cloudpbx.rules.normalize_tollfree_number`. Only a trusted carrier trunk
   (`AuthenticatedCaller.trunk`) may reach toll-free routing: anyone else gets 403
   (a subscriber dialling 0120 makes an external call, issue 6: not routed yet). A
   toll-free number the snapshot does not hold gets 404 and no record (not a call of
   any of our numbers).
1. Area designation: the caller is the P-Asserted-Identity (RFC 3325 §9.1: a trusted
   peer asserts it) or, without one, the From URI; `Privacy: id` (RFC 3325 §9.3) or
   `user` (RFC 3323 §4.2) withholds it. A trunk with a `caller_area_header` asserts the
   caller's charging area there (PEERS.md §3.2: the network, not the number, knows
   where a mobile is): a national area code (`03`, `0422`; parameters after `;` are
   ignored) wins over the number's area (`check_area` rule 4); a value that is no
   area code is ignored and counted (`tollfree_caller_area_invalid`), and only that
   trunk's header is read (any other trunk's, or a subscriber's, is not). A refusal is
   category `out_of_area`: with `refusal_action` `announcement` and announcements
   available (`TollFreeRouter.announcements`, set when a media adapter is attached)
   the switch answers and plays `refusal_announcement` (`TollFreeAnnouncement`);
   otherwise 403 Forbidden (§21.4.4).
2. Schedule: `decide(entry, wall time)` in Asia/Tokyo. After hours, category
   `after_hours`: the switch answers and plays the decision's announcement when
   announcements are available; otherwise 480 Temporarily Unavailable (§21.4.18).
   Otherwise the decision's destination set (a set the number lacks: 480, `other`).
   Announcement calls hold no channel of the number (they never reach a destination).
3. Channel limit of the toll-free number (`tollfree_channel_limit`): over it, 486 Busy
   Here (§21.4.24), category `busy`. The `ChannelToken` taken here is held until the
   call ends, whatever the ending; `TollFreeCall.release()` gives it back exactly once.
4. Distribution: `Distributor.plan()` with the destinations whose trunk is at its
   capacity, unknown, or not reachable over UDP/TCP excluded; no candidate: 486,
   `busy`. The candidates become the `Call`'s targets, tried sequentially (never in
   parallel): `sip:<national number>@<trunk host>:<trunk port>` over the trunk's
   transport (`;transport=tcp` for TCP, RFC 3261 §19.1.1). A failover status
   (`is_failover_status`: 408, Timer B, 5xx, transport error) moves to the next
   candidate; strict numbers have one candidate and never fail over.
- The no-answer timeout is the number's `no_answer_timeout_seconds` (30 s by default,
  like the extensions'; `TollFreeCall.no_answer_timeout`), restarted for each
  candidate: 480 to the caller, category `other`. A candidate that sends no response
  at all within `TollFreeRouter.attempt_timeout` (5 s) is given up as a 408 and the
  next one is tried (`Call` rules: sequential hunting); Timer B (32 s over UDP) would
  come only after the no-answer timeout.
- Categories of a call that ended (`TollFreeCall.category`): answered: `connected`;
  the caller's CANCEL while ringing (487): `abandoned`; a final 486 (a destination's
  486, or its 600 which the caller gets as 486): `busy`; anything else (no answer,
  other 4xx/6xx relayed, every destination failing, a crashed call): `other`.
- Trunk channels: one per attempt, taken when the attempt starts (by `track()`, which
  the service calls after every event the call handled) and given back when the call
  moves to the next candidate or ends; the answered attempt keeps its trunk channel
  until the call ends. A failover attempt takes its trunk channel even over the
  trunk's capacity (the plan excluded saturated trunks when the call arrived; a
  failover is not refused halfway).
- Times in records are wall-clock unix seconds (`wall_now` arguments), never the SIP
  core's `now`.
- The distributor and the counters live as long as the router, across snapshot swaps:
  `replace_snapshot()` calls `Distributor.retain()` with the new toll-free numbers.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloudpbx.callrecords import TollFreeCallRecord, TollFreeCategory
from cloudpbx.domain import RefusalAction
from cloudpbx.domain import Transport as TrunkTransport
from cloudpbx.rules import normalize_tollfree_number
from cloudpbx.snapshot import (
    ConfigSnapshot,
    DestinationEntry,
    DestinationSetEntry,
    TollFreeEntry,
    TrunkEntry,
)
from softswitch.sip.flows import Flow, Transport
from softswitch.sip.message import Request
from softswitch.sip.uri import SipUri
from softswitch.tollfree import (
    CallerKind,
    CallerNumber,
    ChannelCounter,
    ChannelToken,
    Distributor,
    check_area,
    decide,
    parse_caller,
    saturated_destinations,
    tollfree_channel_limit,
)
from softswitch.tollfree.options import contracted_view
from softswitch.tollfree.schedule import TOKYO

from .call import CallEnded, CallResult
from .privacy import privacy_values

__all__ = [
    "BUSY_TRANSLATION",
    "DEFAULT_ATTEMPT_TIMEOUT",
    "TollFreeAnnouncement",
    "TollFreeCall",
    "TollFreeRefusal",
    "TollFreeRouter",
    "caller_identity",
    "tollfree_number_of",
]

DEFAULT_ATTEMPT_TIMEOUT = 5.0
"""Seconds a destination may send nothing at all (not even 100 Trying) before it counts
as a 408 and the next one is tried (module rules)."""

_CALLER_WITHHELD_VALUES = frozenset({"id", "user"})
"""Rule 1: the Privacy values (`softswitch.b2bua.privacy`) that withhold the caller's
number from the area check."""

BUSY_TRANSLATION: Mapping[int, int] = {600: 486}
"""A destination's 600 Busy Everywhere reaches the toll-free caller as 486 (issue 5)."""


def tollfree_number_of(request: Request) -> str | None:
    """The national toll-free number the Request-URI user dials (rule 0), or None."""
    uri = request.uri
    user = uri.user if isinstance(uri, SipUri) else None
    if not user or not (user.startswith(("0120", "0800", "+81120", "+81800"))):
        return None
    try:
        return normalize_tollfree_number(user)
    except ValueError:
        return None


def caller_identity(request: Request) -> CallerNumber:
    """The caller's number for the area check (rule 1): P-Asserted-Identity, else From;
    Privacy id/user withholds it."""
    asserted = request.headers.get("p-asserted-identity")
    identity = asserted if asserted is not None else str(request.from_address.uri)
    requested = privacy_values(request) & _CALLER_WITHHELD_VALUES
    return parse_caller(identity, privacy_requested=bool(requested))


def asserted_area_code(request: Request, header_name: str | None) -> str | None:
    """The area code a trunk asserts in `header_name` (rule 1); None when the header is
    absent or not configured.

    Raises:
        ValueError: the header's value is no national area code.
    """
    if header_name is None:
        return None
    value = request.headers.get(header_name)
    if value is None:
        return None
    code = value.split(";", 1)[0].strip()
    if 2 <= len(code) <= 5 and code[0] == "0" and code[1] != "0" and code.isdigit():
        return code
    raise ValueError(f"{header_name}: {value!r} is no area code")


def _caller_text(caller: CallerNumber) -> str:
    """`TollFreeCallRecord.caller`: the normalised number, `anonymous` or `unknown`."""
    if caller.kind is CallerKind.WITHHELD:
        return "anonymous"
    if caller.national_number is not None and caller.kind is not CallerKind.INTERNATIONAL:
        return caller.national_number
    if caller.e164 is not None:
        return caller.e164
    return "unknown"


def _destination_flow(trunk: TrunkEntry) -> Flow | None:
    """Where a trunk's calls go; None for a transport the core does not speak (TLS)."""
    if trunk.transport is TrunkTransport.UDP:
        return Flow(Transport.UDP, (trunk.host, trunk.port))
    if trunk.transport is TrunkTransport.TCP:
        return Flow(Transport.TCP, (trunk.host, trunk.port))
    return None


def _destination_uri(number: str, trunk: TrunkEntry) -> str:
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    suffix = ";transport=tcp" if trunk.transport is TrunkTransport.TCP else ""
    return f"sip:{number}@{host}:{trunk.port}{suffix}"


@dataclass(frozen=True, slots=True)
class TollFreeRefusal:
    """Answer the caller `status_code` at once; `record` is None when the INVITE is not
    a toll-free call of ours (rule 0: 403 for a non-trunk caller, 404 for an unknown
    number)."""

    status_code: int
    reason: str | None
    record: TollFreeCallRecord | None


@dataclass(frozen=True, slots=True)
class _Target:
    destination: DestinationEntry
    trunk: TrunkEntry
    uri: str
    flow: Flow


@dataclass(slots=True)
class TollFreeCall:
    """One admitted toll-free call: its channels and what its record needs."""

    call_id: str
    entry: TollFreeEntry
    caller: str
    arrival_time: float
    number_token: ChannelToken
    targets: tuple[_Target, ...]
    trunk_channels: ChannelCounter
    answer_time: float | None = None
    no_answer_timeout: float = 30.0
    """Seconds each destination may ring (module rules: the number's setting)."""
    attempt: int = -1
    """The index of the target whose trunk channel `trunk_token` holds; -1: none yet."""
    trunk_token: ChannelToken | None = None
    tokens: list[ChannelToken] = field(default_factory=list)
    """Every token taken for the call, so `release()` cannot miss one."""

    @property
    def call_targets(self) -> tuple[tuple[str, Flow], ...]:
        """(Request-URI, flow) of every candidate, in failover order (for `Call`)."""
        return tuple((target.uri, target.flow) for target in self.targets)

    def track(self, attempt: int, answered: bool, wall_now: float) -> None:
        """Follow the call after an event: trunk channel of the attempt in progress,
        answer time (module rules: trunk channels)."""
        if answered and self.answer_time is None:
            self.answer_time = wall_now
        if attempt == self.attempt or not 0 <= attempt < len(self.targets):
            return
        if self.trunk_token is not None:
            self.trunk_token.release()
        trunk = self.targets[attempt].trunk
        # First attempt: the plan excluded saturated trunks, so this is within the
        # capacity; a failover attempt is counted even over it (module rules).
        token = self.trunk_channels.acquire(trunk.name, trunk.capacity if attempt == 0 else None)
        if token is None:  # not reached for attempt 0: saturated trunks were excluded
            token = self.trunk_channels.acquire(trunk.name, None)
        assert token is not None
        self.trunk_token = token
        self.tokens.append(token)
        self.attempt = attempt

    def release(self) -> None:
        """Give every channel back (idempotent: each token releases once)."""
        self.number_token.release()
        for token in self.tokens:
            token.release()

    def record(self, ended: CallEnded | None, wall_now: float) -> TollFreeCallRecord:
        """The call's record; `ended` None for a call that crashed (500, `other`)."""
        status = 500 if ended is None else ended.status_code
        destination = (
            self.targets[max(self.attempt, 0)].destination.number if self.targets else None
        )
        return TollFreeCallRecord(
            self.call_id,
            self.entry.number,
            self.entry.tenant_name,
            self.caller,
            destination,
            _category(ended),
            status,
            self.arrival_time,
            self.answer_time,
            wall_now,
        )


@dataclass(slots=True)
class TollFreeAnnouncement:
    """A toll-free call the switch answers itself with `announcement` (rules 1, 2)."""

    call_id: str
    entry: TollFreeEntry
    caller: str
    arrival_time: float
    category: TollFreeCategory
    """`after_hours` or `out_of_area`, whatever happens next (PRODUCT.md Part A)."""
    announcement: str
    answer_time: float | None = None

    def record(self, ended: CallEnded | None, wall_now: float) -> TollFreeCallRecord:
        """The call's record; `ended` None for a call that crashed (status 500)."""
        return TollFreeCallRecord(
            self.call_id,
            self.entry.number,
            self.entry.tenant_name,
            self.caller,
            None,
            self.category,
            500 if ended is None else ended.status_code,
            self.arrival_time,
            self.answer_time,
            wall_now,
        )


def _category(ended: CallEnded | None) -> TollFreeCategory:
    """Module rules: categories of a call that ended."""
    if ended is None:
        return TollFreeCategory.OTHER
    if ended.result is CallResult.ANSWERED:
        return TollFreeCategory.CONNECTED
    if ended.result is CallResult.CANCELLED:
        return TollFreeCategory.ABANDONED
    if ended.status_code == 486:
        return TollFreeCategory.BUSY
    return TollFreeCategory.OTHER


class TollFreeRouter:
    """Admits toll-free INVITEs (see the module rules); keep one per switch process."""

    def __init__(
        self,
        *,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        announcements: bool = False,
    ) -> None:
        self.attempt_timeout = attempt_timeout
        """Seconds a destination may stay silent before the next is tried."""
        self.announcements = announcements
        """True when a media adapter plays announcements (rules 1, 2); else 403/480."""
        self.distributor = Distributor()
        self.number_channels = ChannelCounter()
        """Channels in use per toll-free number."""
        self.trunk_channels = ChannelCounter()
        """Channels in use per trunk (toll-free calls only)."""
        self.counters: Counter[str] = Counter()
        self._views: dict[str, tuple[TollFreeEntry, TollFreeEntry]] = {}
        """By number: (stored entry, its `contracted_view`), module rules."""

    def replace_snapshot(self, snapshot: ConfigSnapshot) -> None:
        """Keep the rotation state of the numbers and sets `snapshot` still holds."""
        self._views = {}
        self.distributor.retain(
            self._contracted(entry) for entry in snapshot.tollfree_numbers.values()
        )

    def _contracted(self, entry: TollFreeEntry) -> TollFreeEntry:
        """`contracted_view(entry)`, computed once per stored entry (module rules)."""
        cached = self._views.get(entry.number)
        if cached is not None and cached[0] is entry:
            return cached[1]
        view = contracted_view(entry)
        self._views[entry.number] = (entry, view)
        return view

    def admit(
        self,
        request: Request,
        number: str,
        trunk_name: str | None,
        snapshot: ConfigSnapshot,
        wall_now: float,
    ) -> TollFreeCall | TollFreeAnnouncement | TollFreeRefusal:
        """Admit the INVITE to the toll-free `number` (from `tollfree_number_of`).

        Args:
            trunk_name: the trusted trunk the INVITE came from; None: not a trunk.
            wall_now: unix seconds (schedules in Asia/Tokyo, record times).

        Returns:
            The admitted call, whose `call_targets` the `Call` tries in order, the
            announcement to answer with, or the refusal to answer.
        """
        if trunk_name is None:
            self.counters["tollfree_not_from_trunk"] += 1
            return TollFreeRefusal(403, "Forbidden (toll-free calls come from trunks)", None)
        stored = snapshot.tollfree_number(number)
        if stored is None:
            self.counters["tollfree_unknown_number"] += 1
            return TollFreeRefusal(404, None, None)
        entry = self._contracted(stored)
        caller = caller_identity(request)
        caller_text = _caller_text(caller)

        def refused(status: int, reason: str | None, category: TollFreeCategory) -> TollFreeRefusal:
            self.counters[f"tollfree_{category.value}"] += 1
            record = TollFreeCallRecord(
                request.call_id,
                entry.number,
                entry.tenant_name,
                caller_text,
                None,
                category,
                status,
                wall_now,
                None,
                wall_now,
            )
            return TollFreeRefusal(status, reason, record)

        def announced(announcement: str, category: TollFreeCategory) -> TollFreeAnnouncement:
            self.counters[f"tollfree_{category.value}"] += 1
            self.counters["tollfree_announcements"] += 1
            return TollFreeAnnouncement(
                request.call_id, entry, caller_text, wall_now, category, announcement
            )

        # Rule 1: area designation, with the area the trunk asserts, if it does.
        trunk = snapshot.trunks.get(trunk_name)
        try:
            area_code = asserted_area_code(
                request, None if trunk is None else trunk.caller_area_header
            )
        except ValueError:
            self.counters["tollfree_caller_area_invalid"] += 1
            area_code = None
        if not check_area(entry, caller, asserted_area_code=area_code).connect:
            if self.announcements and entry.refusal_action is RefusalAction.ANNOUNCEMENT:
                return announced(entry.refusal_announcement, TollFreeCategory.OUT_OF_AREA)
            return refused(403, None, TollFreeCategory.OUT_OF_AREA)
        # Rule 2: schedules, on Asia/Tokyo wall time.
        decision = decide(entry, datetime.datetime.fromtimestamp(wall_now, TOKYO))
        if decision.after_hours:
            if self.announcements:
                announcement = decision.announcement or entry.after_hours_announcement
                return announced(announcement, TollFreeCategory.AFTER_HOURS)
            return refused(
                480, "Temporarily Unavailable (after hours)", TollFreeCategory.AFTER_HOURS
            )
        destination_set = entry.destination_sets.get(decision.destination_set_name)
        if destination_set is None:
            return refused(480, None, TollFreeCategory.OTHER)
        # Rule 3: the number's channel limit.
        token = self.number_channels.acquire(entry.number, tollfree_channel_limit(entry))
        if token is None:
            return refused(486, None, TollFreeCategory.BUSY)
        # Rule 4: distribution over the destinations whose trunk can take the call.
        targets = self._plan(entry, destination_set, snapshot)
        if not targets:
            token.release()
            return refused(486, None, TollFreeCategory.BUSY)
        self.counters["tollfree_admitted"] += 1
        return TollFreeCall(
            request.call_id,
            entry,
            caller_text,
            wall_now,
            token,
            targets,
            self.trunk_channels,
            no_answer_timeout=float(entry.no_answer_timeout_seconds),
        )

    def _plan(
        self, entry: TollFreeEntry, destination_set: DestinationSetEntry, snapshot: ConfigSnapshot
    ) -> tuple[_Target, ...]:
        excluded = set(
            saturated_destinations(destination_set, snapshot.trunks, self.trunk_channels)
        )
        for destination in destination_set.destinations:
            trunk = snapshot.trunks.get(destination.trunk_name)
            if trunk is not None and _destination_flow(trunk) is None:
                excluded.add(destination.number)
        plan = self.distributor.plan(entry, destination_set, excluded=excluded)
        targets: list[_Target] = []
        for destination in plan.candidates:
            trunk = snapshot.trunks[destination.trunk_name]
            flow = _destination_flow(trunk)
            assert flow is not None  # excluded above
            targets.append(
                _Target(destination, trunk, _destination_uri(destination.number, trunk), flow)
            )
        return tuple(targets)
