"""Routes that can never decide anything: duplicates, and routes shadowed by earlier ones.

CONTRACT "Configuration": a duplicate route, or one that an earlier route shadows completely, is
a configuration error. Routes are tried in file order and the first whose path and method match
decides, so a route is dead when, for each of its methods, some earlier route with that method
matches every path it matches (``/notes/{id}`` after ``/notes/**``; ``GET /a/b`` after
``GET, POST /a/{x}``). HEAD is decided as GET, so it is not counted on its own.

Path containment is decided exactly on the compiled patterns: a ``{name}`` segment matches any
non-empty segment, a literal only itself, and a trailing ``/**`` the prefix and anything below.
Shadowing by several earlier routes that only together cover a path set is not looked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from restguard.authz.policy import Route


@dataclass(frozen=True, slots=True)
class Shadowed:
    """``route`` never decides a request: ``by`` (earlier routes, in file order) decide all of
    its methods first. ``duplicate`` when one earlier route has the same path and methods."""

    route: Route
    by: tuple[Route, ...]
    duplicate: bool


def covers(earlier: Route, later: Route) -> bool:
    """Whether ``earlier``'s path matches every path ``later``'s path matches."""
    return earlier.covers(later._segments, later._subtree)


def same_path(a: Route, b: Route) -> bool:
    """The two patterns match exactly the same paths (``{id}`` and ``{x}`` are alike)."""
    return covers(a, b) and covers(b, a)


def find_shadowed(routes: Sequence[Route]) -> Iterator[Shadowed]:
    """Every route (in file order) that an earlier one makes unreachable."""
    for i, route in enumerate(routes):
        earlier = routes[:i]
        by: list[Route] = []
        for method in sorted(route.methods - {"HEAD"}):
            first = next((e for e in earlier if method in e.methods and covers(e, route)), None)
            if first is None:
                break
            if first not in by:
                by.append(first)
        else:
            if by:
                by.sort(key=lambda r: r.index)
                only = by[0]
                duplicate = (
                    len(by) == 1
                    and only.methods - {"HEAD"} == route.methods - {"HEAD"}
                    and same_path(only, route)
                )
                yield Shadowed(route, tuple(by), duplicate)
