"""The console's HTTP plumbing: what it reads of a request, the form body, the same-origin
check, refusals and redirects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import parse_qsl

from restguard.asgi import Receive, Scope
from restguard.edge.view import Network, client_address, from_trusted_proxy
from restguard.errors import InvalidRequest

MAX_FORM_BYTES: Final = 16 * 1024
#: What a handler answers: status, body, extra headers.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


class Refused(Exception):
    """A request the console answers with an error page."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


class Request:
    """What the console reads of an ASGI request."""

    def __init__(self, scope: Scope, trusted_proxies: Sequence[Network] = ()) -> None:
        self.method: str = scope["method"]
        self.head = self.method == "HEAD"
        self.path: str = scope["path"]
        client = scope.get("client")
        peer: str = client[0] if client else ""
        self.headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        # Behind a trusted TLS-terminating proxy (``[server] trusted_proxies``), the browser's
        # scheme, host and address are the proxy's claims: the cookie is then Secure, and the
        # Origin check compares with the origin the browser saw.
        trusted = from_trusted_proxy(peer, trusted_proxies)
        self.secure = scope.get("scheme") == "https" or (
            trusted and self.header(b"x-forwarded-proto") == "https"
        )
        self.host = (trusted and self.header(b"x-forwarded-host")) or self.header(b"host")
        try:
            self.client = client_address(peer, self.headers, trusted_proxies)
        except InvalidRequest:
            self.client = peer
        self.cookies: dict[str, str] = {}
        for name, value in self.headers:
            if name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, sep, val = part.strip().partition("=")
                    if sep and key not in self.cookies:
                        self.cookies[key] = val
        try:
            raw = scope.get("query_string", b"").decode("ascii")
            self.query = dict(parse_qsl(raw, keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            self.query = {}

    def header(self, name: bytes) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return values[0].decode("latin-1") if len(values) == 1 else None


def same_origin(request: Request) -> None:
    """A POST from another site is refused whatever it carries (with SameSite=Strict cookies
    and CSRF tokens, a second line of defence): ``Sec-Fetch-Site`` must be same-origin (or
    none: typed by the user), ``Origin`` must be this origin."""
    for name in (b"sec-fetch-site", b"origin", b"host"):  # one each, or it is ambiguous
        if len([v for k, v in request.headers if k == name]) > 1:
            raise Refused(403, "Refused", "This form may only be sent from this console.")
    site = request.header(b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Refused(403, "Refused", "This form may only be sent from this console.")
    origin = request.header(b"origin")
    host = request.host
    if origin is not None:
        expected = f"{'https' if request.secure else 'http'}://{host}"
        if host is None or origin != expected:
            raise Refused(403, "Refused", "This form may only be sent from this console.")


async def read_form(request: Request, receive: Receive) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``MAX_FORM_BYTES``, each field
    once (400 otherwise)."""
    content_type = (request.header(b"content-type") or "").split(";")[0].strip().lower()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise Refused(413, "Too large", "The form is too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if raw and content_type != "application/x-www-form-urlencoded":
        raise Refused(415, "Not a form", "Send the page's own form.")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "Bad form", "The form does not parse.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise Refused(400, "Bad form", f"The field {key!r} is given twice.")
        form[key] = value
    return form


def redirect(location: str, cookies: list[tuple[bytes, bytes]]) -> Answer:
    """303 See Other (RFC 9110 §15.4.4: the browser follows it with a GET)."""
    return 303, b"", [(b"location", location.encode("ascii")), *cookies]
