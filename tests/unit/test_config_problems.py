"""config.load / config.validate: catch-all routes load; every silent mistake of issue 7 is a
ConfigError naming the route by its 1-based position and the file's line; every problem is
listed at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from restguard.config import ConfigError, load, validate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path.resolve() / "restguard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def routes(*entries: str) -> str:
    return "".join(f"[[routes]]\n{e}\n" for e in entries)


def mistake(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    assert str(err).startswith(f"{path}:{err.line}: {err.key}: ")
    assert "\n" not in str(err)
    return err


def line_of(text: str, needle: str, nth: int = 1) -> int:
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line][nth - 1]


# --- 3. catch-all routes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/**", "/{tenant}/**", "/{page}", "/oauth2/**", "/.well-known/**", "/{x}/jwks.json"]
)
def test_catch_all_routes_load(tmp_path: Path, path: str) -> None:
    text = routes(f'path = "{path}"\nmethods = ["GET", "POST"]\nscopes = ["api:use"]')
    [route] = load(write(tmp_path, text)).routes
    assert route.path == path


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/oauth2/token", "/oauth2/token"),
        ("/login", "/login"),
        ("/.well-known/jwks.json", "/.well-known/jwks.json"),
        ("/Consent/**", "/consent"),
    ],
)
def test_a_route_naming_an_own_endpoint_is_refused(
    tmp_path: Path, path: str, endpoint: str
) -> None:
    text = routes('path = "/health"\nmethods = ["GET"]\npublic = true') + routes(
        f'path = "{path}"\nmethods = ["POST"]'
    )
    err = mistake(tmp_path, text)
    assert err.key == "routes[2].path"
    assert err.line == line_of(text, f'path = "{path}"')
    assert f"own endpoint {endpoint}" in err.problem
    assert "/**" in err.fix


# --- 4. no silent mistakes ------------------------------------------------------------------------


def test_express_parameter_says_write_braces(tmp_path: Path) -> None:
    text = routes('path = "/orders/:id"\nmethods = ["GET"]\nscopes = ["orders:read"]')
    err = mistake(tmp_path, text)
    assert (err.key, err.line) == ("routes[1].path", 2)
    assert "':id'" in err.problem
    assert "write '/orders/{id}'" in err.fix


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/orders/*", "wildcard"),
        ("/orders/*.json", "wildcard"),
        ("/orders/(\\\\d+)", "regular expression"),
        ("/orders/.*", "regular expression"),
        ("/orders/{id:int}", "write '/orders/{id}'"),
        ("/orders/<id>", "write '/orders/{id}'"),
    ],
)
def test_wildcard_and_regex_segments_are_refused(tmp_path: Path, path: str, word: str) -> None:
    err = mistake(tmp_path, routes(f'path = "{path}"\nmethods = ["GET"]'))
    assert err.key == "routes[1].path"
    assert word in err.problem + " " + err.fix


def test_a_route_shadowed_by_an_earlier_subtree(tmp_path: Path) -> None:
    text = (
        "# notes\n"
        + routes('path = "/notes/**"\nmethods = ["GET"]\nscopes = ["notes:read"]')
        + "\n# the detail route, too late\n"
        + routes('path = "/notes/{id}"\nmethods = ["GET"]\nscopes = ["notes:admin"]')
    )
    err = mistake(tmp_path, text)
    assert err.key == "routes[2]"
    assert err.line == line_of(text, "[[routes]]", 2)
    assert "never used" in err.problem
    assert f"routes[1] ('/notes/**', line {line_of(text, '[[routes]]', 1)})" in err.problem
    assert "move it above routes[1]" in err.fix


def test_a_route_shadowed_by_one_with_more_methods(tmp_path: Path) -> None:
    text = routes('path = "/a/{x}"\nmethods = ["GET", "POST"]') + routes(
        'path = "/a/b"\nmethods = ["GET"]'
    )
    err = mistake(tmp_path, text)
    assert err.key == "routes[2]"
    assert "never used" in err.problem and "GET" in err.problem


def test_a_duplicate_route(tmp_path: Path) -> None:
    text = routes('path = "/a/{id}"\nmethods = ["GET"]') + routes(
        'path = "/a/{key}"\nmethods = ["GET", "HEAD"]\nscopes = ["x"]'
    )
    err = mistake(tmp_path, text)
    assert err.key == "routes[2]"
    assert err.problem.startswith("duplicates routes[1]")
    assert "remove one" in err.fix


def test_overlapping_routes_that_each_decide_something_load(tmp_path: Path) -> None:
    text = (
        routes('path = "/notes/{id}"\nmethods = ["GET"]\nscopes = ["notes:read"]')
        + routes('path = "/notes/**"\nmethods = ["GET"]\nscopes = ["notes:list"]')
        + routes('path = "/notes/**"\nmethods = ["POST"]\nscopes = ["notes:write"]')
        + routes('path = "/**"\nmethods = ["GET", "POST"]\nscopes = ["api:use"]')
    )
    assert len(load(write(tmp_path, text)).routes) == 4


@pytest.mark.parametrize(
    ("scope", "word", "fix"),
    [
        ("notes:read,notes:write", "comma", '["notes:read", "notes:write"]'),
        ("notes:read notes:write", "white space", '["notes:read", "notes:write"]'),
        ("notes:read\tx", "white space", '["notes:read", "x"]'),
        (" notes:read", "white space", '["notes:read"]'),
    ],
)
def test_a_scope_with_a_comma_or_white_space(
    tmp_path: Path, scope: str, word: str, fix: str
) -> None:
    text = routes(f'path = "/x"\nmethods = ["GET"]\nscopes = ["{scope}"]')
    err = mistake(tmp_path, text)
    assert (err.key, err.line) == ("routes[1].scopes", 4)
    assert word in err.problem and fix in err.fix


@pytest.mark.parametrize(("url", "hint"), [("localhost:9000", "http://localhost:9000")])
def test_an_upstream_without_a_scheme(tmp_path: Path, url: str, hint: str) -> None:
    text = f'[upstream]\nurl = "{url}"\n'
    err = mistake(tmp_path, text)
    assert (err.key, err.line) == ("upstream.url", 2)
    assert "no scheme" in err.problem and hint in err.fix


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("upstream", "connect_timeout"),
        ("upstream", "timeout"),
        ("upstream", "queue_timeout"),
        ("server", "client_header_timeout"),
        ("server", "keepalive_timeout"),
        ("server", "client_body_timeout"),
        ("server", "client_send_timeout"),
        ("server", "shutdown_grace"),
        ("storage", "timeout"),
    ],
)
def test_every_duration_accepts_ms_and_is_bounded(tmp_path: Path, table: str, key: str) -> None:
    settings = load(write(tmp_path, f'[{table}]\n{key} = "250ms"\n'))
    section = {"upstream": settings.upstream, "server": settings.server}.get(table)
    value = settings.store_timeout if table == "storage" else getattr(section, key)
    assert value == 0.25
    err = mistake(tmp_path, f'[{table}]\n{key} = "999999999d"\n')
    assert (err.key, err.line) == (f"{table}.{key}", 2)
    assert "too long; at most 1d" in err.problem


def test_a_database_url_that_does_not_parse(tmp_path: Path) -> None:
    err = mistake(tmp_path, '[storage]\ndatabase = "postgresql://rg@db.example.com"\n')
    assert (err.key, err.line) == ("storage.database", 2)
    assert "database name" in err.problem


def test_a_syntax_error_has_its_line(tmp_path: Path) -> None:
    err = mistake(tmp_path, '[server]\nlisten = "127.0.0.1:8080"\nmax_body_bytes = \n')
    assert (err.key, err.line) == ("(syntax)", 3)


# --- positions and lines --------------------------------------------------------------------------


def test_routes_are_named_by_position_and_line_whatever_comes_between(tmp_path: Path) -> None:
    text = (
        "# [[routes]] in a comment\n"
        'title = """\n[[routes]]\n"""\n'
        + routes('path = "/a"\nmethods = ["GET"]')
        + "\n\n"
        + routes('path = "/b"\nmethods = [\n  "GET",\n  "FETCH",\n]')
    )
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    err = caught.value
    assert (err.key, err.line) == ("title", 2)  # an unknown key: the first problem in the file
    problems = {p.key: p.line for p in err.problems}
    assert problems["routes[2].methods"] == text.splitlines().index("methods = [") + 1


def test_a_key_missing_from_a_route_is_reported_at_its_table(tmp_path: Path) -> None:
    text = routes('path = "/a"\nmethods = ["GET"]') + routes('path = "/b"')
    err = mistake(tmp_path, text)
    assert (err.key, err.line) == ("routes[2].methods", line_of(text, "[[routes]]", 2))


# --- every problem at once ------------------------------------------------------------------------


def test_validate_lists_every_problem_in_file_order(tmp_path: Path) -> None:
    text = (
        '[server]\nlisten = "nowhere"\nmax_body_bytes = 0\ncolour = "blue"\n\n'
        '[upstream]\nurl = "localhost:9000"\nconnect_timeout = "250ms"\n\n'
        + routes('path = "/orders/:id"\nmethods = ["get"]\nscopes = ["a,b"]')
        + routes('path = "/notes/**"\nmethods = ["GET"]')
        + routes('path = "/notes/{id}"\nmethods = ["GET"]')
    )
    result = validate(write(tmp_path, text))
    assert not result.ok
    got = [(p.key, p.line) for p in result.problems]
    assert got == [
        ("server.listen", 2),
        ("server.max_body_bytes", 3),
        ("server.colour", 4),
        ("upstream.url", 7),
        ("routes[1].path", 11),
        ("routes[1].methods", 12),
        ("routes[1].scopes", 13),
        ("routes[3]", 17),
    ]
    # load raises the first and carries them all
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert caught.value.key == "server.listen"
    assert [p.key for p in caught.value.problems] == [k for k, _ in got]


def test_a_good_file_validates_ok(tmp_path: Path) -> None:
    result = validate(write(tmp_path, routes('path = "/**"\nmethods = ["GET"]')))
    assert result.ok and result.problems == ()
    assert result.settings is not None and len(result.settings.routes) == 1


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    result = validate(tmp_path / "none.toml")
    assert [p.key for p in result.problems] == ["(file)"] and result.settings is None


def test_problems_as_json(tmp_path: Path) -> None:
    err = mistake(tmp_path, routes('path = "/orders/:id"\nmethods = ["GET"]'))
    assert err.as_dict() == {
        "file": err.file,
        "key": "routes[1].path",
        "problem": err.problem,
        "fix": err.fix,
        "line": 2,
    }
