"""Guarded rollout behind the LiteLLM proxy: a real proxy process sharing a real Redis records
each request on its rollout path, whichever route served it (engine or deployment)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from lucky_litellm.bucketing import in_rollout
from lucky_litellm.guard.control import as_policy
from lucky_litellm.proxy.launcher import ProxyProcess
from lucky_litellm.state import State, state_from_url
from lucky_litellm.testing import Behavior, FakeUpstream
from lucky_litellm.testing.redis_server import RedisServer

pytestmark = pytest.mark.proxy

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-test-master"

MODELS_YAML = """
provider: local
providers:
  local:
    apiBase: {base}
    models:
      nano: local/nano-a
tiers:
  nano:
    strategy: race
    models: [local/nano-a, local/nano-b]
defaults:
  timeout: 20000
  retries: 0
"""

LEGACY_USER = next(f"carol-{i}" for i in range(1000) if not in_rollout(f"carol-{i}", 1, "lucky"))
"""Outside the first stage's 1 %: the legacy path (one model: the deployment route)."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeUpstream, State]]:
    workdir = tmp_path_factory.mktemp("guard-proxy")
    with RedisServer() as redis, FakeUpstream() as upstream:
        (workdir / "models.yaml").write_text(textwrap.dedent(MODELS_YAML.format(base=upstream.base_url)))
        config = yaml.safe_load((ROOT / "configs" / "proxy.yaml").read_text())
        (workdir / "proxy.yaml").write_text(yaml.safe_dump(config))
        env = {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LUCKY_MODELS_CONFIG": str(workdir / "models.yaml"),
            "LUCKY_LOCAL_API_BASE": upstream.base_url,
            "LUCKY_STATE_URL": redis.url,
        }
        admin = state_from_url(redis.url)
        try:
            with ProxyProcess(workdir / "proxy.yaml", env=env) as running:
                yield running.base_url, upstream, admin
        finally:
            admin.close()


def ask(base_url: str, user: str) -> Any:
    client = openai.OpenAI(base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="tier:nano", messages=[{"role": "user", "content": "hi"}], user=user
    )
    return raw.headers


def test_the_proxy_records_both_paths_on_both_routes_while_a_guard_runs(setup):
    base_url, upstream, admin = setup
    ask(base_url, "bob")  # the proxy serves (and so follows the shared guard) from now on
    admin.flags.add_test_user("bob")  # the shared flags (models.yaml's are this process's own)
    admin.guard.start(as_policy({"stages": [1, 100], "minCalls": 100_000}))
    run = admin.guard.read().run_id
    deadline = time.monotonic() + 10
    while ask(base_url, LEGACY_USER)["x-lucky-rollout-path"] != "legacy":  # the 1 % reached the proxy
        assert time.monotonic() < deadline, "the proxy kept the old percentage"
        time.sleep(0.1)
    deadline = time.monotonic() + 20
    while True:  # until the proxy has seen the guard and pushed both paths' calls
        assert ask(base_url, "bob")["x-lucky-rollout-path"] == "registry"
        headers = ask(base_url, LEGACY_USER)
        assert (headers["x-lucky-rollout-path"], headers["x-lucky-route"]) == (
            "legacy",
            "deployment:lucky-route/local/nano-a",
        )
        legacy, registry = admin.guard.summaries(run, 0)
        if legacy.calls and registry.calls:
            break
        assert time.monotonic() < deadline, "the proxy recorded nothing"
        time.sleep(0.2)
    assert legacy.errors == registry.errors == 0
    assert legacy.latency_count and registry.latency_count

    call_id = headers["x-litellm-call-id"]  # the proxy's request id is the guard's request id
    deadline = time.monotonic() + 10
    while not admin.guard.add_feedback(call_id, "thumbs_up", 1):  # known once the proxy pushed it
        assert time.monotonic() < deadline, "the proxy's request id is unknown to the guard"
        time.sleep(0.1)
    assert admin.guard.summaries(run, 0)[0].feedback["thumbs_up"].n == 1

    client = openai.OpenAI(base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model="tier:nano", messages=[{"role": "user", "content": "hi"}], user="bob", stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    deadline = time.monotonic() + 10
    while admin.guard.summaries(run, 0)[1].calls <= registry.calls:  # a stream counts at its end
        assert time.monotonic() < deadline, "the stream was not recorded"
        time.sleep(0.1)

    upstream.script("nano-a", Behavior(status=400))  # the legacy path's one model fails now
    with pytest.raises(openai.BadRequestError):
        ask(base_url, LEGACY_USER)
    deadline = time.monotonic() + 10
    while admin.guard.summaries(run, 0)[0].errors < 1:
        assert time.monotonic() < deadline, "the failure was not recorded"
        time.sleep(0.1)
    admin.guard.stop()
