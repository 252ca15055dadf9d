"""Identity headers for the upstream (CONTRACT "Identity forwarded per method")."""

from __future__ import annotations

import re

from restguard.errors import ServerError
from restguard.guard import Decision
from restguard.keys.signing import IdentityMinter
from restguard.types import Principal

IDENTITY_REUSE_SECONDS = 60.0
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _value(text: str) -> bytes:
    """A header value restguard writes. A control character would split the header block, so
    it fails closed (names are checked when credentials are created; this is the backstop)."""
    data = text.encode("utf-8")
    if _CONTROL.search(data):
        raise ServerError(debug="control character in an identity header value")
    return data


class IdentityHeaders:
    """The ``X-Restguard-*`` header lines for a decision, ready to write.

    The block (with its signed ``X-Restguard-Identity`` token) is built once per principal and
    reused for up to a minute, so signing and encoding do not sit on every request; the token's
    ``exp`` stays within the contract's 5 minutes of its ``iat``. When a rotation changes the
    signing key, the cached blocks are dropped so new ones carry the new key (a block signed by
    the old key would still verify: a rotated-out key stays published ``MAX_TOKEN_LIFETIME``).
    """

    def __init__(self, minter: IdentityMinter) -> None:
        self.minter = minter
        self._cache: dict[Principal, tuple[float, bytes]] = {}
        self._kid = minter.signer_kid()

    def __call__(self, decision: Decision) -> bytes:
        p = decision.principal
        if p.auth_method == "none":
            return b""
        kid = self.minter.signer_kid()
        if kid != self._kid:
            self._cache.clear()
            self._kid = kid
        now = self.minter.clock.monotonic()
        hit = self._cache.get(p)  # the whole principal: every fact the block carries
        if hit is None or now - hit[0] >= IDENTITY_REUSE_SECONDS:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = (now, self._block(p))
            self._cache[p] = hit
        return hit[1]

    def _block(self, p: Principal) -> bytes:
        fields = (
            (b"x-restguard-subject", p.subject),
            (b"x-restguard-client-id", p.client_id),
            (b"x-restguard-scopes", " ".join(sorted(p.scopes))),
            (b"x-restguard-auth-method", p.auth_method),
            *(((b"x-restguard-subject-issuer", p.issuer),) if p.issuer else ()),
            (b"x-restguard-identity", self.minter.mint(p)),
        )
        return b"".join(b"%s: %s\r\n" % (name, _value(text)) for name, text in fields)
