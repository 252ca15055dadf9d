"""RFC 9421 signed-request verification micro-benchmark: microseconds per verify, side by side.

    python bench/signature_verify.py            # 9 interleaved rounds
    python bench/signature_verify.py --quick    # 3 short rounds (smoke)

Two requests signed with ``hmac-sha256`` the way a client of restguard signs them
(``created``, ``keyid``, ``alg``, ``nonce``):

* ``GET``  - covers ``@method @authority @path``, no body;
* ``POST`` - covers ``@method @authority @path content-digest content-type``, with a 1 KiB
  JSON body whose ``Content-Digest`` (sha-256) is recomputed.

Each is verified by:

* ``primitive`` - HMAC-SHA256 over the prepared signature base alone, the floor;
* ``restguard`` - ``restguard.wire``: read the fields from the header list, parse
  ``Signature-Input`` and ``Signature``, rebuild the base, verify, check ``Content-Digest``;
* ``package``   - ``http_message_signatures.HTTPMessageVerifier.verify`` on an equivalent
  request object (``body=`` for the POST, so it checks the digest too).

Rounds interleave the verifiers so that a drifting machine moves all of them alike; the median
round is reported. Targets (issue 10): restguard at most 60 us (GET) and 75 us (POST), and at
least 5x faster than the package.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver  # noqa: E402
from http_message_signatures.algorithms import HMAC_SHA256  # noqa: E402

from restguard.wire.rfc9421 import (  # noqa: E402
    Message,
    parse_signature,
    parse_signature_input,
    signature_base,
)
from restguard.wire.rfc9421_algorithms import sign_request, verify_hmac_sha256  # noqa: E402
from restguard.wire.rfc9530 import content_digest, digest_problem  # noqa: E402

SECRET = bytes(range(32))
KEYID = "app_7f3c2a9e"
AUTHORITY = "api.example.com"


class PeerRequest:
    """What the package reads from a request: ``method``, ``url``, ``headers.items()``."""

    def __init__(self, method: str, url: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.url = url
        self.headers = {k.decode(): v.decode() for k, v in headers}


def _headers(body: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"host", AUTHORITY.encode()),
        (b"user-agent", b"python-httpx/0.27.0"),
        (b"accept", b"application/json"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"x-request-id", b"5b0c3c52-7a4e-4d8c-9b1e-3f4f2b6c9d10"),
    ]
    if body is not None:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"content-digest", content_digest(body).encode()),
        ]
    return headers


def setup(kind: str) -> dict[str, Callable[[], object]]:
    """The three verifiers for one request, each a no-argument call, everything prepared."""
    body = None if kind == "GET" else b'{"items": [' + b'{"id": 1, "name": "x"}, ' * 42 + b"{}]}"
    method, path = kind, "/v1/orders/42" if kind == "GET" else "/v1/orders"
    headers = _headers(body)
    components = ["@method", "@authority", "@path"]
    if body is not None:
        components += ["content-digest", "content-type"]
    now = int(time.time())
    unsigned = Message(method, "https", AUTHORITY, path, b"", headers)
    signature_input, signature = sign_request(
        unsigned,
        keyid=KEYID,
        alg="hmac-sha256",
        key=SECRET,
        components=components,
        created=now,
        nonce="Wm9vTmpyYjJxZ0xSZVZ1Ng",
    )
    headers = [*headers, (b"signature-input", signature_input), (b"signature", signature)]
    received = tuple(headers)
    request_body = body or b""

    def restguard() -> object:
        msg = Message(method, "https", AUTHORITY, path, b"", received)
        inputs = [v for k, v in received if k == b"signature-input"]
        sig = parse_signature_input(inputs)["sig1"]
        raw = parse_signature([v for k, v in received if k == b"signature"])["sig1"]
        verify_hmac_sha256(SECRET, signature_base(sig, msg), raw)
        if sig.covers("content-digest"):
            digests = [v for k, v in received if k == b"content-digest"]
            if digest_problem(digests, request_body) is not None:
                raise AssertionError("digest")
        return sig

    base = signature_base(parse_signature_input([signature_input])["sig1"], unsigned)
    raw = parse_signature([signature])["sig1"]

    def primitive() -> object:
        verify_hmac_sha256(SECRET, base, raw)
        return None

    peer_request = PeerRequest(method, f"https://{AUTHORITY}{path}", headers)
    verifier = HTTPMessageVerifier(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={KEYID: SECRET}, private_keys={}),
    )
    max_age = timedelta(minutes=5)

    def package() -> object:
        if body is None:
            return verifier.verify(peer_request, max_age=max_age)
        return verifier.verify(peer_request, max_age=max_age, body=body)

    verifiers = {"primitive": primitive, "restguard": restguard, "package": package}
    for fn in verifiers.values():  # every one accepts the request before it is timed
        fn()
    return verifiers


def time_once(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (smoke)")
    args = parser.parse_args()
    rounds, budget = (3, 0.05) if args.quick else (9, 0.3)  # seconds per verifier per round
    kinds = {"GET": 60.0, "POST": 75.0}
    names = ["primitive", "restguard", "package"]
    results: dict[str, dict[str, float]] = {}
    for kind in kinds:
        verifiers = setup(kind)
        n = {name: max(20, int(budget / (time_once(fn, 20) / 1e6))) for name, fn in
             verifiers.items()}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                samples[name].append(time_once(verifiers[name], n[name]))
        results[kind] = {name: statistics.median(samples[name]) for name in names}

    print(f"python {sys.version.split()[0]}, hmac-sha256, {rounds} rounds; us per verify (median)")
    head = f"{'request':8} " + " ".join(f"{n:>10}" for n in names)
    print(head + f"  {'rg/prim':>8} {'pkg/rg':>8}  target")
    for kind, target in kinds.items():
        r = results[kind]
        cells = " ".join(f"{r[n]:10.1f}" for n in names)
        ratio = r["restguard"] / r["primitive"]
        peer = r["package"] / r["restguard"]
        ok = "ok" if r["restguard"] <= target and peer >= 5 else "MISSED"
        print(f"{kind:8} {cells}  {ratio:7.2f}x {peer:7.2f}x  <= {target:.0f} us, >= 5x: {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
