"""The admin REST API against its own OpenAPI document (``admin/openapi.py``), with
schemathesis: no answer to a request generated from the document, valid or fuzzed, is a 5xx,
and every answer matches the document (status code, body schema, content type, headers). The
document itself is valid OpenAPI 3.1, is what ``GET /api/openapi.json`` serves, and names
exactly the API's routes and methods, so neither can drift from the other.

The API runs on a real admin listener (``run_servers`` in a background thread, as ``restguard
serve`` runs it) over a data dir under pytest's tmp path; every generated request carries the
bootstrap admin key (``X-API-Key``). Generation is derandomized and bounded (``MAX_EXAMPLES``
per operation, no example database): the same requests every run, in a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from restguard.admin.api import OPENAPI_PATH
from restguard.admin.openapi import document
from restguard.admin.resources import ALL
from restguard.cli.init import bootstrap_admin_key
from tests.harness import GatewayProcess, RecordingUpstream

#: What the issue asks of every answer: no 5xx, and it matches the document.
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 40
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class Served:
    gateway: GatewayProcess
    key: str
    key_id: str

    @property
    def url(self) -> str:
        return self.gateway.admin_url

    @property
    def auth(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A running restguard (gateway and admin listeners) with its bootstrap admin key."""
    upstream = RecordingUpstream()
    gateway = GatewayProcess(tmp_path_factory.mktemp("admin-schema") / "d", upstream)
    boot = bootstrap_admin_key(gateway.config)
    gateway.start()
    try:
        yield Served(gateway, boot["key"], boot["id"])
    finally:
        gateway.stop()
        upstream.stop()


# Loaded from the same function the API serves (``test_the_served_document_is_this_one``):
# the schema must exist when pytest collects, before any server runs.
schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],  # valid and fuzzed requests
    max_examples=MAX_EXAMPLES,
    deterministic=True,  # (no example database either)
    with_security_parameters=False,  # the admin key below, not generated credentials
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_document(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers=served.auth, checks=CHECKS)


def test_the_answers_on_real_keys_match_the_document(served: Served) -> None:
    """Generated ids name no key, so the answers above to get, revoke and rotate are 404s;
    these requests name real keys, for the 200s and 201s (body, ``ETag``, ``Location``)."""

    def call(path: str, method: str, body: Any = None, **path_parameters: str) -> Any:
        kwargs: dict[str, Any] = {} if body is None else {"body": body}
        case = schema[path][method].Case(path_parameters=path_parameters or None, **kwargs)
        return case.call_and_validate(base_url=served.url, headers=served.auth, checks=CHECKS)

    made = call("/api/apikeys", "POST", {"name": "svc", "scopes": ["a"], "expires_in": "30d"})
    assert made.status_code == 201
    key_id = made.json()["id"]
    assert call("/api/apikeys/{id}", "GET", id=key_id).status_code == 200
    rotated = call("/api/apikeys/{id}/rotate", "POST", {"grace": "1h"}, id=key_id)
    assert rotated.status_code == 201
    # in its grace period it has a successor: rotating it again is 409, its successor 201
    assert call("/api/apikeys/{id}/rotate", "POST", id=key_id).status_code == 409
    successor = rotated.json()["id"]
    assert call("/api/apikeys/{id}/rotate", "POST", id=successor).status_code == 201
    assert call("/api/apikeys/{id}/revoke", "POST", id=key_id).status_code == 200
    assert call("/api/apikeys/{id}/rotate", "POST", id=key_id).status_code == 409
    assert call("/api/apikeys", "GET").status_code == 200
    assert call(OPENAPI_PATH, "GET").status_code == 200


# --- the document itself ------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    # schemathesis's validator: the OpenAPI 3.1 meta-schema (JSON Schema 2020-12)
    schemathesis.openapi.from_dict(doc).validate()
    for name, component in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name
    # ... which does refuse a broken document
    broken = document()
    broken["paths"]["/api/apikeys"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_the_served_document_is_this_one(served: Served) -> None:
    r = requests.get(served.url + OPENAPI_PATH, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == document()


def _documented() -> dict[str, set[str]]:
    """The document's paths and their methods (HEAD implied by GET, as the API answers it)."""
    found: dict[str, set[str]] = {}
    for path, item in document()["paths"].items():
        methods = {m.upper() for m in item if m in HTTP_METHODS}
        found[path] = methods | ({"HEAD"} if "GET" in methods else set())
    return found


_CAPTURE = re.compile(r"\((?!\?)((?:[^()]|\([^()]*\))*)\)")


def _routes() -> dict[str, tuple[set[str], str | None]]:
    """Every resource's routes (``ENDPOINTS``, whose one capture is an ``{id}``): their
    methods and the capture's pattern."""
    found: dict[str, tuple[set[str], str | None]] = {}
    for resource in ALL:
        for pattern, handlers in resource.ENDPOINTS:
            assert re.compile(pattern).groups <= 1, pattern
            captures = _CAPTURE.findall(pattern)
            path = _CAPTURE.sub("{id}", pattern)
            assert not re.search(r"[][()\\.*+?|^$]", path), f"a route to name: {pattern}"
            methods = set(handlers)
            found[path] = (
                methods | ({"HEAD"} if "GET" in methods else set()),
                captures[0] if captures else None,
            )
    return found


def _routed() -> dict[str, set[str]]:
    """The API's routes and their methods, and the document's own path, which ``AdminApi``
    answers before routing."""
    found = {OPENAPI_PATH: {"GET", "HEAD"}}
    found |= {path: methods for path, (methods, _) in _routes().items()}
    return found


def test_the_document_names_exactly_the_routes() -> None:
    assert _documented() == _routed()


def test_the_document_s_id_parameter_is_the_route_s() -> None:
    routes = _routes()
    for path, item in document()["paths"].items():
        for operation in (item[m] for m in item if m in HTTP_METHODS):
            ids = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            assert [p["name"] for p in ids] == re.findall(r"\{(\w+)\}", path), path
            for parameter in ids:
                assert parameter["required"] is True
                assert parameter["schema"]["pattern"] == f"^{routes[path][1]}$", path


def test_405_names_the_documented_methods(served: Served) -> None:
    """What the API answers a method it does not have (``Allow``) is what the document lists."""
    for path, methods in _documented().items():
        if path == OPENAPI_PATH:
            continue  # (see test_the_document_path_answers_only_get_and_head)
        url = served.url + path.replace("{id}", served.key_id)
        r = requests.put(url, headers=served.auth, timeout=10)  # (no endpoint takes PUT)
        assert r.status_code == 405, path
        assert set(r.headers["allow"].split(", ")) == methods, path


def test_the_document_path_answers_only_get_and_head(served: Served) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = requests.request(method, served.url + OPENAPI_PATH, headers=served.auth, timeout=10)
        assert r.status_code == 405, method
        assert r.headers["allow"] == "GET, HEAD", method
