"""Tiers, a user experiment and routing info, offline against the fake upstream.

python examples/quickstart.py
"""

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import lucky_litellm as ll
from lucky_litellm.testing import Behavior, FakeUpstream

MESSAGES = [{"role": "user", "content": "Name a primary colour."}]


async def main(base_url: str) -> None:
    # Point the openai provider at the local fake upstream; in real use, set OPENAI_API_KEY instead.
    models = ll.Models(
        {"provider": "openai", "providers": {"openai": {"apiBase": base_url}}},
        environ={"OPENAI_API_KEY": "sk-demo"},
    )

    response = await models.complete("tier:medium", MESSAGES)
    info = ll.routing_of(response)
    print(f"tier:medium -> {info.winner}: {response.choices[0].message.content!r} (${info.cost_usd:.6f})")

    models.load_user_config("user-123", "configs/example.yaml")
    plan = models.resolve("user:user-123")
    print(f"user:user-123 resolves to {plan.strategy} over {plan.models}")

    response = await models.complete("user:user-123", MESSAGES, user_id="user-123")
    info = ll.routing_of(response)
    for attempt in info.attempts:
        print(f"  {attempt.model:28} {attempt.outcome:9} {attempt.latency_ms:7.1f} ms")


if __name__ == "__main__":
    with FakeUpstream() as upstream:
        upstream.script("gpt-4.1-mini", Behavior(content="Blue.", latency_ms=30))
        upstream.script("gpt-4.1-nano", Behavior(content="Red.", latency_ms=10))
        asyncio.run(main(upstream.base_url))
