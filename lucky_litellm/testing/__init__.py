"""Test doubles for lucky_litellm users: a real, scriptable OpenAI-compatible upstream.

    from lucky_litellm.testing import Behavior, FakeUpstream

    with FakeUpstream() as up:
        up.script("gpt-4.1-mini", Behavior(content="Paris", latency_ms=20))
        resp = await litellm.acompletion(model="openai/gpt-4.1-mini", api_base=up.base_url,
                                         api_key="sk-fake", messages=[...])

Pytest users get a `fake_upstream` fixture with
`pytest_plugins = ["lucky_litellm.testing.pytest_plugin"]` in their conftest.

`simulate_rollout` rehearses a guarded rollout (`lucky_litellm.guard`) without any call: see
`rollout_sim`.
"""

from .behavior import Behavior, Call, Outcome
from .fake_upstream import FakeUpstream
from .rollout_sim import PathBehavior, RolloutScenario, SimResult, SimSummary, simulate_many, simulate_rollout

__all__ = [
    "Behavior",
    "Call",
    "FakeUpstream",
    "Outcome",
    "PathBehavior",
    "RolloutScenario",
    "SimResult",
    "SimSummary",
    "simulate_many",
    "simulate_rollout",
]
