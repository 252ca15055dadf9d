"""Routes in file order, the first whose path and method match decides; no match is 404.

Path patterns: literal segments, ``{name}`` for exactly one non-empty segment, and a trailing
``/**`` for the prefix itself and any depth below it. Patterns are matched against the output of
``authz.paths.normalise_path`` only, so the policy and the upstream see the same path, with
every percent-encoding decoded (``authz.paths.decode_path``), as upstream routers decode it:
``/notes%3Apurge`` is judged by the ``/notes:purge`` route, as the upstream will route it.

Upstream routers are often more lenient than the policy: Express, ASP.NET and many others ignore
letter case (Python's re.IGNORECASE even that of Unicode letters folding to ASCII ones), and
Express and Flask-style "strict_slashes=False" routes ignore one trailing slash, and Rails
("(.:format)" on every route), Spring MVC's suffix patterns and DRF's format suffixes serve
``/notes/export.json`` from the ``/notes/export`` handler. A path that matches an earlier route
only under those equivalences would be judged by one route and handled by another's handler
upstream, so it is refused (400) rather than guessed at.
A HEAD request is decided exactly as GET: frameworks run the GET handler for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from restguard.authz.paths import decode_path, normalise_path
from restguard.authz.pattern_hints import pattern_hint
from restguard.errors import InvalidRequest, NotFound

AUTH_METHODS = ("api_key", "signature", "jwt", "oauth2", "oauth1")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_PARAM = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
PATTERN_FIX = "write literal segments, {name} for one segment and a trailing /** for a subtree"


class PatternError(ValueError):
    """A route pattern is not valid: ``problem`` says why, ``fix`` what to write instead."""

    def __init__(self, problem: str, fix: str = PATTERN_FIX) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled ``[[routes]]`` entry."""

    index: int
    path: str
    methods: frozenset[str]
    scopes: tuple[str, ...] = ()
    public: bool = False
    auth: tuple[str, ...] = AUTH_METHODS
    rate_limit: tuple[int, float] | None = None  # (requests, per seconds)
    forward_credentials: bool = False
    # RFC 9421 on this route: components a signature must cover besides the default ones, and
    # the one label considered (None: the first valid signature of a known app)
    signature_components: tuple[str, ...] = ()
    signature_label: str | None = None
    # OAuth 1.0a on this route: requests signed by a consumer without token credentials
    # (RFC 5849 §3.1 leaves oauth_token out; "two-legged") are admitted, as the consumer
    oauth1_two_legged: bool = False
    _segments: tuple[str | None, ...] = ()
    _subtree: bool = False
    _folded: tuple[str | None, ...] = ()  # literal segments, lower-cased
    _folds: bool = False  # folding changes the pattern (upper case, trailing slash)
    # The route's rate-limit counters' name: its pattern and methods, not its place in the
    # file, so instances whose files differ (a rolling deploy, a reload on one) share them.
    rate_key: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """How the audit log and metrics name this route."""
        return self.path

    def __post_init__(self) -> None:
        folded = tuple(None if s is None else fold(s) for s in self._segments)
        if folded and folded[-1] == "":  # a pattern's trailing slash folds away too
            folded = folded[:-1]
        object.__setattr__(self, "_folded", folded)
        object.__setattr__(self, "_folds", folded != self._segments)
        object.__setattr__(self, "rate_key", f"{self.path} {','.join(sorted(self.methods))}")

    def matches_path(self, path: str) -> bool:
        return self._matches(path, self._segments)

    def matches_folded(self, folded_path: str) -> bool:
        """Whether a path already lower-cased (and stripped of one trailing slash) would match
        if letter case did not count (see ``fold_path``)."""
        return self._matches(folded_path, self._folded)

    def matches_suffixed(self, folded_path: str) -> bool:
        """Whether a folded path is this route's literal last segment plus a format extension
        (``export.json``, ``export.tar.gz`` for ``/notes/export``), as format-suffix routers
        read it. A subtree route's prefix counts too: Rails and DRF route ``/api/admin.json``
        to the handler of ``/api/admin``, which ``/api/admin/**`` covers."""
        last = self._folded[-1] if self._folded else None
        if not last:  # a parameter (it takes the extension in any case) or the root
            return False
        head, _, tail = folded_path.rpartition("/")
        if not tail.startswith(last + "."):
            return False
        return self._matches(f"{head}/{last}", self._folded)

    def covers(self, segments: tuple[str | None, ...], subtree: bool) -> bool:
        """Whether this route's path matches every path of a compiled pattern (``segments``,
        ``subtree``; see ``compile_pattern``): an app's endpoint it decides in full."""
        mine = self._segments
        if len(mine) > len(segments) or (
            (subtree or len(mine) < len(segments)) and not self._subtree
        ):
            return False
        return all(
            (want is None and got != "") or (want is not None and want == got)
            for want, got in zip(mine, segments, strict=False)
        )

    def _matches(self, path: str, segments: tuple[str | None, ...]) -> bool:
        parts = path.split("/")[1:]
        if len(parts) < len(segments) or (not self._subtree and len(parts) != len(segments)):
            return False
        for want, got in zip(segments, parts, strict=False):
            if (want is None and got == "") or (want is not None and want != got):
                return False
        return True


def compile_pattern(pattern: str) -> tuple[tuple[str | None, ...], bool]:
    """Compile a route path into (segments, subtree); literal segments must be in the normal
    form the path normaliser produces, or no request could ever match them. Other routers'
    syntax (``:id``, ``*``, ``<id>``, ``{id:int}``, regular expressions) is refused with the
    spelling to write instead (``authz/pattern_hints.py``): taken literally it would never match."""
    hint = pattern_hint(pattern)
    if hint is not None:
        raise PatternError(*hint)
    subtree = pattern == "/**" or pattern.endswith("/**")
    body = pattern[: -len("/**")] if subtree else pattern
    if body == "":
        return (), subtree
    segments: list[str | None] = [
        None if _PARAM.match(segment) else segment for segment in body.split("/")[1:]
    ]  # (literals are decoded below, once their normal form is checked)
    literal = "/" + "/".join("p" if s is None else s for s in segments)
    try:
        normal = normalise_path(literal.encode("ascii"))
    except InvalidRequest as exc:
        raise PatternError(f"'{pattern}' is not a valid path ({exc.debug or exc})") from None
    if normal != literal or (subtree and literal.endswith("/")):
        raise PatternError(
            f"'{pattern}' is not in normal form (dot segments, '//', encodings)",
            "write the path as requests arrive after normalisation: no '.' or '..' segments, "
            "no '//', percent-encode only what must be",
        )
    # Routes match decoded paths (``decode_path``): literals are kept decoded too.
    return tuple(None if s is None else unquote(s) for s in segments), subtree


def _fold_char(c: str) -> str:
    # Unicode letters that case-insensitive matching equates with ASCII ones count as those:
    # Python's re.IGNORECASE (Django's (?i) routes) matches U+017F (long s) with "s", U+212A
    # (Kelvin sign) with "k" and U+0131 (dotless i) with "i".
    for candidate in (c.casefold(), c.lower(), c.upper().lower()):
        if candidate.isascii():
            return candidate.lower()
    return c.casefold()


def fold(text: str) -> str:
    """``text`` without letter case, as case-insensitive routers compare it."""
    return text.lower() if text.isascii() else "".join(map(_fold_char, text))


def fold_path(path: str) -> str:
    """A decoded ``path`` as a lenient router sees it: case folded, one trailing slash gone."""
    folded = fold(path)
    return folded[:-1] if len(folded) > 1 and folded.endswith("/") else folded


class AmbiguousPath(InvalidRequest):
    """400: the path matches an earlier route only when case, a trailing slash or a format
    extension is ignored."""


class Policy:
    """An ordered list of routes. ``match`` is the whole authorization-by-path decision."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = tuple(routes)
        # (method, path) -> its route, for paths matched lately: matching costs ~0.6 us per
        # route tried, a lookup ~0.1. Only matches are kept (refusals are decided afresh),
        # of paths of at most 256 characters (at most ~2 MB); emptied when full.
        self._matched: dict[tuple[str, str], Route] = {}

    def covers(self, pattern: str, method: str) -> bool:
        """Whether some route for ``method`` matches every path of ``pattern`` (route syntax:
        an embedding app's endpoint, ``/notes/{id}`` or ``/static/**``); False for a pattern
        that is not one."""
        try:
            segments, subtree = compile_pattern(pattern)
        except PatternError:
            return False
        method = "GET" if method == "HEAD" else method
        return any(method in r.methods and r.covers(segments, subtree) for r in self.routes)

    def match(self, method: str, path: str) -> Route:
        """The first route whose path and method match; ``NotFound`` (default deny) otherwise.
        Raises ``AmbiguousPath`` when an earlier route (any method) matches the path only
        under a lenient router's equivalences (case, one trailing slash, a format extension)."""
        if method == "HEAD":
            method = "GET"
        matched = self._matched.get((method, path))
        if matched is not None:
            return matched
        route = self._match(method, path)
        if len(path) <= 256:
            if len(self._matched) >= 4096:
                self._matched.clear()
            self._matched[method, path] = route
        return route

    def _match(self, method: str, path: str) -> Route:
        path = decode_path(path)
        folded: str | None = None
        suffixed = False  # the last segment has a "." (a format extension can be read in it)
        for route in self.routes:
            if route._matches(path, route._segments):
                if method in route.methods:
                    return route
                continue
            if folded is None:
                folded = fold_path(path)
                suffixed = "." in folded[folded.rfind("/") + 1 :]
            if ((folded != path or route._folds) and route.matches_folded(folded)) or (
                suffixed and route.matches_suffixed(folded)
            ):
                raise AmbiguousPath(
                    "The path differs from a configured route only in letter case, a "
                    "trailing slash or a format extension; send the route's exact path.",
                    debug=f"{path} folds onto route {route.path}",
                )
        raise NotFound(debug=f"no route for {method} {path}")
