"""config.py: a full config loads; every mistake names the file, the key and the fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from restguard.config import (
    ConfigError,
    Listen,
    config_path,
    load,
    parse_duration,
    parse_rate,
    valid_scope,
)

FULL = """\
[server]
listen = "0.0.0.0:8443"
public_url = "https://gw.example.com/"
trusted_proxies = ["10.0.0.5", "10.1.0.0/16", "::1"]
max_body_bytes = 2048
max_header_bytes = 4096
failed_attempts = "5/second"
client_header_timeout = "2500ms"
keepalive_timeout = "2m"
client_body_timeout = "20s"
client_body_min_rate = 512
max_connections = 100
body_buffer_bytes = 1024

[admin]
listen = "[::1]:9090"

[storage]
database = "postgresql://rg@db.example.com:5433/restguard"
redis = "redis://127.0.0.1:6379/0"

[keys]
master_key = "/etc/restguard/master.key"

[audit]
path = "logs/audit.log"

[upstream]
url = "https://api.internal:8443"
connect_timeout = "2s"
timeout = "1m"
pool_size = 7
queue_timeout = "250ms"

[[routes]]
path = "/health"
methods = ["GET"]
public = true
rate_limit = "10/second"

[[routes]]
path = "/notes/{id}"
methods = ["GET", "HEAD"]
scopes = ["notes:read", "notes:audit"]
auth = ["api_key", "jwt", "api_key"]
rate_limit = "100/minute"

[[routes]]
path = "/files/**"
methods = ["PUT"]
scopes = ["files:write"]
forward_credentials = true
signature_components = ["content-type", "@scheme", "content-type"]
signature_label = "upload"
"""


def write(directory: Path, text: str, name: str = "restguard.toml") -> Path:
    path = directory.resolve() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_loads(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    s = load(path)
    assert s.file == path
    assert s.base_dir == path.parent
    assert s.server.listen == Listen("0.0.0.0", 8443)
    assert s.server.public_url == "https://gw.example.com"
    assert s.server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.5"),
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("::1"),
    )
    assert (s.server.max_body_bytes, s.server.max_header_bytes) == (2048, 4096)
    assert s.server.failed_attempts == (5, 1.0)
    assert s.admin_listen == Listen("::1", 9090)
    assert s.database_url == "postgresql://rg@db.example.com:5433/restguard"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.master_key_path == Path("/etc/restguard/master.key")
    assert s.audit_path == path.parent / "logs" / "audit.log"
    assert s.upstream.url == "https://api.internal:8443"
    assert (s.upstream.connect_timeout, s.upstream.timeout, s.upstream.pool_size) == (2, 60, 7)
    assert s.upstream.queue_timeout == 0.25
    assert (s.server.client_header_timeout, s.server.keepalive_timeout) == (2.5, 120)
    assert (s.server.client_body_timeout, s.server.client_body_min_rate) == (20, 512)
    assert (s.server.max_connections, s.server.body_buffer_bytes) == (100, 1024)

    health, note, files = s.routes
    assert [r.index for r in s.routes] == [0, 1, 2]
    assert health.public and health.scopes == () and health.rate_limit == (10, 1.0)
    assert note.methods == frozenset({"GET", "HEAD"})
    assert note.scopes == ("notes:read", "notes:audit")
    assert note.auth == ("api_key", "jwt")  # duplicates dropped, order kept
    assert note.rate_limit == (100, 60.0)
    assert not note.forward_credentials
    assert note.matches_path("/notes/7") and not note.matches_path("/notes")
    assert files.forward_credentials and files.matches_path("/files/a/b")
    assert files.signature_components == ("content-type", "@scheme")  # repeats count once
    assert files.signature_label == "upload" and note.signature_label is None
    assert files.auth == ("api_key", "signature", "jwt", "oauth2", "oauth1")  # default: all


def test_empty_config_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    s = load(path)
    assert s.server.listen == Listen("127.0.0.1", 8080)
    assert s.server.public_url == "http://127.0.0.1:8080"
    assert s.admin_listen == Listen("127.0.0.1", 8081)
    assert s.database_url == f"sqlite:///{path.parent / 'restguard.db'}"
    assert s.redis_url == ""
    assert s.upstream.url == "http://127.0.0.1:9000"
    assert (s.upstream.connect_timeout, s.upstream.timeout) == (5.0, 30.0)
    assert s.server.max_body_bytes == 10 * 1024 * 1024
    assert s.server.failed_attempts == (30, 60.0)
    assert s.server.client_header_timeout == 10.0
    assert s.server.keepalive_timeout == 75.0
    assert s.server.client_body_timeout == 15.0
    assert s.server.client_body_min_rate == 1024
    assert s.server.max_connections == 4096
    assert s.server.body_buffer_bytes == 65536
    assert s.upstream.queue_timeout == 5.0
    assert s.routes == ()
    assert s.audit_path == path.parent / "audit.log"
    assert s.master_key_path == path.parent / "master.key"


def test_public_url_defaults_to_listen(tmp_path: Path) -> None:
    s = load(write(tmp_path, '[server]\nlisten = "127.0.0.1:9999"\n'))
    assert s.server.public_url == "http://127.0.0.1:9999"


def test_audit_path_can_be_turned_off(tmp_path: Path) -> None:
    assert load(write(tmp_path, '[audit]\npath = ""\n')).audit_path is None


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        tmp_path / "conf",
        '[storage]\ndatabase = "sqlite:///data/rg.db"\n[keys]\nmaster_key = "secret/master.key"\n',
    )
    s = load(Path("../conf/restguard.toml"))
    conf = (tmp_path / "conf").resolve()
    assert s.file == path
    assert s.database_url == f"sqlite:///{conf / 'data' / 'rg.db'}"
    assert s.master_key_path == conf / "secret" / "master.key"
    assert s.audit_path == conf / "audit.log"


def test_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    db = tmp_path.resolve() / "x" / "abs.db"
    s = load(write(tmp_path, f'[storage]\ndatabase = "sqlite:///{db}"\n'))
    assert s.database_url == f"sqlite:///{db}"


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTGUARD_CONFIG", raising=False)
    assert config_path(None) == Path("restguard.toml")
    monkeypatch.setenv("RESTGUARD_CONFIG", "/etc/rg.toml")
    assert config_path(None) == Path("/etc/rg.toml")
    assert config_path("mine.toml") == Path("mine.toml")


# --- mistakes -------------------------------------------------------------------------------------

ROUTE = '[[routes]]\npath = "/notes/{id}"\nmethods = ["GET"]\nscopes = ["notes:read"]\n'

# (config text, the key the message must name, a word the problem or fix must contain)
MISTAKES = [
    # unknown keys
    ("[serverr]\n", "serverr", "known keys"),
    ('[server]\nlisen = "127.0.0.1:8080"\n', "server.lisen", "known keys"),
    ("[admin]\nport = 8081\n", "admin.port", "known keys"),
    ('[storage]\ndb = "x"\n', "storage.db", "known keys"),
    ("[upstream]\nretries = 3\n", "upstream.retries", "known keys"),
    ('[audit]\nfile = "a.log"\n', "audit.file", "known keys"),
    ('[keys]\nmaster = "m.key"\n', "keys.master", "known keys"),
    (
        ROUTE + '[[routes]]\npath = "/x"\nmethods = ["GET"]\nscope = ["a"]\n',
        "routes[2].scope",
        "known keys",
    ),
    # wrong types
    ("server = 5\n", "server", "[server]"),
    ("[server]\nlisten = 8080\n", "server.listen", "wrong type"),
    ('[server]\nmax_body_bytes = "10"\n', "server.max_body_bytes", "wrong type"),
    ("[server]\nmax_body_bytes = true\n", "server.max_body_bytes", "wrong type"),
    ("[server]\nmax_header_bytes = 1.5\n", "server.max_header_bytes", "wrong type"),
    ('[server]\ntrusted_proxies = "10.0.0.1"\n', "server.trusted_proxies", "wrong type"),
    ("[server]\ntrusted_proxies = [1]\n", "server.trusted_proxies", "list of strings"),
    ("[upstream]\ntimeout = 30\n", "upstream.timeout", "wrong type"),
    ('[upstream]\npool_size = "100"\n', "upstream.pool_size", "wrong type"),
    ('routes = "x"\n', "routes", "wrong type"),
    ("routes = [1]\n", "routes[1]", "table"),
    ('[[routes]]\npath = "/x"\nmethods = "GET"\n', "routes[1].methods", "wrong type"),
    ('[[routes]]\npath = "/x"\nmethods = [1]\n', "routes[1].methods", "list of strings"),
    ('[[routes]]\npath = 5\nmethods = ["GET"]\n', "routes[1].path", "wrong type"),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\npublic = "yes"\n',
        "routes[1].public",
        "wrong type",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nforward_credentials = 1\n',
        "routes[1].forward_credentials",
        "wrong type",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nrate_limit = 5\n',
        "routes[1].rate_limit",
        "wrong type",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nsignature_components = ["@status"]\n',
        "routes[1].signature_components",
        "derived component",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nsignature_components = ["Content-Type"]\n',
        "routes[1].signature_components",
        "lower-case",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nsignature_label = "Sig 1"\n',
        "routes[1].signature_label",
        "structured-field key",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nauth = ["api_key"]\n'
        "oauth1_two_legged = true\n",
        "routes[1].oauth1_two_legged",
        "does not accept oauth1",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\npublic = true\noauth1_two_legged = true\n',
        "routes[1].oauth1_two_legged",
        "public route",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\noauth1_two_legged = "yes"\n',
        "routes[1].oauth1_two_legged",
        "wrong type",
    ),
    ('[server]\noauth1_timestamp_window = "2h"\n', "server.oauth1_timestamp_window", "1h"),
    ('[server]\noauth1_timestamp_window = "500ms"\n', "server.oauth1_timestamp_window", "1s"),
    # bad listen
    ('[server]\nlisten = "localhost"\n', "server.listen", "host:port"),
    ('[server]\nlisten = ":8080"\n', "server.listen", "host:port"),
    ('[server]\nlisten = "127.0.0.1:"\n', "server.listen", "host:port"),
    ('[server]\nlisten = "127.0.0.1:0"\n', "server.listen", "host:port"),
    ('[server]\nlisten = "127.0.0.1:65536"\n', "server.listen", "host:port"),
    ('[server]\nlisten = "127.0.0.1:http"\n', "server.listen", "host:port"),
    ('[server]\nlisten = "127.0.0.1:-1"\n', "server.listen", "host:port"),
    ('[admin]\nlisten = "8081"\n', "admin.listen", "host:port"),
    # bad URLs
    ('[upstream]\nurl = "ftp://127.0.0.1:9000"\n', "upstream.url", "http(s) URL"),
    ('[upstream]\nurl = "127.0.0.1:9000"\n', "upstream.url", "http(s) URL"),
    ('[upstream]\nurl = "http://"\n', "upstream.url", "http(s) URL"),
    ('[upstream]\nurl = "http://h:9000?x=1"\n', "upstream.url", "query"),
    ('[upstream]\nurl = "http://h:9000#top"\n', "upstream.url", "fragment"),
    ('[upstream]\nurl = "http://user:pw@h:9000"\n', "upstream.url", "user info"),
    ('[server]\npublic_url = "gw.example.com"\n', "server.public_url", "http(s) URL"),
    ('[server]\npublic_url = "https://gw?x"\n', "server.public_url", "query"),
    # an upstream URL with a path
    ('[upstream]\nurl = "http://127.0.0.1:9000/api"\n', "upstream.url", "path"),
    ('[upstream]\nurl = "http://127.0.0.1:9000/api/"\n', "upstream.url", "path"),
    # bad durations and rates
    ('[upstream]\ntimeout = "30"\n', "upstream.timeout", "30s"),
    ('[upstream]\ntimeout = "0s"\n', "upstream.timeout", "30s"),
    ('[upstream]\ntimeout = "1w"\n', "upstream.timeout", "30s"),
    ('[upstream]\nconnect_timeout = "-1s"\n', "upstream.connect_timeout", "30s"),
    ('[upstream]\nconnect_timeout = "1.5s"\n', "upstream.connect_timeout", "30s"),
    ('[server]\nfailed_attempts = "30"\n', "server.failed_attempts", "30/minute"),
    ('[server]\nfailed_attempts = "0/minute"\n', "server.failed_attempts", "30/minute"),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nrate_limit = "100/min"\n',
        "routes[1].rate_limit",
        "100/minute",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nrate_limit = "1.5/second"\n',
        "routes[1].rate_limit",
        "100/minute",
    ),
    # slow-client settings
    ("[server]\nclient_header_timeout = 10\n", "server.client_header_timeout", "wrong type"),
    ('[server]\nclient_header_timeout = "0s"\n', "server.client_header_timeout", "30s"),
    ('[server]\nkeepalive_timeout = "75"\n', "server.keepalive_timeout", "30s"),
    ('[server]\nclient_body_timeout = "1.5s"\n', "server.client_body_timeout", "30s"),
    ('[server]\nclient_body_timeout = "0ms"\n', "server.client_body_timeout", "30s"),
    ("[server]\nclient_body_min_rate = 0\n", "server.client_body_min_rate", "positive"),
    ('[server]\nclient_body_min_rate = "1k"\n', "server.client_body_min_rate", "wrong type"),
    ("[server]\nmax_connections = -1\n", "server.max_connections", "positive"),
    ("[server]\nmax_connections = true\n", "server.max_connections", "wrong type"),
    ("[server]\nbody_buffer_bytes = 0\n", "server.body_buffer_bytes", "positive"),
    ('[upstream]\nqueue_timeout = "5"\n', "upstream.queue_timeout", "30s"),
    ("[upstream]\nqueue_timeout = 5\n", "upstream.queue_timeout", "wrong type"),
    # HEAD is decided as GET: a route cannot allow HEAD alone
    ('[[routes]]\npath = "/x"\nmethods = ["HEAD"]\n', "routes[1].methods", "GET"),
    ('[[routes]]\npath = "/x"\nmethods = ["POST", "HEAD"]\n', "routes[1].methods", "HEAD"),
    # numbers out of range
    ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes", "positive"),
    ("[server]\nmax_header_bytes = -1\n", "server.max_header_bytes", "positive"),
    ("[upstream]\npool_size = 0\n", "upstream.pool_size", "positive"),
    ('[server]\ntrusted_proxies = ["10.0.0.0/33"]\n', "server.trusted_proxies", "CIDR"),
    ('[server]\ntrusted_proxies = ["proxy.local"]\n', "server.trusted_proxies", "CIDR"),
    # bad scopes
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nscopes = ["notes read"]\n',
        "routes[1].scopes",
        "white space",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nscopes = [""]\n',
        "routes[1].scopes",
        "not a valid scope",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nscopes = ["a\\"b"]\n',
        "routes[1].scopes",
        "not a valid scope",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\nscopes = ["caf\u00e9"]\n',
        "routes[1].scopes",
        "not a valid scope",
    ),
    # a public route with scopes or auth methods
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\npublic = true\nscopes = ["a"]\n',
        "routes[1].public",
        "remove",
    ),
    (
        '[[routes]]\npath = "/x"\nmethods = ["GET"]\npublic = true\nauth = ["api_key"]\n',
        "routes[1].public",
        "remove",
    ),
    # missing or broken route keys
    ('[[routes]]\nmethods = ["GET"]\n', "routes[1].path", "add path"),
    (ROUTE + '[[routes]]\nmethods = ["GET"]\n', "routes[2].path", "add path"),
    ('[[routes]]\npath = "/x"\n', "routes[1].methods", "add methods"),
    ('[[routes]]\npath = "/x"\nmethods = []\n', "routes[1].methods", "add methods"),
    ('[[routes]]\npath = "/x"\nmethods = ["get"]\n', "routes[1].methods", "upper-case"),
    ('[[routes]]\npath = "/x"\nmethods = ["TRACE"]\n', "routes[1].methods", "upper-case"),
    ('[[routes]]\npath = "/x"\nmethods = ["GET"]\nauth = ["basic"]\n', "routes[1].auth", "api_key"),
    ('[[routes]]\npath = "/x"\nmethods = ["GET"]\nauth = []\n', "routes[1].auth", "public = true"),
    ('[[routes]]\npath = "x"\nmethods = ["GET"]\n', "routes[1].path", "write '/x'"),
    ('[[routes]]\npath = "/notes/*"\nmethods = ["GET"]\n', "routes[1].path", "wildcard"),
    ('[[routes]]\npath = "/a/../b"\nmethods = ["GET"]\n', "routes[1].path", "normal form"),
    # routes naming restguard's own endpoints literally (patterns over them are fine)
    ('[[routes]]\npath = "/login"\nmethods = ["POST"]\n', "routes[1].path", "/login"),
    ('[[routes]]\npath = "/oauth2/token"\nmethods = ["POST"]\n', "routes[1].path", "own endpoint"),
    ('[[routes]]\npath = "/.well-known/jwks.json"\nmethods = ["GET"]\n', "routes[1].path", "own"),
    ('[[routes]]\npath = "/Login/"\nmethods = ["GET"]\n', "routes[1].path", "/login"),
    ('[[routes]]\npath = "/consent/**"\nmethods = ["GET"]\n', "routes[1].path", "/consent"),
    # storage
    ('[storage]\ndatabase = "mysql://h/db"\n', "storage.database", "sqlite:///restguard.db"),
    ('[storage]\ndatabase = "sqlite:///:memory:"\n', "storage.database", "needs a file"),
    ('[storage]\ndatabase = "sqlite:///"\n', "storage.database", "needs a file"),
    ('[storage]\nredis = "http://127.0.0.1:6379"\n', "storage.redis", "redis://"),
    ('[storage]\nredis_prefix = ""\n', "storage.redis_prefix", "restguard:"),
    ('[storage]\nredis_prefix = "a\\nb"\n', "storage.redis_prefix", "printable"),
]


def test_a_bad_redis_url_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    """It may hold a password: the message names the key, never the value."""
    config = tmp_path / "restguard.toml"
    config.write_text('[storage]\nredis = "http://:hunter2secret@10.0.0.1:6379"\n')
    with pytest.raises(ConfigError) as err:
        load(config)
    assert "storage.redis" in str(err.value)
    assert "hunter2secret" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "key", "word"), MISTAKES, ids=[f"{i}-{m[1]}" for i, m in enumerate(MISTAKES)]
)
def test_mistake_names_file_key_and_fix(tmp_path: Path, text: str, key: str, word: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    assert err.file == str(path)
    assert err.key == key
    assert err.fix
    assert err.line is not None and 1 <= err.line <= text.count("\n")
    message = str(err)
    assert message.startswith(f"{path}:{err.line}: {key}: ")
    assert "Fix: " in message
    assert word in err.problem + " " + err.fix
    assert "\n" not in message


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, '[server]\nlisen = "x"\n'))
    assert "listen" in caught.value.fix
    assert "public_url" in caught.value.fix


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nlisten = "127.0.0.1:8080\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    assert err.file == str(path)
    assert err.key == "(syntax)"
    assert "line 2" in err.problem
    assert "TOML" in err.fix


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    assert err.file == str(path)
    assert err.key == "(file)"
    assert "does not exist" in err.problem
    assert "restguard init" in err.fix


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)  # a directory
    assert caught.value.key == "(file)"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'# caf\xe9\n[server]\nlisten = "127.0.0.1:8080"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.key == "(file)"


# --- bugs -----------------------------------------------------------------------------------------


def test_ipv6_listen_gets_a_valid_default_public_url(tmp_path: Path) -> None:
    s = load(write(tmp_path, '[server]\nlisten = "[::1]:8080"\n'))
    assert s.server.public_url == "http://[::1]:8080"


@pytest.mark.parametrize(
    "text",
    ['[upstream]\nurl = "http://[::1"\n', '[server]\npublic_url = "http://[::1"\n'],
)
def test_unparseable_url_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(write(tmp_path, text))


@pytest.mark.parametrize("port", ["notaport", "99999", "0"])
def test_upstream_url_with_bad_port(tmp_path: Path, port: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, f'[upstream]\nurl = "http://127.0.0.1:{port}"\n'))
    assert caught.value.key == "upstream.url"


# --- parse_duration / parse_rate / valid_scope ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("30d", 2592000),
        (" 2h ", 7200),
        ("1ms", 0.001),
        ("250ms", 0.25),
        ("1500ms", 1.5),
        ("999999999ms", 999999.999),
        ("100ms", 0.1),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "30",
        "s",
        "0s",
        "-1s",
        "1.5h",
        "10x",
        "1w",
        "30 d",
        "1S",
        "0030s",
        "ms",
        "0ms",
        "1.5ms",
        "1MS",
        "1 ms",
        "1us",
    ],
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ms, s, m, h or d"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["36501d", "999999999d", "99999999999999999999999d", "3153600001s", "876001h"]
)
def test_parse_duration_refuses_what_no_date_can_hold(text: str) -> None:
    with pytest.raises(ValueError, match=r"too long; at most 36500d"):
        parse_duration(text)


def test_parse_duration_bound_is_the_callers() -> None:
    assert parse_duration("36500d") == 36500 * 86400
    assert parse_duration("1d", at_most=86400) == 86400
    with pytest.raises(ValueError, match="at most 1d"):
        parse_duration("86401s", at_most=86400)
    with pytest.raises(ValueError, match="at most 250ms"):
        parse_duration("251ms", at_most=0.25)


@pytest.mark.parametrize(
    ("key", "table"),
    [
        ("client_header_timeout", "server"),
        ("keepalive_timeout", "server"),
        ("client_body_timeout", "server"),
        ("connect_timeout", "upstream"),
        ("timeout", "upstream"),
        ("queue_timeout", "upstream"),
    ],
)
@pytest.mark.parametrize(("text", "seconds"), [("750ms", 0.75), ("3s", 3), ("2m", 120)])
def test_every_duration_setting_accepts_every_unit(
    tmp_path: Path, key: str, table: str, text: str, seconds: float
) -> None:
    s = load(write(tmp_path, f'[{table}]\n{key} = "{text}"\n'))
    assert getattr(getattr(s, table), key) == seconds


def test_a_route_may_allow_head_with_get(tmp_path: Path) -> None:
    s = load(write(tmp_path, '[[routes]]\npath = "/x"\nmethods = ["HEAD", "GET"]\n'))
    assert s.routes[0].methods == frozenset({"GET", "HEAD"})


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1/second", (1, 1.0)),
        ("100/minute", (100, 60.0)),
        ("5/hour", (5, 3600.0)),
        ("1000/day", (1000, 86400.0)),
    ],
)
def test_parse_rate(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["", "100", "100/min", "100/minutes", "0/minute", "-1/minute", "1.5/second", "/minute"]
)
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="N/minute"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("scope", "ok"),
    [
        ("notes:read", True),
        ("restguard:admin", True),
        ("a!#[]~", True),
        ("", False),
        ("a b", False),
        ('a"b', False),
        ("a\\b", False),
        ("caf\u00e9", False),
        ("a\tb", False),
    ],
)
def test_valid_scope(scope: str, ok: bool) -> None:
    assert valid_scope(scope) is ok


def test_upstream_ca_file_must_exist_and_needs_https(tmp_path: Path) -> None:
    from restguard.config import ConfigError, load

    config = tmp_path / "restguard.toml"
    config.write_text('[upstream]\nurl = "https://127.0.0.1:9443"\nca_file = "nope.pem"\n')
    with pytest.raises(ConfigError) as err:
        load(config)
    assert err.value.key == "upstream.ca_file" and "nope.pem" in str(err.value)
    (tmp_path / "ca.pem").write_text("x")
    config.write_text('[upstream]\nurl = "http://127.0.0.1:9000"\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigError) as err:
        load(config)
    assert "https" in err.value.problem
    config.write_text('[upstream]\nurl = "https://127.0.0.1:9443"\nca_file = "ca.pem"\n')
    assert load(config).upstream.ca_file == tmp_path / "ca.pem"


def test_the_init_template_states_the_defaults(tmp_path: Path) -> None:
    from restguard.cli.init import DEFAULT_ROUTES, TEMPLATE
    from restguard.config import ServerSettings, UpstreamSettings

    text = TEMPLATE.format(
        listen="127.0.0.1:8080",
        admin_listen="127.0.0.1:8081",
        upstream="http://127.0.0.1:9000",
        routes=DEFAULT_ROUTES,
    )
    s = load(write(tmp_path, text))
    assert s.server == ServerSettings()
    assert s.upstream == UpstreamSettings()
    for key in ("client_header_timeout", "keepalive_timeout", "client_body_timeout"):
        assert f"\n{key} = " in text  # written out, not only defaulted
    assert "\nqueue_timeout = " in text
