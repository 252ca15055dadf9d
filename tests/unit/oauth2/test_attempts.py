"""``browser.Attempts``: one attempt counted toward several throttles, given back to all."""

from __future__ import annotations

import pytest

from restguard.authz.ratelimit import MemoryRateLimiter, Verdict
from restguard.errors import BackendUnavailable
from restguard.oauth2.browser import AddressThrottle, Attempts, account_key


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Down(MemoryRateLimiter):
    """A limiter that cannot be reached."""

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        raise BackendUnavailable(debug="down")


async def test_an_attempt_counts_toward_each_and_the_longest_wait_wins() -> None:
    limiter = MemoryRateLimiter(Clock())
    wide, narrow = AddressThrottle(limiter, "a", 10, 60.0), AddressThrottle(limiter, "b", 2, 60.0)
    for _ in range(2):
        assert await Attempts(((wide, "x"), (narrow, "y"))).count() is None
    wait = await Attempts(((wide, "x"), (narrow, "y"))).count()
    assert wait is not None and wait >= 1  # the narrow one refuses
    assert await Attempts(((wide, "x"), (narrow, "other"))).count() is None  # keys are separate


async def test_given_back_to_every_throttle_it_counted_toward() -> None:
    limiter = MemoryRateLimiter(Clock())
    one, two = AddressThrottle(limiter, "a", 1, 60.0), AddressThrottle(limiter, "b", 1, 60.0)
    attempts = Attempts(((one, "k"), (two, "k")))
    assert await attempts.count() is None
    await attempts.give_back()
    assert await Attempts(((one, "k"), (two, "k"))).count() is None  # both free again


async def test_a_counter_that_is_down_gives_back_what_was_counted_and_fails_closed() -> None:
    limiter = MemoryRateLimiter(Clock())
    up = AddressThrottle(limiter, "a", 1, 60.0)
    with pytest.raises(BackendUnavailable):
        await Attempts(((up, "k"), (AddressThrottle(Down(Clock()), "b"), "k"))).count()
    assert await Attempts(((up, "k"),)).count() is None  # the first count was given back


def test_account_keys_fold_case_and_keep_unknown_names_apart() -> None:
    assert account_key("Alice") == account_key("alice")
    assert account_key("al ice") != account_key("alice")  # no user can have it: its own key
    assert len(account_key("x" * 10_000)) == 32
