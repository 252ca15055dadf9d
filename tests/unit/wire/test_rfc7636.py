"""PKCE S256 (RFC 7636): the appendix B vector, and what is not a challenge or verifier."""

from __future__ import annotations

import base64
import os

from hypothesis import given
from hypothesis import strategies as st

from restguard.wire import rfc7636

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b() -> None:
    assert rfc7636.s256(VERIFIER) == CHALLENGE
    assert rfc7636.verifier_matches(VERIFIER, CHALLENGE)


def test_a_wrong_or_malformed_verifier_does_not_match() -> None:
    assert not rfc7636.verifier_matches(VERIFIER[:-1] + "l", CHALLENGE)
    assert not rfc7636.verifier_matches("short", rfc7636.s256("short"))  # < 43 characters
    long = "a" * 129
    assert not rfc7636.verifier_matches(long, rfc7636.s256(long))  # > 128
    spaced = "a" * 42 + " "
    assert not rfc7636.verifier_matches(spaced, rfc7636.s256(spaced))
    # the plain method's "challenge" (the verifier itself) is not an S256 match
    assert not rfc7636.verifier_matches(VERIFIER, VERIFIER)


def test_challenge_form() -> None:
    assert rfc7636.is_challenge(CHALLENGE)
    assert not rfc7636.is_challenge(CHALLENGE + "=")  # padding
    assert not rfc7636.is_challenge(CHALLENGE[:-1])  # 42 characters
    assert not rfc7636.is_challenge(CHALLENGE[:-1] + "N")  # not the end of 32 bytes
    assert not rfc7636.is_challenge(CHALLENGE.replace("-", "+"))  # base64, not base64url
    assert not rfc7636.is_challenge(VERIFIER + "xyz")


@given(st.binary(min_size=32, max_size=32))
def test_every_sha256_output_is_a_challenge(digest: bytes) -> None:
    assert rfc7636.is_challenge(base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


@given(st.text(UNRESERVED, min_size=43, max_size=128))
def test_every_verifier_matches_its_own_challenge(verifier: str) -> None:
    assert rfc7636.is_verifier(verifier)
    assert rfc7636.verifier_matches(verifier, rfc7636.s256(verifier))
    other = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    assert not rfc7636.verifier_matches(verifier, other)
