"""``restguard oauth1 sign`` as a process against a real gateway: token credentials and
two-legged requests, every signature method (PLAINTEXT over TLS only), form bodies signed and
forwarded byte for byte, other bodies sent unsigned, and the secrets never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from restguard.config import load
from tests.faults import set_keys
from tests.harness import GatewayProcess, RecordingUpstream
from tests.oauth1_support import Consumer, Token, add_consumer, add_token, parse_form
from tests.pki import Pki

ROUTES = """\
[[routes]]
path = "/notes/**"
methods = ["GET", "POST"]
scopes = ["notes:read"]
auth = ["oauth1"]

[[routes]]
path = "/two/**"
methods = ["GET"]
scopes = ["notes:read"]
auth = ["oauth1"]
oauth1_two_legged = true
"""
EXTRA = {"server.failed_attempts": '"100000/minute"'}
ROOT = Path(__file__).resolve().parents[2]
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("o1cli") / "gw", upstream, routes=ROUTES, extra=EXTRA
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def consumer(gw: GatewayProcess) -> Consumer:
    return add_consumer(gw, rsa_key=True, name="shell")


@pytest.fixture(scope="module")
def token(gw: GatewayProcess, consumer: Consumer) -> Token:
    return add_token(gw, consumer, "alice", scopes=("notes:read",))


def o1sign(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESTGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "restguard", "oauth1", "sign", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=ROOT,
    )


def creds(consumer: Consumer, token: Token | None) -> tuple[list[str], str]:
    """The arguments and the stdin line for ``consumer`` (and ``token``)."""
    args = ["--consumer-key", consumer.key, "--secrets-stdin"]
    if token is None:
        return args, consumer.secret + "&\n"
    return [*args, "--token", token.token], f"{consumer.secret}&{token.secret}\n"


def never_shown(done: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize("method", ["HMAC-SHA1", "HMAC-SHA256"])
def test_get_with_token_credentials(
    gw: GatewayProcess, consumer: Consumer, token: Token, method: str
) -> None:
    args, line = creds(consumer, token)
    done = o1sign(*args, "--signature-method", method, gw.url + "/notes/5?a=1&b=x%20y", stdin=line)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 "), done.stdout
    got = gw.upstream.last()
    assert (got.method, got.target) == ("GET", b"/notes/5?a=1&b=x%20y")
    assert got.header("x-restguard-subject") == "alice"
    assert got.header("x-restguard-auth-method") == "oauth1"
    assert got.header("x-restguard-client-id") == consumer.key
    assert got.header("authorization") is None
    never_shown(done, consumer.secret, token.secret)


def test_form_post_is_signed_and_forwarded_exactly(
    gw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    args, line = creds(consumer, token)
    body = "text=two+words&tilde=%7E&cafe=caf%C3%A9&a=1&a=0&empty="
    done = o1sign(*args, "-d", body, "--json", gw.url + "/notes", stdin=line)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == 200
    got = gw.upstream.last()
    assert got.method == "POST" and got.body == body.encode()
    assert got.header("content-type") == FORM
    # the form's parameters are covered: the same request with another body is refused
    dry = o1sign(*args, "-d", body, "--dry-run", "--json", gw.url + "/notes", stdin=line)
    authorization = json.loads(dry.stdout)["headers"]["Authorization"]
    gw.upstream.clear()
    tampered = requests.post(
        gw.url + "/notes",
        data=body.replace("two", "ten"),
        headers={"Authorization": authorization, "Content-Type": FORM},
        timeout=10,
    )
    assert tampered.status_code == 401 and gw.upstream.requests == []


def test_a_raw_body_with_its_own_content_type_is_sent_unsigned(
    gw: GatewayProcess, consumer: Consumer, token: Token, tmp_path: Path
) -> None:
    args, line = creds(consumer, token)
    raw = tmp_path / "body.json"
    raw.write_bytes(b'{"text": "a=b&c"}')
    done = o1sign(
        *args,
        "-H",
        "Content-Type: application/json",
        "--data-file",
        str(raw),
        gw.url + "/notes",
        stdin=line,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 "), done.stdout
    got = gw.upstream.last()
    assert got.body == b'{"text": "a=b&c"}' and got.header("content-type") == "application/json"


def test_a_wrong_secret_is_401(gw: GatewayProcess, consumer: Consumer, token: Token) -> None:
    gw.upstream.clear()
    args, _ = creds(consumer, token)
    for line in (f"{'A' * 43}&{token.secret}", f"{consumer.secret}&{'A' * 43}"):
        done = o1sign(*args, gw.url + "/notes", stdin=line + "\n")
        assert done.returncode == 0, done.stderr  # an answer came: exit 0, like curl
        assert done.stdout.startswith("HTTP/1.1 401 "), done.stdout
    assert gw.upstream.requests == []


def test_two_legged_only_where_the_route_allows_it(gw: GatewayProcess, consumer: Consumer) -> None:
    args, line = creds(consumer, None)
    done = o1sign(*args, "--json", gw.url + "/two/x", stdin=line)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == 200
    assert gw.upstream.last().header("x-restguard-subject") == consumer.key
    done = o1sign(*args, "--json", gw.url + "/two/y", stdin=consumer.secret + "\n")  # no '&'
    assert json.loads(done.stdout)["status"] == 200
    done = o1sign(*args, "--json", gw.url + "/notes", stdin=line)
    assert json.loads(done.stdout)["status"] == 401


def test_rsa_sha1_with_a_private_key(
    gw: GatewayProcess, consumer: Consumer, token: Token, tmp_path: Path
) -> None:
    pem = tmp_path / "private.pem"
    pem.write_text(consumer.rsa_pem())
    done = o1sign(
        "--consumer-key",
        consumer.key,
        "--token",
        token.token,
        "--private-key",
        str(pem),
        "-d",
        "text=rsa",
        gw.url + "/notes",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 "), done.stdout
    assert gw.upstream.last().body == b"text=rsa"
    dry = o1sign(
        "--consumer-key", consumer.key, "--private-key", str(pem), "--dry-run", gw.url + "/two"
    )
    assert 'oauth_signature_method="RSA-SHA1"' in dry.stdout


def test_plaintext_over_http_is_refused_by_the_command(
    gw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    gw.upstream.clear()
    args, line = creds(consumer, token)
    done = o1sign(*args, "--signature-method", "PLAINTEXT", gw.url + "/notes", stdin=line)
    assert done.returncode == 2
    assert "PLAINTEXT sends the secrets themselves: https:// URLs only" in done.stderr
    never_shown(done, consumer.secret, token.secret)
    assert gw.upstream.requests == []


def test_plaintext_over_tls(tmp_path: Path, upstream: RecordingUpstream) -> None:
    """A gateway speaking TLS: PLAINTEXT passes, and --dry-run hides the signature (it is the
    secrets)."""
    pki = Pki(tmp_path / "pki")
    tls = GatewayProcess(tmp_path / "tls", upstream, routes=ROUTES, extra=EXTRA)
    cert, key = pki.pair()
    set_keys(
        tls.config,
        "server",
        {
            "tls_cert": f'"{cert}"',
            "tls_key": f'"{key}"',
            "public_url": f'"https://127.0.0.1:{tls.port}"',
        },
    )
    tls.settings = load(tls.config)
    tls.start()
    try:
        plain = add_consumer(tls, name="plain")
        plain_token = add_token(tls, plain, "bob", scopes=("notes:read",))
        args, line = creds(plain, plain_token)
        url = f"https://127.0.0.1:{tls.port}/notes"
        env = {"SSL_CERT_FILE": str(pki.ca)}
        done = o1sign(*args, "--signature-method", "PLAINTEXT", url, stdin=line, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("HTTP/1.1 200 "), done.stdout
        assert upstream.last().header("x-restguard-subject") == "bob"
        for extra in ((), ("--json",)):
            dry = o1sign(
                *args, "--signature-method", "PLAINTEXT", "--dry-run", *extra, url, stdin=line
            )
            assert dry.returncode == 0, dry.stderr
            assert "oauth_signature=" in dry.stdout
            never_shown(dry, plain.secret, plain_token.secret)
    finally:
        tls.stop()


def test_dry_run_sends_nothing_and_shows_no_secret(
    gw: GatewayProcess, consumer: Consumer, token: Token
) -> None:
    gw.upstream.clear()
    args, line = creds(consumer, token)
    done = o1sign(*args, "--dry-run", "--json", "-d", "a=1", gw.url + "/notes?x=1", stdin=line)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["method"] == "POST" and shown["url"] == gw.url + "/notes?x=1"
    assert shown["headers"]["Content-Type"] == FORM
    authorization = shown["headers"]["Authorization"]
    assert authorization.startswith("OAuth ")
    params = dict(parse_form(authorization[6:].replace('"', "").replace(", ", "&")))
    assert params["oauth_consumer_key"] == consumer.key
    assert params["oauth_token"] == token.token
    assert params["oauth_signature_method"] == "HMAC-SHA1"
    assert params["oauth_version"] == "1.0" and params["oauth_nonce"] and params["oauth_signature"]
    never_shown(done, consumer.secret, token.secret)
    assert gw.upstream.requests == []
    plain = o1sign(*args, "--dry-run", gw.url + "/n", stdin=line)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("GET /n HTTP/1.1\nAuthorization: OAuth oauth_consumer_key=")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ((), "", "exactly one of --secrets-stdin"),
        (("--secret", "s"), "", "No such option"),
        (("--secrets-stdin",), "", "the consumer secret first"),
        (("--secrets-stdin", "--token", "rg_ot_x"), "cs&\n", "the token secret after the '&'"),
        (("--secrets-stdin",), "cs&ts\n", "a token secret without --token"),
        (("--secrets-stdin", "-H", "Authorization: x"), "cs&\n", "set by the OAuth 1.0a"),
        (("--secrets-stdin", "--signature-method", "RSA-SHA1"), "cs&\n", "--private-key"),
    ],
)
def test_usage_errors(args: tuple[str, ...], stdin: str, message: str) -> None:
    done = o1sign("--consumer-key", "ck_x", *args, "http://127.0.0.1:9/notes", stdin=stdin)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_oauth_parameter_in_the_query_is_refused() -> None:
    done = o1sign(
        "--consumer-key", "ck_x", "--secrets-stdin", "--dry-run",
        "http://127.0.0.1:9/notes?oauth_token=x", stdin="cs&\n",
    )  # fmt: skip
    assert done.returncode == 2 and "cannot sign this request with OAuth 1.0a" in done.stderr
