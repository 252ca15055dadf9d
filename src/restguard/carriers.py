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
    Attributes,
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

#: The screen's memo (``_screened``): at most this many header sets, none of more than this
#: many fields or bytes (names, values and each field's own cost: a set of many empty fields
#: costs memory too), so it holds ~20 MB at the very most.
_SCREENED_SIZE = 4096
_SCREENED_MAX_FIELDS = 8
_SCREENED_MAX_BYTES = 4096
_FIELD_COST = 64

_Key = tuple[tuple[bytes, bytes], ...]
#: One method of a route, as ``_extract`` asks it: (method, authenticator, the headers it
#: reads or None, whether its ``extract`` is remembered).
_Step = tuple[str, Authenticator, frozenset[bytes] | None, bool]
_PLANS_SIZE = 256


class _Screened:
    """What the header-reading authenticators (``ReadsHeaders``) answered for one set of their
    headers: ``carriers`` and ``extract`` by method name (refusals are never kept)."""

    __slots__ = ("carriers", "extracted")

    def __init__(self) -> None:
        self.carriers: dict[str, tuple[bytes, ...]] = {}
        self.extracted: dict[str, Credential | None] = {}


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
            (name, a, self._reads[name]) for name, a in self.authenticators.items()
        )
        # A ``ReadsHeaders`` authenticator's ``carriers`` (and ``extract``, if stable) read its
        # headers and nothing else (syntax only): their answers for a set of those headers seen
        # before are remembered, keyed by every header any of them reads. A JWT's shape, its
        # issuer, a Bearer token's owner among jwt and oauth2 ... cost ~10 us per request.
        self._screen_names = frozenset().union(*(r for r in self._reads.values() if r))
        # ... except a set holding a header whose value differs on every request (``unrepeated``:
        # a signature's nonce): it is never seen again, and would only push out the sets that are.
        self._unrepeated = frozenset().union(
            *(
                a.header_names
                for a in self.authenticators.values()
                if isinstance(a, ReadsHeaders) and a.unrepeated
            )
        )
        self._stable_extract = frozenset(
            name
            for name, a in self.authenticators.items()
            if isinstance(a, ReadsHeaders) and a.stable_extract
        )
        self._screened: dict[_Key, _Screened] = {}
        self._plans: dict[tuple[str, ...], tuple[_Step, ...]] = {}
        self._last_screened: tuple[object, _Screened | None] = (object(), None)
        self._body_readers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, ReadsBody)
        )
        self._body_carriers = tuple(
            (name, a) for name, a in self.authenticators.items() if isinstance(a, CarriedInBody)
        )
        # Who names a credential only once it has verified it (``Attributes``): by method.
        self._attributes = {
            name: a.attributed
            for name, a in self.authenticators.items()
            if isinstance(a, Attributes)
        }

    def body_wanted(self, view: RequestView, *, fallback: Route | None = None) -> int:
        """How many bytes of body must be read before ``view`` can be decided: the most any
        authenticator of its route wants (``ReadsBody``); 0 for none, a public route, no route,
        or a request the policy cannot match (``decide`` refuses that one). The route is matched
        only when some authenticator wants the body of this request (its headers say so), so
        every other request costs a few header looks. A view that has its body already (the
        gateway knows an HTTP/1.1 head without Content-Length or Transfer-Encoding has none,
        RFC 9112 §6.3) needs nothing read: 0 before any look."""
        if view.body is not None:
            return 0
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

    def _screen(self, view: RequestView) -> _Screened | None:
        """The remembered answers for the request's credential headers (None: too long to
        keep). Asked twice per request (``_carriers``, ``_extract``): the last header tuple's
        answer is kept, as ``bearer_token`` keeps its own."""
        headers = view.headers
        last = self._last_screened
        if last[0] is headers:
            return last[1]
        names, unrepeated = self._screen_names, self._unrepeated
        key = []
        size = 0
        for header in headers:
            if header[0] in names:
                key.append(header)
                size += len(header[0]) + len(header[1]) + _FIELD_COST
                if header[0] in unrepeated:
                    size = _SCREENED_MAX_BYTES + 1  # (never remembered)
        screened = None
        if size <= _SCREENED_MAX_BYTES and len(key) <= _SCREENED_MAX_FIELDS:
            known = self._screened
            screened = known.get(found := tuple(key))
            if screened is None:
                if len(known) >= _SCREENED_SIZE:
                    known.clear()
                screened = known[found] = _Screened()
        if type(headers) is tuple:  # (a list may change: never taken for the same request)
            self._last_screened = (headers, screened)
        return screened

    def _carriers(self, view: RequestView, names: set[bytes] | None = None) -> tuple[bytes, ...]:
        """Every header carrying a restguard credential, used or not: where each kind is sent,
        and any other header whose value holds one (``Token <key>``, ``Basic`` credentials,
        ``X-Auth-Token`` ...). None of them reaches the upstream unless the route forwards
        credentials. ``names``: the request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found: tuple[bytes, ...] = ()
        screened: _Screened | None = None
        for method, a, reads in self._carrier_reads:
            if reads is None:
                found += a.carriers(view)
            elif not reads.isdisjoint(names):
                screened = screened or self._screen(view)
                if screened is None:
                    found += a.carriers(view)
                    continue
                carried = screened.carriers.get(method)
                if carried is None:
                    carried = screened.carriers[method] = a.carriers(view)
                found += carried
        for name, value in view.headers:
            if (
                name not in found
                and name != b"host"
                and may_carry(value)
                and carries_credential(value)
            ):
                found += (name,)
        return found

    def _plan(self, auth: tuple[str, ...]) -> tuple[_Step, ...]:
        """What ``_extract`` asks for a route's methods, in their order: each known method's
        authenticator, the headers it reads (None: anywhere) and whether its ``extract`` is
        remembered; worked out once per list of methods."""
        plan = tuple(
            (method, a, self._reads[method], method in self._stable_extract)
            for method in auth
            if (a := self.authenticators.get(method)) is not None
        )
        if len(self._plans) < _PLANS_SIZE:  # (a policy has a few lists; a reload a few more)
            self._plans[auth] = plan
        return plan

    def _extract(
        self, view: RequestView, route: Route, names: set[bytes] | None = None
    ) -> Credential:
        """The one credential the request presents for this route (syntax only). A malformed
        credential is an invalid one (401, RFC 6750 §3.1 "invalid_token"). ``names``: the
        request's header names, when known."""
        if names is None:
            names = {name for name, _ in view.headers}
        found = []
        screened: _Screened | None = None
        plan = self._plans.get(route.auth)
        if plan is None:
            plan = self._plan(route.auth)
        for method, authenticator, reads, stable in plan:
            if reads is not None:
                if reads.isdisjoint(names):
                    continue  # (none of the headers its credential can be in)
                if stable:
                    screened = screened or self._screen(view)
                    if screened is not None and method in screened.extracted:
                        credential = screened.extracted[method]
                        if credential is not None:
                            found.append(credential)
                        continue
            try:
                credential = authenticator.extract(view)
            except InvalidCredential as err:
                raise err.with_challenges(
                    challenges(self.authenticators, route.auth, method, err)
                ) from None
            if stable and screened is not None:
                screened.extracted[method] = credential
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
