"""The running element as a UAS: its own answers, and what it hands to registrar and B2BUA.

Rules:
- `check_request()` applies the checks of RFC 3261 §8.2 to a request the endpoint has
  already parsed and `validate()`d, in the RFC's order, and returns the first rejection
  (or None when the request may be processed):
    1. §8.2.1   405 Method Not Allowed, with Allow, for a method we do not implement.
    2. §8.2.2.1 416 Unsupported URI Scheme for a Request-URI that is not sip/sips/tel
       (RFC 4475 §3.3.2 unkscm, §3.3.3 novelsc).
    3. §8.2.2.1 404 Not Found for a Request-URI that is not ours. In this first version
       every sip:/sips: URI is ours: there is no registrar or domain list yet to say
       otherwise. A tel: URI (RFC 3966) is not ours until number routing exists.
    4. §8.2.2.2 482 Loop Detected for a merged request (the endpoint knows: it has seen
       the same From tag, Call-ID and CSeq arrive on another transaction).
    5. §8.2.2.3 420 Bad Extension, with Unsupported, for Require option tags we do not
       support. Proxy-Require is ignored: RFC 3261 §20.29 addresses it to proxies, and
       on each of its legs a B2BUA is a UAS, not a proxy. RFC 4475 §3.3.5 (bext01)
       carries unknown tags in both headers and is answered 420 for its Require.
       Require is ignored in ACK and CANCEL (§8.2.2.3).
    6. §8.2.3   415 Unsupported Media Type, with Accept, Accept-Encoding and
       Accept-Language, for a body we do not understand: we understand application/sdp
       with no content coding (RFC 4475 §3.3.6 invut). A body without Content-Type is
       a 400 (§20.15: Content-Type MUST be present when there is a body).
    7. §8.2.3 / §20.1 406 Not Acceptable when the request's Accept excludes what our
       answer must carry: the session description in the answer to an INVITE or to an
       UPDATE with an offer (RFC 4475 §3.3.15 sdp01). An empty Accept accepts nothing.
    8. §16.3 item 3 (applied to a B2BUA's forwarding) 483 Too Many Hops for
       Max-Forwards 0 on a request a B2BUA forwards to its other leg. OPTIONS and
       REGISTER are consumed here (§11, §10.3), so they are answered whatever
       Max-Forwards says (RFC 4475 §3.3.11 zeromf, §11 and §16.3 item 2 for OPTIONS).
- `answer_request()` is the whole UAS behaviour of this version: it never answers ACK
  (§17.1.1.3), answers a request that fails `validate()` with the error's status, or
  not at all when not even a response can be built from it (defence in depth: the
  endpoint validates first and answers those itself), runs `check_request()`, then
  answers what passed:
    - a request with a To tag is mid-dialog and no dialog exists yet: 481 (§12.2.2),
      except REGISTER, which is not dialog-bound;
    - OPTIONS: 200 with Allow, Accept, Accept-Encoding, Accept-Language and Supported
      (§11.2);
    - INVITE: 404 Not Found when the element has no call handler (see below);
    - REGISTER: 404 Not Found (§10.3 step 3: no such user) when the element has no
      registrar; otherwise see `Element` below;
    - BYE, INFO, UPDATE outside a dialog, and a CANCEL the endpoint passed up because
      it matched no transaction: 481 Call/Transaction Does Not Exist (§15.1.2, §9.2,
      RFC 6086 §4.2.2, RFC 3311 §5.2).
  So no request ever gets a 2xx except a valid OPTIONS.
- The functions are pure: responses are built by the endpoint's `create_response`
  (§8.2.6), which also picks the To tag unless the caller gives one, and nothing is
  sent. `Element` is the event
  handler that sends them through the endpoint.
- `Element` given a `RegisterHandler` (the running switch's registrar) passes it every
  REGISTER that `check_request()` let through, with the flow it arrived on (§10.3: the
  registrar does steps 1 and 3-8; step 2, Require, is §8.2.2.3 here), and sends the
  handler's response on the REGISTER's server transaction. The handler is a port: this
  module imports no registrar or database code.
- `Element` given a `CallHandler` (the running switch's B2BUA, `softswitch.b2bua.service`)
  offers it every endpoint event first; what a call takes (its responses, in-dialog
  requests, ACK, CANCEL, timeouts) goes no further. A new INVITE (no To tag) that
  `check_request()` let through goes to `handle_invite`, which returns the final
  response to send (403, 404, 407, 480, ...) or None when a call now owns the
  INVITE's server transaction. Without a handler, INVITE is answered 404 as above.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from softswitch.sip.errors import RemoteProtocolError
from softswitch.sip.events import CancelReceived, RequestReceived, SipEvent
from softswitch.sip.flows import Flow
from softswitch.sip.headers import MediaType, parse_token_list
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import AbsoluteUri, SipUri, TelUri, Uri

__all__ = [
    "ALLOWED_METHODS",
    "CallHandler",
    "DEFAULT_POLICY",
    "Element",
    "ElementPolicy",
    "RegisterHandler",
    "UserAgentServerCore",
    "answer_request",
    "check_request",
    "options_response",
]

logger = logging.getLogger("softswitch.element")

ALLOWED_METHODS: tuple[str, ...] = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE",
)

class UserAgentServerCore(Protocol):
    """The part of the pinned `SipEndpoint` contract the element uses."""

    def create_response(
        self,
        request: Request,
        status_code: int,
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> Response: ...

    def is_merged_request(self, request: Request) -> bool: ...

    def send_response(
        self, response: Response, now: float, transaction_key: str | None = None
    ) -> None: ...


class RegisterHandler(Protocol):
    """Port to a registrar (RFC 3261 §10.3); `softswitch.registrar.service` implements it."""

    def handle_register(self, request: Request, flow: Flow, now: float) -> Response:
        """The final response to a REGISTER that passed the §8.2 checks, received on
        `flow` at `now` (the SIP core's clock)."""
        ...


class CallHandler(Protocol):
    """Port to the B2BUA (RFC 3261 §8.2 passed; the handler owns calls and dialogs);
    `softswitch.b2bua.service.CallService` implements it."""

    def handle_call_event(self, event: SipEvent, now: float) -> bool:
        """Offer an endpoint event to the calls in progress; True when one took it."""
        ...

    def handle_invite(self, event: RequestReceived, now: float) -> Response | None:
        """A new INVITE: the final response to send, or None when a call took it."""
        ...


@dataclass(frozen=True, slots=True)
class ElementPolicy:
    """What this element implements and understands; one place to extend.

    Attributes:
        allowed_methods: the Allow list (§8.2.1, §20.5).
        supported_option_tags: option tags we implement (§8.2.2.3, §20.37); none yet.
        accepted_content_types: body types we understand (§8.2.3, §20.1).
        accepted_encodings: content codings we understand (§20.2); "identity" only.
        accepted_languages: languages of our reason phrases and bodies (§20.3).
        served_schemes: Request-URI schemes we serve (§8.2.2.1).
        locally_consumed_methods: methods this element answers itself and never
            forwards, so Max-Forwards 0 is no reason to refuse them.
    """

    allowed_methods: tuple[str, ...] = ALLOWED_METHODS
    supported_option_tags: tuple[str, ...] = ()
    accepted_content_types: tuple[str, ...] = ("application/sdp",)
    accepted_encodings: tuple[str, ...] = ("identity",)
    accepted_languages: tuple[str, ...] = ("en",)
    served_schemes: tuple[str, ...] = ("sip", "sips", "tel")
    locally_consumed_methods: tuple[str, ...] = ("OPTIONS", "REGISTER")

    def is_local_target(self, uri: Uri) -> bool:
        """Whether a Request-URI is ours (§8.2.2.1).

        First version: every sip:/sips: URI, since there is no registrar or domain list
        yet; no tel: URI, since there is no number routing yet.
        """
        return isinstance(uri, SipUri)


DEFAULT_POLICY = ElementPolicy()


def _uri_scheme(uri: Uri) -> str:
    if isinstance(uri, SipUri):
        return uri.scheme
    if isinstance(uri, TelUri):
        return "tel"
    return uri.scheme.lower()


def _response_tag(request: Request, to_tag: str | None) -> str | None:
    """The tag our response adds to To: none when the request has one (§8.2.6.2).

    None also when the caller gave none: the core then uses the tag its server
    transaction already answered with (a 200 to a CANCEL, say), or a new one, so that
    every response of a transaction carries the same tag (§8.2.6.2, §9.2).
    """
    if request.to_address.tag is not None:
        return None
    return to_tag


def _media_type_matches(offered: str, accepted: MediaType) -> bool:
    """Accept ranges (§20.1): `*/*`, `type/*` or an exact `type/subtype`."""
    kind, _, _ = offered.partition("/")
    accepted_type = accepted.type.lower()
    accepted_subtype = accepted.subtype.lower()
    if accepted_type == "*":
        return accepted_subtype == "*"
    if accepted_subtype == "*":
        return accepted_type == kind
    return accepted.essence == offered


def _accepts(request: Request, media_type: str) -> bool:
    """Whether the request's Accept allows a body of `media_type` in our answer.

    Without Accept, application/sdp is the default (§20.1); an empty Accept header
    accepts nothing.
    """
    if "accept" not in request.headers:
        return media_type == "application/sdp"
    return any(_media_type_matches(media_type, accepted) for accepted in request.accept)


def _content_codings(request: Request) -> list[str]:
    codings: list[str] = []
    for value in request.headers.get_all("Content-Encoding"):
        codings.extend(coding.lower() for coding in parse_token_list(value))
    return codings


def _add_accept_headers(response: Response, policy: ElementPolicy) -> None:
    response.headers.add("Accept", ", ".join(policy.accepted_content_types))
    response.headers.add("Accept-Encoding", ", ".join(policy.accepted_encodings))
    response.headers.add("Accept-Language", ", ".join(policy.accepted_languages))


def _reject(
    core: UserAgentServerCore,
    request: Request,
    status_code: int,
    to_tag: str | None,
    reason: str | None = None,
) -> Response:
    return core.create_response(request, status_code, reason, _response_tag(request, to_tag))


def _answer_carries_session_description(request: Request) -> bool:
    """Whether our final answer must carry SDP: the answer to an INVITE's offer (or our
    offer, for an INVITE without one, RFC 3261 §13.2.1) or to an UPDATE's offer
    (RFC 3311 §5.2)."""
    if request.method == "INVITE":
        return True
    return request.method == "UPDATE" and bool(request.body)


def check_request(
    request: Request,
    core: UserAgentServerCore,
    policy: ElementPolicy = DEFAULT_POLICY,
    to_tag: str | None = None,
) -> Response | None:
    """The first RFC 3261 §8.2 rejection of a validated request, or None (see the rules).

    Args:
        request: a request that passed `validate()`.
        core: builds responses (§8.2.6) and knows merged requests (§8.2.2.2).
        policy: what this element implements.
        to_tag: the To tag for a rejection of a request without one; when None the
            core chooses (the transaction's tag, or a new random one).

    Returns:
        The response to send, or None when the request passed every check. ACK is never
        rejected (no response to ACK, §17.1.1.3): the checks return None for it.

    Raises:
        RemoteProtocolError: only if `request` was not validated first.
    """
    method = request.method
    if method == "ACK":
        return None

    # §8.2.1: a method we do not implement.
    if method not in policy.allowed_methods:
        response = _reject(core, request, 405, to_tag)
        response.headers.add("Allow", ", ".join(policy.allowed_methods))
        return response

    # §8.2.2.1: the Request-URI's scheme, then whether the URI is ours.
    uri = request.uri
    if isinstance(uri, AbsoluteUri) or _uri_scheme(uri) not in policy.served_schemes:
        return _reject(core, request, 416, to_tag)
    if not policy.is_local_target(uri):
        return _reject(core, request, 404, to_tag)

    # §8.2.2.2: a request that reached us twice by different paths.
    if request.to_address.tag is None and core.is_merged_request(request):
        return _reject(core, request, 482, to_tag)

    # §8.2.2.3: Require (ignored in CANCEL, and in ACK which never gets here).
    if method != "CANCEL":
        unsupported = [
            option for option in request.require if option not in policy.supported_option_tags
        ]
        if unsupported:
            response = _reject(core, request, 420, to_tag)
            response.headers.add("Unsupported", ", ".join(unsupported))
            return response

    # §8.2.3: content processing.
    if request.body:
        content_type = request.content_type
        if content_type is None:
            return _reject(core, request, 400, to_tag, "Bad Request (body without Content-Type)")
        codings = [coding for coding in _content_codings(request) if coding != "identity"]
        if content_type.essence not in policy.accepted_content_types or codings:
            response = _reject(core, request, 415, to_tag)
            _add_accept_headers(response, policy)
            return response

    # §20.1: our answer would carry a session description the peer says it refuses.
    if _answer_carries_session_description(request) and not _accepts(
        request, "application/sdp"
    ):
        response = _reject(core, request, 406, to_tag)
        response.headers.add("Accept", ", ".join(policy.accepted_content_types))
        return response

    # Max-Forwards 0 on a request a B2BUA would forward (§16.3 item 3, by analogy).
    if request.max_forwards == 0 and method not in policy.locally_consumed_methods:
        return _reject(core, request, 483, to_tag)
    return None


def options_response(
    request: Request,
    core: UserAgentServerCore,
    policy: ElementPolicy = DEFAULT_POLICY,
    to_tag: str | None = None,
) -> Response:
    """200 to an OPTIONS for us, listing our capabilities (RFC 3261 §11.2)."""
    response = core.create_response(request, 200, None, _response_tag(request, to_tag))
    response.headers.add("Allow", ", ".join(policy.allowed_methods))
    _add_accept_headers(response, policy)
    response.headers.add("Supported", ", ".join(policy.supported_option_tags))
    return response


def answer_request(
    request: Request,
    core: UserAgentServerCore,
    policy: ElementPolicy = DEFAULT_POLICY,
    to_tag: str | None = None,
) -> Response | None:
    """The final response this element sends to a request, or None for ACK.

    See the module rules for the decisions; `check_request()` runs first.
    """
    if request.method == "ACK":
        return None
    try:
        request.validate()
    except RemoteProtocolError as error:
        # The endpoint validates before passing a request up; should one slip through,
        # it must still never be accepted: its error status if a response can be built
        # from it, else nothing (the endpoint's own stateless answer is the way).
        try:
            return core.create_response(request, error.status_code)
        except RemoteProtocolError:
            return None
    rejection = check_request(request, core, policy, to_tag)
    if rejection is not None:
        return rejection
    method = request.method
    if request.to_address.tag is not None and method != "REGISTER":
        # §12.2.2: a mid-dialog request for a dialog we do not have (none exist yet).
        return _reject(core, request, 481, to_tag)
    if method == "OPTIONS":
        return options_response(request, core, policy, to_tag)
    if method in ("INVITE", "REGISTER"):
        # No user exists yet: nobody to call, no address-of-record to bind (§10.3).
        return _reject(core, request, 404, to_tag)
    # BYE, INFO, UPDATE outside a dialog; CANCEL matching no transaction (§9.2).
    return _reject(core, request, 481, to_tag)


class Element:
    """The event handler of the running element: answers each request once.

    Give `handle_event` to the transport driver; it sends through `core` and the driver
    transmits afterwards.
    """

    def __init__(
        self,
        core: UserAgentServerCore,
        policy: ElementPolicy = DEFAULT_POLICY,
        registrar: RegisterHandler | None = None,
        calls: CallHandler | None = None,
    ) -> None:
        self._core = core
        self._policy = policy
        self._registrar = registrar
        self._calls = calls
        self.counters: Counter[str] = Counter()

    def handle_event(self, event: SipEvent, now: float) -> None:
        if self._calls is not None and self._calls.handle_call_event(event, now):
            return
        if isinstance(event, RequestReceived):
            self._handle_request(event, now)
        elif isinstance(event, CancelReceived):
            # Every INVITE is answered at once, so no INVITE server transaction is left in
            # PROCEEDING for a CANCEL to find; nothing to terminate.
            self.counters["cancels_for_answered_invites"] += 1
            logger.debug("CANCEL for %s after its final response", event.invite_transaction_key)

    def _handle_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        self.counters[f"requests.{_method_label(request.method)}"] += 1
        response: Response | None
        if request.method == "REGISTER" and self._registrar is not None:
            # The endpoint validated the request; §8.2 first, then the registrar.
            response = check_request(request, self._core, self._policy)
            if response is None:
                response = self._registrar.handle_register(request, event.flow, now)
        elif (
            request.method == "INVITE"
            and request.to_address.tag is None
            and self._calls is not None
        ):
            response = check_request(request, self._core, self._policy)
            if response is None:
                response = self._calls.handle_invite(event, now)
                if response is None:
                    self.counters["invites_to_calls"] += 1
                    return
        else:
            response = answer_request(request, self._core, self._policy)
        if response is None:
            return
        self.counters[f"responses.{response.status_code}"] += 1
        self._core.send_response(response, now, event.transaction_key)


def _method_label(method: str) -> str:
    """A bounded metric label: our methods by name, anything else as `other`."""
    return method if method in ALLOWED_METHODS else "other"

