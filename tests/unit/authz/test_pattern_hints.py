"""authz/pattern_hints.py: other routers' syntax is refused with what to write instead."""

from __future__ import annotations

import pytest

from restguard.authz.pattern_hints import pattern_hint
from restguard.authz.policy import PatternError, compile_pattern

# (pattern, a word of the problem, a word of the fix)
HINTS = [
    # Express / Kong parameters
    ("/orders/:id", "parameter syntax", "write '/orders/{id}'"),
    ("/orders/:id/items/:item", "':id'", "write '/orders/{id}/items/{item}'"),
    ("/orders/:id/**", "':id'", "write '/orders/{id}/**'"),
    ("/orders/:id(\\d+)", "':id(\\d+)'", "write '/orders/{id}'"),
    # Flask / Django / Starlette / Spring
    ("/notes/<id>", "parameter syntax", "write '/notes/{id}'"),
    ("/notes/<int:id>", "parameter syntax", "write '/notes/{id}'"),
    ("/files/<path:rest>", "parameter syntax", "write '/files/**'"),
    ("/notes/{id:int}", "parameter syntax", "write '/notes/{id}'"),
    ("/notes/{id:\\d+}", "parameter syntax", "write '/notes/{id}'"),
    ("/files/{rest:path}", "parameter syntax", "write '/files/**'"),
    ("/files/{rest:path}/raw", "parameter syntax", "write '/files/{rest}/raw'"),
    # wildcards
    ("/notes/*", "single-segment wildcard", "{name}"),
    ("/notes/*.json", "no wildcards inside a segment", "/**"),
    ("/**/notes", "only at the end", "/**"),
    ("/a/**/**", "only at the end", "/**"),
    # regular expressions and optional groups
    ("/notes/(\\d+)", "regular expression", "%28"),
    ("/notes/[0-9]+", "regular expression", "{name}"),
    ("/notes/.*", "regular expression", "{name}"),
    ("/notes/.+", "regular expression", "{name}"),
    ("/notes(/:id)", "regular expression", "{name}"),
    ("/a|b", "regular expression", "{name}"),
    ("~/notes/\\d+$", "regular expressions", "{name}"),
    ("^/notes", "regular expressions", "{name}"),
    # query, fragment, optional parts
    ("/notes?limit=10", "query string", "remove"),
    ("/notes/{id}?", "optional part", "two routes"),
    ("/notes#top", "fragment", "remove"),
    # parameters that are not whole segments or not names
    ("/notes/{id}.json", "whole segment", "{name}"),
    ("/notes/x{id}", "whole segment", "{name}"),
    ("/notes/{1st}", "parameter name", "{name}"),
    ("/notes/{}", "parameter name", "{name}"),
    # characters requests carry percent-encoded
    ("/a b", "white space", "'/a%20b'"),
    ("/café", "non-ASCII", "'/caf%C3%A9'"),
    # no leading slash
    ("notes/{id}", "starts with '/'", "write '/notes/{id}'"),
]


@pytest.mark.parametrize(("pattern", "problem", "fix"), HINTS, ids=[h[0] for h in HINTS])
def test_hint(pattern: str, problem: str, fix: str) -> None:
    hint = pattern_hint(pattern)
    assert hint is not None
    assert problem in hint[0]
    assert fix in hint[1]
    with pytest.raises(PatternError) as caught:  # compile_pattern refuses it with the same words
        compile_pattern(pattern)
    assert (caught.value.problem, caught.value.fix) == hint


def test_a_suggested_spelling_compiles() -> None:
    for pattern, _, fix in HINTS:
        if fix.startswith("write '/"):
            compile_pattern(fix.split("'")[1])


@pytest.mark.parametrize(
    "pattern",
    [
        "/",
        "/**",
        "/notes/{id}",
        "/{tenant}/**",
        "/v1/notes:purge",  # a colon inside a segment is a literal (Google-style custom methods)
        "/users/@me",
        "/odata/$metadata",
        "/lang/c++",
        "/a-b_c.d~e",
        "/caf%C3%A9",
        "/Products%281%29",  # a literal parenthesis, percent-encoded
    ],
)
def test_valid_patterns_get_no_hint(pattern: str) -> None:
    assert pattern_hint(pattern) is None
    compile_pattern(pattern)
