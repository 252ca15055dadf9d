"""restguard.logs: its own log lines as text or JSON on stderr, credentials redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from restguard.cli.init import write_data_dir
from restguard.config import ConfigError, load
from restguard.logs import configure

KEY = "rg_ak_abcdefghijkl_" + "S" * 49


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_redact(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json", "warning")
    log = logging.getLogger("restguard.test")
    log.info("not shown: below the level")
    log.warning("reload refused: %s", f"bad key {KEY}")
    try:
        raise ValueError(f"boom {KEY}")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["level"] for x in lines] == ["warning", "error"]
    first, second = lines
    assert set(first) == {"time", "level", "logger", "message", "process"}
    assert first["logger"] == "restguard.test"
    assert first["message"] == "reload refused: bad key rg_ak_[redacted]"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "ValueError" in second["exception"] and KEY not in second["exception"]
    assert KEY[19:] not in json.dumps(lines)


def test_text_lines_are_redacted_too(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("text", "info", prefix="restguard worker 7")
    logging.getLogger("restguard.x").info("key %s", KEY)
    err = capsys.readouterr().err
    assert err == "restguard worker 7: key rg_ak_[redacted]\n"


def test_the_log_table_is_checked(tmp_path: Path) -> None:
    config = write_data_dir(tmp_path / "d")
    text = config.read_text()
    assert load(config).log_format == "text" and load(config).log_level == "warning"
    config.write_text(text.replace('format = "text"', 'format = "json"'))
    assert load(config).log_format == "json"
    for bad in ('format = "xml"', 'level = "loud"'):
        key = bad.split(" ")[0]
        config.write_text(
            text.replace(f'{key} = "text"' if key == "format" else 'level = "warning"', bad)
        )
        with pytest.raises(ConfigError, match=rf"log.{key}"):
            load(config)
