"""What lucky_litellm costs on top of litellm: throughput ratios and added latency per call.

* Throughput at concurrency 50 of `Models.complete(<concrete model>)` (strategy `first`) against
  raw `litellm.acompletion`, on `mock_response` (no I/O: litellm's CPU path, ~4 ms a call here) and
  through HTTP to the fake upstream (in its own process, see `common.upstream_process`).
* The same for a 2-model `fallback` experiment against litellm's `Router` with the same fallback
  (two deployments, `fallbacks=[{"primary": ["backup"]}]`, `num_retries=0`). In the happy path the
  primary answers, so all variants make exactly one litellm call per request: the ratio is the
  price of the fallback machinery itself. A second HTTP scenario takes the primary down (every
  call gets a 503): ours and the Router then both make two upstream calls per request, which the
  upstream's own counters confirm, and their throughputs are compared directly.
* Added latency per call at concurrency 1 (ours − raw), p50 and p99, twice: with
  `litellm.acompletion` replaced by a stub returning a prebuilt response (exactly the time
  lucky_litellm's own code adds, free of litellm's and the network's noise), and end to end
  through HTTP.

Ratios are medians of per-round ratios over interleaved rounds (see `common`).

    python -m benchmarks.bench_overhead [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import sys
from collections.abc import Iterator
from typing import Any

from benchmarks.common import (
    KEY,
    MESSAGES,
    Call,
    Load,
    interleaved,
    latencies,
    paired_ratio,
    percentile,
    quiet_litellm,
    scripted_upstream,
    throughput,
)

PRIMARY, BACKUP = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"
CONCURRENCY = 50
MOCK_BASE = "http://127.0.0.1:9/v1"  # never contacted: mock_response answers before any I/O


def _variants(api_base: str, mock: bool) -> dict[str, Call]:
    """raw acompletion, ours (first), ours (fallback), Router (fallback): same model, same answer."""
    import litellm

    from lucky_litellm import Models

    extra: dict[str, Any] = {"mock_response": "Paris."} if mock else {}
    models = Models(
        {"providers": {"openai": {"apiBase": api_base}}, "defaults": {"retries": 0}},
        environ={"OPENAI_API_KEY": KEY},
    )
    models.load_user_config(
        "bench", {"experiments": {"fb": {"strategy": "fallback", "providers": [PRIMARY, BACKUP]}}}
    )
    router = litellm.Router(
        model_list=[
            {
                "model_name": "primary",
                "litellm_params": {"model": PRIMARY, "api_base": api_base, "api_key": KEY},
            },
            {
                "model_name": "backup",
                "litellm_params": {"model": BACKUP, "api_base": api_base, "api_key": KEY},
            },
        ],
        fallbacks=[{"primary": ["backup"]}],
        num_retries=0,
    )

    async def raw() -> Any:
        return await litellm.acompletion(
            model=PRIMARY, messages=MESSAGES, api_base=api_base, api_key=KEY, max_retries=0, **extra
        )

    async def ours() -> Any:
        return await models.complete(PRIMARY, MESSAGES, **extra)

    async def ours_fallback() -> Any:
        return await models.complete("user:bench:fb", MESSAGES, **extra)

    async def router_fallback() -> Any:
        return await router.acompletion(model="primary", messages=MESSAGES, **extra)

    return {"raw": raw, "ours": ours, "ours_fallback": ours_fallback, "router_fallback": router_fallback}


def _summary(results: dict[str, list[Load]], base: str) -> dict[str, Any]:
    rps = {name: [load.requests_per_s for load in loads] for name, loads in results.items()}
    cpu = {name: [load.cpu_us_per_request for load in loads] for name, loads in results.items()}
    return {
        "requests_per_s": {name: round(statistics.median(v), 1) for name, v in rps.items()},
        "cpu_us_per_request": {name: round(statistics.median(v)) for name, v in cpu.items()},
        # throughput ratio (median of per-round ratios) and, as a cross-check, the CPU-time ratio
        "ratio": {name: round(paired_ratio(v, rps[base]), 3) for name, v in rps.items() if name != base},
        "cpu_ratio": {name: round(paired_ratio(cpu[base], v), 3) for name, v in cpu.items() if name != base},
        "rounds_rps": {name: [round(x) for x in v] for name, v in rps.items()},
    }


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """litellm leaves ~200 MB of import-time objects that each full collection rescans; the
    pauses land on whichever variant triggers them and swamp the difference being measured.
    Freezing them (as long-running servers do) removes that noise for all variants alike."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _throughput(variants: dict[str, Call], requests: int, rounds: int) -> dict[str, Any]:
    for call in variants.values():  # warm-up: clients, caches, first-call imports, logging worker
        await throughput(call, 100, 20)
    with _frozen_heap():
        results = await interleaved(variants, lambda call: throughput(call, requests, CONCURRENCY), rounds)
    return _summary(results, "raw")


async def _primary_down(requests: int, rounds: int) -> dict[str, Any]:
    """Fallback with the primary answering 503: ours vs Router, both two upstream calls a request."""
    script = {"gpt-4.1-mini": {"status": 503}, "gpt-4.1-nano": {}}
    with scripted_upstream(script) as upstream:
        variants = _variants(upstream.base_url, mock=False)
        pair = {"ours_fallback": variants["ours_fallback"], "router_fallback": variants["router_fallback"]}
        calls_per_request = {}
        for name, call in pair.items():  # warm-up, and a check that both really do the same work
            before = upstream.counts()
            await throughput(call, 40, 10)
            after = upstream.counts()
            calls_per_request[name] = {m: (after[m] - before[m]) / 40 for m in after}
        with _frozen_heap():
            results = await interleaved(pair, lambda call: throughput(call, requests, CONCURRENCY), rounds)
    summary = _summary(results, "router_fallback")
    return {
        "requests_per_s": summary["requests_per_s"],
        "ours_vs_router": summary["ratio"]["ours_fallback"],
        "ours_vs_router_cpu": summary["cpu_ratio"]["ours_fallback"],
        "upstream_calls_per_request": calls_per_request,
        "rounds_rps": summary["rounds_rps"],
    }


def _added(ours: list[float], raw: list[float]) -> dict[str, float]:
    return {
        "raw_p50_us": round(percentile(raw, 0.5) * 1e6, 1),
        "ours_p50_us": round(percentile(ours, 0.5) * 1e6, 1),
        "added_p50_us": round((percentile(ours, 0.5) - percentile(raw, 0.5)) * 1e6, 1),
        "added_p99_us": round((percentile(ours, 0.99) - percentile(raw, 0.99)) * 1e6, 1),
    }


async def _added_latency_http(api_base: str, requests: int, rounds: int) -> dict[str, float]:
    variants = _variants(api_base, mock=False)
    pair = {"raw": variants["raw"], "ours": variants["ours"]}
    for call in pair.values():
        await latencies(call, 30)
    with _frozen_heap():
        results = await interleaved(pair, lambda call: latencies(call, requests), rounds)
    return _added([x for r in results["ours"] for x in r], [x for r in results["raw"] for x in r])


async def _added_latency_layer(requests: int, rounds: int) -> dict[str, Any]:
    """Per-call cost of lucky_litellm's own code: litellm.acompletion answers instantly."""
    import litellm

    variants = _variants(MOCK_BASE, mock=False)
    models_calls = {"first": variants["ours"], "fallback": variants["ours_fallback"]}
    real = litellm.acompletion
    response = await real(model=PRIMARY, messages=MESSAGES, mock_response="Paris.")

    async def stub(**_: Any) -> Any:
        await asyncio.sleep(0)  # one trip through the event loop, as any real call makes
        return response

    litellm.acompletion = stub
    try:
        calls = {"raw": variants["raw"], **models_calls}
        for call in calls.values():
            await latencies(call, 300)
        with _frozen_heap():
            results = await interleaved(calls, lambda call: latencies(call, requests), rounds)
    finally:
        litellm.acompletion = real
    raw = [x for r in results["raw"] for x in r]
    return {name: _added([x for r in results[name] for x in r], raw) for name in models_calls}


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    requests, rounds = (100, 4) if quick else (150, 8)
    result: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "requests_per_round": requests,
        "rounds": rounds,
        "layer_c1": await _added_latency_layer(2000 if quick else 5000, 3 if quick else 5),
        "mock": await _throughput(_variants(MOCK_BASE, mock=True), requests, rounds),
    }
    with scripted_upstream({}) as upstream:
        result["http"] = await _throughput(_variants(upstream.base_url, mock=False), requests, rounds)
        result["latency_c1_http"] = await _added_latency_http(upstream.base_url, 40 if quick else 100, rounds)
    result["http_primary_down"] = await _primary_down(requests // 2, max(2, rounds // 2))
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; see the module docstring for what is measured."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
