"""End to end: the official openai client -> a real `litellm --config configs/proxy.yaml` proxy with
our hook and provider -> a real fake upstream. One proxy serves the whole module.

`configs/proxy.yaml` is used as shipped; the test only adds a custom auth function (keys that
belong to users, which a proxy without a database cannot create otherwise) and its own models.yaml
(users, tiers, rollout) through LUCKY_MODELS_CONFIG.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from lucky_litellm.proxy.launcher import ProxyProcess
from lucky_litellm.testing import Behavior, FakeUpstream

pytestmark = pytest.mark.proxy

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-test-master"

MODELS_YAML = """
provider: local
providers:
  loop:
    litellmProvider: lucky
    enabled: true
  paid:  # an OpenAI-compatible cloud at the fake upstream: priced (local/ models are free)
    litellmProvider: openai
    apiBase: {base}
  local:
    apiBase: {base}
    models:
      nano: local/nano-a
      low: local/llama3.2
      medium: local/medium-m
      high: local/high-h
tiers:
  nano:
    strategy: race
    models: [local/nano-a, local/nano-b]
  summary:
    model: local/sum-s
    timeout: 2000
defaults:
  timeout: 20000
  retries: 0
middleware: [lucky_litellm.middleware.pii:redact_pii]
health:
  circuit:
    enabled: false  # one proxy serves every test here, each scripting its own outages
rollout:
  enabled: true
  percent: 0
  testUsers: [alice, bob, dave]
users:
  alice:
    experiments:
      quick:
        strategy: race
        providers: [local/slow-x, local/quick-y]
      safe:
        strategy: fallback
        providers: [local/broken, local/backup]
      doomed:
        strategy: fallback
        providers: [local/broken, local/broken-too]
      hasty:
        strategy: race
        providers: [local/hang-a, local/hang-b]
        timeout: 2000
      loop:
        providers: [loop/tier:medium]
      priced:
        strategy: race
        providers: [paid/gpt-4o-mini, paid/gpt-4.1-nano]
      vote:
        strategy: consensus
        providers: [paid/gpt-4o-mini, paid/gpt-4.1-nano, paid/gpt-4.1-mini]
    defaults:
      experiment: quick
  bob:
    experiments:
      main:
        providers: [local/bob-model]
  carol:
    experiments:
      main:
        strategy: race
        providers: [local/carol-a, local/carol-b]
      slow:
        providers: [local/carol-slow]
        timeout: 2000
  erin:
    experiments:
      main:
        strategy: race
        providers: [local/medium-m, local/erin-b]
      slow:
        providers: [local/erin-slow]
        timeout: 2000
    defaults:
      costLimit: 100
  frank:
    experiments:
      main:
        providers: [paid/gpt-4o-mini]
    defaults:
      costLimit: 0.00000001
  dave:
    experiments:
      main:
        providers: [paid/gpt-4o-mini]
    defaults:
      costLimit: 0.00000001
"""

TEST_MODULE = '''
"""Test-only proxy plug-ins: keys that belong to users (anything else falls through to LiteLLM's
own auth), and a success logger that records what the proxy bills, one JSON line per event."""
import json
import os

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

KEYS = {"sk-alice": "alice", "sk-bob": "bob", "sk-anon": None}


async def user_key_auth(request, api_key):
    if api_key not in KEYS:
        raise ValueError("not a test key")
    return UserAPIKeyAuth(api_key=api_key, user_id=KEYS[api_key], user_role=LitellmUserRoles.INTERNAL_USER)


class BillingRecorder(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        record = {
            "call_id": kwargs.get("litellm_call_id"),
            "model": kwargs.get("model"),
            "cost": kwargs.get("response_cost"),
        }
        with open(os.environ["LUCKY_TEST_BILLING_LOG"], "a") as log:
            log.write(json.dumps(record) + "\\n")


billing_recorder = BillingRecorder()
'''


@dataclass(frozen=True)
class Proxy:
    base_url: str
    billing_log: Path
    """JSON lines written by the proxy's success logger: what it billed, per call id."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("proxy")
    (workdir / "models.yaml").write_text(MODELS_YAML.format(base=upstream.base_url))
    (workdir / "lucky_test_plugins.py").write_text(textwrap.dedent(TEST_MODULE))
    config = yaml.safe_load((ROOT / "configs" / "proxy.yaml").read_text())
    config["litellm_settings"]["callbacks"].append("lucky_test_plugins.billing_recorder")
    config["model_list"] += [
        # same litellm model and api_base as tier:high's target, under another name
        {
            "model_name": "high-deployment",
            "litellm_params": {**_local("openai/high-h"), "api_base": upstream.base_url},
        },
        # same litellm model as tier:medium's target, but another server: must not match
        {
            "model_name": "elsewhere",
            "litellm_params": {**_local("openai/medium-m"), "api_base": "http://127.0.0.1:9/v1"},
        },
    ]
    config["general_settings"]["custom_auth"] = "lucky_test_plugins.user_key_auth"
    config["general_settings"]["custom_auth_settings"] = {"mode": "auto"}
    (workdir / "proxy.yaml").write_text(yaml.safe_dump(config))
    env = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LUCKY_MODELS_CONFIG": str(workdir / "models.yaml"),
        "LUCKY_LOCAL_API_BASE": upstream.base_url,
        "LUCKY_TEST_BILLING_LOG": str(workdir / "billing.jsonl"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir), os.environ.get("PYTHONPATH")])),
    }
    with ProxyProcess(workdir / "proxy.yaml", env=env) as running:
        yield Proxy(running.base_url, workdir / "billing.jsonl")


def _local(model: str) -> dict[str, Any]:
    return {"model": model, "api_key": "sk-local"}


class _Running:
    marker = ""
    """The running test's marker (set by `fresh_upstream`), carried by every request it sends."""


@pytest.fixture(autouse=True)
def fresh_upstream(upstream: FakeUpstream) -> str:
    """A clean upstream, scoped to a marker of this test's own. A request an earlier test sent (a
    race loser, a hedge, a voter after consensus stopped) can reach the shared upstream after this
    reset; it carries that test's marker, so it is a stray here, not one of this test's calls.
    Requests without a marker are still counted: the marker can only hide an earlier test's."""
    _Running.marker = f"test{uuid.uuid4().hex}"  # one word: no PII pattern rewrites it
    upstream.reset(marker=_Running.marker)
    return _Running.marker


def hi(text: str = "hi") -> list[ChatCompletionMessageParam]:
    """One user message, tagged with the running test's marker (see `fresh_upstream`)."""
    return [{"role": "user", "content": f"{text} {_Running.marker}"}]


def client(proxy: Proxy, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0, timeout=30)


def create(proxy: Proxy, model: str, *, key: str = MASTER_KEY, **kwargs: Any) -> tuple[Any, dict[str, str]]:
    """A chat completion and the response headers."""
    raw = client(proxy, key).chat.completions.with_raw_response.create(model=model, messages=hi(), **kwargs)
    return raw.parse(), dict(raw.headers)


def billed(proxy: Proxy, call_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The proxy's success-log records of one request (logging runs after the answer is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        path = proxy.billing_log
        lines = path.read_text().splitlines() if path.exists() else []
        records = [r for r in map(json.loads, lines) if r["call_id"] == call_id]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def error_of(proxy: Proxy, model: str, *, key: str = MASTER_KEY, **kwargs: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        client(proxy, key).chat.completions.create(model=model, messages=hi(), **kwargs)
    return info.value


# -- answers ---------------------------------------------------------------------------------------


def test_tier_answer(proxy: Proxy, upstream: FakeUpstream) -> None:
    response, headers = create(proxy, "tier:medium", user="alice")
    assert response.choices[0].message.content == "answer from medium-m"
    assert headers["x-lucky-route"] == "deployment:lucky-route/local/medium-m"  # registered by the hook
    assert headers["x-lucky-rollout-path"] == "registry"
    assert headers["x-lucky-winner"] == "local/medium-m"
    assert upstream.call_count("medium-m") == 1


def test_a_client_cannot_name_a_registered_route_directly(proxy: Proxy, upstream: FakeUpstream) -> None:
    create(proxy, "tier:medium", user="alice")  # makes sure it exists
    error = error_of(proxy, "lucky-route/local/medium-m", key="sk-alice")
    assert error.status_code == 400
    assert upstream.call_count() == 1


def test_single_model_tier_is_handed_to_the_proxy_deployment(proxy: Proxy, upstream: FakeUpstream) -> None:
    response, headers = create(proxy, "tier:low", user="alice")
    assert response.choices[0].message.content == "answer from llama3.2"
    assert headers["x-lucky-route"] == "deployment:local/llama3.2"
    assert headers["x-litellm-model-group"] == "local/llama3.2"
    assert upstream.call_count("llama3.2") == 1


def test_deployment_calling_the_same_model_at_the_same_server_is_used(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    _, headers = create(proxy, "tier:high", user="alice")
    assert headers["x-lucky-route"] == "deployment:high-deployment"
    assert upstream.call_count("high-h") == 1


def test_race_experiment_returns_the_fastest_and_cancels_the_loser(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    upstream.script("slow-x", Behavior(latency_ms=20000))
    response, headers = create(proxy, "user:alice:quick", user="alice")
    assert response.choices[0].message.content == "answer from quick-y"
    assert headers["x-lucky-strategy"] == "race"
    assert headers["x-lucky-winner"] == "local/quick-y"
    assert headers["x-lucky-models"] == "local/slow-x,local/quick-y"
    upstream.wait_idle(timeout=10)  # the slow call was cut, not left to run for 20 s
    assert upstream.cancelled_count("slow-x") == 1


def test_user_spec_without_experiment_runs_the_default_one(proxy: Proxy, upstream: FakeUpstream) -> None:
    _, headers = create(proxy, "user:alice", key="sk-alice")
    assert headers["x-lucky-spec"] == "user:alice"
    assert headers["x-lucky-strategy"] == "race"


def test_fallback_moves_past_a_failing_model(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("broken", Behavior(status=503))
    response, headers = create(proxy, "user:alice:safe", user="alice")
    assert response.choices[0].message.content == "answer from backup"
    assert headers["x-lucky-winner"] == "local/backup"
    assert [call.model for call in upstream.calls] == ["broken", "backup"]


def test_consensus_bills_every_model(proxy: Proxy, upstream: FakeUpstream) -> None:
    for model in ("gpt-4o-mini", "gpt-4.1-nano", "gpt-4.1-mini"):
        upstream.script(model, Behavior(content="Paris", prompt_tokens=1000, completion_tokens=100))
    response, headers = create(proxy, "user:alice:vote", user="alice")
    assert response.choices[0].message.content == "Paris"
    lucky_cost = float(headers["x-lucky-cost-usd"])
    single = (1000 * 0.15 + 100 * 0.6) / 1e6  # gpt-4o-mini alone, per litellm's price map
    assert lucky_cost > single  # every voter that answered (consensus may stop once two agree)
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(lucky_cost)
    records = billed(proxy, headers["x-litellm-call-id"])
    assert [r["cost"] for r in records] == [pytest.approx(lucky_cost)]  # once: nested calls are not logged


def test_streamed_answer_is_billed_once_with_the_upstream_cost(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4o-mini", Behavior(content="Paris", prompt_tokens=1000, completion_tokens=100))
    upstream.script("gpt-4.1-nano", Behavior(latency_ms=5000))
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="user:alice:priced", messages=hi(), user="alice", stream=True
    )
    stream: openai.Stream[ChatCompletionChunk] = raw.parse()
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Paris"
    records = billed(proxy, raw.headers["x-litellm-call-id"])
    assert [r["cost"] for r in records] == [pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)]


def test_the_engine_routes_group_carries_its_prices_in_model_info(proxy: Proxy) -> None:
    # Per-token prices in a deployment's litellm_params make litellm register them in its cost
    # map again on every call (~1 ms of CPU); in model_info the Router registers them once.
    _, headers = create(proxy, "tier:nano", user="alice")
    assert headers["x-lucky-route"] == "engine"
    answer = httpx.get(
        proxy.base_url.removesuffix("/v1") + "/model/info",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    groups = {entry["model_name"]: entry for entry in answer.json()["data"]}
    group = groups["lucky-route/tier:nano"]
    assert group["litellm_params"]["model"] == "lucky/tier:nano"
    assert group["litellm_params"].get("input_cost_per_token") is None
    assert group["model_info"]["input_cost_per_token"] == 0


def test_streamed_answer(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("medium-m", Behavior(content="one two three four", completion_tokens=4, prompt_tokens=7))
    stream = client(proxy).chat.completions.create(
        model="tier:medium", messages=hi(), user="alice", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (7, 4)


def test_streamed_race(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("slow-x", Behavior(latency_ms=5000))
    stream = client(proxy).chat.completions.create(
        model="user:alice:quick", messages=hi(), user="alice", stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "answer from quick-y"


def test_plain_model_through_a_lucky_group(proxy: Proxy, upstream: FakeUpstream) -> None:
    response, headers = create(proxy, "local/plain-z", user="alice")
    assert response.choices[0].message.content == "answer from plain-z"
    assert headers["x-lucky-route"] == "engine"
    assert headers["x-lucky-strategy"] == "first"


def test_a_concrete_model_of_a_tier_runs_as_that_tier_on_the_registry_path(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    _, headers = create(proxy, "local/nano-a", user="alice")  # autoTier: nano is a race
    assert (headers["x-lucky-spec"], headers["x-lucky-strategy"]) == ("tier:nano", "race")
    assert headers["x-lucky-rollout-path"] == "registry"


def test_middleware_of_models_yaml_runs_on_the_engine_route(
    proxy: Proxy, upstream: FakeUpstream, fresh_upstream: str
) -> None:
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="tier:nano", messages=hi("write to jane@example.com"), user="alice"
    )
    assert raw.headers["x-lucky-route"] == "engine"
    contents = {call.body["messages"][0]["content"] for call in upstream.calls}
    assert contents == {f"write to [EMAIL] {fresh_upstream}"}


def test_plain_deployment_is_left_alone(proxy: Proxy, upstream: FakeUpstream) -> None:
    response, headers = create(proxy, "local/llama3.2", user="alice")
    assert response.choices[0].message.content == "answer from llama3.2"
    assert "x-lucky-spec" not in headers


# -- rollout ---------------------------------------------------------------------------------------


def test_rollout_disabled_user_takes_the_legacy_path(proxy: Proxy, upstream: FakeUpstream) -> None:
    response, headers = create(proxy, "tier:nano", user="carol")  # a race of nano-a and nano-b
    assert response.choices[0].message.content == "answer from nano-a"
    assert headers["x-lucky-rollout-path"] == "legacy"
    assert [call.model for call in upstream.calls] == ["nano-a"]


def test_legacy_experiment_calls_only_its_first_model(proxy: Proxy, upstream: FakeUpstream) -> None:
    _, headers = create(proxy, "user:carol:main", user="carol")
    assert headers["x-lucky-rollout-path"] == "legacy"
    assert [call.model for call in upstream.calls] == ["carol-a"]


def test_legacy_single_model_uses_the_deployment(proxy: Proxy, upstream: FakeUpstream) -> None:
    _, headers = create(proxy, "tier:low", user="carol")
    assert headers["x-lucky-rollout-path"] == "legacy"
    assert headers["x-lucky-route"] == "deployment:local/llama3.2"
    assert [call.model for call in upstream.calls] == ["llama3.2"]


def test_registry_user_takes_the_registry_path(proxy: Proxy, upstream: FakeUpstream) -> None:
    _, headers = create(proxy, "tier:nano", user="bob")
    assert headers["x-lucky-rollout-path"] == "registry"
    assert headers["x-lucky-strategy"] == "race"


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("tier:", 400, "missing tier name"),
        ("tier:nope", 400, "unknown tier 'nope'"),
        ("user:alice:no such", 400, "invalid model spec"),
        ("user:alice:nope", 404, "no experiment 'nope'"),
        ("user:zed", 404, "add them under `users:` in the models file"),
    ],
)
def test_bad_input_is_a_clean_client_error(
    proxy: Proxy, upstream: FakeUpstream, model: str, status: int, words: str
) -> None:
    error = error_of(proxy, model, user="alice")
    assert error.status_code == status
    assert words in error.message
    assert "Traceback" not in error.message
    assert upstream.call_count() == 0


def test_a_refused_spec_took_no_rollout_path(proxy: Proxy, upstream: FakeUpstream) -> None:
    """A typo's 400 used to carry `x-lucky-rollout-path: legacy`, though no path was taken."""
    error = error_of(proxy, "tier:mediun", user="carol")  # carol is on the legacy path
    assert error.status_code == 400 and "did you mean 'medium'?" in error.message
    assert "x-lucky-rollout-path" not in error.response.headers
    assert upstream.call_count() == 0


def test_another_users_experiment_is_forbidden(proxy: Proxy, upstream: FakeUpstream) -> None:
    error = error_of(proxy, "user:bob:main", key="sk-alice")
    assert error.status_code == 403
    assert "may not use the experiments of user 'bob'" in error.message
    assert upstream.call_count() == 0


def test_body_user_does_not_override_the_keys_user(proxy: Proxy) -> None:
    assert error_of(proxy, "user:bob:main", key="sk-alice", user="bob").status_code == 403
    _, headers = create(proxy, "user:alice:quick", key="sk-alice", user="bob")
    assert headers["x-lucky-winner"]


def test_key_without_user_id_falls_back_to_the_body_user(proxy: Proxy) -> None:
    _, headers = create(proxy, "user:bob:main", key="sk-anon", user="bob")
    assert headers["x-lucky-winner"] == "local/bob-model"
    assert error_of(proxy, "user:bob:main", key="sk-anon").status_code == 403


def test_master_key_may_run_any_users_experiment(proxy: Proxy) -> None:
    _, headers = create(proxy, "user:bob:main", user="alice")
    assert headers["x-lucky-winner"] == "local/bob-model"


def test_all_models_failed_is_a_502_without_litellm_noise(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("broken", Behavior(status=500))
    upstream.script("broken-too", Behavior(status=400))
    error = error_of(proxy, "user:alice:doomed", user="alice")
    assert error.status_code == 502
    assert "all models failed for 'user:alice:doomed'" in error.message
    assert "LuckyException" not in error.message  # the failure hook replaced litellm's wording
    assert upstream.call_count() == 2


def test_a_model_that_routes_back_into_the_provider_fails_cleanly(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    error = error_of(proxy, "user:alice:loop", user="alice")
    assert error.status_code == 502
    assert "routes back into the lucky provider" in error.message
    assert upstream.call_count() == 0


def test_consensus_cannot_stream(proxy: Proxy, upstream: FakeUpstream) -> None:
    error = error_of(proxy, "user:alice:vote", user="alice", stream=True)
    assert error.status_code == 400
    assert "consensus" in error.message
    assert upstream.call_count() == 0


def test_budget_exceeded_is_a_429_the_sdk_does_not_retry(proxy: Proxy, upstream: FakeUpstream) -> None:
    error = error_of(proxy, "user:dave:main", user="dave")
    assert error.status_code == 429
    assert "budget exceeded for user 'dave'" in error.message
    assert error.response.headers.get("x-should-retry") == "false"
    assert upstream.call_count() == 0


def test_failures_do_not_put_the_lucky_group_in_cooldown(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("broken", Behavior(status=500))
    upstream.script("broken-too", Behavior(status=500))
    for _ in range(4):
        assert error_of(proxy, "user:alice:doomed", user="alice").status_code == 502
    response, _ = create(proxy, "user:alice:safe", user="alice")
    assert response.choices[0].message.content == "answer from backup"


# -- the same guarantees on every route -------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One way a request is served: the spec, whose it is, the upstream model that answers."""

    spec: str
    user: str
    answers: str
    route: str
    path: str
    others: tuple[str, ...] = ()
    """Other models of the plan, scripted to lose (slow) when `answers` should win."""

    def script(self, upstream: FakeUpstream, behavior: Behavior) -> None:
        upstream.script(self.answers, behavior)
        for model in self.others:
            upstream.script(model, Behavior(latency_ms=20000))


ROUTES = [
    pytest.param(Route("tier:medium", "alice", "medium-m", "deployment:", "registry"), id="deployment"),
    pytest.param(
        Route("user:alice:quick", "alice", "quick-y", "engine", "registry", ("slow-x",)), id="engine"
    ),
    pytest.param(Route("tier:medium", "carol", "medium-m", "deployment:", "legacy"), id="legacy-deployment"),
    pytest.param(Route("user:erin:main", "erin", "medium-m", "engine", "legacy"), id="legacy-engine"),
]
SLOW_ROUTES = [  # plans with a 2 s deadline; every model of each hangs in the tests below
    pytest.param("tier:summary", "alice", ["sum-s"], id="deployment"),
    pytest.param("user:alice:hasty", "alice", ["hang-a", "hang-b"], id="engine"),
    pytest.param("user:carol:slow", "carol", ["carol-slow"], id="legacy-deployment"),
    pytest.param("user:erin:slow", "erin", ["erin-slow"], id="legacy-engine"),
]


def _stream(proxy: Proxy, spec: str, user: str, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
    """The chunks of a stream and the error that ended it (None for a clean end)."""
    chunks: list[Any] = []
    stream = client(proxy).chat.completions.create(
        model=spec, messages=hi(), user=user, stream=True, **kwargs
    )
    try:
        for chunk in stream:
            chunks.append(chunk)
    except openai.APIError as exc:
        return chunks, exc
    return chunks, None


def _text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("case", ROUTES)
def test_each_route_is_the_one_expected(proxy: Proxy, upstream: FakeUpstream, case: Route) -> None:
    case.script(upstream, Behavior())
    _, headers = create(proxy, case.spec, user=case.user)
    assert headers["x-lucky-route"].startswith(case.route)
    assert headers["x-lucky-rollout-path"] == case.path


@pytest.mark.parametrize("case", ROUTES)
def test_a_cut_stream_ends_in_an_error_event_on_every_route(
    proxy: Proxy, upstream: FakeUpstream, case: Route
) -> None:
    case.script(upstream, Behavior(content="one two three four", stream_cut_after=2))
    chunks, error = _stream(proxy, case.spec, case.user)
    assert isinstance(error, openai.APIError)
    assert "without finishing" in error.message
    assert not any(c.choices and c.choices[0].finish_reason for c in chunks)  # never a clean "stop"
    assert _text(chunks) == "one two"


@pytest.mark.parametrize("case", ROUTES)
def test_a_reset_mid_stream_is_a_502_error_event(proxy: Proxy, upstream: FakeUpstream, case: Route) -> None:
    case.script(upstream, Behavior(content="one two three four", stream_cut_after=2, stream_cut_reset=True))
    chunks, error = _stream(proxy, case.spec, case.user)
    assert isinstance(error, openai.APIError)
    assert isinstance(error.body, dict) and str(error.body.get("code")) == "502"
    assert _text(chunks) == "one two"


@pytest.mark.parametrize(("spec", "user", "hanging"), SLOW_ROUTES)
def test_a_hang_ends_at_the_deadline_with_a_504_and_no_retries(
    proxy: Proxy, upstream: FakeUpstream, spec: str, user: str, hanging: list[str]
) -> None:
    for model in hanging:
        upstream.script(model, Behavior(hang=True))
    started = time.monotonic()
    error = error_of(proxy, spec, user=user)
    elapsed = time.monotonic() - started
    assert error.status_code == 504
    assert 1.9 < elapsed < 4.0  # the 2 s deadline, not LiteLLM's 600 s or a Router retry
    assert error.response.headers.get("x-should-retry") == "false"
    assert upstream.call_count() == len(hanging)


@pytest.mark.parametrize(("spec", "user", "dripping"), SLOW_ROUTES)
def test_the_deadline_covers_the_stream_body(
    proxy: Proxy, upstream: FakeUpstream, spec: str, user: str, dripping: list[str]
) -> None:
    for model in dripping:
        upstream.script(model, Behavior(content="a b c d e f g h i j", chunk_delay_ms=400))
    started = time.monotonic()
    chunks, error = _stream(proxy, spec, user)
    assert time.monotonic() - started < 4.0
    assert isinstance(error, openai.APIError)
    assert isinstance(error.body, dict) and str(error.body.get("code")) == "504"
    assert 0 < len(_text(chunks)) < len("abcdefghij")


def test_a_users_cost_limit_holds_on_the_legacy_path(proxy: Proxy, upstream: FakeUpstream) -> None:
    error = error_of(proxy, "user:frank:main", user="frank")  # outside the rollout: legacy path
    assert error.status_code == 429
    assert "budget exceeded for user 'frank'" in error.message
    assert error.response.headers.get("x-should-retry") == "false"
    assert upstream.call_count() == 0


@pytest.mark.parametrize("case", ROUTES)
def test_retry_after_is_forwarded_on_every_route(proxy: Proxy, upstream: FakeUpstream, case: Route) -> None:
    upstream.script(case.answers, Behavior(status=429, retry_after=7))
    for model in case.others:
        upstream.script(model, Behavior(status=429, retry_after=9))
    error = error_of(proxy, case.spec, user=case.user)
    assert error.status_code == 429
    assert error.response.headers.get("retry-after") == "7"


@pytest.mark.parametrize("case", ROUTES)
def test_the_answer_names_the_model_that_answered(proxy: Proxy, upstream: FakeUpstream, case: Route) -> None:
    case.script(upstream, Behavior(content="Paris"))
    response, headers = create(proxy, case.spec, user=case.user)
    assert response.model == f"local/{case.answers}"
    assert headers["x-lucky-winner"] == f"local/{case.answers}"
    assert "x-lucky-cost-usd" in headers


@pytest.mark.parametrize("case", ROUTES)
def test_a_stream_names_the_model_that_answered_and_its_cost(
    proxy: Proxy, upstream: FakeUpstream, case: Route
) -> None:
    case.script(upstream, Behavior(content="Paris is nice", prompt_tokens=10, completion_tokens=3))
    raw = client(proxy).chat.completions.with_raw_response.create(
        model=case.spec, messages=hi(), user=case.user, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert raw.headers["x-lucky-winner"] == f"local/{case.answers}"
    assert {c.model for c in chunks} == {f"local/{case.answers}"}
    last = chunks[-1].model_extra or {}
    assert last["lucky"]["winner"] == f"local/{case.answers}"
    assert isinstance(last["lucky"]["cost_usd"], float)


@pytest.mark.parametrize("case", ROUTES)
def test_a_stream_without_usage_still_ends_with_who_answered(
    proxy: Proxy, upstream: FakeUpstream, case: Route
) -> None:
    case.script(upstream, Behavior(content="Paris is nice"))
    chunks, error = _stream(proxy, case.spec, case.user)
    assert error is None
    assert all(c.choices for c in chunks)  # no usage-only chunk the client did not ask for
    assert (chunks[-1].model_extra or {})["lucky"]["winner"] == f"local/{case.answers}"


def test_a_default_openai_client_does_not_retry_lucky_502s(proxy: Proxy, upstream: FakeUpstream) -> None:
    upstream.script("broken", Behavior(status=500))
    upstream.script("broken-too", Behavior(status=500))
    retrying = openai.OpenAI(base_url=proxy.base_url, api_key=MASTER_KEY, timeout=30)  # max_retries=2
    with pytest.raises(openai.APIStatusError) as info:
        retrying.chat.completions.create(model="user:alice:doomed", messages=hi(), user="alice")
    assert info.value.status_code == 502
    assert info.value.response.headers.get("x-should-retry") == "false"
    lucky_fields = info.value.response.json()["error"]["provider_specific_fields"]
    assert lucky_fields["lucky_error"] == "AllModelsFailedError"
    assert upstream.call_count() == 2  # one per model, not 2 x 3 client attempts


def test_text_completions_answer_specs_with_an_openai_error_body(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    answer = httpx.post(
        f"{proxy.base_url}/completions",
        json={"model": "tier:medium", "prompt": "hi"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("'tier:medium': lucky_litellm specs are served on /v1/chat/")
    assert upstream.call_count() == 0


def test_a_client_cannot_point_lucky_at_another_endpoint_or_key(proxy: Proxy, upstream: FakeUpstream) -> None:
    with FakeUpstream() as elsewhere:
        for body in (
            {"api_base": elsewhere.base_url, "api_key": "sk-client"},
            {"base_url": elsewhere.base_url},
            {"api_key": "sk-client", "extra_headers": {"Authorization": "Bearer sk-client"}},
        ):
            for spec in ("tier:medium", "user:alice:quick"):
                upstream.reset()
                upstream.script("slow-x", Behavior(latency_ms=5000))
                try:
                    client(proxy).chat.completions.create(
                        model=spec, messages=hi(), user="alice", extra_body=body
                    )
                except openai.APIStatusError:
                    pass  # LiteLLM's own body check refused api_base/base_url (a 500, its choice)
                else:
                    assert all(
                        call.headers.get("Authorization") == "Bearer sk-local" for call in upstream.calls
                    ), spec
        assert elsewhere.call_count() == 0


# -- identity and error mapping, without a proxy ---------------------------------------------------


def _key(user_id: str | None, role: str = "internal_user") -> Any:
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    return UserAPIKeyAuth(api_key="sk-x", user_id=user_id, user_role=LitellmUserRoles(role))


@pytest.mark.parametrize(
    ("key_user", "role", "body_user", "expected"),
    [
        ("alice", "internal_user", "bob", ("alice", False, "key")),
        (None, "internal_user", "bob", ("bob", False, "body")),
        (None, "internal_user", None, (None, False, "none")),
        ("default_user_id", "proxy_admin", "bob", ("bob", True, "body")),
        ("default_user_id", "proxy_admin", None, ("default_user_id", True, "key")),
    ],
)
def test_identity_rule(
    key_user: str | None, role: str, body_user: str | None, expected: tuple[Any, ...]
) -> None:
    from lucky_litellm.proxy.identity import identify

    identity = identify(_key(key_user, role), {"user": body_user, "metadata": {}})
    assert (identity.user_id, identity.admin, identity.source) == expected


def test_identity_reads_the_key_user_mirrored_into_metadata() -> None:
    from lucky_litellm.proxy.identity import identify

    identity = identify(_key(None), {"user": "bob", "metadata": {"user_api_key_user_id": "alice"}})
    assert identity.user_id == "alice"


def test_error_statuses() -> None:
    from lucky_litellm import errors
    from lucky_litellm.proxy.errors import AccessDeniedError, http_error

    cases = {
        errors.ModelSpecError("x", "bad"): 400,
        errors.UnknownTierError("x", ["medium"]): 400,
        AccessDeniedError("alice", "bob"): 403,
        errors.UnknownUserError("x"): 404,
        errors.UnknownExperimentError("u", "e", ["a"]): 404,
        errors.BudgetExceededError("u", 1.0, 1.0): 429,
        errors.ConcurrencyLimitError("u", 2, 1.0): 429,
        errors.AllModelsFailedError("s", [], []): 502,
        errors.NoModelsAvailableError("s", ["off"]): 503,
        errors.StrategyTimeoutError("s", 1.0, []): 504,
        errors.ConfigError([]): 500,
        RuntimeError("secret internals"): 500,
    }
    for exc, status in cases.items():
        assert http_error(exc).status == status, exc
    assert http_error(errors.BudgetExceededError("u", 1.0, 1.0)).headers == {"x-should-retry": "false"}
    assert http_error(errors.ConcurrencyLimitError("u", 2, 1.0)).headers == {"Retry-After": "1"}
    assert "secret" not in http_error(RuntimeError("secret internals")).message


def test_environment_variables_win_over_the_models_file(tmp_path: Path) -> None:
    from lucky_litellm.proxy.setup import models_config_from_env

    models_file = tmp_path / "models.yaml"
    models_file.write_text(
        "provider: openai\nproviders:\n  local:\n    apiBase: http://127.0.0.1:11434/v1\n"
        "    litellmProvider: openai\n"
    )
    file_only = models_config_from_env({"LUCKY_MODELS_CONFIG": str(models_file)})
    assert file_only is not None and file_only.provider == "openai"
    overridden = models_config_from_env(
        {
            "LUCKY_MODELS_CONFIG": str(models_file),
            "LUCKY_PROVIDER": "local",
            "LUCKY_LOCAL_API_BASE": "http://127.0.0.1:8001/v1",
        }
    )
    assert overridden is not None and overridden.provider == "local"
    assert str(overridden.providers["local"].api_base).rstrip("/") == "http://127.0.0.1:8001/v1"
    assert models_config_from_env({}) is None  # nothing set: the built-in defaults
