"""Storage ports: one Protocol per artifact. The core depends on these, never on a driver.

By area: ``keys`` (API keys, signing keys, issuers, the master-key check), ``oauth2`` (the
authorization server), ``signed`` (RFC 9421 apps, OAuth 1.0a); ``Store`` groups them.

Every method may raise ``BackendUnavailable`` (the driver failed: fail closed, 503). Writes are
atomic: a failed write leaves the store as it was.
"""

from __future__ import annotations

from typing import Protocol

from restguard.store.ports.keys import (
    ApiKeyRecord,
    ApiKeyStore,
    IssuerRecord,
    IssuerStore,
    MasterKeyCheckStore,
    SigningKeyRecord,
    SigningKeyStore,
)
from restguard.store.ports.oauth2 import (
    AccessTokenRecord,
    AccessTokenStore,
    AuthorizationCodeRecord,
    AuthorizationCodeStore,
    ConsentStore,
    DeviceCodeRecord,
    DeviceCodeStore,
    OAuthClientRecord,
    OAuthClientStore,
    RefreshTokenRecord,
    RefreshTokenStore,
    RevokedTokenStore,
    UserRecord,
    UserStore,
)
from restguard.store.ports.signed import (
    AppRecord,
    AppStore,
    NonceStore,
    OAuth1ConsumerRecord,
    OAuth1ConsumerStore,
    OAuth1NonceStore,
    OAuth1TokenRecord,
    OAuth1TokenStore,
)

__all__ = [
    "AccessTokenRecord",
    "AccessTokenStore",
    "ApiKeyRecord",
    "ApiKeyStore",
    "AppRecord",
    "AppStore",
    "AuthorizationCodeRecord",
    "AuthorizationCodeStore",
    "ConsentStore",
    "DeviceCodeRecord",
    "DeviceCodeStore",
    "IssuerRecord",
    "IssuerStore",
    "MasterKeyCheckStore",
    "NonceStore",
    "OAuth1ConsumerRecord",
    "OAuth1ConsumerStore",
    "OAuth1NonceStore",
    "OAuth1TokenRecord",
    "OAuth1TokenStore",
    "OAuthClientRecord",
    "OAuthClientStore",
    "RefreshTokenRecord",
    "RefreshTokenStore",
    "RevokedTokenStore",
    "SigningKeyRecord",
    "SigningKeyStore",
    "Store",
    "UserRecord",
    "UserStore",
]


class Store(Protocol):
    """The set of stores one backend provides, and its health."""

    api_keys: ApiKeyStore
    signing_keys: SigningKeyStore
    issuers: IssuerStore
    master_key_check: MasterKeyCheckStore
    oauth2_clients: OAuthClientStore
    revoked_tokens: RevokedTokenStore
    users: UserStore
    oauth2_codes: AuthorizationCodeStore
    refresh_tokens: RefreshTokenStore
    consents: ConsentStore
    oauth2_access_tokens: AccessTokenStore
    device_codes: DeviceCodeStore
    apps: AppStore
    signature_nonces: NonceStore
    oauth1_consumers: OAuth1ConsumerStore
    oauth1_tokens: OAuth1TokenStore
    oauth1_nonces: OAuth1NonceStore

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the backend answers."""
        ...

    def close(self) -> None: ...
