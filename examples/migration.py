"""Migrating a call site with rollout flags: the same code takes the legacy or the registry path.

python examples/migration.py
"""

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import lucky_litellm as ll
from lucky_litellm import rollout
from lucky_litellm.testing import Behavior, FakeUpstream

MESSAGES = [{"role": "user", "content": "hello"}]


async def call(user_id: str) -> str:
    response = await rollout.complete("tier:medium", MESSAGES, user_id=user_id)
    info = ll.routing_of(response)
    return f"{user_id:12} -> {info.rollout_path:8} {info.strategy:6} via {info.winner}"


async def main(base_url: str) -> None:
    config = {
        "provider": "openai",  # tiers use OpenAI models, whatever LUCKY_PROVIDER says
        "providers": {"openai": {"apiBase": base_url}},
        "rollout": {"percent": 0},
    }
    ll.set_default_models(ll.Models(config, environ={"OPENAI_API_KEY": "sk-demo"}))

    print("percent 0, one test user:")
    rollout.add_test_user("researcher-1")
    for user in ("researcher-1", "user-7"):
        print(" ", await call(user))

    print("percent 100:")
    rollout.set_rollout_percent(100)
    print(" ", await call("user-7"))

    print("kill switch:")
    rollout.disable_models()
    print(" ", await call("researcher-1"))


if __name__ == "__main__":
    with FakeUpstream(default=Behavior(latency_ms=20)) as upstream:
        asyncio.run(main(upstream.base_url))
