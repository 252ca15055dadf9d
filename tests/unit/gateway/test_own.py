"""gateway/own.py: every endpoint marked served has a handler; other methods get 405."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from restguard.authz.endpoints import OWN_ENDPOINTS, served_endpoint
from restguard.errors import MethodNotAllowed
from restguard.gateway.own import HANDLERS, answer_own
from restguard.gateway.server import Gateway


class FakeGateway:
    def jwks_body(self) -> bytes:
        return json.dumps({"keys": [{"kid": "k1"}]}).encode()


GW = cast(Gateway, cast(Any, FakeGateway()))


def test_the_served_endpoints_and_the_handlers_are_the_same_set() -> None:
    assert set(HANDLERS) == {e.path for e in OWN_ENDPOINTS if e.served}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_jwks_answer(method: str) -> None:
    endpoint = served_endpoint("/.well-known/jwks.json")
    assert endpoint is not None
    status, headers, body = answer_own(GW, endpoint, method)
    assert status == 200
    assert (b"content-type", b"application/json") in headers
    assert json.loads(body) == {"keys": [{"kid": "k1"}]}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405_with_allow(method: str) -> None:
    endpoint = served_endpoint("/.well-known/jwks.json")
    assert endpoint is not None
    with pytest.raises(MethodNotAllowed) as caught:
        answer_own(GW, endpoint, method)
    assert caught.value.status == 405
    assert ("allow", "GET, HEAD") in caught.value.headers
