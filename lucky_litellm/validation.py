"""What `lucky-litellm validate FILE` checks: it tells the three kinds of YAML file apart and
checks each for what it is.

* a **user experiment config** (has `experiments:`) and a **registry config** (`models.yaml`)
  are validated against their schemas;
* a **LiteLLM proxy config** (has `model_list:`, `litellm_settings:` or `general_settings:`) is
  the proxy's own file: lucky_litellm checks only the parts that belong to it, namely the model
  groups served by the `lucky/` provider (their specs), the `custom_provider_map` entry and the
  hook in `callbacks` (that each dotted path imports and is the right object), because a mistake
  there makes the proxy refuse or mis-route every `tier:`/`user:` request at run time.

Every problem is reported at once, with the file and line, as a `ConfigError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, ConfigIssue, LuckyError
from .yaml_loader import LineMap, PathPart, load_yaml

__all__ = ["FileKind", "FileReport", "check_file", "check_proxy_config", "kind_of"]

FileKind = Literal["user", "models", "proxy"]

LUCKY_PROVIDER = "lucky"
_PROXY_KEYS = frozenset({"model_list", "litellm_settings", "general_settings", "router_settings"})
_HANDLER_PATH = "lucky_litellm.proxy.handler"
_HOOK_PATH = "lucky_litellm.proxy.hook"


@dataclass(frozen=True)
class FileReport:
    """The outcome of checking one file that is valid: its kind and advice that is not an error."""

    kind: FileKind
    warnings: list[str] = field(default_factory=list)


def kind_of(data: Mapping[str, Any]) -> FileKind:
    """A proxy config is recognised by LiteLLM's own top-level keys, a user config by `experiments`."""
    if _PROXY_KEYS & data.keys():
        return "proxy"
    if "experiments" in data:
        return "user"
    return "models"


def check_file(path: Path, registry: Path | None = None) -> FileReport:
    """Validate one file of any kind; raises `ConfigError` listing every problem.

    A user config is also resolved against the registry that would run it (`registry`, a
    models.yaml, else the built-in defaults), so a typo in a model name fails here."""
    from .config import load_models_config, load_user_config
    from .config.resolve import check_models_config, check_user_config, registry_tables

    data, lines = load_yaml(path)
    kind = kind_of(data)
    if kind == "user":
        tables = registry_tables(load_models_config(registry) if registry else None)
        check_user_config(load_user_config(path), *tables)
        return FileReport(kind)
    if kind == "models":
        config = load_models_config(path)
        check_models_config(config)
        return FileReport(kind, _tracking_notes(config))
    return FileReport(kind, check_proxy_config(data, lines))


def _tracking_notes(config: Any) -> list[str]:
    """`trackCost: false` does not apply to users with a budget: say so rather than surprise."""
    from .config import load_user_config

    if config.track_cost:
        return []
    notes = []
    for user_id, entry in config.users.items():
        if load_user_config(entry).defaults.cost_limit is not None:
            notes.append(
                f"users.{user_id}: costLimit forces cost accounting on for this user (trackCost is off)"
            )
    return notes


def check_proxy_config(data: Mapping[str, Any], lines: LineMap) -> list[str]:
    """Check lucky_litellm's parts of a LiteLLM proxy config; returns warnings, raises on errors."""
    issues: list[ConfigIssue] = []
    warnings: list[str] = []

    def issue(path: tuple[PathPart, ...], message: str) -> None:
        dotted = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in path)
        issues.append(ConfigIssue(dotted.replace(".[", "["), message, lines.file, lines.line_for(path)))

    def warn(path: tuple[PathPart, ...], message: str) -> None:
        where = f"{lines.file}:{lines.line_for(path)}: " if lines.file else ""
        warnings.append(f"{where}{'.'.join(str(p) for p in path)}: {message}")

    groups = _lucky_groups(data, issue, warn)
    settings = data.get("litellm_settings") or {}
    if not isinstance(settings, Mapping):
        issue(("litellm_settings",), "must be a mapping")
        settings = {}
    registered = _check_provider_map(settings, issue)
    hooked = _check_callbacks(settings, issue)
    if groups and not registered:
        issue(
            ("litellm_settings", "custom_provider_map"),
            f"model groups use the lucky/ provider but it is not registered: add "
            f"{{provider: {LUCKY_PROVIDER}, custom_handler: {_HANDLER_PATH}}}",
        )
    if (groups or registered) and not hooked:
        issue(
            ("litellm_settings", "callbacks"),
            f"{_HOOK_PATH!r} is not listed: without the hook the lucky provider refuses every request",
        )
    if issues:
        raise ConfigError(issues, "invalid proxy config (lucky_litellm's parts)")
    return warnings


def _lucky_groups(data: Mapping[str, Any], issue: Any, warn: Any) -> int:
    """Check every `model_list` entry that the lucky provider serves; returns how many there are."""
    from .spec import parse_spec

    model_list = data.get("model_list") or []
    if not isinstance(model_list, Sequence) or isinstance(model_list, str):
        issue(("model_list",), "must be a list of model groups")
        return 0
    count = 0
    for index, entry in enumerate(model_list):
        params = entry.get("litellm_params") if isinstance(entry, Mapping) else None
        if not isinstance(params, Mapping):
            continue
        model = params.get("model")
        if not isinstance(model, str) or not model.startswith(f"{LUCKY_PROVIDER}/"):
            continue
        count += 1
        where: tuple[PathPart, ...] = ("model_list", index, "litellm_params", "model")
        pattern = model.removeprefix(f"{LUCKY_PROVIDER}/")
        example = _example_of(pattern)
        try:
            parse_spec(example)
        except LuckyError as exc:
            issue(where, f"{model!r} does not name a lucky_litellm spec: {exc}")
            continue
        name = entry.get("model_name")
        if isinstance(name, str) and name != pattern:
            warn(
                ("model_list", index, "model_name"),
                f"{name!r} is sent to lucky as {pattern!r}: clients' model names then differ from specs",
            )
        if params.get("num_retries") != 0:
            warn(
                ("model_list", index, "litellm_params"),
                "set num_retries: 0 (the strategy retries per model; a Router retry re-runs the whole race)",
            )
    return count


def _example_of(pattern: str) -> str:
    """A concrete spec matching a wildcard group (`tier:*` -> `tier:x`, `local/*` -> `local/x`)."""
    return pattern.replace("*", "x")


def _check_provider_map(settings: Mapping[str, Any], issue: Any) -> bool:
    entries = settings.get("custom_provider_map") or []
    registered = False
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, Mapping) or entry.get("provider") != LUCKY_PROVIDER:
            continue
        registered = True
        path: tuple[PathPart, ...] = ("litellm_settings", "custom_provider_map", index, "custom_handler")
        problem = _object_problem(entry.get("custom_handler"), "litellm.llms.custom_llm.CustomLLM")
        if problem:
            issue(path, problem)
    return registered


def _check_callbacks(settings: Mapping[str, Any], issue: Any) -> bool:
    callbacks = settings.get("callbacks") or []
    if isinstance(callbacks, str):
        callbacks = [callbacks]
    hooked = False
    for index, value in enumerate(callbacks if isinstance(callbacks, list) else []):
        if not isinstance(value, str) or not value.startswith("lucky_litellm"):
            continue
        hooked = True
        problem = _object_problem(value, "litellm.integrations.custom_logger.CustomLogger")
        if problem:
            issue(("litellm_settings", "callbacks", index), problem)
    return hooked


def _load(dotted: str) -> Any:
    module_name, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _object_problem(dotted: object, expected: str) -> str | None:
    """None when `dotted` (module.attribute) imports and is an instance of the class `expected`
    names (litellm's base class, as the proxy requires), else why not."""
    if not isinstance(dotted, str) or "." not in dotted:
        return f"expected a dotted path such as {_HANDLER_PATH!r}, got {dotted!r}"
    module_name, _, attribute = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"cannot import {module_name!r}: {exc}"
    value = getattr(module, attribute, None)
    if value is None:
        return f"{module_name!r} has no attribute {attribute!r}"
    if not isinstance(value, _load(expected)):
        return f"{dotted!r} is a {type(value).__name__}, expected a {expected.rpartition('.')[2]}"
    return None
