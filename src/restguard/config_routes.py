"""``[[routes]]`` -> ``Route``s, every problem recorded (see ``config_base.Reader``).

Besides each key's own checks: a route may not name one of restguard's own endpoints literally
(``authz/endpoints.py``), and a duplicate route, or one an earlier route shadows completely
(``authz/shadowing.py``), is a mistake (CONTRACT "Configuration"). Routes are named by their
1-based position: ``routes[2]`` is the second ``[[routes]]`` table.
"""

from __future__ import annotations

import json
import re
from typing import Any

from restguard.authz.endpoints import named_endpoint
from restguard.authz.policy import AUTH_METHODS, HTTP_METHODS, PatternError, Route
from restguard.authz.policy import compile_pattern as _compile
from restguard.authz.shadowing import find_shadowed
from restguard.config_base import Doc, Reader, parse_rate, scope_problem
from restguard.wire.rfc9421 import component_problem


def read_routes(doc: Doc, tables: list[Any]) -> tuple[Route, ...]:
    """The routes of ``tables`` that have no problem; the problems go to ``doc``, shadowed and
    duplicate routes included."""
    routes = [r for i, t in enumerate(tables) if (r := _route(doc, i, t)) is not None]
    for found in find_shadowed(routes):
        position = found.route.index + 1
        if found.duplicate:
            doc.report(
                ("routes", position),
                f"duplicates {_name(doc, found.by[0])} (same path and methods), so it never "
                "decides a request",
                "remove one of the two",
            )
            continue
        methods = ", ".join(sorted(found.route.methods - {"HEAD"}))
        by = " and ".join(_name(doc, r) for r in found.by)
        verb = "decides" if len(found.by) == 1 else "decide"
        doc.report(
            ("routes", position),
            f"'{found.route.path}' ({methods}) is never used: {by} already {verb} {methods} "
            "for every path it matches",
            f"move it above {_name(doc, found.by[0])} (routes are tried in file order), or "
            "remove it",
        )
    return tuple(routes)


#: RFC 8941 §3.2 key: what a signature label (a Dictionary key) may be.
_LABEL = re.compile(r"[a-z*][a-z0-9_\-.*]{0,63}")


def _name(doc: Doc, route: Route) -> str:
    position = route.index + 1
    line = doc.line(("routes", position))
    return f"routes[{position}] ('{route.path}'{f', line {line}' if line else ''})"


def _route(doc: Doc, index: int, table: Any) -> Route | None:
    r = Reader(doc, ("routes", index + 1), table)
    if not r.ok:
        return None
    before = len(doc.problems)
    path, segments, subtree = _path(r, table)
    methods = _methods(r)
    public = r.get("public", bool, False, "true or false")
    scopes = r.strings("scopes", (), '["notes:read"]')
    for s in scopes:
        problem = scope_problem(s)
        if problem:
            parts = [p for p in re.split(r"[\s,]+", s) if p] or ["notes:read"]
            r.fail("scopes", problem, f"list each scope on its own: {json.dumps(parts)}")
    auth = r.strings("auth", AUTH_METHODS, '["api_key"]')
    for a in auth:
        if a not in AUTH_METHODS:
            r.fail("auth", f"'{a}' is not an auth method", f"use {', '.join(AUTH_METHODS)}")
    if not auth:
        r.fail("auth", "is empty", "list at least one method, or set public = true")
    if public and ("scopes" in table or "auth" in table):
        r.fail(
            "public",
            "a public route takes no scopes or auth methods",
            "remove scopes/auth, or remove public = true",
        )
    rate = None
    if "rate_limit" in table:
        text = r.get("rate_limit", str, "", '"100/minute"')
        try:
            rate = parse_rate(text) if text else None
        except ValueError as exc:
            r.fail("rate_limit", str(exc), 'write e.g. "100/minute"')
    forward = r.get("forward_credentials", bool, False, "true or false")
    components = r.strings("signature_components", (), '["content-type", "@scheme"]')
    for c in components:
        problem = component_problem(c)
        if problem:
            r.fail("signature_components", problem, 'e.g. ["content-type", "@scheme"]')
    label = r.get("signature_label", str, "", '"sig1"') or None
    if label is not None and not _LABEL.fullmatch(label):
        r.fail(
            "signature_label",
            f"'{label}' is not a structured-field key",
            'lower-case letters, digits, "_", "-", ".", "*", starting with a letter: "sig1"',
        )
    two_legged = r.get("oauth1_two_legged", bool, False, "true or false")
    if two_legged and (public or "oauth1" not in auth):
        r.fail(
            "oauth1_two_legged",
            "the route does not accept oauth1"
            if not public
            else "a public route takes no credentials",
            'add "oauth1" to auth, or remove oauth1_two_legged',
        )
    r.finish()
    if len(doc.problems) > before:
        return None
    route = Route(
        index,
        path,
        frozenset(methods),
        scopes,
        public,
        tuple(dict.fromkeys(auth)),
        rate,
        forward,
        tuple(dict.fromkeys(components)),
        label,
        two_legged,
        segments,
        subtree,
    )
    endpoint = named_endpoint(route)
    if endpoint is not None:
        whose = (
            "restguard answers it before the policy"
            if endpoint.served
            else "the contract reserves it for restguard's authorization server"
        )
        r.fail(
            "path",
            f"'{path}' names restguard's own endpoint {endpoint.path} ({endpoint.reference}); "
            + whose,
            "remove the route or choose another path (patterns such as /** or /{name} may "
            "cover it: restguard's endpoints are matched first)",
        )
        return None
    return route


def _path(r: Reader, table: Any) -> tuple[str, tuple[str | None, ...], bool]:
    if "path" not in table:
        r.used.add("path")
        r.fail("path", "is missing", 'add path = "/notes/{id}"')
        return "", (), False
    path: str = r.get("path", str, "", '"/notes/{id}"')
    if "path" in r.failed:
        return path, (), False
    try:
        segments, subtree = _compile(path)
    except PatternError as exc:
        r.fail("path", exc.problem, exc.fix)
        return path, (), False
    return path, segments, subtree


def _methods(r: Reader) -> tuple[str, ...]:
    methods = r.strings("methods", (), '["GET", "POST"]')
    if "methods" in r.failed:
        return methods
    if not methods:
        r.fail("methods", "is missing or empty", 'add methods = ["GET"]')
    for m in methods:
        if m not in HTTP_METHODS:
            r.fail(
                "methods",
                f"'{m}' is not a supported method",
                f"use upper-case names from {', '.join(HTTP_METHODS)}",
            )
    if "HEAD" in methods and "GET" not in methods:
        # A HEAD request is decided exactly as GET (frameworks run the GET handler for it).
        r.fail(
            "methods",
            "HEAD is decided as GET, so a route cannot allow HEAD without GET",
            'add "GET" to the list, or remove "HEAD"',
        )
    return methods
