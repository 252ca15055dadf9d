"""The pages of the credentials clients present: API keys, signing apps (RFC 9421) and
OAuth 2.0 clients. Pure functions from the service layer's views to HTML (``pages``)."""

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

KEY_STATES = ("active", "grace", "expired", "revoked")


def apikeys(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    state: str | None,
    message: str | None = None,
    error: str | None = None,
    secret: str = "",
) -> bytes:
    """The API keys page: filter, list with revoke and rotate, create."""
    lines = []
    for r in rows:
        actions = ""
        if r["state"] in ("active", "grace"):
            base = f"/apikeys/{r['id']}"
            actions = button_form(
                f"{base}/rotate",
                forms["apikey.rotate"],
                "Rotate",
                f"Rotate {r['name']}",
                etag=r["etag"],
                danger=False,
            ) + button_form(
                f"{base}/revoke",
                forms["apikey.revoke"],
                "Revoke",
                f"Revoke {r['name']}",
                etag=r["etag"],
            )
        lines.append(
            f'<tr id="key-{e(r["id"])}">'
            + cells(
                code(r["id"]),
                name(r["name"]),
                words(r["scopes"]),
                e(r["state"]),
                e(r["expires_at"] or "never"),
                e(r["last_used_at"] or "never"),
                actions,
            )
            + "</tr>"
        )
    sections = create_section(
        "New key",
        "/apikeys",
        forms["apikey.create"],
        text_field("name", "Name (who or what it is for)", required=True)
        + text_field("scopes", "Scopes (separated by spaces)")
        + text_field("expires_in", "Expires in (e.g. 90d; empty: never)"),
        "Create key",
    ) + (
        f"<section>{state_filter('/apikeys', KEY_STATES, state)}"
        + table(
            "apikeys",
            "Keys (never their secrets)",
            ("id", "name", "scopes", "state", "expires", "last used", "actions"),
            lines,
        )
        + "</section>"
    )
    return record_page(
        "API keys", "/apikeys", logout, sections, message=message, error=error, secret=secret
    )


def apps(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    algorithms: Sequence[str],
    states: Sequence[str],
    state: str | None,
    message: str | None = None,
    error: str | None = None,
    secret: str = "",
) -> bytes:
    """Signing apps: filter, list with rotate (a new public key for a public-key app) and
    revoke, create with an algorithm and, for a public-key one, its PEM."""
    lines = []
    for r in rows:
        actions = ""
        if r["state"] in ("active", "grace"):
            base = f"/apps/{r['key_id']}"
            if r["public_key_sha256"] is None:
                rotate = button_form(
                    f"{base}/rotate",
                    forms["app.rotate"],
                    "Rotate",
                    f"Rotate {r['name']}",
                    etag=r["etag"],
                    danger=False,
                )
            else:
                pem_id = f"pem-{r['key_id']}"
                rotate = (
                    "<details><summary>Rotate</summary>"
                    + button_form(
                        f"{base}/rotate",
                        forms["app.rotate"],
                        "Rotate",
                        f"Rotate {r['name']}",
                        etag=r["etag"],
                        danger=False,
                        extra=f'<label for="{e(pem_id)}">New public key (PEM)</label>'
                        f'<textarea id="{e(pem_id)}" name="public_key" rows="3" '
                        'spellcheck="false" required></textarea>',
                    )
                    + "</details> "
                )
            actions = rotate + button_form(
                f"{base}/revoke",
                forms["app.revoke"],
                "Revoke",
                f"Revoke {r['name']}",
                etag=r["etag"],
            )
        lines.append(
            f'<tr id="app-{e(r["key_id"])}">'
            + cells(
                code(r["key_id"]),
                name(r["name"]),
                e(r["alg"]),
                words(r["scopes"]),
                e(r["state"]),
                code(r["public_key_sha256"] or "(secret)"),
                actions,
            )
            + "</tr>"
        )
    sections = create_section(
        "New app",
        "/apps",
        forms["app.create"],
        text_field("name", "Name", required=True)
        + text_field("scopes", "Scopes (separated by spaces)")
        + choice("alg", "Algorithm", algorithms, algorithms[0])
        + text_area("public_key", "Public key (PEM; for ed25519 and ecdsa-p256-sha256 only)"),
        "Create app",
    ) + (
        f"<section>{state_filter('/apps', states, state)}"
        + table(
            "apps",
            "Apps (never their secrets)",
            ("key_id", "name", "alg", "scopes", "state", "public key sha256", "actions"),
            lines,
        )
        + "</section>"
    )
    return record_page(
        "Apps", "/apps", logout, sections, message=message, error=error, secret=secret
    )


def oauth2_clients(
    rows: Sequence[dict[str, Any]],
    forms: dict[str, str],
    logout: str,
    *,
    grants: Sequence[str],
    formats: Sequence[str],
    states: Sequence[str],
    state: str | None,
    message: str | None = None,
    error: str | None = None,
    secret: str = "",
) -> bytes:
    """OAuth 2.0 clients: filter, list with revoke, create."""
    lines = []
    for r in rows:
        actions = ""
        if r["state"] == "active":
            actions = button_form(
                f"/oauth2/clients/{r['client_id']}/revoke",
                forms["oauth2-client.revoke"],
                "Revoke",
                f"Revoke {r['name']}",
                etag=r["etag"],
            )
        uris = "<br>".join(code(u) for u in r["redirect_uris"]) or "none"
        lines.append(
            f'<tr id="client-{e(r["client_id"])}">'
            + cells(
                code(r["client_id"]),
                name(r["name"]),
                "public" if r["public"] else "confidential",
                words(r["grants"]),
                words(r["scopes"]),
                uris,
                e(r["state"]),
                actions,
            )
            + "</tr>"
        )
    boxes = [(f"grant_{g}", g, False) for g in grants]
    sections = create_section(
        "New client",
        "/oauth2/clients",
        forms["oauth2-client.create"],
        text_field("name", "Name", required=True)
        + text_field("scopes", "Scopes (separated by spaces)")
        + checkboxes("Grants", boxes)
        + text_area("redirect_uris", "Redirect URIs (one per line)")
        + checkboxes("Type", [("public", "Public client (no secret; PKCE)", False)])
        + choice("token_format", "Access token format", formats, formats[0]),
        "Create client",
    ) + (
        f"<section>{state_filter('/oauth2/clients', states, state)}"
        + table(
            "clients",
            "Clients (never their secrets)",
            ("client_id", "name", "type", "grants", "scopes", "redirect URIs", "state", "actions"),
            lines,
        )
        + "</section>"
    )
    return record_page(
        "OAuth 2.0 clients",
        "/oauth2/clients",
        logout,
        sections,
        message=message,
        error=error,
        secret=secret,
    )
