"""The credentials' pages: API keys, signing apps and OAuth 2.0 clients, each change through
the service layer (``restguard.manage``) as the CLI's and the API's, with the audit line the
API writes (``admin <kind>.<action> <target>``, marked ``(console)``)."""

from __future__ import annotations

from collections.abc import Sequence

from restguard.admin.console import pages, pages_credentials
from restguard.admin.console.kinds import Action, Ctx, Notice, Page, action
from restguard.admin.console.web import Answer
from restguard.credentials.apps import ALGORITHMS
from restguard.manage import apikeys, apps, oauth2_clients
from restguard.manage.values import duration
from restguard.oauth2.clients import GRANTS, TOKEN_FORMATS

# --- API keys ---------------------------------------------------------------------------------


async def apikeys_page(ctx: Ctx, notice: Notice) -> Answer:
    s, state = ctx.services, ctx.query("state", apikeys.STATES)
    listing = await apikeys.listing(s.store, s.clock.now(), state_is=state, limit=1000)
    body = pages_credentials.apikeys(
        listing["items"],
        ctx.tokens("apikey.create", "apikey.rotate", "apikey.revoke"),
        ctx.logout,
        state=state,
        message=notice.message,
        error=notice.error,
        secret=notice.secret,
    )
    return notice.status, body, []


async def create_key(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    data = await apikeys.create(
        s.store,
        s.clock.now(),
        ctx.field("name"),
        ctx.field("scopes").split(),
        duration(ctx.optional("expires_in"), "expires_in"),
    )
    ctx.changed("apikey.create", data["id"])
    return Notice(secret=pages.new_secret(f"New key {data['id']} ({data['name']})", data, "key"))


async def revoke_key(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    await apikeys.revoke(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("apikey.revoke", ids[0])
    return Notice(message=f"Key {ids[0]} revoked.")


async def rotate_key(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await apikeys.rotate(s.store, s.clock.now(), ids[0], None, ctx.etag())
    ctx.changed("apikey.rotate", f"{ids[0]} -> {data['id']}")
    title = f"Key {ids[0]} rotated: the new key {data['id']}"
    return Notice(secret=pages.new_secret(title, data, "key"))


# --- signing apps -----------------------------------------------------------------------------


async def apps_page(ctx: Ctx, notice: Notice) -> Answer:
    s, state = ctx.services, ctx.query("state", apps.STATES)
    listing = await apps.listing(s.store, s.clock.now(), state_is=state, limit=1000)
    body = pages_credentials.apps(
        listing["items"],
        ctx.tokens("app.create", "app.rotate", "app.revoke"),
        ctx.logout,
        algorithms=ALGORITHMS,
        states=apps.STATES,
        state=state,
        message=notice.message,
        error=notice.error,
        secret=notice.secret,
    )
    return notice.status, body, []


def _app_issued(title: str, data: dict[str, object]) -> Notice:
    if data.get("secret"):
        kept = "sealed by the master key"
        return Notice(secret=pages.new_secret(title, data, "secret", kept))
    return Notice(message=f"{title}: its public key is registered.")


async def create_app(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    data = await apps.create(
        s.store,
        s.clock.now(),
        s.sealer,
        ctx.field("name"),
        ctx.field("scopes").split(),
        ctx.field("alg"),
        ctx.pem("public_key"),
    )
    ctx.changed("app.create", data["key_id"])
    return _app_issued(f"New app {data['key_id']} ({data['name']})", data)


async def revoke_app(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await apps.revoke(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("app.revoke", data["key_id"])
    return Notice(message=f"App {ids[0]} revoked.")


async def rotate_app(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await apps.rotate(
        s.store, s.clock.now(), s.sealer, ids[0], ctx.pem("public_key"), None, ctx.etag()
    )
    ctx.changed("app.rotate", f"{data['old_id']} -> {data['key_id']}")
    return _app_issued(f"App {ids[0]} rotated: the new key_id {data['key_id']}", data)


# --- OAuth 2.0 clients ------------------------------------------------------------------------


async def clients_page(ctx: Ctx, notice: Notice) -> Answer:
    s, state = ctx.services, ctx.query("state", oauth2_clients.STATES)
    listing = await oauth2_clients.listing(s.store, s.clock.now(), state_is=state, limit=1000)
    body = pages_credentials.oauth2_clients(
        listing["items"],
        ctx.tokens("oauth2-client.create", "oauth2-client.revoke"),
        ctx.logout,
        grants=GRANTS,
        formats=TOKEN_FORMATS,
        states=oauth2_clients.STATES,
        state=state,
        message=notice.message,
        error=notice.error,
        secret=notice.secret,
    )
    return notice.status, body, []


async def create_client(ctx: Ctx, _: Sequence[str]) -> Notice:
    s = ctx.services
    public = ctx.checked("public")
    data = await oauth2_clients.create(
        s.store,
        s.clock.now(),
        ctx.field("name"),
        ctx.field("scopes").split(),
        [g for g in GRANTS if ctx.checked(f"grant_{g}")],
        ctx.lines("redirect_uris"),
        public,
        ctx.field("token_format") or TOKEN_FORMATS[0],
    )
    ctx.changed("oauth2-client.create", data["client_id"])
    title = f"New client {data['client_id']} ({data['name']})"
    if data["client_secret"] is None:
        return Notice(message=f"{title}: a public client, without a secret.")
    return Notice(secret=pages.new_secret(title, data, "client_secret"))


async def revoke_client(ctx: Ctx, ids: Sequence[str]) -> Notice:
    s = ctx.services
    data = await oauth2_clients.revoke(s.store, s.clock.now(), ids[0], ctx.etag())
    ctx.changed("oauth2-client.revoke", data["client_id"])
    return Notice(message=f"Client {ids[0]} revoked.")


PAGES: tuple[Page, ...] = (
    Page("/apikeys", apikeys_page),
    Page("/apps", apps_page),
    Page("/oauth2/clients", clients_page),
)
ACTIONS: tuple[Action, ...] = (
    action("/apikeys", "apikey.create", "/apikeys", create_key),
    action("/apikeys/{id}/revoke", "apikey.revoke", "/apikeys", revoke_key),
    action("/apikeys/{id}/rotate", "apikey.rotate", "/apikeys", rotate_key),
    action("/apps", "app.create", "/apps", create_app),
    action("/apps/{id}/revoke", "app.revoke", "/apps", revoke_app),
    action("/apps/{id}/rotate", "app.rotate", "/apps", rotate_app),
    action("/oauth2/clients", "oauth2-client.create", "/oauth2/clients", create_client),
    action("/oauth2/clients/{id}/revoke", "oauth2-client.revoke", "/oauth2/clients", revoke_client),
)
