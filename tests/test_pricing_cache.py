"""Pricing reads litellm's prices and tokenizer once, and still gives litellm's very figures.

The per-call path prices a budget's estimate and counts its prompt without asking litellm to
resolve the model or pick a tokenizer again (most of what those calls cost); these tests hold
the shortcuts to litellm's own answers, number for number.
"""

from __future__ import annotations

import random
from typing import Any

import litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucky_litellm import pricing


def _litellm_cost(model: str, prompt: int, completion: int) -> float:
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=model, prompt_tokens=prompt, completion_tokens=completion
    )
    return float(prompt_cost) + float(completion_cost)


def _chat_models(count: int) -> list[str]:
    """A spread of priced chat models from litellm's map, with their provider prefix."""
    chat = sorted(
        f"{entry['litellm_provider']}/{key}" if "/" not in key else key
        for key, entry in litellm.model_cost.items()
        if isinstance(entry, dict)
        and entry.get("mode") == "chat"
        and isinstance(entry.get("input_cost_per_token"), float)
        and isinstance(entry.get("litellm_provider"), str)
    )
    return random.Random(19).sample(chat, count)


@pytest.mark.parametrize(
    "model", ["openai/gpt-4.1-mini", "anthropic/claude-3-5-haiku-20241022", *_chat_models(40)]
)
def test_cost_from_tokens_equals_litellm_for_every_count(model: str) -> None:
    rng = random.Random(model)
    counts = [(0, 0), (1, 0), (0, 1), (65_536, 65_536), (120_000, 10), (10, 300_000)]
    counts += [(rng.randrange(0, 70_000), rng.randrange(0, 70_000)) for _ in range(20)]
    for prompt, completion in counts:
        try:
            expected = _litellm_cost(model, prompt, completion)
        except Exception:
            continue  # litellm cannot price it: the reseller fallback, checked below
        assert pricing.cost_from_tokens(model, prompt, completion) == expected, (prompt, completion)


def _tiered_model() -> str:
    """A chat model litellm prices higher above 200k prompt tokens."""
    for key, entry in sorted(litellm.model_cost.items()):
        if not (
            isinstance(entry, dict)
            and entry.get("mode") == "chat"
            and isinstance(entry.get("input_cost_per_token_above_200k_tokens"), float)
        ):
            continue
        model = key if "/" in key else f"{entry['litellm_provider']}/{key}"
        try:
            base = _litellm_cost(model, 1, 0)
            if _litellm_cost(model, 250_000, 0) != 250_000 * base:
                return model
        except Exception:
            continue
    raise AssertionError("no tiered chat model in litellm's map")


def test_tiered_prices_above_the_checked_range_come_from_litellm() -> None:
    model = _tiered_model()
    assert pricing.cost_from_tokens(model, 250_000, 1_000) == _litellm_cost(model, 250_000, 1_000)
    assert pricing.cost_from_tokens(model, 1_000, 1_000) == _litellm_cost(model, 1_000, 1_000)


@pytest.mark.parametrize(
    "model",
    [
        "openrouter/google/gemini-2.5-flash-lite",  # litellm answers 0 without raising
        "nobody/knows-this-model",  # litellm raises: the vendor price, else 0
        "openrouter/openai/gpt-4.1-mini",
    ],
)
def test_models_litellm_cannot_price_are_priced_as_before(model: str) -> None:
    for prompt, completion in ((1234, 567), (0, 1), (200_000, 3)):
        expected = pricing._cost_from_tokens_uncached(model, prompt, completion)
        assert pricing.cost_from_tokens(model, prompt, completion) == expected


def test_the_output_price_of_a_budget_bound_is_litellms_at_a_million_tokens() -> None:
    for model in ("openai/gpt-4.1-mini", "openrouter/google/gemini-2.5-flash-lite", *_chat_models(10)):
        expected = pricing._cost_from_tokens_uncached(model, 0, 1_000_000) / 1_000_000
        assert pricing.per_output_token_usd(model) == expected
    assert pricing.per_output_token_usd("local/llama3.2") == 0.0


def test_a_model_registered_later_is_priced_with_its_own_prices() -> None:
    model = "openai/lucky-test-registered-model"
    assert pricing.cost_from_tokens(model, 1000, 1000) == 0.0
    litellm.register_model(
        {
            "lucky-test-registered-model": {
                "litellm_provider": "openai",
                "mode": "chat",
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
            }
        }
    )
    try:
        assert pricing.cost_from_tokens(model, 1000, 1000) == _litellm_cost(model, 1000, 1000) > 0
    finally:
        litellm.model_cost.pop("lucky-test-registered-model", None)
        pricing.clear_price_cache()


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": _TEXT},
    optional={"name": st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)},
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_MESSAGE, max_size=6))
def test_prompt_tokens_of_text_messages_equal_litellms_count(messages: list[dict[str, Any]]) -> None:
    expected = litellm.token_counter(model="gpt-4o", messages=messages)
    assert pricing.count_prompt_tokens(messages) == expected


def test_messages_with_parts_or_tool_calls_are_counted_by_litellm() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "What is on this page?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
            ],
        },
    ]
    assert pricing.count_prompt_tokens(messages) == litellm.token_counter(model="gpt-4o", messages=messages)


@settings(max_examples=40, deadline=None)
@given(_TEXT.filter(bool))
def test_tokens_of_a_partial_answer_equal_litellms_count(text: str) -> None:
    expected = litellm.token_counter(model="gpt-4o", text=text, count_response_tokens=True)
    assert pricing.completion_tokens_of_text(text) == expected
