"""ProviderTable: enablement, spec -> litellm target, immutable updates, and no key leaks."""

from __future__ import annotations

from typing import Any

import pytest

from lucky_litellm.config import ModelsConfig, ProviderConfig
from lucky_litellm.errors import ConfigError, LuckyError, ModelSpecError
from lucky_litellm.providers import (
    BUILTIN_PROVIDERS,
    LOCAL_API_KEY,
    ProviderDisabledError,
    ProviderTable,
    Target,
)

PLANTED_KEY = "sk-planted-SECRET-0123456789abcdef"
LOCAL_BASE = "http://127.0.0.1:4010/v1"


def build(data: dict[str, Any] | None = None, **environ: str) -> ProviderTable:
    config = ModelsConfig.model_validate(data) if data is not None else None
    return ProviderTable.build(config, environ=environ)


def test_builtins_are_the_five_known_providers_in_order() -> None:
    assert list(BUILTIN_PROVIDERS) == ["openai", "anthropic", "openrouter", "groq", "local"]
    assert BUILTIN_PROVIDERS["groq"].api_key_env == "GROQ_API_KEY"
    assert BUILTIN_PROVIDERS["local"].litellm_provider == "openai"


def test_provider_is_enabled_by_its_key_env_var() -> None:
    table = build(GROQ_API_KEY="gsk-test")
    assert table.is_enabled("groq")
    assert not table.is_enabled("openai")


def test_empty_key_env_var_does_not_enable() -> None:
    assert not build(OPENAI_API_KEY="").is_enabled("openai")


def test_nothing_is_enabled_in_an_empty_environment() -> None:
    assert build().enabled() == []


def test_local_is_enabled_by_api_base_env() -> None:
    assert build(LUCKY_LOCAL_API_BASE=LOCAL_BASE).enabled() == ["local"]


def test_local_is_enabled_by_configured_api_base() -> None:
    assert build({"providers": {"local": {"api_base": LOCAL_BASE}}}).is_enabled("local")


def test_explicit_enabled_flag_beats_auto_detection() -> None:
    table = build(
        {"providers": {"openai": {"enabled": False}, "groq": {"enabled": True}}}, OPENAI_API_KEY="k"
    )
    assert not table.is_enabled("openai")
    assert table.is_enabled("groq")


def test_enabled_follows_builtin_order_then_config_order() -> None:
    data = {
        "providers": {"zeta": {"api_base": "http://127.0.0.1:1"}, "alpha": {"api_base": "http://127.0.0.1:2"}}
    }
    table = build(data, GROQ_API_KEY="g", OPENAI_API_KEY="o")
    assert table.enabled() == ["openai", "groq", "zeta", "alpha"]


def test_unknown_provider_is_not_enabled() -> None:
    assert not build().is_enabled("nope")


def test_config_overrides_only_the_builtin_fields_it_sets() -> None:
    table = build({"providers": {"openai": {"api_base": "http://127.0.0.1:9/v1"}}})
    merged = table.providers["openai"]
    assert merged.api_base == "http://127.0.0.1:9/v1"
    assert merged.api_key_env == "OPENAI_API_KEY"


def test_target_for_configured_provider_uses_litellm_prefix_and_base() -> None:
    target = build(LUCKY_LOCAL_API_BASE=LOCAL_BASE).target_for("local/llama3.2")
    assert (target.spec, target.provider, target.litellm_model) == (
        "local/llama3.2",
        "local",
        "openai/llama3.2",
    )
    assert target.call_kwargs() == {"api_base": LOCAL_BASE, "api_key": LOCAL_API_KEY}


def test_target_for_passes_the_key_captured_in_the_snapshot() -> None:
    target = build(OPENAI_API_KEY=PLANTED_KEY).target_for("openai/gpt-4.1-mini")
    assert target.litellm_model == "openai/gpt-4.1-mini"
    assert target.call_kwargs() == {"api_key": PLANTED_KEY}


def test_target_for_adds_provider_params() -> None:
    data = {"providers": {"groq": {"params": {"temperature": 0.1, "extra_headers": {"X-A": "1"}}}}}
    kwargs = build(data, GROQ_API_KEY="gsk-x").target_for("groq/openai/gpt-oss-20b").call_kwargs()
    assert kwargs == {"api_key": "gsk-x", "temperature": 0.1, "extra_headers": {"X-A": "1"}}


def test_call_kwargs_returns_a_fresh_copy() -> None:
    data = {"providers": {"groq": {"params": {"extra_headers": {"X-A": "1"}}}}}
    target = build(data, GROQ_API_KEY="gsk-x").target_for("groq/openai/gpt-oss-20b")
    target.call_kwargs()["extra_headers"]["X-A"] = "changed"
    assert target.call_kwargs()["extra_headers"] == {"X-A": "1"}


def test_snapshot_ignores_later_environment_changes() -> None:
    environ = {"OPENAI_API_KEY": "first"}
    table = ProviderTable.build(environ=environ)
    environ["OPENAI_API_KEY"] = "second"
    assert table.target_for("openai/gpt-4o-mini").call_kwargs()["api_key"] == "first"


def test_provider_known_only_to_litellm_passes_through() -> None:
    target = build().target_for("mistral/mistral-small-latest")
    assert (target.provider, target.litellm_model) == ("mistral", "mistral/mistral-small-latest")
    assert target.call_kwargs() == {}


def test_bare_model_name_gets_its_provider_from_litellm() -> None:
    target = build(OPENAI_API_KEY="k").target_for("gpt-4.1-mini")
    assert (target.spec, target.provider, target.litellm_model) == (
        "gpt-4.1-mini",
        "openai",
        "openai/gpt-4.1-mini",
    )


def test_bare_model_litellm_does_not_know_is_a_spec_error() -> None:
    with pytest.raises(ModelSpecError, match="provider/model"):
        build().target_for("totally-unknown-model")


def test_unknown_provider_suggests_the_closest_name() -> None:
    with pytest.raises(ModelSpecError) as info:
        build().target_for("opnai/gpt-4.1-mini")
    assert "unknown provider 'opnai' (not configured and unknown to litellm)" in str(info.value)
    assert "did you mean 'openai'?" in str(info.value)


def test_disabled_provider_names_the_env_var_that_enables_it() -> None:
    with pytest.raises(ProviderDisabledError) as info:
        build().target_for("groq/openai/gpt-oss-20b")
    assert info.value.provider == "groq"
    assert "GROQ_API_KEY" in str(info.value)
    assert isinstance(info.value, LuckyError)


def test_provider_switched_off_in_config_says_so() -> None:
    table = build({"providers": {"openai": {"enabled": False}}}, OPENAI_API_KEY="k")
    with pytest.raises(ProviderDisabledError, match=r"providers\.openai\.enabled"):
        table.target_for("openai/gpt-4o-mini")


def test_tier_spec_is_not_a_target() -> None:
    with pytest.raises(ModelSpecError, match="not a concrete"):
        build().target_for("tier:medium")


def test_with_update_returns_a_new_table_and_leaves_the_old_one_intact() -> None:
    old = build(GROQ_API_KEY="g")
    new = old.with_update("groq", {"enabled": False})
    assert old.is_enabled("groq")
    assert not new.is_enabled("groq")
    assert new.providers["groq"].api_key_env == "GROQ_API_KEY"


def test_with_update_accepts_camel_case_keys() -> None:
    new = build(MY_GROQ="g").with_update("groq", {"apiKeyEnv": "MY_GROQ"})
    assert new.providers["groq"].api_key_env == "MY_GROQ"
    assert new.is_enabled("groq")


def test_with_update_accepts_a_provider_config() -> None:
    new = build().with_update("local", ProviderConfig(api_base=LOCAL_BASE))
    assert new.target_for("local/llama3.2").call_kwargs()["api_base"] == LOCAL_BASE
    assert new.providers["local"].litellm_provider == "openai"


def test_with_update_adds_a_new_provider() -> None:
    new = build().with_update("myproxy", {"api_base": "http://127.0.0.1:7/v1", "litellm_provider": "openai"})
    assert new.target_for("myproxy/some-model").litellm_model == "openai/some-model"
    assert "myproxy" in new.enabled()


def test_with_update_invalid_value_raises_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        build().with_update("groq", {"enabled": "maybe"})
    assert [issue.path for issue in info.value.issues] == ["providers.groq.enabled"]


def test_with_update_unknown_field_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        build().with_update("groq", {"api_key": PLANTED_KEY})
    assert [issue.path for issue in info.value.issues] == ["providers.groq.api_key"]
    assert PLANTED_KEY not in str(info.value)


def test_planted_key_never_appears_in_repr_str_or_errors() -> None:
    table = build(OPENAI_API_KEY=PLANTED_KEY, GROQ_API_KEY=PLANTED_KEY)
    target = table.target_for("openai/gpt-4.1-mini")
    texts = [repr(table), str(table), repr(target), str(target), repr([target])]
    with pytest.raises(ModelSpecError) as spec_error:
        table.target_for("opnai/gpt-4.1-mini")
    with pytest.raises(ProviderDisabledError) as disabled:
        table.with_update("groq", {"enabled": False}).target_for("groq/openai/gpt-oss-20b")
    texts += [str(spec_error.value), str(disabled.value)]
    assert target.call_kwargs()["api_key"] == PLANTED_KEY
    for text in texts:
        assert PLANTED_KEY not in text
        assert "SECRET" not in text


def test_targets_are_hashable_and_compare_by_value() -> None:
    table = build(OPENAI_API_KEY="k")
    first, second = table.target_for("openai/gpt-4o-mini"), table.target_for("openai/gpt-4o-mini")
    assert first == second
    assert len({first, second}) == 1
    assert isinstance(first, Target)


def test_local_disabled_error_names_the_base_env_var() -> None:
    with pytest.raises(ProviderDisabledError) as info:
        build().target_for("local/llama3.2")
    assert "LUCKY_LOCAL_API_BASE" in str(info.value)
    assert "providers.local.api_base" in str(info.value)


def test_target_for_is_cached_per_snapshot() -> None:
    table = build(OPENAI_API_KEY="k")
    assert table.target_for("openai/gpt-4o-mini") is table.target_for("openai/gpt-4o-mini")


def test_failed_lookups_are_not_cached() -> None:
    table = build()
    for _ in range(2):
        with pytest.raises(ProviderDisabledError):
            table.target_for("openai/gpt-4o-mini")
