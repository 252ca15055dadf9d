"""The quickstart's demo credentials: each run revokes the previous run's and writes new ones
(API keys, the demo identity provider's issuer, OAuth 2.0 client and application, the demo
user, a signing app, an OAuth 1.0a consumer and token credentials) straight into the store.
Their secrets are returned once, for the guide ``quickstart.py`` prints."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from restguard.config import Settings
from restguard.credentials.apikey import new_record
from restguard.credentials.apps import HMAC_SHA256, new_app
from restguard.credentials.jwt_issuers import new_issuer
from restguard.credentials.oauth1_consumers import OOB, new_consumer
from restguard.credentials.oauth1_tokens import (
    new_temporary_credentials,
    new_token_credentials,
    new_verifier,
)
from restguard.demo.app import PATH as APP_PATH
from restguard.demo.app import SCOPES, DemoApp
from restguard.demo.idp import ALG as IDP_ALG
from restguard.demo.idp import DemoIdentityProvider
from restguard.keys.master_check import ensure_master_key
from restguard.keys.sealing import Sealer, open_sealer
from restguard.manage.apikeys import ADMIN_SCOPE
from restguard.oauth2.clients import new_client
from restguard.oauth2.users import new_user
from restguard.store.ports import Store
from restguard.store.sql import open_store

READ_NAME, WRITE_NAME = "quickstart-read", "quickstart-write"
#: The admin API's key for this run (scope restguard:admin); revoked by the next run, and
#: expiring after a day in any case: a demo's admin key should not outlive the demo.
ADMIN_NAME, ADMIN_LIFETIME = "quickstart-admin", 86_400.0
SERVICE_NAME = "quickstart-service"  # the demo OAuth 2.0 client (client credentials)
APP_NAME = "Quickstart notes app"  # the demo OAuth 2.0 application (authorization code)
SIGNER_NAME = "quickstart-signer"  # the demo app that signs its requests (RFC 9421, HMAC)
CONSUMER_NAME = "quickstart-consumer"  # the demo OAuth 1.0a consumer (RFC 5849)
CONSUMER_SCOPES = ("notes:read",)
DEMO_USER = "demo"  # the person who signs in to it
DEMO_AUDIENCE = "restguard-quickstart"  # the demo identity provider's tokens are for this API


@dataclass(frozen=True)
class OAuth1Demo:
    """The demo consumer and the token credentials the demo user granted it."""

    consumer_key: str
    consumer_secret: str
    token: str
    token_secret: str


@dataclass(frozen=True)
class Demo:
    """What one run issued, secrets included: the guide prints them once."""

    read_key: str
    write_key: str
    admin_key: str
    client_id: str
    client_secret: str
    app: DemoApp
    password: str
    signer_id: str
    signer_secret: str
    oauth1: OAuth1Demo


async def fresh_keys(
    settings: Settings, idp: DemoIdentityProvider, gateway: str, upstream: str
) -> Demo:
    """Revoke the previous run's demo keys (their secrets were only ever printed) and issue
    a read key and a read/write key, an admin key (the admin API's, for a day), an OAuth 2.0
    client (client credentials, read only), an OAuth 2.0 application (authorization code,
    public) and the demo user who signs in to it, a signing app, an OAuth 1.0a consumer with
    token credentials of the demo user; trust this run's demo identity provider instead of the
    last one's."""
    store = open_store(settings.database_url)
    try:
        now = datetime.now(UTC)
        for rec in await store.api_keys.list():
            if rec.name in (READ_NAME, WRITE_NAME, ADMIN_NAME) and not rec.revoked_at:
                await store.api_keys.revoke(rec.id, now)
        read, read_key = new_record(READ_NAME, ("notes:read",), now, None)
        write, write_key = new_record(WRITE_NAME, ("notes:read", "notes:write"), now, None)
        admin, admin_key = new_record(ADMIN_NAME, (ADMIN_SCOPE,), now, ADMIN_LIFETIME)
        await store.api_keys.insert(read)
        await store.api_keys.insert(write)
        await store.api_keys.insert(admin)
        for issuer in await store.issuers.list():
            if issuer.audience == DEMO_AUDIENCE:
                await store.issuers.remove(issuer.id)
        await store.issuers.insert(
            new_issuer(
                issuer=idp.issuer,
                jwks_uri=idp.jwks_uri,
                audience=DEMO_AUDIENCE,
                now=now,
                algorithms=[IDP_ALG],
                typ="at+jwt",
            )
        )
        for client in await store.oauth2_clients.list():
            if client.name == SERVICE_NAME and client.revoked_at is None:
                await store.oauth2_clients.revoke(client.client_id, now)
        service, secret = new_client(
            name=SERVICE_NAME,
            scopes=("notes:read",),
            grants=("client_credentials",),
            redirect_uris=(),
            public=False,
            now=now,
        )
        assert secret is not None  # a confidential client
        await store.oauth2_clients.insert(service)
        app = await _fresh_app(store, now, gateway, upstream)
        password = secrets.token_urlsafe(12)
        old = await store.users.by_username(DEMO_USER)
        if old is not None:  # its consents and refresh tokens go with it
            await store.refresh_tokens.revoke_user(old.user_id, now)
            await store.oauth1_tokens.revoke_user(old.user_id, now)
            await store.consents.revoke(old.user_id)
            await store.users.remove(old.user_id)
        user = new_user(DEMO_USER, password, SCOPES, now=now)
        await store.users.insert(user)
        sealer = open_sealer(settings.master_key_path)
        await ensure_master_key(store, sealer)  # (a wrong master key seals nothing)
        signer_id, signer_secret = await _fresh_signer(store, sealer, now)
        oauth1 = await _fresh_consumer(store, sealer, now, user.user_id)
        return Demo(
            read_key,
            write_key,
            admin_key,
            service.client_id,
            secret,
            app,
            password,
            signer_id,
            signer_secret,
            oauth1,
        )
    finally:
        store.close()


async def _fresh_signer(store: Store, sealer: Sealer, now: datetime) -> tuple[str, str]:
    """The demo app that signs its requests (hmac-sha256); the previous run's is revoked."""
    for old in await store.apps.list():
        if old.name == SIGNER_NAME and old.revoked_at is None:
            await store.apps.revoke(old.key_id, now)
    record, secret = new_app(
        SIGNER_NAME, ("notes:read",), HMAC_SHA256, None, now=now, sealer=sealer
    )
    assert secret is not None  # an hmac app
    await store.apps.insert(record)
    return record.key_id, secret


async def _fresh_consumer(store: Store, sealer: Sealer, now: datetime, user_id: str) -> OAuth1Demo:
    """The demo OAuth 1.0a consumer and token credentials the demo user granted it, written as
    the provider writes them (temporary credentials, authorized, exchanged: RFC 5849 §2); the
    previous run's consumer is revoked, with its tokens."""
    for old in await store.oauth1_consumers.list():
        if old.name == CONSUMER_NAME and old.revoked_at is None:
            await store.oauth1_consumers.revoke(old.consumer_key, now)
    consumer, consumer_secret = new_consumer(CONSUMER_NAME, CONSUMER_SCOPES, now=now, sealer=sealer)
    await store.oauth1_consumers.insert(consumer)
    temporary, _ = new_temporary_credentials(consumer, OOB, now=now, sealer=sealer)
    await store.oauth1_tokens.insert(temporary)
    _, digest = new_verifier()
    authorized = await store.oauth1_tokens.authorize(
        temporary.token,
        user_id=user_id,
        subject=DEMO_USER,
        scopes=CONSUMER_SCOPES,
        verifier_hash=digest,
        at=now,
    )
    granted = await store.oauth1_tokens.get(temporary.token)
    assert authorized and granted is not None  # just made: nothing else knows the token
    access, token_secret = new_token_credentials(granted, now=now, sealer=sealer)
    exchanged = await store.oauth1_tokens.exchange(temporary.token, digest, access, now)
    assert exchanged == "exchanged", exchanged
    return OAuth1Demo(consumer.consumer_key, consumer_secret, access.token, token_secret)


async def _fresh_app(store: Store, now: datetime, gateway: str, upstream: str) -> DemoApp:
    for client in await store.oauth2_clients.list():
        if client.name == APP_NAME and client.revoked_at is None:
            await store.oauth2_clients.revoke(client.client_id, now)
    record, _ = new_client(
        name=APP_NAME,
        scopes=SCOPES,
        grants=("authorization_code", "refresh_token"),
        redirect_uris=(upstream + APP_PATH,),
        public=True,
        now=now,
    )
    await store.oauth2_clients.insert(record)
    return DemoApp(record.client_id, gateway, upstream)
