"""OAuth 2.0 clients: identifiers, secrets, and the checks ``oauth2 client create`` applies.

* ``client_id``: ``rg_ci_`` and 16 characters of ``[0-9a-z]``: public (it appears in logs, URLs
  and tokens), unguessable enough that ids cannot be enumerated.
* ``client_secret``: ``rg_cs_`` and 43 base62 characters from ``secrets`` (256 bits), shown
  once. Only its SHA-256 is stored: with that much entropy a slow password hash adds latency
  and no safety (Hydra's bcrypt caps it near 400 grants/s). Checked in constant time. The
  ``rg_cs_`` prefix lets secret scanners and restguard's own redaction find a leaked one.

``new_client`` makes the record ``oauth2 client create`` stores, refusing what RFC 6749 and the
OAuth 2.0 Security BCP (RFC 9700) rule out: redirect URIs are exact strings (RFC 9700 §4.1.1),
absolute, without a fragment (RFC 6749 §3.1.2), over https, or http to a loopback IP literal, or
a private-use scheme for native apps (RFC 8252 §7.3, §7.1); only the authorization_code grant
uses them, and it needs one; client_credentials is for confidential clients (RFC 6749 §4.4).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from restguard.credentials.apikey import check_name
from restguard.keys.hashing import digest_matches, token_digest
from restguard.store.ports import OAuthClientRecord
from restguard.tokens import random_base62
from restguard.wire.callback_uri import MAX_CHARS, callback_uri_problem
from restguard.wire.scope import scope_problem

ID_PREFIX: Final = "rg_ci_"
SECRET_PREFIX: Final = "rg_cs_"  # noqa: S105 (a public marker, not a secret)
GRANTS: Final = ("authorization_code", "client_credentials", "refresh_token", "device_code")
#: Access tokens as RFC 9068 JWTs, or opaque ``rg_at_`` references stored by hash.
TOKEN_FORMATS: Final = ("jwt", "opaque")
#: RFC 8628 §3.4's grant type, accepted for ``device_code`` (the name stored and printed).
DEVICE_CODE_URN: Final = "urn:ietf:params:oauth:grant-type:device_code"
MAX_REDIRECT_URI_CHARS: Final = MAX_CHARS
#: Grants that come with a refresh token; ``refresh_token`` alone could never be used.
_REFRESHABLE = ("authorization_code", "device_code")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_CLIENT_ID = re.compile(r"rg_ci_[0-9a-z]{16}")


def new_client_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def is_client_id(text: str) -> bool:
    """Whether ``text`` has the form of a client id (safe to log: ids are public)."""
    return _CLIENT_ID.fullmatch(text) is not None


def new_client_secret() -> str:
    return SECRET_PREFIX + random_base62(43)


def secret_matches(record: OAuthClientRecord, secret: str) -> bool:
    """Whether ``secret`` is the client's (constant time); never for a public client."""
    if record.secret_hash is None or not secret.isascii():
        return False
    return digest_matches(secret, record.secret_hash)


def is_active(record: OAuthClientRecord, now: datetime) -> bool:
    return record.revoked_at is None or record.revoked_at > now


def new_client(
    name: str,
    scopes: Iterable[str],
    grants: Iterable[str],
    redirect_uris: Iterable[str] = (),
    public: bool = False,
    token_format: str = "jwt",  # noqa: S107 (a format's name, not a secret)
    *,
    now: datetime,
) -> tuple[OAuthClientRecord, str | None]:
    """A record to store and the client secret to show once (None for a public client);
    ``ValueError("--option: problem")`` for anything the authorization server could not honour.
    Repeated grants, scopes and redirect URIs count once, in the order first given."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ValueError(f"--name: {exc}") from None
    grant_list = _grants(grants, public)
    scope_list = _scopes(scopes)
    uris = tuple(dict.fromkeys(redirect_uris))
    if "authorization_code" in grant_list and not uris:
        raise ValueError(
            "--redirect-uri: the authorization_code grant needs at least one "
            "(RFC 6749 §3.1.2.2); repeat --redirect-uri for more"
        )
    if uris and "authorization_code" not in grant_list:
        raise ValueError(
            "--redirect-uri: only the authorization_code grant redirects; "
            "add --grant authorization_code or drop --redirect-uri"
        )
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem:
            raise ValueError(f"--redirect-uri: {problem}")
    if token_format not in TOKEN_FORMATS:
        raise ValueError(f"--token-format: must be {' or '.join(TOKEN_FORMATS)}")
    secret = None if public else new_client_secret()
    record = OAuthClientRecord(
        client_id=new_client_id(),
        name=name,
        secret_hash=None if secret is None else token_digest(secret),
        grants=grant_list,
        redirect_uris=uris,
        scopes=scope_list,
        token_format=token_format,
        created_at=now,
    )
    return record, secret


def _grants(values: Iterable[str], public: bool) -> tuple[str, ...]:
    names = []
    for value in values:
        name = "device_code" if value == DEVICE_CODE_URN else value
        if name not in GRANTS:
            raise ValueError(f"--grant: '{value}' is not one of {', '.join(GRANTS)}")
        names.append(name)
    grants = tuple(dict.fromkeys(names))
    if not grants:
        raise ValueError(f"--grant: give at least one ({', '.join(GRANTS)}); repeat for more")
    if public and "client_credentials" in grants:
        raise ValueError(
            "--grant: client_credentials is for confidential clients only (RFC 6749 §4.4): "
            "drop --public or this grant"
        )
    if "refresh_token" in grants and not any(g in grants for g in _REFRESHABLE):
        raise ValueError(
            "--grant: refresh_token needs authorization_code or device_code, the grants that "
            "issue refresh tokens (client_credentials issues none, RFC 6749 §4.4.3)"
        )
    return grants


def _scopes(values: Iterable[str]) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(values))
    if not scopes:
        raise ValueError("--scope: give at least one scope the client may be granted")
    for scope in scopes:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(f"--scope: {problem}: repeat --scope for each one")
    return scopes


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a registered redirect URI, or None (``wire/callback_uri.py``)."""
    return callback_uri_problem(uri, what="a redirect URI", rfc="RFC 6749 §3.1.2")
