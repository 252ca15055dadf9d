"""The pages of OAuth 1.0a consumers and tokens, users (resource owners), trusted issuers and
restguard's own signing keys. Pure functions from the service layer's views to HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from restguard.admin.console.pages import (
    button_form,
    cells,
    checkboxes,
    choice,
    code,
    create_section,
    e,
    name,
    record_page,
    state_filter,
    table,
    text_area,
    text_field,
    words,
)


def oauth1(
    consumers: Sequence[dict[str, Any]],
    tokens: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    methods: Sequence[str],
    states: Sequence[str],
    state: str | None,
    message: str | None = None,
    error: str | None = None,
    secret: str = "",
) -> bytes:
    """Consumers (filter, list with revoke, create) and token credentials (list, revoke)."""
    rows = []
    for r in consumers:
        actions = ""
        if r["state"] == "active":
            actions = button_form(
                f"/oauth1/consumers/{r['consumer_key']}/revoke",
                forms["oauth1-consumer.revoke"],
                "Revoke",
                f"Revoke {r['name']}",
                etag=r["etag"],
            )
        rows.append(
            f'<tr id="consumer-{e(r["consumer_key"])}">'
            + cells(
                code(r["consumer_key"]),
                name(r["name"]),
                words(r["scopes"]),
                e(r["callback"] or "oob"),
                words(r["signature_methods"]),
                e(r["state"]),
                actions,
            )
            + "</tr>"
        )
    token_rows = []
    for t in tokens:
        actions = ""
        if t["state"] == "active":
            actions = button_form(
                f"/oauth1/tokens/{t['token']}/revoke",
                forms["oauth1-token.revoke"],
                "Revoke",
                f"Revoke token {t['token']}",
                etag=t["etag"],
            )
        token_rows.append(
            f'<tr id="token-{e(t["token"])}">'
            + cells(
                code(t["token"]),
                code(t["consumer_key"]),
                e(t["subject"] or t["user_id"] or ""),
                words(t["scopes"]),
                e(t["state"]),
                e(t["expires_at"] or "never"),
                actions,
            )
            + "</tr>"
        )
    boxes = [(f"method_{m}", m, False) for m in methods]
    sections = (
        create_section(
            "New consumer",
            "/oauth1/consumers",
            forms["oauth1-consumer.create"],
            text_field("name", "Name", required=True)
            + text_field("scopes", "Scopes (separated by spaces)")
            + text_field("callback", "Callback URL (empty: oob only)", maxlength=2000)
            + checkboxes("Signature methods (none ticked: the defaults)", boxes)
            + text_area("rsa_public_key", "RSA public key (PEM; for RSA-SHA1 only)"),
            "Create consumer",
        )
        + f"<section>{state_filter('/oauth1', states, state)}"
        + table(
            "consumers",
            "Consumers (never their secrets)",
            ("consumer_key", "name", "scopes", "callback", "methods", "state", "actions"),
            rows,
        )
        + "</section><section>"
        + table(
            "tokens",
            "Token credentials users granted (never their secrets)",
            ("token", "consumer", "user", "scopes", "state", "expires", "actions"),
            token_rows,
        )
        + "</section>"
    )
    return record_page(
        "OAuth 1.0a", "/oauth1", logout, sections, message=message, error=error, secret=secret
    )


def users(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    states: Sequence[str],
    state: str | None,
    message: str | None = None,
    error: str | None = None,
) -> bytes:
    """Users: filter, list with remove, create. A password is never put in a page."""
    lines = []
    for r in rows:
        remove = button_form(
            f"/users/{r['user_id']}/remove",
            forms["user.remove"],
            "Remove",
            f"Remove {r['username']}",
            etag=r["etag"],
        )
        lines.append(
            f'<tr id="user-{e(r["user_id"])}">'
            + cells(
                code(r["user_id"]),
                name(r["username"]),
                words(r["scopes"]),
                e(r["state"]),
                str(int(r["failed_logins"])),
                remove,
            )
            + "</tr>"
        )
    sections = create_section(
        "New user",
        "/users",
        forms["user.create"],
        text_field("username", "Username", required=True)
        + text_field("password", "Password", required=True, maxlength=1024, kind="password")
        + text_field("scopes", "Scopes they may grant (separated by spaces)"),
        "Create user",
    ) + (
        f"<section>{state_filter('/users', states, state)}"
        + table(
            "users",
            "Users (never their passwords)",
            ("user_id", "username", "scopes", "state", "failed logins", "actions"),
            lines,
        )
        + "</section>"
    )
    return record_page("Users", "/users", logout, sections, message=message, error=error)


def issuers(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    scope_claims: Sequence[str],
    message: str | None = None,
    error: str | None = None,
) -> bytes:
    """Trusted issuers: list with remove, add."""
    lines = []
    for r in rows:
        remove = button_form(
            f"/issuers/{r['id']}/remove",
            forms["issuer.remove"],
            "Remove",
            f"Remove {r['issuer']}",
            etag=r["etag"],
        )
        lines.append(
            f'<tr id="issuer-{e(r["id"])}">'
            + cells(
                code(r["id"]),
                name(r["issuer"]),
                code(r["jwks_uri"]),
                name(r["audience"]),
                words(r["algorithms"]) or "any asymmetric",
                e(r["scope_claim"]),
                remove,
            )
            + "</tr>"
        )
    sections = create_section(
        "Trust an issuer",
        "/issuers",
        forms["issuer.add"],
        text_field("issuer", "Issuer (its iss, an https URL)", required=True, maxlength=2000)
        + text_field("jwks_uri", "JWKS URI (https)", required=True, maxlength=2000)
        + text_field("audience", "Audience (aud)", required=True, maxlength=2000)
        + text_field("algorithms", "Algorithms (separated by spaces; empty: any asymmetric)")
        + choice("scope_claim", "Scope claim", scope_claims, "scope")
        + text_field("typ", "Required typ (empty: any)")
        + text_field("leeway", "Clock leeway (e.g. 30s; empty: none)"),
        "Add issuer",
    ) + (
        "<section>"
        + table(
            "issuers",
            "Trusted issuers",
            ("id", "issuer", "JWKS URI", "audience", "algorithms", "scope claim", "actions"),
            lines,
        )
        + "</section>"
    )
    return record_page("Issuers", "/issuers", logout, sections, message=message, error=error)


def signing_keys(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    algorithms: Sequence[str],
    message: str | None = None,
    error: str | None = None,
) -> bytes:
    """restguard's own signing keys: list, rotate (never a private half)."""
    lines = [
        f'<tr id="signing-{e(r["kid"])}">'
        + cells(
            code(r["kid"]),
            e(r["alg"]),
            e(r["status"]),
            e(r["created_at"] or ""),
            e(r["retired_at"] or "never"),
        )
        + "</tr>"
        for r in rows
    ]
    sections = create_section(
        "Rotate",
        "/signing-keys",
        forms["signing-key.rotate"],
        choice("alg", "Algorithm of the new key", algorithms, algorithms[0])
        + '<p class="muted">The new key signs from now on; the others stay published for up '
        "to an hour, so tokens they signed still verify.</p>",
        "Rotate signing key",
    ) + (
        "<section>"
        + table(
            "signing-keys",
            "Signing keys (never their private halves)",
            ("kid", "alg", "status", "created", "retired at"),
            lines,
        )
        + "</section>"
    )
    return record_page(
        "Signing keys", "/signing-keys", logout, sections, message=message, error=error
    )
