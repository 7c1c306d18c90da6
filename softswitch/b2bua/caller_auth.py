"""Who is calling: proxy authentication of a new INVITE (RFC 3261 §22.3). Pure.

Rules, in the order `CallerAuthenticator.authenticate()` applies them:
1. Trunks (issue 6 item 1) are recognised by source address and/or digest:
   - a request from a trusted trunk source (`ConfigSnapshot.trunk_for_source`, the
     received address and port of its flow) of a trunk without a credential is not
     challenged: the trunk is the caller;
   - a trunk with a credential (`TrunkEntry.credential`) and trusted sources must come
     from one of them AND answer a digest challenge in the trunk's realm (both);
   - a trunk with a credential and no trusted source (a peer with a changing address)
     is recognised by digest alone: the Proxy-Authorization names its username in its
     realm. A request from a foreign domain without credentials is challenged in the
     realms of such trunks (when there are any; else 403 as in rule 3).
   A trunk's domain is its tenant's SIP domain, else the Request-URI host. Only a caller
   recognised here is a trunk: trunk privileges (trusted P-Asserted-Identity, no
   extension authentication, toll-free routing) are never given to anything else.
   Wrong trunk digests count toward the lockout of rule 2 like any other.
2. Brute-force lockout, shared with the registrar (its rule 0): a source IP address
   that the `AuthenticationFailureTracker` holds locked out gets 403, valid credentials
   or not. `softswitch.wiring` gives the registrar and this authenticator ONE tracker,
   so wrong REGISTER and wrong INVITE digests add up per address, and a lockout earned
   with either method refuses both. Only WRONG digests count (wrong password, unknown
   user, foreign realm); a missing Proxy-Authorization, a stale or replayed nonce and a
   nonce we did not issue do not. The failure that reaches the threshold is answered
   403 already, as in the registrar. Trusted trunks (rule 1) are never challenged, so
   they neither count nor are refused here.
3. Everyone else is a subscriber calling from its address-of-record: the From URI must
   be a sip:/sips: URI of a domain we serve (403 otherwise: we relay no calls for
   foreign domains).
4. RFC 3261 §22.3: without Digest Proxy-Authorization credentials, 407 with one
   Proxy-Authenticate per algorithm in the From user's configured order, or the default
   order (SHA-256 then MD5, RFC 8760 §2.3) for an unknown user; qop="auth" and a fresh
   nonce from the nonce manager the registrar also uses (RFC 7616 §3.3). Right digest
   but stale or replayed nonce: 407 with stale=true (RFC 7616 §3.3, §5.5); any other
   failure: 407 with stale=false.
5. No user enumeration, as in the registrar: an unknown username is checked against a
   random HA1 that can never match, so it gets the answer of a wrong password: the same
   407 (realm = the domain, the default algorithms), the same count toward the lockout
   and the same 403 once locked out.
6. The authenticated username must be the From user (403 otherwise): a subscriber calls
   as itself, never as another extension of its tenant.
- `now` is the nonce manager's clock (the registrar's wall clock in the running switch),
  and the failure tracker's: the registrar uses the same one.
- The snapshot (trusted trunks, tenants) is replaced whole by `replace_snapshot()` on a
  configuration change; each `authenticate()` reads the one in force when it runs.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass

from cloudpbx.snapshot import ConfigSnapshot, TrunkEntry
from softswitch.registrar.registrar import (
    AuthenticationFailureTracker,
    CredentialLookup,
    DomainLookup,
    RegistrarConfig,
    ResponseFactory,
    SubscriberCredentials,
)
from softswitch.sip.auth import (
    DEFAULT_ALGORITHMS,
    DigestCredentials,
    NonceManager,
    VerificationResult,
    VerificationStatus,
    build_challenges,
    verify,
)
from softswitch.sip.flows import Flow
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import SipUri

__all__ = ["AuthenticatedCaller", "CallerAuthenticator"]


@dataclass(frozen=True, slots=True)
class AuthenticatedCaller:
    """A caller we may route for.

    Attributes:
        domain: the caller's SIP domain (lower case): calls are routed within it.
        username: the authenticated extension, or None for a trunk.
        trunk: the trusted trunk's name, or None for a subscriber.
    """

    domain: str
    username: str | None = None
    trunk: str | None = None


class CallerAuthenticator:
    """Authenticates new INVITEs (see the module rules)."""

    def __init__(
        self,
        snapshot: ConfigSnapshot,
        credentials: CredentialLookup,
        domains: DomainLookup,
        nonce_manager: NonceManager,
        responses: ResponseFactory,
        default_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        failure_tracker: AuthenticationFailureTracker | None = None,
    ) -> None:
        """
        Args:
            default_algorithms: challenge order for unknown users (keep the
                registrar's, rule 5).
            failure_tracker: the brute-force tracker (rule 2); pass the registrar's
                (`Registrar.failure_tracker`) to share one lockout. Default: a tracker
                of its own with the registrar's default thresholds.
        """
        self.counters: Counter[str] = Counter()
        self._failures = (
            failure_tracker
            if failure_tracker is not None
            else AuthenticationFailureTracker.for_config(RegistrarConfig())
        )
        self._snapshot = snapshot
        self._credentials = credentials
        self._domains = domains
        self._nonces = nonce_manager
        self._responses = responses
        self._default_algorithms = default_algorithms
        self._decoy_ha1 = {"MD5": secrets.token_hex(16), "SHA-256": secrets.token_hex(32)}

    def replace_snapshot(self, snapshot: ConfigSnapshot) -> None:
        """Authenticate new INVITEs against `snapshot` from now on (trunks, tenants).

        The credential and domain lookups are replaced by their owner
        (`SnapshotDirectory.replace_with`), in the same step (`softswitch.wiring`).
        """
        self._snapshot = snapshot

    def authenticate(
        self, request: Request, flow: Flow, now: float
    ) -> AuthenticatedCaller | Response:
        """The caller of `request` received on `flow`, or the 403/407 to answer.

        Args:
            request: a validated INVITE without To tag.
            flow: where it came from (trunks are recognised by its remote address).
            now: the nonce manager's clock.
        """
        trunk = self._snapshot.trunk_for_source(flow.remote[0], flow.remote[1])
        if trunk is not None and trunk.credential is None:
            # Rule 1: a trusted trunk is not challenged.
            self.counters[_counter(request, "from_trunk")] += 1
            domain = self._trunk_domain(trunk.tenant_name, request)
            return AuthenticatedCaller(domain, None, trunk.name)
        source = flow.remote[0]
        if self._failures.is_locked(source, now):
            # Rule 2: a locked-out address gets 403 whatever it sends.
            self.counters[_counter(request, "locked_out")] += 1
            return self._responses.create_response(request, 403)
        credentials = _proxy_credentials(request)
        if trunk is not None:
            # Rule 1: source and digest, both.
            return self._authenticate_trunk(request, trunk, credentials, source, now)
        digest_trunk = self._digest_only_trunk(credentials)
        if digest_trunk is not None:
            # Rule 1: a trunk recognised by its digest alone.
            return self._authenticate_trunk(request, digest_trunk, credentials, source, now)
        from_uri = request.from_address.uri
        if not isinstance(from_uri, SipUri) or not self._domains.is_local_domain(
            from_uri.host.lower()
        ):
            realms = self._digest_only_realms()
            if credentials is None and realms:
                # Rule 1: a peer that may be a digest-only trunk gets their realms.
                self.counters[_counter(request, "challenged")] += 1
                return self._challenge_realms(request, realms, now, stale=False)
            self.counters[_counter(request, "foreign_domain")] += 1
            return self._responses.create_response(request, 403)
        domain = from_uri.host.lower()
        if credentials is None:
            self.counters[_counter(request, "challenged")] += 1
            subscriber = (
                None if from_uri.user is None else self._credentials.lookup(domain, from_uri.user)
            )
            return self._challenge(
                request,
                _realm_and_algorithms(subscriber, domain, self._default_algorithms),
                now,
                stale=False,
            )
        username = credentials.username
        subscriber = None if username is None else self._credentials.lookup(domain, username)
        if subscriber is not None:
            result = verify(
                credentials,
                request.method,
                subscriber.ha1_by_algorithm,
                self._nonces,
                now,
                subscriber.realm,
            )
        else:
            # Rule 5: the work and the answer of a wrong password.
            result = verify(credentials, request.method, self._decoy_ha1, self._nonces, now, domain)
            if result.ok:  # pragma: no cover - needs a 128/256-bit guess
                result = VerificationResult(VerificationStatus.WRONG, "unknown user")
        if result.ok and subscriber is not None:
            if subscriber.username != from_uri.user:
                # Rule 6: authenticated as one extension, calling as another.
                self.counters[_counter(request, "forbidden_from")] += 1
                return self._responses.create_response(request, 403)
            self.counters[_counter(request, "auth_ok")] += 1
            return AuthenticatedCaller(domain, subscriber.username)
        if result.status is VerificationStatus.WRONG:
            self.counters[_counter(request, "auth_failed")] += 1
            if self._failures.record_failure(source, now):
                # Rule 2: this failure reached the threshold.
                self.counters[_counter(request, "auth_lockouts")] += 1
                self.counters[_counter(request, "locked_out")] += 1
                return self._responses.create_response(request, 403)
        elif result.challenge_stale:
            self.counters[_counter(request, "auth_stale")] += 1
        else:
            self.counters[_counter(request, "auth_invalid_nonce")] += 1
        return self._challenge(
            request,
            _realm_and_algorithms(subscriber, domain, self._default_algorithms),
            now,
            stale=result.challenge_stale,
        )

    def _digest_only_trunk(self, credentials: DigestCredentials | None) -> TrunkEntry | None:
        """The trunk without trusted sources whose credential `credentials` names."""
        if credentials is None or credentials.username is None:
            return None
        for trunk in self._snapshot.trunks.values():
            credential = trunk.credential
            if (
                credential is not None
                and not trunk.sources
                and credential.username == credentials.username
                and credential.realm == credentials.realm
            ):
                return trunk
        return None

    def _digest_only_realms(self) -> tuple[str, ...]:
        """The realms of the trunks recognised by digest alone, sorted."""
        return tuple(
            sorted(
                {
                    trunk.credential.realm
                    for trunk in self._snapshot.trunks.values()
                    if trunk.credential is not None and not trunk.sources
                }
            )
        )

    def _authenticate_trunk(
        self,
        request: Request,
        trunk: TrunkEntry,
        credentials: DigestCredentials | None,
        source: str,
        now: float,
    ) -> AuthenticatedCaller | Response:
        """Rule 1: a trunk with a credential answers a digest challenge in its realm."""
        credential = trunk.credential
        assert credential is not None
        realm = credential.realm
        if credentials is None or credentials.realm != realm:
            self.counters[_counter(request, "challenged")] += 1
            return self._challenge_realms(request, (realm,), now, stale=False)
        stored = (
            {str(algorithm): ha1 for algorithm, ha1 in credential.ha1_by_algorithm.items()}
            if credentials.username == credential.username
            else {}  # rule 5: a wrong username is a wrong password
        )
        result = verify(credentials, request.method, stored, self._nonces, now, realm)
        if result.ok:
            self.counters[_counter(request, "from_trunk")] += 1
            self.counters[_counter(request, "trunk_auth_ok")] += 1
            domain = self._trunk_domain(trunk.tenant_name, request)
            return AuthenticatedCaller(domain, None, trunk.name)
        if result.status is VerificationStatus.WRONG:
            self.counters[_counter(request, "auth_failed")] += 1
            if self._failures.record_failure(source, now):
                self.counters[_counter(request, "auth_lockouts")] += 1
                self.counters[_counter(request, "locked_out")] += 1
                return self._responses.create_response(request, 403)
        return self._challenge_realms(request, (realm,), now, stale=result.challenge_stale)

    def _challenge_realms(
        self, request: Request, realms: tuple[str, ...], now: float, *, stale: bool
    ) -> Response:
        """407 with one Proxy-Authenticate per realm and algorithm (RFC 3261 §22.3: a
        response may challenge in several realms)."""
        response = self._responses.create_response(request, 407)
        nonce = self._nonces.issue(now)
        for realm in realms:
            for challenge in build_challenges(realm, nonce, self._default_algorithms, stale=stale):
                response.headers.add("Proxy-Authenticate", str(challenge))
        return response

    def _trunk_domain(self, tenant_name: str | None, request: Request) -> str:
        tenant = None if tenant_name is None else self._snapshot.tenants.get(tenant_name)
        if tenant is not None:
            return tenant.sip_domain.lower()
        uri = request.uri
        return uri.host.lower() if isinstance(uri, SipUri) else ""

    def _challenge(
        self,
        request: Request,
        realm_algorithms: tuple[str, tuple[str, ...]],
        now: float,
        *,
        stale: bool,
    ) -> Response:
        realm, algorithms = realm_algorithms
        response = self._responses.create_response(request, 407)
        nonce = self._nonces.issue(now)
        # RFC 3261 §22.3 with RFC 8760 §2.3: one Proxy-Authenticate per algorithm,
        # most preferred first.
        for challenge in build_challenges(realm, nonce, algorithms, stale=stale):
            response.headers.add("Proxy-Authenticate", str(challenge))
        return response


def _counter(request: Request, outcome: str) -> str:
    """The counter of `outcome` for the request's method: `invite_challenged`,
    `subscribe_challenged` (MWI subscribers authenticate as callers do), ..."""
    return f"{request.method.lower()}_{outcome}"


def _realm_and_algorithms(
    subscriber: SubscriberCredentials | None, domain: str, default_algorithms: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """The realm and challenge order: the subscriber's own, else the domain and default."""
    if subscriber is not None:
        return subscriber.realm, subscriber.algorithms
    return domain, default_algorithms


def _proxy_credentials(request: Request) -> DigestCredentials | None:
    """The first Digest Proxy-Authorization value, or None (RFC 3261 §22.3)."""
    for credentials in request.proxy_authorizations:
        if isinstance(credentials, DigestCredentials) and credentials.is_digest:
            return credentials
    return None
