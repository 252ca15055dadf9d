"""The device access token request (RFC 8628 §3.4) and its answers (§3.5).

Checked in order: the device code is known and was issued to the authenticated client (§3.4:
the client authenticates as at any token request; a code of another client is
``invalid_grant``, and does not count as that client's poll); a code already redeemed is
``invalid_grant``; past its lifetime ``expired_token``. Then the poll is recorded atomically
(``DeviceCodeStore.poll``): one sooner than ``interval`` seconds after the previous is
``slow_down`` -- "the interval MUST be increased by 5 seconds for this and all subsequent
requests" (§3.5), which the store does for this code. Then the user's decision:
``authorization_pending`` while there is none, ``access_denied`` once refused, and once
approved exactly one token response: the code is consumed atomically (one winner across
processes); every later request, or a racing one, is ``invalid_grant``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from restguard.keys.hashing import token_digest
from restguard.oauth2.access_tokens import AccessTokens, IssuedToken, new_jti
from restguard.oauth2.clients import DEVICE_CODE_URN
from restguard.oauth2.device_codes import SLOW_DOWN_STEP, is_device_code
from restguard.oauth2.errors import OAuthError, invalid_request
from restguard.oauth2.refresh_tokens import RefreshTokens, new_family_id
from restguard.store.ports import DeviceCodeStore, OAuthClientRecord

GRANT_TYPE: Final = DEVICE_CODE_URN


def _invalid_grant(debug: str) -> OAuthError:
    return OAuthError("invalid_grant", "The device code is invalid or was used.", debug=debug)


class DeviceCodeGrant:
    def __init__(
        self,
        codes: DeviceCodeStore,
        tokens: AccessTokens,
        refresh: RefreshTokens,
        *,
        step: int = SLOW_DOWN_STEP,
    ) -> None:
        self.codes, self.tokens, self.refresh, self.step = codes, tokens, refresh, step

    async def __call__(
        self, client: OAuthClientRecord, form: dict[str, str], now: datetime
    ) -> IssuedToken:
        code = form.get("device_code")
        if code is None:
            raise invalid_request("device_code is missing.")
        record = await self.codes.get(token_digest(code)) if is_device_code(code) else None
        if record is None:
            raise _invalid_grant("unknown device code")
        if record.client_id != client.client_id:
            raise _invalid_grant("the device code was issued to another client")
        if record.status == "used":
            raise _invalid_grant("the device code was redeemed before")
        if record.expires_at <= now:
            raise OAuthError(
                "expired_token", "The device code expired; start again.", debug="expired"
            )
        if await self.codes.poll(record.device_code_hash, now, step=self.step):
            raise OAuthError(
                "slow_down",
                f"Polling too fast: wait {record.interval + self.step} seconds between requests.",
            )
        if record.status == "pending":
            raise OAuthError("authorization_pending", "The user has not decided yet.")
        if record.status == "denied":
            raise OAuthError("access_denied", "The user denied the request.")
        if record.status != "approved" or record.subject is None or record.user_id is None:
            raise _invalid_grant(f"device code in state {record.status!r}")
        if not await self.codes.consume(record.device_code_hash, now):
            raise _invalid_grant("redeemed by a concurrent request, or its user was removed")
        scopes = tuple(s for s in record.granted_scopes if s in client.scopes)
        jti = new_jti()
        issued = await self.tokens.issue_for(client, subject=record.subject, scopes=scopes, jti=jti)
        if "refresh_token" not in client.grants:
            return issued
        return await self.refresh.attach(
            issued,
            new_family_id(),
            client_id=client.client_id,
            user_id=record.user_id,
            subject=record.subject,
            scopes=scopes,
            access_jti=jti,
            now=now,
        )
