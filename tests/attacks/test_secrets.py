"""Secrets in logs and at rest (finding 8).

An API key sent in a URL — the path of an allowed or refused request, or a query string — never
appears in the audit log or the server's log records (restguard's credential prefixes are
redacted in every logged field, ``%5F`` spellings included). Every file in the data directory,
``restguard.db-wal`` and ``-shm`` included, is readable by its owner only.
"""

from __future__ import annotations

import logging
import stat

import pytest

from tests.attacks.conftest import Keys
from tests.attacks.wire import api_key, request, send
from tests.harness import GatewayProcess


def secret_of(key: str) -> str:
    """``rg_ak_<id>_<secret+checksum>``: the part that must never be written anywhere."""
    return key.split("_", 3)[3]


def spellings(key: str) -> list[bytes]:
    """The key as it may be written in a URL: plain, and with ``_`` percent-encoded."""
    raw = key.encode()
    return [raw, raw.replace(b"_", b"%5F"), raw.replace(b"_", b"%5f")]


def test_key_in_url_never_reaches_the_logs(
    gw: GatewayProcess, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leaked = keys.writer  # sent only in URLs, never as the credential
    before = len(gw.audit_events())
    sent: list[tuple[bytes, int]] = []
    wrong: list[tuple[bytes, int, int]] = []
    for url_key in spellings(leaked):
        cases = [
            # allowed: /notes/{id} with a key as the id, and a public route
            (request(b"/notes/" + url_key, api_key(keys.reader)), 200),
            (request(b"/public/" + url_key), 200),
            # refused after the view: no credential, wrong scope, no route
            (request(b"/notes/" + url_key), 401),
            (request(b"/notes/" + url_key, api_key(keys.reader), method=b"DELETE"), 403),
            (request(b"/nowhere/" + url_key), 404),
            # refused before the view (an encoded slash): only the raw path is logged
            (request(b"/notes/" + url_key + b"%2Fx", api_key(keys.reader)), 400),
            # ... also when the key follows an encoded character (a hex digit before "rg_")
            (request(b"/notes/%2F" + url_key, api_key(keys.reader)), 400),
            (request(b"/notes/a%5C" + url_key, api_key(keys.reader)), 400),
            (request(b"/notes/1%00" + url_key, api_key(keys.reader)), 400),
            # a key glued to other text is still a key
            (request(b"/public/x" + url_key), 200),
            # in a query string, on protected, public and unmatched routes
            (request(b"/notes/1?x=" + url_key, api_key(keys.reader)), 400),
            (request(b"/public/x?api_key=" + url_key), 400),
            (request(b"/nowhere?q=" + url_key), 400),
        ]
        for data, status in cases:
            response = send(gw.port, data)
            assert secret_of(leaked).encode() not in response.body
            sent.append((data, status))
            if response.status != status:  # reported after the logs were checked
                wrong.append((data.split(b"\r\n")[0], status, response.status))
    events = gw.audit_events()[before:]
    assert len(events) >= len(sent), "every decision is audited (the record is not just dropped)"
    assert gw.settings.audit_path is not None
    text = gw.settings.audit_path.read_text()
    assert secret_of(leaked) not in text
    for spelled in spellings(leaked):
        assert spelled.decode() not in text
    assert secret_of(keys.reader) not in text  # the credential that was used, neither
    records = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert secret_of(leaked) not in records
    assert wrong == [], "(request line, expected, got)"
    # Twin: an ordinary path is logged as it is.
    assert send(gw.port, request(b"/notes/plain-id-42", api_key(keys.reader))).status == 200
    assert any(e["path"] == "/notes/plain-id-42" for e in gw.audit_events())


def test_data_directory_files_are_owner_only(gw: GatewayProcess, keys: Keys) -> None:
    # Traffic first: reads and a write, so that the SQLite WAL and shared-memory files and the
    # audit log exist.
    assert send(gw.port, request(b"/notes/1", api_key(keys.reader))).status == 200
    gw.issue_key("notes:read", name="another")
    assert send(gw.port, request(b"/notes/1", api_key(keys.writer))).status == 200
    gw.audit_events()  # after the audit batch was written
    directory = gw.config.parent
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir() if p.is_file()}
    expected = {
        "restguard.toml",
        "master.key",
        "restguard.db",
        "restguard.db-wal",
        "restguard.db-shm",
        "audit.log",
    }
    assert expected <= set(files), sorted(files)
    readable_by_others = {name: oct(mode) for name, mode in files.items() if mode & 0o077}
    assert readable_by_others == {}
    assert all(mode & 0o600 == 0o600 for mode in files.values())  # the owner can still use them
