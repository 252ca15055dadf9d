"""The pages of OAuth 1.0a consumers and tokens, users, trusted issuers and restguard's own
signing keys, each change through the service layer (``restguard.manage``) with the audit line
the API writes (``admin <kind>.<action> <target>``, marked ``(console)``)."""

from __future__ import annotations

from collections.abc import Sequence

from restguard.admin.console import pages, pages_accounts
from restguard.admin.console.kinds import Action, Ctx, Notice, Page, action
from restguard.admin.console.web import Answer
from restguard.admin.resources.oauth1 import token_reference
from restguard.credentials.oauth1_consumers import SIGNATURE_METHODS
from restguard.keys.jws_sign import ALGORITHMS as SIGNING_ALGORITHMS
from restguard.manage import issuers, oauth1, signing_keys, users
from restguard.manage.values import duration

# --- OAuth 1.0a -------------------------------------------------------------------------------


async def oauth1_page(ctx: Ctx, notice: Notice) -> Answer:
    s, now = ctx.services, ctx.services.clock.now()
    state = ctx.query("state", oauth1.CONSUMER_STATES)
    consumers = await oauth1.consumer_listing(s.store, now, state_is=state, limit=1000)
    tokens = await oauth1.token_listing(s.store, now, limit=1000)
    body = pages_accounts.oauth1(
        consumers["items"],
        tokens["items"],
        ctx.tokens("oauth1-consumer.create", "oauth1-consumer.revoke", "oauth1-token.revoke"),
        ctx.logout,
        methods=SIGNATURE_METHODS,
        states=oauth1.CONSUMER_STATES,
        state=state,
        message=notice.message,
        error=notice.error,
        secret=notice.secret,
    )
    return notice.status, body, []


async def create_consumer(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    data = await oauth1.create_consumer(
        s.store,
        s.clock.now(),
        s.sealer,
        ctx.field("name"),
        ctx.field("scopes").split(),
        ctx.optional("callback"),
        ctx.pem("rsa_public_key"),
        [m for m in SIGNATURE_METHODS if ctx.checked(f"method_{m}")],
    )
    ctx.changed("oauth1-consumer.create", data["consumer_key"])
    title = f"New consumer {data['consumer_key']} ({data['name']})"
    kept = "sealed by the master key"
    return Notice(secret=pages.new_secret(title, data, "consumer_secret", kept))


async def revoke_consumer(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await oauth1.revoke_consumer(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("oauth1-consumer.revoke", data["consumer_key"])
    return Notice(message=f"Consumer {ids[0]} revoked, and every token issued to it.")


async def revoke_token(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await oauth1.revoke_token(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("oauth1-token.revoke", token_reference(data))
    return Notice(message="Token credentials revoked.")


# --- users ------------------------------------------------------------------------------------


async def users_page(ctx: Ctx, notice: Notice) -> Answer:
    s, state = ctx.services, ctx.query("state", users.STATES)
    listing = await users.listing(s.store, s.clock.now(), state_is=state, limit=1000)
    body = pages_accounts.users(
        listing["items"],
        ctx.tokens("user.create", "user.remove"),
        ctx.logout,
        states=users.STATES,
        state=state,
        message=notice.message,
        error=notice.error,
    )
    return notice.status, body, []


async def create_user(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    data = await users.create(
        s.store,
        s.clock.now(),
        ctx.field("username"),
        ctx.field("password"),  # hashed (Argon2id), never shown
        ctx.field("scopes").split(),
    )
    ctx.changed("user.create", data["user_id"])
    return Notice(message=f"User {data['username']} created ({data['user_id']}).")


async def remove_user(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await users.remove(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("user.remove", data["user_id"])
    return Notice(message=f"User {data['username']} removed; what they granted is revoked.")


# --- issuers ----------------------------------------------------------------------------------


async def issuers_page(ctx: Ctx, notice: Notice) -> Answer:
    listing = await issuers.listing(ctx.services.store, limit=1000)
    body = pages_accounts.issuers(
        listing["items"],
        ctx.tokens("issuer.add", "issuer.remove"),
        ctx.logout,
        scope_claims=issuers.SCOPE_CLAIMS,
        message=notice.message,
        error=notice.error,
    )
    return notice.status, body, []


async def add_issuer(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    record = issuers.check(
        s.clock.now(),
        ctx.field("issuer").strip(),
        ctx.field("jwks_uri").strip(),
        ctx.field("audience").strip(),
        ctx.field("algorithms").split(),
        ctx.field("scope_claim") or "scope",
        ctx.optional("typ"),
        duration(ctx.optional("leeway"), "leeway"),
        own_issuer=s.public_url,
    )
    data = await issuers.add(s.store, record)
    ctx.changed("issuer.add", data["id"])
    text = f"Issuer {data['issuer']} trusted ({data['id']})"
    if data["jwks_problem"]:
        text += f"; its JWKS could not be read yet: {data['jwks_problem']}"
    else:
        text += f"; its JWKS serves {data['jwks_keys']} usable keys"
    return Notice(message=text + ".")


async def remove_issuer(ctx: Ctx, ids: Sequence[str]) -> Notice:
    data = await issuers.remove(ctx.services.store, ids[0], ctx.etag())
    ctx.changed("issuer.remove", data["id"])
    return Notice(message=f"Issuer {data['issuer']} is no longer trusted.")


# --- signing keys -----------------------------------------------------------------------------


async def signing_keys_page(ctx: Ctx, notice: Notice) -> Answer:
    s = ctx.services
    listing = await signing_keys.listing(s.store, s.clock.now(), limit=1000)
    body = pages_accounts.signing_keys(
        listing["items"],
        ctx.tokens("signing-key.rotate"),
        ctx.logout,
        algorithms=SIGNING_ALGORITHMS,
        message=notice.message,
        error=notice.error,
    )
    return notice.status, body, []


async def rotate_signing_key(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    alg = signing_keys.check_alg(ctx.field("alg"))
    data = await signing_keys.rotate(s.store, s.sealer(), s.clock.now(), alg)
    ctx.changed("signing-key.rotate", data["kid"])
    return Notice(message=f"Signing key {data['kid']} ({data['alg']}) signs from now on.")


PAGES: tuple[Page, ...] = (
    Page("/oauth1", oauth1_page),
    Page("/users", users_page),
    Page("/issuers", issuers_page),
    Page("/signing-keys", signing_keys_page),
)
ACTIONS: tuple[Action, ...] = (
    action("/oauth1/consumers", "oauth1-consumer.create", "/oauth1", create_consumer),
    action("/oauth1/consumers/{id}/revoke", "oauth1-consumer.revoke", "/oauth1", revoke_consumer),
    action("/oauth1/tokens/{id}/revoke", "oauth1-token.revoke", "/oauth1", revoke_token),
    action("/users", "user.create", "/users", create_user),
    action("/users/{id}/remove", "user.remove", "/users", remove_user),
    action("/issuers", "issuer.add", "/issuers", add_issuer),
    action("/issuers/{id}/remove", "issuer.remove", "/issuers", remove_issuer),
    action("/signing-keys", "signing-key.rotate", "/signing-keys", rotate_signing_key),
)
