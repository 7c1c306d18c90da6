"""Message-waiting indication: SUBSCRIBE/NOTIFY for `message-summary` (RFC 3842, RFC 6665).

Sans-I/O like the calls (STYLE.md principles 1, 2, 4): it sends through `SipEndpoint`,
takes `now` on every input, exposes `next_deadline()` / `handle_timer(now)`. The call
service offers it every endpoint event first (`handle_event`) and tells it when a
mailbox changed (`mailbox_changed`).

Rules:
- A new SUBSCRIBE (no To tag) with `Event: message-summary` (RFC 3842 §3) creates a
  subscription. Another event package gets 489 Bad Event with Allow-Events (RFC 6665
  §4.2.1.1 / §8.2.2); a SUBSCRIBE whose Accept excludes
  application/simple-message-summary gets 406 (RFC 3842 §4).
- The subscriber is authenticated exactly like a caller (`CallerAuthenticator`: 407
  Proxy-Authenticate, RFC 3261 §22.3) and must be the mailbox's own extension: the
  authenticated username equals the Request-URI user (403 otherwise; a trunk gets 403).
  A Request-URI that is no mailbox (no such extension, not a fixed IP phone, voicemail
  off) gets 404: what another extension has is none of the subscriber's business.
- Expires (RFC 6665 §4.2.1.1): absent means `DEFAULT_EXPIRES`; above `MAX_EXPIRES` is
  lowered; 1..`MIN_EXPIRES`-1 gets 423 with Min-Expires; 0 is a fetch/unsubscribe.
  The 200 carries the granted Expires and our Contact (RFC 6665 §4.2.1.1, §4.3).
- Every accepted SUBSCRIBE, initial or refresh (in-dialog, To tag), is followed by a
  NOTIFY at once (RFC 6665 §4.2.1.2) with `Subscription-State: active;expires=N`, or
  `terminated;reason=timeout` for Expires 0 (the subscription then ends, §4.2.1.4), and
  the RFC 3842 §5.2 body of the mailbox's current counts.
- `mailbox_changed(tenant_name, number, now)` (a message saved, deleted or heard) sends a
  NOTIFY to every active subscription of the mailbox (RFC 3842 §5: "whenever the
  state changes").
- A subscription that reaches its expiry without a refresh gets a final NOTIFY with
  `terminated;reason=timeout` (RFC 6665 §4.2.2) and ends. A NOTIFY answered 481 or
  timed out (Timer F, RFC 6665 §4.2.2: "SHOULD remove the subscription") ends it.
- NOTIFYs go to the flow the SUBSCRIBE came from (symmetric signalling, as calls do),
  inside the dialog the 200 created (RFC 6665 §4.1.2); NOTIFY carries our Contact
  (RFC 6665 §4.3: it is a target refresh request).
- No unsolicited NOTIFY: RFC 6665 §3.2 and §4.1.3 make a NOTIFY outside a subscription
  something a compliant UA answers 481, and every phone this product targets
  (baresip, pjsua, the usual desk phones) subscribes when MWI is configured; sending
  NOTIFYs to every registered contact would cost a transaction per phone per message
  for phones that did not ask. (Documented in README "Voicemail".)
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cloudpbx.snapshot import ConfigSnapshot
from softswitch.sip.endpoint import SipEndpoint
from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.events import (
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimeout,
    TransportError,
)
from softswitch.sip.flows import Flow
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import SipUri
from softswitch.voicemail.mailbox import (
    MESSAGE_SUMMARY_TYPE,
    Mailbox,
    mailbox_of,
    message_summary,
)

from .caller_auth import CallerAuthenticator
from .dialog import Dialog

__all__ = [
    "DEFAULT_EXPIRES",
    "EVENT_PACKAGE",
    "MAX_EXPIRES",
    "MIN_EXPIRES",
    "MwiNotifier",
]

EVENT_PACKAGE = "message-summary"
"""RFC 3842 §3."""
DEFAULT_EXPIRES = 3600
"""RFC 3842 §3: the default subscription duration of message-summary."""
MAX_EXPIRES = 3600
MIN_EXPIRES = 60


@dataclass(slots=True)
class _Subscription:
    mailbox: Mailbox
    dialog: Dialog
    flow: Flow
    expires_at: float


class MwiNotifier:
    """The message-summary subscriptions of one switch (see the module rules).

    Args:
        endpoint: the switch's endpoint.
        local_contact: our Contact URI.
        new_token: our To tags.
        counts: the current (new, old) counts of a mailbox.
    """

    def __init__(
        self,
        endpoint: SipEndpoint,
        local_contact: str,
        new_token: Callable[[], str],
        counts: Callable[[Mailbox], tuple[int, int]] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._local_contact = local_contact
        self._new_token = new_token
        self.counts: Callable[[Mailbox], tuple[int, int]] = counts or (lambda mailbox: (0, 0))
        self._subscriptions: dict[tuple[str, str], _Subscription] = {}
        """By (Call-ID, our To tag)."""
        self._notify_keys: dict[str, tuple[str, str]] = {}
        """Our NOTIFY client transactions -> their subscription."""
        self._deadlines: list[tuple[float, int, tuple[str, str]]] = []
        self._sequence = itertools.count()
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        """Active subscriptions."""
        return len(self._subscriptions)

    # ================================================================ outputs
    def next_deadline(self) -> float | None:
        while self._deadlines:
            deadline, _, key = self._deadlines[0]
            subscription = self._subscriptions.get(key)
            if subscription is not None and subscription.expires_at == deadline:
                return deadline
            heapq.heappop(self._deadlines)
        return None

    # ================================================================ inputs
    def handle_event(
        self,
        event: SipEvent,
        now: float,
        snapshot: ConfigSnapshot,
        authenticator: CallerAuthenticator,
        wall_clock: Callable[[], float],
    ) -> bool:
        """Take a SUBSCRIBE or an event of our NOTIFYs; True when it was ours.

        `wall_clock` is the authenticator's clock (read only for a new SUBSCRIBE)."""
        if isinstance(event, RequestReceived):
            if event.request.method != "SUBSCRIBE" or event.transaction_key is None:
                return False
            try:
                response = self._on_subscribe(event, now, snapshot, authenticator, wall_clock())
            except RemoteProtocolError as error:
                # STYLE.md principle 7: remote garbage is answered, never raised further.
                self.counters["subscribe_malformed"] += 1
                response = self._endpoint.create_response(event.request, error.status_code)
            if response is not None:
                self._endpoint.send_response(response, now, event.transaction_key)
            return True
        if isinstance(event, ResponseReceived):
            key = self._notify_keys.get(event.transaction_key)
            if key is None:
                return False
            if event.response.status_code >= 200:
                del self._notify_keys[event.transaction_key]
                if event.response.status_code == 481:
                    self._subscriptions.pop(key, None)  # RFC 6665 §4.2.2
                    self.counters["subscriptions_gone"] += 1
            return True
        if isinstance(event, (TransactionTimeout, TransportError)):
            key = self._notify_keys.pop(event.transaction_key, None)
            if key is None:
                return False
            self._subscriptions.pop(key, None)  # RFC 6665 §4.2.2: Timer F
            self.counters["subscriptions_gone"] += 1
            return True
        return False

    def mailbox_changed(self, tenant_name: str, number: str, now: float) -> None:
        """The mailbox's counts changed: NOTIFY every subscriber (RFC 3842 §5)."""
        for key, subscription in list(self._subscriptions.items()):
            mailbox = subscription.mailbox
            if mailbox.tenant_name == tenant_name and mailbox.number == number:
                self._notify(key, subscription, now)

    def handle_timer(self, now: float) -> None:
        """End the subscriptions whose time is up (module rules)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, key = heapq.heappop(self._deadlines)
            subscription = self._subscriptions.get(key)
            if subscription is None or subscription.expires_at != deadline:
                continue
            self._notify(key, subscription, now, terminated=True)
            del self._subscriptions[key]
            self.counters["subscriptions_expired"] += 1

    # ================================================================ internals
    def _on_subscribe(
        self,
        event: RequestReceived,
        now: float,
        snapshot: ConfigSnapshot,
        authenticator: CallerAuthenticator,
        wall_now: float,
    ) -> Response | None:
        request = event.request
        self.counters["subscribe"] += 1
        package = (request.headers.get("event") or "").split(";", 1)[0].strip().lower()
        if package != EVENT_PACKAGE:
            response = self._endpoint.create_response(request, 489)
            response.headers.add("Allow-Events", EVENT_PACKAGE)
            return response
        accept = request.headers.get_all("accept")
        if accept and MESSAGE_SUMMARY_TYPE not in {
            value.split(";", 1)[0].strip().lower() for text in accept for value in text.split(",")
        }:
            return self._endpoint.create_response(request, 406)
        expires = request.expires
        if expires is None:
            expires = DEFAULT_EXPIRES
        if 0 < expires < MIN_EXPIRES:
            response = self._endpoint.create_response(request, 423)
            response.headers.add("Min-Expires", str(MIN_EXPIRES))
            return response
        expires = min(expires, MAX_EXPIRES)
        to_tag = request.to_address.tag
        if to_tag is not None:
            return self._refresh(event, (request.call_id, to_tag), expires, now)
        caller = authenticator.authenticate(request, event.flow, wall_now)
        if isinstance(caller, Response):
            return caller
        uri = request.uri
        user = uri.user if isinstance(uri, SipUri) else None
        if caller.username is None or user is None:
            return self._endpoint.create_response(request, 403)
        mailbox = mailbox_of(snapshot, caller.domain, user)
        if mailbox is None:
            return self._endpoint.create_response(request, 404)
        if caller.username != user:
            return self._endpoint.create_response(request, 403)
        tag = self._new_token()
        dialog = Dialog.from_uas_request(request, tag, self._local_contact)
        key = (request.call_id, tag)
        subscription = _Subscription(mailbox, dialog, event.flow, now + expires)
        self._accept(request, event.transaction_key, tag, expires, now)
        self.counters["subscriptions"] += 1
        if expires == 0:
            self._notify(key, subscription, now, terminated=True)
            return None
        self._subscriptions[key] = subscription
        self._schedule(key, subscription)
        self._notify(key, subscription, now)
        return None

    def _refresh(
        self, event: RequestReceived, key: tuple[str, str], expires: int, now: float
    ) -> Response | None:
        request = event.request
        subscription = self._subscriptions.get(key)
        if subscription is None or not subscription.dialog.matches_request(request):
            return self._endpoint.create_response(request, 481)  # RFC 6665 §4.2.1.2
        if not subscription.dialog.receive_request(request):
            return self._endpoint.create_response(request, 500)
        self._accept(request, event.transaction_key, key[1], expires, now)
        if expires == 0:
            self._notify(key, subscription, now, terminated=True)
            del self._subscriptions[key]
            return None
        subscription.expires_at = now + expires
        subscription.flow = event.flow
        self._schedule(key, subscription)
        self._notify(key, subscription, now)
        return None

    def _accept(
        self, request: Request, transaction_key: str | None, tag: str, expires: int, now: float
    ) -> None:
        response = self._endpoint.create_response(request, 200, to_tag=tag)
        response.headers.add("Expires", str(expires))
        response.headers.add("Contact", f"<{self._local_contact}>")
        self._endpoint.send_response(response, now, transaction_key)

    def _schedule(self, key: tuple[str, str], subscription: _Subscription) -> None:
        heapq.heappush(self._deadlines, (subscription.expires_at, next(self._sequence), key))

    def _notify(
        self,
        key: tuple[str, str],
        subscription: _Subscription,
        now: float,
        terminated: bool = False,
    ) -> None:
        new, old = self.counts(subscription.mailbox)
        body = message_summary(subscription.mailbox, new, old)
        notify = subscription.dialog.create_request("NOTIFY", body, MESSAGE_SUMMARY_TYPE)
        notify.headers.add("Event", EVENT_PACKAGE)
        if terminated:
            state = "terminated;reason=timeout"
        else:
            remaining = max(0, int(subscription.expires_at - now))
            state = f"active;expires={remaining}"
        notify.headers.add("Subscription-State", state)
        if notify.headers.get("contact") is None:
            notify.headers.add("Contact", f"<{self._local_contact}>")
        transaction = self._endpoint.send_request(notify, now, subscription.flow)
        self._notify_keys[transaction] = key
        self.counters["notify"] += 1
