"""Client-side auth for calling a restguard-protected API (``pip install restguard[client]``).

Each class is an ``httpx.Auth`` (sync and async clients) and also a ``requests`` auth callable::

    httpx.get(url, auth=ApiKeyAuth(key))
    requests.get(url, auth=ApiKeyAuth(key))
    httpx.post(url, content=body, auth=SignatureAuth(key_id, secret))  # RFC 9421 signed
    httpx.get(url, auth=OAuth1Auth(key, secret, token=tok, token_secret=tok_secret))  # RFC 5849
"""

from __future__ import annotations

from restguard.client.apikey import ApiKeyAuth
from restguard.client.client_credentials import ClientCredentialsAuth, TokenError
from restguard.client.oauth1 import OAuth1Auth
from restguard.client.signature import SignatureAuth

__all__ = ["ApiKeyAuth", "ClientCredentialsAuth", "OAuth1Auth", "SignatureAuth", "TokenError"]
