"""The resource owner's HTML pages: sign in, consent, device user code, messages, errors.

Pure functions that return an ``EndpointResponse`` the authorization server hands back as it
is. No JavaScript, no template engine, no asset from another origin: every interpolated value
goes through ``html.escape(quote=True)``, and a strict ``Content-Security-Policy`` (one
hashed inline ``<style>``, nothing else) backs that up. User-controlled names are wrapped in
``<bdi>`` so bidirectional-override characters in a client name cannot reorder the text around
it (the consent prompt must say truthfully who asks for what, RFC 6749 §10.2).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from restguard.oauth2.http import EndpointResponse, Headers
from restguard.oauth2.page_style import CSS

#: CSP Level 3 §8.4: the hash source of the one inline ``<style>`` element, over its exact text.
STYLE_HASH: Final = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode()

_SCHEME: Final = r"[A-Za-z][A-Za-z0-9+.-]*"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ORIGIN: Final = re.compile(
    rf"({_SCHEME})://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?", re.ASCII
)
_BARE_SCHEME: Final = re.compile(rf"({_SCHEME}):", re.ASCII)
#: Schemes that would run script or allow every host if named in ``form-action``.
_UNSAFE_SCHEMES: Final = frozenset({"javascript", "vbscript", "data", "blob", "filesystem"})
_ANY_HOST_SCHEMES: Final = frozenset({"http", "https", "ws", "wss"})

_READ: Final = ("read-only", "tag-read")
_CHANGE: Final = ("can change", "tag-write")
_VERBS: Final = {
    "read": ("read your {}", _READ),
    "write": ("read and change your {}", _CHANGE),
    "delete": ("delete your {}", _CHANGE),
    "admin": ("manage your {} fully", _CHANGE),
}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _form_source(source: str) -> str:
    """One CSP source expression for ``form-action`` (CSP Level 3 §2.3.1), or ``ValueError``.

    Only ``scheme://host[:port]`` or ``scheme:`` from a strict ASCII alphabet passes, so no
    ``;``, ``,``, quote or whitespace can end the directive and add another (CSP injection).
    """
    if m := _ORIGIN.fullmatch(source):
        scheme, port = m.group(1).lower(), m.group(2)
        if scheme not in _UNSAFE_SCHEMES and (port is None or 0 < int(port) < 65536):
            return source
    elif m := _BARE_SCHEME.fullmatch(source):
        scheme = m.group(1).lower()
        if scheme not in _UNSAFE_SCHEMES | _ANY_HOST_SCHEMES:
            return source
    raise ValueError(f"not an origin (scheme://host[:port]) or a private scheme: {source!r}")


def page_headers(form_sources: Sequence[str] = ()) -> Headers:
    """The headers of every page: HTML, never cached, never framed, a strict CSP.

    ``form_sources`` are extra ``form-action`` sources: Chromium applies ``form-action`` to
    the redirect that follows a form POST, so the client's redirect URI origin (or its
    private-use scheme, RFC 8252 §7.1) must be named. Raises ``ValueError`` on anything else.
    """
    if isinstance(form_sources, str):
        raise TypeError("form_sources is a sequence of sources, not one string")
    sources = "".join(" " + _form_source(s) for s in dict.fromkeys(form_sources))
    csp = (
        f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src 'self'; "
        f"form-action 'self'{sources}; frame-ancestors 'none'; base-uri 'none'"
    )
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        # RFC 9111 §5.2.2.5; Pragma for HTTP/1.0 caches (RFC 6749 §5.1 does the same).
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        # Clickjacking (RFC 6749 §10.13): never inside a frame, old browsers and new.
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"content-security-policy", csp.encode("ascii")),
    ]


def describe_scope(scope: str) -> str:
    """Plain words for a scope, so a user tells read-only from full access at a glance."""
    thing, _, verb = scope.rpartition(":")
    if thing and verb in _VERBS:
        return _VERBS[verb][0].format(thing.replace("_", " ").replace("-", " "))
    return f"use \u201c{scope}\u201d"


def _access_tag(scope: str) -> str:
    thing, _, verb = scope.rpartition(":")
    if not thing or verb not in _VERBS:
        return ""
    text, css_class = _VERBS[verb][1]
    return f' <span class="tag {css_class}">{text}</span>'


def _hidden(hidden: Mapping[str, str], reserved: Iterable[str]) -> str:
    """``<input type=hidden>`` per item; a name the form uses itself is refused."""
    if clash := sorted(set(hidden) & set(reserved)):
        raise ValueError(f"hidden fields may not reuse the form's own names: {clash}")
    return "".join(
        f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">\n'
        for name, value in hidden.items()
    )


def _alert(error: str | None) -> tuple[str, str]:
    """The error paragraph and the attributes that tie the invalid input to it (WCAG 3.3.1)."""
    if not error:
        return "", ""
    return (
        f'<p role="alert" id="form-error">{_e(error)}</p>\n',
        ' aria-invalid="true" aria-describedby="form-error"',
    )


def _page(
    title: str, content: str, *, status: int, form_sources: Sequence[str] = ()
) -> EndpointResponse:
    headers = page_headers(form_sources)
    document = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{_e(title)} \u00b7 restguard</title>\n"
        f"<style>{CSS}</style>\n"
        "</head>\n<body>\n<main>\n"
        '<p class="brand">restguard</p>\n'
        f"{content}"
        "</main>\n</body>\n</html>\n"
    )
    # A lone surrogate cannot be UTF-8: it shows as "?" rather than failing the request.
    return EndpointResponse(status, headers, document.encode("utf-8", "replace"))


def login_page(
    *,
    client_name: str,
    hidden: Mapping[str, str],
    form_sources: Sequence[str] = (),
    username: str = "",
    error: str | None = None,
    status: int = 200,
    heading: str | None = None,
) -> EndpointResponse:
    """The sign-in form, ``POST /login``: username and password (RFC 6749 §3.1 leaves the
    authentication of the resource owner to the server; §10.12 wants it CSRF-bound, which is
    what the caller's ``hidden`` fields carry). ``heading`` replaces "Sign in to continue to
    <client>" where no client is known yet (the device flow)."""
    alert, invalid = _alert(error)
    title = (
        f'Sign in to continue to <bdi class="client">{_e(client_name)}</bdi>'
        if heading is None
        else _e(heading)
    )
    content = (
        f"<h1>{title}</h1>\n"
        f"{alert}"
        '<form method="post" action="/login">\n'
        f"{_hidden(hidden, ('username', 'password'))}"
        '<label for="username">Username</label>\n'
        f'<input type="text" id="username" name="username" value="{_e(username)}" '
        'autocomplete="username" autocapitalize="none" spellcheck="false" autofocus required'
        f"{invalid}>\n"
        '<label for="password">Password</label>\n'
        '<input type="password" id="password" name="password" '
        'autocomplete="current-password" required>\n'
        '<button type="submit">Sign in</button>\n'
        "</form>\n"
    )
    return _page("Sign in", content, status=status, form_sources=form_sources)


def consent_page(
    *,
    client_name: str,
    username: str,
    scopes: Sequence[str],
    hidden: Mapping[str, str],
    form_sources: Sequence[str] = (),
    action: str = "/consent",
    notice: str | None = None,
) -> EndpointResponse:
    """The consent form, ``POST /consent`` (RFC 6749 §4.1.1: the server obtains "an
    authorization decision" from the resource owner). Every requested scope starts checked;
    the user may untick some (§3.3: the issued scope may be narrower). Allow comes first.

    The device flow posts it to ``action="/device"`` with a ``notice`` naming the code being
    approved (RFC 8628 §5.4: the user confirms what they authorize); OAuth 1.0a's
    authorization (RFC 5849 §2.2) to ``action="/oauth1/authorize"``."""
    if action not in ("/consent", "/device", "/oauth1/authorize"):
        raise ValueError(f"the consent form posts to one of restguard's pages, not {action!r}")
    client = f'<bdi class="client">{_e(client_name)}</bdi>'
    warn = f'<p class="hint">{_e(notice)}</p>\n' if notice else ""
    rows = "".join(
        f'<div class="scope"><input type="checkbox" id="scope-{i}" name="scope" '
        f'value="{_e(scope)}" checked>'
        f'<label for="scope-{i}">{_e(describe_scope(scope))}{_access_tag(scope)}'
        f" <code>{_e(scope)}</code></label></div>\n"
        for i, scope in enumerate(dict.fromkeys(scopes))
    )
    hint = (
        '<p class="hint" id="consent-hint">Untick anything you do not want to allow.</p>\n'
        if rows
        else '<p class="hint" id="consent-hint">No access to your data is asked for.</p>\n'
    )
    content = (
        f"<h1>Allow {client} to use your account?</h1>\n"
        f'<p class="who">Signed in as <bdi class="user">{_e(username)}</bdi></p>\n'
        f"{warn}"
        f'<form method="post" action="{action}">\n'
        f"{_hidden(hidden, ('scope', 'decision'))}"
        f"{hint}"
        '<fieldset aria-describedby="consent-hint">\n'
        f"<legend>{client} would like to:</legend>\n"
        f"{rows}"
        "</fieldset>\n"
        '<div class="actions">\n'
        '<button type="submit" name="decision" value="allow">Allow</button>\n'
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button>\n'
        "</div>\n</form>\n"
    )
    return _page("Allow access", content, status=200, form_sources=form_sources)


def user_code_page(
    *,
    hidden: Mapping[str, str],
    user_code: str = "",
    error: str | None = None,
    status: int = 200,
) -> EndpointResponse:
    """The device flow's user-code entry, ``POST /device`` (RFC 8628 §3.3). The warning
    against codes sent by someone else answers §5.4 (remote phishing)."""
    alert, invalid = _alert(error)
    content = (
        "<h1>Connect a device</h1>\n"
        '<p class="hint">Only enter a code shown on a device you are setting up yourself, '
        "never one someone sent you.</p>\n"
        f"{alert}"
        '<form method="post" action="/device">\n'
        f"{_hidden(hidden, ('user_code',))}"
        '<label for="user_code">Code shown on your device</label>\n'
        f'<input type="text" id="user_code" name="user_code" value="{_e(user_code)}" '
        'autocomplete="one-time-code" autocapitalize="characters" autofocus '
        f'spellcheck="false" required{invalid}>\n'
        '<button type="submit">Continue</button>\n'
        "</form>\n"
    )
    return _page("Connect a device", content, status=status)


def verifier_page(*, client_name: str, verifier: str) -> EndpointResponse:
    """RFC 5849 §2.2 for a client without a callback (``oob``): the verification code the user
    types into the application, shown once."""
    content = (
        f'<h1>Allowed: <bdi class="client">{_e(client_name)}</bdi></h1>\n'
        "<p>Enter this code in the application to finish connecting it:</p>\n"
        f'<p class="code"><code id="verifier">{_e(verifier)}</code></p>\n'
        '<p class="hint">The code works once, within a few minutes.</p>\n'
    )
    return _page("Verification code", content, status=200)


def granted_tokens_page(
    *,
    username: str,
    rows: Sequence[tuple[str, str, Sequence[str], str]],
    csrf: str,
    notice: str | None = None,
) -> EndpointResponse:
    """The applications a user connected through OAuth 1.0a, each with a Revoke button:
    ``rows`` of (token identifier, application name, scopes, granted on). The token identifier
    is not a secret (RFC 5849 §3.1 sends it in the clear); revoking needs the session and
    ``csrf``."""
    said = f'<p role="status">{_e(notice)}</p>\n' if notice else ""
    items = "".join(
        '<div class="scope"><form method="post" action="/oauth1/tokens">\n'
        f'<input type="hidden" name="token" value="{_e(token)}">\n'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">\n'
        f'<p><bdi class="client">{_e(name)}</bdi> <code>since {_e(since)}</code></p>\n'
        + "".join(f"<p>{_e(describe_scope(s))}{_access_tag(s)}</p>\n" for s in scopes)
        + f'<button type="submit" class="secondary" aria-label="Revoke {_e(name)}">Revoke</button>'
        "\n</form></div>\n"
        for token, name, scopes, since in rows
    )
    listing = items or "<p>No application holds access to your account.</p>\n"
    content = (
        "<h1>Connected applications</h1>\n"
        f'<p class="who">Signed in as <bdi class="user">{_e(username)}</bdi></p>\n'
        f"{said}{listing}"
    )
    return _page("Connected applications", content, status=200)


def message_page(*, title: str, message: str, status: int = 200) -> EndpointResponse:
    """A page that only informs, e.g. "You may close this window" (RFC 8628 §3.3)."""
    return _page(title, f"<h1>{_e(title)}</h1>\n<p>{_e(message)}</p>\n", status=status)


def error_page(*, status: int, title: str, message: str) -> EndpointResponse:
    """An error shown to the user, never redirected: RFC 6749 §4.1.2.1 says the server
    "SHOULD inform the resource owner of the error and MUST NOT automatically redirect the
    user-agent to the invalid redirection URI" when the redirect URI or client is in doubt."""
    if not 400 <= status <= 599:
        raise ValueError(f"an error page needs a 4xx or 5xx status, not {status}")
    return _page(title, f"<h1>{_e(title)}</h1>\n<p>{_e(message)}</p>\n", status=status)
