"""The audit line's hand-built JSON is exactly the json module's; the file on a failing disk."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import restguard.audit as audit_module
from restguard.audit import DecisionEvent, JsonLinesAudit
from restguard.errors import BackendUnavailable

ODD = ["", "plain", 'quo"te', "back\\slash", "new\nline", "ü é 漢", "\x00\x1f\x7f", "</script>"]


def test_to_json_matches_json_dumps() -> None:
    rng = random.Random(7)
    for _ in range(500):
        pick = lambda: rng.choice(ODD)  # noqa: E731
        maybe = lambda: rng.choice([None, pick()])  # noqa: E731
        event = DecisionEvent(
            time=pick(),
            method=pick(),
            path=pick(),
            route=maybe(),
            outcome=pick(),
            status=rng.choice([200, 401, 503]),
            error=maybe(),
            auth_method=maybe(),
            credential_id=maybe(),
            client=pick(),
            detail=maybe(),
            duration_ms=rng.choice([0.0, 0.004, 12.5, 1e-7, 123456.789]),
            upstream=maybe(),
            request_id=maybe(),
        )
        expected = json.dumps(event._asdict(), separators=(",", ":"), ensure_ascii=True)
        assert event.to_json() == expected
        assert json.loads(event.to_json()) == event._asdict()


@settings(max_examples=2000, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3)), None])))
def test_timestamp_is_isoformat_in_milliseconds(now: datetime) -> None:
    """The per-second cache never gives another second's text (any order of times, any zone;
    the cache is module-wide, so every example also checks it against the one before)."""
    assert audit_module.timestamp(now) == now.isoformat(timespec="milliseconds")


# --- JsonLinesAudit on a failing file -------------------------------------------------------------


class FlakyOs:
    """``os`` as restguard.audit sees it, with a disk that fills up: after ``budget`` more bytes
    every write fails with ENOSPC (a short write first, as a filling disk gives)."""

    def __init__(self) -> None:
        self.budget: int | None = None  # None: unlimited
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        if self.budget is None:
            return os.write(fd, data)
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = os.write(fd, data[: self.budget])
        self.budget -= written
        return written


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FlakyOs:
    flaky = FlakyOs()
    monkeypatch.setattr(audit_module, "os", flaky)
    return flaky


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(audit_module, "time", fake)
    return fake


def event(path: str) -> DecisionEvent:
    return DecisionEvent(
        time="2030-01-01T00:00:00.000+00:00",
        method="GET",
        path=path,
        route=None,
        outcome="allow",
        status=200,
        error=None,
        auth_method=None,
        credential_id=None,
        client="127.0.0.1",
        detail=None,
        duration_ms=0.1,
    )


def paths_in(file: Path) -> list[str]:
    """The paths of the complete lines; every line must be JSON or a lone torn fragment."""
    found = []
    for line in file.read_text().splitlines():
        try:
            found.append(json.loads(line)["path"])
        except ValueError:
            assert line.startswith('{"time"') and "}{" not in line, f"garbled line: {line!r}"
    return found


def test_lines_are_batched_and_written_on_flush(tmp_path: Path, clock: FakeTime) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log", flush_interval=0.25)
    audit(event("/a"))
    audit(event("/b"))
    assert paths_in(tmp_path / "audit.log") == []  # not yet: batched
    clock.now += 0.3
    audit(event("/c"))  # the interval passed: this one writes the batch
    assert paths_in(tmp_path / "audit.log") == ["/a", "/b", "/c"]
    audit(event("/d"))
    audit.close()
    assert paths_in(tmp_path / "audit.log") == ["/a", "/b", "/c", "/d"]
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_a_full_disk_drops_lines_counts_them_and_never_raises(
    tmp_path: Path, disk: FlakyOs, clock: FakeTime
) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log")
    assert audit.healthy and audit.dropped == 0
    disk.budget = 0
    for i in range(10):
        audit(event(f"/x{i}"))  # never raises
    assert audit.flush() is False
    assert audit.dropped == 10 and not audit.healthy
    assert audit.flush() is True  # nothing pending: the lines were dropped, not kept to grow
    audit(event("/y"))
    clock.now += 1
    audit(event("/z"))  # the interval passed: a write is tried from the decision itself
    assert audit.dropped == 12
    audit.close()  # closing on a full disk does not raise either


def test_writes_resume_and_health_returns_once_the_disk_has_room(
    tmp_path: Path, disk: FlakyOs
) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log")
    disk.budget = 0
    audit(event("/lost"))
    assert audit.flush() is False and not audit.healthy
    disk.budget = None
    audit(event("/kept"))
    assert audit.flush() is True
    assert audit.healthy and audit.dropped == 1
    audit.close()
    assert paths_in(tmp_path / "audit.log") == ["/kept"]


def test_a_torn_line_is_ended_before_the_next_ones(tmp_path: Path, disk: FlakyOs) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log")
    audit(event("/whole"))
    assert audit.flush()
    disk.budget = 30  # the next batch is cut after 30 bytes: half a line on disk
    audit(event("/torn"))
    audit(event("/lost"))
    assert audit.flush() is False
    assert audit.dropped == 2
    disk.budget = None
    audit(event("/after"))
    assert audit.flush() is True
    audit.close()
    text = (tmp_path / "audit.log").read_text()
    assert text.endswith("\n")
    assert paths_in(tmp_path / "audit.log") == ["/whole", "/after"]
    assert len(text.splitlines()) == 3  # whole, the torn fragment on its own, after


def test_one_log_line_per_minute_while_the_file_fails(
    tmp_path: Path, disk: FlakyOs, clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log")
    disk.budget = 0
    caplog.set_level(logging.ERROR, logger="restguard.audit")
    for _ in range(20):
        audit(event("/x"))
        audit.flush()
        clock.now += 1.0  # 20 failing writes over 20 s
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "audit.log" in message and "cannot be written" in message
    clock.now += audit_module.WARN_EVERY
    audit(event("/x"))
    audit.flush()
    assert len(caplog.records) == 2
    assert "21 decision line(s) dropped" in caplog.records[1].getMessage()


def test_required_writes_each_decision_before_it_returns(tmp_path: Path, disk: FlakyOs) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log", flush_interval=3600, required=True)
    audit(event("/a"))
    assert paths_in(tmp_path / "audit.log") == ["/a"]  # no batching when every line is needed
    audit.close()


def test_required_refuses_a_decision_it_cannot_record(tmp_path: Path, disk: FlakyOs) -> None:
    audit = JsonLinesAudit(tmp_path / "audit.log", required=True)
    disk.budget = 0
    with pytest.raises(BackendUnavailable) as caught:
        audit(event("/refused"))
    assert caught.value.status == 503
    assert audit.dropped == 1 and not audit.healthy
    disk.budget = None
    audit(event("/next"))  # the refused line is not written later as if it had been allowed
    audit.close()
    assert paths_in(tmp_path / "audit.log") == ["/next"]
    assert audit.healthy


def test_reopen_after_a_rename_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = JsonLinesAudit(path, flush_interval=3600)
    audit(event("/before"))
    path.rename(tmp_path / "audit.log.1")  # logrotate's rename, then its SIGHUP
    audit(event("/pending"))  # noted before the reopen: belongs to the old file
    audit.reopen()
    audit(event("/after"))
    audit.close()
    assert paths_in(tmp_path / "audit.log.1") == ["/before", "/pending"]
    assert paths_in(path) == ["/after"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_reopen_that_fails_keeps_writing_to_the_open_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "logs"
    audit = JsonLinesAudit(directory / "audit.log", flush_interval=3600)
    directory.rename(tmp_path / "moved")  # the path's directory is gone
    audit.reopen()  # logged, never raised
    assert any("cannot be reopened" in r.getMessage() for r in caplog.records)
    audit(event("/still"))
    audit.close()
    assert paths_in(tmp_path / "moved" / "audit.log") == ["/still"]


def test_reopen_after_a_torn_write_starts_the_new_file_clean(tmp_path: Path, disk: FlakyOs) -> None:
    path = tmp_path / "audit.log"
    audit = JsonLinesAudit(path)
    disk.budget = 10
    audit(event("/torn"))
    assert audit.flush() is False
    disk.budget = None
    path.rename(tmp_path / "audit.log.1")
    audit.reopen()
    audit(event("/fresh"))
    audit.close()
    assert path.read_text().startswith('{"time"')
    assert paths_in(path) == ["/fresh"]
