"""wire/toml_lines.py: the line of every key and table, as TOML lays a document out."""

from __future__ import annotations

import tomllib

import pytest

from restguard.wire.toml_lines import KeyLines, key_lines

DOCUMENT = '''\
# [[routes]] in a comment is not a table
title = """
[[routes]]
path = "a multi-line string is not a table"
"""
[server]
listen = "127.0.0.1:8080" # [[routes]]
"quoted.key" = 1
dotted.key = 2

[[routes]]
path = "/a"
methods = [
  "GET",  # ] a bracket in a comment
  "[[routes]]",
]
scopes = ["it's", 'x"y', "a \\" ] quote"]

  [[ routes ]]   # indented, spaced
path = '/b'
[routes.extra]
x = 1

[["routes"]]
doc = \'\'\'
[[routes]]
\'\'\'
methods = ["GET"]
'''


def lines(text: str) -> KeyLines:
    return key_lines(text, tomllib.loads(text))


def line_of(text: str, needle: str, nth: int = 1) -> int:
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return found[nth - 1]


def test_the_document_parses_as_three_routes() -> None:
    assert len(tomllib.loads(DOCUMENT)["routes"]) == 3


@pytest.mark.parametrize(
    ("path", "needle", "nth"),
    [
        (("title",), "title =", 1),
        (("server",), "[server]", 1),
        (("server", "listen"), "listen =", 1),
        (("server", "quoted.key"), '"quoted.key"', 1),
        (("server", "dotted", "key"), "dotted.key", 1),
        (("routes", 1), "[[routes]]", 4),
        (("routes", 1, "path"), 'path = "/a"', 1),
        (("routes", 1, "methods"), "methods = [", 1),
        (("routes", 1, "scopes"), "scopes =", 1),
        (("routes", 2), "[[ routes ]]", 1),
        (("routes", 2, "path"), "path = '/b'", 1),
        (("routes", 2, "extra"), "[routes.extra]", 1),
        (("routes", 2, "extra", "x"), "x = 1", 1),
        (("routes", 3), '[["routes"]]', 1),
        (("routes", 3, "doc"), "doc =", 1),
        (("routes", 3, "methods"), 'methods = ["GET"]', 1),
    ],
)
def test_lines(path: tuple[str | int, ...], needle: str, nth: int) -> None:
    assert lines(DOCUMENT).line(path) == line_of(DOCUMENT, needle, nth)


def test_a_key_not_written_is_reported_at_its_table() -> None:
    kl = lines(DOCUMENT)
    assert kl.line(("routes", 2, "methods")) == line_of(DOCUMENT, "[[ routes ]]")
    assert kl.line(("server", "max_body_bytes")) == line_of(DOCUMENT, "[server]")
    assert kl.line(("upstream", "url")) is None
    assert kl.line(("routes", 4)) is None


def test_crlf_line_ends() -> None:
    text = DOCUMENT.replace("\n", "\r\n")
    assert lines(text).line(("routes", 2, "path")) == line_of(DOCUMENT, "path = '/b'")


def test_inline_routes_claim_no_entry_lines() -> None:
    text = 'x = 1\nroutes = [\n  {path = "/a"},\n  {path = "/b"},\n]\n'
    kl = lines(text)
    assert kl.line(("routes", 2, "path")) == 2  # the array's own line, nothing finer


def test_a_count_that_disagrees_with_tomllib_claims_nothing() -> None:
    # The scanner's count is checked against the parsed document: if they ever disagree,
    # no route line is given rather than a wrong one.
    text = "[[routes]]\npath = 1\n"
    kl = key_lines(text, {"routes": [{"path": 1}, {"path": 2}]})
    assert kl.line(("routes", 1, "path")) is None
    assert kl.line(("routes", 2)) is None
