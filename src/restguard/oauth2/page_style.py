"""The one stylesheet of the resource owner's pages (``pages.py``), inlined in a ``<style>``.

Its SHA-256 goes into each page's ``Content-Security-Policy`` (``style-src 'sha256-...'``,
CSP Level 3 §8.4), so the text here is exactly what the ``<style>`` element holds: any edit
changes the hash, which ``pages.py`` recomputes at import. No ``url()``, no ``@import``, no
web font: the policy allows no other origin.
"""

from __future__ import annotations

from typing import Final

CSS: Final = """
:root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--fg:#111827;--muted:#4b5563;
--line:#6b7280;--accent:#1d4ed8;--accent-fg:#fff;--focus:#b45309;--bad:#b91c1c;
--bad-bg:#fef2f2;--read:#065f46;--read-bg:#d1fae5;--write:#92400e;--write-bg:#fef3c7}
@media (prefers-color-scheme:dark){:root{--bg:#0b0f19;--card:#161b26;--fg:#f3f4f6;
--muted:#c4c9d4;--line:#6b7280;--accent:#93c5fd;--accent-fg:#0b0f19;--focus:#fbbf24;
--bad:#fca5a5;--bad-bg:#3b0d0d;--read:#a7f3d0;--read-bg:#053b2c;--write:#fde68a;
--write-bg:#3d2a05}}
*{box-sizing:border-box}
html{font-size:100%}
body{margin:0;min-height:100vh;display:flex;align-items:flex-start;justify-content:center;
padding:3rem 1rem;background:var(--bg);color:var(--fg);line-height:1.5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{width:100%;max-width:28rem;background:var(--card);border:1px solid var(--line);
border-radius:.75rem;padding:2rem 1.75rem;overflow-wrap:anywhere}
.brand{margin:0 0 .5rem;font-size:.875rem;font-weight:600;letter-spacing:.04em;
color:var(--muted)}
h1{margin:0 0 1.25rem;font-size:1.5rem;line-height:1.25}
p{margin:0 0 1rem}
.who,.hint{color:var(--muted);font-size:.9375rem}
[role=alert]{margin:0 0 1rem;padding:.75rem 1rem;border-left:4px solid var(--bad);
background:var(--bad-bg);color:var(--bad);font-weight:600}
label{display:block;font-weight:600;margin:0 0 .25rem}
input[type=text],input[type=password]{display:block;width:100%;min-height:2.75rem;
margin:0 0 1rem;padding:.5rem .75rem;font:inherit;color:var(--fg);background:var(--card);
border:1px solid var(--line);border-radius:.375rem}
input[aria-invalid=true]{border-color:var(--bad);border-width:2px}
fieldset{margin:0 0 1rem;padding:0;border:0}
legend{padding:0;margin:0 0 .75rem;font-weight:700;font-size:1.0625rem}
.scope{display:flex;gap:.75rem;align-items:flex-start;padding:.625rem 0;
border-top:1px solid var(--line)}
.scope input{width:1.25rem;height:1.25rem;margin:.2rem 0 0;flex:none;accent-color:var(--accent)}
.scope label{font-weight:400;margin:0}
.scope code{display:block}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.8125rem;
color:var(--muted)}
.tag{display:inline-block;margin-left:.375rem;padding:0 .4rem;border-radius:.25rem;
font-size:.75rem;font-weight:700;text-transform:uppercase;letter-spacing:.03em}
.tag-read{color:var(--read);background:var(--read-bg)}
.tag-write{color:var(--write);background:var(--write-bg)}
.actions{display:flex;gap:.75rem;flex-wrap:wrap}
button{min-height:2.75rem;min-width:6rem;padding:.5rem 1.25rem;font:inherit;font-weight:600;
border-radius:.375rem;border:2px solid var(--accent);background:var(--accent);
color:var(--accent-fg);cursor:pointer}
button.secondary{background:transparent;color:var(--accent)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
@media (forced-colors:active){button,main{border:1px solid CanvasText}}
"""
