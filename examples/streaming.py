"""A streaming race: the first model to produce content wins; the other is cancelled.

python examples/streaming.py
"""

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import lucky_litellm as ll
from lucky_litellm.testing import Behavior, FakeUpstream

EXPERIMENTS = {
    "experiments": {
        "fast": {"strategy": "race", "providers": ["openai/gpt-4.1-mini", "openai/gpt-4.1-nano"]},
    }
}


async def main(base_url: str) -> None:
    models = ll.Models(
        {"provider": "openai", "providers": {"openai": {"apiBase": base_url}}},
        environ={"OPENAI_API_KEY": "sk-demo"},
    )
    models.load_user_config("writer", EXPERIMENTS)
    stream = await models.complete("user:writer:fast", [{"role": "user", "content": "a haiku"}], stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    info = ll.routing_of(stream)
    print({attempt.model: attempt.outcome for attempt in info.attempts}, f"${info.cost_usd:.6f}")


if __name__ == "__main__":
    with FakeUpstream() as upstream:
        upstream.script("gpt-4.1-mini", Behavior(content="slow words", latency_ms=500))
        upstream.script(
            "gpt-4.1-nano", Behavior(content="autumn wind / a frog leaps in / the pond", chunk_delay_ms=20)
        )
        asyncio.run(main(upstream.base_url))
