"""config: ``[server] tls_cert``/``tls_key`` — both or neither, paths relative to the file, a
pair that loads and matches; every mistake one line naming the file, line, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from restguard.config import ConfigError, load, validate
from tests.pki import Pki


def write(directory: Path, server: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory.resolve() / "restguard.toml"
    path.write_text(f'[server]\nlisten = "127.0.0.1:8443"\n{server}\n', encoding="utf-8")
    return path


def mistake(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(path)
    err = caught.value
    assert str(err) == f"{path}:{err.line}: {err.key}: {err.problem}. Fix: {err.fix}"
    assert "\n" not in str(err)
    return err


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def test_without_tls_the_listener_is_plain_http(tmp_path: Path) -> None:
    server = load(write(tmp_path, "")).server
    assert (server.tls, server.tls_cert, server.tls_key) == (False, None, None)
    assert server.public_url == "http://127.0.0.1:8443"


def test_a_pair_relative_to_the_file_loads_and_public_url_defaults_to_https(
    tmp_path: Path, pki: Pki
) -> None:
    pki.pair()
    path = write(tmp_path, 'tls_cert = "pki/server.crt"\ntls_key = "pki/server.key"')
    server = load(path).server
    assert server.tls
    assert (server.tls_cert, server.tls_key) == (
        path.parent / "pki/server.crt",
        path.parent / "pki/server.key",
    )
    assert server.public_url == "https://127.0.0.1:8443"


def test_absolute_paths_are_kept(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.pair()
    server = load(write(tmp_path / "elsewhere", f'tls_cert = "{cert}"\ntls_key = "{key}"')).server
    assert (server.tls_cert, server.tls_key) == (cert, key)


@pytest.mark.parametrize(("given", "missing"), [("tls_cert", "tls_key"), ("tls_key", "tls_cert")])
def test_one_without_the_other_is_a_mistake(
    tmp_path: Path, pki: Pki, given: str, missing: str
) -> None:
    cert, key = pki.pair()
    value = cert if given == "tls_cert" else key
    err = mistake(write(tmp_path, f'\n\n{given} = "{value}"'))
    assert (err.key, err.line) == (f"server.{given}", 5)
    assert err.problem == f"is set but {missing} is not"
    assert err.fix == f"set both tls_cert and tls_key (PEM paths), or remove {given}"


def test_a_missing_file_is_named_with_its_key(tmp_path: Path, pki: Pki) -> None:
    cert, _ = pki.pair()
    err = mistake(write(tmp_path, f'tls_cert = "{cert}"\ntls_key = "nope.key"'))
    assert (err.key, err.line) == ("server.tls_key", 4)
    assert err.problem == f"{tmp_path.resolve() / 'nope.key'} does not exist"


def test_a_mismatched_pair_is_a_mistake(tmp_path: Path, pki: Pki) -> None:
    cert, _ = pki.pair("one")
    _, key = pki.pair("two")
    err = mistake(write(tmp_path, f'tls_cert = "{cert}"\ntls_key = "{key}"'))
    assert (err.key, err.line) == ("server.tls_key", 4)
    assert err.problem == f"{key} does not match the certificate in {cert}"
    assert "Traceback" not in str(err)


def test_the_key_given_as_the_certificate(tmp_path: Path, pki: Pki) -> None:
    _, key = pki.pair()
    err = mistake(write(tmp_path, f'tls_cert = "{key}"\ntls_key = "{key}"'))
    assert (err.key, err.line) == ("server.tls_cert", 3)
    assert "holds no PEM certificate (it looks like the private key)" in err.problem


def test_an_http_public_url_with_tls_is_a_mistake(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.pair()
    text = f'public_url = "http://gw.example:8443"\ntls_cert = "{cert}"\ntls_key = "{key}"'
    err = mistake(write(tmp_path, text))
    assert (err.key, err.line) == ("server.public_url", 3)
    assert err.fix == 'write "https://gw.example:8443"'
    text = text.replace("http://", "https://")
    assert load(write(tmp_path, text)).server.public_url == "https://gw.example:8443"


def test_check_lists_tls_problems_with_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, 'tls_cert = "a.crt"\ntls_key = "a.key"\nmax_body_bytes = -1')
    keys = [p.key for p in validate(path).problems]
    assert keys == ["server.tls_cert", "server.max_body_bytes"]


def test_wrong_types_are_mistakes(tmp_path: Path) -> None:
    err = mistake(write(tmp_path, "tls_cert = true"))
    assert err.key == "server.tls_cert" and "wrong type" in err.problem
