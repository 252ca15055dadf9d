"""``GET|POST /device``: the resource owner's side of the device flow (RFC 8628 §3.3).

``GET /device`` shows the user-code form (``pages.user_code_page``), prefilled from
``?user_code=`` (``verification_uri_complete``, §3.3.1) but never submitted by itself. It needs
the user signed in: without a session the browser goes to ``/login?device=...`` (a sealed
continuation, ``resource_owner.py``) and comes back here. ``POST /device`` with a user code
(normalised: case, dashes and spaces do not matter, ``device_codes.py``) shows, for a pending
code, a confirmation naming the device's client and the scopes it asked for -- every time:
RFC 8628 §5.4 (remote phishing) wants the user to confirm what they authorize, so a consent
remembered from the web flow never skips it. The user may grant a subset (the form starts with
everything ticked; a scope the device did not ask for, or the user may not grant, is
refused). Allow approves the code, Deny refuses it (both atomic, only from pending), and the
page says "You may return to your device" (§3.3).

Brute force (§5.1: "the authorization server SHOULD rate-limit user code attempts"): codes
entered are counted per client address and per user, each before it is looked at (so racing
guesses cannot all pass); past ``CODE_ATTEMPTS`` within ``CODE_WINDOW`` seconds the form
answers 429 with ``Retry-After``, and every wrong code also counts toward the gateway's
failed-attempt limit. With 20^8 codes
and ten tries per five minutes, guessing one of even a thousand pending codes takes years.

Every POST carries a CSRF token bound to the session (``browser.py``); the confirmation
carries the code it confirms sealed, bound to the user and to that device code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from restguard.authz.ratelimit import MemoryRateLimiter, address_bucket
from restguard.clock import Clock
from restguard.oauth2 import pages
from restguard.oauth2.authorization_request import PageError
from restguard.oauth2.browser import (
    REQUEST_TTL,
    AddressThrottle,
    Attempts,
    FormError,
    query_value,
    read_form,
)
from restguard.oauth2.client_auth import ClientLookup
from restguard.oauth2.clients import is_active
from restguard.oauth2.device_codes import display, normalise
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.resource_owner import ResourceOwnerPages
from restguard.oauth2.web_tokens import WebTokenInvalid
from restguard.store.ports import DeviceCodeRecord, DeviceCodeStore, UserRecord

CODE_ATTEMPTS: Final = 10
CODE_WINDOW: Final = 300.0
_DECISION: Final = "device decision"
_CODE_FORM: Final = (
    "user code"  # what the user-code form's CSRF token is bound to, besides the session
)
_WRONG: Final = "That code is not right, or it has expired. Check the code on your device."
_DONE: Final = "You may return to your device."


class DevicePages:
    def __init__(
        self,
        *,
        owner: ResourceOwnerPages,
        clients: ClientLookup,
        codes: DeviceCodeStore,
        clock: Clock,
        throttle: AddressThrottle | None = None,
    ) -> None:
        """``owner``: the login pages, whose session, CSRF tokens and failure count these
        pages share. ``throttle``: wrong user codes per address and per user."""
        self.owner, self.clients, self.codes, self.clock = owner, clients, codes, clock
        self.sessions, self.web = owner.sessions, owner.web
        self.throttle = throttle or AddressThrottle(
            MemoryRateLimiter(clock.monotonic), "device", CODE_ATTEMPTS, CODE_WINDOW
        )

    async def device(self, request: EndpointRequest) -> EndpointResponse:
        now = self.clock.now()
        try:
            user = await self.sessions.user(request, now)
            if request.method == "POST":
                return await self._post(request, user, now)
            entered = normalise(query_value(request, "user_code") or "")
            if user is None:
                return self.owner.device_login(entered, now)
            return self._code_form(request, now, display(entered) if entered else "")
        except PageError as err:
            return pages.error_page(status=err.status, title=err.title, message=err.message)

    def _code_form(
        self,
        request: EndpointRequest,
        now: datetime,
        user_code: str = "",
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
    ) -> EndpointResponse:
        csrf = self.sessions.csrf("device", self.sessions.nonce(request, now), _CODE_FORM, now)
        page = pages.user_code_page(
            hidden={"csrf": csrf}, user_code=user_code, error=error, status=status
        )
        if retry_after is not None:
            page.headers.append((b"retry-after", str(retry_after).encode()))
        return page

    async def _post(
        self, request: EndpointRequest, user: UserRecord | None, now: datetime
    ) -> EndpointResponse:
        try:
            form, chosen = read_form(request)
        except FormError:
            raise PageError(400, "Invalid request", "The form could not be read.") from None
        if user is None:
            return self.owner.device_login(None, now)
        nonce = self.sessions.nonce(request, now)
        kind, context = (
            ("device-consent", form.get("device", ""))
            if "decision" in form
            else (
                "device",
                _CODE_FORM,
            )
        )
        if not self.sessions.csrf_ok(kind, form.get("csrf"), nonce, context, now):
            raise PageError(
                403, "Form expired", "The form expired. Open the page again and start over."
            )
        if "decision" in form:
            return await self._decide(form, chosen, user, now)
        return await self._enter(request, form.get("user_code", ""), user, now)

    async def _enter(
        self, request: EndpointRequest, entered: str, user: UserRecord, now: datetime
    ) -> EndpointResponse:
        attempts = Attempts(
            (
                (self.throttle, f"address:{address_bucket(request.client)}"),
                (self.throttle, f"user:{user.user_id}"),
            )
        )
        # each entry counted first (racing guesses cannot all pass a check that counts later)
        wait = await attempts.count()
        if wait is not None:
            minutes = (wait + 59) // 60
            message = f"Too many codes entered. Try again in {minutes} minute{'s' * (minutes > 1)}."
            return self._code_form(request, now, error=message, status=429, retry_after=wait)
        code = normalise(entered)
        record = None if code is None else await self.codes.by_user_code(code, now)
        client = None if record is None else await self.clients.get(record.client_id)
        if record is None or client is None or not is_active(client, now):
            await self.owner.count_failure(request.client)
            return self._code_form(request, now, entered[:64], error=_WRONG)
        await attempts.give_back()  # a right code: the attempts are given back
        offered = tuple(s for s in record.scopes if s in user.scopes)
        if not offered:
            await self.codes.deny(record.user_code, now)
            return pages.message_page(
                title="Nothing to allow",
                message="You cannot grant any of the access this device asks for. " + _DONE,
                status=403,
            )
        sealed = self.web.make(
            _DECISION,
            {"c": record.user_code, "h": record.device_code_hash.hex(), "u": user.user_id},
            now,
            REQUEST_TTL,
        )
        return pages.consent_page(
            client_name=client.name,
            username=user.username,
            scopes=offered,
            hidden={
                "device": sealed,
                "csrf": self.sessions.csrf(
                    "device-consent", self.sessions.nonce(request, now), sealed, now
                ),
            },
            action="/device",
            notice=f"Only allow this if the code {display(record.user_code)} is shown on a "
            "device you are setting up yourself.",
        )

    async def _decide(
        self, form: dict[str, str], chosen: list[str], user: UserRecord, now: datetime
    ) -> EndpointResponse:
        record = await self._confirmed(form.get("device"), user, now)
        decision = form.get("decision")
        if decision == "deny":
            await self.codes.deny(record.user_code, now)
            return pages.message_page(title="Request denied", message="No access given. " + _DONE)
        if decision != "allow":
            raise PageError(400, "Invalid request", "Choose Allow or Deny.")
        offered = tuple(s for s in record.scopes if s in user.scopes)
        if any(s not in offered for s in chosen):
            raise PageError(
                400,
                "Invalid request",
                "The form grants a scope that was not asked for.",
                debug="device form scope outside the offer",
            )
        granted = tuple(s for s in offered if s in chosen)
        if not granted:
            await self.codes.deny(record.user_code, now)
            return pages.message_page(title="Request denied", message="No access given. " + _DONE)
        approved = await self.codes.approve(
            record.user_code, user_id=user.user_id, subject=user.username, scopes=granted, at=now
        )
        if not approved:  # decided meanwhile (another tab), or expired just now
            raise PageError(400, "Code expired", _WRONG)
        return pages.message_page(title="Device connected", message=_DONE)

    async def _confirmed(
        self, sealed: str | None, user: UserRecord, now: datetime
    ) -> DeviceCodeRecord:
        """The pending device code the confirmation form was shown for, to this user."""
        expired = PageError(400, "Code expired", _WRONG)
        try:
            data = self.web.open(_DECISION, sealed or "", now)
        except WebTokenInvalid:
            raise expired from None
        code, digest, user_id = data.get("c"), data.get("h"), data.get("u")
        if not isinstance(code, str) or user_id != user.user_id:
            raise expired
        record = await self.codes.by_user_code(code, now)
        if record is None or record.device_code_hash.hex() != digest:
            raise expired
        return record
