"""The registrar: RFC 3261 §10.3 REGISTER processing over a `BindingTable`. Pure.

No I/O and no clock: every call takes `now`. Subscribers and domains come through the
`CredentialLookup` and `DomainLookup` ports; binding changes leave as returned
`BindingChange`s for a `BindingStore` adapter; responses are built by the endpoint's
`create_response` (RFC 3261 §8.2.6), passed in as a `ResponseFactory`.

Rules, in the order `handle_register()` applies them:
0. Brute-force lockout: a source IP address that failed authentication
   `failure_threshold` times within `failure_window` seconds gets 403 for every REGISTER
   for `lockout_duration` seconds, valid credentials or not. Only WRONG digests count
   (a wrong password, an unknown user, a foreign realm); a missing Authorization, a
   stale or replayed nonce and a nonce from another secret do not.
   The `AuthenticationFailureTracker` may be shared (`softswitch.wiring` shares it with
   the B2BUA's `CallerAuthenticator`): then wrong INVITE digests (RFC 3261 §22.3) count
   toward the same lockout, and a locked-out source gets 403 for INVITE too. One
   address, one budget of guesses, whichever method carries them.
   A success clears nothing: neither its own source's failures (a valid account must
   not launder guesses at others from the same address) nor any other source's.
   Memory is bounded: at most `max_tracked_sources` addresses, least recently seen
   dropped first, and records idle for longer than the window and the lockout are
   dropped as new failures arrive.
1. §10.3 step 1: the Request-URI must be a sip:/sips: URI (416 otherwise, §8.2.2.1) whose
   host is a domain we serve (404 otherwise: we do not forward REGISTER). Its userinfo,
   which §10.2 forbids, is ignored.
2. §10.3 step 2 (Require) is the element's job (`softswitch.element.check_request`).
3. §10.3 step 3, §22.4: without Digest credentials, 401 with one WWW-Authenticate per
   algorithm in the subscriber's configured order (the To user's), or the registrar's
   default order (SHA-256 then MD5, RFC 8760 §2.3) for an unknown user; qop="auth"
   and a fresh nonce (RFC 7616 §3.3). Credentials whose digest is right but whose nonce
   is stale or replayed get 401 with stale=true (RFC 7616 §3.3, §5.5); any other
   failure gets 401 with stale=false.
   No user enumeration: an unknown user is challenged with the domain as realm and the
   default algorithms, and its credentials are checked against a random HA1 that can
   never match, so the answer (status, headers, work done) is that of a wrong password.
   This holds for subscribers whose realm is their domain and whose algorithms are the
   default; a subscriber with its own algorithm list (e.g. MD5 only) is
   distinguishable by its challenge, by construction.
4. §10.3 step 4: the authenticated user may only register its own address-of-record:
   the To URI must be sip:<username>@<Request-URI domain>, else 403.
5. §10.3 step 5: the address-of-record is (Request-URI domain, To user); the user is
   case-sensitive, the domain is not (§19.1.4).
6. §10.3 step 6: `Contact: *` must be the only Contact and the Expires header must be 0
   (400 otherwise); it removes every binding of the address-of-record. A REGISTER
   without Contact changes nothing and fetches the bindings (§10.2.3).
7. §10.3 step 7: a contact's expiry is its `expires` parameter, else the Expires header,
   else `default_expires` (§10.2.1.1: the parameter wins). A non-zero value below
   `min_expires` gets 423 with Min-Expires (§10.2.8, §20.23); one above `max_expires` is
   shortened to it. 0 removes the binding. For an existing binding with the same
   Call-ID, a CSeq not higher than the stored one means a reordered or replayed
   request: the update is aborted and the request fails with 500 (§10.3 steps 7-8).
   A different Call-ID always updates. A binding whose expiry passed counts as absent
   (and is reported REMOVED/EXPIRED with the result). At most `max_bindings_per_aor`
   bindings per address-of-record (403 beyond it: bounded memory per subscriber).
8. §10.3 step 8: all changes of one REGISTER are committed together or not at all; the
   200 lists every current binding with its remaining `expires` and its `q` and other
   parameters, plus a Date header when `date_header` is set (then `now` must be the
   wall clock, seconds since the epoch).
Malformed Contact parameters, expiry values or URIs get 400.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Final, Protocol

from softswitch.sip.auth import (
    DEFAULT_ALGORITHMS,
    DigestCredentials,
    NonceManager,
    VerificationResult,
    VerificationStatus,
    build_challenges,
    canonical_algorithm,
    verify,
)
from softswitch.sip.errors import LocalProtocolError, RemoteProtocolError
from softswitch.sip.flows import Flow
from softswitch.sip.headers import NameAddress, format_parameters
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import SipUri

from .bindings import (
    AddressOfRecord,
    Binding,
    BindingChange,
    BindingTable,
    ChangeKind,
    RemovalReason,
)

__all__ = [
    "AuthenticationFailureTracker",
    "CredentialLookup",
    "DomainLookup",
    "RegistrarConfig",
    "Registrar",
    "RegistrationResult",
    "ResponseFactory",
    "SubscriberCredentials",
]

# Contact parameters the registrar interprets itself; the others are stored and echoed.
_INTERPRETED_CONTACT_PARAMETERS: Final = frozenset({"expires", "q"})


@dataclass(frozen=True, slots=True)
class SubscriberCredentials:
    """What the registrar needs to authenticate one subscriber (no password).

    Attributes:
        username: the digest username, equal to the user part of the AOR.
        realm: the digest realm; the subscriber's domain, so that unknown users
            look the same (see the module rules).
        ha1_by_algorithm: HA1 per hash, keyed "MD5" / "SHA-256" (RFC 7616 §3.4.2).
        algorithms: the challenges to offer, most preferred first (RFC 8760 §2.3),
            e.g. ("SHA-256", "MD5") or ("MD5",) for phones that only know MD5.
    """

    username: str
    realm: str
    ha1_by_algorithm: Mapping[str, str]
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS


class CredentialLookup(Protocol):
    """Port to the subscriber directory (an adapter over `cloudpbx`'s config snapshot)."""

    def lookup(self, domain: str, user: str) -> SubscriberCredentials | None:
        """The subscriber `user` of `domain` (lower-case), or None if there is none."""
        ...


class DomainLookup(Protocol):
    """Port to the list of domains this registrar serves."""

    def is_local_domain(self, domain: str) -> bool:
        """True when `domain` (lower-case) is ours (RFC 3261 §10.3 step 1)."""
        ...


class ResponseFactory(Protocol):
    """The part of `SipEndpoint` used to build responses (RFC 3261 §8.2.6)."""

    def create_response(
        self,
        request: Request,
        status_code: int,
        reason: str | None = None,
        to_tag: str | None = None,
    ) -> Response: ...


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """Registrar policy; validated on construction.

    Attributes:
        min_expires: shortest accepted non-zero expiry, seconds (423 below, §10.3 step 7).
        max_expires: longest granted expiry; longer requests are shortened.
        default_expires: expiry when the request names none (§10.2.1.1).
        default_algorithms: challenge algorithms for unknown users, most preferred
            first; keep equal to the subscribers' usual list (no enumeration).
        max_bindings_per_aor: contacts per address-of-record (403 beyond).
        failure_threshold: authentication failures from one source that lock it out.
        failure_window: seconds within which those failures must fall.
        lockout_duration: seconds a locked-out source gets 403.
        max_tracked_sources: bound of the failure tracker's memory.
        date_header: add a Date header to 200s (§10.3 step 8); needs wall-clock `now`.
    """

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    default_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_bindings_per_aor: int = 10
    failure_threshold: int = 10
    failure_window: float = 60.0
    lockout_duration: float = 300.0
    max_tracked_sources: int = 10_000
    date_header: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_expires <= self.max_expires:
            raise ValueError("need 1 <= min_expires <= max_expires")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("default_expires must lie within [min_expires, max_expires]")
        if not self.default_algorithms or any(
            canonical_algorithm(name) is None for name in self.default_algorithms
        ):
            raise ValueError("default_algorithms must name supported digest algorithms")
        if self.max_bindings_per_aor < 1 or self.failure_threshold < 1:
            raise ValueError("max_bindings_per_aor and failure_threshold must be >= 1")
        if self.max_tracked_sources < 1:
            raise ValueError("max_tracked_sources must be >= 1")
        if not (self.failure_window > 0 and self.lockout_duration > 0):
            raise ValueError("failure_window and lockout_duration must be positive")


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """What `handle_register()` decided.

    Attributes:
        response: the final response to send on the REGISTER's server transaction.
        changes: binding changes to persist, in order (empty unless something changed).
    """

    response: Response
    changes: tuple[BindingChange, ...] = ()


# --- Brute-force protection -----------------------------------------------------------------


@dataclass(slots=True)
class _SourceRecord:
    failures: deque[float]
    locked_until: float = -math.inf
    last_seen: float = -math.inf


@dataclass(slots=True)
class AuthenticationFailureTracker:
    """Authentication failures per source address, with lockout (see rule 0).

    Records are kept in least-recently-seen order; `now` must not go backwards by much
    for the idle purge to be exact (it only ever drops records early by that amount).
    """

    threshold: int
    window: float
    lockout: float
    max_sources: int
    evictions: int = field(default=0, init=False)
    """Records dropped to stay within `max_sources` (an attack spread over addresses)."""
    _records: OrderedDict[str, _SourceRecord] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    @classmethod
    def for_config(cls, config: RegistrarConfig) -> AuthenticationFailureTracker:
        """A tracker with the thresholds of `config` (rule 0)."""
        return cls(
            threshold=config.failure_threshold,
            window=config.failure_window,
            lockout=config.lockout_duration,
            max_sources=config.max_tracked_sources,
        )

    def __len__(self) -> int:
        return len(self._records)

    def is_locked(self, source: str, now: float) -> bool:
        record = self._records.get(source)
        if record is None or now >= record.locked_until:
            return False
        record.last_seen = now
        self._records.move_to_end(source)
        return True

    def record_failure(self, source: str, now: float) -> bool:
        """Count one failure; True when it locks `source` out (from `now`)."""
        self._purge_idle(now)
        record = self._records.get(source)
        if record is None:
            record = _SourceRecord(deque(maxlen=self.threshold))
            self._records[source] = record
            while len(self._records) > self.max_sources:
                self._records.popitem(last=False)
                self.evictions += 1
        else:
            self._records.move_to_end(source)
        record.last_seen = now
        failures = record.failures
        failures.append(now)
        # The deque holds the last `threshold` failures: all within the window -> lock.
        if len(failures) == self.threshold and now - failures[0] <= self.window:
            record.locked_until = now + self.lockout
            failures.clear()
            return True
        return False

    def _purge_idle(self, now: float) -> None:
        horizon = max(self.window, self.lockout)
        records = self._records
        while records:
            source, record = next(iter(records.items()))
            if now - record.last_seen <= horizon or now < record.locked_until:
                return
            del records[source]


class _RequestFailed(Exception):
    """Internal: abort processing with this status (no binding was changed)."""

    def __init__(
        self,
        status_code: int,
        reason: str | None = None,
        counter: str = "register_rejected",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.reason = reason
        self.counter = counter
        self.headers = headers


# --- The registrar --------------------------------------------------------------------------


class Registrar:
    """Processes REGISTER requests and owns the bindings (see the module rules).

    Typical use by the element: on `RequestReceived` for REGISTER, call
    `handle_register(request, flow, now)`, send `result.response` through the endpoint,
    hand `result.changes` to the `BindingStore` adapter; arm a timer at
    `next_expiry()` and call `expire(now)` when it fires, persisting what it returns.
    """

    def __init__(
        self,
        config: RegistrarConfig,
        credentials: CredentialLookup,
        domains: DomainLookup,
        nonce_manager: NonceManager,
        responses: ResponseFactory,
        failure_tracker: AuthenticationFailureTracker | None = None,
    ) -> None:
        """
        Args:
            failure_tracker: the brute-force tracker (rule 0) to use, e.g. one shared
                with the caller authenticator; default: a new one from `config`.
        """
        self.config = config
        self.counters: Counter[str] = Counter()
        self._credentials = credentials
        self._domains = domains
        self._nonces = nonce_manager
        self._responses = responses
        self._table = BindingTable()
        self._failures = (
            failure_tracker
            if failure_tracker is not None
            else AuthenticationFailureTracker.for_config(config)
        )
        # Checked in place of an unknown user's HA1 so that the work done is that of a
        # wrong password; random, so no response can ever match it (and a match would
        # still be refused: see _authenticate).
        self._decoy_ha1 = {"MD5": secrets.token_hex(16), "SHA-256": secrets.token_hex(32)}

    # ------------------------------------------------------------------ queries
    @property
    def bindings(self) -> BindingTable:
        """The binding table (read it; change it only through the registrar)."""
        return self._table

    @property
    def failure_tracker(self) -> AuthenticationFailureTracker:
        return self._failures

    def lookup_contacts(self, domain: str, user: str, now: float) -> list[Binding]:
        """Live bindings of sip:user@domain for the B2BUA: highest q first, then most
        recently refreshed first. Each carries the flow to send requests on."""
        return self._table.lookup(AddressOfRecord(domain.lower(), user), now)

    def next_expiry(self) -> float | None:
        """When `expire()` next has work: the earliest binding expiry, or None."""
        return self._table.next_expiry()

    # ------------------------------------------------------------------ time and start-up
    def expire(self, now: float) -> list[BindingChange]:
        """Remove bindings whose expiry passed (RFC 3261 §10.2.1); returns them as
        REMOVED/EXPIRED changes for the store."""
        changes = self._table.expire(now)
        self.counters["bindings_expired"] += len(changes)
        return changes

    def load_bindings(self, bindings: Iterable[Binding], now: float) -> list[BindingChange]:
        """Install persisted bindings at start-up (before any REGISTER is handled).

        Returns the REMOVED changes for bindings that are already expired, and for
        duplicates of one (AOR, contact URI) of which the most recently updated is
        kept, so the store can delete them.
        """
        removed: list[BindingChange] = []
        by_aor: dict[AddressOfRecord, list[Binding]] = {}
        for binding in sorted(bindings, key=lambda binding: binding.updated_at):
            if not binding.is_live(now):
                removed.append(
                    BindingChange(ChangeKind.REMOVED, binding, RemovalReason.EXPIRED)
                )
                continue
            aor = binding.address_of_record
            current = by_aor.get(aor)
            if current is None:
                current = by_aor[aor] = self._table.get(aor)
            for index, existing in enumerate(current):
                if existing.contact_uri == binding.contact_uri:
                    removed.append(
                        BindingChange(ChangeKind.REMOVED, existing, RemovalReason.REPLACED)
                    )
                    del current[index]
                    break
            current.append(binding)
        for aor, aor_bindings in by_aor.items():
            self._table.replace(aor, aor_bindings)
        return removed

    # ------------------------------------------------------------------ REGISTER
    def handle_register(self, request: Request, flow: Flow, now: float) -> RegistrationResult:
        """Process one REGISTER (RFC 3261 §10.3) received on `flow` at `now`.

        Args:
            request: a REGISTER the endpoint has parsed and `validate()`d.
            flow: where it came from; its address is the brute-force key and the
                bindings' route back (NAT).
            now: current time on the registrar's clock.

        Returns:
            The final response and the binding changes to persist.

        Raises:
            LocalProtocolError: `request` is not a REGISTER.
        """
        if request.method != "REGISTER":
            raise LocalProtocolError(f"the registrar handles REGISTER, not {request.method}")
        self.counters["register_received"] += 1
        try:
            return self._handle_register(request, flow, now)
        except _RequestFailed as failure:
            self.counters[failure.counter] += 1
            response = self._responses.create_response(
                request, failure.status_code, failure.reason
            )
            for name, value in failure.headers:
                response.headers.add(name, value)
            return RegistrationResult(response)
        except RemoteProtocolError as error:
            # Malformed Contact, expires, q or URI (parsed lazily): §21.4.1.
            self.counters["register_malformed"] += 1
            return RegistrationResult(
                self._responses.create_response(request, error.status_code)
            )

    def _handle_register(self, request: Request, flow: Flow, now: float) -> RegistrationResult:
        source = flow.remote[0]
        if self._failures.is_locked(source, now):
            raise _RequestFailed(403, counter="register_locked_out")

        # Step 1: the Request-URI names the domain.
        request_uri = request.uri
        if not isinstance(request_uri, SipUri):
            raise _RequestFailed(416)
        domain = request_uri.host.lower()
        if not self._domains.is_local_domain(domain):
            raise _RequestFailed(404, counter="register_unknown_domain")

        # Step 3: authentication.
        authenticated = self._authenticate(request, source, domain, now)
        if isinstance(authenticated, Response):
            return RegistrationResult(authenticated)
        username = authenticated

        # Steps 4 and 5: the authenticated user registers its own address-of-record.
        to_uri = request.to_address.uri
        if not (
            isinstance(to_uri, SipUri)
            and to_uri.user == username
            and to_uri.host.lower() == domain
        ):
            raise _RequestFailed(403, counter="register_forbidden_aor")
        aor = AddressOfRecord(domain, username)

        # Steps 6-8.
        changes = self._update_bindings(request, flow, aor, now)
        response = self._responses.create_response(request, 200)
        for binding in self._table.lookup(aor, now):
            response.headers.add("Contact", _contact_value(binding, now))
        if self.config.date_header:
            response.headers.add("Date", formatdate(now, usegmt=True))
        self.counters["register_ok" if changes else "register_fetched"] += 1
        return RegistrationResult(response, tuple(changes))

    def _authenticate(
        self, request: Request, source: str, domain: str, now: float
    ) -> str | Response:
        """The authenticated username when the request carries valid credentials of a
        subscriber of `domain`; otherwise the 401 (or, on lockout, 403) to send."""
        credentials = _digest_credentials(request)
        if credentials is None:
            # First REGISTER of a registration: challenge with the To user's settings.
            to_uri = request.to_address.uri
            user = to_uri.user if isinstance(to_uri, SipUri) else None
            subscriber = None if user is None else self._credentials.lookup(domain, user)
            self.counters["register_challenged"] += 1
            return self._challenge(request, subscriber, domain, now, stale=False)

        username = credentials.username
        subscriber = None if username is None else self._credentials.lookup(domain, username)
        if subscriber is not None:
            result = verify(
                credentials, request.method, subscriber.ha1_by_algorithm, self._nonces, now,
                subscriber.realm,
            )
        else:
            # Same work and same answer as a wrong password (module rule 3).
            result = verify(
                credentials, request.method, self._decoy_ha1, self._nonces, now, domain
            )
            if result.ok:  # pragma: no cover - needs a 128/256-bit guess
                result = VerificationResult(VerificationStatus.WRONG, "unknown user")
        if result.ok and subscriber is not None:
            self.counters["auth_ok"] += 1
            return subscriber.username
        if result.status is VerificationStatus.WRONG:
            self.counters["auth_failed"] += 1
            if self._failures.record_failure(source, now):
                self.counters["auth_lockouts"] += 1
                self.counters["register_locked_out"] += 1
                return self._responses.create_response(request, 403)
        elif result.challenge_stale:
            self.counters["auth_stale"] += 1
        else:
            self.counters["auth_invalid_nonce"] += 1
        return self._challenge(request, subscriber, domain, now, stale=result.challenge_stale)

    def _challenge(
        self,
        request: Request,
        subscriber: SubscriberCredentials | None,
        domain: str,
        now: float,
        *,
        stale: bool,
    ) -> Response:
        if subscriber is None:
            realm, algorithms = domain, self.config.default_algorithms
        else:
            realm, algorithms = subscriber.realm, subscriber.algorithms
        response = self._responses.create_response(request, 401)
        nonce = self._nonces.issue(now)
        # RFC 8760 §2.3: one WWW-Authenticate per algorithm, most preferred first.
        for challenge in build_challenges(realm, nonce, algorithms, stale=stale):
            response.headers.add("WWW-Authenticate", str(challenge))
        return response

    def _update_bindings(
        self, request: Request, flow: Flow, aor: AddressOfRecord, now: float
    ) -> list[BindingChange]:
        """Steps 6-8: compute the AOR's new binding set, then install it in one step.

        Raises:
            _RequestFailed: 400, 423, 500 or 403 (too many contacts); nothing changed.
        """
        stored = self._table.get(aor)
        changes = [
            BindingChange(ChangeKind.REMOVED, binding, RemovalReason.EXPIRED)
            for binding in stored
            if not binding.is_live(now)
        ]
        existing = [binding for binding in stored if binding.is_live(now)]
        contacts = request.contacts
        if not contacts:
            # §10.2.3 / §10.3 step 6: no Contact: a query; only lapsed bindings go.
            if changes:
                self._table.replace(aor, existing)
            return changes

        call_id = request.call_id
        cseq = request.cseq.number
        if any(contact.wildcard for contact in contacts):
            # §10.3 step 6: "*" alone, with Expires: 0.
            if len(contacts) != 1 or request.expires != 0:
                raise _RequestFailed(400, counter="register_bad_wildcard")
            for binding in existing:
                _check_order(binding, call_id, cseq)
            final: list[Binding] = []
        else:
            final = self._apply_contacts(request, contacts, flow, aor, existing, now)
            if len(final) > self.config.max_bindings_per_aor:
                raise _RequestFailed(403, "Too Many Contacts", "register_too_many_contacts")

        # Commit (step 8) and report the difference.
        for binding in existing:
            if not any(binding.contact_uri == new.contact_uri for new in final):
                changes.append(
                    BindingChange(ChangeKind.REMOVED, binding, RemovalReason.UNREGISTERED)
                )
        for binding in final:
            before = next(
                (old for old in existing if old.contact_uri == binding.contact_uri), None
            )
            if before is None:
                changes.append(BindingChange(ChangeKind.ADDED, binding))
            elif before is not binding:
                changes.append(BindingChange(ChangeKind.REFRESHED, binding))
        self._table.replace(aor, final)
        return changes

    def _apply_contacts(
        self,
        request: Request,
        contacts: Sequence[NameAddress],
        flow: Flow,
        aor: AddressOfRecord,
        existing: list[Binding],
        now: float,
    ) -> list[Binding]:
        config = self.config
        header_expires = request.expires
        call_id = request.call_id
        cseq = request.cseq.number
        user_agent = request.headers.get("user-agent")
        final = list(existing)
        checked: set[int] = set()
        for contact in contacts:
            uri = contact.uri
            # §10.2.1.1: the contact's expires parameter wins over the Expires header.
            requested = contact.expires
            if requested is None:
                requested = header_expires
            if requested is None:
                requested = config.default_expires
            if 0 < requested < config.min_expires:
                # §10.3 step 7, §20.23: 423 names our minimum in Min-Expires.
                raise _RequestFailed(
                    423,
                    counter="register_interval_too_brief",
                    headers=(("Min-Expires", str(config.min_expires)),),
                )
            granted = min(requested, config.max_expires)
            q = contact.q
            parameters = tuple(
                (name, value)
                for name, value in contact.parameters.items()
                if name not in _INTERPRETED_CONTACT_PARAMETERS
            )
            original = next((old for old in existing if old.contact_uri == uri), None)
            if original is not None and id(original) not in checked:
                _check_order(original, call_id, cseq)
                checked.add(id(original))
            index = next(
                (i for i, binding in enumerate(final) if binding.contact_uri == uri), None
            )
            if granted == 0:
                if index is not None:
                    del final[index]
                continue
            binding = Binding(
                address_of_record=aor,
                contact_uri=uri,
                q=q,
                contact_parameters=parameters,
                expires_at=now + granted,
                call_id=call_id,
                cseq=cseq,
                flow=flow,
                registered_at=now if original is None else original.registered_at,
                updated_at=now,
                user_agent=user_agent,
            )
            if index is None:
                final.append(binding)
            else:
                final[index] = binding
        return final


def _check_order(binding: Binding, call_id: str, cseq: int) -> None:
    """§10.3 step 7: same Call-ID and a CSeq not higher than stored -> abort (500)."""
    if binding.call_id == call_id and cseq <= binding.cseq:
        raise _RequestFailed(500, counter="register_out_of_order")


def _digest_credentials(request: Request) -> DigestCredentials | None:
    """The first Digest Authorization value, or None (RFC 3261 §22.4)."""
    for credentials in request.authorizations:
        if isinstance(credentials, DigestCredentials) and credentials.is_digest:
            return credentials
    return None


def _contact_value(binding: Binding, now: float) -> str:
    """A Contact value for the 200 (§10.3 step 8): URI, stored parameters, q, expires."""
    parameters: dict[str, str | None] = dict(binding.contact_parameters)
    if binding.q is not None:
        parameters["q"] = _format_q(binding.q)
    # A live binding shows at least 1 s, so a client never reads 0 as "removed".
    parameters["expires"] = str(max(1, int(binding.remaining(now))))
    return f"<{binding.contact_uri}>{format_parameters(parameters)}"


def _format_q(q: float) -> str:
    # RFC 3261 §25.1: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text or "0"
