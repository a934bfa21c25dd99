"""Validation and loading: data or YAML in, a typed config or one `ConfigError` listing every problem out.

A config that loads keeps its `LineMap` (see `source_lines`), so problems found later, when the
registry resolves providers and tiers against it, still point at a file and line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import ConfigError, ConfigIssue
from ..yaml_loader import DEFAULT_LIMITS, LineMap, YamlLimits, load_yaml, yaml_type_name
from .issues import pydantic_issues
from .schema import ModelsConfig, Result, StrictModel, UserConfig

__all__ = [
    "ConfigSource",
    "load_models_config",
    "load_user_config",
    "load_user_configs",
    "safe_validate_models_config",
    "safe_validate_user_config",
    "source_lines",
    "validate_models_config",
    "validate_user_config",
]

T = TypeVar("T")
_M = TypeVar("_M", bound=StrictModel)

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]


# --------------------------------------------------------------------------- validation


def validate_models_config(
    data: Mapping[str, Any] | ModelsConfig, *, source: str | None = None
) -> ModelsConfig:
    """Validate a registry config; raises `ConfigError` listing every problem.

    The ``middleware:`` entries are imported too, as `Models()` does, so a config this accepts
    does not then fail to build over a module that cannot be imported."""
    config = validate_models_schema(data, source=source)
    if config.middleware:
        from ..middleware import load_configured

        _, issues = load_configured(config.middleware, source)
        if issues:
            raise ConfigError(issues, "invalid models config")
    return config


def validate_models_schema(data: object, *, source: str | None = None) -> ModelsConfig:
    """`validate_models_config` without importing the middleware: for `Models()`, which imports
    (and instantiates) them itself, once."""
    return _validate(ModelsConfig, data, LineMap(file=source), "invalid models config")


def safe_validate_models_config(
    data: Mapping[str, Any] | ModelsConfig, *, source: str | None = None
) -> Result[ModelsConfig]:
    return _safe(lambda: validate_models_config(data, source=source))


def validate_user_config(data: Mapping[str, Any] | UserConfig, *, source: str | None = None) -> UserConfig:
    """Validate a user experiment config; raises `ConfigError` listing every problem."""
    return _validate(UserConfig, data, LineMap(file=source), "invalid user config")


def safe_validate_user_config(
    data: Mapping[str, Any] | UserConfig, *, source: str | None = None
) -> Result[UserConfig]:
    return _safe(lambda: validate_user_config(data, source=source))


def source_lines(config: StrictModel) -> LineMap | None:
    """Where a loaded config came from (file and line of every key), if it was loaded from YAML."""
    lines = config._lines
    return lines if isinstance(lines, LineMap) else None


def _safe(validate: Callable[[], T]) -> Result[T]:
    try:
        return Result(success=True, data=validate())
    except ConfigError as exc:
        return Result(success=False, error=exc)


def _validate(cls: type[_M], data: object, lines: LineMap, title: str) -> _M:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        issue = ConfigIssue(
            "", f"expected a mapping at the top level, got {yaml_type_name(data)}", lines.file
        )
        raise ConfigError([issue], title)
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        # `from None`: pydantic's own text would repeat the offending input values.
        raise ConfigError(pydantic_issues(cls, exc, lines), title) from None
    except RecursionError:  # a Python dict nested deeper than any YAML file may be
        raise ConfigError([ConfigIssue("", "nested too deeply", lines.file)], title) from None
    config._lines = lines
    return config


# --------------------------------------------------------------------------- loading


def load_user_config(source: ConfigSource | UserConfig, *, limits: YamlLimits = DEFAULT_LIMITS) -> UserConfig:
    """Load a user config from a path, YAML text, a mapping or an existing `UserConfig`.

    `limits` bounds what the YAML reader accepts (size, nesting, alias expansion).
    """
    if isinstance(source, UserConfig):
        return source
    data, lines = load_yaml(source, limits=limits)
    return _validate(UserConfig, data, lines, "invalid user config")


def load_models_config(
    source: ConfigSource | ModelsConfig, *, limits: YamlLimits = DEFAULT_LIMITS
) -> ModelsConfig:
    """Load a registry config; `users:` file paths come back absolute and are checked to exist.

    Relative user paths are resolved against the folder of the models file (or the working
    directory when the config was given as text or a mapping), so the result does not depend on
    where the process later runs.
    """
    if isinstance(source, ModelsConfig):
        return source
    data, lines = load_yaml(source, limits=limits)
    config = _validate(ModelsConfig, data, lines, "invalid models config")
    base = Path(lines.file).parent if lines.file else Path.cwd()
    users: dict[str, str | UserConfig] = {}
    issues: list[ConfigIssue] = []
    for user_id, entry in config.users.items():
        if isinstance(entry, str):
            path = _absolute(entry, base)
            if not path.is_file():
                where = ("users", user_id)
                issues.append(
                    ConfigIssue(
                        "users." + user_id,
                        f"user config file not found: {path}",
                        lines.file,
                        lines.line_for(where),
                    )
                )
            entry = str(path)
        else:
            entry._lines = lines.under(("users", user_id))
        users[user_id] = entry
    if issues:
        raise ConfigError(issues, "invalid models config")
    return config.model_copy(update={"users": users})


def load_user_configs(
    config: ModelsConfig,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    limits: YamlLimits = DEFAULT_LIMITS,
) -> dict[str, UserConfig]:
    """Load every user of a registry config, reporting the problems of all files in one error."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    loaded: dict[str, UserConfig] = {}
    issues: list[ConfigIssue] = []
    for user_id, entry in config.users.items():
        try:
            loaded[user_id] = (
                entry
                if isinstance(entry, UserConfig)
                else load_user_config(_absolute(entry, base), limits=limits)
            )
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues, "invalid user configs")
    return loaded


def _absolute(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return Path(os.path.abspath(candidate if candidate.is_absolute() else base / candidate))
