"""`lucky-litellm demo`: every feature once, offline, through real litellm calls.

A fake OpenAI-compatible upstream on 127.0.0.1 stands in for the providers, with one model made
slow and one made to fail, so race, fallback and consensus have something to show.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click

DEMO_USER = "demo-user"

DEMO_EXPERIMENTS = """
name: Demo experiments
experiments:
  fast:
    strategy: race
    providers: [openai/gpt-4.1-nano, groq/openai/gpt-oss-20b]
    timeout: 5000
  careful:
    strategy: fallback
    providers: [openai/gpt-4.1, openai/gpt-4.1-mini]
  vote:
    strategy: consensus
    providers: [openai/gpt-4.1-mini, openai/gpt-4o-mini, groq/openai/gpt-oss-120b]
    minAgreement: 0.6
  hedged:
    strategy: race
    providers: [groq/openai/gpt-oss-20b, openai/gpt-4.1-nano]
    hedgeAfter: 50
defaults:
  experiment: fast
  costLimit: 1.00
"""

SPECS = [
    "openai/gpt-4.1-mini",
    "tier:medium",
    "tier:fast",
    f"user:{DEMO_USER}",
    f"user:{DEMO_USER}:careful",
    f"user:{DEMO_USER}:vote",
    f"user:{DEMO_USER}:hedged",
    "tier:mediun",
]


def run_demo() -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from .testing import Behavior, FakeUpstream

    with FakeUpstream() as upstream:
        upstream.script("gpt-4.1", Behavior(status=503, error_message="overloaded (demo)"))
        upstream.script("openai/gpt-oss-20b", Behavior(latency_ms=400, content="slow answer"))
        upstream.script("gpt-4.1-mini", Behavior(latency_ms=20, content="Paris."))
        upstream.script("gpt-4o-mini", Behavior(latency_ms=30, content="paris"))
        upstream.script("openai/gpt-oss-120b", Behavior(latency_ms=25, content="Lyon"))
        upstream.script("gpt-4.1-nano", Behavior(latency_ms=60, content="Paris, quickly."))
        rows = asyncio.run(_run(upstream.base_url))
    from .cli import print_table

    click.echo(f"\nlucky_litellm demo: {len(SPECS)} specs through litellm against a local fake upstream\n")
    print_table(rows, ["spec", "strategy", "models", "winner", "attempts", "ms", "cost_usd", "answer"])
    click.echo(
        "\nattempts: model=outcome for every model tried. Try `lucky-litellm resolve tier:fast` "
        "or `lucky-litellm tiers` next."
    )
    return 0


async def _run(base_url: str) -> list[dict[str, Any]]:
    from .errors import LuckyError
    from .registry import Models
    from .routing import routing_of

    environ = {"OPENAI_API_KEY": "sk-demo-openai", "GROQ_API_KEY": "sk-demo-groq"}
    models = Models(
        {
            "providers": {
                "openai": {"apiBase": base_url},
                "groq": {"apiBase": base_url},
                "anthropic": {"enabled": False},
                "openrouter": {"enabled": False},
            },
            "defaults": {"retries": 1},
        },
        environ=environ,
    )
    models.load_user_config(DEMO_USER, DEMO_EXPERIMENTS)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    rows: list[dict[str, Any]] = []
    width = 80
    for spec in SPECS:
        try:
            response = await models.complete(spec, messages, user_id=DEMO_USER, max_tokens=64)
        except LuckyError as exc:
            rows.append({"spec": spec, "strategy": "-", "answer": f"{type(exc).__name__}: {exc}"[:width]})
            continue
        routing = routing_of(response)
        rows.append(
            {
                "spec": spec,
                "strategy": routing.strategy,
                "models": len(routing.models),
                "winner": routing.winner,
                "attempts": " ".join(f"{a.model}={a.outcome}" for a in routing.attempts),
                "ms": f"{routing.latency_ms:.0f}",
                "cost_usd": f"{routing.cost_usd:.6f}",
                "answer": response.choices[0].message.content,
            }
        )
    return rows
