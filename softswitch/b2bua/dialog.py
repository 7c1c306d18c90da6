"""RFC 3261 §12 dialogs: the state two UAs share, and the requests sent inside one.

Rules:
- A dialog is identified by `call_id`, `local_tag` and `remote_tag` (§12). Incoming
  requests belong to it when their Call-ID matches, their To tag is our `local_tag` and
  their From tag is our `remote_tag` (`matches_request`).
- UAC side (§12.1.2): `Dialog.from_uac_response(invite, response)` from a 2xx, or from
  a 1xx carrying a To tag (an early dialog). The route set is the response's
  Record-Route in reverse order, the remote target its Contact (the Request-URI if it
  has none), the local CSeq the INVITE's, the remote CSeq empty.
- UAS side (§12.1.1): `Dialog.from_uas_request(invite, local_tag)`. The route set is
  the request's Record-Route in order, the remote target its Contact, the remote CSeq
  the INVITE's, the local CSeq empty until the first request we send.
- Requests inside the dialog (§12.2.1.1): To is the remote URI with the remote tag, From
  the local URI with the local tag, Call-ID the dialog's. The local CSeq goes up by one
  for every request except ACK and CANCEL, which reuse the INVITE's number (§13.2.2.4,
  §9.1). With an empty route set the Request-URI is the remote target and there is no
  Route; with a loose router first (`lr`) the Request-URI is the remote target and the
  route set is the Route header; with a strict router first its URI (URI headers
  dropped, §19.1.1) is the Request-URI and the rest of the route set plus the remote target
  form the Route header.
- `receive_request` applies §12.2.2: a CSeq lower than or equal to the remote CSeq is
  out of order (the TU answers 500), ACK and CANCEL are not sequence-checked, and a
  target refresh (re-INVITE, UPDATE) with a Contact replaces the remote target.
- `receive_response` applies §12.2.1.2: a 2xx to a target refresh we sent replaces the
  remote target with the response's Contact, when it has one.
- Via and Max-Forwards are left to `SipEndpoint.send_request` (§8.1.1).
- URIs are kept as their name-address text without the tag (`local_uri`,
  `remote_uri`), so display names survive (§12.1.1: the To/From URIs).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from softswitch.sip.errors import LocalProtocolError
from softswitch.sip.headers import NameAddress, parse_name_address
from softswitch.sip.message import Headers, Request, Response
from softswitch.sip.uri import SipUri

__all__ = ["Dialog", "DialogState"]

_NOT_SEQUENCED = frozenset({"ACK", "CANCEL"})
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    """§12: a dialog created by a provisional response is early, by a 2xx confirmed."""

    EARLY = "Early"
    CONFIRMED = "Confirmed"


def _without_tag(address: NameAddress) -> str:
    copied = address.copy()
    copied.parameters.pop("tag", None)
    return str(copied)


def _route_text(address: NameAddress) -> str:
    return str(address)


@dataclass(slots=True)
class Dialog:
    """One dialog as one of its two UAs sees it (§12).

    Attributes:
        state: EARLY or CONFIRMED.
        call_id: the Call-ID.
        local_tag: our tag (From tag of requests we send).
        remote_tag: the peer's tag.
        local_uri: our name-address, without tag.
        remote_uri: the peer's name-address, without tag.
        remote_target: the peer's Contact URI: the Request-URI of our requests.
        route_set: Route values, in the order our requests carry them (§12.1).
        local_cseq: the CSeq number of the last request we sent; None while empty.
        remote_cseq: the CSeq number of the last request we received; None while empty.
        local_contact: our Contact URI, put on requests that need one (INVITE, UPDATE).
    """

    state: DialogState
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_cseq: int | None = None
    remote_cseq: int | None = None
    local_contact: str | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def from_uac_response(
        cls, invite: Request, response: Response, local_contact: str | None = None
    ) -> Dialog:
        """§12.1.2: the dialog a 2xx (or a 1xx with a To tag) to our INVITE creates.

        Raises:
            LocalProtocolError: the response is not 1xx/2xx or has no To tag.
        """
        remote_tag = response.to_address.tag
        if remote_tag is None or not 101 <= response.status_code < 300:
            raise LocalProtocolError(
                f"a {response.status_code} without To tag creates no dialog (RFC 3261 §12.1)"
            )
        contacts = response.contacts
        remote_target = str(contacts[0].uri) if contacts else invite.uri_text
        return cls(
            state=DialogState.CONFIRMED if response.is_success else DialogState.EARLY,
            call_id=invite.call_id,
            local_tag=invite.from_address.tag or "",
            remote_tag=remote_tag,
            local_uri=_without_tag(invite.from_address),
            remote_uri=_without_tag(invite.to_address),
            remote_target=remote_target,
            route_set=[_route_text(route) for route in reversed(response.record_routes)],
            local_cseq=invite.cseq.number,
            remote_cseq=None,
            local_contact=local_contact,
        )

    @classmethod
    def from_uas_request(
        cls,
        invite: Request,
        local_tag: str,
        local_contact: str | None = None,
        state: DialogState = DialogState.CONFIRMED,
    ) -> Dialog:
        """§12.1.1: the dialog our response with `local_tag` to `invite` creates."""
        contacts = invite.contacts
        remote_target = str(contacts[0].uri) if contacts else invite.uri_text
        return cls(
            state=state,
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_address.tag or "",
            local_uri=_without_tag(invite.to_address),
            remote_uri=_without_tag(invite.from_address),
            remote_target=remote_target,
            route_set=[_route_text(route) for route in invite.record_routes],
            local_cseq=None,
            remote_cseq=invite.cseq.number,
            local_contact=local_contact,
        )

    # ------------------------------------------------------------------ matching
    def matches_request(self, request: Request) -> bool:
        """Whether `request` was sent inside this dialog (§12.2.2)."""
        return (
            request.call_id == self.call_id
            and request.to_address.tag == self.local_tag
            and request.from_address.tag == self.remote_tag
        )

    def matches_response(self, response: Response) -> bool:
        """Whether `response` answers a request of this dialog."""
        return (
            response.call_id == self.call_id
            and response.from_address.tag == self.local_tag
            and response.to_address.tag == self.remote_tag
        )

    def receive_request(self, request: Request) -> bool:
        """§12.2.2: check and record the CSeq of an in-dialog request; refresh the
        remote target. Returns False when the request is out of order (answer 500)."""
        if request.method in _NOT_SEQUENCED:
            return True
        number = request.cseq.number
        if self.remote_cseq is not None and number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        if request.method in _TARGET_REFRESH:
            contacts = request.contacts
            if contacts:
                self.remote_target = str(contacts[0].uri)
        return True

    def receive_response(self, method: str, response: Response) -> None:
        """§12.2.1.2: a 2xx to a target refresh request (re-INVITE, RFC 3311 UPDATE)
        we sent replaces the remote target with its Contact, when it has one."""
        if method in _TARGET_REFRESH and response.is_success:
            contacts = response.contacts
            if contacts:
                self.remote_target = str(contacts[0].uri)

    # ------------------------------------------------------------------ requests
    def create_request(
        self, method: str, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """A request inside the dialog (§12.2.1.1), with a new local CSeq.

        Raises:
            LocalProtocolError: ACK or CANCEL (use `create_ack`; CANCEL is the
                transaction layer's, §9.1).
        """
        if method in _NOT_SEQUENCED:
            raise LocalProtocolError(f"{method} reuses the INVITE's CSeq: not create_request")
        self.local_cseq = 1 if self.local_cseq is None else self.local_cseq + 1
        return self._build(method, self.local_cseq, body, content_type)

    def create_ack(
        self, invite_cseq: int, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK of a 2xx to the INVITE with CSeq number `invite_cseq` (§13.2.2.4)."""
        return self._build("ACK", invite_cseq, body, content_type)

    def _build(self, method: str, cseq: int, body: bytes, content_type: str | None) -> Request:
        request_uri, routes = self._request_uri_and_routes()
        headers = Headers()
        for route in routes:
            headers.add("Route", route)
        headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        headers.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in _TARGET_REFRESH and self.local_contact is not None:
            headers.add("Contact", f"<{self.local_contact}>")
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(method, request_uri, headers, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """§12.2.1.1: the Request-URI and Route values, loose or strict routing."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_name_address(self.route_set[0])
        uri = first.uri
        if isinstance(uri, SipUri) and not uri.loose_route:
            strict = SipUri(
                uri.host, uri.user, uri.password, uri.port, dict(uri.parameters), None, uri.scheme
            )
            return str(strict), [*self.route_set[1:], f"<{self.remote_target}>"]
        return self.remote_target, list(self.route_set)
