"""RFC 9530 Content-Digest: the examples, and the every-supported-member-must-match rule."""

from __future__ import annotations

import pytest

from restguard.wire.rfc8941 import StructuredFieldError
from restguard.wire.rfc9530 import content_digest, digest_problem, parse_content_digest

BODY = b'{"hello": "world"}'
# RFC 9530 §2 and Appendix D examples for the content {"hello": "world"}.
SHA256 = b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
SHA512 = (
    b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXv"
    b"Jwew==:"
)


def test_rfc9530_examples() -> None:
    assert content_digest(BODY).encode() == SHA256
    assert content_digest(BODY, "sha-512").encode() == SHA512
    assert digest_problem([SHA256], BODY) is None
    assert digest_problem([SHA512], BODY) is None
    assert digest_problem([SHA256 + b", " + SHA512], BODY) is None
    assert digest_problem([SHA512, SHA256], BODY) is None  # two field lines


def test_a_changed_body_does_not_match() -> None:
    assert digest_problem([SHA256], BODY + b" ") == "the sha-256 digest does not match the body"
    assert digest_problem([SHA256], b"") is not None


def test_every_supported_member_must_match() -> None:
    wrong512 = content_digest(b"other", "sha-512").encode()
    assert digest_problem([SHA256 + b", " + wrong512], BODY) == (
        "the sha-512 digest does not match the body"
    )


def test_an_unsupported_member_alone_is_not_enough() -> None:
    assert digest_problem([b"md5=:sQqNsWTgdUEFt6mb5y4/5Q==:"], BODY) == (
        "Content-Digest has no sha-256 or sha-512 member"
    )
    # beside a supported one it is ignored
    assert digest_problem([b"md5=:AA==:, " + SHA256], BODY) is None


@pytest.mark.parametrize(
    "values",
    [
        [],
        [b""],
        [b"sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="],  # not a byte sequence
        [SHA256 + b", " + SHA256],  # duplicate key
        [SHA256, SHA256],
        [b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;"],
        [b"SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"],
        [b"sha-256=:" + b"A" * 9000 + b":"],  # size cap
    ],
)
def test_absent_or_malformed_digests_are_problems(values: list[bytes]) -> None:
    assert digest_problem(values, BODY) is not None


def test_a_truncated_digest_does_not_match() -> None:
    assert digest_problem([b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9D:"], BODY)


def test_parse_and_client_helper() -> None:
    assert set(parse_content_digest([SHA256 + b", " + SHA512])) == {"sha-256", "sha-512"}
    with pytest.raises(StructuredFieldError):
        parse_content_digest([b"sha-256=1"])
    with pytest.raises(ValueError):
        content_digest(BODY, "md5")
