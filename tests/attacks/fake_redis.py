"""A tiny fake Redis (RESP2) for fault injection: answers what restguard sends, and for the
commands that carry a decision (EVALSHA/EVAL, SET) answers what the test sets in ``mode``. A
script call is a batch (``store/redis/_batch.py``): ``ok`` answers each of its keys (a nonce
key: fresh; a rate-limit key: allowed).

Modes: ``ok`` (a sane answer: allowed, nonce fresh), ``err`` (-ERR), ``oom`` (-OOM, a full
Redis with noeviction), ``loading`` (-LOADING), ``readonly`` (-READONLY, a failed-over replica),
``noscript`` (EVALSHA answers NOSCRIPT, as a restarted Redis does; EVAL answers ``ok``), ``drop``
(half a reply, then the connection is closed), ``silent`` (never answers), ``string4``
(4 bytes that are not the script's digits), ``short`` (an array of 2), ``ok_text``
(+OK where an array belongs)."""

from __future__ import annotations

import asyncio
import threading

from tests.harness import free_port


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


class FakeRedis:
    def __init__(self) -> None:
        self.mode = "ok"
        self.port = free_port()
        self.commands: list[bytes] = []
        self.connections = 0
        self.open_connections = 0
        self.loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake redis did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self.loop.run_forever()
        # A connection accepted in the loop's last turn has an accept task not yet started:
        # cancelled so, or run after ``server.close()`` (its transport then fails to attach to
        # the closed server), its socket stayed open until collected and warned inside
        # whichever test ran then (test_review_batching's flaky "unclosed socket"). Pending
        # accepts finish first, while the server is open; their handlers are aborted below.
        self.loop.run_until_complete(asyncio.sleep(0.05))
        server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(asyncio.sleep(0))  # (the closed transports let go)
        self.loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    async def _read_command(self, reader: asyncio.StreamReader) -> list[bytes] | None:
        line = await reader.readline()
        if not line:
            return None
        if not line.startswith(b"*"):
            return [line.strip()]
        n = int(line[1:].strip())
        out = []
        for _ in range(n):
            size_line = await reader.readline()
            size = int(size_line[1:].strip())
            data = await reader.readexactly(size + 2)
            out.append(data[:-2])
        return out

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        self._writers.add(writer)
        subscribed = False
        try:
            while True:
                cmd = await self._read_command(reader)
                if cmd is None:
                    return
                name = cmd[0].upper()
                self.commands.append(name)
                if name in (b"EVALSHA", b"EVAL", b"SET", b"PUBLISH"):
                    reply = self._decision(name, cmd)
                    if reply is None:  # silent
                        await asyncio.sleep(3600)
                    if reply == b"DROP":
                        writer.write(b"*4\r\n:1\r\n")
                        await writer.drain()
                        writer.transport.abort()
                        return
                    writer.write(reply)
                elif name == b"SUBSCRIBE":
                    subscribed = True
                    writer.write(b"*3\r\n" + _bulk(b"subscribe") + _bulk(cmd[1]) + b":1\r\n")
                elif name == b"PING":
                    if subscribed:
                        writer.write(b"*2\r\n" + _bulk(b"pong") + _bulk(b""))
                    elif self.mode == "silent":
                        await asyncio.sleep(3600)
                    elif self.mode in ("err", "oom", "loading", "drop"):
                        writer.write(self._decision(b"PING") or b"-ERR x\r\n")
                    else:
                        writer.write(b"+PONG\r\n")
                elif name == b"HELLO":  # (RESP3 handshake when a password is given)
                    proto = int(cmd[1]) if len(cmd) > 1 else 2
                    writer.write(
                        b"%1\r\n" + _bulk(b"proto") + b":%d\r\n" % proto
                        if proto == 3
                        else b"*2\r\n" + _bulk(b"proto") + b":2\r\n"
                    )
                elif name == b"UNSUBSCRIBE":
                    writer.write(b"*3\r\n" + _bulk(b"unsubscribe") + _bulk(b"x") + b":0\r\n")
                else:  # CLIENT SETINFO, SELECT, HELLO...: OK
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            # (a client's EOF leaves the server's side half-open: unclosed, its socket would be
            # collected later and warn inside whichever test runs then)
            writer.close()
            writer.transport.abort()

    def _decision(self, name: bytes, cmd: list[bytes] | None = None) -> bytes | None:
        mode = self.mode
        if mode == "silent":
            return None
        if mode == "err":
            return b"-ERR injected failure\r\n"
        if mode == "noscript" and name == b"EVALSHA":  # (a restarted Redis: EVAL loads it)
            return b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        if mode == "oom":
            return b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
        if mode == "loading":
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        if mode == "readonly":
            return b"-READONLY You can't write against a read only replica.\r\n"
        if mode == "drop":
            return b"DROP"
        if name in (b"EVALSHA", b"EVAL"):
            if mode == "string4":
                return _bulk(b"\x01\x05\x00\xff")
            if mode == "short":
                return b"*2\r\n:1\r\n:5\r\n"
            if mode == "ok_text":
                return b"+OK\r\n"
            keys = cmd[3 : 3 + int(cmd[2])] if cmd else []  # a batch: one answer per key
            if any(b"nonce:" in key for key in keys):
                return _bulk(b"1" * len(keys))  # fresh nonces
            return _bulk(b" ".join([b"1 99 1 -1"] * len(keys)))
        if name == b"SET":
            if mode in ("string4", "short", "ok_text"):
                return b":1\r\n"
            return b"+OK\r\n"
        if name == b"PUBLISH":
            return b":0\r\n"
        return b"+OK\r\n"
