"""restguard benchmark: the upstream, nginx and restguard measured side by side in one run.

    python bench/run.py            # full run: 3 interleaved rounds x 10 s per target
    python bench/run.py --quick    # smoke run, a few seconds in all

Twelve targets share one upstream (nginx answering ``{"ok":true}``):

1. ``upstream``   - the upstream itself, directly;
2. ``nginx``      - nginx as a plain keep-alive reverse proxy to it;
3. ``py-relay``   - ``bench/relay.py``: bytes relayed, nothing parsed (the floor of any Python
   proxy here);
3b. ``py-parse``  - ``bench/parse_relay.py``: both heads parsed with httptools and rebuilt,
   nothing checked (the floor of any Python proxy that parses what it forwards);
4. ``rg-public``  - a restguard gateway, public route ``/public/**``;
5. ``rg-apikey``  - the same gateway, ``/keyed/**`` with an ``X-API-Key`` (scope ``bench:read``);
6. ``rg-jwt``     - the same route with an RS256 JWT of an external issuer (``restguard issuer
   add``) whose JWKS this script serves on 127.0.0.1;
7. ``rg-oauth2``  - the same route with an access token restguard itself issued: a
   ``client_credentials`` client (``restguard oauth2 client create``), its token fetched from the
   gateway's ``POST /oauth2/token`` (``client_secret_basic``) once the gateway runs;
8. ``rg-opaque``  - the same with an opaque ``rg_at_`` access token (a client created with
   ``--token-format opaque``): looked up in the store once, then remembered;
9. ``rg-ratelimit`` - the API key on ``/limited/**``, a route with a ``rate_limit`` counted in
   Redis;
10. ``rg-signature`` - the same route with RFC 9421 signed GETs of an app (``restguard app
   create``, hmac-sha256): every request is signed with its own nonce (single use) just before
   each wrk run, and a Lua script has wrk send them one after the other;
11. ``rg-signature-db`` - the same signed GETs to a second gateway on the same data without
   ``[storage] redis``: the nonces go to the database (the default configuration).

For each, wrk drives a fixed number of connections; we record requests/s, p50/p99 latency and
the proxy's CPU time per request (utime+stime of its process tree from /proc). Rounds are
interleaved and the median is reported. A micro-benchmark times ``Guard.decide`` in-process.
Results go to stdout as a table and to ``bench/results/latest.json``. A target missed is
reported, not an error; the exit status is non-zero only when something could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "latest.json"
UPSTREAM_BODY = '{"ok":true}'
BENCH_SCOPE = "bench:read"
BENCH_ISSUER = "https://issuer.bench.example/"
LOAD_CPU, SERVER_CPU = 0, 1  # wrk on one core; upstream and proxy on the other
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

BENCH_ROUTES = f"""\
[[routes]]
path = "/public/**"
methods = ["GET"]
public = true

[[routes]]
path = "/keyed/**"
methods = ["GET"]
scopes = ["{BENCH_SCOPE}"]

[[routes]]
path = "/limited/**"
methods = ["GET"]
scopes = ["{BENCH_SCOPE}"]
rate_limit = "100000000/hour"
"""

#: The gateway's [storage] redis: the rate-limited route counts there (one Lua call per
#: request), under a prefix of this run's own.
BENCH_REDIS = "redis://127.0.0.1:6379/0"

TARGET_CPU_RATIO = 2.5  # restguard's public route CPU/request <= 2.5x nginx's (issue 12)
TARGET_CREDENTIAL_RATIO = 1.25  # each credential route <= 1.25x the public route (issue 12)
TARGET_RATE_LIMITED_RATIO = 1.4  # API key + a rate limit in Redis <= 1.4x the public route
KONG_AUTH_RATE_LIMIT_LOSS = 0.24  # Kong's throughput lost to key-auth + rate limiting
SRC_DIR = BENCH_DIR.parent / "src"


@dataclass(frozen=True)
class Check:
    """A target: CPU/request of ``numerator`` over ``denominator`` (minus 1 for an overhead)."""

    name: str
    numerator: str
    denominator: str
    target: float
    overhead: int = 0


CHECKS = (
    Check("restguard public CPU/req / nginx CPU/req", "rg-public", "nginx", TARGET_CPU_RATIO),
    # Not restguard's: how far below that target any Python proxy can go here (bench/relay.py).
    Check("(floor) Python byte relay / nginx CPU/req", "py-relay", "nginx", TARGET_CPU_RATIO),
    # ... and any Python proxy that parses both heads with httptools (bench/parse_relay.py).
    Check("(floor) Python parsing proxy / nginx CPU/req", "py-parse", "nginx", TARGET_CPU_RATIO),
    *(
        Check(f"{label} CPU/req / public CPU/req", name, "rg-public", TARGET_CREDENTIAL_RATIO)
        for name, label in (
            ("rg-apikey", "API-key"),
            ("rg-jwt", "JWT"),
            ("rg-oauth2", "oauth2 JWT"),
            ("rg-opaque", "oauth2 opaque"),
            ("rg-signature", "signature GET"),
            ("rg-signature-db", "signature GET, db nonces"),
        )
    ),
    Check(
        "API key + Redis rate limit CPU/req / public",
        "rg-ratelimit",
        "rg-public",
        TARGET_RATE_LIMITED_RATIO,
    ),
)


class BenchError(Exception):
    """Something could not be measured; the run exits non-zero."""


@dataclass(frozen=True)
class Profile:
    """How long and how hard to run."""

    rounds: int
    seconds: int  # wrk -d per measured run (wrk takes whole seconds)
    warmup_seconds: int  # one unmeasured wrk run per target first; 0 = none
    threads: int
    connections: int
    micro_ops: int  # Guard.decide calls per micro-benchmark sample


FULL = Profile(rounds=3, seconds=10, warmup_seconds=2, threads=1, connections=32, micro_ops=20_000)
QUICK = Profile(rounds=1, seconds=1, warmup_seconds=0, threads=1, connections=32, micro_ops=2_000)


# wrk sends the requests of ``Signer.write`` one after the other (one wrk thread): the
# Signature-Input and Signature of line i go into request i. Past the last line it repeats the
# first, which the gateway refuses as a replay: the run then fails (non-2xx), never passes.
SIGNED_LUA = """\
local prefix = "GET %(path)s HTTP/1.1\\r\\nHost: %(host)s\\r\\nSignature-Input: "
local lines, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
end
function request()
  i = i + 1
  local line = lines[i] or lines[1]
  local tab = line:find("\\t", 1, true)
  local signature = "\\r\\nSignature: " .. line:sub(tab + 1) .. "\\r\\n\\r\\n"
  return prefix .. line:sub(1, tab - 1) .. signature
end
"""
SIGNED_PER_SECOND = 25_000  # signed requests written per second of a wrk run (> any rps here)


@dataclass(frozen=True)
class Signer:
    """Signs GETs of ``path`` on ``authority`` as an hmac-sha256 app (RFC 9421: ``@method``,
    ``@authority``, ``@path``, ``created`` now, a fresh ``nonce`` each, ``keyid``, ``alg``)."""

    key_id: str
    secret: bytes
    authority: str
    path: str
    work: Path

    def sign(self, created: int, nonce: str) -> tuple[str, str]:
        """(Signature-Input, Signature) values; the base is the one RFC 9421 §2.5 builds (checked
        against ``restguard.wire``'s signer in ``check``)."""
        params = (
            f'("@method" "@authority" "@path");created={created};keyid="{self.key_id}";'
            f'alg="hmac-sha256";nonce="{nonce}"'
        )
        base = (
            f'"@method": GET\n"@authority": {self.authority}\n"@path": {self.path}\n'
            f'"@signature-params": {params}'
        )
        mac = hmac.new(self.secret, base.encode("ascii"), hashlib.sha256).digest()
        return "sig1=" + params, "sig1=:" + base64.b64encode(mac).decode("ascii") + ":"

    def check(self) -> None:
        """The fast signer above signs exactly what restguard's own client signer does."""
        from restguard.wire.rfc9421 import Message
        from restguard.wire.rfc9421_algorithms import sign_request

        msg = Message(method="GET", scheme="http", authority=self.authority, path=self.path)
        created, nonce = int(time.time()), secrets.token_urlsafe(12)
        expected = sign_request(
            msg,
            keyid=self.key_id,
            alg="hmac-sha256",
            key=self.secret,
            components=("@method", "@authority", "@path"),
            created=created,
            nonce=nonce,
        )
        mine = tuple(v.encode("ascii") for v in self.sign(created, nonce))
        if mine != expected:
            raise BenchError(f"bench signer disagrees with restguard.wire: {mine} != {expected}")

    def headers(self) -> tuple[str, ...]:
        """One freshly signed request's headers (for ``verify``)."""
        signature_input, signature = self.sign(int(time.time()), secrets.token_urlsafe(12))
        return (f"Signature-Input: {signature_input}", f"Signature: {signature}")

    def write(self, count: int) -> tuple[Path, Path]:
        """``count`` signed requests, created now, each with its own nonce; the Lua script."""
        created = int(time.time())
        data = self.work / "signed.txt"
        with data.open("w") as out:
            for n in range(count):
                out.write("\t".join(self.sign(created, f"b{created}n{n}")) + "\n")
        script = self.work / "signed.lua"
        script.write_text(SIGNED_LUA % {"path": self.path, "host": self.authority})
        return script, data


@dataclass(frozen=True)
class Target:
    """One thing wrk is pointed at, and the process whose CPU is charged to it."""

    name: str
    label: str
    url: str
    pid: int
    headers: tuple[str, ...] = ()
    signer: Signer | None = None  # rg-signature: each request signed, sent by a Lua script


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus non-2xx/3xx responses


@dataclass(frozen=True)
class RunResult:
    """One measured run of one target."""

    target: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_seconds: float
    cpu_us_per_request: float


# ---------------------------------------------------------------------------------------------
# Tools, ports, processes
# ---------------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """The path of ``name`` on PATH or in /usr/sbin, /sbin."""
    return shutil.which(name, path=SBIN_PATH)


def ensure_tools() -> None:
    """Install nginx-light and wrk with apt-get when missing (needs root)."""
    if find_tool("nginx") and find_tool("wrk"):
        return
    if os.geteuid() != 0:
        raise BenchError("nginx and wrk are missing; as root: apt-get install nginx-light wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "nginx-light", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not (find_tool("nginx") and find_tool("wrk")):
        raise BenchError("nginx or wrk still missing after apt-get install")


def pinning_available() -> bool:
    """True when taskset exists and this process may use both benchmark cores."""
    if find_tool("taskset") is None:
        return False
    return {LOAD_CPU, SERVER_CPU} <= os.sched_getaffinity(0)


def pinned(cmd: list[str], cpu: int, enabled: bool) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` when pinning is enabled (taskset execs, same pid)."""
    return ["taskset", "-c", str(cpu), *cmd] if enabled else cmd


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, headers: tuple[str, ...] = ()) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url)
    for header in headers:
        name, _, value = header.partition(":")
        request.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers at all; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args} exited with {proc.returncode}:\n{tail(log)}")
        try:
            http_get(url)
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with output to ``log``; SIGTERM (then SIGKILL) it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc
# ---------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat fields from field 3 (state) on; the command name may contain spaces."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (nginx master -> workers)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid``'s process tree, plus its reaped children (cutime+cstime)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if member == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


# ---------------------------------------------------------------------------------------------
# nginx: the upstream and the reference proxy
# ---------------------------------------------------------------------------------------------

NGINX_MAIN = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
{http}
}}
"""

UPSTREAM_HTTP = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}"""

PROXY_HTTP = """\
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


@contextmanager
def nginx(work: Path, name: str, http: str, port: int, pin: bool) -> Iterator[int]:
    """Run one nginx (own prefix, config, pid and temp paths) in the foreground; yield its pid.

    Workers run as ``nobody`` when started as root, so the prefix is made world-traversable.
    """
    prefix = work / name
    prefix.mkdir()
    prefix.chmod(0o755)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_MAIN.format(dir=prefix, http=http))
    nginx_bin = find_tool("nginx") or "nginx"
    cmd = [nginx_bin, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    cmd += ["-g", "daemon off;"]
    with process(pinned(cmd, SERVER_CPU, pin), prefix / "stdout.log") as proc:
        wait_ready(f"http://127.0.0.1:{port}/", proc, prefix / "error.log")
        yield proc.pid


# ---------------------------------------------------------------------------------------------
# restguard: one gateway process from `restguard init`
# ---------------------------------------------------------------------------------------------


def use_tree_under_test() -> None:
    """Run this checkout's ``src/restguard``, in-process and in every ``restguard`` started
    here, whatever the venv has installed (an editable install may point at another tree)."""
    src = str(SRC_DIR)
    if src not in sys.path:
        sys.path.insert(0, src)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if not paths or paths[0] != src:
        os.environ["PYTHONPATH"] = os.pathsep.join([src, *[p for p in paths if p != src]])


def restguard_cmd() -> list[str]:
    """``restguard`` as this interpreter runs it (``python -m restguard``), from the tree under
    test (``use_tree_under_test``): not a console script, which may belong to another tree."""
    return [sys.executable, "-m", "restguard"]


def token_for(base: str, client_id: str, secret: str, scope: str = BENCH_SCOPE) -> dict[str, Any]:
    """``POST {base}/oauth2/token``, client credentials grant, ``client_secret_basic``: the
    token response, or BenchError."""
    import base64
    from urllib.parse import quote_plus

    basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
    request = urllib.request.Request(
        base.rstrip("/") + "/oauth2/token",
        data=f"grant_type=client_credentials&scope={quote_plus(scope)}".encode(),
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except OSError as err:
        raise BenchError(f"POST {request.full_url}: {err}") from None
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    if (
        not isinstance(answer, dict)
        or answer.get("token_type") != "Bearer"
        or not isinstance(answer.get("access_token"), str)
    ):
        raise BenchError(f"POST {request.full_url} gave {status} {body[:300]!r}")
    return answer


def oauth2_client_create(config: Path, token_format: str = "jwt") -> tuple[str, str]:
    """``restguard oauth2 client create`` of a bench client; (client_id, client_secret)."""
    create = ["oauth2", "client", "create", "--config", str(config), "--name", "bench"]
    create += ["--scope", BENCH_SCOPE, "--grant", "client_credentials", "--json"]
    create += ["--token-format", token_format]
    created = json.loads(run_checked([*restguard_cmd(), *create]))
    return created["client_id"], created["client_secret"]


def bench_config(text: str, port: int, admin_port: int) -> str:
    """The ``restguard init`` config with free listen ports and the benchmark routes."""
    head = re.split(r"^\[\[routes\]\]", text, maxsplit=1, flags=re.MULTILINE)[0]
    lines, section = [], ""
    for line in head.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == "[server]" and stripped.startswith("listen ="):
            line = f'listen = "127.0.0.1:{port}"'
        elif section == "[server]" and stripped.startswith("public_url ="):
            line = f'public_url = "http://127.0.0.1:{port}"'
        elif section == "[admin]" and stripped.startswith("listen ="):
            line = f'listen = "127.0.0.1:{admin_port}"'
        elif section == "[storage]" and stripped.startswith("redis ="):
            line = f'redis = "{BENCH_REDIS}"'
        elif section == "[storage]" and stripped.startswith("redis_prefix ="):
            line = f'redis_prefix = "rg-bench-{os.getpid()}:"'
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n\n" + BENCH_ROUTES


def without_redis(text: str) -> str:
    """A configuration's text without ``[storage] redis``: nonces and limits in the database."""
    lines = text.splitlines()
    kept = [line for line in lines if not line.strip().startswith(("redis =", "redis_prefix ="))]
    return "\n".join(kept) + "\n"


def check_config(config: Path, port: int, admin_port: int) -> None:
    """Fail loudly if the edited config does not say what the benchmark needs."""
    from restguard.config import load

    settings = load(config)
    got = (
        settings.server.listen.port,
        settings.admin_listen.port,
        [r.path for r in settings.routes],
    )
    want = (port, admin_port, ["/public/**", "/keyed/**", "/limited/**"])
    if got != want:
        raise BenchError(f"{config}: edited config gives {got}, expected {want}")


@contextmanager
def jwks_server(keys: dict[str, Any]) -> Iterator[int]:
    """Serve ``{"keys": [...]}`` at ``/jwks.json`` on a free 127.0.0.1 port, in a thread."""
    import http.server
    import threading

    body = json.dumps(keys).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def bench_issuer() -> tuple[dict[str, Any], Callable[[str], str]]:
    """An RS256 key pair as a JWKS and a minting function (issuer URL -> token, 1 h)."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public |= {"kid": "bench-1", "alg": "RS256", "use": "sig"}

    def mint(issuer: str) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": "bench", "sub": "bench-user", "scope": BENCH_SCOPE}
        claims |= {"iat": now, "exp": now + 3600}
        return pyjwt.encode(claims, private, "RS256", headers={"kid": "bench-1"})

    return {"keys": [public]}, mint


@dataclass(frozen=True)
class Setup:
    """The gateway's data directory and the credentials made for it before it starts."""

    config: Path
    port: int
    key: str  # an API key
    jwt: str  # an external issuer's RS256 token
    client_id: str  # a client_credentials client of restguard's own authorization server
    client_secret: str
    opaque: tuple[str, str]  # (client_id, client_secret) of one with opaque access tokens
    app: tuple[str, bytes]  # (key_id, HMAC key) of an hmac-sha256 app (RFC 9421)


def setup_restguard(
    work: Path, upstream_port: int, jwks_port: int, mint: Callable[[str], str]
) -> Setup:
    """``restguard init`` + config edit + ``apikey create`` + ``issuer add`` + ``oauth2 client
    create``."""
    data = work / "restguard"
    rg = restguard_cmd()
    upstream = f"http://127.0.0.1:{upstream_port}"
    run_checked([*rg, "init", "--dir", str(data), "--upstream", upstream])
    config = data / "restguard.toml"
    port, admin_port = free_port(), free_port()
    config.write_text(bench_config(config.read_text(), port, admin_port))
    check_config(config, port, admin_port)
    create = ["apikey", "create", "--config", str(config), "--name", "bench", "--json"]
    created = run_checked([*rg, *create, "--scope", BENCH_SCOPE])
    issuer = f"http://127.0.0.1:{jwks_port}/bench"
    add = ["issuer", "add", "--config", str(config), "--issuer", issuer, "--audience", "bench"]
    add += ["--jwks-uri", f"http://127.0.0.1:{jwks_port}/jwks.json", "--alg", "RS256", "--json"]
    if json.loads(run_checked([*rg, *add]))["jwks_keys"] != 1:
        raise BenchError("restguard issuer add could not read the bench JWKS")
    client_id, secret = oauth2_client_create(config)
    opaque = oauth2_client_create(config, "opaque")
    app_create = ["app", "create", "--config", str(config), "--name", "bench", "--json"]
    app = json.loads(run_checked([*rg, *app_create, "--scope", BENCH_SCOPE]))
    app_key = base64.urlsafe_b64decode(app["secret"] + "=" * (-len(app["secret"]) % 4))
    return Setup(
        config,
        port,
        json.loads(created)["key"],
        mint(issuer),
        client_id,
        secret,
        opaque,
        (app["key_id"], app_key),
    )


def run_checked(cmd: list[str]) -> str:
    """Run a short command; its stdout, or BenchError with its output."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@contextmanager
def relay(
    work: Path, port: int, upstream_port: int, pin: bool, script: str = "relay.py"
) -> Iterator[int]:
    """Run ``bench/relay.py`` or ``bench/parse_relay.py`` (the floors of a Python proxy); yield
    its pid once it answers."""
    cmd = [sys.executable, str(Path(__file__).with_name(script)), str(port), str(upstream_port)]
    log = work / Path(script).with_suffix(".log")
    with process(pinned(cmd, SERVER_CPU, pin), log) as proc:
        wait_ready(f"http://127.0.0.1:{port}/", proc, log)
        yield proc.pid


@contextmanager
def restguard(config: Path, port: int, pin: bool) -> Iterator[int]:
    """Run ``restguard serve`` (one process); yield its pid once the gateway answers."""
    cmd = pinned([*restguard_cmd(), "serve", "--config", str(config)], SERVER_CPU, pin)
    log = config.with_suffix(".log")
    with process(cmd, log) as proc:
        wait_ready(f"http://127.0.0.1:{port}/public/ready", proc, log)
        yield proc.pid


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's output (run with ``--latency``)."""
    percentiles = {p: float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(text)}
    total, rps = _TOTAL.search(text), _RPS.search(text)
    if total is None or rps is None or set(percentiles) != {"50", "99"}:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    errors = sum(int(n) for n in _NON_2XX.findall(text))
    socket_errors = _SOCKET_ERRORS.search(text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        errors=errors,
    )


def run_wrk(target: Target, seconds: int, profile: Profile, pin: bool) -> WrkResult:
    """One wrk run against ``target`` (signed requests: written just before, fresh nonces)."""
    cmd = [find_tool("wrk") or "wrk", f"-t{profile.threads}", f"-c{profile.connections}"]
    cmd += [f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for header in target.headers:
        cmd += ["-H", header]
    if target.signer is not None:
        script, data = target.signer.write(SIGNED_PER_SECOND * seconds)
        cmd += ["-s", str(script), target.url, "--", str(data)]
    else:
        cmd.append(target.url)
    done = subprocess.run(pinned(cmd, LOAD_CPU, pin), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed on {target.name}:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def measure(target: Target, round_no: int, profile: Profile, pin: bool) -> RunResult:
    """One measured wrk run with the target's CPU time sampled around it."""
    before = cpu_seconds(target.pid)
    result = run_wrk(target, profile.seconds, profile, pin)
    spent = cpu_seconds(target.pid) - before
    if result.errors or result.requests == 0:
        raise BenchError(
            f"{target.name}: {result.requests} requests, {result.errors} errors or non-2xx"
        )
    return RunResult(
        target=target.name,
        round=round_no,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        requests=result.requests,
        cpu_seconds=spent,
        cpu_us_per_request=spent * 1e6 / result.requests,
    )


def verify(targets: list[Target]) -> None:
    """Each target answers 200 with the upstream's body; the keyed route refuses no key."""
    for target in targets:
        headers = target.headers
        if target.signer is not None:
            target.signer.check()
            headers = target.signer.headers()
        status, body = http_get(target.url, headers)
        if status != 200 or body.decode(errors="replace") != UPSTREAM_BODY:
            raise BenchError(f"{target.name}: {target.url} gave {status} {body[:200]!r}")
        if target.signer is not None:  # the same signature again: a replay
            status, _ = http_get(target.url, headers)
            if status != 401:
                raise BenchError(f"{target.name}: a replayed nonce expected 401, got {status}")
        if headers:
            status, _ = http_get(target.url)
            if status != 401:
                raise BenchError(f"{target.name}: without the key expected 401, got {status}")


def run_load(targets: list[Target], profile: Profile, pin: bool) -> list[RunResult]:
    """Warm up each target, then ``profile.rounds`` interleaved rounds over all targets."""
    if profile.warmup_seconds:
        for target in targets:
            run_wrk(target, profile.warmup_seconds, profile, pin)
    runs = []
    for round_no in range(1, profile.rounds + 1):
        for target in targets:
            run = measure(target, round_no, profile, pin)
            print(
                f"  round {round_no} {target.name:<10} {run.rps:>9.0f} req/s "
                f"{run.cpu_us_per_request:>7.1f} us CPU/req",
                flush=True,
            )
            runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------
# Micro-benchmark: Guard.decide in-process
# ---------------------------------------------------------------------------------------------


class MemoryApiKeys:
    """An in-memory ApiKeyStore holding the records it was given (only get/touch are used)."""

    def __init__(self, *records: Any) -> None:
        self.records = {r.id: r for r in records}

    async def get(self, key_id: str) -> Any:
        return self.records.get(key_id)

    async def touch(self, key_id: str, at: datetime) -> None:
        return None


def bench_guard(store: Any, cache_ttl: float, jwks: dict[str, Any] | None = None) -> Any:
    """A Guard with the benchmark's two routes, built like ``restguard.wiring`` does; with
    ``jwks``, the ``jwt`` method too (issuer ``BENCH_ISSUER``, keys given, no fetching)."""
    from restguard.authz.policy import Policy, Route, compile_pattern
    from restguard.authz.ratelimit import MemoryRateLimiter
    from restguard.clock import SystemClock
    from restguard.credentials.apikey import ApiKeyAuthenticator
    from restguard.guard import Guard

    def route(index: int, path: str, **kwargs: Any) -> Route:
        segments, subtree = compile_pattern(path)
        methods = frozenset({"GET"})
        return Route(index, path, methods, _segments=segments, _subtree=subtree, **kwargs)

    routes = [route(0, "/public/**", public=True), route(1, "/keyed/**", scopes=(BENCH_SCOPE,))]
    clock = SystemClock()
    authenticators: dict[str, Any] = {
        "api_key": ApiKeyAuthenticator(store, clock, cache_ttl=cache_ttl)
    }
    if jwks is not None:
        from restguard.credentials.jwt import JwtAuthenticator, JwtIssuer, StaticKeys
        from restguard.keys.jwk import KeySet

        issuer = JwtIssuer(BENCH_ISSUER, "bench", StaticKeys(KeySet.from_jwks(jwks)))
        authenticators["jwt"] = JwtAuthenticator([issuer], clock)
    return Guard(Policy(routes), authenticators, clock, MemoryRateLimiter())


def bench_view(path: str, key: str | None = None, token: str | None = None) -> Any:
    """A RequestView like the ones wrk's requests produce."""
    from restguard.types import RequestView

    headers = [(b"host", b"127.0.0.1:8080")]
    if key is not None:
        headers.append((b"x-api-key", key.encode()))
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return RequestView("GET", path, b"", tuple(headers), "127.0.0.1")


async def time_decide(guard: Any, view: Any, ops: int, samples: int = 3) -> float:
    """Median over ``samples`` of the mean µs per ``guard.decide(view)`` across ``ops`` calls."""
    for _ in range(max(ops // 10, 10)):
        await guard.decide(view)
    results = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        for _ in range(ops):
            await guard.decide(view)
        results.append((time.perf_counter_ns() - started) / ops / 1000)
    return statistics.median(results)


async def micro_benchmarks(work: Path, ops: int) -> dict[str, float]:
    """µs/op of Guard.decide: public route; API-key route cache hit; JWT route; API-key on
    SQLite, no cache."""
    from restguard.credentials.apikey import new_record
    from restguard.store.sql import migrate, open_store

    record, key = new_record("bench", (BENCH_SCOPE,), datetime.now(UTC), None)
    jwks, mint = bench_issuer()
    hot = bench_guard(MemoryApiKeys(record), cache_ttl=1.0, jwks=jwks)
    token = mint(BENCH_ISSUER)
    out = {
        "public_us": await time_decide(hot, bench_view("/public/item"), ops),
        "apikey_cached_us": await time_decide(hot, bench_view("/keyed/item", key), ops),
        "jwt_rs256_us": await time_decide(hot, bench_view("/keyed/item", token=token), ops),
    }
    url = f"sqlite:///{work / 'micro.db'}"
    migrate(url)
    store = open_store(url)
    try:
        await store.api_keys.insert(record)
        cold = bench_guard(store.api_keys, cache_ttl=0.0)
        out["apikey_sqlite_uncached_us"] = await time_decide(
            cold, bench_view("/keyed/item", key), max(ops // 10, 100)
        )
    finally:
        store.close()
    out["apikey_cached_minus_public_us"] = out["apikey_cached_us"] - out["public_us"]
    return out


def run_micro(work: Path, ops: int) -> dict[str, float]:
    """Run the micro-benchmarks on uvloop when available, as the gateway does."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(micro_benchmarks(work, ops))


# ---------------------------------------------------------------------------------------------
# Summary, report, results file
# ---------------------------------------------------------------------------------------------


def medians(runs: list[RunResult], names: list[str]) -> dict[str, dict[str, float]]:
    """Per target, the median of each metric over the rounds."""
    out = {}
    for name in names:
        mine = [r for r in runs if r.target == name]
        out[name] = {
            key: statistics.median(getattr(r, key) for r in mine)
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_request")
        }
    return out


def paired_ratio(runs: list[RunResult], num: str, den: str) -> float:
    """Median over rounds of CPU/request(num) / CPU/request(den), paired within each round."""
    cpu = {(r.target, r.round): r.cpu_us_per_request for r in runs}
    rounds = sorted({r.round for r in runs})
    return statistics.median(cpu[(num, n)] / cpu[(den, n)] for n in rounds)


def ratios(runs: list[RunResult]) -> list[dict[str, Any]]:
    """Each target ratio with its measured value and PASS/MISS."""
    out = []
    for check in CHECKS:
        value = paired_ratio(runs, check.numerator, check.denominator) - check.overhead
        out.append(
            {
                "name": check.name,
                "value": value,
                "target": check.target,
                "unit": "%" if check.overhead else "x",
                "result": "PASS" if value <= check.target else "MISS",
            }
        )
    return out


def format_report(
    targets: list[Target],
    summary: dict[str, dict[str, float]],
    checks: list[dict[str, Any]],
    micro: dict[str, float],
    header: str,
) -> str:
    """The human-readable table."""
    lines = [header, ""]
    lines.append(f"{'target':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}")
    for t in targets:
        s = summary[t.name]
        lines.append(
            f"{t.label:<34}{s['rps']:>10.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
            f"{s['cpu_us_per_request']:>12.1f}"
        )
    lines += ["", f"{'ratio (paired per round, median)':<46}{'value':>9}{'target':>9}  result"]
    for c in checks:
        percent = c["unit"] == "%"
        value = f"{c['value']:+.1%}" if percent else f"{c['value']:.2f}x"
        target = f"<={c['target']:.0%}" if percent else f"<={c['target']:g}x"
        lines.append(f"{c['name']:<46}{value:>9}{target:>9}  {c['result']}")
    if "rg-ratelimit" in summary and summary["rg-public"]["rps"]:
        loss = 1 - summary["rg-ratelimit"]["rps"] / summary["rg-public"]["rps"]
        lines.append(
            f"{'throughput lost to API key + Redis rate limit':<46}{loss:>+9.1%}"
            f"{'<' + format(KONG_AUTH_RATE_LIMIT_LOSS, '.0%'):>9}  "
            + ("PASS" if loss < KONG_AUTH_RATE_LIMIT_LOSS else "MISS")
            + " (Kong's key-auth + rate limiting)"
        )
    lines += ["", "micro-benchmark: Guard.decide, in-process (us/op)"]
    names = {
        "public_us": "public route",
        "apikey_cached_us": "API-key route, cache hit (in-memory store)",
        "apikey_sqlite_uncached_us": "API-key route, SQLite store, cache_ttl=0",
        "apikey_cached_minus_public_us": "API-key check cost (cache hit - public)",
        "jwt_rs256_us": "JWT route, RS256, keys held (no fetch)",
    }
    for key, label in names.items():
        lines.append(f"  {label:<50}{micro[key]:>8.2f}")
    return "\n".join(lines)


def machine_facts() -> dict[str, Any]:
    """nproc, CPU model, Python and tool versions."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nginx_v = subprocess.run([find_tool("nginx") or "nginx", "-v"], capture_output=True, text=True)
    wrk_v = subprocess.run([find_tool("wrk") or "wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "nginx": nginx_v.stderr.strip(),
        "wrk": (wrk_v.stdout + wrk_v.stderr).splitlines()[0].strip(),
        "kernel": platform.release(),
    }


def write_results(data: dict[str, Any]) -> None:
    """bench/results/latest.json (git-ignored)."""
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def start_targets(stack: ExitStack, work: Path, pin: bool) -> list[Target]:
    """Start the upstream, the nginx proxy, the JWKS server and the gateway; fetch the bench
    clients' access tokens from the gateway; return the twelve targets."""
    up_port, proxy_port = free_port(), free_port()
    up_http = UPSTREAM_HTTP.format(port=up_port, body=UPSTREAM_BODY)
    up_pid = stack.enter_context(nginx(work, "upstream", up_http, up_port, pin))
    proxy_http = PROXY_HTTP.format(port=proxy_port, upstream_port=up_port)
    proxy_pid = stack.enter_context(nginx(work, "proxy", proxy_http, proxy_port, pin))
    relay_port = free_port()
    relay_pid = stack.enter_context(relay(work, relay_port, up_port, pin))
    parse_port = free_port()
    parse_pid = stack.enter_context(relay(work, parse_port, up_port, pin, "parse_relay.py"))
    jwks, mint = bench_issuer()
    jwks_port = stack.enter_context(jwks_server(jwks))
    setup = setup_restguard(work, up_port, jwks_port, mint)
    rg_port, key, token = setup.port, setup.key, setup.jwt
    rg_pid = stack.enter_context(restguard(setup.config, rg_port, pin))
    # The same data without Redis: RFC 9421 nonces in the database (batched), as by default.
    db_port, db_admin_port = free_port(), free_port()
    db_config = setup.config.with_name("restguard-no-redis.toml")
    db_config.write_text(
        without_redis(bench_config(setup.config.read_text(), db_port, db_admin_port))
    )
    check_config(db_config, db_port, db_admin_port)
    db_pid = stack.enter_context(restguard(db_config, db_port, pin))
    # Lives DEFAULT_LIFETIME (900 s); a full run takes about 3 min.
    issued = token_for(f"http://127.0.0.1:{rg_port}", setup.client_id, setup.client_secret)
    opaque = token_for(f"http://127.0.0.1:{rg_port}", *setup.opaque)
    return [
        Target(
            "upstream", "upstream direct (nginx)", f"http://127.0.0.1:{up_port}/public/item", up_pid
        ),
        Target("nginx", "nginx proxy", f"http://127.0.0.1:{proxy_port}/public/item", proxy_pid),
        Target(
            "py-relay",
            "Python byte relay (floor)",
            f"http://127.0.0.1:{relay_port}/public/item",
            relay_pid,
        ),
        Target(
            "py-parse",
            "Python parsing proxy (floor)",
            f"http://127.0.0.1:{parse_port}/public/item",
            parse_pid,
        ),
        Target(
            "rg-public", "restguard public route", f"http://127.0.0.1:{rg_port}/public/item", rg_pid
        ),
        Target(
            "rg-apikey",
            "restguard API-key route",
            f"http://127.0.0.1:{rg_port}/keyed/item",
            rg_pid,
            (f"X-API-Key: {key}",),
        ),
        Target(
            "rg-jwt",
            "restguard JWT route (RS256)",
            f"http://127.0.0.1:{rg_port}/keyed/item",
            rg_pid,
            (f"Authorization: Bearer {token}",),
        ),
        Target(
            "rg-oauth2",
            "restguard oauth2 route (own JWT)",
            f"http://127.0.0.1:{rg_port}/keyed/item",
            rg_pid,
            (f"Authorization: Bearer {issued['access_token']}",),
        ),
        Target(
            "rg-opaque",
            "restguard oauth2 route (opaque)",
            f"http://127.0.0.1:{rg_port}/keyed/item",
            rg_pid,
            (f"Authorization: Bearer {opaque['access_token']}",),
        ),
        Target(
            "rg-ratelimit",
            "restguard API key + rate limit (Redis)",
            f"http://127.0.0.1:{rg_port}/limited/item",
            rg_pid,
            (f"X-API-Key: {key}",),
        ),
        Target(
            "rg-signature",
            "restguard signature GET (RFC 9421)",
            f"http://127.0.0.1:{rg_port}/keyed/item",
            rg_pid,
            signer=Signer(*setup.app, f"127.0.0.1:{rg_port}", "/keyed/item", work),
        ),
        Target(
            "rg-signature-db",
            "restguard signature GET, db nonces",
            f"http://127.0.0.1:{db_port}/keyed/item",
            db_pid,
            signer=Signer(*setup.app, f"127.0.0.1:{db_port}", "/keyed/item", work),
        ),
    ]


@dataclass(frozen=True)
class Measured:
    """Everything one run measured."""

    started: datetime
    pinning: str
    targets: list[Target]
    runs: list[RunResult]
    micro: dict[str, float]
    python_ns: float  # ``python_speed``: how fast this machine runs Python right now


def python_speed() -> float:
    """Nanoseconds per ``sum((1, 2, 3))`` (best of 5): how fast this machine runs Python at the
    moment. The same tree's ratios to nginx shift with it (nginx's C moves far less than an
    interpreter between VMs), so runs on different machines are read side by side with it."""
    return min(timeit.repeat("sum((1, 2, 3))", number=200_000, repeat=5)) / 200_000 * 1e9


def measure_all(profile: Profile) -> Measured:
    """Start everything, verify, run the load rounds, stop everything; then the micro-benchmark."""
    ensure_tools()
    pin = pinning_available()
    started = datetime.now(UTC)
    python_ns = python_speed()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rg-bench-")))
        targets = start_targets(stack, work, pin)
        verify(targets)
        print(f"measuring {len(targets)} targets, {profile.rounds} round(s)", flush=True)
        runs = run_load(targets, profile, pin)
    with tempfile.TemporaryDirectory(prefix="rg-micro-") as micro_dir:
        micro = run_micro(Path(micro_dir), profile.micro_ops)
    pinning = f"wrk on CPU {LOAD_CPU}, servers on CPU {SERVER_CPU}" if pin else "no pinning"
    return Measured(started, pinning, targets, runs, micro, python_ns)


def report(measured: Measured, profile: Profile, mode: str) -> None:
    """Print the table and write ``bench/results/latest.json``."""
    summary = medians(measured.runs, [t.name for t in measured.targets])
    checks = ratios(measured.runs)
    header = (
        f"restguard bench {measured.started:%Y-%m-%d %H:%M} UTC: {profile.rounds} round(s) x "
        f"{profile.seconds}s, wrk -t{profile.threads} -c{profile.connections}, "
        f"{measured.pinning}; medians; Python: sum((1,2,3)) {measured.python_ns:.1f} ns"
    )
    print("\n" + format_report(measured.targets, summary, checks, measured.micro, header))
    write_results(
        {
            "date": measured.started.isoformat(timespec="seconds"),
            "mode": mode,
            "profile": asdict(profile),
            "pinning": measured.pinning,
            "machine": {**machine_facts(), "python_sum_ns": round(measured.python_ns, 1)},
            "targets": {t.name: {"label": t.label, "url": t.url} for t in measured.targets},
            "median": summary,
            "ratios": checks,
            "micro_us_per_op": measured.micro,
            "runs": [asdict(r) for r in measured.runs],
        }
    )
    print(f"\nwrote {RESULTS_FILE}")


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark; 0 when everything was measured (targets met or not)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (a few seconds)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    use_tree_under_test()
    try:
        measured = measure_all(profile)
    except BenchError as err:
        print(f"bench: could not measure: {err}", file=sys.stderr)
        return 2
    report(measured, profile, "quick" if args.quick else "full")
    return 0


if __name__ == "__main__":
    sys.exit(main())
