"""The urlencoded gate (also bodies without a Content-Type, which Rack reads as a form)."""

from __future__ import annotations

from restguard.wire.params import (
    _NAME_END,
    _NAME_RUN,
    _SEPARATOR,
    _escape,
    _may_hold_override,
    _NameReading,
    _override_refused,
)


class UrlencodedGate:
    """``name=value&...`` (split on ``&`` and ``;``): every name is read as it streams in and
    refused as soon as it reads as an override name, before its last byte is released. Every
    byte goes out as it comes but the last one (so the upstream never has the whole body before
    the gate has judged it: a refusal cuts the upstream off). Each byte is decoded once; what is
    kept between reads is a few bytes (an escape cut in two) and the name's readings."""

    where = "form body"

    def __init__(self) -> None:
        self._last = b""  # the byte held back
        self._reading: _NameReading | None = _NameReading()  # None: in a value or a dead name
        self._partial = b""  # an escape cut by the end of the last read

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._scan(data)
        out, self._last = self._last + data[:-1], data[-1:]
        return out

    def _scan(self, data: bytes) -> None:
        if not self._partial and not _may_hold_override(data):
            # No name that these bytes hold whole can be one: only the name going on from the
            # last read (up to the first separator) and the last one (from the last) count.
            first = _SEPARATOR.search(data)
            if first is None:
                if self._reading is not None:
                    self._scan_names(data)
                return
            if self._reading is not None:  # (its separator too: it ends an escape cut short)
                self._scan_names(data[: first.end()])
            self._reading = None
            data = data[max(data.rfind(b"&"), data.rfind(b";")) :]
        self._scan_names(data)

    def _scan_names(self, data: bytes) -> None:
        raw = self._partial + data
        self._partial = b""
        pos, n = 0, len(raw)
        fresh = False  # at a name's start
        while pos < n:
            reading = self._reading
            if reading is None:  # skip to where the next name starts
                m = _SEPARATOR.search(raw, pos)
                if m is None:
                    return
                self._reading, pos, fresh = _NameReading(), m.end(), True
                continue
            if fresh:  # a name that ends in these bytes is judged at once if it can be
                fresh = False
                end = _NAME_END.search(raw, pos)
                if end is not None and not _may_hold_override(raw[pos : end.start()]):
                    pos = end.end()
                    if end.group() == b"=":
                        self._reading = None
                    else:
                        self._reading, fresh = _NameReading(), True
                    continue
            run = _NAME_RUN.match(raw, pos).end()  # type: ignore[union-attr]
            for char in raw[pos:run].decode("latin-1"):
                if reading.push(char):
                    raise _override_refused(self.where)
                if not reading.open:
                    break
            if not reading.open:
                self._reading, pos = None, run
                continue
            pos = run
            if pos == n:
                return
            byte = raw[pos]
            if byte in b"&;":
                self._reading, pos, fresh = _NameReading(), pos + 1, True
            elif byte == 0x3D:  # "=": a value follows
                self._reading, pos = None, pos + 1
            elif byte == 0x2B:  # "+"
                if reading.push(" "):
                    raise _override_refused(self.where)
                pos += 1
            else:  # "%"
                decoded, size = _escape(raw, pos)
                if size < 0:  # cut by the end of this read: decided by the next one
                    self._partial = raw[pos:]
                    return
                if reading.push("%" if decoded is None else decoded):
                    raise _override_refused(self.where)
                pos += size if decoded is not None else 1

    def finish(self) -> bytes:
        partial, self._partial = self._partial, b""
        if self._reading is not None and partial:  # a cut escape at the end: literal
            for char in partial.decode("latin-1"):
                if self._reading.push(char):
                    raise _override_refused(self.where)
        last, self._last = self._last, b""
        return last
