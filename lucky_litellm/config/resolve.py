"""Checks a user config against the registry it is loaded into: every provider entry must resolve.

A schema can tell that ``opnai/gpt-4.1-mini`` is shaped like a spec, not that no provider is called
``opnai``, nor that ``tier:nosuch`` names no tier of this registry; both used to load and fail only
when called. `check_user_config` resolves each entry once, at load, against the registry's
provider table and tier table, and reports every problem with file, line and path.

A provider that is known but switched off (no key set) is not an error: the strategy skips it at
call time and says why, and setting the key later enables it.

A user with a ``costLimit`` may only name models that can be priced (`pricing.is_priced`): litellm
prices a model missing from its cost map at $0, so the budget would reserve nothing and never stop
it. Such an entry is refused here with the way to price it; tiers and specs given at call time are
checked when the call is made (`UnpricedModelError`, before anything is sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import (
    ConfigError,
    ConfigIssue,
    ModelSpecError,
    ProviderDisabledError,
    UnknownTierError,
    pricing_hint,
)
from ..spec import parse_spec
from .load import load_user_config, source_lines
from .schema import ModelsConfig, UserConfig

if TYPE_CHECKING:
    from ..providers import ProviderTable, Target
    from ..tiers import TierTable

__all__ = ["check_models_config", "check_user_config", "registry_tables"]


def check_user_config(config: UserConfig, providers: ProviderTable, tiers: TierTable) -> None:
    """Raise `ConfigError` listing every experiment entry that does not resolve in this registry."""
    lines = source_lines(config)
    issues: list[ConfigIssue] = []
    limit = config.defaults.cost_limit
    for name, experiment in config.experiments.items():
        for index, raw in enumerate(experiment.providers):
            problem = _problem(raw, providers, tiers, limit)
            if problem is not None:
                path = ("experiments", name, "providers", index)
                issues.append(
                    ConfigIssue(
                        ".".join(str(part) for part in path),
                        problem,
                        lines.file if lines else None,
                        lines.line_for(path) if lines else None,
                    )
                )
    if issues:
        raise ConfigError(issues, "invalid user config")


def _problem(raw: str, providers: ProviderTable, tiers: TierTable, cost_limit: float | None) -> str | None:
    try:
        spec = parse_spec(raw)
        if spec.kind == "tier":
            assert spec.tier is not None
            tiers.get(spec.tier)
            return None
        try:
            target = providers.target_for(spec)
        except ProviderDisabledError:
            if cost_limit is None:
                return None
            try:  # off only for want of a key: it is priced all the same once the key is set
                target = providers.target_for(spec, credentials=True)
            except ProviderDisabledError:
                return None
    except UnknownTierError as exc:
        return str(exc)
    except ModelSpecError as exc:
        return exc.reason
    if cost_limit is not None:
        return _unpriced(target, cost_limit)
    return None


def _unpriced(target: Target, cost_limit: float) -> str | None:
    """Why a budgeted user cannot name `target` (litellm has no price for it), or None."""
    from ..pricing import is_priced

    if is_priced(target):
        return None
    model = target.litellm_model
    return (
        f"litellm has no price for {model!r}, so defaults.costLimit (${cost_limit:g}) could not "
        f"bound its spend: {pricing_hint(model)}"
    )


def registry_tables(
    config: ModelsConfig | None = None, environ: Mapping[str, str] | None = None
) -> tuple[ProviderTable, TierTable]:
    """The provider and tier tables a registry built from `config` would have (no state store,
    nothing called): what `lucky-litellm validate` checks user configs against."""
    from ..providers import ProviderTable
    from ..tiers import build_tier_config

    providers = ProviderTable.build(config, environ)
    return providers, build_tier_config(config=config, providers=providers)


def check_models_config(config: ModelsConfig, environ: Mapping[str, str] | None = None) -> None:
    """Everything `Models(config)` would refuse, without building it: the tier table (tier options
    the strategy ignores), and every user config, loaded and resolved. One `ConfigError` for all."""
    providers, tiers = registry_tables(config, environ)
    issues: list[ConfigIssue] = []
    if config.default_tier is not None:
        try:
            tiers.get(config.default_tier)
        except UnknownTierError as exc:
            issues.append(ConfigIssue("defaultTier", str(exc)))
    if config.middleware:
        from ..middleware import load_configured

        lines = source_lines(config)
        issues.extend(load_configured(config.middleware, lines.file if lines else None)[1])
    for entry in config.users.values():
        try:
            check_user_config(load_user_config(entry), providers, tiers)
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues, "invalid models config")
