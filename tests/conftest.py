"""Shared fixtures: the fake upstream, and registries whose providers point at it."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lucky_litellm.state import State, state_from_url
from lucky_litellm.testing import FakeUpstream
from lucky_litellm.testing.redis_server import RedisServer

pytest_plugins = ["lucky_litellm.testing.pytest_plugin"]

PLANTED_KEYS = {"OPENAI_API_KEY": "sk-test-openai-planted-0001", "GROQ_API_KEY": "gsk-test-groq-planted-0002"}

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def upstream_config(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """A models config whose openai and groq providers are served by the fake upstream."""
    return {
        "providers": {
            "openai": {"apiBase": upstream.base_url},
            "groq": {"apiBase": upstream.base_url},
            "anthropic": {"enabled": False},
            "openrouter": {"enabled": False},
        },
        **extra,
    }


@pytest.fixture
def make_models(fake_upstream: FakeUpstream) -> Callable[..., Any]:
    """Build a `Models` against the fake upstream; extra keyword arguments go into the config."""
    from lucky_litellm import Models

    def build(**extra: Any) -> Models:
        return Models(upstream_config(fake_upstream, **extra), environ=dict(PLANTED_KEYS))

    return build


@pytest.fixture
def models(make_models: Callable[..., Any]) -> Any:
    return make_models()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One real server for the module (skips without the binary, fails under CI=true)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests sharing a module's server never see each other."""
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest, prefix: str) -> Iterator[State]:
    """The test once on the in-memory state and once on a real Redis."""
    if request.param == "memory":
        yield state_from_url(None)
        return
    shared = state_from_url(request.getfixturevalue("redis_server").url, prefix=prefix)
    yield shared
    shared.close()
