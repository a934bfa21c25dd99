"""Spec parsing: the four forms, and a precise error for each malformed input."""

import pytest

from lucky_litellm import ModelSpecError, parse_spec


def test_provider_model_spec_keeps_nested_model_path():
    spec = parse_spec("openrouter/google/gemini-2.5-flash-lite")
    assert (spec.kind, spec.provider, spec.model) == ("model", "openrouter", "google/gemini-2.5-flash-lite")
    assert spec.concrete == "openrouter/google/gemini-2.5-flash-lite"


def test_bare_model_name_is_a_concrete_spec_without_provider():
    spec = parse_spec("gpt-4.1-mini")
    assert (spec.kind, spec.provider, spec.model) == ("model", None, "gpt-4.1-mini")


def test_model_name_may_contain_a_colon_after_the_provider():
    assert parse_spec("local/qwen2.5:7b").model == "qwen2.5:7b"


def test_tier_spec():
    assert parse_spec("tier:medium").tier == "medium"


def test_user_spec_with_and_without_experiment():
    assert (parse_spec("user:u-1:fast").user_id, parse_spec("user:u-1:fast").experiment) == ("u-1", "fast")
    assert (parse_spec("user:u-1").user_id, parse_spec("user:u-1").experiment) == ("u-1", None)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty spec"),
        ("tier:", "missing tier name"),
        ("user:", "missing user id"),
        ("user::x", "missing user id"),
        ("user:u1:", "missing experiment name"),
        ("user:u1:a:b", "expected user:<userId>"),
        (" tier:medium", "whitespace"),
        ("openai/gpt 4", "whitespace"),
        ("openai/", "missing model name"),
        ("/gpt-4", "missing provider"),
        ("OpenAI/gpt-4", "must be lowercase"),
        ("tiers:medium", "unknown prefix 'tiers'"),
        ("tier:med/ium", "may only use"),
    ],
)
def test_malformed_specs_are_rejected_with_the_reason(spec, reason):
    with pytest.raises(ModelSpecError) as info:
        parse_spec(spec)
    assert reason in str(info.value)
    assert info.value.spec == spec


def test_non_string_spec_is_a_model_spec_error_and_a_value_error():
    with pytest.raises(ValueError, match="expected a string, got int"):
        parse_spec(42)
