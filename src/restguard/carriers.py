"""Which credentials a request carries: the header-screen tables built from a guard's
authenticators, the credential (one, or a refusal) a request presents for a route, every header
that carries one, and how much body must be read before the request can be decided.

``Guard`` (``restguard.guard``) is built on ``CredentialCarriers``, so these stay methods of the
guard itself and the per-request path calls them exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from restguard.authz.policy import Policy, Route
from restguard.credentials.base import (
    Authenticator,
    CarriedInBody,
    Credential,
    ReadsBody,
    ReadsHeaders,
)
from restguard.credentials.challenges import challenges, why_missing
from restguard.errors import (
    AuthError,
    InvalidCredential,
    InvalidRequest,
    MissingCredential,
    NotFound,
)
from restguard.tokens import carries_credential, may_carry
from restguard.types import RequestView


class CredentialCarriers:
    """Which credentials a request carries, against one policy and one set of authenticators
    (the base of ``Guard``)."""

    def __init__(self, policy: Policy, authenticators: Mapping[str, Authenticator]) -> None:
        self.policy = policy
        self.authenticators = dict(authenticators)
        # The header names each authenticator's credential can be in (None: anywhere): one
        # whose names a request does not carry is not asked (``ReadsHeaders``).
        self._reads: dict[str, frozenset[bytes] | None] = {
            name: a.header_names if isinstance(a, ReadsHeaders) else None
            for name, a in self.authenticators.items()
        }
        self._carrier_reads = tuple(
            (a, self._reads[name]) for name, a in self.authenticators.items()
        )
        self._body_readers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, ReadsBody)
        )
        self._body_carriers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, CarriedInBody)
        )

    def body_wanted(self, view: RequestView, *, fallback: Route | None = None) -> int:
        """How many bytes of body must be read before ``view`` can be decided: the most any
        authenticator of its route wants (``ReadsBody``); 0 for none, a public route, no route,
        or a request the policy cannot match (``decide`` refuses that one). The route is matched
        only when some authenticator wants the body of this request (its headers say so), so
        every other request costs a few header looks."""
        wants: list[tuple[str, int]] = []
        maybe: list[tuple[str, int]] = []
        for name, reader in self._body_readers:
            if limit := reader.body_limit(view):
                wants.append((name, limit))
        for name, carrier in self._body_carriers:
            if limit := carrier.body_carrier_limit(view):
                maybe.append((name, limit))
        if not wants and not maybe:
            return 0
        try:
            route = self.policy.match(view.method, view.path)
        except NotFound:
            if fallback is None:
                return 0
            route = fallback
        except AuthError:
            return 0
        if route.public:
            return 0
        wanted = max((limit for name, limit in wants if name in route.auth), default=0)
        if wanted or not any(name in route.auth for name, _ in maybe):
            return wanted
        if self._presents_in_head(view, route):
            return 0  # the credential is elsewhere: the body is not read for it
        return max(limit for name, limit in maybe if name in route.auth)

    def _presents_in_head(self, view: RequestView, route: Route) -> bool:
        """Whether an authenticator of ``route`` finds a credential (or a malformed one, or
        several) in the request's head."""
        try:
            self._extract(view, route)
        except MissingCredential:
            return False
        except AuthError:
            return True
        return True

    def _carriers(self, view: RequestView, names: set[bytes] | None = None) -> tuple[bytes, ...]:
        """Every header carrying a restguard credential, used or not: where each kind is sent,
        and any other header whose value holds one (``Token <key>``, ``Basic`` credentials,
        ``X-Auth-Token`` ...). None of them reaches the upstream unless the route forwards
        credentials. ``names``: the request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found: tuple[bytes, ...] = ()
        for a, reads in self._carrier_reads:
            if reads is None or not reads.isdisjoint(names):
                found += a.carriers(view)
        for name, value in view.headers:
            if (
                name not in found
                and name != b"host"
                and may_carry(value)
                and carries_credential(value)
            ):
                found += (name,)
        return found

    def _extract(
        self, view: RequestView, route: Route, names: set[bytes] | None = None
    ) -> Credential:
        """The one credential the request presents for this route (syntax only). A malformed
        credential is an invalid one (401, RFC 6750 §3.1 "invalid_token"). ``names``: the
        request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found = []
        for method in route.auth:
            authenticator = self.authenticators.get(method)
            if authenticator is None:
                continue
            reads = self._reads[method]
            if reads is not None and reads.isdisjoint(names):
                continue  # (none of the headers its credential can be in)
            try:
                credential = authenticator.extract(view)
            except InvalidCredential as err:
                raise err.with_challenges(
                    challenges(self.authenticators, route.auth, method, err)
                ) from None
            if credential is not None:
                found.append(credential)
        if len(found) > 1:
            raise InvalidRequest("Send one credential per request.", debug="several credentials")
        if not found:
            raise MissingCredential(
                why_missing(self.authenticators, route.auth, view, self._carriers),
                debug="no credential",
            ).with_challenges(challenges(self.authenticators, route.auth))
        return found[0]
