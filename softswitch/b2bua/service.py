"""The call service: authenticates and routes new INVITEs and runs their `Call`s. No I/O.

Rules:
- Sans-I/O like the rest of `b2bua/` (STYLE.md principles 1, 2, 4): every input takes
  the SIP core's `now`; the registrar's and nonce manager's clock (`wall_clock`, wall
  time in the running switch) is a constructor argument. Deadlines leave through
  `next_deadline()` / `handle_timer(now)`; one `CallRecord` per finished call leaves
  through `next_record()`; the adapter logs it. Calls act through the endpoint directly.
- It is the element's `CallHandler`: `handle_invite()` gets each new INVITE (no To tag)
  that passed the RFC 3261 §8.2 checks; `handle_call_event()` is offered every endpoint
  event first and returns True when a call took it.
- A new INVITE: the caller is authenticated (`caller_auth`: trunk by source address, or
  407 Proxy-Authenticate, RFC 3261 §22.3), then routed (`pbx_routing.route_pbx_call`); a
  rejection is returned for the element to send. A Call-ID already used by a call in
  progress gets 482 (§8.2.2.2 spirit: the same request reached us twice). Otherwise a
  `Call` starts and the element sends nothing.
- Events reach a call through indexes, never by offering each event to each call:
  requests and responses by Call-ID, CANCEL by the INVITE transaction it names (else
  by Call-ID), timeouts and transport errors by transaction key. The indexes are what
  the call says it owns, `Call.call_ids` and `Call.transaction_keys`, re-read after
  every event and deadline the call handled. A `TransactionTimeout` or `TransportError`
  whose key no call owns is dropped and counted (`dropped_unindexed`), never offered
  around. `TransactionTerminated` and `MessageDropped` never belong to a call.
- A call that raises is ended on the spot: removed from every index, counted
  (`calls_crashed`), and its record (result `crashed`, status 500, the error's text)
  is the one log line it leaves; the exception goes no further, so one broken call
  never takes the switch or other calls down (STYLE.md principle 7). A caller still
  without a final answer gets 500 Server Internal Error (§21.5.1), so the INVITE
  server transaction ends too (§17.2.1: it waits for the TU's final response).
- The service is its endpoint's `new_invite_gate` (installed by the constructor):
  draining and overload control below answer a new INVITE statelessly (RFC 3261
  §8.2.7), before the endpoint creates a transaction for it, and before §8.2 checks
  and authentication (a refusal must be cheap: no transaction, no 100 Trying, no
  timer). Such an INVITE counts in `invites` and never reaches `handle_invite`.
- Draining (`stop_accepting()`, for a graceful shutdown): a new INVITE is answered 503
  Service Unavailable with Retry-After (RFC 3261 §21.5.4: the caller may retry
  elsewhere or later) and leaves no record; calls in progress, and their in-dialog
  requests, are served as before.
- Overload control (issue 6 item 7, `overload`): right after the draining check,
  `overload.check()` is given `invites_in_progress` (calls whose caller has no final
  answer yet: CALLING or RINGING) and the INVITE's draw (a keyed hash of its Call-ID
  in [0, 1): a retransmission gets the decision the INVITE got); a refused INVITE gets
  503 with the gate's Retry-After (RFC 3261 §21.5.4, §20.33), is counted
  (`invites_refused_overload`) and leaves no record. In-dialog
  requests never reach the gate. The adapter feeds the gate's loop lag and may install
  a gate of its own configuration (`overload` is a plain attribute) before serving.
- One `CallRecord` per call that started, and one per INVITE that routing refused
  (404, 480): authentication challenges (407) are not calls and leave no record.
- Cloud PBX calls (issue 6, `pbx_routing`): the route says what our INVITEs carry (the
  From and P-Asserted-Identity the callee sees, P-Called-Party-ID) and the record's
  `kind` (internal or external). A refusal that names an announcement (403 for a call
  the caller may not make) becomes, once a media adapter is attached, an
  `AnnouncementCall` with `final_status`: the announcement as early media, then the
  403; without an adapter the 403 alone. A call leaving on a trunk holds one channel of
  it (`TollFreeRouter.trunk_channels`, shared with toll-free calls) until it leaves the
  service in any way (`_remove`); routing refuses a call over the trunk's capacity.
- Toll-free calls (issue 5, `tollfree_routing`): after authentication, an INVITE whose
  Request-URI user is a 0120/0800 number goes to the `TollFreeRouter` instead of
  `route_call` when it came from a trusted trunk (a subscriber dialling 0120 makes an
  external call, `pbx_routing` rule 5). An admitted call is a `Call`
  trying the destinations sequentially; its `TollFreeCall` follows it after every event
  (`track`), its channels are released when the call leaves the service in any way
  (`_remove`: ended or crashed), and exactly one `TollFreeCallRecord` per toll-free call
  that arrived (refused at once, ended, or crashed) goes to the `CallRecordSink` given
  to the constructor (None: not recorded). A sink that raises is counted
  (`tollfree_record_sink_errors`) and the call goes on: records must not take calls
  down. The router, its rotation state and channel counts outlive snapshot swaps.
- Announcements (issue 5 step 5): once a media adapter called `enable_announcements()`,
  an after-hours call, or an area refusal with `refusal_action` announcement, becomes an
  `AnnouncementCall` the switch answers itself. Its media effects (`OpenMedia`,
  `PlayAnnouncement`, `StopMedia`) leave through `next_media_effect()`; the adapter's
  answers come back through `media_opened()` and `playback_finished()`, by Call-ID (a
  socket opened for a call no longer here gets `StopMedia`). A call that leaves the
  service in any way has had a `StopMedia` (the call emits it on each of its endings,
  the service for a crash), so the adapter never keeps a socket for a call that is gone.
  Without an adapter those calls get 480/403 (`tollfree_routing` rules 1, 2).
- Voicemail (issue 6 item 4): once a media adapter called `enable_voicemail()`, an
  INVITE for a fixed IP phone with `voicemail_enabled` that routing refuses 480 (not
  registered) becomes a `VoicemailCall` at once, and a `Call` to such an extension is
  started with `divert` (480 no answer, 486/600/603 busy or declined, 408 unreachable):
  its `CallDiverted` hands the caller's INVITE, still unanswered, to a new
  `VoicemailCall` that takes the caller's Call-ID in `_calls` and the indexes, while
  the diverted `Call` finishes its callee side unindexed by the caller (its end leaves
  no record: the voicemail call's is the caller's one record). Media effects leave
  through `next_voicemail_effect()`; the adapter answers through
  `voicemail_media_opened()`, `greeting_finished()` and `recording_finished()`.
  After authentication, a subscriber dialling `MAILBOX_FEATURE_CODE` (`*98`) gets a
  `VoicemailCall` in listening mode on their own mailbox (403 from a trunk, 404 without
  voicemail): the adapter runs the RFC 4733 DTMF menu (`softswitch.voicemail.menu`).
  With voicemail enabled, `mwi` (`softswitch.b2bua.mwi`) takes SUBSCRIBEs for
  message-summary and the events of its NOTIFYs before any call is offered an event,
  and `mailbox_changed()` makes it NOTIFY the mailbox's subscribers.
- A call's index entries are removed when its `CallEnded` comes out (its `call_ids`
  and `transaction_keys` are empty once ENDED); nothing of a call outlives it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import os
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from cloudpbx.callrecords import CallRecordSink, TollFreeCallRecord
from cloudpbx.snapshot import ConfigSnapshot
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.events import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Address
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import SipUri
from softswitch.tollfree import ChannelToken, is_failover_status
from softswitch.voicemail.mailbox import Mailbox, mailbox_of

from .announcement_call import AnnouncementCall, MediaEffect, StopMedia
from .call import Call, CallDiverted, CallEnded, CallState
from .caller_auth import CallerAuthenticator
from .mwi import MwiNotifier
from .overload import OverloadGate
from .pbx_routing import route_pbx_call
from .routing import CallRejection, ContactLookup
from .tollfree_routing import (
    BUSY_TRANSLATION,
    TollFreeAnnouncement,
    TollFreeCall,
    TollFreeRouter,
    tollfree_number_of,
)
from .voicemail_call import StopRecorder, VoicemailCall, VoicemailEffect, greeting_name

__all__ = ["DRAINING_RETRY_AFTER", "CallRecord", "CallService"]

DRAINING_RETRY_AFTER = 30
"""Seconds in the Retry-After of the 503 to new INVITEs while draining (§20.33)."""
_AWAITING_FINAL_ANSWER = frozenset({CallState.CALLING, CallState.RINGING})
"""Call states whose caller has no final answer yet (module rules: overload control)."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, for the one structured log line per call.

    Attributes:
        call_id: the caller's Call-ID.
        caller: the caller's From URI.
        callee: the callee's address-of-record.
        target: the Request-URI we called.
        result: how it ended (`CallResult` value, or `crashed`).
        status_code: the final status the caller got.
        duration: seconds from answer to hang-up; 0.0 when unanswered.
        error: for a crashed call, the exception's type and text; else empty.
        kind: `internal` (extension dialing, flat-rate) or `external` for cloud PBX
            calls (`routing.CallKind`, issue 6); empty when not classified (toll-free,
            voicemail, a number routing did not recognise).
    """

    call_id: str
    caller: str
    callee: str
    target: str
    result: str
    status_code: int
    duration: float
    error: str = ""
    kind: str = ""

    def log_text(self) -> str:
        text = (
            f"call ended call_id={self.call_id} from={self.caller} to={self.callee} "
            f"target={self.target} result={self.result} status={self.status_code} "
            f"duration={self.duration:.3f}"
        )
        if self.kind:
            text = f"{text} kind={self.kind}"
        return f"{text} error={self.error!r}" if self.error else text


@dataclass(slots=True)
class _Entry:
    """A call and its index entries."""

    call: Call | AnnouncementCall | VoicemailCall
    caller: str
    callee: str
    target: str
    call_ids: frozenset[str] = frozenset()
    """The Call-IDs indexed for this call (its `call_ids` when last read)."""
    transaction_keys: frozenset[str] = frozenset()
    """The transaction keys indexed for this call (its `transaction_keys` when last read)."""
    ended: bool = False
    settled: bool = False
    """The caller got its final answer (module rules: overload; counted in `_settled`)."""
    scheduled: float | None = None
    """The deadline last pushed on the heap, so each one is pushed once."""
    tollfree: TollFreeCall | None = None
    """A toll-free call's channels and record data; None for other calls."""
    announcement: TollFreeAnnouncement | None = None
    """A toll-free announcement call's record data; None for other calls."""
    mailbox: Mailbox | None = None
    """The callee's mailbox for a `Call` started with `divert` (module rules: voicemail)."""
    diverted: bool = False
    """A `Call` whose caller went to voicemail (module rules: voicemail)."""
    kind: str = ""
    """`CallRecord.kind`: internal or external for cloud PBX calls (issue 6)."""
    trunk_channel: ChannelToken | None = None
    """The channel a cloud PBX call holds on the trunk it left on (issue 6)."""


class CallService:
    """Runs the switch's calls (see the module rules)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        snapshot: ConfigSnapshot,
        authenticator: CallerAuthenticator,
        registrations: ContactLookup,
        wall_clock: Callable[[], float],
        local_contact: str,
        new_token: Callable[[], str],
        call_record_sink: CallRecordSink | None = None,
        tollfree_router: TollFreeRouter | None = None,
    ) -> None:
        """
        Args:
            wall_clock: unix seconds (registrar, nonces, toll-free schedules in
                Asia/Tokyo and record times).
            call_record_sink: where toll-free call records go; None: not recorded.
            tollfree_router: the toll-free state (default: a new one, 30 s no-answer).
        """
        self.counters: Counter[str] = Counter()
        self._call_record_sink = call_record_sink
        self.tollfree = tollfree_router if tollfree_router is not None else TollFreeRouter()
        self._endpoint = endpoint
        self._snapshot = snapshot
        self._authenticator = authenticator
        self._registrations = registrations
        self._wall_clock = wall_clock
        self._local_contact = local_contact
        self._new_token = new_token
        self._calls: dict[str, _Entry] = {}
        """Calls in progress by the caller's Call-ID."""
        self._by_call_id: dict[str, _Entry] = {}
        self._by_transaction: dict[str, _Entry] = {}
        self._deadlines: list[tuple[float, int, _Entry]] = []
        self._sequence = itertools.count()
        self._records: deque[CallRecord] = deque()
        self._media_effects: deque[MediaEffect] = deque()
        self._voicemail_effects: deque[VoicemailEffect] = deque()
        self._voicemail = False
        self.mwi = MwiNotifier(endpoint, local_contact, new_token)
        """Message-waiting subscriptions (module rules: voicemail)."""
        self.voicemail_greeting = "voicemail_greeting"
        """The greeting's announcement kind; the mailbox tenant's language is added
        (`voicemail_call.greeting_name`, module rules: voicemail)."""
        self._accepting = True
        self.overload = OverloadGate()
        """The overload gate of new INVITEs (module rules: overload control)."""
        self._settled = 0
        """Calls in `_calls` whose caller got its final answer."""
        self._draw_key = os.urandom(16)
        endpoint.new_invite_gate = self.gate_new_invite

    # ================================================================ outputs
    @property
    def authenticator_counters(self) -> Counter[str]:
        """The caller authenticator's counters (407s, failures, trunk calls)."""
        return self._authenticator.counters

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self._calls)

    @property
    def accepting(self) -> bool:
        """False once `stop_accepting()` was called (module rules: draining)."""
        return self._accepting

    @property
    def invites_in_progress(self) -> int:
        """Calls whose caller has no final answer yet (module rules: overload)."""
        return len(self._calls) - self._settled

    def stop_accepting(self) -> None:
        """Answer every new INVITE 503 from now on; calls in progress go on."""
        self._accepting = False

    def index_sizes(self) -> dict[str, int]:
        """How much the service holds: all zero once every call ended and its last
        deadline passed (for leak tests and gauges)."""
        return {
            "calls": len(self._calls),
            "by_call_id": len(self._by_call_id),
            "by_transaction": len(self._by_transaction),
            "deadlines": len(self._deadlines),
        }

    def enable_announcements(self) -> None:
        """A media adapter is attached: answer announcement calls (module rules)."""
        self.tollfree.announcements = True

    def next_media_effect(self) -> MediaEffect | None:
        """The next media effect for the adapter (module rules: announcements)."""
        return self._media_effects.popleft() if self._media_effects else None

    def media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        """The adapter bound the RTP socket of `call_id` at `address` (None: failed)."""
        entry = self._calls.get(call_id)
        if entry is None or not isinstance(entry.call, AnnouncementCall):
            self._media_effects.append(StopMedia(call_id))  # the call is gone
            return
        call = entry.call
        self._run(entry, lambda: call.media_opened(address, now), now)

    def playback_finished(self, call_id: str, now: float) -> None:
        """The announcement of `call_id` was played to its end."""
        entry = self._calls.get(call_id)
        if entry is None or not isinstance(entry.call, AnnouncementCall):
            return
        call = entry.call
        self._run(entry, lambda: call.playback_finished(now), now)

    def enable_voicemail(self) -> None:
        """A voicemail media adapter is attached (module rules: voicemail)."""
        self._voicemail = True

    def next_voicemail_effect(self) -> VoicemailEffect | None:
        """The next voicemail media effect for the adapter (module rules: voicemail)."""
        return self._voicemail_effects.popleft() if self._voicemail_effects else None

    def _voicemail_call(self, call_id: str) -> tuple[_Entry, VoicemailCall] | None:
        entry = self._calls.get(call_id)
        if entry is None or not isinstance(entry.call, VoicemailCall):
            return None
        return entry, entry.call

    def voicemail_media_opened(self, call_id: str, address: Address | None, now: float) -> None:
        """The adapter bound the RTP socket of voicemail call `call_id` (None: failed)."""
        found = self._voicemail_call(call_id)
        if found is None:
            self._voicemail_effects.append(StopRecorder(call_id))  # the call is gone
            return
        entry, call = found
        self._run(entry, lambda: call.media_opened(address, now), now)

    def mailbox_changed(self, tenant_name: str, number: str, now: float) -> None:
        """A message was saved, deleted or heard: NOTIFY the mailbox's subscribers."""
        if self._voicemail:
            self.mwi.mailbox_changed(tenant_name, number, now)

    def greeting_finished(self, call_id: str, now: float) -> None:
        """The greeting of voicemail call `call_id` was played."""
        found = self._voicemail_call(call_id)
        if found is not None:
            entry, call = found
            self._run(entry, lambda: call.greeting_finished(now), now)

    def recording_finished(self, call_id: str, now: float) -> None:
        """Silence or the maximum length ended the message of `call_id`."""
        found = self._voicemail_call(call_id)
        if found is not None:
            entry, call = found
            self._run(entry, lambda: call.recording_finished(now), now)

    def _mailbox(self, request: Request, domain: str) -> Mailbox | None:
        """The callee's mailbox when voicemail may take the call (module rules)."""
        uri = request.uri
        if not self._voicemail or not isinstance(uri, SipUri) or uri.user is None:
            return None
        return mailbox_of(self._snapshot, domain, uri.user)

    def _listen_to_mailbox(
        self, invite: RequestReceived, domain: str, username: str | None, now: float
    ) -> Response | None:
        """The feature code (module rules: voicemail): the caller's own mailbox."""
        request = invite.request
        if username is None:
            return self._endpoint.create_response(request, 403)  # a trunk has no mailbox
        mailbox = mailbox_of(self._snapshot, domain, username)
        if mailbox is None:
            return self._endpoint.create_response(request, 404)
        self._start_voicemail(invite, mailbox, None, now, listen=True)
        return None

    def _start_voicemail(
        self,
        invite: RequestReceived,
        mailbox: Mailbox,
        to_tag: str | None,
        now: float,
        listen: bool = False,
    ) -> None:
        """A `VoicemailCall` takes the caller's INVITE (module rules: voicemail)."""
        request = invite.request
        call = VoicemailCall(
            self._endpoint,
            invite,
            mailbox,
            greeting_name(self._snapshot, mailbox, self.voicemail_greeting),
            self._local_contact,
            self._new_token,
            to_tag,
            listen=listen,
        )
        kind = "mailbox" if listen else "voicemail"
        entry = _Entry(
            call, str(request.from_address.uri), mailbox.account_uri, f"{kind}:{mailbox.number}"
        )
        self._calls[call.call_id] = entry
        self.counters["voicemail_calls"] += 1
        self._run(entry, lambda: call.start(now), now)

    def next_record(self) -> CallRecord | None:
        """The next finished call's record, or None. Counts cloud PBX records by kind
        (`calls_by_kind.internal|external`, issue 6) as they leave."""
        if not self._records:
            return None
        record = self._records.popleft()
        if record.kind:
            self.counters[f"calls_by_kind.{record.kind}"] += 1
        return record

    def next_deadline(self) -> float | None:
        """The earliest call deadline (may be one already obsolete: harmless)."""
        mwi_deadline = self.mwi.next_deadline() if self._voicemail else None
        while self._deadlines:
            deadline, _, entry = self._deadlines[0]
            if not entry.ended and entry.call.next_deadline() == deadline:
                return deadline if mwi_deadline is None else min(deadline, mwi_deadline)
            heapq.heappop(self._deadlines)
        return mwi_deadline

    def replace_snapshot(self, snapshot: ConfigSnapshot) -> None:
        """Route new INVITEs with `snapshot` from now on; calls in progress are not
        touched (a `Call` gets its route at start and never reads a snapshot). The
        toll-free rotation state of the numbers and sets still there is kept."""
        self._snapshot = snapshot
        self.tollfree.replace_snapshot(snapshot)

    # ================================================================ inputs
    def gate_new_invite(self, request: Request, now: float) -> Response | None:
        """The endpoint's `new_invite_gate`: the stateless 503 to a new INVITE while
        draining or overloaded, else None (module rules: draining, overload control)."""
        retry_after: int
        if not self._accepting:
            # Module rules: draining. RFC 3261 §21.5.4: 503 with Retry-After.
            self.counters["invites_refused_draining"] += 1
            retry_after = DRAINING_RETRY_AFTER
        else:
            # The draw only matters while congested: the hash is spared otherwise.
            draw = self._draw(request) if self.overload.congested else 0.0
            refusal = self.overload.check(self.invites_in_progress, now, draw)
            if refusal is None:
                return None
            # Module rules: overload control. RFC 3261 §21.5.4.
            self.counters["invites_refused_overload"] += 1
            retry_after = refusal.retry_after
        self.counters["invites"] += 1
        response = self._endpoint.create_stateless_response(request, 503)
        response.headers.add("Retry-After", str(retry_after))
        return response

    def _draw(self, request: Request) -> float:
        """The INVITE's overload draw in [0, 1): a keyed hash of its Call-ID, the same
        for each retransmission and not steerable by a caller choosing Call-IDs."""
        digest = hashlib.blake2b(
            request.call_id.encode("utf-8", "surrogateescape"),
            key=self._draw_key,
            digest_size=8,
        ).digest()
        return int.from_bytes(digest) / 18446744073709551616.0  # 2**64

    def handle_invite(self, event: RequestReceived, now: float) -> Response | None:
        """A new INVITE that passed the gate and §8.2: the rejection to send, or None
        (a call took it)."""
        request = event.request
        self.counters["invites"] += 1
        if request.call_id in self._by_call_id:
            self.counters["invites_call_id_in_use"] += 1
            return self._endpoint.create_response(request, 482)
        caller = self._authenticator.authenticate(request, event.flow, self._wall_clock())
        if isinstance(caller, Response):
            return caller
        number = tollfree_number_of(request)
        if number is not None and caller.trunk is not None:
            return self._tollfree_invite(event, number, caller.trunk, now)
        if self._voicemail and _dialled_user(request) == MAILBOX_FEATURE_CODE:
            return self._listen_to_mailbox(event, caller.domain, caller.username, now)
        # Cloud PBX routing (issue 6, `pbx_routing` rules): origin, dialled number,
        # target, and the identity the callee sees.
        route = route_pbx_call(
            request,
            caller,
            self._snapshot,
            self._registrations,
            self._wall_clock(),
            self.tollfree.trunk_channels,
        )
        if isinstance(route, CallRejection) and route.status_code == 480:
            mailbox = self._mailbox(request, caller.domain)
            if mailbox is not None:
                # Module rules: voicemail for an extension that is not registered.
                self._start_voicemail(event, mailbox, None, now)
                return None
        if isinstance(route, CallRejection):
            kind = "" if route.kind is None else route.kind.value
            if route.announcement is not None and self.tollfree.announcements:
                # Issue 6: the refusal's announcement as early media, then its status.
                self._refusal_announcement(event, route, kind, now)
                return None
            # Routing refused the call: still one record (module rules), never answered.
            self.counters[f"rejected.{route.status_code}"] += 1
            callee = request.uri
            self._records.append(
                CallRecord(
                    request.call_id,
                    str(request.from_address.uri),
                    str(callee),
                    "",
                    "rejected",
                    route.status_code,
                    0.0,
                    kind=kind,
                )
            )
            return self._endpoint.create_response(request, route.status_code, route.reason)
        mailbox = self._mailbox(request, caller.domain)
        call = Call(
            self._endpoint,
            event,
            route.target_uri,
            route.flow,
            self._local_contact,
            self._new_token,
            route.no_answer_timeout,
            targets=route.targets,
            divert=_diverted_to_voicemail if mailbox is not None else None,
            from_address=route.from_address,
            extra_headers=route.headers,
        )
        target = ",".join(uri for uri, _ in route.targets) or route.target_uri
        entry = _Entry(call, str(request.from_address.uri), route.callee, target, mailbox=mailbox)
        entry.kind = route.kind.value
        if route.trunk is not None:
            # Issue 6: the trunk's channel for the whole call (routing checked capacity).
            entry.trunk_channel = self.tollfree.trunk_channels.acquire(route.trunk, None)
        self._calls[call.call_id] = entry
        self.counters["calls_started"] += 1
        try:
            call.start(now)
            self._after(entry, now)
        except Exception as error:  # module rules: a call that raises
            self._crash(entry, error, now)
        return None

    def _refusal_announcement(
        self, event: RequestReceived, rejection: CallRejection, kind: str, now: float
    ) -> None:
        """Issue 6: a cloud PBX refusal played as early media, then its final status
        (`AnnouncementCall` with `final_status`); one record when it ends."""
        request = event.request
        assert rejection.announcement is not None
        call = AnnouncementCall(
            self._endpoint,
            event,
            rejection.announcement,
            self._local_contact,
            self._new_token,
            final_status=rejection.status_code,
        )
        entry = _Entry(
            call,
            str(request.from_address.uri),
            str(request.uri),
            f"announcement:{rejection.announcement}",
            kind=kind,
        )
        self._calls[call.call_id] = entry
        self.counters["refusal_announcement_calls"] += 1
        self._run(entry, lambda: call.start(now), now)

    def _tollfree_invite(
        self, event: RequestReceived, number: str, trunk_name: str | None, now: float
    ) -> Response | None:
        """Module rules: a toll-free INVITE, admitted (a `Call` takes it) or refused."""
        request = event.request
        wall_now = self._wall_clock()
        admitted = self.tollfree.admit(request, number, trunk_name, self._snapshot, wall_now)
        if isinstance(admitted, TollFreeAnnouncement):
            announcement_call = AnnouncementCall(
                self._endpoint,
                event,
                admitted.announcement,
                self._local_contact,
                self._new_token,
            )
            entry = _Entry(
                announcement_call,
                str(request.from_address.uri),
                number,
                f"announcement:{admitted.announcement}",
                announcement=admitted,
            )
            self._calls[announcement_call.call_id] = entry
            self.counters["calls_started"] += 1
            self.counters["tollfree_announcement_calls"] += 1
            self._run(entry, lambda: announcement_call.start(now), now)
            return None
        if not isinstance(admitted, TollFreeCall):
            self.counters[f"rejected.{admitted.status_code}"] += 1
            self._records.append(
                CallRecord(
                    request.call_id,
                    str(request.from_address.uri),
                    number,
                    "",
                    "rejected",
                    admitted.status_code,
                    0.0,
                )
            )
            if admitted.record is not None:
                self._emit(admitted.record)
            return self._endpoint.create_response(
                request, admitted.status_code, admitted.reason
            )
        call = Call(
            self._endpoint,
            event,
            admitted.call_targets[0][0],
            admitted.call_targets[0][1],
            self._local_contact,
            self._new_token,
            admitted.no_answer_timeout,
            targets=admitted.call_targets,
            sequential=True,
            fails_over=is_failover_status,
            status_translation=BUSY_TRANSLATION,
            attempt_timeout=self.tollfree.attempt_timeout,
        )
        target = ",".join(uri for uri, _ in admitted.call_targets)
        entry = _Entry(call, str(request.from_address.uri), number, target, tollfree=admitted)
        self._calls[call.call_id] = entry
        self.counters["calls_started"] += 1
        self.counters["tollfree_calls_started"] += 1
        self._run(entry, lambda: call.start(now), now)
        return None

    def _emit(self, call_record: TollFreeCallRecord) -> None:
        """Hand a toll-free record to the sink (module rules: a sink must not raise)."""
        self.counters["tollfree_records"] += 1
        if self._call_record_sink is None:
            return
        try:
            self._call_record_sink.record(call_record)
        except Exception:  # module rules: a broken sink never takes calls down
            self.counters["tollfree_record_sink_errors"] += 1

    def handle_call_event(self, event: SipEvent, now: float) -> bool:
        """Offer an endpoint event to the calls; True when one took it."""
        found: _Entry | None
        if self._voicemail and self.mwi.handle_event(
            event, now, self._snapshot, self._authenticator, self._wall_clock
        ):
            return True  # module rules: voicemail (SUBSCRIBE and our NOTIFYs)
        if isinstance(event, (RequestReceived, ResponseReceived)):
            message = event.request if isinstance(event, RequestReceived) else event.response
            found = self._by_call_id.get(message.call_id)
        elif isinstance(event, CancelReceived):
            # §9.2: the CANCEL matched the caller's INVITE server transaction.
            found = self._by_transaction.get(event.invite_transaction_key)
            if found is None:
                found = self._by_call_id.get(event.cancel.call_id)
        elif isinstance(event, (TransactionTimeout, TransportError)):
            found = self._by_transaction.get(event.transaction_key)
            if found is None:
                # Module rules: never offered to every call.
                self.counters["dropped_unindexed"] += 1
                return False
        else:
            return False  # TransactionTerminated, MessageDropped: never a call's
        return found is not None and self._deliver(found, event, now)

    def handle_timer(self, now: float) -> None:
        """Run every call deadline that is due."""
        if self._voicemail:
            self.mwi.handle_timer(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, entry = heapq.heappop(self._deadlines)
            if entry.ended or entry.call.next_deadline() != deadline:
                continue  # obsolete: the call moved on or ended
            try:
                entry.call.handle_timer(now)
                self._after(entry, now)
            except Exception as error:  # module rules: a call that raises
                self._crash(entry, error, now)

    # ================================================================ internals
    def _run(self, entry: _Entry, action: Callable[[], None], now: float) -> None:
        """Run one input of a call, then collect what it did (module rules: crashes)."""
        try:
            action()
            self._after(entry, now)
        except Exception as error:  # module rules: a call that raises
            self._crash(entry, error, now)

    def _deliver(self, entry: _Entry, event: SipEvent, now: float) -> bool:
        try:
            taken = entry.call.handle_event(event, now)
            self._after(entry, now)
        except Exception as error:  # module rules: a call that raises
            self._crash(entry, error, now)
            return True  # it was this call's event; nobody else should answer it
        return taken

    def _after(self, entry: _Entry, now: float) -> None:
        """Re-index the call, schedule its deadline, collect its end."""
        call = entry.call
        if entry.tollfree is not None:
            entry.tollfree.track(
                call.attempt, call.state is CallState.ANSWERED, self._wall_clock()
            )
        if isinstance(call, VoicemailCall):
            while (voicemail_effect := call.next_effect()) is not None:
                self._voicemail_effects.append(voicemail_effect)
        elif isinstance(call, Call):
            diversion = call.next_diversion()
            if diversion is not None:
                self._divert(entry, diversion, now)
        if isinstance(call, AnnouncementCall):
            while (effect := call.next_effect()) is not None:
                self._media_effects.append(effect)
            if (
                entry.announcement is not None
                and entry.announcement.answer_time is None
                and call.state in (CallState.ANSWERED, CallState.DISCONNECTING)
            ):
                entry.announcement.answer_time = self._wall_clock()
        self._reindex(entry, entry.call.call_ids, entry.call.transaction_keys)
        deadline = entry.call.next_deadline()
        if deadline is not None and deadline != entry.scheduled:
            entry.scheduled = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._sequence), entry))
        if not entry.settled and call.state not in _AWAITING_FINAL_ANSWER:
            entry.settled = True  # module rules: overload; the caller has its answer
            self._settled += 1
        ended = entry.call.next_event()
        if ended is not None:
            self._finish(entry, ended)

    def _divert(self, entry: _Entry, diversion: CallDiverted, now: float) -> None:
        """A `Call` handed its caller over: voicemail takes it (module rules)."""
        request = diversion.invite.request
        entry.diverted = True
        self.counters[f"diverted.{diversion.status_code}"] += 1
        if self._calls.get(request.call_id) is entry:
            # The callee side stays a call in progress under another key (for draining
            # and the overload count) until it ends (`_finish`, `_crash`).
            self._calls[_diverted_key(request.call_id)] = self._calls.pop(request.call_id)
        # The entry keeps only the callee side; the caller's Call-ID and INVITE go over.
        self._reindex(entry, entry.call.call_ids, entry.call.transaction_keys)
        mailbox = entry.mailbox
        if mailbox is None or not self._voicemail:  # cannot happen: answer as diverted
            self._endpoint.send_response(
                self._endpoint.create_response(
                    request, diversion.status_code, to_tag=diversion.to_tag
                ),
                now,
                diversion.invite.transaction_key,
            )
            return
        self._start_voicemail(diversion.invite, mailbox, diversion.to_tag, now)

    def _reindex(
        self, entry: _Entry, call_ids: frozenset[str], transaction_keys: frozenset[str]
    ) -> None:
        """Make the indexes hold exactly these Call-IDs and keys for `entry`."""
        if call_ids == entry.call_ids and transaction_keys == entry.transaction_keys:
            return  # most events change neither (a provisional, an ACK, a BYE's 200)
        for index, old, new in (
            (self._by_call_id, entry.call_ids, call_ids),
            (self._by_transaction, entry.transaction_keys, transaction_keys),
        ):
            for key in old - new:
                if index.get(key) is entry:
                    del index[key]
            for key in new - old:
                index[key] = entry
        entry.call_ids = call_ids
        entry.transaction_keys = transaction_keys

    def _remove(self, entry: _Entry) -> None:
        if entry.tollfree is not None:
            entry.tollfree.release()  # module rules: every ending releases the channels
        if entry.trunk_channel is not None:
            entry.trunk_channel.release()  # issue 6: a cloud PBX call's trunk channel
        entry.ended = True
        if entry.settled:
            entry.settled = False  # module rules: overload; counted once, uncounted once
            self._settled -= 1
        self._reindex(entry, frozenset(), frozenset())
        if self._calls.get(entry.call.call_id) is entry:
            del self._calls[entry.call.call_id]

    def _crash(self, entry: _Entry, error: Exception, now: float) -> None:
        """Module rules: a call that raised is ended, counted and recorded once."""
        self._remove(entry)
        if isinstance(entry.call, AnnouncementCall):
            # Module rules: the adapter never keeps a socket for a call that is gone (an
            # announcement call stops its media itself on every other ending).
            self._media_effects.append(StopMedia(entry.call.call_id))
        if isinstance(entry.call, VoicemailCall):
            self._voicemail_effects.append(StopRecorder(entry.call.call_id))
        if entry.diverted:
            self._calls.pop(_diverted_key(entry.call.call_id), None)
        self.counters["calls_crashed"] += 1
        call = entry.call
        try:
            if not entry.diverted:  # a diverted caller is the voicemail call's now
                self._endpoint.send_response(
                    self._endpoint.create_response(call.caller_invite, 500),
                    now,
                    call.caller_invite_key,
                )
        except LocalProtocolError:
            pass  # the caller already had its final response (§17.2.1)
        self._records.append(
            CallRecord(
                entry.call.call_id,
                entry.caller,
                entry.callee,
                entry.target,
                "crashed",
                500,
                0.0,
                f"{type(error).__name__}: {error}",
                kind=entry.kind,
            )
        )
        if entry.tollfree is not None:
            self._emit(entry.tollfree.record(None, self._wall_clock()))
        if entry.announcement is not None:
            self._emit(entry.announcement.record(None, self._wall_clock()))

    def _finish(self, entry: _Entry, ended: CallEnded) -> None:
        self._remove(entry)
        if entry.diverted:
            self._calls.pop(_diverted_key(entry.call.call_id), None)
            self.counters["calls_ended.diverted"] += 1
            return  # module rules: the voicemail call leaves the caller's record
        self.counters[f"calls_ended.{ended.result.value}"] += 1
        self._records.append(
            CallRecord(
                ended.call_id,
                entry.caller,
                entry.callee,
                entry.target,
                ended.result.value,
                ended.status_code,
                ended.duration,
                kind=entry.kind,
            )
        )
        if entry.tollfree is not None:
            self._emit(entry.tollfree.record(ended, self._wall_clock()))
        if entry.announcement is not None:
            self._emit(entry.announcement.record(ended, self._wall_clock()))


_VOICEMAIL_STATUSES = frozenset({408, 480, 486, 600, 603})
"""Final statuses sent to voicemail instead of the caller (module rules: voicemail):
unreachable, no answer or unavailable, busy, busy everywhere, declined."""


def _diverted_to_voicemail(status_code: int) -> bool:
    return status_code in _VOICEMAIL_STATUSES


MAILBOX_FEATURE_CODE = "*98"
"""Dialled by a fixed IP phone with voicemail: its own mailbox (module rules: voicemail)."""


def _dialled_user(request: Request) -> str | None:
    uri = request.uri
    if not isinstance(uri, SipUri) or uri.user is None:
        return None
    return unquote(uri.user)  # RFC 3261 §19.1.2: `*` may arrive escaped as %2A


def _diverted_key(call_id: str) -> str:
    """Where a diverted `Call` stays in `_calls` (the caller's Call-ID went on)."""
    return f"{call_id} diverted"
