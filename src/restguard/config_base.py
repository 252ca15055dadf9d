"""What reading ``restguard.toml`` is made of: ``ConfigError``, value parsers (durations, rates,
scopes, URLs) and the table reader that records every problem and reading on.

Public names are re-exported by ``restguard.config``; import them from there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from restguard.wire.scope import scope_problem as scope_problem  # re-exported
from restguard.wire.toml_lines import KeyLines

KeyPath = tuple[str | int, ...]

_DURATION = re.compile(r"^([1-9][0-9]*)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 36500 * 86400.0  # 100 years: a later date no longer fits a datetime
_RATE = re.compile(r"^([1-9][0-9]{0,8})/(second|minute|hour|day)$")
_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?/?$")


class ConfigError(Exception):
    """A configuration mistake, as one line: ``FILE[:LINE]: KEY: problem. Fix: fix``.

    ``problems`` holds every mistake found in the same file, this one first (``load`` raises
    the first; ``restguard check`` lists them all)."""

    def __init__(
        self, file: Path | str, key: str, problem: str, fix: str, *, line: int | None = None
    ) -> None:
        self.file, self.key, self.problem, self.fix = str(file), key, problem, fix
        self.line = line
        self.problems: tuple[ConfigError, ...] = (self,)
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {key}: {problem}. Fix: {fix}")

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``restguard check --json``)."""
        return {
            "file": self.file,
            "key": self.key,
            "problem": self.problem,
            "fix": self.fix,
            "line": self.line,
        }


def key_name(path: KeyPath) -> str:
    """``("routes", 2, "path")`` -> ``routes[2].path`` (positions are 1-based)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def span(seconds: float) -> str:
    """A duration as it would be written: 86400 -> '1d', 0.25 -> '250ms'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_duration(text: str, *, at_most: float = MAX_DURATION) -> float:
    """'30d' -> seconds, '250ms' -> 0.25: a number with ms, s, m, h or d, at most ``at_most``
    seconds (``MAX_DURATION`` by default). ValueError otherwise, never an overflow."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(
            f"'{text}' is not a duration; write a number with ms, s, m, h or d, e.g. 30d"
        )
    digits, unit = m.group(1), m.group(2)
    if len(digits) > 15 or int(digits) * _DURATION_UNITS[unit] > at_most:
        raise ValueError(f"'{text.strip()}' is too long; at most {span(at_most)}")
    return int(digits) / 1000 if unit == "ms" else float(int(digits) * _DURATION_UNITS[unit])


def parse_rate(text: str) -> tuple[int, float]:
    """'100/minute' -> (100, 60.0)."""
    m = _RATE.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a rate; write N/second, N/minute, N/hour or N/day")
    return int(m.group(1)), _RATE_UNITS[m.group(2)]


def valid_scope(scope: str) -> bool:
    """True when ``scope`` is a scope restguard accepts (see ``scope_problem``)."""
    return scope_problem(scope) is None


def http_url_problem(text: str) -> tuple[str, str] | None:
    """(problem, fix) when ``text`` is not an http(s) URL with a host and a valid port."""
    example = 'write e.g. "http://127.0.0.1:9000"'
    if _HOST_PORT.match(text.strip()):  # localhost:9000, api.internal, [::1]:9000
        return f"'{text}' is not an http(s) URL (no scheme)", f'write "http://{text.strip()}"'
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return f"'{text}' is not an http(s) URL", example
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{text}' is not an http(s) URL", example
    if (port is not None and not 0 < port < 65536) or text.rstrip("/").endswith(":"):
        return f"'{text}' has no valid port", "write a port from 1 to 65535"
    if parts.query or parts.fragment or parts.username:
        return "must not carry a query, fragment or user info", "remove them"
    return None


def upstream_url_problem(text: str) -> tuple[str, str] | None:
    """(problem, fix) when ``text`` cannot be ``[upstream] url`` (nor ``init --upstream``)."""
    problem = http_url_problem(text)
    if problem is None and urlsplit(text).path not in ("", "/"):
        return (
            "must not carry a path (the upstream gets the policy's path)",
            'write only scheme, host and port, e.g. "http://127.0.0.1:9000"',
        )
    return problem


class Doc:
    """One configuration file being read: where its keys are, and every problem found."""

    def __init__(self, file: Path, lines: KeyLines | None = None) -> None:
        self.file, self.lines = file, lines
        self.problems: list[ConfigError] = []

    def line(self, path: KeyPath) -> int | None:
        return self.lines.line(path) if self.lines else None

    def error(self, path: KeyPath, problem: str, fix: str) -> ConfigError:
        return ConfigError(self.file, key_name(path), problem, fix, line=self.line(path))

    def report(self, path: KeyPath, problem: str, fix: str) -> None:
        self.problems.append(self.error(path, problem, fix))


class Reader:
    """Reads one table: a problem is recorded (``doc.problems``) and reading goes on with the
    default; the keys used are remembered so unknown ones can be refused."""

    def __init__(self, doc: Doc, path: KeyPath, table: Any) -> None:
        self.doc, self.path = doc, path
        self.ok = isinstance(table, dict)
        if not self.ok:
            if path and isinstance(path[-1], int):  # an entry of an array of tables
                doc.report(
                    path, "must be a table", f"write it as a [[{key_name(path[:-1])}]] table"
                )
            else:
                doc.report(path, "must be a table", f"write it as [{key_name(path)}]")
        self.table: dict[str, Any] = table if self.ok else {}
        self.used: set[str] = set()
        self.failed: set[str] = set()  # keys with a recorded problem

    def fail(self, name: str, problem: str, fix: str) -> None:
        """Record a problem with key ``name``."""
        self.failed.add(name)
        self.doc.report((*self.path, name), problem, fix)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any, example: str) -> Any:
        """The value of ``name``, or ``default`` when absent or of the wrong type (recorded)."""
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(name, f"has the wrong type ({type(value).__name__})", f"write {example}")
            return default
        return value

    def strings(self, name: str, default: tuple[str, ...], example: str) -> tuple[str, ...]:
        value = self.get(name, list, list(default), example)
        if not all(isinstance(v, str) for v in value):
            self.fail(name, "must be a list of strings", f"write {example}")
            return default
        return tuple(value)

    def finish(self) -> None:
        """Record every key of the table that was never asked for."""
        known = ", ".join(sorted(self.used)) or "none"
        for name in sorted(set(self.table) - self.used):
            self.fail(name, "is not a known key", f"remove it; known keys: {known}")
