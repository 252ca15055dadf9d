"""``POST /oauth2/token`` (RFC 6749 §3.2): parse strictly, authenticate the client, run the
grant, answer with ``Cache-Control: no-store`` (§5.1) or an RFC 6749 §5.2 error."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from restguard.oauth2 import client_auth
from restguard.oauth2.access_tokens import IssuedToken
from restguard.oauth2.clients import DEVICE_CODE_URN
from restguard.oauth2.errors import NO_STORE, OAuthError, invalid_request
from restguard.oauth2.grants import Grant
from restguard.oauth2.http import EndpointRequest, EndpointResponse

MAX_PARAMETERS = 32
FORM = b"application/x-www-form-urlencoded"

#: The name a client is registered with (``oauth2 client create --grant``), by ``grant_type``.
GRANT_NAMES = {
    "authorization_code": "authorization_code",
    "client_credentials": "client_credentials",
    "refresh_token": "refresh_token",
    DEVICE_CODE_URN: "device_code",
}


def parse_form(request: EndpointRequest) -> dict[str, str]:
    """The body's parameters. RFC 6749 §3.2: form-encoded, each at most once; one sent
    without a value counts as omitted."""
    types = request.header(b"content-type")
    if len(types) != 1 or types[0].partition(b";")[0].strip().lower() != FORM:
        raise invalid_request("Send the parameters as application/x-www-form-urlencoded.")
    try:
        pairs = parse_qsl(
            request.body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(request.body),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("The form body does not parse.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise invalid_request(f"The parameter {name} is repeated.")
        form[name] = value
    return {name: value for name, value in form.items() if value != ""}


Failures = Callable[[str], Awaitable[None]]
# (request, status, error, client auth method, client id, detail): one audit record per request
Record = Callable[[EndpointRequest, int, str | None, str | None, str | None, str | None], None]


async def answer(
    request: EndpointRequest,
    work: Callable[[list[client_auth.Presented]], Awaitable[dict[str, object]]],
    record: Record | None,
    failures: Failures | None,
) -> EndpointResponse:
    """A client-authenticated endpoint's answer: what ``work`` returns as JSON with
    ``Cache-Control: no-store`` (RFC 6749 §5.1), or its ``OAuthError`` (§5.2). ``work`` appends
    the client credentials it found to the list it is given. One audit record either way (a
    required audit log that fails raises: nothing is issued); a failed client authentication
    is told to ``failures`` (the address's failed-attempt limit)."""
    found: list[client_auth.Presented] = []
    try:
        body = await work(found)
    except OAuthError as err:
        method, client_id = (found[0].method, found[0].client_id) if found else (None, None)
        if record is not None:
            record(request, err.status, err.error, method, client_id, err.debug)
        if err.error == "invalid_client" and failures is not None:
            await failures(request.client)
        return err.response()
    if record is not None:
        record(request, 200, None, found[0].method, found[0].client_id, None)
    return EndpointResponse(200, list(NO_STORE), json.dumps(body).encode())


class TokenEndpoint:
    """``failures``: told the client address of every failed client authentication; it may
    raise an ``AuthError`` (the gateway's failed-attempt limit: 429 with ``Retry-After``), as
    for every 401 on the gateway (CONTRACT "Errors")."""

    def __init__(
        self,
        clients: client_auth.ClientLookup,
        grants: Mapping[str, Grant],
        failures: Failures | None = None,
        record: Record | None = None,
    ) -> None:
        """``grants``: the grant served for each ``grant_type`` (a key of ``GRANT_NAMES``)."""
        unknown = set(grants) - set(GRANT_NAMES)
        if unknown:
            raise ValueError(f"unknown grant types: {sorted(unknown)}")
        self.clients, self.grants, self.failures = clients, dict(grants), failures
        self.record = record

    async def __call__(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        async def work(found: list[client_auth.Presented]) -> dict[str, object]:
            issued = await self._issue(request, now, found)
            body: dict[str, object] = {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            }
            if issued.refresh_token is not None:
                body["refresh_token"] = issued.refresh_token
            return body

        return await answer(request, work, self.record, self.failures)

    async def _issue(
        self, request: EndpointRequest, now: datetime, presented: list[client_auth.Presented]
    ) -> IssuedToken:
        if request.query:
            raise invalid_request("Send the parameters in the body, not the URL.")
        form = parse_form(request)
        found = client_auth.presented(request, form)
        presented.append(found)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise invalid_request("grant_type is missing.")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise OAuthError(
                "unsupported_grant_type", f"This server does not serve {grant_type[:64]!r}."
            )
        client = await client_auth.authenticate(found, self.clients, now)
        if GRANT_NAMES[grant_type] not in client.grants:
            raise OAuthError("unauthorized_client", "This client may not use this grant type.")
        return await grant(client, form, now)
