"""The console's HTML: pure functions from data to a page.

No JavaScript, no template engine, no asset from another origin. Every interpolated value goes
through ``html.escape(quote=True)``; a strict ``Content-Security-Policy`` (one hashed inline
``<style>``, forms to this origin only, never framed) backs that up. Names an operator or a
client chose are wrapped in ``<bdi>`` so bidirectional-override characters cannot reorder the
text around them. The chart is inline SVG drawn with presentation attributes (no style).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from restguard.admin.console.timeline import Minute

CSS: Final = """
:root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--fg:#111827;--muted:#4b5563;
--line:#9ca3af;--accent:#1d4ed8;--accent-fg:#fff;--focus:#b45309;--bad:#b91c1c;
--bad-bg:#fef2f2;--ok:#065f46;--ok-bg:#d1fae5;--warn:#92400e;--warn-bg:#fef3c7}
@media (prefers-color-scheme:dark){:root{--bg:#0b0f19;--card:#161b26;--fg:#f3f4f6;
--muted:#c4c9d4;--line:#6b7280;--accent:#93c5fd;--accent-fg:#0b0f19;--focus:#fbbf24;
--bad:#fca5a5;--bad-bg:#3b0d0d;--ok:#a7f3d0;--ok-bg:#053b2c;--warn:#fde68a;--warn-bg:#3d2a05}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);line-height:1.5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap;padding:.75rem 1.5rem;
background:var(--card);border-bottom:1px solid var(--line)}
header .brand{font-weight:700;letter-spacing:.04em;margin-right:auto}
header a{color:var(--accent);font-weight:600;text-decoration:none}
header a[aria-current=page]{text-decoration:underline}
main{max-width:72rem;margin:1.5rem auto;padding:0 1.5rem;overflow-wrap:anywhere}
section{background:var(--card);border:1px solid var(--line);border-radius:.5rem;
padding:1.25rem 1.5rem;margin:0 0 1.5rem}
h1{margin:0 0 1rem;font-size:1.5rem}
h2{margin:0 0 .75rem;font-size:1.125rem}
p{margin:0 0 .75rem}
.muted{color:var(--muted)}
[role=alert]{margin:0 0 1rem;padding:.75rem 1rem;border-left:4px solid var(--bad);
background:var(--bad-bg);color:var(--bad);font-weight:600}
[role=status]{margin:0 0 1rem;padding:.75rem 1rem;border-left:4px solid var(--ok);
background:var(--ok-bg);color:var(--ok);font-weight:600}
.secret{border-left:4px solid var(--warn);background:var(--warn-bg);padding:.75rem 1rem;
margin:0 0 1rem}
.secret code{display:block;font-size:1rem;color:var(--fg);user-select:all;margin:.5rem 0}
table{width:100%;border-collapse:collapse;font-size:.9375rem}
caption{text-align:left;font-weight:700;margin:0 0 .5rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
td form{display:inline}
label{display:block;font-weight:600;margin:0 0 .25rem}
input[type=text],input[type=password],select{display:block;width:100%;max-width:32rem;
min-height:2.5rem;margin:0 0 .75rem;padding:.4rem .6rem;font:inherit;color:var(--fg);
background:var(--card);border:1px solid var(--line);border-radius:.375rem}
button{min-height:2.25rem;padding:.3rem 1rem;font:inherit;font-weight:600;
border-radius:.375rem;border:2px solid var(--accent);background:var(--accent);
color:var(--accent-fg);cursor:pointer}
button.secondary{background:transparent;color:var(--accent)}
button.danger{background:transparent;color:var(--bad);border-color:var(--bad)}
.filters{display:flex;gap:1rem;flex-wrap:wrap;align-items:flex-end}
.filters input,.filters select{margin:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.8125rem}
.chart{width:100%;height:auto;max-height:16rem}
.totals{display:flex;gap:2rem;flex-wrap:wrap;margin:0 0 1rem}
.totals strong{display:block;font-size:1.75rem}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.login{max-width:28rem;margin:4rem auto}
nav{display:flex;gap:1rem;flex-wrap:wrap}
textarea{display:block;width:100%;max-width:40rem;min-height:6rem;margin:0 0 .75rem;
padding:.4rem .6rem;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:.8125rem;color:var(--fg);background:var(--card);border:1px solid var(--line);
border-radius:.375rem}
fieldset{border:1px solid var(--line);border-radius:.375rem;margin:0 0 .75rem;
padding:.5rem .75rem;max-width:40rem}
legend{font-weight:600;padding:0 .25rem}
label.check{display:inline-flex;gap:.4rem;align-items:center;font-weight:400;
margin:0 1rem .25rem 0}
td details{display:inline-block}
td textarea{min-height:4rem}
.pager{margin:.75rem 0 0}
.pager a{color:var(--accent);font-weight:600}
"""

#: CSP Level 3 §8.4: the hash source of the one inline ``<style>`` element, over its exact text.
STYLE_HASH: Final = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode()
CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: under no-referrer Chromium sends ``Origin: null`` with a
    # form POST, and the console checks Origin (app.py: _same_origin).
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy", CSP.encode("ascii")),
]
NAV: Final = (
    ("/", "Dashboard"),
    ("/apikeys", "API keys"),
    ("/apps", "Apps"),
    ("/oauth2/clients", "OAuth 2.0 clients"),
    ("/oauth1", "OAuth 1.0a"),
    ("/users", "Users"),
    ("/issuers", "Issuers"),
    ("/signing-keys", "Signing keys"),
    ("/audit", "Audit log"),
)


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def name(value: str) -> str:
    """A name someone chose: escaped, isolated from the text around it."""
    return f"<bdi>{e(value)}</bdi>"


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def alerts(message: str | None = None, error: str | None = None) -> str:
    out = ""
    if error:
        out += f'<p role="alert">{e(error)}</p>'
    if message:
        out += f'<p role="status">{e(message)}</p>'
    return out


def layout(
    title: str, body: str, *, current: str | None = None, logout: str | None = None
) -> bytes:
    """A whole page; with ``logout`` (its CSRF token) the navigation and a sign-out button."""
    top = ""
    if logout is not None:
        links = "".join(
            f'<a href="{href}"{" aria-current=page" if href == current else ""}>{e(text)}</a>'
            for href, text in NAV
        )
        top = (
            f'<header><span class="brand">restguard admin</span><nav>{links}</nav>'
            f'<form method="post" action="/logout">{hidden(logout)}'
            '<button class="secondary" type="submit">Sign out</button></form></header>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} - restguard admin</title><style>{CSS}</style></head>"
        f"<body>{top}<main>{body}</main></body></html>"
    ).encode()


def login(csrf: str, error: str | None = None) -> bytes:
    invalid = ' aria-invalid="true" aria-describedby="login-error"' if error else ""
    alert = f'<p role="alert" id="login-error">{e(error)}</p>' if error else ""
    body = (
        '<section class="login"><h1>Sign in to restguard admin</h1>'
        f"{alert}"
        '<form method="post" action="/login">'
        f"{hidden(csrf)}"
        '<label for="key">Admin API key</label>'
        f'<input id="key" name="key" type="password" autocomplete="off" required{invalid}>'
        '<p class="muted">A key holding the scope <code>restguard:admin</code>: '
        "<code>restguard init</code> printed one.</p>"
        '<button type="submit">Sign in</button></form></section>'
    )
    return layout("Sign in", body)


def chart(minutes: Sequence[Minute]) -> str:
    """Allowed (bottom) and denied (top) decisions per minute as stacked bars."""
    width, height, pad = 720, 200, 24
    peak = max((m.allowed + m.denied for m in minutes), default=0) or 1
    bar = (width - 2 * pad) / max(len(minutes), 1)
    rects = []
    for i, m in enumerate(minutes):
        x = pad + i * bar
        ha = (height - 2 * pad) * m.allowed / peak
        hd = (height - 2 * pad) * m.denied / peak
        base = height - pad
        when = datetime.fromtimestamp(m.start, UTC).strftime("%H:%M")
        tip = f"{when} UTC: {m.allowed} allowed, {m.denied} denied"
        rects.append(
            f"<g><title>{e(tip)}</title>"
            f'<rect x="{x:.1f}" y="{base - ha:.1f}" width="{bar * 0.8:.1f}" height="{ha:.1f}" '
            'fill="#16a34a"/>'
            f'<rect x="{x:.1f}" y="{base - ha - hd:.1f}" width="{bar * 0.8:.1f}" '
            f'height="{hd:.1f}" fill="#dc2626"/></g>'
        )
    first = datetime.fromtimestamp(minutes[0].start, UTC).strftime("%H:%M") if minutes else ""
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="chart-title"><title id="chart-title">Decisions per minute, last hour: '
        f"allowed in green, denied in red</title>"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#6b7280"/>'
        f'<text x="{pad}" y="{height - 6}" font-size="11" fill="#6b7280">{e(first)} UTC</text>'
        f'<text x="{width - pad}" y="{height - 6}" font-size="11" fill="#6b7280" '
        'text-anchor="end">now</text>'
        f'<text x="{pad}" y="14" font-size="11" fill="#6b7280">{peak} per minute</text>'
        f"{''.join(rects)}</svg>"
    )


def dashboard(
    minutes: Sequence[Minute], totals: dict[tuple[str, str, int], int], logout: str
) -> bytes:
    allowed = sum(c for (_, o, _), c in totals.items() if o == "allow")
    denied = sum(c for (_, o, _), c in totals.items() if o != "allow")
    hour_allowed = sum(m.allowed for m in minutes)
    hour_denied = sum(m.denied for m in minutes)
    rows = "".join(
        f"<tr><td>{e(method)}</td><td>{e(outcome)}</td><td>{status}</td><td>{count}</td></tr>"
        for (method, outcome, status), count in sorted(totals.items())
    )
    body = (
        "<h1>Dashboard</h1>"
        '<section><div class="totals">'
        f'<div>Allowed since start<strong id="allowed-total">{allowed}</strong></div>'
        f'<div>Denied since start<strong id="denied-total">{denied}</strong></div>'
        f"<div>Last hour<strong>{hour_allowed} / {hour_denied}</strong></div></div>"
        f"{chart(minutes)}</section>"
        '<section><table id="decisions"><caption>Decisions by method and status '
        "(since start, every worker)</caption>"
        '<thead><tr><th scope="col">auth method</th><th scope="col">outcome</th>'
        '<th scope="col">status</th><th scope="col">count</th></tr></thead>'
        f"<tbody>{rows or '<tr><td colspan=4>none yet</td></tr>'}</tbody></table></section>"
    )
    return layout("Dashboard", body, current="/", logout=logout)


def new_secret(
    title: str, data: dict[str, Any], field: str, kept: str = "only its hash is kept"
) -> str:
    """A just-made secret, shown this once (``kept``: how the server keeps it)."""
    return (
        f'<div class="secret" role="status"><strong>{e(title)}</strong>'
        f'<code id="new-secret">{e(data[field])}</code>'
        f"Copy it now: it is shown once, {e(kept)}.</div>"
    )


# --- shared pieces of the records' pages ----------------------------------------------------


def tagged(etag: str | None) -> str:
    """The record's version as the form's If-Match (``etag``), when the service takes one."""
    return f'<input type="hidden" name="etag" value="{e(etag)}">' if etag else ""


def button_form(
    action: str,
    csrf: str,
    label: str,
    aria: str,
    *,
    etag: str | None = None,
    danger: bool = True,
    extra: str = "",
) -> str:
    """A one-button POST form (in a table row): its own CSRF token, the record's etag."""
    cls = "danger" if danger else "secondary"
    return (
        f'<form method="post" action="{e(action)}">{hidden(csrf)}{tagged(etag)}{extra}'
        f'<button class="{cls}" type="submit" aria-label="{e(aria)}">{e(label)}</button>'
        "</form> "
    )


def text_field(
    ident: str, label: str, *, required: bool = False, maxlength: int = 200, kind: str = "text"
) -> str:
    need = " required" if required else ""
    auto = ' autocomplete="new-password"' if kind == "password" else ""
    return (
        f'<label for="{ident}">{e(label)}</label>'
        f'<input id="{ident}" name="{ident}" type="{kind}" maxlength="{maxlength}"{need}{auto}>'
    )


def text_area(ident: str, label: str) -> str:
    return (
        f'<label for="{ident}">{e(label)}</label>'
        f'<textarea id="{ident}" name="{ident}" rows="4" spellcheck="false"></textarea>'
    )


def choice(ident: str, label: str, options: Sequence[str], selected: str | None = None) -> str:
    """A ``<select>``; an empty option reads "any"."""
    items = "".join(
        f'<option value="{e(o)}"{" selected" if o == selected else ""}>{e(o or "any")}</option>'
        for o in options
    )
    return (
        f'<label for="{ident}">{e(label)}</label>'
        f'<select id="{ident}" name="{ident}">{items}</select>'
    )


def checkboxes(legend: str, boxes: Sequence[tuple[str, str, bool]]) -> str:
    """A fieldset of checkboxes, each its own field (the form refuses a field given twice):
    ``(field, label, checked)``."""
    items = "".join(
        f'<label class="check"><input type="checkbox" id="{e(f)}" name="{e(f)}" value="on"'
        f"{' checked' if on else ''}>{e(text)}</label>"
        for f, text, on in boxes
    )
    return f"<fieldset><legend>{e(legend)}</legend>{items}</fieldset>"


def create_section(heading: str, action: str, csrf: str, fields: str, button: str) -> str:
    return (
        f'<section><h2>{e(heading)}</h2><form method="post" action="{e(action)}">'
        f'{hidden(csrf)}{fields}<button type="submit">{e(button)}</button></form></section>'
    )


def state_filter(action: str, states: Sequence[str], state: str | None) -> str:
    return (
        f'<form class="filters" method="get" action="{e(action)}"><div>'
        f"{choice('state', 'State', ('', *states), state or '')}</div>"
        '<button class="secondary" type="submit">Filter</button></form>'
    )


def table(ident: str, caption: str, heads: Sequence[str], rows: Sequence[str]) -> str:
    th = "".join(f'<th scope="col">{e(h)}</th>' for h in heads)
    empty = f"<tr><td colspan={len(heads)}>none</td></tr>"
    return (
        f'<table id="{e(ident)}"><caption>{e(caption)}</caption><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(rows) or empty}</tbody></table>"
    )


def cells(*values: str) -> str:
    """Table cells of already-escaped HTML."""
    return "".join(f"<td>{v}</td>" for v in values)


def words(values: Sequence[str]) -> str:
    return e(" ".join(values))


def record_page(
    title: str,
    current: str,
    logout: str,
    sections: str,
    *,
    message: str | None = None,
    error: str | None = None,
    secret: str = "",
) -> bytes:
    """A records' page: its heading, the outcome of the last change, then its sections."""
    body = f"<h1>{e(title)}</h1>{alerts(message, error)}{secret}{sections}"
    return layout(title, body, current=current, logout=logout)


def problem(title: str, text: str, logout: str | None = None) -> bytes:
    return layout(title, f"<section><h1>{e(title)}</h1><p>{e(text)}</p></section>", logout=logout)


def code(value: str) -> str:
    return f"<code>{e(value)}</code>"
