"""keys/jwt_verify.py against PyJWT and joserfc, by hypothesis.

Tokens are minted by PyJWT and joserfc (valid ones, then mutated: flipped bytes, changed
headers, parts re-encoded, padded, swapped, truncated). Under the same rules (issuer, audience,
leeway, ``exp`` required, the key's one algorithm): every token PyJWT or joserfc rejects,
restguard rejects; and an unmutated token with well-formed claims is accepted by restguard
exactly when PyJWT accepts it.

Both libraries read the wall clock, so times are drawn at least 30 s from every boundary.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from restguard.keys.jwt_verify import KeySet, Rules, TokenInvalid, verify
from tests.unit.keys.jwt_helpers import ALL_KEYS, AUDIENCE, ED, ISSUER, Signer, b64

KEYS = KeySet([k.verification_key() for k in ALL_KEYS])
ALGS = ["EdDSA", "ES256", "RS256"]


def _quiet_registry() -> JWSRegistry:
    """joserfc flags "EdDSA" as deprecated (RFC 9864); the warning is not under test."""
    quiet = type(JWSRegistry.algorithms["EdDSA"])()
    quiet.security_warning = None
    registry = JWSRegistry(algorithms=ALGS)
    registry.algorithms = {
        "EdDSA": quiet,
        "ES256": JWSRegistry.algorithms["ES256"],
        "RS256": JWSRegistry.algorithms["RS256"],
    }
    return registry


REGISTRY = _quiet_registry()
_JOSE_CLASS = {"EdDSA": OKPKey, "ES256": ECKey, "RS256": RSAKey}


def _jose_private(key: Signer) -> Any:
    pem = key.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return _JOSE_CLASS[key.alg].import_key(pem)


JOSE_PRIVATE = {k.kid: _jose_private(k) for k in ALL_KEYS}
JOSE_PUBLIC = {k.kid: _JOSE_CLASS[k.alg].import_key(k.jwk()) for k in ALL_KEYS}

# Offsets from now, at least 30 s from any accept/reject boundary for a leeway of 0..60 s.
OFFSETS = [-86400, -3600, -90, 90, 3600, 86400]


@st.composite
def claim_sets(draw: st.DrawFn, now: int) -> dict[str, Any]:
    """Valid claims, then (half the time) one or two of them changed or dropped."""
    frac = draw(st.sampled_from([0, 0.25]))
    out: dict[str, Any] = {
        "iss": ISSUER,
        "aud": draw(st.sampled_from([AUDIENCE, [AUDIENCE], ["x", AUDIENCE]])),
        "exp": now + draw(st.sampled_from([90, 3600, 86400])) + frac,
    }
    for name in ("nbf", "iat"):
        if draw(st.booleans()):
            out[name] = now + draw(st.sampled_from([-86400, -90])) + frac
    if draw(st.booleans()):
        out["sub"] = draw(st.text(max_size=20))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        name = draw(st.sampled_from(["iss", "aud", "exp", "nbf", "iat"]))
        if draw(st.booleans()):
            out.pop(name, None)
        elif name == "iss":
            out[name] = draw(st.sampled_from([ISSUER.rstrip("/"), "https://evil.example/"]))
        elif name == "aud":
            out[name] = draw(st.sampled_from(["https://api.example.evil", ["x"], []]))
        else:
            out[name] = now + draw(st.sampled_from(OFFSETS)) + frac
    return out


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.just(("none", None)),
        st.just(("none", None)),
        st.just(("none", None)),
        st.tuples(st.just("flip"), st.tuples(st.integers(0, 2), st.integers(0, 10**6))),
        st.tuples(st.just("char"), st.tuples(st.integers(0, 10**6), st.sampled_from("A_-=+/. "))),
        st.tuples(
            st.just("header"),
            st.fixed_dictionaries(
                {},
                optional={
                    "alg": st.sampled_from(["none", "HS256", "ES256", "RS256", "EdDSA", "ES384"]),
                    "kid": st.sampled_from(["ed-1", "ec-1", "rsa-1", "../x", None]),
                    "crit": st.just(["exp"]),
                    "jku": st.just("https://evil.example/jwks"),
                    "typ": st.sampled_from(["JWT", "at+jwt"]),
                },
            ),
        ),
        st.tuples(st.just("reencode"), st.integers(0, 1)),
        st.tuples(st.just("pad"), st.integers(0, 2)),
        st.tuples(st.just("truncate"), st.integers(1, 200)),
        st.tuples(st.just("swap-payload"), st.sampled_from(ALL_KEYS)),
    )


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def mutate(token: str, kind: str, arg: Any, other: str) -> str:
    parts = token.split(".")
    if kind == "flip":
        where, at = arg
        raw = bytearray(_decode(parts[where]))
        raw[at % len(raw)] ^= 1 << (at % 8)
        parts[where] = b64(bytes(raw))
    elif kind == "char":
        at, ch = arg
        at %= len(token)
        return token[:at] + ch + token[at + 1 :]
    elif kind == "header":
        header = json.loads(_decode(parts[0]))
        header.update(arg)
        parts[0] = b64(json.dumps(header).encode())
    elif kind == "reencode":  # same JSON value, different bytes: the signature no longer fits
        value = json.loads(_decode(parts[arg]))
        parts[arg] = b64(json.dumps(value, indent=1, sort_keys=True).encode())
    elif kind == "pad":
        parts[arg] += "=" * (-len(parts[arg]) % 4 or 2)
    elif kind == "truncate":
        return token[: -(arg % len(token))]
    elif kind == "swap-payload":
        parts[1] = other.split(".")[1]
    return ".".join(parts)


def pyjwt_accepts(token: str, key: Signer, rules: Rules) -> bool:
    try:
        pyjwt.decode(
            token,
            key.private.public_key(),
            algorithms=[key.alg],
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
    except Exception:
        return False
    return True


def joserfc_accepts(token: str, key: Signer, rules: Rules) -> bool:
    try:
        decoded = jose_jwt.decode(
            token, JOSE_PUBLIC[key.kid], algorithms=[key.alg], registry=REGISTRY
        )
        jose_jwt.JWTClaimsRegistry(
            leeway=int(rules.leeway),
            iss={"essential": True, "value": rules.issuer},
            aud={"essential": True, "value": rules.audience},
            exp={"essential": True},
        ).validate(decoded.claims)
    except Exception:
        return False
    return True


def restguard_accepts(token: str, rules: Rules, now: float) -> bool:
    try:
        verify(token, KEYS, rules, datetime.fromtimestamp(now, UTC))
    except TokenInvalid:
        return False
    return True


def mint(minter: str, key: Signer, claims: dict[str, Any], typ: bool) -> str:
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
    if typ:
        header["typ"] = "JWT"
    if minter == "pyjwt":
        return pyjwt.encode(claims, key.private, algorithm=key.alg, headers=header)
    return jose_jwt.encode(header, claims, JOSE_PRIVATE[key.kid], registry=REGISTRY)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    key=st.sampled_from(ALL_KEYS),
    minter=st.sampled_from(["pyjwt", "joserfc"]),
    leeway=st.sampled_from([0, 30, 60]),
    typ=st.booleans(),
    mutation=_mutations(),
)
def test_restguard_rejects_whatever_pyjwt_or_joserfc_rejects(
    data: st.DataObject,
    key: Signer,
    minter: str,
    leeway: int,
    typ: bool,
    mutation: tuple[str, Any],
) -> None:
    now = time.time()
    claims = data.draw(claim_sets(int(now)))
    rules = Rules(ISSUER, AUDIENCE, leeway=leeway)
    token = mint(minter, key, claims, typ)
    other = mint(minter, ED, {**claims, "sub": "admin"}, typ)
    kind, arg = mutation
    mutated = mutate(token, kind, arg, other)

    ours = restguard_accepts(mutated, rules, now)
    theirs = pyjwt_accepts(mutated, key, rules)
    jose = joserfc_accepts(mutated, key, rules)
    if not theirs or not jose:
        assert not ours, (mutated, kind, arg, claims)
    if mutated == token:  # well-formed claims, untouched token: the same verdict as PyJWT
        assert ours == theirs, (token, claims)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(ALL_KEYS), minter=st.sampled_from(["pyjwt", "joserfc"]))
def test_valid_tokens_from_pyjwt_and_joserfc_are_accepted(key: Signer, minter: str) -> None:
    now = time.time()
    claims = {"iss": ISSUER, "aud": [AUDIENCE], "exp": int(now) + 600, "iat": int(now) - 5}
    token = mint(minter, key, claims, typ=True)
    rules = Rules(ISSUER, AUDIENCE)
    assert pyjwt_accepts(token, key, rules) and joserfc_accepts(token, key, rules)
    assert restguard_accepts(token, rules, now)
