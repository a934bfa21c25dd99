"""Which providers exist, which are switched on, and how a concrete spec becomes a litellm call.

A `ProviderTable` is an immutable snapshot: the built-in providers merged with the configured
ones, plus the environment as it was when the snapshot was taken. Nothing here mutates; an
update (`with_update`) returns a new table, so a registry can swap whole snapshots atomically
while requests in flight keep the one they started with.

A provider is *enabled* when its ``enabled`` flag says so, or, when the flag is unset, when one of
the things it needs resolves: its API key variable is set, or it has an ``api_base`` (directly or
through ``api_base_env``). A provider that declares neither leaves credentials to litellm and
counts as enabled.

API key *values* live only in `Target.kwargs` and in the captured environment; neither appears
in a repr, an error message or a log line. Errors name the variable (``GROQ_API_KEY``), never
its content.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ConfigIssue, ModelSpecError, ProviderDisabledError
from .spec import ModelSpec, parse_spec

if TYPE_CHECKING:
    from .config import ModelsConfig, ProviderConfig

__all__ = [
    "BUILTIN_PROVIDERS",
    "LOCAL_API_KEY",
    "MAX_CACHED_TARGETS",
    "ProviderDisabledError",
    "ProviderTable",
    "Target",
    "builtin_providers",
    "litellm_providers",
]

MAX_CACHED_TARGETS = 4096
"""Bound of a table's target cache (it is emptied when full): specs may come from callers."""

LOCAL_API_KEY = "sk-local"
"""Placeholder key sent to a provider that has its own ``api_base`` but no key.

Without it litellm's OpenAI client would fill in ``OPENAI_API_KEY`` from the environment and send
the real OpenAI key to a local (or third-party) server.
"""

_BUILTIN_FIELDS: dict[str, dict[str, Any]] = {
    "openai": {"api_key_env": "OPENAI_API_KEY"},
    "anthropic": {"api_key_env": "ANTHROPIC_API_KEY"},
    "openrouter": {"api_key_env": "OPENROUTER_API_KEY"},
    "groq": {"api_key_env": "GROQ_API_KEY"},
    "local": {"litellm_provider": "openai", "api_base_env": "LUCKY_LOCAL_API_BASE"},
}


def builtin_providers() -> dict[str, ProviderConfig]:
    """A fresh copy of the built-in providers, in their fixed order."""
    from .config import ProviderConfig

    return {name: ProviderConfig(**fields) for name, fields in _BUILTIN_FIELDS.items()}


@functools.cache
def litellm_providers() -> frozenset[str]:
    """Provider prefixes litellm itself understands (imports litellm on first call)."""
    import litellm

    return frozenset(str(getattr(p, "value", p)) for p in litellm.provider_list)


BUILTIN_PROVIDERS: Mapping[str, ProviderConfig]
"""Read-only view of the built-in providers (openai, anthropic, openrouter, groq, local)."""


def __getattr__(name: str) -> Any:
    # BUILTIN_PROVIDERS needs config.py's pydantic models; build it on first access so importing
    # this module stays cheap and config.py may import from here without a cycle.
    if name == "BUILTIN_PROVIDERS":
        value = MappingProxyType(builtin_providers())
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return copy.deepcopy(value)
    return value


@dataclass(frozen=True)
class Target:
    """One concrete model, ready for ``litellm.acompletion(model=litellm_model, **call_kwargs())``."""

    spec: str
    """The spec as the user wrote it (``local/llama3.2``); shown in attempts and telemetry."""
    provider: str
    """Provider name in lucky_litellm's terms (``local``)."""
    litellm_model: str
    """The model string litellm gets (``openai/llama3.2``)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    """api_base, api_key and provider params; may hold a secret, so it is kept out of repr and hash."""

    def call_kwargs(self) -> dict[str, Any]:
        """A fresh dict (nested dicts and lists copied too), so a caller that edits it never
        changes the snapshot. Cheaper than a deepcopy: this runs on every call."""
        if self._flat:
            return dict(self.kwargs)
        return {key: _copy_value(value) for key, value in self.kwargs.items()}

    @functools.cached_property
    def _flat(self) -> bool:
        """No nested dict or list among the kwargs (the usual api_base/api_key): a plain copy
        then does."""
        return not any(isinstance(value, dict | list) for value in self.kwargs.values())

    def __repr__(self) -> str:
        shown = {key: ("***" if key == "api_key" else value) for key, value in self.kwargs.items()}
        return (
            f"Target(spec={self.spec!r}, provider={self.provider!r}, "
            f"litellm_model={self.litellm_model!r}, kwargs={shown!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ProviderTable:
    """Immutable snapshot of provider settings and the environment they read."""

    providers: Mapping[str, ProviderConfig]
    """Built-ins merged with configured providers; built-ins first, then the rest in config order."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Environment captured when the table was built, so a snapshot never changes under a request."""
    _targets: dict[str, Target] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", MappingProxyType(dict(self.providers)))
        object.__setattr__(self, "environ", MappingProxyType(dict(self.environ)))
        from .config.environment import api_base_issues

        issues = api_base_issues(self.providers, self.environ)
        if issues:  # refused now, by the variable's name, not as a litellm error on every call
            raise ConfigError(issues, "invalid environment")

    @classmethod
    def build(
        cls, config: ModelsConfig | None = None, environ: Mapping[str, str] | None = None
    ) -> ProviderTable:
        """Merge built-ins with ``config.providers``: a field the config sets replaces the built-in one."""
        providers: dict[str, ProviderConfig] = builtin_providers()
        if config is not None:
            for name, configured in config.providers.items():
                providers[name] = _merge(providers.get(name), configured)
        return cls(providers=providers, environ=dict(os.environ if environ is None else environ))

    def __repr__(self) -> str:
        return f"ProviderTable(providers={list(self.providers)!r}, enabled={self.enabled()!r})"

    __str__ = __repr__

    # -- enablement ---------------------------------------------------------------------------

    def is_enabled(self, name: str) -> bool:
        return self.why_disabled(name) is None

    def enabled(self) -> list[str]:
        """Enabled provider names in table order (openai, anthropic, openrouter, groq, local, ...)."""
        return [name for name in self.providers if self.is_enabled(name)]

    def why_disabled(self, name: str) -> str | None:
        """None when `name` is enabled, else what would enable it (variable names, never values)."""
        cfg = self.providers.get(name)
        if cfg is None:
            return f"provider {name!r} is not configured"
        if cfg.enabled is not None:
            return None if cfg.enabled else f"switched off by configuration (providers.{name}.enabled: false)"
        if cfg.api_key_env is None and cfg.api_base is None and cfg.api_base_env is None:
            return None
        if self._api_key(cfg) is not None or self._api_base(cfg) is not None:
            return None
        needs = [f"set {cfg.api_key_env}"] if cfg.api_key_env else []
        if cfg.api_base_env:
            needs.append(f"set {cfg.api_base_env} or providers.{name}.api_base")
        return " or ".join(needs) + f" (or force it on with providers.{name}.enabled: true)"

    # -- spec -> target -----------------------------------------------------------------------

    def target_for(self, spec: ModelSpec | str, *, credentials: bool = False) -> Target:
        """The litellm call for a concrete spec; raises `ModelSpecError` or `ProviderDisabledError`.

        Targets are cached per snapshot (it never changes), so resolving on every request is cheap;
        the cache keeps at most `MAX_CACHED_TARGETS` specs. `credentials=True`: the call brings its
        own `api_key`/`api_base` (as with `litellm.acompletion`), which switches on a provider that
        is off only for want of them; a provider switched off by configuration stays off.
        """
        if credentials:
            return self._target(parse_spec(spec), credentials=True)
        raw = spec.raw if isinstance(spec, ModelSpec) else spec
        cached = self._targets.get(raw) if isinstance(raw, str) else None
        if cached is None:
            if len(self._targets) >= MAX_CACHED_TARGETS:
                self._targets.clear()
            cached = self._targets.setdefault(raw, self._target(parse_spec(spec)))
        return cached

    def _target(self, parsed: ModelSpec, *, credentials: bool = False) -> Target:
        if parsed.kind != "model" or parsed.model is None:
            raise ModelSpecError(parsed.raw, "not a concrete provider/model spec (resolve tier:/user: first)")
        provider = parsed.provider or self._provider_of_bare(parsed)
        cfg = self.providers.get(provider)
        if cfg is None:
            if provider not in litellm_providers():
                raise ModelSpecError(parsed.raw, self._unknown_provider_reason(provider))
            # Known to litellm but not configured: litellm resolves credentials itself.
            return Target(spec=parsed.raw, provider=provider, litellm_model=f"{provider}/{parsed.model}")
        reason = self.why_disabled(provider)
        if reason is not None and not (credentials and cfg.enabled is None):
            raise ProviderDisabledError(provider, reason)
        return Target(
            spec=parsed.raw,
            provider=provider,
            litellm_model=f"{cfg.litellm_provider or provider}/{parsed.model}",
            kwargs=MappingProxyType(self._call_kwargs(cfg)),
        )

    def _provider_of_bare(self, parsed: ModelSpec) -> str:
        import litellm

        try:
            _, provider, _, _ = litellm.get_llm_provider(parsed.concrete)
        except Exception:
            provider = None
        if not provider:
            raise ModelSpecError(
                parsed.raw, "litellm cannot tell which provider serves this model; write it as provider/model"
            ) from None
        return str(provider)

    def _unknown_provider_reason(self, provider: str) -> str:
        reason = f"unknown provider {provider!r} (not configured and unknown to litellm)"
        candidates = [*self.providers, *sorted(litellm_providers())]
        close = difflib.get_close_matches(provider, candidates, n=1, cutoff=0.6)
        return f"{reason}; did you mean {close[0]!r}?" if close else reason

    def _api_key(self, cfg: ProviderConfig) -> str | None:
        return (self.environ.get(cfg.api_key_env) or None) if cfg.api_key_env else None

    def _api_base(self, cfg: ProviderConfig) -> str | None:
        """The endpoint variable when it is set (the environment over the file), else ``apiBase``."""
        from_env = (self.environ.get(cfg.api_base_env) or None) if cfg.api_base_env else None
        return from_env or cfg.api_base or None

    def _call_kwargs(self, cfg: ProviderConfig) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        api_base = self._api_base(cfg)
        api_key = self._api_key(cfg)
        if api_base is not None:
            kwargs["api_base"] = api_base
            kwargs["api_key"] = api_key or LOCAL_API_KEY
        elif api_key is not None:
            kwargs["api_key"] = api_key
        kwargs.update(copy.deepcopy(dict(cfg.params)))
        return kwargs

    # -- updates ------------------------------------------------------------------------------

    def with_update(
        self,
        name: str,
        changes: Mapping[str, Any] | ProviderConfig,
        environ: Mapping[str, str] | None = None,
    ) -> ProviderTable:
        """A new table with provider `name` changed (or added); `self` is left untouched.

        `changes` may use camelCase or snake_case keys. The merged settings are validated as a
        whole; problems raise `ConfigError` with paths like ``providers.groq.enabled``. Pass
        `environ` to refresh the captured environment at the same time.
        """
        from pydantic import BaseModel, ValidationError

        from .config import ProviderConfig

        current = self.providers.get(name)
        merged: dict[str, Any] = current.model_dump() if current is not None else {}
        if isinstance(changes, BaseModel):
            merged.update({f: getattr(changes, f) for f in changes.model_fields_set})
        elif isinstance(changes, Mapping):
            merged.update(_field_names(dict(changes)))
        else:
            issue = ConfigIssue(f"providers.{name}", f"expected a mapping, got {type(changes).__name__}")
            raise ConfigError([issue], title=f"invalid update of provider {name!r}")
        try:
            updated = ProviderConfig.model_validate(merged)
        except ValidationError as exc:
            issues = [
                ConfigIssue(".".join(["providers", name, *(str(p) for p in err["loc"])]), err["msg"])
                for err in exc.errors(include_input=False, include_url=False)
            ]
            raise ConfigError(issues, title=f"invalid update of provider {name!r}") from None
        return ProviderTable(
            providers={**self.providers, name: updated},
            environ=self.environ if environ is None else environ,
        )


def _merge(builtin: ProviderConfig | None, configured: ProviderConfig) -> ProviderConfig:
    if builtin is None:
        return configured
    return builtin.model_copy(update={f: getattr(configured, f) for f in configured.model_fields_set})


def _field_names(changes: dict[str, Any]) -> dict[str, Any]:
    """Map camelCase aliases to field names; unknown keys stay so validation reports them."""
    from .config import ProviderConfig

    by_alias = {info.alias: name for name, info in ProviderConfig.model_fields.items() if info.alias}
    return {by_alias.get(key, key): value for key, value in changes.items()}
