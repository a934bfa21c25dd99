"""Middleware: `models.use(mw)` and ``middleware:`` entries wrap every request (Starlette style)."""

from __future__ import annotations

import pytest

import lucky_litellm as ll
from lucky_litellm import AllModelsFailedError, ConfigError, MiddlewareError, routing_of
from lucky_litellm.middleware import Request
from lucky_litellm.middleware.cache import ResponseCache
from lucky_litellm.middleware.pii import redact_pii
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SECRETS = [
    {
        "role": "user",
        "content": "I am jane.doe@example.com, call +1 415 555 0100, key sk-proj-abcdefghijklmnop1234",
    }
]

seen: list[str] = []


async def record_spec(request: Request, call_next):
    """Importable middleware for the models.yaml test."""
    seen.append(request.spec)
    return await call_next(request)


async def test_middleware_runs_in_order_around_the_request(models):
    order: list[str] = []

    def named(name: str):
        async def mw(request, call_next):
            order.append(f"{name} before")
            response = await call_next(request)
            order.append(f"{name} after")
            return response

        return mw

    models.use(named("outer"))
    models.use(named("inner"))
    await models.complete("tier:medium", MESSAGES)
    assert order == ["outer before", "inner before", "inner after", "outer after"]


async def test_the_request_is_typed_and_carries_the_plan_user_and_request_id(models):
    requests: list[Request] = []

    async def capture(request, call_next):
        requests.append(request)
        return await call_next(request)

    models.use(capture)
    await models.complete("tier:medium", MESSAGES, user_id="u-1", request_id="r-1", temperature=0)
    request = requests[0]
    assert (request.spec, request.plan.strategy, request.user_id, request.request_id) == (
        "tier:medium",
        models.resolve("tier:medium").strategy,
        "u-1",
        "r-1",
    )
    assert (request.messages, request.kwargs["temperature"]) == (MESSAGES, 0)


async def test_a_middleware_can_change_the_messages_that_leave(models, fake_upstream):
    async def shout(request, call_next):
        request.messages = [{"role": "user", "content": "REWRITTEN"}]
        return await call_next(request)

    models.use(shout)
    await models.complete("tier:medium", MESSAGES)
    assert fake_upstream.calls[0].body["messages"] == [{"role": "user", "content": "REWRITTEN"}]


async def test_a_middleware_can_change_the_response(models):
    async def stamp(request, call_next):
        response = await call_next(request)
        response.choices[0].message.content += " (checked)"
        return response

    models.use(stamp)
    response = await models.complete("tier:medium", MESSAGES)
    assert response.choices[0].message.content.endswith(" (checked)")


async def test_a_stream_passes_through_middleware_as_an_async_iterator(models, fake_upstream):
    fake_upstream.default = Behavior(content="streamed words")

    async def upper(request, call_next):
        stream = await call_next(request)

        async def chunks():
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        choice.delta.content = choice.delta.content.upper()
                yield chunk

        return chunks()

    models.use(upper)
    stream = await models.complete("tier:medium", MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "STREAMED WORDS"


async def test_an_exception_in_a_middleware_is_a_lucky_error_naming_it(models, fake_upstream):
    async def broken(request, call_next):
        raise RuntimeError("boom")

    models.use(broken)
    with pytest.raises(MiddlewareError, match=r"broken.*RuntimeError: boom") as info:
        await models.complete("tier:medium", MESSAGES)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert fake_upstream.call_count() == 0


async def test_errors_of_the_request_pass_through_middleware_unchanged(models, fake_upstream):
    fake_upstream.default = Behavior(status=400)

    async def passthrough(request, call_next):
        return await call_next(request)

    models.use(passthrough)
    with pytest.raises(AllModelsFailedError):
        await models.complete("tier:medium", MESSAGES)


async def test_middleware_named_in_models_yaml_is_imported_and_run(make_models):
    seen.clear()
    models = make_models(middleware=["tests.test_middleware:record_spec"])
    await models.complete("tier:medium", MESSAGES)
    assert seen == ["tier:medium"]


def test_a_middleware_entry_that_does_not_import_fails_when_the_registry_is_built(make_models):
    with pytest.raises(ConfigError, match=r"middleware\.0.*cannot be imported"):
        make_models(middleware=["tests.test_middleware:nosuch"])


@pytest.mark.parametrize(
    "entry",
    ["nosuch.module:thing", "tests.test_middleware:nosuch", "tests.test_middleware:SECRETS", "nodots"],
)
def test_the_validators_report_a_bad_middleware_entry_as_building_the_registry_does(entry):
    config = {"middleware": [entry]}
    result = ll.safe_validate_models_config(config)
    with pytest.raises(ConfigError) as built:
        ll.Models(config)
    assert not result.success and result.error is not None
    assert [str(issue) for issue in result.error.issues] == [str(issue) for issue in built.value.issues]
    assert result.error.issues[0].path == "middleware.0"
    with pytest.raises(ConfigError) as validated:
        ll.validate_models_config(config)
    assert str(validated.value) == str(built.value)


def test_the_validators_accept_a_middleware_entry_that_imports():
    config = {"middleware": ["tests.test_middleware:record_spec"]}
    assert ll.safe_validate_models_config(config).success


def test_the_validate_command_reports_a_bad_middleware_entry(tmp_path):
    from lucky_litellm.config.resolve import check_models_config

    path = tmp_path / "models.yaml"
    path.write_text("middleware:\n  - nosuch.module:thing\n")
    with pytest.raises(ConfigError, match=r"middleware\.0: 'nosuch.module:thing' cannot be imported"):
        check_models_config(ll.load_models_config(path))


async def test_redact_pii_replaces_emails_phones_and_keys_before_they_leave(models, fake_upstream):
    models.use(redact_pii)
    await models.complete("tier:medium", SECRETS)
    sent = fake_upstream.calls[0].body["messages"][0]["content"]
    assert sent == "I am [EMAIL], call [PHONE], key [API_KEY]"


async def test_redact_pii_leaves_the_callers_messages_alone(models):
    models.use(redact_pii)
    original = [dict(message) for message in SECRETS]
    await models.complete("tier:medium", SECRETS)
    assert original == SECRETS


async def test_the_cache_answers_a_repeated_request_without_calling_a_model(models, fake_upstream):
    models.use(ResponseCache())
    first = await models.complete("tier:medium", MESSAGES, temperature=0)
    second = await models.complete("tier:medium", MESSAGES, temperature=0, request_id="other")
    assert fake_upstream.call_count() == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    assert (routing_of(second).cached, routing_of(second).cost_usd) == (True, 0.0)


async def test_the_cache_keys_on_the_generation_parameters(models, fake_upstream):
    models.use(ResponseCache())
    await models.complete("tier:medium", MESSAGES, temperature=0)
    await models.complete("tier:medium", MESSAGES, temperature=1)
    assert fake_upstream.call_count() == 2


async def test_the_cache_does_not_store_streams(models, fake_upstream):
    models.use(ResponseCache())
    for _ in range(2):
        stream = await models.complete("tier:medium", MESSAGES, stream=True)
        [chunk async for chunk in stream]
    assert fake_upstream.call_count() == 2


def test_the_cache_shares_answers_across_registries_through_a_redis_state_store(fake_upstream):
    """Two processes (here: two registries with their own loops) on one Redis share entries."""
    import asyncio
    import uuid

    from lucky_litellm import Models
    from lucky_litellm.state import state_from_url
    from lucky_litellm.testing.redis_server import RedisServer

    from .conftest import PLANTED_KEYS, upstream_config

    with RedisServer() as server:
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        caches = []
        for _ in range(2):
            state = state_from_url(server.url, prefix=prefix)
            models = Models(upstream_config(fake_upstream), state=state, environ=dict(PLANTED_KEYS))
            caches.append(models.use(ResponseCache(state=state)))
            answer = asyncio.run(models.complete("tier:medium", MESSAGES, temperature=0))
            state.close()
        assert fake_upstream.call_count() == 1
        assert (caches[1].hits, routing_of(answer).cached) == (1, True)
        assert answer.choices[0].message.content
