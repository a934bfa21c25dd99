"""Circuit breakers across a fleet: a fallback whose first model hangs, two processes sharing Redis.

    python -m benchmarks.bench_health [--quick]

The upstream (its own process) hangs on the first model and answers the second in 20 ms. Two
worker processes share one `redis-server`; each sends its half of the requests through a
`fallback` of [dead, healthy] with an experiment timeout of 2 s (so the dead model's turn ends
after 1 s), concurrency 10 per process. The first wave pays that second and opens the circuit;
after it, requests skip the dead model and one probe per cooldown, across the fleet, finds out
whether it is back. Measured in the same workers, interleaved with it in rounds:

* the healthy model alone through lucky (`first`): the latency the fallback should approach;
* LiteLLM's Router with the same two deployments (``fallbacks``), ``allowed_fails`` and the same
  cooldown, its cooldown cache shared through the same Redis: the anchor.

"After the circuit opens" means the requests that started after the first request that did not
call the dead model (for the Router, which cannot say, one that did not wait on it; when none did,
lucky's moment). Requests sent to the dead model after that: lucky's from each answer's routing
record, the Router's from its waits; the target is processes x probes per cooldown elapsed.

Then the workers measure what circuits cost on the hot path when every circuit is closed:
`first` on litellm's `mock_response` with circuits off, and on and shared through Redis, in
interleaved rounds at concurrency 50 (CPU per call; a ratio of about 1 is the goal), each worker
its half of the rounds, both at once (CPU time per call is each process's own).

Under `make bench` the LiteLLM Router anchor is given `allowed_fails=4` (cooldown on the 5th
failure, as lucky's default) and the same 2 s cooldown: with litellm's default value (3) it treats
a single-deployment group as "not set" and never cools it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks.common import (
    KEY,
    MESSAGES,
    Call,
    Progress,
    interleaved,
    paired_ratio,
    parser,
    percentile,
    quiet_litellm,
    scripted_upstream,
    stop_children_on_signals,
    throughput,
)

DEAD, HEALTHY = "gpt-4.1-mini", "gpt-4.1-nano"
PROCESSES = 2
CONCURRENCY = 10
TIMEOUT_MS = 2000
COOLDOWN_S = 2.0
HEALTHY_MS = 20
WAITED_S = 0.5
"""An answer slower than this waited on the dead model (its turn is 1 s; the healthy one 20 ms)."""
LATENCY_TARGET = 1.2
ROUTER_ALLOWED_FAILS = 4
"""Cooldown on the 5th failure, as lucky's default 5 in a row (3 is litellm's default value, which
the Router treats as "not set": no cooldown for a single-deployment group)."""
OVERHEAD_ROUNDS = 6
"""Rounds of circuits on vs off, in all: each worker runs its share of them."""
ROUTER_SHARE = 0.05
"""The Router runs this share of lucky's requests: while its deployment hangs, each one takes 1 s."""


# -- a worker process ---------------------------------------------------------------------------


Sample = tuple[float, float, bool]
"""(start, latency, whether the dead model was called): monotonic seconds, system-wide on Linux."""


async def _load(call: Any, requests: int) -> list[Sample]:
    """`requests` calls, CONCURRENCY at a time, each call returning whether it called the dead model."""
    out: list[Sample] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.monotonic()
            try:
                dead = await call()
            except Exception:  # e.g. the 2 s deadline on a loaded machine: a slow answer, not a crash
                dead = True
            out.append((started, time.monotonic() - started, bool(dead)))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return out


async def _worker(
    api_base: str, redis_url: str, prefix: str, requests: int, rounds: int, overhead_calls: int
) -> dict[str, Any]:
    import litellm

    from lucky_litellm import Models, routing_of
    from lucky_litellm.state import state_from_url

    quiet_litellm()
    logging.getLogger("lucky_litellm.health").setLevel(logging.ERROR)  # "circuit opened" lines
    config = {
        "providers": {"openai": {"apiBase": api_base}},
        "defaults": {"retries": 0},
        "health": {"circuit": {"cooldown": COOLDOWN_S * 1000}},
        "users": {
            "bench": {
                "experiments": {
                    "fallback": {
                        "strategy": "fallback",
                        "providers": [f"openai/{DEAD}", f"openai/{HEALTHY}"],
                        "timeout": TIMEOUT_MS,
                    },
                    "alone": {"strategy": "first", "providers": [f"openai/{HEALTHY}"], "timeout": TIMEOUT_MS},
                }
            }
        },
    }
    models = Models(config, state=state_from_url(redis_url, prefix=prefix), environ={"OPENAI_API_KEY": KEY})
    await models.warm_up()
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    router = litellm.Router(
        model_list=[
            {
                "model_name": "primary",
                "litellm_params": {
                    "model": f"openai/{DEAD}",
                    "api_base": api_base,
                    "api_key": KEY,
                    "timeout": TIMEOUT_MS / 2000,
                },
            },
            {
                "model_name": "backup",
                "litellm_params": {"model": f"openai/{HEALTHY}", "api_base": api_base, "api_key": KEY},
            },
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
        allowed_fails=ROUTER_ALLOWED_FAILS,
        cooldown_time=COOLDOWN_S,
        redis_host=host,
        redis_port=int(port),
    )

    async def lucky() -> bool:
        response = await models.complete("user:bench:fallback", MESSAGES)
        return any(
            a.model == f"openai/{DEAD}" and a.outcome != "skipped" for a in routing_of(response).attempts
        )

    async def alone() -> bool:
        await models.complete("user:bench:alone", MESSAGES)
        return False

    messages: Any = MESSAGES  # litellm's Router types messages as its TypedDicts

    async def routed() -> bool:
        started = time.monotonic()
        await router.acompletion(model="primary", messages=messages)
        return time.monotonic() - started >= WAITED_S  # it waited on the dead deployment

    for warm in (alone, lambda: router.acompletion(model="backup", messages=messages)):
        for _ in range(20):  # first calls build clients and load what litellm loads lazily
            with contextlib.suppress(Exception):
                await warm()
    print("READY", flush=True)
    sys.stdin.readline()  # both workers start together

    results: dict[str, list[Sample]] = {"lucky": [], "alone": [], "router": []}
    variants = {"lucky": lucky, "alone": alone, "router": routed}
    per_round = {
        "lucky": max(requests // rounds, 1),
        "alone": max(requests // rounds // 4, 1),
        "router": max(int(requests * ROUTER_SHARE) // rounds, CONCURRENCY),
    }
    for index in range(rounds):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name] += await _load(variants[name], per_round[name])
    out: dict[str, Any] = dict(results)
    if overhead_calls:
        out["overhead"] = await _overhead(redis_url, prefix, overhead_calls)
    return out


async def _measure(variant: Call, *, calls: int, concurrency: int) -> Any:
    return await throughput(variant, calls, concurrency)


async def _overhead(redis_url: str, prefix: str, calls: int) -> dict[str, list[float]]:
    """The hot path with circuits off, and on and shared through Redis (every circuit closed):
    `first` on litellm's `mock_response`, interleaved rounds at c=50, CPU µs per call in each
    round. Both registries keep their state in the same Redis (other prefixes than the fleet's).
    Every worker runs its share of the rounds once the fleet part is over, at the same time."""
    from lucky_litellm import Models
    from lucky_litellm.state import state_from_url

    def registry(circuits: bool) -> Any:
        config = {
            "providers": {"openai": {"apiBase": "http://127.0.0.1:9/v1"}},
            "health": {"circuit": {"enabled": circuits}},
        }
        state = state_from_url(redis_url, prefix=f"{prefix}{'on' if circuits else 'off'}:")
        return Models(config, state=state, environ={"OPENAI_API_KEY": KEY})

    off, on = registry(False), registry(True)

    def call(models: Any) -> Call:
        return lambda: models.complete(f"openai/{HEALTHY}", MESSAGES, mock_response="Paris.")

    variants = {"off": call(off), "on": call(on)}
    for variant in variants.values():
        for _ in range(50):
            await variant()
    rounds = OVERHEAD_ROUNDS // PROCESSES
    loads = await interleaved(variants, functools.partial(_measure, calls=calls, concurrency=50), rounds)
    return {name: [load.cpu_us_per_request for load in values] for name, values in loads.items()}


def _overhead_summary(per_worker: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Every worker's rounds together: CPU per call (median) and the median of per-round ratios,
    each round's two figures from the same process, seconds apart."""
    cpu = {name: [value for rounds in per_worker for value in rounds[name]] for name in ("off", "on")}
    return {
        "rounds": len(cpu["on"]),
        "cpu_us_per_call": {name: round(statistics.median(values), 1) for name, values in cpu.items()},
        "on/off": round(paired_ratio(cpu["on"], cpu["off"]), 3),
    }


def worker_main(args: list[str]) -> None:
    api_base, redis_url, prefix, requests, rounds, overhead_calls = args
    result = asyncio.run(
        _worker(api_base, redis_url, prefix, int(requests), int(rounds), int(overhead_calls))
    )
    print(json.dumps(result), flush=True)


# -- the parent -----------------------------------------------------------------------------------


def _after_opening(samples: list[Sample], otherwise: float | None = None) -> tuple[float, list[Sample]]:
    """When the first request that did not call the dead model started (or `otherwise`, when
    none did), and the requests started after it."""
    ordered = sorted(samples)
    skipped = [start for start, _, dead in ordered if not dead]
    opened = skipped[0] if skipped else (otherwise if otherwise is not None else ordered[0][0])
    return opened, [sample for sample in ordered if sample[0] > opened]


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from lucky_litellm.testing.redis_server import RedisServer

    requests = 400 if quick else 1000  # per process: 2,000 for the fleet
    rounds = 4 if quick else 5
    overhead_calls = 100 if quick else 150  # per round and variant, circuits on vs off
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    step = Progress("health")
    started = time.perf_counter()
    script: dict[str, dict[str, Any]] = {DEAD: {"hang": True}, HEALTHY: {"fast_ms": HEALTHY_MS}}
    with RedisServer() as redis_server, scripted_upstream(script) as upstream:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_health",
                    "--worker",
                    upstream.base_url,
                    redis_server.url,
                    prefix,
                    str(requests),
                    str(rounds),
                    str(overhead_calls),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(PROCESSES)
        ]
        try:
            for worker in workers:
                assert worker.stdout is not None
                line = worker.stdout.readline().strip()
                if line != "READY":
                    raise RuntimeError(f"bench_health worker did not start: {line!r}")
            step(f"{PROCESSES} workers ready (litellm imported, clients warm)")
            before = upstream.reset()
            go = time.monotonic()
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            outputs = []
            for worker in workers:
                assert worker.stdout is not None
                outputs.append(json.loads(worker.stdout.readline()))
            ended = time.monotonic()
            step("fleet and circuits on/off measured")
            counts = upstream.counts()
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    del before
    samples: dict[str, list[Sample]] = {"lucky": [], "alone": [], "router": []}
    for output in outputs:
        for name in samples:
            samples[name] += [
                (float(start), float(latency), bool(dead)) for start, latency, dead in output[name]
            ]
    opened, lucky_after = _after_opening(samples["lucky"])
    _, router_after = _after_opening(samples["router"], otherwise=opened)
    lucky_span = max(start for start, _, _ in samples["lucky"]) - opened
    cooldowns = max(1, math.ceil(lucky_span / COOLDOWN_S))
    summary_lucky = _summary([latency for _, latency, _ in lucky_after])
    summary_alone = _summary([latency for _, latency, _ in samples["alone"]])
    summary_router = _summary([latency for _, latency, _ in router_after])
    return {
        "processes": PROCESSES,
        "concurrency_per_process": CONCURRENCY,
        "cooldown_s": COOLDOWN_S,
        "fleet_requests": {name: len(values) for name, values in samples.items()},
        "lucky_after_open": summary_lucky,
        "lucky_all": _summary([latency for _, latency, _ in samples["lucky"]]),
        "alone": summary_alone,
        "router_after_open": summary_router,
        "p50_ratio": round(summary_lucky["p50_ms"] / summary_alone["p50_ms"], 3),
        "p99_ratio": round(summary_lucky["p99_ms"] / summary_alone["p99_ms"], 3),
        "router_p99_over_lucky": round(summary_router["p99_ms"] / summary_lucky["p99_ms"], 2),
        "dead_requests_after_open": {
            "lucky": sum(dead for _, _, dead in lucky_after),
            "router": sum(dead for _, _, dead in router_after),
            "allowed": PROCESSES * cooldowns,
            "cooldowns_elapsed": cooldowns,
        },
        "upstream_calls_to_dead_model": counts.get(DEAD, 0),
        "overhead": _overhead_summary([output["overhead"] for output in outputs if "overhead" in output]),
        "run_s": round(ended - go, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) for `benchmarks.run`'s table."""
    dead = result["dead_requests_after_open"]
    overhead = result.get("overhead", {})
    lucky, alone, router = result["lucky_after_open"], result["alone"], result["router_after_open"]
    return [
        (
            "circuit open: p50 fallback / healthy model alone",
            f"{result['p50_ratio']:.2f}",
            f"<= {LATENCY_TARGET}",
            result["p50_ratio"] <= LATENCY_TARGET,
        ),
        (
            "circuit open: p99 fallback / healthy model alone",
            f"{result['p99_ratio']:.2f}",
            f"<= {LATENCY_TARGET}",
            result["p99_ratio"] <= LATENCY_TARGET,
        ),
        (
            "circuit open: requests to the dead model (fleet)",
            f"{dead['lucky']} (Router: {dead['router']})",
            f"<= {dead['allowed']} (2 x {dead['cooldowns_elapsed']} cooldowns)",
            dead["lucky"] <= dead["allowed"],
        ),
        (
            "circuit open: p99 LiteLLM Router / lucky",
            f"{result['router_p99_over_lucky']:.2f}x",
            "> 1 (lucky lower)",
            result["router_p99_over_lucky"] > 1,
        ),
        (
            "circuits on (Redis) / off, CPU per call, mock, c=50",
            f"{overhead.get('on/off', float('nan')):.3f} ({overhead.get('cpu_us_per_call', {})} us)",
            "report (~1.00)",
            None,
        ),
        (
            "  p50 / p99 ms: lucky, alone, Router",
            f"{lucky['p50_ms']}/{lucky['p99_ms']}, {alone['p50_ms']}/{alone['p99_ms']}, "
            f"{router['p50_ms']}/{router['p99_ms']}",
            "report",
            None,
        ),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:  # internal: one side of the fleet comparison, started by run()
        worker_main(argv[1:])
        return 0
    args = parser("benchmarks.bench_health", __doc__).parse_args(argv)
    with stop_children_on_signals():
        result = run(args.quick)
    print(json.dumps(result, indent=2))
    for measure, value, target, met in rows(result):
        mark = "-" if met is None else ("PASS" if met else "FAIL")
        print(f"{measure:<52} {value:<28} {target:<26} {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
