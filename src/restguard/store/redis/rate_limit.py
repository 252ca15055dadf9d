"""``RateLimiter`` on Redis: GCRA in one Lua script, so racing instances count exactly.

A key's state is one string, its TAT (theoretical arrival time, seconds since the epoch on
Redis's clock), which expires when the TAT passes (then the key is as if never seen). The
script reads the time with ``TIME``: instances whose own clocks disagree still agree on every
verdict. Its arithmetic is ``authz.ratelimit.gcra``'s, line by line, in the same doubles.
Concurrent calls travel together: one script call applies ``gcra`` to each in turn (atomic and
in order, so the batch counts exactly as the calls one by one would).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Sequence
from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from restguard.authz.ratelimit import Verdict
from restguard.errors import BackendUnavailable
from restguard.store.batch import Coalescer
from restguard.store.redis._link import MAX_KEY_BYTES, Lane, Link, script_sha

#: The clock: ``now`` in seconds from Redis's own ``TIME`` (a test may put a fixed one).
CLOCK_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

#: ``refund`` on KEYS[1] at ``now``: the TAT back one interval (ARGV: the interval), never
#: before now; a TAT at or before now is the same as none (the key is deleted).
REFUND_LUA: Final = """
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local back = tonumber(stored) - tonumber(ARGV[1])
if back <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.17g', back),
    'PXAT', string.format('%.0f', math.ceil(back * 1000)))
end
return 1
"""

#: ``gcra()`` on ``key`` at ``now``; ``count``: count an allowed event. Returns {allowed (0/1),
#: remaining, reset, retry_after (-1: None)}.
GCRA_LUA: Final = """
local function gcra(key, limit, window, count, now)
  local interval = window / limit
  local stored = redis.call('GET', key)
  local tat = nil
  if stored then tat = tonumber(stored) end
  local base = tat
  if tat == nil or tat < now then base = now end
  local allow_at = base - (window - interval)
  if allow_at - now > 1e-6 then
    return {0, 0, math.max(1, math.ceil(base - now)), math.max(1, math.ceil(allow_at - now))}
  end
  local new = base + interval
  local remaining = (now + window - new + 1e-6) / interval
  if remaining >= 0 then remaining = math.floor(remaining) else remaining = math.ceil(remaining) end
  if count then
    redis.call('SET', key, string.format('%.17g', new),
      'PXAT', string.format('%.0f', math.ceil(new * 1000)))
  end
  return {1, math.max(0, remaining), math.max(0, math.ceil(new - now)), -1}
end
"""

#: A batch: ``gcra`` on each of KEYS in order at one ``now``; ARGV holds three values per key
#: (limit, window, "1" to count). Returns the four integers of each as one string, separated
#: by spaces: one bulk reply is parsed far faster than an array of 4n integers.
EACH_LUA: Final = """
local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 3
  local r = gcra(KEYS[i], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3] == '1', now)
  for j = 1, 4 do out[#out + 1] = string.format('%d', r[j]) end
end
return table.concat(out, ' ')
"""
BATCH_LUA: Final = CLOCK_LUA + GCRA_LUA + EACH_LUA
BATCH_SHA: Final = script_sha(BATCH_LUA)

#: One batched hit: the key (prefixed), the limit, the window, whether to count.
Hit = tuple[str, int, float, bool]


def verdict(reply: object) -> Verdict:
    """The script's reply as a ``Verdict``: exactly four integers as the script returns them,
    else ``BackendUnavailable`` (a reply of another shape decides nothing: fail closed)."""
    if not (isinstance(reply, list) and len(reply) == 4 and all(type(v) is int for v in reply)):
        raise BackendUnavailable(debug="redis rate_limit: a reply of an unexpected shape")
    return _verdict(*reply)


def _verdict(allowed: int, remaining: int, reset: int, retry: int) -> Verdict:
    """Four integers as the script returns them (in range, else ``BackendUnavailable``)."""
    if allowed == 1:
        if remaining >= 0 and reset >= 0 and retry == -1:
            return Verdict(True, remaining, reset, None)
    elif allowed == 0 and remaining >= 0 and reset >= 0 and retry >= 1:
        return Verdict(False, remaining, reset, retry)
    raise BackendUnavailable(debug="redis rate_limit: a reply of an unexpected shape")


_NUMBERS = re.compile(rb"-?[0-9]{1,18}(?: -?[0-9]{1,18})*")


def verdicts(reply: object, count: int) -> list[Verdict]:
    """A batch's reply (``EACH_LUA``'s string): ``count`` verdicts, or ``BackendUnavailable``
    (for the whole batch) if any part of it has another shape."""
    if not (isinstance(reply, bytes) and _NUMBERS.fullmatch(reply)):
        raise BackendUnavailable(debug="redis rate_limit: a reply of an unexpected shape")
    numbers = [int(n) for n in reply.split(b" ")]  # (integers: the pattern says so)
    if len(numbers) != 4 * count:
        raise BackendUnavailable(debug="redis rate_limit: a reply of an unexpected shape")
    return [_verdict(*numbers[i : i + 4]) for i in range(0, len(numbers), 4)]


class RedisRateLimiter:
    """GCRA shared by every instance on one Redis. Keys: prefix + ``rl:`` + key, or prefix +
    ``rl#`` + its SHA-256 when the key is longer than ``MAX_KEY_BYTES`` or not UTF-8.
    Concurrent ``hit`` and ``blocked`` calls of one process go to Redis together, one script
    call per round trip (``Coalescer``)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._refund: AsyncScript | None = None
        self._lane = Lane(link)
        self._batches: Coalescer[Hit, Verdict] = Coalescer(link, "rate_limit.hit", self._send)

    async def _send(self, hits: Sequence[Hit]) -> list[Verdict]:
        args: list[str | int] = []
        for _, limit, window, count in hits:
            args += (limit, repr(float(window)), "1" if count else "0")
        keys = [hit[0] for hit in hits]
        reply = await self._lane.script(BATCH_SHA, BATCH_LUA, keys, args)
        return verdicts(reply, len(hits))

    def _key(self, key: str) -> str:
        """The Redis key of ``key``: as is when it is short and UTF-8 can write it, else its
        SHA-256 (a key that could not be written, e.g. a lone surrogate, would fail the whole
        batch it travels in, every other caller's check with it)."""
        try:
            if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
                return f"{self._link.prefix}rl:{key}"
        except UnicodeEncodeError:
            pass
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self._link.prefix}rl#{digest}"

    def _queued(self, key: str, limit: int, window: float, count: bool) -> Awaitable[Verdict]:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        return self._batches.submit((self._key(key), limit, window, count))

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        """Count one event for ``key`` if allowed; ``BackendUnavailable`` if Redis is not."""
        return await self._queued(key, limit, window, True)

    async def blocked(self, key: str, limit: int, window: float) -> int | None:
        """Seconds until ``key`` may act again, or None; counts nothing."""
        return (await self._queued(key, limit, window, False)).retry_after

    async def refund(self, key: str, limit: int, window: float) -> None:
        """Give back one counted event: the TAT back one interval, never before now."""
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        keys, args = [self._key(key)], [repr(float(window) / limit)]

        def run(client: Redis) -> Awaitable[object]:
            if self._refund is None:
                self._refund = client.register_script(CLOCK_LUA + REFUND_LUA)
            return self._refund(keys=keys, args=args, client=client)

        await self._link.call("rate_limit.refund", run)

    def close(self) -> None:
        """Nothing: the ``RedisBackend`` owns the connection."""
