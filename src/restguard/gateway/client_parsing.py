"""Reading requests off a client connection (``gateway/http1.py``): its bytes go to httptools
(llhttp) a slice at a time, and llhttp's events become exchanges (``gateway/exchange.py``).

llhttp refuses malformed framing (CL+TE, bad chunking, bare LF, obs-fold ...); this module adds
the caps:

* the request target is capped at ``MAX_TARGET_BYTES`` (414, RFC 9112 §3) and kept raw, so
  absolute-form targets are refused by the path normaliser rather than reduced to a path;
* the header block is capped while it is parsed (431); HTTP/1.0 and 1.1 only (505);
* every parse error is audited here and answered with JSON by the connection, which then
  closes (``ClientConnection._fatal``);
* ``Upgrade`` is ignored (RFC 9110 §7.8: a server MAY ignore it; restguard tunnels nothing):
  llhttp stops at an upgrade request's head, so its body is read on by a fresh parser and the
  request is forwarded as an ordinary one, framed like any other (never a Content-Length
  without its bytes); CONNECT is refused and ends the connection.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import httptools

from restguard.authz.paths import MAX_TARGET_BYTES, TargetTooLong
from restguard.errors import AuthError, HeadersTooLarge, InvalidRequest, VersionNotSupported
from restguard.gateway.client_timers import ClientTimers
from restguard.gateway.exchange import Exchange

if TYPE_CHECKING:
    from restguard.gateway.http1 import ClientConnection

_VERSIONS = frozenset({"1.0", "1.1"})
# A client's bytes are parsed this many at a time, and for about this long per loop turn.
SLICE_BYTES = 16 * 1024
TURN_SECONDS = 0.002


class _Refused(Exception):
    """Raised in a parser callback; httptools turns it into a parse error."""


class ClientParsing(ClientTimers):
    """A client connection's request parsing: bytes in, exchanges out, under the caps. A base
    of ``ClientConnection``; the clocks it arms are ``ClientTimers``'."""

    # The parsing state (set in ``ClientConnection.__init__``).
    _parser: httptools.HttpRequestParser
    _url: bytes
    _headers: list[tuple[bytes, bytes]]
    _header_bytes: int
    _skip_head: bool  # the parser is reading the stand-in head of an ignored Upgrade
    _refusal: AuthError | None  # why a parser callback refused the request
    _upgrading: Exchange | None  # the request whose Upgrade is being ignored
    _backlog: bytes  # bytes received, left for the loop's next turn
    _progress: bool  # a parser event happened during the current feed
    _quiet: int  # bytes fed since the last parser event

    # What it reads of the rest of the connection (``gateway/http1.py``).
    peer: str

    if TYPE_CHECKING:  # the connection's own (declared here for the type checker)

        def _start(self, ex: Exchange) -> None: ...

    # --- bytes in ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._backlog:  # (reading is paused meanwhile; kept in order all the same)
            self._backlog += data
        elif len(data) <= SLICE_BYTES:
            self._feed(data)
        else:
            self._take(data)

    def _take(self, data: bytes) -> None:
        """Parse ``data`` a slice at a time. Once this turn has cost ``TURN_SECONDS`` (a body
        that a parameter gate reads byte by byte can cost microseconds per byte), the rest
        waits for the loop's next turn with reading paused: one client's bytes never hold the
        event loop, and every other client, for more than about one turn."""
        if len(data) <= SLICE_BYTES:
            self._feed(data)
            return
        deadline = time.perf_counter() + TURN_SECONDS
        for start in range(0, len(data), SLICE_BYTES):
            if self._closing:
                return
            if start and time.perf_counter() > deadline:
                self._backlog = data[start:]
                self.pause("turn")
                self.loop.call_soon(self._next_turn)
                return
            self._feed(data[start : start + SLICE_BYTES])

    def _next_turn(self) -> None:
        data, self._backlog = self._backlog, b""
        if self._closing:
            return
        self._take(data)
        if not self._backlog:
            self.resume("turn")

    def _feed(self, data: bytes) -> None:
        while data and not self._closing:
            self._progress = False
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                data = self._ignore_upgrade(data[exc.args[0] :])
                continue
            except httptools.HttpParserError as exc:
                err = self._refusal or (
                    VersionNotSupported(debug="unparseable HTTP version")
                    if "Invalid HTTP version" in str(exc)  # llhttp's words for HTTP/1.2, 3.0
                    else InvalidRequest(
                        "The request is not valid HTTP/1.1.", debug="HTTP/1.1 parse error"
                    )
                )
                self._fatal(err)
                self._audit_parse_error(err)
                return
            self._no_progress(len(data))
            return

    def _no_progress(self, size: int) -> None:
        """Bytes fed without a single parser event (an unfinished header or trailer field, or
        chunk extension) grow inside httptools, which calls back only at a field's end: cap
        them like a header block (431), so that no field grows without bound."""
        if self._progress:
            self._quiet = 0
            return
        self._quiet += size
        if self._quiet > self.gw.max_header_bytes + MAX_TARGET_BYTES:
            err: AuthError = (
                HeadersTooLarge(debug="header field over the limit")
                if self._in_head
                else InvalidRequest(
                    "A trailer field or chunk extension is too large.",
                    debug="trailer or chunk extension over the limit",
                )
            )
            self._fatal(err)
            self._audit_parse_error(err)

    def _ignore_upgrade(self, rest: bytes) -> bytes:
        """llhttp completed an upgrade request at its head, skipping any body. restguard does
        not switch protocols: a fresh parser reads the body (behind a stand-in head that
        declares the same framing) and then the next requests, as for any request. Returns
        what the fresh parser is to read."""
        ex, self._upgrading = self._upgrading, None
        self._parser = httptools.HttpRequestParser(self)
        if ex is None or ex.method == "CONNECT":  # what follows would be a tunnel
            self._closing = True
            if ex is not None:
                ex.keep_alive = False
            return b""
        if ex.content_length or ex.chunked:
            framing = (
                b"transfer-encoding: chunked"
                if ex.chunked
                else b"content-length: %d" % (ex.content_length or 0)
            )
            self._skip_head = True
            self._parsing = ex
            rest = b"POST / HTTP/1.1\r\nhost: body\r\n" + framing + b"\r\n\r\n" + rest
        return rest

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._progress = True
        if self._skip_head:
            return
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._in_head = True
        self._head_started = now = self.loop.time()
        if self._active is None:  # (else the head waits its turn; its time starts then)
            self._arm(now + self.gw.limits.client_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._progress = True
        if self._skip_head:
            return
        self._url += url
        if len(self._url) > MAX_TARGET_BYTES:
            # RFC 9112 §3: a request-target longer than any URI the server wishes to parse
            # MUST get 414 (URI Too Long).
            self._refusal = TargetTooLong(
                "The request target is too long.", debug="request target too long"
            )
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        if not self._in_head:  # chunked trailer fields (or a stand-in head): never forwarded
            return
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.gw.max_header_bytes:
            self._refusal = HeadersTooLarge(debug="header block over the limit")
            raise _Refused
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._skip_head:
            self._skip_head = False
            return
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            self._refusal = VersionNotSupported(debug=f"HTTP/{version}")
            raise _Refused
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)  # llhttp refused malformed and conflicting values
            elif name == b"transfer-encoding":
                chunked = True
        ex = Exchange(
            cast("ClientConnection", self),  # (the one class built on this one)
            parser.get_method().decode("ascii"),
            self._url,
            self._headers,
            version,
            parser.should_keep_alive(),
            content_length=length,
            chunked=chunked,
        )
        self._parsing = ex
        if parser.should_upgrade():
            self._upgrading = ex
        if self._active is None:
            self._start(ex)
        else:
            self._queue.append(ex)
            self.pause("pipeline")
        if not ex.body_complete:
            self._schedule()

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if self._parsing is not None:
            self._parsing.feed_body(body)

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._progress = True
        ex = self._parsing
        if ex is None:
            return
        if ex is self._upgrading and (ex.content_length or ex.chunked):
            return  # llhttp skipped the body: the parser after the upgrade reads it
        ex.body_done()
        self._parsing = None

    # --- parse errors ------------------------------------------------------------------------
    def _audit_parse_error(self, err: AuthError) -> None:
        """Parse errors are decisions too: they go to the audit log and the metrics."""
        try:
            method = self._parser.get_method().decode("ascii", "replace")
        except httptools.HttpParserError:
            method = "?"
        self.gw.guard.refused(method, self._url, self.peer, err)
