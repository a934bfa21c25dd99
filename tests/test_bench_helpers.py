"""The pieces that keep `make bench`'s latency benchmarks short and fair: the tailed upstream's
slow-call pattern and the adaptive-hedging benchmark's way of running its settings side by side."""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks import bench_adaptive_hedging
from benchmarks.upstream import tail_latency


def test_a_tailed_model_has_one_slow_call_in_each_block_of_one_over_share() -> None:
    """5 % slow: one call in each block of 20, so a hedge model's first few dozen calls hold one
    or two slow ones, not 4 in 21 as independent draws gave for seed 1."""
    latency = tail_latency(20.0, 2000.0, 0.05, seed=1)
    slow = [index for index in range(2000) if latency(index) == 2000.0]
    assert [index // 20 for index in slow] == list(range(100))
    assert all(latency(index) == 20.0 for index in range(2000) if index not in slow)


def test_the_pattern_is_fixed_by_seed_and_differs_between_seeds() -> None:
    first, again, other = (tail_latency(20.0, 2000.0, 0.05, seed) for seed in (0, 0, 1))
    assert [first(i) for i in range(400)] == [again(i) for i in range(400)]
    assert [first(i) for i in range(400)] != [other(i) for i in range(400)]


class _Recorder:
    """A stand-in for one setting: records its calls, and how many of them were in flight."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    async def call(self, number: int, *, late: bool = False, record: bool = True) -> None:
        _Recorder.in_flight += 1
        _Recorder.most_in_flight = max(_Recorder.most_in_flight, _Recorder.in_flight)
        self.calls.append((number, late))
        await asyncio.sleep(0)
        _Recorder.in_flight -= 1


def test_every_setting_gets_its_requests_and_the_slowdown_falls_halfway() -> None:
    settings = [_Recorder() for _ in range(5)]
    halfway: list[int] = []

    def slow_down() -> None:
        halfway.append(sum(len(setting.calls) for setting in settings))

    dealt: Any = bench_adaptive_hedging._dealt
    asyncio.run(dealt(settings, 30, halfway=slow_down))
    assert halfway == [75]  # once, after half of the 150 requests started
    for setting in settings:
        assert sorted(number for number, _ in setting.calls) == list(range(30))  # request n of each
        assert sum(late for _, late in setting.calls) == 15  # each straddles the slowdown alike
    assert _Recorder.most_in_flight == bench_adaptive_hedging.CONCURRENCY  # all settings share the callers
