"""Tiers: semantic model names (``tier:medium``) mapped to concrete models, and back.

A `TierTable` is built once from `DEFAULT_MODELS` for the active provider, overridden by the
config, and then never changes. Rules, in the order `build_tier_config` applies them:

* **Active provider**: the ``provider`` argument, else ``$LUCKY_PROVIDER``, else ``config.provider``,
  else ``openai`` (the environment over the file, as everywhere: see `lucky_litellm.config`).
* **Per-provider models**: ``DEFAULT_MODELS[provider]``, overridden per tier by
  ``providers.<name>.models`` (a value without the ``<name>/`` prefix gets it added).
* **Fast tiers** (summary, nano, low) race that tier's model of *every enabled provider*, the active
  provider's first, duplicates dropped. When only one model is left the strategy is ``first``: a
  race of one is the same call with extra bookkeeping.
* **Other tiers** run the active provider's model with ``first``.
* **Tier overrides** (``tiers.<name>``): ``model``/``models`` pin the tier to exactly those models
  (no cross-provider race is added: an explicit list means what it says); without an explicit
  ``strategy`` a pinned list of several models uses ``race`` for fast tiers and ``fallback``
  otherwise. The other fields (timeout, maxCost, ...) only set that field.
* **Aliases**: ``{"fast": "nano"}`` merged with ``config.aliases``; an alias must name a tier.

Reverse lookup (model -> tier) considers each tier's primary model only, so that
``get_model_for_tier(get_tier_for_model(m)) == m`` always holds. When one model serves several
tiers, the capability tiers win over the role tiers: ``nano, low, medium, high, reasoning`` are
tried first, then ``summary, default, fitness, fallback``, then custom tiers. So
``openai/gpt-4.1-mini`` (medium and default) is ``medium`` and ``openai/gpt-4.1-nano`` (summary and
nano) is ``nano``: the tier named after what the model *is*, not what it is used for.
"""

from __future__ import annotations

import difflib
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from .config.environment import env_issue
from .config.issues import ConfigWarning, locate
from .config.load import source_lines
from .errors import ConfigError, ConfigIssue, ModelSpecError, UnknownTierError
from .plan import Strategy
from .providers import ProviderTable
from .spec import parse_spec

if TYPE_CHECKING:
    from .config import ModelsConfig, TierConfig

__all__ = [
    "DEFAULT_ALIASES",
    "DEFAULT_MODELS",
    "DEFAULT_PROVIDER",
    "FAST_TIERS",
    "FREE_PROVIDERS",
    "TIER_NAMES",
    "Tier",
    "TierResolver",
    "TierTable",
    "TierValidation",
    "build_tier_config",
    "get_default_tier_name",
    "model_price",
    "print_validation_results",
    "tier_resolver",
    "tier_table_rows",
    "validate_tier_config",
]

TIER_NAMES = ("summary", "nano", "low", "medium", "high", "default", "fitness", "reasoning", "fallback")
FAST_TIERS = ("summary", "nano", "low")
DEFAULT_PROVIDER = "openai"
PROVIDER_ENV = "LUCKY_PROVIDER"  # == config.environment.PROVIDER_ENV
DEFAULT_ALIASES: Mapping[str, str] = MappingProxyType({"fast": "nano"})

FREE_PROVIDERS = frozenset({"local", "ollama", "ollama_chat", "lm_studio", "llamafile", "hosted_vllm"})
"""Self-hosted runtimes: nobody bills per token, so their models are priced at $0."""

_REVERSE_PREFERENCE = (
    "nano",
    "low",
    "medium",
    "high",
    "reasoning",
    "summary",
    "default",
    "fitness",
    "fallback",
)

# Resellers that bill the upstream vendor's list price; when litellm's map has no entry of their
# own, `model_price` prices ``openrouter/<vendor>/<model>`` as the vendor's ``<model>``.
_RESELLERS = frozenset({"openrouter"})
_VENDOR_PROVIDER = {"google": "gemini", "mistralai": "mistral", "x-ai": "xai"}

# Every name below is priced by litellm's bundled cost map (see test_every_default_model_is_priced),
# except local ones, which are free. Roles: summary = cheap bulk condensing; fitness = scoring many
# candidates (cheap but consistent); reasoning = a thinking model; fallback = cheap and dependable.
DEFAULT_MODELS: dict[str, dict[str, str]] = {
    "openai": {
        "summary": "openai/gpt-4.1-nano",
        "nano": "openai/gpt-4.1-nano",
        "low": "openai/gpt-4o-mini",
        "medium": "openai/gpt-4.1-mini",
        "high": "openai/gpt-4.1",
        "default": "openai/gpt-4.1-mini",
        "fitness": "openai/gpt-4.1-mini",
        "reasoning": "openai/o4-mini",
        "fallback": "openai/gpt-4o-mini",
    },
    "anthropic": {
        "summary": "anthropic/claude-haiku-4-5",
        "nano": "anthropic/claude-haiku-4-5",
        "low": "anthropic/claude-haiku-4-5",
        "medium": "anthropic/claude-sonnet-4-5",
        "high": "anthropic/claude-opus-4-5",
        "default": "anthropic/claude-sonnet-4-5",
        "fitness": "anthropic/claude-haiku-4-5",
        "reasoning": "anthropic/claude-sonnet-4-5",
        "fallback": "anthropic/claude-haiku-4-5",
    },
    "openrouter": {
        "summary": "openrouter/google/gemini-2.5-flash-lite",
        "nano": "openrouter/google/gemini-2.5-flash-lite",
        "low": "openrouter/openai/gpt-4o-mini",
        "medium": "openrouter/google/gemini-2.5-flash",
        "high": "openrouter/google/gemini-2.5-pro",
        "default": "openrouter/google/gemini-2.5-flash",
        "fitness": "openrouter/google/gemini-2.5-flash",
        "reasoning": "openrouter/openai/o4-mini",
        "fallback": "openrouter/openai/gpt-4o-mini",
    },
    "groq": {
        "summary": "groq/openai/gpt-oss-20b",
        "nano": "groq/openai/gpt-oss-20b",
        "low": "groq/openai/gpt-oss-20b",
        "medium": "groq/openai/gpt-oss-120b",
        "high": "groq/openai/gpt-oss-120b",
        "default": "groq/openai/gpt-oss-120b",
        "fitness": "groq/openai/gpt-oss-120b",
        "reasoning": "groq/openai/gpt-oss-120b",
        "fallback": "groq/openai/gpt-oss-20b",
    },
    "local": {
        "summary": "local/llama3.2:1b",
        "nano": "local/llama3.2:1b",
        "low": "local/llama3.2",
        "medium": "local/qwen2.5:7b",
        "high": "local/qwen2.5:14b",
        "default": "local/qwen2.5:7b",
        "fitness": "local/qwen2.5:7b",
        "reasoning": "local/deepseek-r1:8b",
        "fallback": "local/llama3.2",
    },
}


def get_default_tier_name() -> str:
    """The tier a caller gets when they name none."""
    return "default"


# -- pricing ----------------------------------------------------------------------------------


def model_price(spec: str) -> tuple[float, float] | None:
    """USD per 1M (input, output) tokens from litellm's cost map; None when litellm cannot price it.

    Local runtimes are free. `litellm.cost_per_token` cannot price OpenRouter models (the bundled
    map has no OpenRouter entries), so resellers fall back to the upstream vendor's price.
    """
    try:
        parsed = parse_spec(spec)
    except ModelSpecError:
        return None
    if parsed.kind != "model" or parsed.model is None:
        return None
    if parsed.provider in FREE_PROVIDERS:
        return (0.0, 0.0)
    import litellm

    for key, owner in _price_keys(parsed.provider, parsed.model):
        price = _per_million(litellm.model_cost.get(key), owner)
        if price is not None:
            return price
    return None


def _price_keys(provider: str | None, model: str) -> list[tuple[str, str | None]]:
    """Cost-map keys to try, each with the `litellm_provider` the entry must have (None: any)."""
    if provider is None:
        return [(model, None)]
    keys: list[tuple[str, str | None]] = [(f"{provider}/{model}", None), (model, provider)]
    if provider in _RESELLERS and "/" in model:
        vendor, _, upstream = model.partition("/")
        native = _VENDOR_PROVIDER.get(vendor, vendor)
        keys += [(f"{native}/{upstream}", None), (upstream, native)]
    return keys


def _per_million(entry: Any, owner: str | None) -> tuple[float, float] | None:
    if not isinstance(entry, Mapping):
        return None
    if owner is not None and entry.get("litellm_provider") != owner:
        return None
    if entry.get("mode") not in (None, "chat", "responses"):
        return None
    per_input, per_output = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if not isinstance(per_input, int | float) or not isinstance(per_output, int | float):
        return None
    return (round(per_input * 1e6, 6), round(per_output * 1e6, 6))


# -- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """One tier: what `tier:<name>` runs."""

    name: str
    model: str
    """The primary model (the active provider's); what `get_model_for_tier` returns."""
    models: tuple[str, ...]
    """Every model the strategy runs, primary first."""
    strategy: Strategy
    timeout_ms: float | None = None
    attempt_timeout_ms: float | None = None
    max_cost: float | None = None
    retries: int | None = None
    hedge_after_ms: float | str | None = None
    """Fixed milliseconds, or a quantile word (``auto``, ``p95``...; see `health.hedging`)."""
    min_agreement: float | None = None


@dataclass(frozen=True)
class TierTable:
    """Immutable tier snapshot for one active provider."""

    provider: str
    tiers: Mapping[str, Tier]
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))

    def known(self) -> list[str]:
        """Tier names and aliases, for error messages."""
        return [*self.tiers, *(a for a in self.aliases if a not in self.tiers)]

    def resolve_name(self, name_or_alias: str) -> str:
        if name_or_alias in self.tiers:
            return name_or_alias
        target = self.aliases.get(name_or_alias)
        if target is not None and target in self.tiers:
            return target
        raise UnknownTierError(str(name_or_alias), self.known())

    def get(self, name_or_alias: str) -> Tier:
        return self.tiers[self.resolve_name(name_or_alias)]

    def tier_for_model(self, model: str) -> str | None:
        """The canonical tier of a primary model (see the module docstring for the rule)."""
        try:
            parsed = parse_spec(model)
        except ModelSpecError:
            return None
        if parsed.kind != "model" or parsed.model is None:
            return None
        full, bare = self._reverse
        if parsed.provider is not None or parsed.raw in full:
            return full.get(parsed.raw)
        return bare.get(parsed.model)

    @cached_property
    def _reverse(self) -> tuple[dict[str, str], dict[str, str]]:
        order = [t for t in _REVERSE_PREFERENCE if t in self.tiers]
        order += [t for t in self.tiers if t not in _REVERSE_PREFERENCE]
        full: dict[str, str] = {}
        bare: dict[str, str] = {}
        for name in order:
            model = self.tiers[name].model
            full.setdefault(model, name)
            _, _, rest = model.partition("/")
            if rest and "/" not in rest:
                bare.setdefault(rest, name)
        return full, bare


# -- building ---------------------------------------------------------------------------------


def build_tier_config(
    provider: str | None = None,
    config: ModelsConfig | None = None,
    providers: ProviderTable | None = None,
) -> TierTable:
    """Build the tier table; every problem is collected and raised as one `ConfigError`."""
    table = providers if providers is not None else ProviderTable.build(config)
    # the table's captured environment, not os.environ: Models(environ=...) is all a registry reads
    active = (
        provider
        or table.environ.get(PROVIDER_ENV)
        or (config.provider if config is not None else None)
        or DEFAULT_PROVIDER
    )
    known = sorted(set(DEFAULT_MODELS) | set(table.providers))
    if active not in known:
        reason = _unknown_provider(active, known)
        if not provider and table.environ.get(PROVIDER_ENV):  # the value came from the environment
            issue = env_issue(PROVIDER_ENV, active, reason)
        else:
            issue = ConfigIssue("provider", reason)
        raise ConfigError([issue], "invalid tier config")

    issues: list[ConfigIssue] = []
    enabled = table.enabled()
    per_provider = {
        name: _provider_models(name, table, config, issues) for name in dict.fromkeys([active, *enabled])
    }
    tier_configs: Mapping[str, TierConfig] = config.tiers if config is not None else {}
    names = [*TIER_NAMES, *(n for n in tier_configs if n not in TIER_NAMES)]
    tiers: dict[str, Tier] = {}
    for name in names:
        tier = _build_tier(name, active, per_provider, tier_configs.get(name), issues)
        if tier is not None:
            tiers[name] = tier
    aliases = {**DEFAULT_ALIASES, **(config.aliases if config is not None else {})}
    for alias, target in aliases.items():
        # A tier that failed to build is already reported; its aliases are not wrong too.
        issues.extend(_alias_issues(alias, target, {n: tiers.get(n) for n in names}))
    if issues:
        lines = source_lines(config) if config is not None else None
        raise ConfigError(locate(issues, lines), "invalid tier config")
    return TierTable(provider=active, tiers=tiers, aliases=aliases)


def _unknown_provider(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown provider {name!r} (known: {', '.join(known)}){hint}"


def _provider_models(
    name: str, table: ProviderTable, config: ModelsConfig | None, issues: list[ConfigIssue]
) -> dict[str, str]:
    """Tier -> spec for one provider: defaults, then the table's and the config's overrides."""
    models = dict(DEFAULT_MODELS.get(name, {}))
    overrides: dict[str, str] = {}
    if name in table.providers:
        overrides.update(table.providers[name].models)
    if config is not None and name in config.providers:
        overrides.update(config.providers[name].models)
    for tier, model in overrides.items():
        spec = model if model.startswith(f"{name}/") else f"{name}/{model}"
        problem = _concrete_problem(spec)
        if problem:
            issues.append(ConfigIssue(f"providers.{name}.models.{tier}", problem))
        else:
            models[tier] = spec
    return models


def _bad_name(name: str) -> bool:
    """True when `tier:<name>` would not parse, so nobody could ask for it."""
    try:
        parse_spec(f"tier:{name}")
    except ModelSpecError:
        return True
    return False


def _concrete_problem(spec: str) -> str | None:
    try:
        parsed = parse_spec(spec)
    except ModelSpecError as exc:
        return exc.reason
    if parsed.kind != "model":
        return f"{spec!r} is not a concrete provider/model spec"
    return None


def _build_tier(
    name: str,
    active: str,
    per_provider: Mapping[str, Mapping[str, str]],
    cfg: TierConfig | None,
    issues: list[ConfigIssue],
) -> Tier | None:
    path = f"tiers.{name}"
    if name not in TIER_NAMES and _bad_name(name):
        issues.append(ConfigIssue(path, "a tier name may only use letters, digits, '_', '-', '.'"))
        return None
    pinned = cfg is not None and bool(cfg.model or cfg.models)
    if cfg is not None and pinned:
        listed = ([cfg.model] if cfg.model else []) + list(cfg.models or [])
        problems = [(i, _concrete_problem(m)) for i, m in enumerate(listed)]
        for index, problem in problems:
            if problem:
                where = "model" if cfg.model and index == 0 else f"models.{index - (1 if cfg.model else 0)}"
                issues.append(ConfigIssue(f"{path}.{where}", problem))
        if any(problem for _, problem in problems):
            return None
        models = list(dict.fromkeys(listed))
    else:
        primary = per_provider[active].get(name)
        if primary is None:
            issues.append(
                ConfigIssue(
                    path,
                    f"no model: provider {active!r} has no default for this tier; set {path}.model "
                    f"or providers.{active}.models.{name}",
                )
            )
            return None
        models = [primary]
        if name in FAST_TIERS:
            models += [m[name] for p, m in per_provider.items() if p != active and name in m]
        models = list(dict.fromkeys(models))
    strategy: Strategy
    if cfg is not None and cfg.strategy:
        strategy = cfg.strategy
    elif len(models) == 1:
        strategy = "first"
    else:
        strategy = "race" if name in FAST_TIERS or not pinned else "fallback"
    if cfg is not None:
        fast_race = name in FAST_TIERS and not pinned and cfg.strategy is None
        _unused_options(path, cfg, strategy, fast_race, issues)
    return Tier(
        name=name,
        model=models[0],
        models=tuple(models),
        strategy=strategy,
        timeout_ms=cfg.timeout if cfg is not None else None,
        attempt_timeout_ms=cfg.attempt_timeout if cfg is not None else None,
        max_cost=cfg.max_cost if cfg is not None else None,
        retries=cfg.retries if cfg is not None else None,
        hedge_after_ms=cfg.hedge_after if cfg is not None else None,
        min_agreement=cfg.min_agreement if cfg is not None else None,
    )


def _unused_options(
    path: str, cfg: TierConfig, strategy: Strategy, fast_race: bool, issues: list[ConfigIssue]
) -> None:
    """hedgeAfter / minAgreement on a tier whose built strategy ignores them: an error, or a warning
    where the strategy follows the enabled providers (a fast tier races once a second one is on)."""
    for key, value, needs in (
        ("hedgeAfter", cfg.hedge_after, "race"),
        ("minAgreement", cfg.min_agreement, "consensus"),
    ):
        if value is None or strategy == needs:
            continue
        message = (
            f"{key} only applies to strategy {needs}, but this tier runs {strategy}; "
            f"set {path}.strategy: {needs} or remove {key}"
        )
        if fast_race and needs == "race":
            warnings.warn(
                ConfigWarning(f"{path}.{key}: {message} (it races only while several providers are enabled)"),
                stacklevel=4,
            )
        else:
            issues.append(ConfigIssue(f"{path}.{key}", message))


def _alias_issues(alias: str, target: str, tiers: Mapping[str, object]) -> list[ConfigIssue]:
    path = f"aliases.{alias}"
    if alias in tiers:
        return [ConfigIssue(path, f"alias {alias!r} has the name of a tier and would hide it")]
    if _bad_name(alias):
        return [ConfigIssue(path, "an alias may only use letters, digits, '_', '-', '.'")]
    if target not in tiers:
        return [ConfigIssue(path, f"alias {alias!r} points to {target!r}, which is not a tier")]
    return []


# -- resolver ---------------------------------------------------------------------------------


class TierResolver:
    """Bidirectional tier <-> model lookups over one `TierTable`.

    Without a table, the default one is built on first use (from the environment), so importing
    this module reads nothing.
    """

    def __init__(self, table: TierTable | None = None) -> None:
        self._table = table
        self._lock = threading.Lock()

    @property
    def table(self) -> TierTable:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = build_tier_config()
        return self._table

    def reset(self, table: TierTable | None = None) -> None:
        """Swap in `table`, or forget the built one so the next lookup rebuilds from the environment."""
        self._table = table

    def get_tier(self, tier: str) -> Tier:
        return self.table.get(tier)

    def get_tier_for_model(self, model: str) -> str | None:
        """``openai/gpt-4.1-mini`` -> ``medium``; bare names match too; None when no tier uses it."""
        if not isinstance(model, str):
            return None
        return self.table.tier_for_model(model)

    def get_model_for_tier(self, tier: str) -> str:
        """The tier's primary model; accepts aliases; raises `UnknownTierError` otherwise."""
        return self.table.get(tier).model

    def resolve_model_spec(self, spec: str) -> str:
        """A concrete model some tier uses becomes ``tier:<name>``; everything else passes through."""
        parsed = parse_spec(spec)
        if parsed.kind != "model":
            return parsed.raw
        tier = self.table.tier_for_model(parsed.raw)
        return f"tier:{tier}" if tier is not None else parsed.raw

    def __repr__(self) -> str:
        state = f"provider={self._table.provider!r}" if self._table is not None else "unbuilt"
        return f"TierResolver({state})"


tier_resolver = TierResolver()


# -- validation and display -------------------------------------------------------------------


@dataclass
class TierValidation:
    """Outcome of `validate_tier_config`; also readable as a dict (``result["success"]``)."""

    success: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        if key not in ("success", "errors", "warnings", "info"):
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_tier_config(table: TierTable | None = None) -> TierValidation:
    """Check a tier table: all 9 tiers, priced models, round-trips, aliases and orphans.

    Without a table the default one is built; if that fails, its problems are the errors.
    """
    result = TierValidation(success=False)
    if table is None:
        try:
            table = build_tier_config()
        except ConfigError as exc:
            result.errors.extend(str(issue) for issue in exc.issues)
            return result
    result.info.append(f"active provider: {table.provider}")
    result.errors.extend(f"missing tier {name!r}" for name in TIER_NAMES if name not in table.tiers)
    resolver = TierResolver(table)
    for name, tier in table.tiers.items():
        _check_tier(name, tier, resolver, result)
    for alias, target in table.aliases.items():
        result.errors.extend(issue.message for issue in _alias_issues(alias, target, table.tiers))
    alias_targets = set(table.aliases.values())
    for name in table.tiers:
        if name not in TIER_NAMES and name not in alias_targets:
            result.warnings.append(
                f"orphaned tier {name!r}: not one of the {len(TIER_NAMES)} standard tiers and no alias "
                f"points to it (only reachable as tier:{name})"
            )
    result.success = not result.errors
    return result


def _check_tier(name: str, tier: Tier, resolver: TierResolver, result: TierValidation) -> None:
    models = tier.models if tier.model in tier.models else (tier.model, *tier.models)
    for model in models:
        problem = _concrete_problem(model)
        if problem:
            result.errors.append(f"tier {name!r}: {model!r}: {problem}")
            continue
        provider = parse_spec(model).provider
        if provider in FREE_PROVIDERS:
            result.info.append(f"tier {name!r}: {model} runs locally, priced at $0")
        elif model_price(model) is None:
            result.errors.append(
                f"tier {name!r}: litellm cannot price {model!r} (unknown model?); cost tracking and "
                "maxCost need a price"
            )
    if _concrete_problem(tier.model):
        return
    back = resolver.get_tier_for_model(tier.model)
    if back is None or resolver.get_model_for_tier(back) != tier.model:
        result.errors.append(f"tier {name!r}: round-trip failed: {tier.model!r} maps back to tier {back!r}")


def print_validation_results(result: TierValidation, file: TextIO | None = None) -> None:
    """Human-readable report: a verdict line, then ✗ errors, ⚠ warnings and ✓ info lines."""
    out = file if file is not None else sys.stdout
    if result.success:
        print("✓ tier configuration is valid", file=out)
    else:
        count = len(result.errors)
        print(f"✗ tier configuration has {count} error{'s' if count != 1 else ''}", file=out)
    for lines, mark in ((result.errors, "✗"), (result.warnings, "⚠"), (result.info, "✓")):
        for line in lines:
            print(f"  {mark} {line}", file=out)


def tier_table_rows(table: TierTable | None = None) -> list[dict[str, Any]]:
    """One row per tier (standard tiers first): what the CLI's tier listing prints."""
    table = table if table is not None else tier_resolver.table
    rows = []
    for name in _ordered(table.tiers):
        tier = table.tiers[name]
        price = model_price(tier.model)
        rows.append(
            {
                "tier": name,
                "model": tier.model,
                "strategy": tier.strategy,
                "models": list(tier.models),
                "aliases": sorted(a for a, t in table.aliases.items() if t == name),
                "input_per_1m": None if price is None else price[0],
                "output_per_1m": None if price is None else price[1],
            }
        )
    return rows


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in TIER_NAMES if n in names] + [n for n in names if n not in TIER_NAMES]
