"""What routing through lucky_litellm costs inside a LiteLLM proxy: requests/s, one run, one proxy.

One real `litellm --config configs/proxy.yaml` proxy (our hook and provider installed) in front of
the fake upstream (`python -m lucky_litellm.testing`, its own process), driven by an async HTTP
client at a fixed concurrency. Scenarios, measured in interleaved rounds so drift hits all alike:

* ``plain``             ``local/llama3.2``: an ordinary deployment, the baseline (the hook only
                        stamps the caller's identity);
* ``tier_deployment``   ``tier:low``: one model that the proxy lists; the hook rewrites the request
                        to that deployment;
* ``tier_registered``   ``tier:medium``: one model the proxy does not list; the hook registers a
                        Router deployment for it once, then rewrites to it;
* ``engine_first``      ``user:bench:solo``: one model whose owner has ``maxConcurrent``, so the
                        slot is held by the engine route (the ``lucky`` provider, one nested call);
* ``race_engine``       ``user:bench:race``: a two-model race through the engine route.

    python -m benchmarks.bench_proxy            # 300 requests x 5 rounds per scenario, concurrency 20
    python benchmarks/bench_proxy.py --quick    # 60 x 2, a smoke test
    python benchmarks/bench_proxy.py --json     # the numbers as JSON
    python benchmarks/bench_proxy.py --list     # the scenarios and targets, without running
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

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.common import upstream_process

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-bench-master"
SCENARIOS = {
    "plain": "local/llama3.2",
    "tier_deployment": "tier:low",
    "tier_registered": "tier:medium",
    "engine_first": "user:bench:solo",
    "race_engine": "user:bench:race",
}
TARGETS = {"tier_deployment": 0.95, "tier_registered": 0.95, "engine_first": 0.85, "race_engine": 0.80}
"""Ratios to `plain` the issue asks for (the deployment route, the engine route, a race)."""

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
      solo: {{providers: [local/solo-s]}}
      race: {{strategy: race, providers: [local/race-a, local/race-b]}}
    defaults: {{maxConcurrent: 1000}}
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


async def _measure(base_url: str, per_round: int, concurrency: int, rounds: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    samples: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    errors = dict.fromkeys(SCENARIOS, 0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        for model in SCENARIOS.values():  # warm-up: first calls build clients, caches, registrations
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
    ratios = {name: round(value / rps["plain"], 3) for name, value in rps.items()}
    return {
        "unit": "requests/s (median of rounds)",
        "requests_per_round": per_round,
        "concurrency": concurrency,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "rps": {name: round(value, 1) for name, value in rps.items()},
        "rps_rounds": {name: [round(v, 1) for v in values] for name, values in samples.items()},
        "ratio_to_plain": ratios,
        "targets": TARGETS,
        "met": {name: ratios[name] >= target for name, target in TARGETS.items()},
        "errors": errors,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Start upstream and proxy, measure every scenario, stop both; returns the numbers."""
    from lucky_litellm.proxy.launcher import ProxyProcess  # loads litellm: not for --list

    per_round, concurrency, rounds = (60, 20, 2) if quick else (300, 20, 5)
    with upstream_process() as base, tempfile.TemporaryDirectory(prefix="bench-proxy-") as workdir:
        models_yaml = Path(workdir) / "models.yaml"
        models_yaml.write_text(MODELS_YAML.format(base=base))
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LUCKY_MODELS_CONFIG": str(models_yaml),
            "LUCKY_LOCAL_API_BASE": base,
        }
        with ProxyProcess(ROOT / "configs" / "proxy.yaml", env=env) as proxy:
            return asyncio.run(_measure(proxy.url, per_round, concurrency, rounds))


def _print(results: dict[str, Any]) -> None:
    print(
        f"proxy throughput: {results['requests_per_round']} requests x {results['rounds']} interleaved "
        f"rounds per scenario, concurrency {results['concurrency']}, median of rounds, {results['cpus']} CPUs"
    )
    for name, model in SCENARIOS.items():
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f"   target >= {target:.2f}: {'met' if results['met'][name] else 'MISSED'}"
        )
        print(
            f"  {name:<16} {model:<17} {results['rps'][name]:>7.1f} req/s   "
            f"x{results['ratio_to_plain'][name]:.2f} of plain   errors: {results['errors'][name]}{verdict}"
        )


if __name__ == "__main__":
    if "--list" in sys.argv:
        for name, model in SCENARIOS.items():
            print(f"{name:<16} {model:<17} target: {TARGETS.get(name, '-')}")
        raise SystemExit(0)
    outcome = run(quick="--quick" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps(outcome, indent=2))
    else:
        _print(outcome)
