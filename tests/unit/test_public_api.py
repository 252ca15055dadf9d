"""The public surface: ``restguard.__all__`` is pinned; Principal only comes from verifiers."""

from __future__ import annotations

import copy
import dataclasses

import pytest

import restguard
from restguard.types import ANONYMOUS, Principal, verified_principal


def test_all_is_pinned() -> None:
    assert restguard.__all__ == [
        "AuthError",
        "Decision",
        "Guard",
        "Principal",
        "RequestView",
        "__version__",
    ]
    for name in restguard.__all__:
        assert hasattr(restguard, name), name


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert restguard.__version__ == version("restguard")


def test_principal_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError, match="verifier"):
        Principal("admin", "x", frozenset({"restguard:admin"}), "api_key")
    with pytest.raises(TypeError):
        Principal(subject="admin", client_id="x", scopes=frozenset(), auth_method="api_key")
    with pytest.raises(TypeError):
        Principal("admin", "x", frozenset(), "api_key", object())


def test_verified_principal_and_anonymous() -> None:
    p = verified_principal(subject="s", client_id="c", scopes={"a"}, auth_method="api_key")
    assert isinstance(p, Principal)
    assert p.scopes == frozenset({"a"})
    assert "_seal" not in repr(p)
    assert ANONYMOUS.auth_method == "none" and ANONYMOUS.scopes == frozenset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.scopes = frozenset({"admin"})  # type: ignore[misc]


def test_principal_cannot_be_forged_from_another_one() -> None:
    with pytest.raises(TypeError):
        dataclasses.replace(ANONYMOUS, subject="root", scopes=frozenset({"restguard:admin"}))


def test_copies_are_equal() -> None:
    p = verified_principal(subject="s", client_id="c", scopes={"a"}, auth_method="api_key")
    assert copy.copy(p) == p
