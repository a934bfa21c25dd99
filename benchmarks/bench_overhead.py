"""What lucky_litellm costs on top of litellm: throughput ratios and added latency per call.

* throughput at concurrency 50 of `Models.complete(<concrete model>)` (strategy `first`) against
  raw `litellm.acompletion`, on `mock_response` (no I/O: the pure CPU cost) and through HTTP to the
  fake upstream (run as a separate process);
* the same for a 2-model fallback against litellm's `Router` with the same fallback;
* added latency (ours − raw) at concurrency 1, p50 and p99.

    python -m benchmarks.bench_overhead [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from benchmarks.common import KEY, MESSAGES, interleaved, latencies, median, percentile, quiet_litellm, throughput
from benchmarks.common import upstream_process

PRIMARY, BACKUP = "openai/gpt-4.1-mini", "openai/gpt-4.1-nano"


def _variants(api_base: str, mock: bool) -> dict[str, Any]:
    import litellm

    from lucky_litellm import Models

    extra: dict[str, Any] = {"mock_response": "Paris."} if mock else {}
    models = Models(
        {"providers": {"openai": {"apiBase": api_base}}, "defaults": {"retries": 0}},
        environ={"OPENAI_API_KEY": KEY},
    )
    models.load_user_config("bench", {"experiments": {"fb": {"strategy": "fallback", "providers": [PRIMARY, BACKUP]}}})
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": PRIMARY, "api_base": api_base, "api_key": KEY}},
            {"model_name": "backup", "litellm_params": {"model": BACKUP, "api_base": api_base, "api_key": KEY}},
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


async def _throughput(api_base: str, mock: bool, requests: int, rounds: int) -> dict[str, Any]:
    variants = _variants(api_base, mock)
    for call in variants.values():  # warm-up: clients, caches, first-call imports
        await throughput(call, 100, 20)
    results = await interleaved(variants, lambda call: throughput(call, requests, 50), rounds)
    rps = {name: median(values) for name, values in results.items()}
    return {
        "requests_per_s": {name: round(value, 1) for name, value in rps.items()},
        "ratio_first": round(rps["ours"] / rps["raw"], 3),
        "ratio_fallback": round(rps["ours_fallback"] / rps["raw"], 3),
        "ratio_router": round(rps["router_fallback"] / rps["raw"], 3),
        "rounds": {name: [round(v, 1) for v in values] for name, values in results.items()},
    }


async def _added_latency(api_base: str, requests: int, rounds: int) -> dict[str, Any]:
    variants = _variants(api_base, mock=False)
    pair = {"raw": variants["raw"], "ours": variants["ours"]}
    for call in pair.values():
        await latencies(call, 30)
    results = await interleaved(pair, lambda call: latencies(call, requests), rounds)
    raw = [x for values in results["raw"] for x in values]
    ours = [x for values in results["ours"] for x in values]
    return {
        "raw_p50_us": round(percentile(raw, 0.5) * 1e6),
        "ours_p50_us": round(percentile(ours, 0.5) * 1e6),
        "added_p50_us": round((percentile(ours, 0.5) - percentile(raw, 0.5)) * 1e6),
        "added_p99_us": round((percentile(ours, 0.99) - percentile(raw, 0.99)) * 1e6),
    }


async def _run(quick: bool) -> dict[str, Any]:
    quiet_litellm()
    requests, rounds = (300, 3) if quick else (1000, 5)
    result: dict[str, Any] = {"mock": await _throughput("http://127.0.0.1:9/v1", True, requests, rounds)}
    with upstream_process() as api_base:
        result["http"] = await _throughput(api_base, False, requests // 2, rounds)
        result["latency_c1"] = await _added_latency(api_base, 100 if quick else 300, rounds)
    return result


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
