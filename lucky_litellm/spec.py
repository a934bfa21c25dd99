"""Model specs: the strings callers pass where litellm expects a model name.

Four forms, parsed once at the boundary into a typed `ModelSpec`:

* ``provider/model`` (``openai/gpt-4.1-mini``, ``openrouter/google/gemini-2.5-flash-lite``): one concrete
  model, passed to litellm as is. A bare litellm model name (``gpt-4.1-mini``) is accepted too, as litellm
  accepts it; the registry asks litellm for its provider.
* ``tier:<name>``: a semantic tier (``tier:medium``, ``tier:fast``).
* ``user:<userId>:<experiment>``: one experiment of a user's YAML config.
* ``user:<userId>``: that user's default experiment.

Parsing only checks the shape. Whether a provider exists is decided by the registry, which knows the
configured providers and litellm's provider list: a provider is accepted when litellm knows it *or*
it is configured (e.g. ``local``), and rejected otherwise with a did-you-mean hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .errors import ModelSpecError

__all__ = ["ModelSpec", "SpecKind", "parse_spec"]

SpecKind = Literal["model", "tier", "user"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.@+\-]+$")
_UNKNOWN_PREFIX = re.compile(r"^([A-Za-z_]+):")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed spec. Exactly the fields of its `kind` are set."""

    raw: str
    kind: SpecKind
    provider: str | None = None
    model: str | None = None
    tier: str | None = None
    user_id: str | None = None
    experiment: str | None = None

    @property
    def concrete(self) -> str:
        """The litellm model string of a `model` spec (``provider/model`` or the bare name)."""
        if self.kind != "model" or self.model is None:
            raise ModelSpecError(self.raw, "not a concrete provider/model spec")
        return f"{self.provider}/{self.model}" if self.provider else self.model

    def __str__(self) -> str:
        return self.raw


def parse_spec(spec: object) -> ModelSpec:
    """Parse a spec string, raising `ModelSpecError` that says exactly what is wrong."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str):
        raise ModelSpecError(spec, f"expected a string, got {type(spec).__name__}")
    return _parse(spec)


@lru_cache(maxsize=4096)
def _parse(spec: str) -> ModelSpec:
    if not spec:
        raise ModelSpecError(spec, "empty spec")
    if spec != spec.strip() or any(ch.isspace() for ch in spec):
        raise ModelSpecError(spec, "whitespace is not allowed in a spec")
    if spec.startswith("tier:"):
        name = spec[5:]
        if not name:
            raise ModelSpecError(spec, "missing tier name after 'tier:' (e.g. tier:medium)")
        if not _NAME.match(name):
            raise ModelSpecError(spec, f"tier name {name!r} may only use letters, digits, '_', '-', '.'")
        return ModelSpec(raw=spec, kind="tier", tier=name)
    if spec.startswith("user:"):
        return _parse_user(spec)
    if "/" not in spec:
        prefix = _UNKNOWN_PREFIX.match(spec)
        if prefix:
            raise ModelSpecError(
                spec, f"unknown prefix {prefix.group(1)!r}:, expected tier:, user: or provider/model"
            )
        return ModelSpec(raw=spec, kind="model", model=spec)
    provider, _, model = spec.partition("/")
    if not provider:
        raise ModelSpecError(spec, "missing provider before '/' (e.g. openai/gpt-4.1-mini)")
    if not model or model.endswith("/"):
        raise ModelSpecError(spec, f"missing model name after provider {provider!r}/")
    if not _PROVIDER.match(provider):
        raise ModelSpecError(spec, f"provider {provider!r} must be lowercase letters, digits, '_' or '-'")
    return ModelSpec(raw=spec, kind="model", provider=provider, model=model)


def _parse_user(spec: str) -> ModelSpec:
    parts = spec.split(":")
    if len(parts) > 3:
        raise ModelSpecError(spec, "expected user:<userId> or user:<userId>:<experiment>")
    user_id = parts[1]
    if not user_id:
        raise ModelSpecError(spec, "missing user id after 'user:'")
    if not _USER_ID.match(user_id):
        raise ModelSpecError(
            spec, f"user id {user_id!r} contains characters other than letters, digits, _.@+-"
        )
    experiment = parts[2] if len(parts) == 3 else None
    if experiment is not None and not _NAME.match(experiment):
        reason = "missing experiment name after the user id" if not experiment else "bad experiment name"
        raise ModelSpecError(spec, f"{reason} (expected user:{user_id}:<experiment>)")
    return ModelSpec(raw=spec, kind="user", user_id=user_id, experiment=experiment)
