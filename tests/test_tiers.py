"""Tier tables: defaults, overrides, the fast-tier race, aliases, reverse lookups and validation."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from typing import Any

import pytest

from lucky_litellm.config import ModelsConfig, TierConfig
from lucky_litellm.errors import ConfigError, ModelSpecError, UnknownTierError
from lucky_litellm.providers import ProviderTable
from lucky_litellm.tiers import (
    DEFAULT_MODELS,
    FAST_TIERS,
    TIER_NAMES,
    Tier,
    TierResolver,
    TierTable,
    build_tier_config,
    get_default_tier_name,
    model_price,
    print_validation_results,
    tier_table_rows,
    validate_tier_config,
)

ALL_DEFAULTS = sorted({model for tiers in DEFAULT_MODELS.values() for model in tiers.values()})
PRICED_DEFAULTS = [m for m in ALL_DEFAULTS if not m.startswith("local/")]


def table(provider: str | None = "openai", data: dict[str, Any] | None = None, **environ: str) -> TierTable:
    config = ModelsConfig.model_validate(data) if data is not None else None
    return build_tier_config(provider, config, ProviderTable.build(config, environ=environ))


def resolver(provider: str = "openai", data: dict[str, Any] | None = None, **environ: str) -> TierResolver:
    return TierResolver(table(provider, data, **environ))


def config_error_paths(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [issue.path for issue in exc.value.issues]


# -- defaults ---------------------------------------------------------------------------------


def test_every_provider_defines_all_nine_tiers() -> None:
    for provider, tiers in DEFAULT_MODELS.items():
        assert tuple(tiers) == TIER_NAMES, provider
        assert all(model.startswith(f"{provider}/") for model in tiers.values())


@pytest.mark.parametrize("model", PRICED_DEFAULTS)
def test_every_default_model_is_priced_by_litellm(model: str) -> None:
    price = model_price(model)
    assert price is not None
    assert price[0] > 0 and price[1] > 0


@pytest.mark.parametrize("model", [m for m in ALL_DEFAULTS if m.startswith("local/")])
def test_local_models_are_free(model: str) -> None:
    assert model_price(model) == (0.0, 0.0)


def test_model_price_reads_litellms_cost_map() -> None:
    assert model_price("openai/gpt-4.1-mini") == (0.4, 1.6)
    assert model_price("gpt-4.1-mini") == (0.4, 1.6)


def test_openrouter_models_are_priced_as_their_upstream_model() -> None:
    assert model_price("openrouter/google/gemini-2.5-flash-lite") == model_price(
        "gemini/gemini-2.5-flash-lite"
    )
    assert model_price("openrouter/openai/gpt-4o-mini") == model_price("openai/gpt-4o-mini")


def test_model_price_is_none_for_unknown_models_and_non_model_specs() -> None:
    assert model_price("openai/gpt-does-not-exist") is None
    assert model_price("tier:medium") is None
    assert model_price("not a spec") is None


def test_default_tier_name_is_default() -> None:
    assert get_default_tier_name() == "default"


# -- forward and reverse lookups ----------------------------------------------------------------

PROVIDER_TIERS = [(p, t) for p in DEFAULT_MODELS for t in TIER_NAMES]


@pytest.mark.parametrize(("provider", "tier"), PROVIDER_TIERS)
def test_forward_lookup_returns_the_providers_default_model(provider: str, tier: str) -> None:
    assert resolver(provider).get_model_for_tier(tier) == DEFAULT_MODELS[provider][tier]


@pytest.mark.parametrize(("provider", "tier"), PROVIDER_TIERS)
def test_reverse_lookup_finds_a_tier_serving_the_model(provider: str, tier: str) -> None:
    lookups = resolver(provider)
    model = DEFAULT_MODELS[provider][tier]
    back = lookups.get_tier_for_model(model)
    assert back is not None
    assert lookups.get_model_for_tier(back) == model
    assert lookups.resolve_model_spec(model) == f"tier:{back}"


@pytest.mark.parametrize("provider", list(DEFAULT_MODELS))
def test_every_tier_round_trips(provider: str) -> None:
    lookups = resolver(provider)
    for name, tier in lookups.table.tiers.items():
        back = lookups.get_tier_for_model(tier.model)
        assert back is not None, name
        assert lookups.get_model_for_tier(back) == tier.model


def test_design_example_gpt_4_1_mini_is_medium() -> None:
    lookups = resolver("openai")
    assert lookups.get_tier_for_model("openai/gpt-4.1-mini") == "medium"
    assert lookups.get_model_for_tier("medium") == "openai/gpt-4.1-mini"
    assert lookups.resolve_model_spec("openai/gpt-4.1-mini") == "tier:medium"


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "openai/gpt-4.1-nano", "nano"),  # summary and nano: capability tier wins
        ("openai", "openai/gpt-4o-mini", "low"),  # low and fallback
        ("openai", "openai/gpt-4.1-mini", "medium"),  # medium, default and fitness
        ("anthropic", "anthropic/claude-haiku-4-5", "nano"),  # summary, nano, low, fitness, fallback
        ("anthropic", "anthropic/claude-sonnet-4-5", "medium"),  # medium, default, reasoning
    ],
)
def test_model_serving_several_tiers_maps_to_its_capability_tier(
    provider: str, model: str, expected: str
) -> None:
    assert resolver(provider).get_tier_for_model(model) == expected


def test_role_tier_wins_when_no_capability_tier_uses_the_model() -> None:
    lookups = resolver("openai", {"tiers": {"fallback": {"model": "openai/gpt-3.5-turbo"}}})
    assert lookups.get_tier_for_model("openai/gpt-3.5-turbo") == "fallback"


def test_bare_model_name_is_found_too() -> None:
    assert resolver("openai").get_tier_for_model("gpt-4.1-mini") == "medium"


def test_model_no_tier_uses_has_no_tier_and_passes_through() -> None:
    lookups = resolver("openai")
    assert lookups.get_tier_for_model("openai/gpt-4o") is None
    assert lookups.resolve_model_spec("openai/gpt-4o") == "openai/gpt-4o"


def test_other_providers_race_members_do_not_map_back_to_the_tier() -> None:
    lookups = resolver("openai", None, OPENAI_API_KEY="o", GROQ_API_KEY="g")
    assert "groq/openai/gpt-oss-20b" in lookups.table.get("nano").models
    assert lookups.get_tier_for_model("groq/openai/gpt-oss-20b") is None


def test_tier_and_user_specs_pass_through_resolve_model_spec() -> None:
    lookups = resolver("openai")
    assert lookups.resolve_model_spec("tier:medium") == "tier:medium"
    assert lookups.resolve_model_spec("user:u1:fast") == "user:u1:fast"


def test_resolve_model_spec_rejects_malformed_specs() -> None:
    with pytest.raises(ModelSpecError):
        resolver("openai").resolve_model_spec("tier:")


def test_get_tier_for_model_returns_none_for_garbage() -> None:
    lookups = resolver("openai")
    assert lookups.get_tier_for_model("") is None
    assert lookups.get_tier_for_model(None) is None  # type: ignore[arg-type]


def test_unknown_tier_error_lists_tiers_and_aliases() -> None:
    with pytest.raises(UnknownTierError) as info:
        resolver("openai").get_model_for_tier("hgih")
    assert "high" in info.value.known
    assert "fast" in info.value.known


# -- fast tiers ---------------------------------------------------------------------------------


def test_fast_tiers_race_across_enabled_providers_active_first() -> None:
    tiers = table("groq", None, OPENAI_API_KEY="o", ANTHROPIC_API_KEY="a", GROQ_API_KEY="g")
    for name in FAST_TIERS:
        tier = tiers.get(name)
        assert tier.strategy == "race"
        assert tier.models == (
            DEFAULT_MODELS["groq"][name],
            DEFAULT_MODELS["openai"][name],
            DEFAULT_MODELS["anthropic"][name],
        )
        assert tier.model == DEFAULT_MODELS["groq"][name]


def test_fast_tier_with_one_enabled_provider_runs_first() -> None:
    tier = table("openai", None, OPENAI_API_KEY="o").get("nano")
    assert (tier.strategy, tier.models) == ("first", ("openai/gpt-4.1-nano",))


def test_disabled_active_provider_still_leads_the_race() -> None:
    tier = table("openai", None, GROQ_API_KEY="g").get("low")
    assert tier.models == ("openai/gpt-4o-mini", "groq/openai/gpt-oss-20b")


def test_other_tiers_run_the_active_model_only() -> None:
    tiers = table("openai", None, OPENAI_API_KEY="o", ANTHROPIC_API_KEY="a", GROQ_API_KEY="g")
    for name in set(TIER_NAMES) - set(FAST_TIERS):
        tier = tiers.get(name)
        assert (tier.strategy, tier.models) == ("first", (DEFAULT_MODELS["openai"][name],))


def test_fast_race_includes_local_when_its_base_is_set() -> None:
    tier = table("openai", None, LUCKY_LOCAL_API_BASE="http://127.0.0.1:1/v1").get("nano")
    assert tier.models == ("openai/gpt-4.1-nano", "local/llama3.2:1b")


# -- provider selection -------------------------------------------------------------------------


def test_lucky_provider_env_selects_the_active_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCKY_PROVIDER", "groq")  # ignored: the table's environment is the one read
    tiers = build_tier_config(providers=ProviderTable.build(environ={"LUCKY_PROVIDER": "anthropic"}))
    assert tiers.provider == "anthropic"
    assert tiers.get("medium").model == "anthropic/claude-sonnet-4-5"


def test_argument_and_config_beat_lucky_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCKY_PROVIDER", "anthropic")
    assert table("groq").provider == "groq"
    assert table(None, {"provider": "openrouter"}).provider == "openrouter"


def test_openai_is_the_default_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUCKY_PROVIDER", raising=False)
    assert table(None).provider == "openai"


def test_module_resolver_builds_lazily_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCKY_PROVIDER", "groq")
    lookups = TierResolver()
    assert repr(lookups) == "TierResolver(unbuilt)"
    assert lookups.get_model_for_tier("medium") == "groq/openai/gpt-oss-120b"


def test_unknown_provider_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        table("opnai")
    assert config_error_paths(info) == ["provider"]
    assert "did you mean 'openai'?" in str(info.value)


def test_configured_provider_without_defaults_must_cover_every_tier() -> None:
    data = {"providers": {"myproxy": {"api_base": "http://127.0.0.1:1/v1", "models": {"medium": "m1"}}}}
    with pytest.raises(ConfigError) as info:
        table("myproxy", data)
    assert set(config_error_paths(info)) == {f"tiers.{t}" for t in TIER_NAMES if t != "medium"}


def test_configured_provider_with_all_tiers_becomes_active() -> None:
    models = {t: f"model-{t}" for t in TIER_NAMES}
    data = {"providers": {"myproxy": {"api_base": "http://127.0.0.1:1/v1", "models": models}}}
    assert table("myproxy", data).get("high").model == "myproxy/model-high"


# -- config overrides ---------------------------------------------------------------------------


def test_provider_model_override_gets_the_provider_prefix() -> None:
    tiers = table("openai", {"providers": {"openai": {"models": {"medium": "gpt-4o"}}}})
    assert tiers.get("medium").model == "openai/gpt-4o"


def test_provider_model_override_changes_that_providers_race_entry() -> None:
    data = {"providers": {"groq": {"models": {"nano": "groq/openai/gpt-oss-120b"}}}}
    tier = table("openai", data, OPENAI_API_KEY="o", GROQ_API_KEY="g").get("nano")
    assert tier.models == ("openai/gpt-4.1-nano", "groq/openai/gpt-oss-120b")


def test_tier_override_pins_the_models_and_drops_the_race() -> None:
    data = {"tiers": {"nano": {"model": "openai/gpt-4o-mini"}}}
    tier = table("openai", data, OPENAI_API_KEY="o", GROQ_API_KEY="g").get("nano")
    assert (tier.strategy, tier.models) == ("first", ("openai/gpt-4o-mini",))


def test_pinned_model_list_defaults_to_fallback_and_drops_duplicates() -> None:
    data = {
        "tiers": {
            "medium": {"models": ["openai/gpt-4.1-mini", "openai/gpt-4.1-mini", "groq/openai/gpt-oss-120b"]}
        }
    }
    tier = table("openai", data).get("medium")
    assert (tier.strategy, tier.models) == ("fallback", ("openai/gpt-4.1-mini", "groq/openai/gpt-oss-120b"))


def test_tier_settings_without_models_keep_the_default_models() -> None:
    data = {"tiers": {"nano": {"timeout": 5000, "maxCost": 0.01, "hedgeAfter": 200, "retries": 1}}}
    tier = table("openai", data, OPENAI_API_KEY="o", GROQ_API_KEY="g").get("nano")
    assert tier.models == ("openai/gpt-4.1-nano", "groq/openai/gpt-oss-20b")
    assert (tier.timeout_ms, tier.max_cost, tier.hedge_after_ms, tier.retries) == (5000, 0.01, 200, 1)


def test_explicit_strategy_wins() -> None:
    tier = table("openai", {"tiers": {"high": {"strategy": "consensus", "minAgreement": 0.6}}}).get("high")
    assert (tier.strategy, tier.min_agreement) == ("consensus", 0.6)


def test_custom_tier_is_added() -> None:
    tiers = table("openai", {"tiers": {"creative": {"model": "openai/gpt-4o"}}})
    assert tiers.get("creative").model == "openai/gpt-4o"


def test_custom_tier_without_a_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        table("openai", {"tiers": {"creative": {"timeout": 100}}})
    assert config_error_paths(info) == ["tiers.creative"]


def test_non_concrete_tier_model_is_a_config_error() -> None:
    """ModelsConfig already rejects this; the build re-checks for configs made without validation."""
    tier_config = TierConfig.model_construct(models=["openai/gpt-4o", "tier:high"])
    config = ModelsConfig.model_construct(tiers={"medium": tier_config})
    with pytest.raises(ConfigError) as info:
        build_tier_config("openai", config, ProviderTable.build(environ={}))
    assert config_error_paths(info) == ["tiers.medium.models.1"]


# -- aliases ------------------------------------------------------------------------------------


def test_fast_is_an_alias_of_nano() -> None:
    lookups = resolver("openai")
    assert lookups.get_tier("fast") is lookups.get_tier("nano")
    assert lookups.get_model_for_tier("fast") == "openai/gpt-4.1-nano"


def test_custom_alias_is_added_next_to_fast() -> None:
    lookups = resolver("openai", {"aliases": {"quick": "low"}})
    assert lookups.get_model_for_tier("quick") == "openai/gpt-4o-mini"
    assert lookups.get_model_for_tier("fast") == "openai/gpt-4.1-nano"


def test_alias_can_point_to_a_custom_tier() -> None:
    lookups = resolver(
        "openai", {"tiers": {"creative": {"model": "openai/gpt-4o"}}, "aliases": {"art": "creative"}}
    )
    assert lookups.get_model_for_tier("art") == "openai/gpt-4o"


def test_alias_to_a_non_tier_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        table("openai", {"aliases": {"quick": "lowest"}})
    assert config_error_paths(info) == ["aliases.quick"]


def test_alias_hiding_a_tier_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        table("openai", {"aliases": {"high": "low"}})
    assert config_error_paths(info) == ["aliases.high"]


# -- validation ---------------------------------------------------------------------------------


def with_tiers(base: TierTable, **changes: Tier | None) -> TierTable:
    tiers = {**base.tiers, **changes}
    return dataclasses.replace(base, tiers={k: v for k, v in tiers.items() if v is not None})


def test_default_tables_validate_cleanly() -> None:
    for provider in DEFAULT_MODELS:
        result = validate_tier_config(table(provider))
        assert result.success, (provider, result.errors)
        assert result["success"] is True
        assert result.errors == [] and result.warnings == []


def test_local_models_are_info_not_errors() -> None:
    result = validate_tier_config(table("local"))
    assert result.success
    assert any("local/qwen2.5:7b" in line and "$0" in line for line in result.info)


def test_validation_reports_a_missing_tier() -> None:
    result = validate_tier_config(with_tiers(table("openai"), high=None))
    assert not result.success
    assert result.errors == ["missing tier 'high'"]


def test_validation_reports_an_unpriced_model() -> None:
    broken = Tier("medium", "openai/gpt-nonexistent", ("openai/gpt-nonexistent",), "first")
    result = validate_tier_config(with_tiers(table("openai"), medium=broken))
    assert not result.success
    assert any("'openai/gpt-nonexistent'" in e and "price" in e for e in result.errors)


def test_validation_reports_an_unparsable_model() -> None:
    broken = Tier("low", "tier:medium", ("tier:medium",), "first")
    result = validate_tier_config(with_tiers(table("openai"), low=broken))
    assert any("tier 'low'" in e and "not a concrete" in e for e in result.errors)


def test_validation_warns_about_an_orphaned_tier() -> None:
    result = validate_tier_config(table("openai", {"tiers": {"creative": {"model": "openai/gpt-4o"}}}))
    assert result.success
    assert len(result.warnings) == 1 and "orphaned tier 'creative'" in result.warnings[0]


def test_tier_with_an_alias_is_not_orphaned() -> None:
    data = {"tiers": {"creative": {"model": "openai/gpt-4o"}}, "aliases": {"art": "creative"}}
    assert validate_tier_config(table("openai", data)).warnings == []


def test_validation_reports_a_bad_alias() -> None:
    base = table("openai")
    result = validate_tier_config(dataclasses.replace(base, aliases={"fast": "nano", "quick": "lowest"}))
    assert not result.success
    assert result.errors == ["alias 'quick' points to 'lowest', which is not a tier"]


def test_validation_reports_a_broken_round_trip() -> None:
    base = table("openai")

    # A primary model that is not the first of its list still round-trips; a table whose
    # reverse index points elsewhere cannot be built by build_tier_config, so fake one.
    class Skewed(TierTable):
        def tier_for_model(self, model: str) -> str | None:
            return "high"

    skewed = Skewed(provider=base.provider, tiers=base.tiers, aliases=base.aliases)
    result = validate_tier_config(skewed)
    assert any("round-trip" in e and "tier 'medium'" in e for e in result.errors)


def test_validation_without_a_table_reports_build_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCKY_PROVIDER", "opnai")
    result = validate_tier_config()
    assert not result.success
    assert "unknown provider 'opnai'" in result.errors[0]


def test_print_validation_results_marks_each_line() -> None:
    result = validate_tier_config(
        with_tiers(table("openai", {"tiers": {"x": {"model": "openai/gpt-4o"}}}), high=None)
    )
    out = io.StringIO()
    print_validation_results(result, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "✗ tier configuration has 1 error"
    assert "  ✗ missing tier 'high'" in lines
    assert any(line.startswith("  ⚠ orphaned tier 'x'") for line in lines)
    assert any(line.startswith("  ✓ active provider: openai") for line in lines)


def test_tier_table_rows_carry_models_strategy_and_prices() -> None:
    rows = tier_table_rows(table("openai", None, OPENAI_API_KEY="o", GROQ_API_KEY="g"))
    assert [row["tier"] for row in rows] == list(TIER_NAMES)
    medium = rows[TIER_NAMES.index("medium")]
    assert medium == {
        "tier": "medium",
        "model": "openai/gpt-4.1-mini",
        "strategy": "first",
        "models": ["openai/gpt-4.1-mini"],
        "aliases": [],
        "input_per_1m": 0.4,
        "output_per_1m": 1.6,
    }
    nano = rows[TIER_NAMES.index("nano")]
    assert (nano["strategy"], nano["aliases"]) == ("race", ["fast"])


def test_importing_tiers_and_providers_does_not_import_litellm() -> None:
    code = "import sys, lucky_litellm.tiers, lucky_litellm.providers; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
