"""What routing through lucky_litellm costs inside a LiteLLM proxy: requests/s, one run, one proxy.

One real `litellm --config configs/proxy.yaml` proxy (our hook and provider installed) in front of
the fake upstream (`python -m lucky_litellm.testing`, its own process), driven by an async HTTP
client at a fixed concurrency. Scenarios, each in interleaved rounds so drift hits all alike:

* ``plain``           - ``local/llama3.2``, an ordinary deployment: the baseline (the hook only
                        stamps the caller's identity);
* ``tier_deployment`` - ``tier:low``, one model that the proxy serves: the hook rewrites the
                        request to that deployment (the deployment route);
* ``tier_engine``     - ``tier:medium``, one model the proxy does not list: the ``lucky`` provider
                        runs it through the engine with one nested ``litellm.acompletion``;
* ``race_engine``     - ``user:bench:race``, a two-model race through the engine.

    python benchmarks/bench_proxy.py            # 300 requests per scenario, concurrency 20
    python benchmarks/bench_proxy.py --quick    # 60 requests per scenario
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import upstream_process
from lucky_litellm.proxy.launcher import ProxyProcess

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-bench-master"
SCENARIOS = {
    "plain": "local/llama3.2",
    "tier_deployment": "tier:low",
    "tier_engine": "tier:medium",
    "race_engine": "user:bench:race",
}
MODELS_YAML = """
provider: local
providers:
  local:
    apiBase: {base}
    models: {{low: local/llama3.2, medium: local/medium-m}}
defaults: {{retries: 0}}
rollout: {{enabled: true, percent: 100}}
users:
  bench:
    experiments:
      race: {{strategy: race, providers: [local/race-a, local/race-b]}}
"""


async def _load(client: httpx.AsyncClient, model: str, requests: int, concurrency: int) -> tuple[float, int]:
    """Send `requests` chat completions, `concurrency` at a time; returns (seconds, errors)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "user": "bench"}
    remaining = iter(range(requests))
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for _ in remaining:
            answer = await client.post("/v1/chat/completions", json=body)
            if answer.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, errors


async def _measure(base_url: str, requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    per_round = requests // rounds
    samples: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    errors = dict.fromkeys(SCENARIOS, 0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        for model in SCENARIOS.values():  # warm-up: first calls build clients and caches
            _, failed = await _load(client, model, 2 * concurrency, concurrency)
            if failed:
                raise RuntimeError(f"{model}: {failed} failed requests during warm-up")
        names = list(SCENARIOS)
        for round_index in range(rounds):
            shift = round_index % len(names)  # rotate the order: no scenario always runs first
            for name in names[shift:] + names[:shift]:
                seconds, failed = await _load(client, SCENARIOS[name], per_round, concurrency)
                samples[name].append(per_round / seconds)
                errors[name] += failed
    rps = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "unit": "requests/s (median of rounds)",
        "requests": per_round * rounds,
        "concurrency": concurrency,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "rps": {name: round(value, 1) for name, value in rps.items()},
        "rps_rounds": {name: [round(v, 1) for v in values] for name, values in samples.items()},
        "ratio_to_plain": {name: round(value / rps["plain"], 3) for name, value in rps.items()},
        "errors": errors,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Start upstream and proxy, measure every scenario, stop both; returns the numbers."""
    requests, concurrency, rounds = (60, 20, 2) if quick else (200, 20, 3)
    with upstream_process() as base, tempfile.TemporaryDirectory(prefix="bench-proxy-") as workdir:
        models_yaml = Path(workdir) / "models.yaml"
        models_yaml.write_text(MODELS_YAML.format(base=base))
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LUCKY_MODELS_CONFIG": str(models_yaml),
            "LUCKY_LOCAL_API_BASE": base,
        }
        with ProxyProcess(ROOT / "configs" / "proxy.yaml", env=env) as proxy:
            return asyncio.run(_measure(proxy.url, requests, concurrency, rounds))


def _print(results: dict[str, Any]) -> None:
    print(
        f"proxy throughput, {results['requests']} requests per scenario at concurrency "
        f"{results['concurrency']}, median of {results['rounds']} interleaved rounds, {results['cpus']} CPUs"
    )
    for name, model in SCENARIOS.items():
        print(
            f"  {name:<16} {model:<18} {results['rps'][name]:>8.1f} req/s"
            f"   x{results['ratio_to_plain'][name]:.2f} of plain   errors: {results['errors'][name]}"
        )


if __name__ == "__main__":
    outcome = run(quick="--quick" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps(outcome, indent=2))
    else:
        _print(outcome)
