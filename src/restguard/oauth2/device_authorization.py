"""``POST /oauth2/device_authorization``: the device authorization request (RFC 8628 §3.1)
and its response (§3.2).

The client authenticates as at the token endpoint (§3.1: "client_id REQUIRED if the client is
not authenticating with the authorization server as described in Section 3.2.1 of [RFC6749]":
``client_auth.py``, confidential or public) and must be registered for the ``device_code``
grant; ``scope`` is checked like any scope request (RFC 6749 §3.3). The answer holds the
device code (a bearer secret only the device knows, stored as its hash), the user code
(``device_codes.py``), ``verification_uri`` (``<public_url>/device``) and
``verification_uri_complete`` (§3.3.1), ``expires_in`` and ``interval``; it is not cached
(the same ``Cache-Control: no-store`` as token responses). Errors are RFC 6749 §5.2's (§3.2).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from urllib.parse import quote

from restguard.keys.hashing import token_digest
from restguard.oauth2 import client_auth
from restguard.oauth2.device_codes import (
    INTERVAL,
    LIFETIME,
    display,
    new_device_code,
    new_user_code,
)
from restguard.oauth2.errors import OAuthError, invalid_request
from restguard.oauth2.http import EndpointRequest, EndpointResponse
from restguard.oauth2.scopes import granted_scopes
from restguard.oauth2.token_endpoint import Failures, Record, answer, parse_form
from restguard.store.errors import DuplicateRecord
from restguard.store.ports import DeviceCodeRecord, DeviceCodeStore

GRANT_NAME: Final = "device_code"
#: Draws of a user code before giving up: a clash with a pending code is 1 in 20^8 / pending.
_DRAWS: Final = 5


class DeviceAuthorizationEndpoint:
    """``failures`` and ``record`` as for ``token_endpoint.TokenEndpoint``."""

    def __init__(
        self,
        clients: client_auth.ClientLookup,
        codes: DeviceCodeStore,
        public_url: str,
        failures: Failures | None = None,
        record: Record | None = None,
    ) -> None:
        self.clients, self.codes, self.failures, self.record = clients, codes, failures, record
        self.verification_uri = public_url.rstrip("/") + "/device"

    async def __call__(self, request: EndpointRequest, now: datetime) -> EndpointResponse:
        async def work(found: list[client_auth.Presented]) -> dict[str, object]:
            return await self._authorize(request, now, found)

        return await answer(request, work, self.record, self.failures)

    async def _authorize(
        self, request: EndpointRequest, now: datetime, presented: list[client_auth.Presented]
    ) -> dict[str, object]:
        if request.query:
            raise invalid_request("Send the parameters in the body, not the URL.")
        form = parse_form(request)
        found = client_auth.presented(request, form)
        presented.append(found)
        client = await client_auth.authenticate(found, self.clients, now)
        if GRANT_NAME not in client.grants:
            raise OAuthError("unauthorized_client", "This client may not use the device flow.")
        scopes = granted_scopes(form.get("scope"), client.scopes)
        if not scopes:
            raise OAuthError("invalid_scope", "The client may not be granted any scope.")
        device_code = new_device_code()
        for _ in range(_DRAWS):
            user_code = new_user_code()
            try:
                await self.codes.insert(
                    DeviceCodeRecord(
                        device_code_hash=token_digest(device_code),
                        user_code=user_code,
                        client_id=client.client_id,
                        scopes=scopes,
                        created_at=now,
                        expires_at=now + LIFETIME,
                        interval=INTERVAL,
                    )
                )
                break
            except DuplicateRecord:  # the user code of another pending request: draw again
                continue
        else:
            raise OAuthError(
                "temporarily_unavailable", "No user code is free; try again.", status=503
            )
        shown = display(user_code)
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": self.verification_uri,
            "verification_uri_complete": f"{self.verification_uri}?user_code={quote(shown)}",
            "expires_in": int(LIFETIME.total_seconds()),
            "interval": INTERVAL,
        }
