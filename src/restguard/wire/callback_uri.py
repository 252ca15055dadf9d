"""Where an authorization server may send a browser back: the registered redirect URIs of
OAuth 2.0 clients (RFC 6749 §3.1.2) and the callbacks of OAuth 1.0a consumers (RFC 5849 §2.1).

Exact strings (RFC 9700 §4.1.1: matched character for character), absolute, without a fragment,
printable ASCII with everything else percent-encoded (so the stored string is the one sent), and
over https, or http to a loopback IP literal, or a private-use scheme for native apps (RFC 8252
§7.3, §8.3, §7.1). No wildcards, no user information.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

MAX_CHARS: Final = 2000
#: RFC 3986 characters: unreserved, reserved and '%'.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: RFC 3986 §3.1 scheme; a private-use one is a reverse domain name (RFC 8252 §7.1).
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(?:\.[a-z0-9+-]+)+")
#: An http(s) authority a browser and a CSP ``form-action`` source both read the same way:
#: LDH host labels (RFC 1123 §2.1; no "_", no trailing dot) or an IP literal, and a port of
#: 1-5 digits when there is a ":" (the pages name the origin in ``form-action``, CSP Level 3
#: §2.3.1, which has no room for anything else).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_AUTHORITY = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?")


def callback_uri_problem(
    uri: str, *, what: str = "a redirect URI", rfc: str = "RFC 6749 §3.1.2"
) -> str | None:
    """Why ``uri`` cannot be registered as ``what`` (the messages name it and ``rfc``), or
    None."""
    shown = repr(uri) if len(uri) <= 80 else repr(uri[:77] + "...")
    if not uri:
        return "must not be empty"
    if len(uri) > MAX_CHARS:
        return f"{shown} is longer than {MAX_CHARS} characters"
    if not _URI_CHARS.fullmatch(uri) or _BAD_PERCENT.search(uri):
        return (
            f"{shown} must be a URI of printable ASCII without spaces, any other character "
            "percent-encoded as %XX"
        )
    if "#" in uri:
        return f"{shown} must not have a fragment ({rfc})"
    if "*" in uri:
        return f"{shown}: wildcards are not allowed; {what} must match exactly"
    try:
        parts = urlsplit(uri)
        host, _ = parts.hostname, parts.port  # port: ValueError when it is not a number
    except ValueError:
        return f"{shown} is not a valid URI"
    scheme = parts.scheme
    if not scheme:
        return f"{shown} must be an absolute URI ({rfc}), e.g. https://app.example/cb"
    if scheme in ("https", "http"):
        if not host:
            return f"{shown} has no host"
        if "@" in parts.netloc:
            return f"{shown} must not carry user information"
        authority = _AUTHORITY.fullmatch(parts.netloc)
        if authority is None or not 0 < int(authority.group(1) or 443) < 65536:
            return (
                f"{shown}: the host must be a DNS name of letters, digits and hyphens (no "
                "trailing dot) or an IP literal, and the port, when given, 1 to 65535"
            )
        if scheme == "http" and not is_loopback_ip(host):
            return (
                f"{shown} must be https:// (http:// only to a loopback IP literal such as "
                "http://127.0.0.1:PORT/ or http://[::1]:PORT/, RFC 8252 §7.3 and §8.3)"
            )
        return None
    if _PRIVATE_SCHEME.fullmatch(scheme):
        if not uri[len(scheme) + 1 :].startswith("/"):
            return (
                f"{shown}: a private-use scheme needs a path, e.g. com.example.app:/cb "
                "(a web address starts with https://)"
            )
        return None
    return (
        f"{shown}: the scheme must be https, http (loopback only) or a private-use scheme "
        "named after a domain you control, e.g. com.example.app:/cb (RFC 8252 §7.1)"
    )


def is_loopback_ip(host: str) -> bool:
    """A loopback IP literal; 'localhost' is not one (RFC 8252 §8.3: it may not resolve to
    the loopback interface, and a listener on it may listen on others too)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
