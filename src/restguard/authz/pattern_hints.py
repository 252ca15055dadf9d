"""Other routers' path syntax in a route path, recognised and refused with what to write instead.

restguard's patterns are literal segments, ``{name}`` for one segment and a trailing ``/**``.
Express and Kong write ``:id``, Flask and Django ``<int:id>``, Starlette and Spring
``{id:int}``, many users ``*`` or a regular expression; taken literally none of them would ever
match a request, and the route would fail silently (issue 7: "No silent mistakes").
"""

from __future__ import annotations

import re
from urllib.parse import quote

_FIX = "write literal segments, {name} for one segment and a trailing /** for a subtree"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPRESS = re.compile(rf"^:({_IDENT})(\(.*\))?[?*+]?$")  # :id, :id?, :id(\d+)
_ANGLE = re.compile(rf"^<(?:{_IDENT}:)?({_IDENT})>$")  # <id>, <int:id>, <path:rest>
_CONVERTER = re.compile(rf"^\{{({_IDENT})\s*:(.*)\}}$")  # {id:int}, {id:\d+}, {rest:path}
_PARAM = re.compile(rf"^\{{{_IDENT}\}}$")
_REGEX = re.compile(r"[()\[\]\\^|]|\.[*+?]")
# What may stand in a route path unencoded: RFC 3986 pchar less ";" (which the normaliser
# refuses), plus "/" and the braces of {name}.
_SAFE = "/:@!$&'()*+,=-._~{}%"


def pattern_hint(pattern: str) -> tuple[str, str] | None:
    """(problem, fix) when ``pattern`` uses syntax restguard does not read; None otherwise (the
    pattern may still be invalid for other reasons: ``compile_pattern`` checks the rest)."""
    if not pattern.startswith("/"):
        if pattern.startswith(("~", "^")):
            return "regular expressions are not supported in route paths", _FIX
        return "a route path starts with '/'", f"write '/{pattern}'"
    if "#" in pattern:
        return f"'{pattern}' has a fragment ('#'); requests never carry one", "remove it"
    if re.search(r"[}*+]\?|\?$", pattern):
        return (
            f"'{pattern}' has an optional part ('?'); there are none",
            "write two routes, one with the segment and one without",
        )
    if "?" in pattern:
        return (
            f"'{pattern}' has a query string; routes match the path only",
            "remove the '?' and what follows",
        )
    if any(c.isspace() for c in pattern) or not pattern.isascii():
        suggested = quote(pattern, safe=_SAFE)
        return (
            f"'{pattern}' has white space or non-ASCII characters",
            f"percent-encode them (UTF-8), as requests carry them: '{suggested}'",
        )
    segments = pattern.split("/")[1:]
    subtree = segments[-1] == "**"
    if subtree:
        segments = segments[:-1]
    found = [_parameter(s) for s in segments]
    if any(found):
        parts = []
        for i, (segment, param) in enumerate(zip(segments, found, strict=True)):
            if param is None:
                parts.append(segment)
            elif param[1] and i == len(segments) - 1 and not subtree:
                parts.append("**")  # a "path" converter: everything below
            else:
                parts.append("{" + param[0] + "}")
        suggested = "/" + "/".join(parts) + ("/**" if subtree else "")
        first = next(s for s, p in zip(segments, found, strict=True) if p)
        return (
            f"'{first}' is another router's parameter syntax; restguard would take it "
            "literally and no request would match",
            f"write '{suggested}' ({{name}} is one segment, a trailing /** a subtree)",
        )
    for segment in segments:
        problem = _segment_problem(segment, pattern)
        if problem is not None:
            return problem
    return None


def _parameter(segment: str) -> tuple[str, bool] | None:
    """(name, spans the rest of the path) when ``segment`` is another router's parameter."""
    for form in (_EXPRESS, _ANGLE, _CONVERTER):
        m = form.match(segment)
        if m:
            rest = segment.startswith("<path:") or (
                form is _CONVERTER and m.group(2).strip() == "path"
            )
            return m.group(1), rest
    return None


def _segment_problem(segment: str, pattern: str) -> tuple[str, str] | None:
    where = f"'{segment}' in '{pattern}'"
    if _PARAM.match(segment):
        return None
    if segment == "**":
        return f"{where} stands only at the end (a trailing /** is a subtree)", _FIX
    if segment == "*":
        return f"{where}: there is no single-segment wildcard", _FIX
    if _REGEX.search(segment):
        return (
            f"{where} looks like a regular expression or an optional group; there are none",
            f"{_FIX} (a literal parenthesis is written percent-encoded: %28, %29)",
        )
    if "*" in segment:
        return f"{where}: there are no wildcards inside a segment", _FIX
    if segment.startswith("{") and segment.endswith("}"):
        return f"{where}: a parameter name is letters, digits and '_', not first a digit", _FIX
    if "{" in segment or "}" in segment:
        return f"{where}: a {{name}} parameter takes a whole segment", _FIX
    return None
