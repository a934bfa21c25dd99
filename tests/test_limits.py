"""The per-user concurrency limiter, on its own (the end-to-end limit is in test_strategies)."""

import asyncio
import threading

import pytest

from lucky_litellm import ConcurrencyLimitError
from lucky_litellm.limits import ConcurrencyLimiter


async def test_requests_beyond_the_limit_wait_for_a_released_slot():
    limiter = ConcurrencyLimiter()
    await limiter.acquire("u", 1, 1.0)
    waiter = asyncio.create_task(limiter.acquire("u", 1, 5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    limiter.release("u")
    await asyncio.wait_for(waiter, 1.0)
    assert limiter.in_flight("u") == 1
    limiter.release("u")
    assert limiter.in_flight("u") == 0


async def test_a_waiter_gives_up_at_its_deadline_with_a_typed_error():
    limiter = ConcurrencyLimiter()
    await limiter.acquire("u", 1, 1.0)
    with pytest.raises(ConcurrencyLimitError, match="already has 1 requests in flight"):
        await limiter.acquire("u", 1, 0.01)
    limiter.release("u")
    assert limiter.in_flight("u") == 0


async def test_a_cancelled_waiter_does_not_leak_the_slot_handed_to_it():
    limiter = ConcurrencyLimiter()
    await limiter.acquire("u", 1, 1.0)
    waiter = asyncio.create_task(limiter.acquire("u", 1, 5.0))
    await asyncio.sleep(0)
    limiter.release("u")  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.in_flight("u") == 0


def test_the_limit_holds_across_threads_with_their_own_loops():
    limiter = ConcurrencyLimiter()
    peak = 0
    active = 0
    lock = threading.Lock()

    async def one() -> None:
        nonlocal peak, active
        await limiter.acquire("u", 2, 5.0)
        with lock:
            active += 1
            peak = max(peak, active)
        await asyncio.sleep(0.005)
        with lock:
            active -= 1
        limiter.release("u")

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(10)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak == 2
    assert limiter.in_flight("u") == 0
