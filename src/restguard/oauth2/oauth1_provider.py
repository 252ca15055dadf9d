"""restguard's OAuth 1.0a provider (RFC 5849 §2): the three-legged flow and the user's list of
connected applications.

* ``POST /oauth1/request_token`` (§2.1): a request signed by the consumer alone (no token),
  with ``oauth_callback`` -- required, exactly the consumer's registered callback or ``oob``
  (``oauth1_consumers.oauth_callback_problem``) -- and optionally ``scope`` (space-separated,
  a subset of the consumer's scopes; default all of them). Answers the temporary credentials
  form-encoded with ``oauth_callback_confirmed=true`` (§2.1); they live ``TEMPORARY_TTL``.
* ``GET /oauth1/authorize?oauth_token=`` (§2.2): the resource owner signs in (the login page of
  the OAuth 2.0 server, its session and CSRF tokens: ``resource_owner.py``, ``browser.py``) and
  sees the consent form: the consumer's name and the scopes it asked for that the user may
  grant, all ticked; a subset may be granted. Every authorization is asked for (each makes new
  token credentials). ``POST`` with Allow records the decision once (atomic in the store) and
  sends the browser to the callback with ``oauth_token`` and ``oauth_verifier`` appended to its
  query (§2.2 "MUST append"), or shows the verifier for ``oob``; Deny revokes the temporary
  credentials.
* ``POST /oauth1/access_token`` (§2.3): signed by the consumer with the temporary credentials,
  with ``oauth_verifier``. The exchange is single-use in one transaction (the verifier and the
  temporary credentials are used up by the first exchange; of racing requests one wins), and
  answers the token credentials form-encoded.
* ``GET /oauth1/tokens``: the signed-in user's connected applications (token credentials),
  each with a Revoke button (``POST``, CSRF-bound to the session).

Signed requests are verified by the ``oauth1`` method's own verifier
(``credentials/oauth1.py``), nonce included; a 401 counts toward the gateway's failed-attempt
limit. Errors are the contract's JSON errors (the gateway writes an ``AuthError``); RFC 5849
§3.2 names the statuses: 400 for a bad request, 401 for bad credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Final, NoReturn
from urllib.parse import quote, urlencode

from restguard.clock import Clock
from restguard.credentials.oauth1 import Expect, OAuth1Verifier, RequestParts, Verified
from restguard.credentials.oauth1_consumers import OOB, is_active, oauth_callback_problem
from restguard.credentials.oauth1_tokens import (
    TEMPORARY,
    is_live,
    is_token,
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
    verifier_hash,
    verifier_matches,
)
from restguard.errors import AuthError, InvalidCredential, InvalidRequest
from restguard.oauth2 import pages
from restguard.oauth2.authorization_request import PageError, form_source, redirect_to
from restguard.oauth2.browser import REQUEST_TTL, Failures, FormError, query_value, read_form
from restguard.oauth2.browser import redirect as see_other
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.resource_owner import ResourceOwnerPages
from restguard.oauth2.token_endpoint import Record
from restguard.oauth2.web_tokens import WebTokenInvalid
from restguard.store.ports import (
    OAuth1ConsumerRecord,
    OAuth1ConsumerStore,
    OAuth1TokenRecord,
    OAuth1TokenStore,
    UserRecord,
)
from restguard.wire.scope import scope_problem

CHALLENGE: Final = 'OAuth realm="restguard"'
_FORM: Final = [
    (b"content-type", b"application/x-www-form-urlencoded"),
    (b"cache-control", b"no-store"),  # RFC 6749 §5.1's rule, for the same kind of secret
    (b"pragma", b"no-cache"),
]
_DECISION: Final = "oauth1 decision"
_TOKENS_FORM: Final = "oauth1 tokens"
_EXPIRED: Final = (
    "This authorization link is no longer valid. Go back to the application and start again."
)


class OAuth1Provider:
    def __init__(
        self,
        *,
        verifier: OAuth1Verifier,
        parts: RequestParts,
        consumers: OAuth1ConsumerStore,
        tokens: OAuth1TokenStore,
        owner: ResourceOwnerPages,
        clock: Clock,
        failures: Failures | None = None,
        record: Record | None = None,
    ) -> None:
        """``owner``: the login pages, whose session and CSRF tokens these pages share.
        ``record``: one audit record per signed endpoint request (as the token endpoint's)."""
        self.verifier, self.parts, self.consumers, self.tokens = verifier, parts, consumers, tokens
        self.owner, self.clock, self.failures, self.record = owner, clock, failures, record
        self.sessions, self.web, self.sealer = owner.sessions, owner.web, verifier.sealer

    # --- the signed endpoints (§2.1, §2.3) --------------------------------------------------
    async def _audited(
        self,
        request: EndpointRequest,
        work: Callable[[list[str]], Awaitable[EndpointResponse]],
    ) -> EndpointResponse:
        """``work``'s answer, and one audit record either way (the consumer key it found, when
        it found one; a required audit log that fails raises, before anything is answered)."""
        found: list[str] = []
        try:
            response = await work(found)
        except AuthError as err:
            if self.record is not None:
                consumer = found[0] if found else None
                self.record(request, err.status, err.error, "oauth1", consumer, err.debug)
            raise
        if self.record is not None:
            self.record(request, 200, None, "oauth1", found[0] if found else None, None)
        return response

    async def _verified(
        self, request: EndpointRequest, expect: Expect, now: datetime, found: list[str]
    ) -> Verified:
        view = request.view()
        try:
            req = self.parts.collect(view)
            found.append(req.consumer_key)
            return await self.verifier.verify(
                req,
                now=now,
                tls=self.parts.tls(view),
                expect=expect,
            )
        except InvalidCredential as err:
            await self._refuse(request, err.debug)

    async def request_token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._audited(request, partial(self._request_token, request))

    async def _request_token(self, request: EndpointRequest, found: list[str]) -> EndpointResponse:
        now = self.clock.now()
        done = await self._verified(request, "none", now, found)
        callback = done.request.protocol.get("oauth_callback")
        if not callback:  # §2.1: "oauth_callback ... REQUIRED"
            raise InvalidRequest(
                "oauth_callback is required: the callback URI, or 'oob' (RFC 5849 §2.1)."
            )
        problem = oauth_callback_problem(done.consumer, callback)
        if problem is not None:
            raise InvalidRequest(problem[0].upper() + problem[1:] + ".")
        asked = [value for name, value in done.request.params if name == "scope"]
        if len(asked) > 1:
            raise InvalidRequest("Send scope once (space-separated).")
        scopes = _asked_scopes(asked[0] if asked else None, done.consumer)
        record, secret = new_temporary_credentials(
            done.consumer, callback, now=now, sealer=self.sealer, scopes=scopes
        )
        await self.tokens.insert(record)
        return _form_answer(
            oauth_token=record.token, oauth_token_secret=secret, oauth_callback_confirmed="true"
        )

    async def access_token(self, request: EndpointRequest) -> EndpointResponse:
        return await self._audited(request, partial(self._access_token, request))

    async def _access_token(self, request: EndpointRequest, found: list[str]) -> EndpointResponse:
        now = self.clock.now()
        done = await self._verified(request, "temporary", now, found)
        temporary = done.token
        assert temporary is not None  # (expect="temporary" requires one)
        verifier = done.request.protocol.get("oauth_verifier")
        if not verifier:  # §2.3: "oauth_verifier ... REQUIRED"
            raise InvalidRequest("oauth_verifier is required (RFC 5849 §2.3).")
        if not verifier_matches(verifier, temporary):
            await self._refuse(request, "wrong verifier, or not authorized")
        new, secret = new_token_credentials(temporary, now=now, sealer=self.sealer)
        outcome = await self.tokens.exchange(temporary.token, verifier_hash(verifier), new, now)
        if outcome != "exchanged":  # used before (a replayed verifier), or revoked meanwhile
            await self._refuse(request, f"temporary credentials {outcome}")
        return _form_answer(oauth_token=new.token, oauth_token_secret=secret)

    async def _refuse(self, request: EndpointRequest, debug: str) -> NoReturn:
        """A 401 that counts toward the address's failed-attempt limit (which may answer 429)."""
        if self.failures is not None:
            await self.failures(request.client)
        raise InvalidCredential(debug=debug).with_challenges((CHALLENGE,))

    # --- GET|POST /oauth1/authorize (§2.2) ----------------------------------------------------
    async def authorize(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            if request.method == "POST":
                return await self._decide(request, now)
            token = query_value(request, "oauth_token") or ""
            temporary, consumer = await self._pending(token, now)
            user = await self.sessions.user(request, now)
            if user is None:
                target = f"/oauth1/authorize?oauth_token={quote(token)}"
                return self.owner.login_redirect(target, consumer.name, now)
            offered = _offered(temporary, user)
            if not offered:
                await self.tokens.revoke(temporary.token, now)
                return pages.message_page(
                    title="Nothing to allow",
                    message="You cannot grant any of the access this application asks for.",
                    status=403,
                )
            sealed = self.web.make(
                _DECISION, {"t": temporary.token, "u": user.user_id}, now, REQUEST_TTL
            )
            sources = (
                [] if temporary.callback in (None, OOB) else [form_source(temporary.callback or "")]
            )
            return pages.consent_page(
                client_name=consumer.name,
                username=user.username,
                scopes=offered,
                hidden={
                    "decision_for": sealed,
                    "csrf": self.sessions.csrf(
                        "oauth1-consent", self.sessions.nonce(request, now), sealed, now
                    ),
                },
                action="/oauth1/authorize",
                form_sources=sources,
            )
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    async def _pending(
        self, token: str, now: datetime
    ) -> tuple[OAuth1TokenRecord, OAuth1ConsumerRecord]:
        """Temporary credentials waiting for the user's decision, and their consumer."""
        expired = PageError(400, "Link expired", _EXPIRED)
        record = await self.tokens.get(token) if is_token(token) else None
        if (
            record is None
            or record.kind != TEMPORARY
            or not is_live(record, now)
            or record.user_id is not None
        ):
            raise expired
        consumer = await self.consumers.get(record.consumer_key)
        if consumer is None or not is_active(consumer, now):
            raise expired
        return record, consumer

    async def _decide(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        try:
            form, chosen = read_form(request)
        except FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        sealed = form.get("decision_for", "")
        try:
            data = self.web.open(_DECISION, sealed, now)
        except WebTokenInvalid:
            raise PageError(400, "Link expired", _EXPIRED) from None
        token, user_id = data.get("t"), data.get("u")
        user = await self.sessions.user(request, now)
        if user is None or not isinstance(token, str) or user.user_id != user_id:
            raise PageError(403, "Form expired", "Sign in again and start over.")
        nonce = self.sessions.nonce(request, now)
        if not self.sessions.csrf_ok("oauth1-consent", form.get("csrf"), nonce, sealed, now):
            raise PageError(403, "Form expired", "The form expired. Go back to the application.")
        temporary, consumer = await self._pending(token, now)
        decision = form.get("decision")
        if decision not in ("allow", "deny"):
            raise PageError(400, "Invalid request", "Choose Allow or Deny.")
        offered = _offered(temporary, user)
        if any(s not in offered for s in chosen):
            raise PageError(
                400,
                "Invalid request",
                "The form grants a scope that was not asked for.",
                debug="oauth1 consent form scope outside the offer",
            )
        granted = tuple(s for s in offered if s in chosen)
        if decision == "deny" or not granted:
            await self.tokens.revoke(temporary.token, now)
            return pages.message_page(
                title="Request denied", message="No access given. You may close this window."
            )
        verifier, digest = new_verifier()
        authorized = await self.tokens.authorize(
            temporary.token,
            user_id=user.user_id,
            subject=user.username,
            scopes=granted,
            verifier_hash=digest,
            at=now,
        )
        if not authorized:  # decided meanwhile (another tab), or expired just now
            raise PageError(400, "Link expired", _EXPIRED)
        if temporary.callback in (None, OOB):
            return pages.verifier_page(client_name=consumer.name, verifier=verifier)
        back = redirect_to(
            temporary.callback or "", {"oauth_token": temporary.token, "oauth_verifier": verifier}
        )
        return see_other(back)

    # --- GET|POST /oauth1/tokens ------------------------------------------------------------
    async def granted(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            user = await self.sessions.user(request, now)
            if user is None:
                return self.owner.login_redirect("/oauth1/tokens", "", now)
            notice = None
            if request.method == "POST":
                notice = await self._revoke(request, user, now)
            return await self._listing(request, user, now, notice)
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    async def _revoke(self, request: EndpointRequest, user: UserRecord, now: datetime) -> str:
        try:
            form, _ = read_form(request)
        except FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        nonce = self.sessions.nonce(request, now)
        if not self.sessions.csrf_ok(_TOKENS_FORM, form.get("csrf"), nonce, user.user_id, now):
            raise PageError(403, "Form expired", "The page expired. Open it again.")
        token = form.get("token", "")
        record = await self.tokens.get(token) if is_token(token) else None
        if record is None or record.user_id != user.user_id or record.kind == TEMPORARY:
            raise PageError(404, "Not found", "That connection is not yours or is gone.")
        await self.tokens.revoke(record.token, now)
        consumer = await self.consumers.get(record.consumer_key)
        return (
            f"Revoked: {consumer.name if consumer else record.consumer_key} no longer has access."
        )

    async def _listing(
        self, request: EndpointRequest, user: UserRecord, now: datetime, notice: str | None
    ) -> EndpointResponse:
        rows = []
        for record in await self.tokens.list(user_id=user.user_id):
            if not is_live(record, now):
                continue
            consumer = await self.consumers.get(record.consumer_key)
            name = consumer.name if consumer is not None else record.consumer_key
            rows.append((record.token, name, record.scopes, record.created_at.date().isoformat()))
        csrf = self.sessions.csrf(
            _TOKENS_FORM, self.sessions.nonce(request, now), user.user_id, now
        )
        return pages.granted_tokens_page(
            username=user.username, rows=rows, csrf=csrf, notice=notice
        )


def _offered(temporary: OAuth1TokenRecord, user: UserRecord) -> tuple[str, ...]:
    """What the user may grant of what the consumer asked for."""
    return tuple(s for s in temporary.scopes if s in user.scopes)


def _asked_scopes(text: str | None, consumer: OAuth1ConsumerRecord) -> tuple[str, ...]:
    """The ``scope`` parameter of a temporary-credential request (space-separated, as OAuth 2.0
    writes it): a subset of the consumer's scopes; absent, all of them."""
    if text is None:
        return consumer.scopes
    asked = tuple(dict.fromkeys(text.split(" ")))
    for scope in asked:
        if scope_problem(scope) or scope not in consumer.scopes:
            raise InvalidRequest(
                f"The consumer may not ask for the scope {scope!r}.",
                debug="scope outside the consumer's",
            )
    return asked


def _form_answer(**values: str) -> EndpointResponse:
    """§2.1, §2.3: "the response ... using the application/x-www-form-urlencoded content
    type"."""
    return EndpointResponse(200, list(_FORM), urlencode(values).encode("ascii"))
