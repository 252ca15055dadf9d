"""The line each key of a TOML document is written on (tomllib gives values, not positions).

A small scanner reads the document line by line as TOML v1.0 lays it out: table headers
(``[a.b]``, ``[[routes]]``), ``key = value`` lines (dotted and quoted keys), and values that span
lines (multi-line strings, arrays), skipping comments. Keys are read by tomllib itself, so quoting
and escapes are TOML's. Array-of-tables entries are numbered from 1 in file order:
``("routes", 2, "path")`` is the ``path`` key of the second ``[[routes]]`` table.

The count of each array's headers is checked against the parsed document; where they disagree
(an array written inline, ``routes = [{...}]``) no line is claimed below it, so a line given is
never a wrong one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

Path = tuple[str | int, ...]


class KeyLines:
    """Lines of the keys and tables of one document."""

    def __init__(self, lines: Mapping[Path, int]) -> None:
        self._lines = dict(lines)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of its nearest written ancestor (a key not written at all
        is reported at its table's header); None when nothing above it is known."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None


def key_lines(text: str, document: Mapping[str, Any]) -> KeyLines:
    """Scan ``text`` (already parsed into ``document`` by tomllib) for key and table lines."""
    found: dict[Path, int] = {}
    counts: dict[Path, int] = {}
    table: Path = ()
    multiline: str | None = None  # the closing delimiter of a string spanning lines
    depth = 0  # brackets of a value spanning lines
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        start = 0
        if multiline is not None:
            start = _string_end(line, 0, multiline)
            if start < 0:
                continue
            multiline = None
        if depth or start:
            multiline, depth = _scan_value(line, start, depth)
            continue
        stripped = line.lstrip(" \t")
        if not stripped or stripped[0] == "#":
            continue
        if stripped[0] == "[":
            array = stripped.startswith("[[")
            open_len = 2 if array else 1
            close = _find(stripped, "]", open_len)
            key = _key(stripped[open_len:close]) if close > 0 else None
            if not key:
                continue
            path = _resolve(key[:-1], counts) + key[-1:]
            if array:
                counts[path] = counts.get(path, 0) + 1
                path = (*path, counts[path])
            found.setdefault(path, number)
            table = path
            continue
        equals = _find(stripped, "=", 0)
        if equals < 0:
            continue
        key = _key(stripped[:equals])
        if key:
            found.setdefault(table + key, number)
        multiline, depth = _scan_value(stripped, equals + 1, 0)
    for entries, count in counts.items():
        if _length(document, entries) != count:  # not what tomllib read: claim nothing below
            found = {p: n for p, n in found.items() if p[: len(entries)] != entries}
    return KeyLines(found)


def _resolve(parts: Path, counts: Mapping[Path, int]) -> Path:
    """A header's parent path, with the current entry of each array of tables on the way."""
    path: Path = ()
    for part in parts:
        path = (*path, part)
        if path in counts:
            path = (*path, counts[path])
    return path


def _length(document: Mapping[str, Any], path: Path) -> int | None:
    node: Any = document
    for part in path:
        try:
            node = node[part - 1] if isinstance(part, int) else node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return len(node) if isinstance(node, list) else None


def _key(text: str) -> Path | None:
    """The parts of a (dotted, possibly quoted) key, as tomllib reads it."""
    try:
        node: Any = tomllib.loads(text.strip() + " = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        ((name, node),) = node.items()
        parts.append(name)
    return tuple(parts) or None


def _find(line: str, char: str, start: int) -> int:
    """Index of ``char`` outside quoted strings, or -1."""
    i = start
    while i < len(line):
        c = line[i]
        if c == char:
            return i
        if c in "\"'":
            i = _string_end(line, i + 1, c)
            if i < 0:
                return -1
            continue
        i += 1
    return -1


def _string_end(line: str, i: int, delimiter: str) -> int:
    """Index just past the string closing with ``delimiter`` from ``i``; -1 if it goes on.
    Basic strings (``"``) have backslash escapes; a multi-line one may end in up to five
    quotes (two of them content)."""
    basic = delimiter[0] == '"'
    while i < len(line):
        if basic and line[i] == "\\":
            i += 2
            continue
        if line.startswith(delimiter, i):
            i += len(delimiter)
            if len(delimiter) == 3:
                extra = 0
                while extra < 2 and i < len(line) and line[i] == delimiter[0]:
                    i, extra = i + 1, extra + 1
            return i
        i += 1
    return -1


def _scan_value(line: str, i: int, depth: int) -> tuple[str | None, int]:
    """Read a value's text from ``i`` to the end of the line: (the delimiter of a string left
    open, the bracket depth left open)."""
    while i < len(line):
        c = line[i]
        if c == "#":
            break
        if c in "\"'":
            delimiter = c * 3 if line.startswith(c * 3, i) else c
            i = _string_end(line, i + len(delimiter), delimiter)
            if i < 0:
                return (delimiter if len(delimiter) == 3 else None), depth
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None, depth
