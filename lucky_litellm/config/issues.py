"""Pydantic's validation errors translated into `ConfigIssue`s an author can act on.

Each issue gets the path as the author wrote it (camelCase keys, list indexes, no union tags), the
file and line from the YAML `LineMap`, and a message in YAML terms ("expected a mapping, got list",
"unknown key 'stratgy' (did you mean 'strategy'?)"). Input values are never echoed: a pasted API
key must not end up in a log.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from ..errors import ConfigIssue
from ..yaml_loader import LineMap, PathPart, yaml_type_name

__all__ = ["ConfigWarning", "locate", "pydantic_issues"]


class ConfigWarning(UserWarning):
    """A setting that has no effect now but may later (e.g. hedgeAfter on a tier that races only
    while several providers are enabled)."""


def locate(issues: Iterable[ConfigIssue], lines: LineMap | None) -> list[ConfigIssue]:
    """Fill in file and line for issues found after loading (tiers, providers), from their dotted path."""
    if lines is None:
        return list(issues)
    located = []
    for issue in issues:
        if issue.file is None and issue.line is None:
            path = tuple(issue.path.split(".")) if issue.path else ()
            issue = ConfigIssue(issue.path, issue.message, lines.file, lines.line_for(path))
        located.append(issue)
    return located


def pydantic_issues(root: type[BaseModel], exc: ValidationError, lines: LineMap) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        path, owner, is_key = _resolve_loc(root, tuple(error["loc"]))
        ctx = error.get("ctx") or {}
        path = (*path, *ctx.get("loc_suffix", ()))
        message = _message(error, owner, path)
        if is_key and not message.startswith("invalid"):
            message = f"invalid key: {message}"
        dotted = ".".join(str(part) for part in path)
        issues.append(ConfigIssue(dotted, message, lines.file, lines.line_for(path)))
    return sorted(issues, key=lambda issue: issue.line if issue.line is not None else float("inf"))


_UNIONS = (Union, types.UnionType)


def _resolve_loc(
    root: type[BaseModel], loc: tuple[PathPart, ...]
) -> tuple[tuple[PathPart, ...], type[BaseModel] | None, bool]:
    """Follow pydantic's error location through the schema.

    Returns the path as the author wrote it (union tags and ``[key]`` markers dropped), the model
    that owns the last key (for did-you-mean on unknown keys) and whether the error is about a
    mapping key rather than its value.
    """
    path: list[PathPart] = []
    owner: type[BaseModel] | None = None
    current: Any = root
    is_key = False
    index = 0
    while index < len(loc):
        part = loc[index]
        annotation = _strip(current)
        origin = get_origin(annotation)
        if part == "[key]":
            is_key = True
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            field = _field(annotation, str(part))
            current = field.annotation if field is not None else None
            path.append(part)
        elif origin is dict:
            current = get_args(annotation)[1]
            path.append(part)
        elif origin is list:
            current = get_args(annotation)[0]
            path.append(part)
        elif origin in _UNIONS:
            current, consumed = _union_member(get_args(annotation), part)
            index += consumed  # a discriminator tag is not a key of the document
            continue
        else:
            current = None
            path.append(part)
        index += 1
    return tuple(path), owner, is_key


def _strip(annotation: Any) -> Any:
    """Drop Annotated wrappers and Optional's None, keeping tagged union members as they are."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in _UNIONS:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return annotation


def _is_tagged(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and any(isinstance(m, Tag) for m in annotation.__metadata__)


def _union_member(members: tuple[Any, ...], part: PathPart) -> tuple[Any, int]:
    """The union member an error location continues into, and whether `part` was its tag."""
    for member in members:
        if _is_tagged(member) and any(isinstance(m, Tag) and m.tag == part for m in member.__metadata__):
            return _strip(member), 1
    for member in members:
        stripped = _strip(member)
        if isinstance(stripped, type) and issubclass(stripped, BaseModel):
            return stripped, 0
    return None, 0


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _message(error: Mapping[str, Any], owner: type[BaseModel] | None, path: tuple[PathPart, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    key = str(path[-1]) if path else ""
    got = yaml_type_name(error.get("input"))
    if kind == "extra_forbidden":
        return _unknown_key(key, owner)
    if kind == "invalid_key":
        return "keys must be strings (quote it in YAML)"
    if kind == "missing":
        return "required, but missing"
    if kind == "literal_error":
        return _one_of(ctx.get("expected", ""), error.get("input"))
    if kind in ("string_type", "string_sub_type"):
        return f"expected a string, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {'a fraction' if kind == 'int_from_float' else got}"
    if kind in ("float_type", "float_parsing"):
        unit = " (milliseconds, e.g. 10000)" if key in ("timeout", "hedgeAfter", "hedge_after") else ""
        return f"expected a number{unit}, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "model_type" and len(path) == 2 and path[0] == "users":
        return f"expected the path of a YAML file or an inline user config, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping, got {got}"
    if kind in ("list_type", "iterable_type"):
        hint = " (write one item per '- ' line)" if got == "string" else ""
        return f"expected a list, got {got}{hint}"
    if kind == "too_short":
        return {
            "providers": "must list at least one model",
            "experiments": "must define at least one experiment",
        }.get(key, "must not be empty")
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    bounds = {
        "greater_than": ("must be greater than", "gt"),
        "greater_than_equal": ("must be at least", "ge"),
        "less_than": ("must be less than", "lt"),
        "less_than_equal": ("must be at most", "le"),
    }
    if kind in bounds:
        words, name = bounds[kind]
        if kind == "greater_than_equal" and ctx.get(name) == 0:
            return "must not be negative"
        return f"{words} {_number(ctx.get(name))}"
    if kind == "finite_number":
        return "must be a finite number"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _unknown_key(key: str, owner: type[BaseModel] | None) -> str:
    if owner is None:
        return f"unknown key {key!r}"
    settable = getattr(owner, "settable_keys", None)  # a section where only some keys may be set
    fields = {
        name: info
        for name, info in owner.model_fields.items()
        if settable is None or (info.alias or name) in settable
    }
    spellings: dict[str, str] = {}
    for name, info in fields.items():
        alias = info.alias or name
        spellings[name] = name if "_" in key else alias
        spellings[alias] = name if "_" in key else alias
    close = difflib.get_close_matches(key, list(spellings), n=1, cutoff=0.6)
    if not close:
        lowered = {spelling.lower().replace("_", ""): spelling for spelling in spellings}
        match = lowered.get(key.lower().replace("_", "").replace("-", ""))
        close = [match] if match else []
    if close:
        return f"unknown key {key!r} (did you mean {spellings[close[0]]!r}?)"
    allowed = ", ".join(dict.fromkeys(info.alias or name for name, info in fields.items()))
    return f"unknown key {key!r}; allowed: {allowed}"


def _one_of(expected: str, value: object) -> str:
    options = re.findall(r"'([^']*)'", expected)
    message = f"must be one of {', '.join(options)}"
    if isinstance(value, str) and len(value) <= 40:
        close = difflib.get_close_matches(value.lower(), options, n=1, cutoff=0.5)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return message


def _number(value: object) -> str:
    """A bound as an author would write it: 86400000, not 8.64e+07."""
    if isinstance(value, int | float) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, int | float) else str(value)
