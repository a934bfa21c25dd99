"""Bad `messages` are the caller's mistake: a typed error naming the field, before anything is sent.

Every request goes through real litellm to the fake upstream; a bad one must never reach it, never
count against a model's circuit, and fail the same way whatever the spec kind and entry point."""

from __future__ import annotations

from typing import Any

import pytest

import lucky_litellm as ll
from lucky_litellm import InvalidMessagesError, LuckyError, routing_of
from lucky_litellm.testing import Behavior

from .conftest import MESSAGES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

A = "openai/gpt-4.1-mini"
SPECS = [A, "tier:medium", "user:u:ok", None]

BAD: list[tuple[str, Any, str]] = [
    ("none", None, "messages"),
    ("a string", "hi", "messages"),
    ("one dict", {"role": "user", "content": "hi"}, "messages"),
    ("empty", [], "messages"),
    ("a string item", ["hi"], "messages[0]"),
    ("no role", [{"content": "hi"}], "messages[0].role"),
    ("role not a string", [{"role": 1, "content": "hi"}], "messages[0].role"),
    ("no content", [{"role": "user"}], "messages[0].content"),
    ("null content", [{"role": "system", "content": None}], "messages[0].content"),
    ("content a number", [{"role": "user", "content": 5}], "messages[0].content"),
    ("second message", [*MESSAGES, {"role": "assistant"}], "messages[1].content"),
    ("tool without id", [*MESSAGES, {"role": "tool", "content": "42"}], "messages[1].tool_call_id"),
]


@pytest.fixture
def guarded(make_models):
    """A registry whose circuits open after a single failure, so a bad request counted as a model
    failure would show; user `u` has an experiment `ok` on model A."""
    models = make_models(health={"circuit": {"consecutiveFailures": 1, "errorRate": None}})
    models.load_user_config("u", {"experiments": {"ok": {"strategy": "first", "providers": [A]}}})
    return models


def assert_untouched(models: Any, fake_upstream: Any) -> None:
    assert fake_upstream.call_count() == 0
    assert models.circuits is not None and models.circuits.state_of(A) == "closed"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize(("name", "messages", "field"), BAD, ids=[row[0] for row in BAD])
async def test_bad_messages_are_a_typed_error_naming_the_field_and_nothing_is_sent(
    guarded, fake_upstream, spec, name, messages, field
):
    with pytest.raises(InvalidMessagesError) as caught:
        await guarded.complete(spec, messages, user_id="u")
    error = caught.value
    assert isinstance(error, LuckyError) and isinstance(error, ValueError) and isinstance(error, TypeError)
    assert error.field == field
    assert field in str(error)
    assert_untouched(guarded, fake_upstream)


@pytest.mark.parametrize("spec", SPECS)
async def test_a_stream_with_bad_messages_fails_the_same_way(guarded, fake_upstream, spec):
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]\.content"):
        await guarded.complete(spec, [{"role": "user"}], user_id="u", stream=True)
    assert_untouched(guarded, fake_upstream)


def test_complete_sync_with_bad_messages_fails_the_same_way(guarded, fake_upstream):
    with pytest.raises(InvalidMessagesError) as caught:
        guarded.complete_sync("user:u:ok", None, user_id="u")
    assert caught.value.field == "messages" and caught.value.index is None
    assert_untouched(guarded, fake_upstream)


async def test_run_plan_checks_the_messages_too(guarded, fake_upstream):
    plan = guarded.resolve("tier:medium")
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]\.role"):
        await guarded.run_plan(plan, [{"content": "hi"}])
    assert_untouched(guarded, fake_upstream)


async def test_messages_a_middleware_breaks_are_refused_before_the_engine(guarded, fake_upstream):
    async def drop_content(request, call_next):
        request.messages = [{"role": "user"}]
        return await call_next(request)

    guarded.use(drop_content)
    with pytest.raises(InvalidMessagesError, match=r"messages\[0\]\.content"):
        await guarded.complete(A, MESSAGES)
    assert_untouched(guarded, fake_upstream)


async def test_a_good_request_after_bad_ones_still_reaches_the_model(guarded, fake_upstream):
    for _ in range(3):
        with pytest.raises(InvalidMessagesError):
            await guarded.complete("user:u:ok", None, user_id="u")
    response = await guarded.complete("user:u:ok", MESSAGES, user_id="u")
    assert routing_of(response).winner == A
    assert fake_upstream.call_count() == 1


GOOD: list[tuple[str, list[Any]]] = [
    (
        "assistant tool call without content",
        [
            *MESSAGES,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    ),
    ("content parts", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
    (
        "developer and empty content",
        [{"role": "developer", "content": "be brief"}, {"role": "user", "content": ""}],
    ),
    ("a tuple of messages", list(MESSAGES)),
]


@pytest.mark.parametrize(("name", "messages"), GOOD, ids=[row[0] for row in GOOD])
async def test_what_openai_accepts_is_sent(guarded, fake_upstream, name, messages):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="fine"))
    response = await guarded.complete(A, tuple(messages) if name.startswith("a tuple") else messages)
    assert response.choices[0].message.content == "fine"
    assert fake_upstream.call_count() == 1


async def test_a_message_object_from_a_response_can_be_sent_back(guarded, fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris"))
    first = await guarded.complete(A, MESSAGES)
    follow_up = [*MESSAGES, first.choices[0].message, {"role": "user", "content": "And Spain?"}]
    second = await guarded.complete(A, follow_up)
    assert second.choices[0].message.content == "Paris"
    assert fake_upstream.call_count() == 2


# -- other caller errors are typed too -----------------------------------------------------------


async def test_consensus_with_stream_is_a_typed_lucky_error(guarded, fake_upstream):
    guarded.load_user_config("v", {"experiments": {"vote": {"strategy": "consensus", "providers": [A, A]}}})
    with pytest.raises(ll.StreamingNotSupportedError, match="consensus") as caught:
        await guarded.complete("user:v:vote", MESSAGES, user_id="v", stream=True)
    assert isinstance(caught.value, LuckyError) and isinstance(caught.value, ValueError)
    assert fake_upstream.call_count() == 0


def test_complete_sync_with_stream_is_a_typed_lucky_error(guarded):
    with pytest.raises(ll.StreamingNotSupportedError):
        guarded.complete_sync(A, MESSAGES, stream=True)


def test_a_middleware_that_is_not_callable_is_a_typed_lucky_error(guarded):
    with pytest.raises(ll.InvalidArgumentError) as caught:
        guarded.use("not callable")  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)


def test_bad_constructor_arguments_are_typed_lucky_errors():
    from lucky_litellm.alerts import CostAlerts
    from lucky_litellm.middleware.cache import ResponseCache
    from lucky_litellm.stats import Stats

    for build in (lambda: ResponseCache(0), lambda: CostAlerts([0]), lambda: Stats(max_models=0)):
        with pytest.raises(ll.UsageError):
            build()
    with pytest.raises(ll.InvalidArgumentError):
        ll.load_models_config(42)  # type: ignore[arg-type]
