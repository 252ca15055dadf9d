"""store/fanout.py: revoking writes are announced after they commit, and only those."""

from __future__ import annotations

from typing import Any

import pytest

from restguard.errors import BackendUnavailable
from restguard.store.fanout import REVOKING, announcing
from restguard.store.ports import Store


class Repo:
    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    def __getattr__(self, name: str) -> Any:
        async def method(*args: Any, **kwargs: Any) -> str:
            if self.fail:
                raise BackendUnavailable(debug="down")
            self.log.append(f"{name}{args}")
            return "done"

        return method


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.log: list[str] = []
        for name in [*REVOKING, "api_keys", "signing_keys", "signature_nonces"]:
            setattr(self, name, Repo(self.log, fail))


@pytest.mark.parametrize(("repo", "method"), [(r, m) for r, ms in REVOKING.items() for m in ms])
async def test_every_revoking_write_is_announced_after_it_committed(repo: str, method: str) -> None:
    fake = FakeStore()
    heard: list[tuple[str, str, list[str]]] = []

    async def announce(kind: str, key: str) -> None:
        heard.append((kind, key, list(fake.log)))

    store: Store = announcing(fake, announce)  # type: ignore[arg-type]
    assert await getattr(getattr(store, repo), method)("id-1", "more") == "done"
    assert heard == [(repo, "id-1", [f"{method}('id-1', 'more')"])]


async def test_reads_and_other_writes_are_not_announced() -> None:
    fake = FakeStore()
    heard: list[tuple[str, str]] = []

    async def announce(kind: str, key: str) -> None:
        heard.append((kind, key))

    store: Store = announcing(fake, announce)  # type: ignore[arg-type]
    await store.api_keys.get("k")
    await store.api_keys.insert("record")
    await store.apps.list()
    await store.signature_nonces.use("a", "n", None, None)
    await store.signing_keys.rotate("new")
    assert heard == []
    assert len(fake.log) == 5


async def test_a_failed_write_is_not_announced() -> None:
    fake = FakeStore(fail=True)
    heard: list[str] = []

    async def announce(kind: str, key: str) -> None:
        heard.append(kind)

    store: Store = announcing(fake, announce)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable):
        await store.api_keys.revoke("k", None)
    assert heard == []


async def test_an_announcement_that_fails_leaves_the_committed_write_standing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeStore()

    async def announce(kind: str, key: str) -> None:
        raise BackendUnavailable(debug="redis publish: ConnectionError")

    store: Store = announcing(fake, announce)  # type: ignore[arg-type]
    assert await store.api_keys.revoke("k", None) == "done"
    assert fake.log == ["revoke('k', None)"]
    assert "within a second" in caplog.text


def test_every_name_in_revoking_is_a_method_of_the_store_ports() -> None:
    """A renamed port method must not silently stop being announced."""
    from typing import get_type_hints

    ports = get_type_hints(Store)
    for repo, methods in REVOKING.items():
        for method in methods:
            assert callable(getattr(ports[repo], method, None)), f"{repo}.{method}"
